//! Where the time of a multicast goes: opt-in timestamps of each hop of sampled messages, for
//! `tom-bench --breakdown`. **Not part of the supported API** (hidden from the docs; its shape may
//! change with the benchmark).
//!
//! Off by default ([`super::RuntimeConfig::hop_probe`] is `None`): then every hook below is one `if let` on a
//! `None` and nothing is allocated, locked or timed. On, the stamps go into one table of atomics
//! allocated up front ([`HopProbe::new`]), one slot per (origin, sampled seq, stage, member); a stamp
//! is one `Instant::now()` and one compare-and-swap (the first stamp of a slot wins), never a lock or an
//! allocation. Every thread of the process stamps against one monotonic clock (the probe's
//! `Instant` epoch), so stamps of different threads, and of different members of one process, compare.
//!
//! A message is named by `(origin rank, seq)`, the core's numbering. The hooks that cannot see the
//! seq count instead: the protocol thread numbers the multicasts it takes, and its own deliveries, 1, 2,
//! 3, …, and the application names message `k` (from 0) seq `k + 1`. That is the core's seq while the
//! first view lasts and no multicast is refused, which is the benchmark's case; after a view change the
//! stamps no longer line up (a new view restarts seqs) and are not meaningful.
//!
//! The stages of one multicast, in order (per peer: one stamp for each other member):
//! 1. [`Stage::Called`]: the application is about to call `multicast()` (stamped by the application);
//! 2. [`Stage::Taken`]: the origin's protocol thread takes the multicast from its channel;
//! 3. [`Stage::Drained`] (per peer): the bytes holding the data frame start leaving the buffer: the
//!    origin's protocol thread is about to send them itself (a non-blocking send after its drain), or,
//!    if it could not, its writer thread to that peer took them (woken by the protocol thread, or back
//!    from its previous write);
//! 4. [`Stage::Written`] (per peer): the send that took them all, or the writer's `write_all` of them,
//!    returned;
//! 5. [`Stage::Read`] (per peer): that peer's reader thread decoded the frame;
//! 6. [`Stage::Handled`] (per peer): that peer's protocol thread took the frame from its channel;
//! 7. [`Stage::AckQueued`] (per peer): that peer's protocol thread queued, for its writer to the
//!    origin, the first frame (an acknowledgement, or its own data with acknowledgements piggybacked)
//!    whose acknowledgements cover the message;
//! 8. [`Stage::Acked`] (per peer): the origin's protocol thread took a frame from that peer whose
//!    acknowledgements cover the message;
//! 9. [`Stage::Delivered`]: the origin's protocol thread handed the delivery to the event channel;
//! 10. [`Stage::Consumed`]: the application received the delivery event (stamped by the application).
//!
//! Over loopback a `write_all` does the receiving side's TCP work too and wakes its reader, so a
//! reader often has the frame before the writer's `write_all` returns: that hop can be negative.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::message::Message;
use crate::types::{Rank, View};
use crate::wire::Frame;

/// One point in the life of a multicast (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The application is about to call `multicast()`.
    Called,
    /// The origin's protocol thread took the multicast.
    Taken,
    /// A writer thread took the buffered bytes holding the data frame (per peer).
    Drained,
    /// A writer thread's `write_all` holding the data frame returned (per peer).
    Written,
    /// A peer's reader thread decoded the data frame (per peer).
    Read,
    /// A peer's protocol thread took the data frame (per peer).
    Handled,
    /// A peer's protocol thread queued a frame acknowledging the message to the origin (per peer).
    AckQueued,
    /// The origin's protocol thread took a peer's frame acknowledging the message (per peer).
    Acked,
    /// The origin's protocol thread handed the delivery to the application's channel.
    Delivered,
    /// The application received the delivery.
    Consumed,
}

const STAGES: usize = 10;

impl Stage {
    fn index(self) -> usize {
        self as usize
    }
}

/// The shared table of stamps. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct HopProbe(Arc<Table>);

struct Table {
    epoch: Instant,
    /// Ranks 1..=members.
    members: usize,
    /// Every `every`-th seq (1, 1 + every, …) is sampled …
    every: u64,
    /// … up to this many per origin.
    slots: u64,
    /// `[origin - 1][slot][stage][member - 1]`, ns since `epoch` + 1; 0: not stamped.
    stamps: Box<[AtomicU64]>,
}

