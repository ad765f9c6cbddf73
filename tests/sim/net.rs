//! The simulated network: connections between lives, each a pair of FIFO byte streams.
//!
//! # Model (what a TCP connection between two processes gives, and how it breaks)
//! - A connection joins two lives and is numbered once for the run; both ends name it by that number
//!   (the endpoints' [`tom::endpoint::ConnId`]). Two lives may hold more than one connection at a time
//!   (both dialled each other, or a process dialled again): each is a stream of its own.
//! - A direction never reorders: a segment's ready time is never before the one queued ahead of it, and
//!   only the head can be delivered. Different directions interleave freely.
//! - A connection ends with an end of file: the end that closes it (its endpoint asked, or its process
//!   exited or crashed) writes nothing more; what it wrote before still arrives (after a crash, only a
//!   random prefix of it), then the other end reads the end of file. The closing end reads nothing more:
//!   what was on its way to it is dropped when it arrives.
//! - A cut between two sets of ranks either holds every segment until it heals (a paused or congested
//!   path: the same connection carries on afterwards) or breaks every connection across it (each
//!   direction keeps a random prefix, then both ends read an end of file, after a delay). A process
//!   cannot connect across a breaking cut.
//! - A frame over the run's frame limit is refused by its receiver, which closes the connection.
//!
//! Time is the simulator's step counter; a segment's delay is drawn from the run's [`DelayProfile`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use tom::message::Message;
use tom::types::Rank;
use tom::wire;

use super::rng::Rng;

/// Index of a life in the simulator's list of lives.
pub type LifeId = usize;

/// A connection's number: the same at both ends (and the `ConnId` both endpoints know it by).
pub type ConnKey = u64;

/// What travels on one direction of a connection.
#[derive(Clone, Debug, Hash)]
pub enum Segment {
    /// One wire frame.
    Frame(wire::Frame),
    /// The writer closed its end (or its process ended): the reader's connection is over.
    Eof(String),
}

impl Segment {
    /// A short description for stories.
    pub fn describe(&self) -> String {
        match self {
            Segment::Frame(frame) => describe_frame(frame),
            Segment::Eof(why) => format!("end of file ({why})"),
        }
    }

    /// The kind of the segment: a protocol message's kind, `registration`, `roster`, `snapshot`, `eof`.
    pub fn kind(&self) -> &'static str {
        match self {
            Segment::Frame(frame) => frame.kind(),
            Segment::Eof(_) => "eof",
        }
    }
}

/// One line for a wire frame: a protocol message as [`describe_message`] says, the others by their role.
pub fn describe_frame(frame: &wire::Frame) -> String {
    match frame {
        wire::Frame::Protocol(msg) => describe_message(msg),
        wire::Frame::Register(register) => format!(
            "registration of rank {} (process {}) at {}:{}{}",
            register.rejoin.map_or(0, |r| r.0),
            register.process,
            register.host,
            register.port,
            register
                .admitted
                .map_or(String::new(), |i| format!(", admitted as life {}", i.0))
        ),
        wire::Frame::Roster(roster) => format!(
            "roster of {} listing [{}]",
            roster.from.map_or("the helper".to_string(), |m| m.to_string()),
            entries(&roster.members)
        ),
        wire::Frame::Snapshot(chunk) => format!(
            "snapshot chunk v{} position {} bytes {}..{} of {}",
            chunk.view,
            chunk.position,
            chunk.offset,
            chunk.offset + chunk.bytes.len() as u64,
            chunk.total
        ),
        other => other.kind().to_string(),
    }
}

/// Roster entries as `rank#incarnation@port` list.
pub fn entries(members: &[wire::RosterEntry]) -> String {
    let parts: Vec<String> = members
        .iter()
        .map(|e| format!("{}#{}@{}", e.rank, e.incarnation.0, e.port))
        .collect();
    parts.join(",")
}

