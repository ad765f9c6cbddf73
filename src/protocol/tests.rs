//! Unit tests of the core with a tiny in-order network: every message is delivered in send order.
//! The seeded simulator in `tests/` explores interleavings; these pin the basic stories.

use std::collections::{BTreeSet, VecDeque};

use super::*;
use crate::message::Ballot;

/// The process of a restarted `rank` in these tests (founders run `ProcessId(rank)`).
fn joiner_process(rank: u16) -> ProcessId {
    ProcessId(1000 + rank as u64)
}

struct Net {
    nodes: Vec<Option<Node>>,
    queue: VecDeque<(Rank, Rank, Message)>,
    /// Ranks cut off: `run` drops every message from or to them (the nodes themselves keep running).
    isolated: BTreeSet<u16>,
    delivered: Vec<Vec<(u16, String, u64)>>,
    outputs: Vec<Vec<Output>>,
}

impl Net {
    fn new(size: u16) -> Net {
        let view = View::initial(size);
        let nodes = (1..=size)
            .map(|r| Some(Node::new(CoreConfig::new(Rank(r)), view.clone())))
            .collect();
        Net {
            nodes,
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            delivered: vec![vec![]; size as usize],
            outputs: vec![vec![]; size as usize],
        }
    }

    /// The detector at `at` suspects the life `at`'s view lists for `rank`.
    fn suspect(&mut self, at: u16, rank: u16) {
        let life = self.nodes[at as usize - 1]
            .as_ref()
            .and_then(|n| n.view())
            .and_then(|v| v.member(Rank(rank)));
        if let Some(life) = life {
            self.input(at, Input::Suspect(life));
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
                Output::Broadcast { to, msg } => {
                    for to in to {
                        self.queue.push_back((Rank(rank), *to, msg.clone()));
                    }
                }
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
        self.run_cut(&[], &[]);
    }

    fn crash(&mut self, rank: u16) {
        self.nodes[rank as usize - 1] = None;
        self.delivered[rank as usize - 1].clear();
        self.queue.retain(|(from, to, _)| from.0 != rank && to.0 != rank);
    }

    /// `rank`'s driver has no more input: what it coalesced goes out.
    fn flush(&mut self, rank: u16) {
        let mut out = Outbox::new();
        if let Some(node) = self.nodes[rank as usize - 1].as_mut() {
            node.flush(&mut out);
        }
        self.absorb(rank, out);
    }

    /// Delivers, oldest first, the queued messages from `from` to `to` (and nothing else).
    fn deliver_link(&mut self, from: u16, to: u16) {
        let (link, rest): (VecDeque<_>, VecDeque<_>) =
            self.queue.drain(..).partition(|(f, t, _)| f.0 == from && t.0 == to);
        self.queue = rest;
        for (from, to, msg) in link {
            self.input(to.0, Input::Received { from, msg });
        }
    }

    /// Queued messages from `from` to `to` of one kind.
    fn queued(&self, from: u16, to: u16, kind: &str) -> usize {
        self.queue
            .iter()
            .filter(|(f, t, m)| f.0 == from && t.0 == to && m.kind() == kind)
            .count()
    }

    /// Restarts `rank` as a joiner that asks `contacts` to admit it, and runs the network.
    fn rejoin(&mut self, rank: u16, contacts: &[u16]) {
        self.nodes[rank as usize - 1] = Some(Node::rejoin(CoreConfig::new(Rank(rank)), joiner_process(rank)));
        for member in contacts {
            self.input(rank, Input::Connected(Rank(*member)));
        }
        // The joiner's requests travel as Send{to: member}: hand them over as join requests.
        let requests: Vec<_> = self.queue.drain(..).collect();
        for (from, to, msg) in requests {
            match msg {
                Message::JoinRequest { rank, process } => self.input(to.0, Input::JoinRequest { rank, process }),
                other => self.queue.push_back((from, to, other)),
            }
        }
        self.run();
    }

    /// Like [`Net::run`], but messages on a `cut` link (either way) are lost and those on a `held`
    /// link (from, to) wait in the queue, in order, for a later run.
    fn run_cut(&mut self, cut: &[(u16, u16)], held: &[(u16, u16)]) {
        let is_cut = |a: u16, b: u16| cut.iter().any(|&(x, y)| (x, y) == (a, b) || (y, x) == (a, b));
        let mut waiting = VecDeque::new();
        for _ in 0..100_000 {
            if let Some((from, to, msg)) = self.queue.pop_front() {
                if is_cut(from.0, to.0) || self.isolated.contains(&from.0) || self.isolated.contains(&to.0) {
                    continue;
                }
                if held.contains(&(from.0, to.0)) {
                    waiting.push_back((from, to, msg));
                    continue;
                }
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
                self.queue = waiting;
                return;
            }
        }
        panic!("network did not quiesce");
    }

    /// The life `at`'s view lists for `rank`.
    fn life_at(&self, at: u16, rank: u16) -> MemberId {
        self.node(at).view().and_then(|v| v.member(Rank(rank))).expect("listed")
    }

    fn node(&self, rank: u16) -> &Node {
        self.nodes[rank as usize - 1].as_ref().expect("a running node")
    }

    /// `count` ticks at `rank` alone, nothing delivered meanwhile.
    fn tick_at(&mut self, rank: u16, count: u64) {
        for _ in 0..count {
            self.input(rank, Input::Tick);
        }
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
    assert_eq!(net.node(1).delivered_count(), 15);
    assert_eq!(net.delivered[0], net.delivered[1]);
    assert_eq!(net.delivered[0], net.delivered[2]);
}

#[test]
fn a_single_member_delivers_its_own_messages_at_its_next_flush() {
    let mut net = Net::new(1);
    net.input(1, Input::Multicast("alone".into()));
    assert!(net.delivered[0].is_empty(), "stamped and sent at the flush, not before");
    net.run();
    assert_eq!(net.delivered[0], vec![(1, "alone".to_string(), 1)]);
}

/// A group of one with a window of one: each flush delivers its own message at once, which frees the
/// window for the next; one flush empties the whole backlog.
#[test]
fn one_flush_empties_a_lone_members_backlog_through_a_window_of_one() {
    let mut config = CoreConfig::new(Rank(1));
    config.window = 1;
    let mut node = Node::new(config, View::initial(1));
    let mut out = Outbox::new();
    for k in 0..4 {
        node.handle(Input::Multicast(format!("m{k}").as_str().into()), &mut out);
    }
    node.flush(&mut out);
    let delivered = out.drain().filter(|o| matches!(o, Output::Deliver(_))).count();
    assert_eq!(delivered, 4);
    assert_eq!(node.backlog(), 0);
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
    net.suspect(1, 3);
    net.suspect(2, 3);
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
    net.suspect(1, 3);
    net.suspect(2, 3);
    net.run();
    net.nodes[2] = Some(Node::rejoin(CoreConfig::new(Rank(3)), joiner_process(3)));
    for member in [1, 2] {
        net.input(3, Input::Connected(Rank(member)));
    }
    // The joiner's requests travel as Send{to: member}: hand them over as join requests.
    let requests: Vec<_> = net.queue.drain(..).collect();
    for (from, to, msg) in requests {
        match msg {
            Message::JoinRequest { rank, process } => net.input(to.0, Input::JoinRequest { rank, process }),
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

// ---- stories pinned by mutation testing (`make mutants`, README "Mutation testing") ----------------

fn prepare(view: u64, round: u64, proposer: u16) -> Message {
    Message::Prepare {
        view: ViewId(view),
        ballot: Ballot {
            round,
            proposer: Rank(proposer),
        },
    }
}

/// 1 and 2 exclude 3 (crashed, or cut off when `isolate` is set) and install view 2 = {1, 2}.
fn exclude_third(isolate: bool) -> Net {
    let mut net = Net::new(3);
    if isolate {
        net.isolated.insert(3);
    } else {
        net.crash(3);
    }
    net.suspect(1, 3);
    net.suspect(2, 3);
    net.run();
    assert_eq!(net.node(1).view().unwrap().to_string(), "1,2");
    assert_eq!(net.node(2).view().unwrap().to_string(), "1,2");
    net.isolated.clear();
    net
}

/// Flow control: at most `window` own messages are out and undelivered; the rest wait in the backlog.
#[test]
fn multicasts_beyond_the_window_wait_in_the_backlog() {
    let mut config = CoreConfig::new(Rank(1));
    config.window = 2;
    let mut node = Node::new(config, View::initial(3));
    let mut out = Outbox::new();
    for k in 0..5 {
        node.handle(Input::Multicast(format!("m{k}").as_str().into()), &mut out);
    }
    assert!(out.is_empty(), "multicasts go out at the flush");
    node.flush(&mut out);
    let frames: Vec<usize> = out
        .drain()
        .filter_map(|o| match o {
            Output::Broadcast {
                to,
                msg: Message::Data { batch, .. },
            } if to == vec![Rank(2), Rank(3)] => Some(batch.len()),
            _ => None,
        })
        .collect();
    assert_eq!(frames, vec![2], "only a window's worth goes out, in one frame");
    assert_eq!(node.backlog(), 3);
    assert_eq!(node.undelivered_own(), 5, "the backlog plus the two sent");
    assert_eq!(node.lamport(), 2, "one clock tick per message sent");
}

/// A coordinator runs one ballot at a time: a further reason for a change (a second suspicion) while
/// its ballot runs does not restart it; the ballot's proposal still takes the new suspicion into account.
#[test]
fn a_second_suspicion_during_a_ballot_does_not_restart_it() {
    let mut net = Net::new(5);
    net.crash(4);
    net.crash(5);
    net.suspect(1, 5);
    net.suspect(1, 4);
    assert_eq!(net.queued(1, 2, "prepare"), 1, "one ballot, one prepare");
    for rank in [2, 3] {
        net.suspect(rank, 4);
        net.suspect(rank, 5);
    }
    net.run();
    for rank in 1..=3 {
        assert_eq!(net.node(rank).view().unwrap().to_string(), "1,2,3");
    }
}

/// A coordinator that promised another member's ballot starts its own with a higher round, so that its
/// own acceptor (and everyone else who promised) takes it: otherwise the change would never finish.
#[test]
fn a_coordinator_outbids_a_ballot_it_promised_to_a_member_that_then_crashed() {
    let mut net = Net::new(3);
    net.input(
        1,
        Input::Received {
            from: Rank(3),
            msg: prepare(1, 1, 3),
        },
    );
    assert_eq!(net.node(1).phase(), Phase::Changing);
    net.crash(3);
    net.suspect(1, 3);
    net.suspect(2, 3);
    net.run();
    net.ticks(3);
    for rank in [1, 2] {
        assert_eq!(net.node(rank).phase(), Phase::Member);
        assert_eq!(net.node(rank).view().unwrap().to_string(), "1,2");
    }
}

/// A member cut off while the group moved on two views, still in the first, runs a ballot there: it is
/// answered with the last decision, which skips a view and does not list it, and so learns that it was
/// excluded.
#[test]
fn a_prepare_for_a_replaced_view_is_answered_with_the_decision() {
    let mut net = Net::new(4);
    net.isolated.insert(4);
    for rank in 1..=3 {
        net.suspect(rank, 4);
    }
    net.run();
    net.crash(3);
    for rank in [1, 2] {
        net.suspect(rank, 3);
    }
    net.run();
    assert_eq!(net.node(1).view().unwrap().to_string(), "1,2");
    assert_eq!(
        net.node(4).view().unwrap().to_string(),
        "1,2,3,4",
        "4 missed both changes"
    );
    net.isolated.clear();
    net.input(
        1,
        Input::Received {
            from: Rank(4),
            msg: prepare(1, 1, 4),
        },
    );
    assert_eq!(net.queued(1, 4, "decide"), 1);
    assert_eq!(net.queued(1, 4, "promise"), 0);
    net.run();
    assert_eq!(net.node(4).phase(), Phase::Excluded);
    assert!(net.outputs[3]
        .iter()
        .any(|o| matches!(o, Output::Excluded { view: ViewId(3) })));
}

/// A prepare for a view this member has not installed, or from a rank outside its view, is ignored:
/// no promise, no freeze.
#[test]
fn a_prepare_for_a_later_view_or_from_a_non_member_is_ignored() {
    let mut net = exclude_third(false);
    net.input(
        1,
        Input::Received {
            from: Rank(2),
            msg: prepare(3, 5, 2),
        },
    );
    net.input(
        1,
        Input::Received {
            from: Rank(3),
            msg: prepare(2, 5, 3),
        },
    );
    assert_eq!(net.node(1).phase(), Phase::Member);
    assert_eq!(net.queued(1, 2, "promise") + net.queued(1, 3, "promise"), 0);
}

/// A promise to an earlier ballot of the same proposer does not count for its retry: the retry needs
/// promises to itself before it proposes.
#[test]
fn a_promise_to_an_abandoned_ballot_does_not_count_for_the_retry() {
    let mut net = Net::new(3);
    net.crash(3);
    net.suspect(1, 3);
    net.suspect(2, 3);
    net.deliver_link(1, 2);
    assert_eq!(
        net.queued(2, 1, "promise"),
        1,
        "2 promised the first ballot; 1 has not heard yet"
    );
    // No quorum answers in two timeouts: 1 retries with a higher ballot, once.
    let timeout = CoreConfig::new(Rank(1)).view_change_timeout_ticks;
    net.tick_at(1, 2 * timeout - 1);
    assert_eq!(net.queued(1, 2, "prepare"), 0, "no retry before two timeouts");
    net.input(1, Input::Tick);
    assert_eq!(net.queued(1, 2, "prepare"), 1, "the retry's prepare");
    net.deliver_link(2, 1);
    assert_eq!(
        net.queued(1, 2, "accept"),
        0,
        "the old promise does not make a quorum for the retry"
    );
    net.run();
    assert_eq!(net.node(1).view().unwrap().to_string(), "1,2");
}

/// A new life ignores a late relay of the decision that excluded its previous life (an older view that
/// does not list it): only a later view can exclude it.
#[test]
fn a_late_relay_of_the_decision_that_excluded_the_old_life_is_ignored() {
    let mut net = exclude_third(false);
    let excluding = net.node(1).last_decision.clone().expect("view 2 was decided");
    net.rejoin(3, &[1, 2]);
    assert_eq!(net.node(3).phase(), Phase::Member);
    assert_eq!(net.node(3).view().unwrap().to_string(), "1,2,3");
    net.input(
        3,
        Input::Received {
            from: Rank(2),
            msg: Message::Decide {
                proposal: Box::new(excluding),
            },
        },
    );
    assert_eq!(net.node(3).phase(), Phase::Member);
}

/// A rejected proposer gives up its ballot at once and, at the next tick, outbids the ballot that beat
/// it; a late rejection of the abandoned ballot does not stop the new one.
#[test]
fn a_rejected_ballot_is_abandoned_and_a_late_rejection_does_not_stop_the_next() {
    let mut net = Net::new(5);
    for rank in [3, 4] {
        net.input(
            rank,
            Input::Received {
                from: Rank(5),
                msg: prepare(1, 5, 5),
            },
        );
    }
    net.crash(5);
    for rank in 1..=4 {
        net.suspect(rank, 5);
    }
    net.deliver_link(1, 3);
    net.deliver_link(1, 4);
    assert_eq!(net.queued(3, 1, "reject") + net.queued(4, 1, "reject"), 2);
    net.deliver_link(3, 1);
    net.input(1, Input::Tick);
    assert_eq!(
        net.queued(1, 2, "prepare"),
        2,
        "the abandoned ballot's prepare and the new one's"
    );
    net.deliver_link(4, 1);
    net.run();
    for rank in 1..=4 {
        assert_eq!(net.node(rank).view().unwrap().to_string(), "1,2,3,4");
    }
}

/// An acceptance of an abandoned ballot does not count for the retry: the retry is decided by a quorum
/// of acceptances of its own ballot.
#[test]
fn an_acceptance_of_an_abandoned_ballot_does_not_count_for_the_retry() {
    let mut net = Net::new(4);
    net.crash(3);
    net.crash(4);
    for rank in [1, 2] {
        net.suspect(rank, 3);
        net.suspect(rank, 4);
    }
    net.deliver_link(1, 2);
    net.deliver_link(2, 1);
    net.deliver_link(1, 2);
    assert_eq!(
        net.queued(2, 1, "accepted"),
        1,
        "2 accepted the first ballot; 1 has not heard yet"
    );
    let timeout = CoreConfig::new(Rank(1)).view_change_timeout_ticks;
    net.tick_at(1, 2 * timeout);
    assert_eq!(net.queued(1, 2, "prepare"), 1, "the retry's prepare");
    net.deliver_link(2, 1);
    net.deliver_link(1, 2);
    net.deliver_link(2, 1);
    assert_eq!(
        net.node(1).phase(),
        Phase::Changing,
        "1's own acceptance of the retry and 2's of the first ballot decide nothing"
    );
    net.run();
    for rank in [1, 2] {
        assert_eq!(net.node(rank).view().unwrap().to_string(), "1,2");
    }
}

/// A member that promised suspects a proposer silent for three view-change timeouts, counted from the
/// last message it had from that proposer (its Prepare, then its Accept): a proposer that is still
/// sending, for instance a big cut's payloads, is not silent.
#[test]
fn a_silent_proposer_is_suspected_three_timeouts_after_its_last_message() {
    let mut net = Net::new(3);
    net.crash(3);
    net.suspect(1, 3);
    net.suspect(2, 3);
    net.deliver_link(1, 2);
    assert_eq!(net.node(2).phase(), Phase::Changing);
    let timeout = CoreConfig::new(Rank(2)).view_change_timeout_ticks;
    net.tick_at(2, timeout);
    net.deliver_link(2, 1);
    net.deliver_link(1, 2);
    assert_eq!(
        net.queued(2, 1, "accepted"),
        1,
        "2 accepted one timeout after promising"
    );
    net.crash(1);
    let suspects_1 = |net: &Net| net.node(2).suspects.iter().any(|m| m.rank == Rank(1));
    net.tick_at(2, 3 * timeout - 1);
    assert!(!suspects_1(&net), "not before three timeouts after the Accept");
    net.input(2, Input::Tick);
    assert!(suspects_1(&net), "three timeouts after the proposer's last message");
}

// ---- rejoin ----------------------------------------------------------------------------------------

/// The reason of the join refusals `rank`'s output so far sent to joiner `joiner`.
fn refusals(net: &Net, rank: u16, joiner: u16) -> Vec<String> {
    net.outputs[rank as usize - 1]
        .iter()
        .filter_map(|o| match o {
            Output::SendToJoiner {
                rank,
                msg: Message::JoinRefused { reason },
            } if rank.0 == joiner => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Rank 0 and a member's own rank cannot rejoin through it: refused, and no view change starts.
#[test]
fn a_join_request_for_rank_zero_or_the_members_own_rank_is_refused() {
    let mut net = Net::new(3);
    net.input(
        1,
        Input::JoinRequest {
            rank: Rank(0),
            process: joiner_process(0),
        },
    );
    net.input(
        1,
        Input::JoinRequest {
            rank: Rank(1),
            process: joiner_process(1),
        },
    );
    assert_eq!(refusals(&net, 1, 0).len(), 1);
    assert!(refusals(&net, 1, 1)[0].contains("cannot rejoin through itself"));
    assert!(net.node(1).joining.is_empty());
    assert_eq!(net.queued(1, 2, "prepare"), 0);
}

/// A crashed member that asks to rejoin while its old life is still listed, but suspected, is admitted
/// by the very change that excludes the old life: in view 1 (founders) and in a later view alike.
#[test]
fn a_rejoin_while_the_old_life_is_suspected_is_admitted_by_the_change_that_excludes_it() {
    let mut net = Net::new(4);
    net.crash(4);
    for rank in 1..=3 {
        net.suspect(rank, 4);
    }
    net.rejoin(4, &[1, 2, 3]);
    assert_eq!(net.node(4).phase(), Phase::Member);
    assert_eq!(net.node(4).me().incarnation, Incarnation(2));
    assert_eq!(net.node(1).view().unwrap().id, ViewId(2));
    assert_eq!(net.node(1).view().unwrap().to_string(), "1,2,3,4");
    // Once more in view 2, for a founder whose life (incarnation 1) is older than the view.
    net.crash(3);
    for rank in [1, 2, 4] {
        net.suspect(rank, 3);
    }
    net.rejoin(3, &[1, 2, 4]);
    assert_eq!(net.node(3).phase(), Phase::Member);
    assert_eq!(net.node(3).me().incarnation, Incarnation(3));
    assert_eq!(net.node(1).view().unwrap().id, ViewId(3));
    assert_eq!(net.node(1).view().unwrap().to_string(), "1,2,3,4");
}

/// A join request still in flight from before the joiner was admitted (here: after a false suspicion of
/// the new life) is refused: it must not admit a second, phantom life.
#[test]
fn a_join_request_arriving_after_the_admission_is_refused() {
    let mut net = exclude_third(false);
    net.rejoin(3, &[1, 2]);
    assert_eq!(net.node(1).view().unwrap().id, ViewId(3));
    net.suspect(1, 3);
    // Another process asking for the rank the view just admitted: a phantom.
    net.input(
        1,
        Input::JoinRequest {
            rank: Rank(3),
            process: ProcessId(77),
        },
    );
    assert!(refusals(&net, 1, 3).last().unwrap().contains("just admitted"));
    // The admitted process itself, its request late: it is that life already.
    net.input(
        1,
        Input::JoinRequest {
            rank: Rank(3),
            process: joiner_process(3),
        },
    );
    assert!(refusals(&net, 1, 3).last().unwrap().contains("already life 3#3"));
    assert!(net.node(1).joining.is_empty());
}

/// A joiner that reaches only a member that is not the coordinator is still admitted: that member
/// passes its request on to the coordinator.
#[test]
fn a_join_request_to_a_member_that_does_not_coordinate_is_passed_on() {
    let mut net = exclude_third(false);
    net.rejoin(3, &[2]);
    assert_eq!(net.node(3).phase(), Phase::Member);
    assert_eq!(net.node(1).view().unwrap().to_string(), "1,2,3");
}

/// A joiner asks each member once per connection report, however often the driver reports it up.
#[test]
fn a_joiner_asks_each_member_once() {
    let mut net = Net::new(3);
    net.nodes[2] = Some(Node::rejoin(CoreConfig::new(Rank(3)), joiner_process(3)));
    net.input(3, Input::Connected(Rank(1)));
    net.input(3, Input::Connected(Rank(1)));
    assert_eq!(net.queued(3, 1, "join-request"), 1);
}

/// A suspicion from a member this one already suspects is not taken: a falsely suspected member that
/// suspects the others in return cannot get them excluded.
#[test]
fn a_suspicion_from_a_suspected_member_is_not_taken() {
    let mut net = Net::new(4);
    net.suspect(1, 4);
    net.input(
        1,
        Input::Received {
            from: Rank(4),
            msg: Message::Suspect {
                view: ViewId(1),
                rank: Rank(2),
            },
        },
    );
    let suspects: Vec<u16> = net.node(1).suspects.iter().map(|m| m.rank.0).collect();
    assert_eq!(suspects, vec![4]);
}

/// A joiner asks its contacts again every view-change timeout (a refusal such as "still alive" may no
/// longer hold), and not in between.
#[test]
fn a_joiner_asks_again_every_timeout() {
    let mut net = Net::new(3);
    net.nodes[2] = Some(Node::rejoin(CoreConfig::new(Rank(3)), joiner_process(3)));
    net.input(3, Input::Connected(Rank(1)));
    net.queue.clear();
    let timeout = CoreConfig::new(Rank(3)).view_change_timeout_ticks;
    net.tick_at(3, timeout - 1);
    assert_eq!(net.queued(3, 1, "join-request"), 0);
    net.input(3, Input::Tick);
    assert_eq!(net.queued(3, 1, "join-request"), 1);
    net.tick_at(3, timeout);
    assert_eq!(net.queued(3, 1, "join-request"), 2);
}

// ---- the rest of the node ------------------------------------------------------------------------

/// A member that promised sends no acknowledgement, even for data it took before promising.
#[test]
fn a_member_that_promised_sends_no_acknowledgement() {
    let mut net = Net::new(3);
    net.input(1, Input::Multicast("m".into()));
    net.deliver_link(1, 2);
    net.input(
        2,
        Input::Received {
            from: Rank(1),
            msg: prepare(1, 1, 1),
        },
    );
    assert_eq!(net.node(2).phase(), Phase::Changing);
    let mut out = Outbox::new();
    net.nodes[1].as_mut().unwrap().flush(&mut out);
    assert!(out.is_empty(), "no ack after the promise");
}

/// A multicast after the end of membership (here: a member that lost its quorum) is dropped, not kept.
#[test]
fn a_multicast_after_exclusion_is_dropped() {
    let mut net = Net::new(3);
    net.suspect(3, 1);
    net.suspect(3, 2);
    assert_eq!(net.node(3).phase(), Phase::Excluded);
    net.input(3, Input::Multicast("too late".into()));
    assert_eq!(net.node(3).backlog(), 0);
    assert_eq!(net.node(3).undelivered_own(), 0);
}

/// A multicast after `leave()` is dropped, not sent: the member is on its way out.
#[test]
fn a_multicast_after_leave_is_dropped() {
    let mut net = Net::new(3);
    net.input(2, Input::Leave);
    net.input(2, Input::Multicast("after leave".into()));
    assert_eq!(net.queued(2, 1, "data"), 0);
    assert_eq!(net.node(2).backlog(), 0);
}

/// Suspicions count only from members of the current view, about the current view: one from a rank the
/// view excluded is ignored.
#[test]
fn a_suspicion_from_outside_the_view_is_ignored() {
    let mut net = exclude_third(false);
    net.input(
        1,
        Input::Received {
            from: Rank(3),
            msg: Message::Suspect {
                view: ViewId(2),
                rank: Rank(2),
            },
        },
    );
    assert!(net.node(1).suspects.is_empty());
    // Taken, it would have excluded 2 at once: in a view of two, 1 alone is a quorum.
    assert_eq!(net.node(1).view().unwrap().id, ViewId(2));
    assert_eq!(net.node(1).view().unwrap().to_string(), "1,2");
}

/// Receiving is a clock event: the receiver's Lamport clock goes past the message's time.
#[test]
fn receiving_a_message_moves_the_clock_past_its_time() {
    let mut net = Net::new(2);
    net.input(1, Input::Multicast("m".into()));
    net.flush(1);
    net.deliver_link(1, 2);
    assert_eq!(net.node(2).lamport(), 2, "max(0, 1) + 1");
}

/// A member told that it is suspected does not suspect itself (it would stop coordinating while the
/// others wait for it); the others' suspicion is what excludes it.
#[test]
fn a_member_never_suspects_itself() {
    let mut net = Net::new(3);
    net.input(
        1,
        Input::Received {
            from: Rank(2),
            msg: Message::Suspect {
                view: ViewId(1),
                rank: Rank(1),
            },
        },
    );
    net.suspect(1, 1);
    assert!(net.node(1).suspects.is_empty());
}

/// A member that leaves announces it once, and only after its own messages are delivered.
#[test]
fn a_member_announces_its_leave_once_after_its_own_messages_are_delivered() {
    let mut net = Net::new(3);
    net.input(2, Input::Multicast("bye".into()));
    net.input(2, Input::Leave);
    assert_eq!(net.queued(2, 1, "leave"), 0, "its own message is not delivered yet");
    net.run();
    let leaves = net.outputs[1]
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Broadcast {
                    to,
                    msg: Message::Leave { .. }
                } if to.contains(&Rank(1))
            )
        })
        .count();
    assert_eq!(leaves, 1);
    assert_eq!(net.delivered[1], vec![(2, "bye".to_string(), 1)]);
}

/// `is_suspected` (the runtime asks it before taking a late rejoin connection as a member's): a
/// suspicion holds until the view without the suspect is installed, and then is gone with it.
#[test]
fn a_suspicion_lasts_until_the_view_without_the_suspect() {
    let mut net = Net::new(3);
    let third = View::initial(3).member(Rank(3)).unwrap();
    let node = |net: &Net| net.nodes[0].as_ref().unwrap().is_suspected(third);
    assert!(!node(&net));
    net.crash(3);
    net.suspect(1, 3);
    assert!(node(&net));
    net.suspect(2, 3);
    net.run();
    net.ticks(1);
    assert_eq!(net.nodes[0].as_ref().unwrap().view().unwrap().to_string(), "1,2");
    assert!(!node(&net));
}

/// A lone member asked to leave while its own multicast waits in the backlog: the flush that delivers
/// it announces the leave, and the leave's view change (a prepare to itself) must run within that
/// flush, leaving nothing queued to itself (a debug build's runtime checks the invariants after each
/// batch; the protocol thread died on them and the process never exited).
#[test]
fn a_lone_member_leaving_behind_its_own_multicast_leaves_within_the_flush() {
    let mut node = Node::new(CoreConfig::new(Rank(1)), View::initial(1));
    let mut out = Outbox::new();
    node.handle(Input::Multicast("last".into()), &mut out);
    node.handle(Input::Leave, &mut out);
    node.check_invariants();
    node.flush(&mut out);
    node.check_invariants();
    assert_eq!(node.phase(), Phase::Left);
    let delivered = out.drain().filter(|o| matches!(o, Output::Deliver(_))).count();
    assert_eq!(delivered, 1);
}

/// A proposer waits for every member nobody suspects, past a view-change timeout: a slow promise is
/// no reason to exclude a healthy member (crash seed 1073 excluded one that way). The member that is
/// gone is suspected, so only the slow one is waited for.
#[test]
fn a_proposer_waits_for_a_slow_promise_instead_of_excluding_its_member() {
    let mut net = Net::new(4);
    net.crash(4);
    net.suspect(1, 4);
    net.deliver_link(1, 2);
    net.deliver_link(1, 3);
    net.deliver_link(2, 1);
    assert_eq!(net.queued(3, 1, "promise"), 1, "3's promise is on its way, slowly");
    let timeout = CoreConfig::new(Rank(1)).view_change_timeout_ticks;
    net.tick_at(1, timeout + 1);
    assert_eq!(
        net.queued(1, 2, "accept"),
        0,
        "a quorum promised (1 and 2 of four, 1 the lowest rank), and still 1 waits for 3"
    );
    net.deliver_link(3, 1);
    net.run();
    assert_eq!(net.node(1).view().unwrap().to_string(), "1,2,3");
}

/// Issue 26, behaviour 3: member 5 is cut from 2, 3 and 4; 2 and 3 accuse 5, 5 accuses 2 and 3. The
/// promises of 4 and 5 reach the proposer 1 first: weighing those alone excluded the healthy 2 and 3
/// at once ([1,4,5]). 1 suspects none of them itself, so it waits for every promise, and weighs 2's
/// accusation first: only 5 goes.
#[test]
fn a_proposer_waits_for_the_promises_of_members_it_does_not_suspect_itself() {
    let mut net = Net::new(5);
    let cut = [(5, 2), (5, 3), (5, 4)];
    net.suspect(5, 2);
    net.suspect(5, 3);
    net.suspect(2, 5);
    net.suspect(3, 5);
    net.run_cut(&cut, &[(2, 1), (3, 1)]);
    assert!(
        net.queued(2, 1, "promise") + net.queued(3, 1, "promise") == 2,
        "2's and 3's promises are slow"
    );
    assert_eq!(
        net.queued(1, 4, "accept"),
        0,
        "4 and 5 promised, a quorum with 1, yet 1 waits for 2 and 3, which nobody it trusts more accuses"
    );
    let timeout = CoreConfig::new(Rank(1)).view_change_timeout_ticks;
    for _ in 0..=timeout {
        net.input(1, Input::Tick);
        net.run_cut(&cut, &[]);
    }
    assert_eq!(net.node(1).view().unwrap().to_string(), "1,2,3,4");
}

/// A detector that suspected a member across a cut and hears it again once the cut heals withdraws
/// its suspicion, and promises again with what it observes now: the proposer, which gave the
/// accusation against a member that promised a view-change timeout, then excludes nobody. Without the
/// withdrawal the accused goes once the timeout has passed.
#[test]
fn a_suspicion_withdrawn_before_the_proposal_excludes_nobody() {
    for withdrawn in [true, false] {
        let mut net = Net::new(3);
        net.suspect(3, 2);
        net.run();
        assert_eq!(
            net.queued(1, 2, "accept"),
            0,
            "2 promised: 3's accusation gets time to be withdrawn"
        );
        if withdrawn {
            let two = net.life_at(3, 2);
            net.input(3, Input::HeardAgain(two));
            net.run();
        }
        let timeout = CoreConfig::new(Rank(1)).view_change_timeout_ticks;
        for _ in 0..=timeout {
            net.input(1, Input::Tick);
            net.run();
        }
        let expected = if withdrawn { "1,2,3" } else { "1,3" };
        assert_eq!(
            net.node(1).view().unwrap().to_string(),
            expected,
            "withdrawn: {withdrawn}"
        );
    }
}