impl std::fmt::Debug for HopProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HopProbe {{ members: {}, every: {}, slots: {} }}",
            self.0.members, self.0.every, self.0.slots
        )
    }
}

impl HopProbe {
    /// A table for ranks `1..=members`, each multicasting `messages` messages, keeping at most
    /// `max_stamps` stamps in all (every message if they fit, an even sample otherwise).
    pub fn new(members: u16, messages: u64, max_stamps: usize) -> HopProbe {
        let members = members.max(1) as usize;
        let per_message = (members * STAGES * members) as u64;
        let slots_max = (max_stamps as u64 / per_message).max(1);
        let messages = messages.max(1);
        let every = messages.div_ceil(slots_max).max(1);
        let slots = messages.div_ceil(every);
        let len = slots * per_message;
        let stamps = (0..len).map(|_| AtomicU64::new(0)).collect();
        HopProbe(Arc::new(Table {
            epoch: Instant::now(),
            members,
            every,
            slots,
            stamps,
        }))
    }

    /// Messages sampled per origin, and the sampling step (every `every`-th seq).
    pub fn sampling(&self) -> (u64, u64) {
        (self.0.slots, self.0.every)
    }

    fn slot(&self, seq: u64) -> Option<u64> {
        let zero_based = seq.checked_sub(1)?;
        if zero_based % self.0.every != 0 {
            return None;
        }
        let slot = zero_based / self.0.every;
        (slot < self.0.slots).then_some(slot)
    }

    /// True if the message `seq` (of any origin) is sampled.
    pub fn sampled(&self, seq: u64) -> bool {
        self.slot(seq).is_some()
    }

    fn index(&self, stage: Stage, origin: Rank, seq: u64, at: Rank) -> Option<usize> {
        let t = &self.0;
        let origin = (origin.0 as usize).checked_sub(1).filter(|o| *o < t.members)?;
        let at = (at.0 as usize).checked_sub(1).filter(|a| *a < t.members)?;
        let slot = self.slot(seq)? as usize;
        Some(((origin * t.slots as usize + slot) * STAGES + stage.index()) * t.members + at)
    }

