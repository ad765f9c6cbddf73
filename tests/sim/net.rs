//! The simulated network: one FIFO queue of in-flight frames per ordered pair of lives.
//!
//! # Model (what a TCP connection between two processes gives, and how it breaks)
//! - A link never reorders: a frame's ready time is never before the one queued ahead of it, and only
//!   the head of a queue can be delivered. Different links interleave freely.
//! - Links are per pair of *lives*, not ranks: a restarted process gets new connections, and frames an
//!   old life sent are never mistaken for the new life's (unless a scenario delivers them on purpose).
//! - A crash breaks the crashed life's outgoing connections: a random prefix of each queue still
//!   arrives, the rest is lost ("crash mid-multicast, only some links carried it"). Frames *to* a dead
//!   life are dropped.
//! - A cut between two sets of ranks either holds every frame until healed (a slow or paused path) or
//!   drops them (a broken connection; the simulator then makes a detector suspect across the cut).
//!
//! Time is the simulator's step counter; a frame's delay is drawn from the run's [`DelayProfile`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use tom::message::Message;
use tom::types::{ProcessId, Rank};

use super::rng::Rng;

/// Index of a life in the simulator's list of lives.
pub type LifeId = usize;

/// What travels on a link.
#[derive(Clone, Debug)]
pub enum Frame {
    /// A protocol message on a member connection.
    Msg(Message),
    /// A joiner's request on its rejoin connection: the rank it asks for, and the asking process.
    JoinRequest(Rank, ProcessId),
}

impl Frame {
    /// A short description for stories.
    pub fn describe(&self) -> String {
        match self {
            Frame::Msg(msg) => describe_message(msg),
            Frame::JoinRequest(rank, process) => {
                format!("join-request(rank {rank}, process {process}) on the rejoin connection")
            }
        }
    }
}

/// One line for a message: its kind and the fields that explain a run.
pub fn describe_message(msg: &Message) -> String {
    let text = |p: &tom::types::Payload| super::check::short_payload(&String::from_utf8_lossy(p.as_bytes()));
    match msg {
        Message::Data { view, msg, acks } => format!(
            "data v{view} {:?} stamp {}.{} seq {} acks {acks:?}",
            text(&msg.payload),
            msg.lamport,
            msg.origin,
            msg.seq
        ),
        Message::Ack { view, acks } => format!("ack v{view} {acks:?}"),
        Message::Suspect { view, rank } => format!("suspect v{view} rank {rank}"),
        Message::Leave { view } => format!("leave v{view}"),
        Message::Prepare { view, ballot } => {
            format!("prepare v{view} ballot {}.{}", ballot.round, ballot.proposer)
        }
        Message::Promise {
            view,
            ballot,
            accepted,
            report,
        } => format!(
            "promise v{view} ballot {}.{} accepted {} delivered {} held {} suspects {:?}",
            ballot.round,
            ballot.proposer,
            accepted.as_ref().map_or("none".into(), |(b, p)| format!(
                "{}.{}→v{}",
                b.round, b.proposer, p.view.id
            )),
            report.delivered_count,
            report.held.len(),
            report.suspects.iter().map(|r| r.0).collect::<Vec<_>>()
        ),
        Message::Reject { view, ballot, .. } => {
            format!("reject v{view} ballot {}.{}", ballot.round, ballot.proposer)
        }
        Message::Accept { view, ballot, proposal } => format!(
            "accept v{view} ballot {}.{} → v{} [{}] carrying {} start {}",
            ballot.round,
            ballot.proposer,
            proposal.view.id,
            lives_of(&proposal.view),
            proposal.carried.len(),
            proposal.start_position
        ),
        Message::Accepted { view, ballot } => {
            format!("accepted v{view} ballot {}.{}", ballot.round, ballot.proposer)
        }
        Message::Decide { proposal } => format!(
            "decide v{} [{}] carrying {} start {}",
            proposal.view.id,
            lives_of(&proposal.view),
            proposal.carried.len(),
            proposal.start_position
        ),
        Message::JoinRequest { rank, process } => format!("join-request rank {rank} process {process}"),
        Message::JoinRefused { reason } => format!("join-refused {reason:?}"),
        Message::Fetch { view, wanted } => format!("fetch v{view} {} payloads", wanted.len()),
        Message::Carry { view, msgs } => format!(
            "carry v{view} {} payloads ({} bytes)",
            msgs.len(),
            msgs.iter().map(|m| m.payload.len()).sum::<usize>()
        ),
        Message::Progress { view } => format!("progress v{view}"),
    }
}

