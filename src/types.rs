//! Plain value types shared by the protocol core, the wire format and the runtime.
//!
//! Nothing here does I/O or keeps state. The one type with real meaning is [`Stamp`]: its `Ord` *is*
//! the total order within a view (Lamport time first, the origin's rank breaking ties), so the hold-back
//! queue is simply a `BTreeMap<Stamp, _>`.

use std::fmt;
use std::sync::Arc;

/// A member's rank, 1..=N, given by the helper at formation and kept for life (a rejoining process
/// comes back with its old rank and a new [`Incarnation`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank(pub u16);

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which life of a rank this is. Formation gives every member incarnation 1; a member that rejoins gets
/// the id of the view that admits it, so incarnations of one rank only grow and are decided by the group,
/// not by the joining process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Incarnation(pub u64);

/// The number of an installed view. Views are numbered 1, 2, 3, … with no gaps; view `n + 1` is decided
/// by one consensus instance among the members of view `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ViewId(pub u64);

impl fmt::Display for ViewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which process a life runs in: a fresh random number the driver draws for every life it starts
/// (formation, each rejoin, each comeback after an exclusion) and hands to the core, which never makes
/// one itself (it has no randomness).
///
/// An incarnation is decided by the group; a process identity is what lets the group's decision name
/// *which* process it admitted. Two processes that both ask to become the next life of a rank differ
/// here, so at most one of them can install the view that admits that life (`docs/PROTOCOL.md` §7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId(pub u64);

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One life of one rank: what a view lists and what a connection's handshake names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId {
    /// The rank, kept across lives.
    pub rank: Rank,
    /// The life of that rank.
    pub incarnation: Incarnation,
    /// The process that runs this life: a frame, a connection or a decision names a life only together
    /// with the process it belongs to.
    pub process: ProcessId,
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.rank.0, self.incarnation.0)
    }
}

/// The position of a message in the total order of its view: Lamport time, then origin rank.
///
/// Within one view a rank has exactly one incarnation, and one origin never reuses a Lamport time,
/// so two different messages of a view never share a stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// The origin's Lamport clock when it multicast the message.
    pub lamport: u64,
    /// The origin's rank; breaks ties between equal Lamport times.
    pub origin: Rank,
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.lamport, self.origin.0)
    }
}

/// Application bytes of one multicast. Shared, so sending one message to N peers copies no payload.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Payload(pub Arc<[u8]>);

impl Payload {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload(bytes.into())
    }
}

impl From<&[u8]> for Payload {
    fn from(bytes: &[u8]) -> Self {
        Payload(bytes.into())
    }
}

impl From<&str> for Payload {
    fn from(text: &str) -> Self {
        Payload(text.as_bytes().into())
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) if text.len() <= 32 => write!(f, "{text:?}"),
            _ => write!(f, "<{} bytes>", self.0.len()),
        }
    }
}

/// An installed view: its number and its members, sorted by rank (at most one life per rank).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct View {
    /// The view's number.
    pub id: ViewId,
    /// The members, sorted by rank, one entry per rank.
    pub members: Vec<MemberId>,
}

impl View {
    /// The view every member installs at formation: ranks 1..=N, incarnation 1, view 1, where
    /// `processes[i]` is the process of rank `i + 1` (formation learns them from the helper's roster).
    pub fn formed(processes: &[ProcessId]) -> View {
        View {
            id: ViewId(1),
            members: processes
                .iter()
                .enumerate()
                .map(|(index, process)| MemberId {
                    rank: Rank(index as u16 + 1),
                    incarnation: Incarnation(1),
                    process: *process,
                })
                .collect(),
        }
    }

    /// A formed view of `size` founders whose process of rank `r` is `ProcessId(r)`: for tests and
    /// examples that drive the core directly, where no real process identities exist.
    pub fn initial(size: u16) -> View {
        let processes: Vec<ProcessId> = (1..=size).map(|rank| ProcessId(rank as u64)).collect();
        View::formed(&processes)
    }

    /// Position of `rank` in `members`, if it is a member.
    pub fn index_of(&self, rank: Rank) -> Option<usize> {
        self.members.binary_search_by_key(&rank, |m| m.rank).ok()
    }

    /// The member entry for `rank`, if any.
    pub fn member(&self, rank: Rank) -> Option<MemberId> {
        self.index_of(rank).map(|i| self.members[i])
    }

    /// True if this exact life is a member.
    pub fn contains(&self, id: MemberId) -> bool {
        self.member(id.rank) == Some(id)
    }

    /// True if this is the view that admitted `life` (listed or not): a life's incarnation is the
    /// number of the view that admitted it (the founders': view 1).
    pub fn admits(&self, life: MemberId) -> bool {
        life.incarnation.0 == self.id.0
    }

    /// The ranks, ascending.
    pub fn ranks(&self) -> impl Iterator<Item = Rank> + '_ {
        self.members.iter().map(|m| m.rank)
    }

    /// True if `voters` (ranks of this view) form a quorum of it: more than half, or exactly half
    /// including the lowest rank. Any two quorums of one view intersect, which is what keeps a split
    /// group from deciding two different next views.
    pub fn is_quorum(&self, voters: &[Rank]) -> bool {
        let count = voters.iter().filter(|r| self.index_of(**r).is_some()).count();
        let size = self.members.len();
        if 2 * count > size {
            return true;
        }
        let lowest = self.members.first().map(|m| m.rank);
        2 * count == size && lowest.is_some_and(|low| voters.contains(&low))
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranks: Vec<String> = self.members.iter().map(|m| m.rank.0.to_string()).collect();
        write!(f, "{}", ranks.join(","))
    }
}