    /// Records that the message `(origin, seq)` reached `stage` at member `at` (the origin itself for
    /// the stages that are not per peer), now; a slot keeps its first stamp. Unsampled messages and
    /// ranks outside the table are ignored.
    pub fn stamp(&self, stage: Stage, origin: Rank, seq: u64, at: Rank) {
        if let Some(index) = self.index(stage, origin, seq, at) {
            let now = self.0.epoch.elapsed().as_nanos() as u64 + 1;
            let _ = self.0.stamps[index].compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn get(&self, stage: Stage, origin: usize, slot: usize, at: usize) -> Option<i64> {
        let t = &self.0;
        let index = ((origin * t.slots as usize + slot) * STAGES + stage.index()) * t.members + at;
        match t.stamps[index].load(Ordering::Relaxed) {
            0 => None,
            ns => Some(ns as i64),
        }
    }

    /// The stamps of the message in `slot` of `origin`: `None` if it was never sent, `Some(None)` if
    /// a stage is missing.
    fn stamps(&self, origin: usize, slot: usize) -> Option<Option<Stamps>> {
        let members = self.0.members;
        let single = |stage| self.get(stage, origin, slot, origin);
        let peers = |stage| -> Option<Vec<i64>> {
            (0..members)
                .filter(|at| *at != origin)
                .map(|at| self.get(stage, origin, slot, at))
                .collect()
        };
        let called = single(Stage::Called)?;
        let stamps = || {
            Some(Stamps {
                called,
                taken: single(Stage::Taken)?,
                delivered: single(Stage::Delivered)?,
                consumed: single(Stage::Consumed)?,
                drained: peers(Stage::Drained)?,
                written: peers(Stage::Written)?,
                read: peers(Stage::Read)?,
                handled: peers(Stage::Handled)?,
                queued: peers(Stage::AckQueued)?,
                acked: peers(Stage::Acked)?,
            })
        };
        Some(stamps())
    }

    /// The per-hop statistics of every sampled message whose stages were all stamped. Read it once the
    /// members are shut down (their threads joined), so every stamp is visible.
    pub fn breakdown(&self) -> Breakdown {
        let t = &self.0;
        let mut last: Vec<Vec<i64>> = vec![Vec::new(); HOPS.len()];
        let mut each: Vec<Vec<i64>> = vec![Vec::new(); HOPS.len()];
        let (mut samples, mut incomplete) = (0, 0);
        for origin in 0..t.members {
            for slot in 0..t.slots as usize {
                let stamps = match self.stamps(origin, slot) {
                    None => continue,
                    Some(None) => {
                        incomplete += 1;
                        continue;
                    }
                    Some(Some(stamps)) if stamps.written.is_empty() => continue,
                    Some(Some(stamps)) => stamps,
                };
                samples += 1;
                for (hop, pair) in stamps.chain().windows(2).enumerate() {
                    last[hop].push(pair[1] - pair[0]);
                }
                last[HOPS.len() - 1].push(stamps.consumed - stamps.called);
                for p in 0..stamps.written.len() {
                    each[1].push(stamps.drained[p] - stamps.taken);
                    each[2].push(stamps.written[p] - stamps.drained[p]);
                    each[3].push(stamps.read[p] - stamps.written[p]);
                    each[4].push(stamps.handled[p] - stamps.read[p]);
                    each[5].push(stamps.queued[p] - stamps.handled[p]);
                    each[6].push(stamps.acked[p] - stamps.queued[p]);
                }
            }
        }
        let hops = HOPS
            .iter()
            .zip(last.iter_mut().zip(each.iter_mut()))
            .map(|(name, (last, each))| HopStats {
                name,
                last_peer: Spread::of(last),
                each_peer: (!each.is_empty()).then(|| Spread::of(each)),
            })
            .collect();
        Breakdown {
            samples,
            incomplete,
            hops,
        }
    }
}

/// One sampled message's stamps (ns): at its origin, and at each peer in rank order.
struct Stamps {
    called: i64,
    taken: i64,
    delivered: i64,
    consumed: i64,
    drained: Vec<i64>,
    written: Vec<i64>,
    read: Vec<i64>,
    handled: Vec<i64>,
    queued: Vec<i64>,
    acked: Vec<i64>,
}

impl Stamps {
    /// The stages in order, a per-peer stage at its last peer.
    fn chain(&self) -> [i64; 10] {
        let max = |v: &[i64]| v.iter().copied().max().unwrap_or_default();
        [
            self.called,
            self.taken,
            max(&self.drained),
            max(&self.written),
            max(&self.read),
            max(&self.handled),
            max(&self.queued),
            max(&self.acked),
            self.delivered,
            self.consumed,
        ]
    }
}

/// The hops, in order; the last is the whole way.
pub const HOPS: [&str; 10] = [
    "multicast() -> protocol thread takes it",
    "-> its bytes start leaving the buffer",
    "-> that send or write_all returned",
    "-> peer's reader thread has the frame",
    "-> peer's protocol thread takes it",
    "-> peer's protocol thread queues its ack",
    "-> origin's protocol thread has the last ack",
    "-> origin's protocol thread delivers it",
    "-> application reads the delivery",
    "total: multicast() -> delivery read",
];

/// Median and 90th percentile of one hop, in ns (signed: stamps of two threads can cross, e.g. a
/// reader may decode a frame before the writer's `write_all` of it has returned).
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    /// Median.
    pub p50_ns: i64,
    /// 90th percentile.
    pub p90_ns: i64,
    /// How many values were negative.
    pub negative: usize,
    /// How many values.
    pub count: usize,
}

impl Spread {
    fn of(values: &mut [i64]) -> Spread {
        values.sort_unstable();
        let at = |fraction: f64| {
            if values.is_empty() {
                0
            } else {
                values[((values.len() - 1) as f64 * fraction).round() as usize]
            }
        };
        Spread {
            p50_ns: at(0.5),
            p90_ns: at(0.9),
            negative: values.iter().filter(|v| **v < 0).count(),
            count: values.len(),
        }
    }
}

/// One hop's figures.
#[derive(Clone, Debug)]
pub struct HopStats {
    /// What the hop is (see [`HOPS`]).
    pub name: &'static str,
    /// Between the stages as reached by the last peer to reach each (per-peer stages take the latest
    /// stamp over the peers), so that the hops of one message add up to its total.
    pub last_peer: Spread,
    /// For hops between per-peer stages (or from a single stage to one): every peer's own chain,
    /// pooled over peers; `None` for the others.
    pub each_peer: Option<Spread>,
}

/// What [`HopProbe::breakdown`] found.
#[derive(Clone, Debug)]
pub struct Breakdown {
    /// Sampled messages with every stage stamped.
    pub samples: usize,
    /// Sampled messages multicast but missing a stage (not counted in the figures).
    pub incomplete: usize,
    /// Per hop, in order.
    pub hops: Vec<HopStats>,
}

/// The protocol thread's side: numbers what it cannot see the seq of, and finds acknowledgements.
pub(crate) struct EngineProbe {
    pub(crate) hops: HopProbe,
    taken: u64,
    delivered: u64,
    /// Per rank, the highest own seq its frames acknowledged.
    acked: Vec<u64>,
    /// Per rank, the highest of its seqs this member's frames to it acknowledged.
    acks_queued: Vec<u64>,
}

impl EngineProbe {
    pub(crate) fn new(hops: HopProbe) -> EngineProbe {
        let members = hops.0.members;
        EngineProbe {
            hops,
            taken: 0,
            delivered: 0,
            acked: vec![0; members + 1],
            acks_queued: vec![0; members + 1],
        }
    }