/// The members of a view as `rank#incarnation` list.
pub fn lives_of(view: &tom::types::View) -> String {
    let parts: Vec<String> = view.members.iter().map(|m| m.to_string()).collect();
    parts.join(",")
}

/// How long frames take, in steps, for one run.
#[derive(Clone, Copy, Debug)]
pub struct DelayProfile {
    /// Usual delays are uniform in `0..=max_steps`.
    pub max_steps: u64,
    /// Percent of frames that take ten times longer (a slow path).
    pub slow_percent: u64,
}

/// A frame on its way.
#[derive(Clone, Debug)]
struct InFlight {
    frame: Frame,
    ready_at_step: u64,
}

/// What a cut does to the frames crossing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Frames wait until the cut heals.
    Hold,
    /// Frames are lost (the connection broke).
    Drop,
}

/// Every link of the run.
#[derive(Debug)]
pub struct Net {
    links: BTreeMap<(LifeId, LifeId), VecDeque<InFlight>>,
    /// The rank of each life, for cuts (which are between ranks).
    rank_of: Vec<Rank>,
    /// Ordered rank pairs that are cut, both directions listed.
    cuts: BTreeMap<(Rank, Rank), CutMode>,
    /// Connections a dropping cut broke, both directions listed. They stay broken after the cut heals
    /// (TCP does not resume a stream with a hole in it): only new lives make new connections.
    broken: BTreeSet<(LifeId, LifeId)>,
    delay: DelayProfile,
}

impl Net {
    /// An empty network with the run's delay profile.
    pub fn new(delay: DelayProfile) -> Net {
        Net {
            links: BTreeMap::new(),
            rank_of: Vec::new(),
            cuts: BTreeMap::new(),
            broken: BTreeSet::new(),
            delay,
        }
    }

    /// Tells the network about a new life (lives are numbered in creation order).
    pub fn register(&mut self, life: LifeId, rank: Rank) {
        assert_eq!(life, self.rank_of.len(), "lives are registered in order");
        self.rank_of.push(rank);
    }

    fn cut_between(&self, from: LifeId, to: LifeId) -> Option<CutMode> {
        self.cuts.get(&(self.rank_of[from], self.rank_of[to])).copied()
    }

    /// Queues a frame; returns false if a dropping cut lost it.
    pub fn send(&mut self, from: LifeId, to: LifeId, frame: Frame, now: u64, rng: &mut Rng) -> bool {
        if self.cut_between(from, to) == Some(CutMode::Drop) || self.broken.contains(&(from, to)) {
            return false;
        }
        let mut delay = rng.range(0, self.delay.max_steps);
        if rng.percent(self.delay.slow_percent) {
            delay *= 10;
        }
        let queue = self.links.entry((from, to)).or_default();
        let after_tail = queue.back().map_or(0, |f| f.ready_at_step);
        queue.push_back(InFlight {
            frame,
            ready_at_step: (now + 1 + delay).max(after_tail),
        });
        true
    }

    /// Links whose head may be delivered now.
    pub fn ready(&self, now: u64) -> Vec<(LifeId, LifeId)> {
        self.links
            .iter()
            .filter(|(key, queue)| {
                queue.front().is_some_and(|f| f.ready_at_step <= now) && self.cut_between(key.0, key.1).is_none()
            })
            .map(|(key, _)| *key)
            .collect()
    }

    /// The earliest step at which some uncut link's head becomes ready.
    pub fn next_ready_at(&self) -> Option<u64> {
        self.links
            .iter()
            .filter(|(key, _)| self.cut_between(key.0, key.1).is_none())
            .filter_map(|(_, queue)| queue.front().map(|f| f.ready_at_step))
            .min()
    }

