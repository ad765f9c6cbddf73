//! Unit tests of the core with a tiny in-order network: every message is delivered in send order.
//! The seeded simulator in `tests/` explores interleavings; these pin the basic stories.

use std::collections::VecDeque;

use super::*;

struct Net {
    nodes: Vec<Option<Node>>,
    queue: VecDeque<(Rank, Rank, Message)>,
    delivered: Vec<Vec<(u16, String, u64)>>,
    outputs: Vec<Vec<Output>>,
}

impl Net {
    fn new(size: u16) -> Net {
        let view = View::initial(size);
        let nodes = (1..=size)
            .map(|r| Some(Node::new(Config::new(Rank(r)), view.clone())))
            .collect();
        Net {
            nodes,
            queue: VecDeque::new(),
            delivered: vec![vec![]; size as usize],
            outputs: vec![vec![]; size as usize],
        }
    }

    fn input(&mut self, rank: u16, input: Input) {
        let Some(node) = self.nodes[rank as usize - 1].as_mut() else {
            return;
        };
        let mut out = Outbox::new();
        node.handle(input, &mut out);
        node.check_invariants();
        self.absorb(rank, out);
    }

    fn absorb(&mut self, rank: u16, mut out: Outbox) {
        for output in out.drain() {
            match &output {
                Output::Send { to, msg } => self.queue.push_back((Rank(rank), *to, msg.clone())),
                Output::Deliver(d) => self.delivered[rank as usize - 1].push((
                    d.origin.rank.0,
                    String::from_utf8_lossy(d.payload.as_bytes()).into_owned(),
                    d.position,
                )),
                _ => {}
            }
            self.outputs[rank as usize - 1].push(output);
        }
    }

    fn run(&mut self) {
        for _ in 0..100_000 {
            if let Some((from, to, msg)) = self.queue.pop_front() {
                self.input(to.0, Input::Received { from, msg });
                continue;
            }
            let mut idle = true;
            for rank in 1..=self.nodes.len() as u16 {
                if let Some(node) = self.nodes[rank as usize - 1].as_mut() {
                    let mut out = Outbox::new();
                    node.flush(&mut out);
                    idle &= out.is_empty();
                    self.absorb(rank, out);
                }
            }
            if idle {
                return;
            }
        }
        panic!("network did not quiesce");
    }

    fn crash(&mut self, rank: u16) {
        self.nodes[rank as usize - 1] = None;
        self.delivered[rank as usize - 1].clear();
        self.queue.retain(|(from, to, _)| from.0 != rank && to.0 != rank);
    }

    fn ticks(&mut self, count: u32) {
        for _ in 0..count {
            for rank in 1..=self.nodes.len() as u16 {
                self.input(rank, Input::Tick);
            }
            self.run();
        }
    }
}

#[test]
fn three_members_deliver_the_same_sequence() {
    let mut net = Net::new(3);
    for k in 0..5 {
        for rank in 1..=3 {
            net.input(rank, Input::Multicast(format!("{rank}-{k}").as_str().into()));
        }
    }
    net.run();
    assert_eq!(net.delivered[0].len(), 15);
    assert_eq!(net.delivered[0], net.delivered[1]);
    assert_eq!(net.delivered[0], net.delivered[2]);
}

#[test]
fn a_single_member_delivers_its_own_messages_at_once() {
    let mut net = Net::new(1);
    net.input(1, Input::Multicast("alone".into()));
    assert_eq!(net.delivered[0], vec![(1, "alone".to_string(), 1)]);
}

#[test]
fn a_crash_is_followed_by_a_view_change_and_delivery_resumes() {
    let mut net = Net::new(3);
    net.input(3, Input::Multicast("before".into()));
    net.run();
    net.crash(3);
    net.input(1, Input::Multicast("blocked".into()));
    net.run();
    assert_eq!(net.delivered[0].len(), 1, "waits for the dead member's ack");
    net.input(1, Input::Suspect(Rank(3)));
    net.input(2, Input::Suspect(Rank(3)));
    net.run();
    net.ticks(1);
    assert_eq!(net.nodes[0].as_ref().unwrap().view().unwrap().to_string(), "1,2");
    assert_eq!(net.delivered[0], net.delivered[1]);
    assert_eq!(net.delivered[0].len(), 2);
    net.input(2, Input::Multicast("after".into()));
    net.run();
    assert_eq!(net.delivered[0], net.delivered[1]);
    assert_eq!(net.delivered[1].last().unwrap().1, "after");
}

#[test]
fn a_joiner_gets_the_position_and_the_rest_of_the_order() {
    let mut net = Net::new(3);
    net.input(1, Input::Multicast("a".into()));
    net.run();
    net.crash(3);
    net.input(1, Input::Suspect(Rank(3)));
    net.input(2, Input::Suspect(Rank(3)));
    net.run();
    net.nodes[2] = Some(Node::rejoin(Config::new(Rank(3))));
    for member in [1, 2] {
        net.input(3, Input::Connected(Rank(member)));
    }
    // The joiner's requests travel as Send{to: member}: hand them over as join requests.
    let requests: Vec<_> = net.queue.drain(..).collect();
    for (from, to, msg) in requests {
        match msg {
            Message::JoinRequest { rank } => net.input(to.0, Input::JoinRequest { rank }),
            other => net.queue.push_back((from, to, other)),
        }
    }
    net.run();
    let joiner = net.nodes[2].as_ref().unwrap();
    assert_eq!(joiner.phase(), Phase::Member);
    assert_eq!(joiner.delivered_count(), 1);
    net.input(3, Input::Multicast("back".into()));
    net.run();
    assert_eq!(net.delivered[2], vec![(3, "back".to_string(), 2)]);
    assert_eq!(net.delivered[0].last(), net.delivered[2].last());
}

#[test]
fn a_member_that_leaves_delivers_its_own_messages_first() {
    let mut net = Net::new(3);
    net.input(2, Input::Multicast("bye".into()));
    net.input(2, Input::Leave);
    net.run();
    assert!(net.outputs[1].iter().any(|o| matches!(o, Output::Left)));
    assert_eq!(net.delivered[1], vec![(2, "bye".to_string(), 1)]);
    assert_eq!(net.nodes[0].as_ref().unwrap().view().unwrap().to_string(), "1,3");
}