    /// The protocol thread of `me`, in `view`, queues `msg` for `to`.
    pub(crate) fn sent(&mut self, me: Rank, view: Option<&View>, to: Rank, msg: &Message) {
        let (Message::Data { acks, .. } | Message::Ack { acks, .. }) = msg else {
            return;
        };
        let Some(view) = view.filter(|v| msg.view() == Some(v.id)) else {
            return;
        };
        let (Some(theirs), Some(known)) = (view.index_of(to), self.acks_queued.get_mut(to.0 as usize)) else {
            return;
        };
        let covered = acks.get(theirs).copied().unwrap_or_default();
        for seq in *known + 1..=covered {
            self.hops.stamp(Stage::AckQueued, to, seq, me);
        }
        *known = (*known).max(covered);
    }

    /// The protocol thread of `me` takes a multicast.
    pub(crate) fn taken(&mut self, me: Rank) {
        self.taken += 1;
        self.hops.stamp(Stage::Taken, me, self.taken, me);
    }

    /// The protocol thread of `me` hands one of its own deliveries to the application.
    pub(crate) fn delivered(&mut self, me: Rank) {
        self.delivered += 1;
        self.hops.stamp(Stage::Delivered, me, self.delivered, me);
    }

    /// The protocol thread of `me`, in `view`, takes `msg` from `from`.
    pub(crate) fn frame(&mut self, me: Rank, view: Option<&View>, from: Rank, msg: &Message) {
        let acks = match msg {
            Message::Data { batch, acks, .. } => {
                for data in batch.msgs() {
                    self.hops.stamp(Stage::Handled, data.origin, data.seq, me);
                }
                acks
            }
            Message::Ack { acks, .. } => acks,
            _ => return,
        };
        let Some(view) = view.filter(|v| msg.view() == Some(v.id)) else {
            return;
        };
        let (Some(mine), Some(known)) = (view.index_of(me), self.acked.get_mut(from.0 as usize)) else {
            return;
        };
        let covered = acks.get(mine).copied().unwrap_or_default();
        for seq in *known + 1..=covered {
            self.hops.stamp(Stage::Acked, me, seq, from);
        }
        *known = (*known).max(covered);
    }
}

/// A writer thread's side: the sampled own data frames in the bytes not yet written.
#[derive(Clone, Debug)]
pub(crate) struct WriteProbe {
    pub(crate) hops: HopProbe,
    /// The member writing.
    pub(crate) me: Rank,
    /// The peer written to.
    pub(crate) peer: Rank,
}

impl WriteProbe {
    /// Adds to `seqs` the sampled seqs `frame` carries, if it is a data frame of this member's.
    pub(crate) fn sampled_seqs(&self, frame: &Frame, seqs: &mut Vec<u64>) {
        if let Frame::Protocol(Message::Data { batch, .. }) = frame {
            if batch.origin() == self.me {
                seqs.extend(batch.msgs().iter().map(|m| m.seq).filter(|seq| self.hops.sampled(*seq)));
            }
        }
    }