    /// Takes the head of a link, ready or not (scripted scenarios deliver on demand).
    pub fn pop(&mut self, from: LifeId, to: LifeId) -> Option<Frame> {
        let queue = self.links.get_mut(&(from, to))?;
        let head = queue.pop_front().map(|f| f.frame);
        if queue.is_empty() {
            self.links.remove(&(from, to));
        }
        head
    }

    /// The head of a link, if any.
    pub fn peek(&self, from: LifeId, to: LifeId) -> Option<&Frame> {
        self.links.get(&(from, to))?.front().map(|f| &f.frame)
    }

    /// Frames queued from `from` to `to`.
    pub fn queued(&self, from: LifeId, to: LifeId) -> usize {
        self.links.get(&(from, to)).map_or(0, VecDeque::len)
    }

    /// Links with frames queued, in a fixed order.
    pub fn busy_links(&self) -> Vec<(LifeId, LifeId)> {
        self.links.keys().copied().collect()
    }

    /// True if nothing is in flight at all.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// `life` crashed: its outgoing links keep a random prefix, its incoming ones are lost.
    /// Returns how many frames were lost.
    pub fn crash(&mut self, life: LifeId, rng: &mut Rng) -> usize {
        let mut lost = self.close_incoming(life);
        for (key, queue) in self.links.iter_mut() {
            if key.0 == life {
                let keep = rng.range(0, queue.len() as u64) as usize;
                lost += queue.len() - keep;
                queue.truncate(keep);
            }
        }
        self.links.retain(|_, queue| !queue.is_empty());
        lost
    }

    /// `life` is gone: frames to it are lost. Returns how many.
    pub fn close_incoming(&mut self, life: LifeId) -> usize {
        let mut lost = 0;
        self.links.retain(|key, queue| {
            if key.1 == life {
                lost += queue.len();
                false
            } else {
                true
            }
        });
        lost
    }

    /// Cuts every link between `side_a` and `side_b`, both ways. A dropping cut breaks the connections
    /// between the lives there now, for good: each keeps a random prefix of what is in flight and loses
    /// the rest and everything sent later. Returns how many frames were lost.
    pub fn cut(&mut self, side_a: &[Rank], side_b: &[Rank], mode: CutMode, rng: &mut Rng) -> usize {
        for a in side_a {
            for b in side_b {
                self.cuts.insert((*a, *b), mode);
                self.cuts.insert((*b, *a), mode);
            }
        }
        if mode == CutMode::Hold {
            return 0;
        }
        let lives = |side: &[Rank]| -> Vec<LifeId> {
            (0..self.rank_of.len())
                .filter(|l| side.contains(&self.rank_of[*l]))
                .collect()
        };
        let (lives_a, lives_b) = (lives(side_a), lives(side_b));
        for a in &lives_a {
            for b in &lives_b {
                self.broken.insert((*a, *b));
                self.broken.insert((*b, *a));
            }
        }
        let mut lost = 0;
        for (key, queue) in self.links.iter_mut() {
            if self.broken.contains(key) {
                let keep = rng.range(0, queue.len() as u64) as usize;
                lost += queue.len() - keep;
                queue.truncate(keep);
            }
        }
        self.links.retain(|_, queue| !queue.is_empty());
        lost
    }

    /// Breaks the one connection between two lives, both ways (a frame over the frame limit: the
    /// receiver refuses it and closes the connection). What was in flight on it is lost.
    pub fn break_connection(&mut self, a: LifeId, b: LifeId) -> usize {
        self.broken.insert((a, b));
        self.broken.insert((b, a));
        let mut lost = 0;
        for key in [(a, b), (b, a)] {
            if let Some(queue) = self.links.remove(&key) {
                lost += queue.len();
            }
        }
        lost
    }

    /// True if the connection `from → to` was broken by a dropping cut.
    pub fn is_broken(&self, from: LifeId, to: LifeId) -> bool {
        self.broken.contains(&(from, to))
    }

    /// Removes every cut; held frames become deliverable (broken connections stay broken).
    pub fn heal(&mut self) {
        self.cuts.clear();
    }

    /// True if some cut is in place.
    pub fn is_cut(&self) -> bool {
        !self.cuts.is_empty()
    }
}