/// One line for a message: its kind and the fields that explain a run.
pub fn describe_message(msg: &Message) -> String {
    let text = |p: &tom::types::Payload| super::check::short_payload(&String::from_utf8_lossy(p.as_bytes()));
    match msg {
        Message::Data { view, batch, acks } => {
            let msgs: Vec<String> = batch
                .msgs()
                .iter()
                .map(|msg| {
                    format!(
                        "{:?} stamp {}.{} seq {}",
                        text(&msg.payload),
                        msg.lamport,
                        msg.origin,
                        msg.seq
                    )
                })
                .collect();
            format!("data v{view} {} acks {acks:?}", msgs.join(", "))
        }
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
#[derive(Clone, Copy, Debug, Hash)]
pub struct DelayProfile {
    /// Usual delays are uniform in `0..=max_steps`.
    pub max_steps: u64,
    /// Percent of frames that take ten times longer (a slow path).
    pub slow_percent: u64,
}

/// A segment on its way.
#[derive(Clone, Debug, Hash)]
struct InFlight {
    segment: Segment,
    ready_at_step: u64,
    /// Its encoded length, when it exceeds the frame limit (the receiver refuses it).
    oversize: Option<usize>,
}

/// What a cut does to the frames crossing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CutMode {
    /// Frames wait until the cut heals.
    Hold,
    /// Connections across break; new ones cannot be made until it heals.
    Drop,
}

/// One connection: its two ends, and which of them still read and write.
#[derive(Clone, Debug, Hash)]
struct Conn {
    ends: [LifeId; 2],
    reading: [bool; 2],
    writing: [bool; 2],
    /// An end that has not handed the connection to its endpoint yet: what comes for it waits.
    parked: [bool; 2],
}

impl Conn {
    fn side(&self, life: LifeId) -> usize {
        if self.ends[0] == life {
            0
        } else {
            assert_eq!(self.ends[1], life, "life {life} is no end of this connection");
            1
        }
    }
}

/// What arrived at the head of a direction.
#[derive(Debug)]
pub struct Arrival {
    /// The connection.
    pub conn: ConnKey,
    /// What arrived.
    pub segment: Segment,
    /// The receiving end no longer reads: the segment is dropped.
    pub unread: bool,
    /// The frame's length, when over the frame limit.
    pub oversize: Option<usize>,
}

/// Every connection of the run.
#[derive(Clone, Debug, Hash)]
pub struct Net {
    conns: BTreeMap<ConnKey, Conn>,
    /// In-flight segments per direction: (connection, writing life).
    links: BTreeMap<(ConnKey, LifeId), VecDeque<InFlight>>,
    /// The rank of each life, for cuts (which are between ranks).
    rank_of: Vec<Rank>,
    /// Ordered rank pairs that are cut, both directions listed.
    cuts: BTreeMap<(Rank, Rank), CutMode>,
    delay: DelayProfile,
    next_conn: ConnKey,
}

impl Net {
    /// An empty network with the run's delay profile.
    pub fn new(delay: DelayProfile) -> Net {
        Net {
            conns: BTreeMap::new(),
            links: BTreeMap::new(),
            rank_of: Vec::new(),
            cuts: BTreeMap::new(),
            delay,
            next_conn: 1,
        }
    }

    /// Tells the network about a new life (lives are numbered in creation order).
    pub fn register(&mut self, life: LifeId, rank: Rank) {
        assert_eq!(life, self.rank_of.len(), "lives are registered in order");
        self.rank_of.push(rank);
    }

    /// How the ranks of two lives are cut, if they are.
    pub fn cut_between(&self, a: LifeId, b: LifeId) -> Option<CutMode> {
        self.cuts.get(&(self.rank_of[a], self.rank_of[b])).copied()
    }

    /// A new connection from `dialler` to `acceptor`.
    pub fn open(&mut self, dialler: LifeId, acceptor: LifeId) -> ConnKey {
        let key = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            key,
            Conn {
                ends: [dialler, acceptor],
                reading: [true, true],
                writing: [true, true],
                parked: [false, false],
            },
        );
        key
    }

    /// The other end of `conn` from `life`.
    pub fn peer(&self, conn: ConnKey, life: LifeId) -> Option<LifeId> {
        let c = self.conns.get(&conn)?;
        Some(c.ends[1 - c.side(life)])
    }

    /// True if `life` still writes on `conn`.
    pub fn writes(&self, conn: ConnKey, life: LifeId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.writing[c.side(life)])
    }

    /// True if `life` still reads `conn`.
    pub fn reads(&self, conn: ConnKey, life: LifeId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.reading[c.side(life)])
    }

    /// The connections `life` is an end of, in order.
    pub fn conns_of(&self, life: LifeId) -> Vec<ConnKey> {
        self.conns
            .iter()
            .filter(|(_, c)| c.ends.contains(&life))
            .map(|(key, _)| *key)
            .collect()
    }

    /// True if some connection between `a` and `b` is open at both ends.
    pub fn connected(&self, a: LifeId, b: LifeId) -> bool {
        self.conns.values().any(|c| {
            (c.ends == [a, b] || c.ends == [b, a]) && c.reading.iter().all(|r| *r) && c.writing.iter().all(|w| *w)
        })
    }

    fn ready_at(&self, now: u64, rng: &mut Rng) -> u64 {
        let mut delay = rng.range(0, self.delay.max_steps);
        if rng.percent(self.delay.slow_percent) {
            delay *= 10;
        }
        now + 1 + delay
    }

    fn push(&mut self, conn: ConnKey, from: LifeId, segment: Segment, ready_at_step: u64, oversize: Option<usize>) {
        let queue = self.links.entry((conn, from)).or_default();
        let after_tail = queue.back().map_or(0, |f| f.ready_at_step);
        queue.push_back(InFlight {
            segment,
            ready_at_step: ready_at_step.max(after_tail),
            oversize,
        });
    }

    /// `from` writes `frame` on `conn`; false if it is lost (the writer's end is closed or broken, or the
    /// reader is gone). `oversize` marks a frame the receiver will refuse.
    pub fn send(
        &mut self,
        conn: ConnKey,
        from: LifeId,
        frame: wire::Frame,
        oversize: Option<usize>,
        now: u64,
        rng: &mut Rng,
    ) -> bool {
        let Some(c) = self.conns.get(&conn) else { return false };
        let side = c.side(from);
        if !c.writing[side] || !c.reading[1 - side] {
            return false;
        }
        let at = self.ready_at(now, rng);
        self.push(conn, from, Segment::Frame(frame), at, oversize);
        true
    }

    /// `life` closes its end of `conn`: what it wrote still goes out, then an end of file; it reads
    /// nothing more.
    pub fn close(&mut self, conn: ConnKey, life: LifeId, why: &str, now: u64, rng: &mut Rng) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let side = c.side(life);
        c.reading[side] = false;
        if std::mem::replace(&mut c.writing[side], false) {
            let at = self.ready_at(now, rng);
            self.push(conn, life, Segment::Eof(why.to_string()), at, None);
        }
    }

    /// `life`'s process ended. `keep` says how much of each direction it wrote survives (a crash keeps a
    /// random prefix, a clean exit everything); then each of its connections ends with an end of file
    /// at the other end (unless `silent`: a power cut, which nobody reads as a close). What was on its
    /// way to it is lost. Returns how many frames were lost.
    pub fn process_ended(&mut self, life: LifeId, keep: Keep, silent: bool, now: u64, rng: &mut Rng) -> usize {
        let mut lost = 0;
        for conn in self.conns_of(life) {
            let side = self.conns[&conn].side(life);
            let other = self.conns[&conn].ends[1 - side];
            if let Some(queue) = self.links.remove(&(conn, other)) {
                lost += queue.iter().filter(|f| matches!(f.segment, Segment::Frame(_))).count();
            }
            let c = self.conns.get_mut(&conn).expect("listed");
            c.reading[side] = false;
            let was_writing = std::mem::replace(&mut c.writing[side], false);
            if let Some(queue) = self.links.get_mut(&(conn, life)) {
                let len = queue.len();
                let kept = match keep {
                    Keep::All => len,
                    Keep::Nothing => 0,
                    Keep::RandomPrefix => rng.range(0, len as u64) as usize,
                };
                lost += queue
                    .iter()
                    .skip(kept)
                    .filter(|f| matches!(f.segment, Segment::Frame(_)))
                    .count();
                queue.truncate(kept);
                if queue.is_empty() {
                    self.links.remove(&(conn, life));
                }
            }
            if was_writing && !silent {
                let at = self.ready_at(now, rng);
                let why = match keep {
                    Keep::All => "its process exited",
                    _ => "its process died",
                };
                self.push(conn, life, Segment::Eof(why.to_string()), at, None);
            }
        }
        lost
    }

    /// Cuts every link between `side_a` and `side_b`, both ways. A breaking cut breaks every connection
    /// between lives of the two sides now: each direction keeps a random prefix of what is in flight
    /// and then reads an end of file, `eof_delay` steps or so later. Returns how many frames were lost.
    pub fn cut(
        &mut self,
        side_a: &[Rank],
        side_b: &[Rank],
        mode: CutMode,
        eof_delay_max: u64,
        now: u64,
        rng: &mut Rng,
    ) -> usize {
        for a in side_a {
            for b in side_b {
                self.cuts.insert((*a, *b), mode);
                self.cuts.insert((*b, *a), mode);
            }
        }
        if mode == CutMode::Hold {
            return 0;
        }
        let crossing: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let (ra, rb) = (self.rank_of[c.ends[0]], self.rank_of[c.ends[1]]);
                (side_a.contains(&ra) && side_b.contains(&rb)) || (side_b.contains(&ra) && side_a.contains(&rb))
            })
            .map(|(key, _)| *key)
            .collect();
        let mut lost = 0;
        for conn in crossing {
            lost += self.break_conn(conn, eof_delay_max, now, rng);
        }
        lost
    }

    /// Breaks one connection (a cut): each direction still open keeps a random prefix, then an end of
    /// file. Returns how many frames were lost.
    pub fn break_conn(&mut self, conn: ConnKey, eof_delay_max: u64, now: u64, rng: &mut Rng) -> usize {
        let mut lost = 0;
        let ends = self.conns[&conn].ends;
        for (side, &from) in ends.iter().enumerate() {
            let mut end_lost = false;
            if let Some(queue) = self.links.get_mut(&(conn, from)) {
                let keep = rng.range(0, queue.len() as u64) as usize;
                lost += queue
                    .iter()
                    .skip(keep)
                    .filter(|f| matches!(f.segment, Segment::Frame(_)))
                    .count();
                end_lost = queue.iter().skip(keep).any(|f| matches!(f.segment, Segment::Eof(_)));
                queue.truncate(keep);
                if queue.is_empty() {
                    self.links.remove(&(conn, from));
                }
            }
            let c = self.conns.get_mut(&conn).expect("listed");
            // A reader still there learns the connection broke. That holds too for a direction whose
            // writer had already closed (an earlier cut, or its endpoint) while its end of file was still
            // on the way: a real reader of a broken connection gets a reset or times out once the path
            // is back, it never waits on it for ever.
            if (std::mem::replace(&mut c.writing[side], false) || end_lost) && c.reading[1 - side] {
                let at = now + rng.range(1, eof_delay_max.max(1));
                self.push(conn, from, Segment::Eof("connection broken".to_string()), at, None);
            }
        }
        lost
    }

    /// The connection `from → to` whose head the next delivery takes: the lowest-numbered one whose head
    /// is ready at `now` and not held by a cut, else (scripted runs deliver on demand) the
    /// lowest-numbered one with anything queued.
    pub fn pick(&self, from: LifeId, to: LifeId, now: u64) -> Option<ConnKey> {
        let candidates: Vec<(ConnKey, &VecDeque<InFlight>)> = self
            .links
            .iter()
            .filter(|((conn, writer), _)| *writer == from && self.peer(*conn, from) == Some(to))
            .filter(|((conn, writer), _)| self.deliverable(*conn, *writer))
            .map(|((conn, _), queue)| (*conn, queue))
            .collect();
        let held = self.cut_between(from, to) == Some(CutMode::Hold);
        candidates
            .iter()
            .find(|(_, q)| !held && q.front().is_some_and(|f| f.ready_at_step <= now))
            .or(candidates.first())
            .map(|(conn, _)| *conn)
    }

    /// Takes the head of `conn`'s direction from `from`, ready or not.
    pub fn pop(&mut self, conn: ConnKey, from: LifeId) -> Option<Arrival> {
        let queue = self.links.get_mut(&(conn, from))?;
        let head = queue.pop_front()?;
        if queue.is_empty() {
            self.links.remove(&(conn, from));
        }
        let to = self.peer(conn, from)?;
        let unread = !self.reads(conn, to);
        Some(Arrival {
            conn,
            segment: head.segment,
            unread,
            oversize: head.oversize,
        })
    }

    /// The head of `conn`'s direction from `from`, if any.
    pub fn head(&self, conn: ConnKey, from: LifeId) -> Option<&Segment> {
        self.links.get(&(conn, from))?.front().map(|f| &f.segment)
    }

    /// The head of the next delivery `from → to` (see [`Net::pick`]).
    pub fn peek(&self, from: LifeId, to: LifeId, now: u64) -> Option<&Segment> {
        let conn = self.pick(from, to, now)?;
        self.head(conn, from)
    }

    /// What arrives for `life` on `conn` waits (`true`) until it hands the connection over (`false`).
    pub fn park(&mut self, conn: ConnKey, life: LifeId, parked: bool) {
        if let Some(c) = self.conns.get_mut(&conn) {
            let side = c.side(life);
            c.parked[side] = parked;
        }
    }

    /// True if segments from `from` on `conn` may be delivered (their reader took the connection).
    fn deliverable(&self, conn: ConnKey, from: LifeId) -> bool {
        self.conns.get(&conn).is_some_and(|c| !c.parked[1 - c.side(from)])
    }

    /// `life` read the end of file of `conn`: its end is over too (it writes and reads nothing more).
    pub fn finish(&mut self, conn: ConnKey, life: LifeId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            let side = c.side(life);
            c.reading[side] = false;
            c.writing[side] = false;
        }
    }

    /// True if `life` has a connection to a life of `rank` that is open at both ends.
    pub fn connected_to_rank(&self, life: LifeId, rank: Rank) -> bool {
        self.conns.values().any(|c| {
            c.ends.contains(&life)
                && self.rank_of[c.ends[1 - c.side(life)]] == rank
                && c.reading.iter().all(|r| *r)
                && c.writing.iter().all(|w| *w)
        })
    }

    /// The reader of `conn` stops reading (it refused a frame): what else was on its way is dropped.
    pub fn stop_reading(&mut self, conn: ConnKey, reader: LifeId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            let side = c.side(reader);
            c.reading[side] = false;
        }
    }

    /// Segments queued from `from` to `to`, on every connection between them.
    pub fn queued(&self, from: LifeId, to: LifeId) -> usize {
        self.links
            .iter()
            .filter(|((conn, writer), _)| *writer == from && self.peer(*conn, from) == Some(to))
            .map(|(_, q)| q.len())
            .sum()
    }

    /// Pairs of lives with segments queued between them, in a fixed order.
    pub fn busy_links(&self) -> Vec<(LifeId, LifeId)> {
        let pairs: BTreeSet<(LifeId, LifeId)> = self
            .links
            .keys()
            .filter(|(conn, from)| self.deliverable(*conn, *from))
            .filter_map(|(conn, from)| Some((*from, self.peer(*conn, *from)?)))
            .collect();
        pairs.into_iter().collect()
    }

    /// Every direction with something to deliver, as (connection, writing life): what the exhaustive
    /// explorer chooses among (delays and cuts aside: every head may arrive next).
    pub fn busy_directions(&self) -> Vec<(ConnKey, LifeId)> {
        self.links
            .keys()
            .filter(|(conn, from)| self.deliverable(*conn, *from))
            .copied()
            .collect()
    }

    /// How many segments each direction of each connection has on its way: (connection, writer).
    pub fn queued_by_link(&self) -> Vec<((ConnKey, LifeId), usize)> {
        self.links.iter().map(|(link, queue)| (*link, queue.len())).collect()
    }

    /// True if one of the first `first` segments on its way from `writer` on `conn` is a frame, and
    /// the connection's other end is `to`.
    pub fn frame_among_first(&self, (conn, writer): (ConnKey, LifeId), first: usize, to: LifeId) -> bool {
        self.peer(conn, writer) == Some(to)
            && self
                .links
                .get(&(conn, writer))
                .is_some_and(|queue| queue.iter().take(first).any(|f| matches!(f.segment, Segment::Frame(_))))
    }

    /// Every connection with an end that still writes or reads.
    pub fn open_conns(&self) -> Vec<ConnKey> {
        self.conns
            .iter()
            .filter(|(_, c)| c.writing.iter().chain(c.reading.iter()).any(|open| *open))
            .map(|(key, _)| *key)
            .collect()
    }

    /// The two lives of `conn` (dialler first).
    pub fn ends(&self, conn: ConnKey) -> Option<[LifeId; 2]> {
        self.conns.get(&conn).map(|c| c.ends)
    }

    /// Pairs of lives whose next delivery may happen now (ready, not held by a cut).
    pub fn ready(&self, now: u64) -> Vec<(LifeId, LifeId)> {
        let pairs: BTreeSet<(LifeId, LifeId)> = self
            .links
            .iter()
            .filter(|(_, queue)| queue.front().is_some_and(|f| f.ready_at_step <= now))
            .filter(|((conn, from), _)| self.deliverable(*conn, *from))
            .filter_map(|((conn, from), _)| {
                let to = self.peer(*conn, *from)?;
                (self.cut_between(*from, to) != Some(CutMode::Hold)).then_some((*from, to))
            })
            .collect();
        pairs.into_iter().collect()
    }

    /// The earliest step at which some head not held by a cut becomes ready.
    pub fn next_ready_at(&self) -> Option<u64> {
        self.links
            .iter()
            .filter(|((conn, from), _)| {
                self.deliverable(*conn, *from)
                    && self
                        .peer(*conn, *from)
                        .is_some_and(|to| self.cut_between(*from, to) != Some(CutMode::Hold))
            })
            .filter_map(|(_, queue)| queue.front().map(|f| f.ready_at_step))
            .min()
    }

    /// Segments in flight, all directions.
    pub fn in_flight(&self) -> usize {
        self.links.values().map(VecDeque::len).sum()
    }

    /// True if nothing is in flight at all.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// True if something in flight may be delivered some time (its reader took the connection).
    pub fn has_deliverable(&self) -> bool {
        self.links.keys().any(|(conn, from)| self.deliverable(*conn, *from))
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

/// How much of what a process wrote survives its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Keep {
    /// Everything (a clean exit).
    All,
    /// A random prefix of each direction (a crash).
    RandomPrefix,
    /// Nothing.
    Nothing,
}