    /// The writer took the bytes holding these seqs' frames (`Stage::Drained`), or the `write_all`
    /// of them returned (`Stage::Written`).
    pub(crate) fn stamp(&self, stage: Stage, seqs: &[u64]) {
        for &seq in seqs {
            self.hops.stamp(stage, self.me, seq, self.peer);
        }
    }
}

/// A reader thread's side.
#[derive(Clone, Debug)]
pub(crate) struct ReadProbe {
    pub(crate) hops: HopProbe,
    /// The member reading.
    pub(crate) me: Rank,
}

impl ReadProbe {
    /// The reader decoded `frame`.
    pub(crate) fn read(&self, frame: &Frame) {
        if let Frame::Protocol(Message::Data { batch, .. }) = frame {
            for msg in batch.msgs() {
                self.hops.stamp(Stage::Read, msg.origin, msg.seq, self.me);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_evenly_and_ignores_what_is_outside_the_table() {
        let probe = HopProbe::new(3, 10, 3 * STAGES * 3 * 5);
        assert_eq!(probe.sampling(), (5, 2));
        assert!(probe.sampled(1) && !probe.sampled(2) && probe.sampled(9) && !probe.sampled(11));
        assert!(!probe.sampled(0));
        probe.stamp(Stage::Called, Rank(4), 1, Rank(4));
        probe.stamp(Stage::Called, Rank(0), 1, Rank(1));
        assert_eq!(probe.breakdown().samples, 0);
    }

    #[test]
    fn hops_of_one_message_add_up_to_its_total() {
        let probe = HopProbe::new(2, 1, 1 << 10);
        let (origin, peer) = (Rank(1), Rank(2));
        for stage in [Stage::Called, Stage::Taken] {
            probe.stamp(stage, origin, 1, origin);
        }
        for stage in [
            Stage::Drained,
            Stage::Written,
            Stage::Read,
            Stage::Handled,
            Stage::AckQueued,
            Stage::Acked,
        ] {
            probe.stamp(stage, origin, 1, peer);
        }
        for stage in [Stage::Delivered, Stage::Consumed] {
            probe.stamp(stage, origin, 1, origin);
        }
        let breakdown = probe.breakdown();
        assert_eq!((breakdown.samples, breakdown.incomplete), (1, 0));
        let hops: i64 = breakdown.hops[..HOPS.len() - 1]
            .iter()
            .map(|h| h.last_peer.p50_ns)
            .sum();
        assert_eq!(hops, breakdown.hops[HOPS.len() - 1].last_peer.p50_ns);
        assert!(breakdown.hops.iter().all(|h| h.last_peer.negative == 0));
        assert!(breakdown.hops[0].each_peer.is_none() && breakdown.hops[4].each_peer.is_some());
    }

    #[test]
    fn a_message_missing_a_stage_is_counted_apart() {
        let probe = HopProbe::new(2, 1, 1 << 10);
        probe.stamp(Stage::Called, Rank(1), 1, Rank(1));
        let breakdown = probe.breakdown();
        assert_eq!((breakdown.samples, breakdown.incomplete), (0, 1));
    }

    #[test]
    fn acknowledgements_stamp_every_newly_covered_seq_once() {
        use crate::types::{Incarnation, MemberId, ProcessId, ViewId};
        let probe = HopProbe::new(2, 4, 1 << 10);
        let members = [1, 2].map(|r| MemberId {
            rank: Rank(r),
            incarnation: Incarnation(1),
            process: ProcessId(r as u64),
        });
        let view = View {
            id: ViewId(1),
            members: members.to_vec(),
        };
        let mut engine = EngineProbe::new(probe.clone());
        let ack = |covered| Message::Ack {
            view: ViewId(1),
            acks: vec![covered, 0],
        };
        engine.frame(Rank(1), Some(&view), Rank(2), &ack(2));
        let first = probe.get(Stage::Acked, 0, 1, 1);
        engine.frame(Rank(1), Some(&view), Rank(2), &ack(3));
        assert!(first.is_some() && probe.get(Stage::Acked, 0, 1, 1) == first);
        assert!(probe.get(Stage::Acked, 0, 2, 1).is_some() && probe.get(Stage::Acked, 0, 3, 1).is_none());
    }
}
