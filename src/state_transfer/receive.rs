//! The receiving side of the state transfer: which snapshot counts, and when it is whole.
//!
//! A returning member expects a snapshot from the moment it starts (the sponsor's chunks may arrive
//! before this member learns it was admitted). At the view that admits it, only chunks of that view's
//! sponsor, for that view, count; from then on it awaits them until the snapshot is whole.
//!
//! # Invariants
//! - chunks are taken only in order: offset 0 starts an assembly, every other chunk must continue it
//!   exactly (same sender, view, position and length, next offset), or the assembly is dropped;
//! - a snapshot is whole only if it is the awaited sponsor's, for the awaited view.

use super::sponsor;
use crate::types::{MemberId, ProcessId, Rank, View, ViewId};
use crate::wire::SnapshotChunk;

/// One chunk of a snapshot, as it arrived from the rank and process `from`.
#[derive(Clone, Debug, Hash)]
pub struct Chunk {
    /// The rank and process it comes from.
    pub from: (Rank, ProcessId),
    /// The chunk.
    pub part: SnapshotChunk,
}

/// A whole snapshot: the application's state after the group's first `position` deliveries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Snapshot {
    /// The life that sent it.
    pub sponsor: MemberId,
    /// The number of deliveries the state reflects (its position in the total order).
    pub position: u64,
    /// The state, as the application encoded it.
    pub bytes: Vec<u8>,
}

/// What a new view means for the receiving side.
#[derive(Clone, Debug, Hash)]
pub(super) enum AtView {
    /// Nothing to do now.
    Nothing,
    /// The snapshot had come early and is whole.
    Whole(Snapshot),
    /// The awaited sponsor is not in the view: the state cannot come.
    SponsorGone { sponsor: MemberId, awaited: ViewId },
}

/// Where a member stands as the receiver of a snapshot.
#[derive(Clone, Debug, Hash)]
pub(super) enum Receiving {
    /// Nothing to receive.
    Nothing,
    /// Not yet in a view; snapshot chunks that arrive before it are kept.
    Admitted { early: Option<Assembly> },
    /// Waiting for the snapshot of `view` from `sponsor`.
    Awaiting {
        sponsor: MemberId,
        view: ViewId,
        assembly: Option<Assembly>,
    },
}

impl Receiving {
    /// A view was installed.
    pub fn on_view(&mut self, view: &View) -> AtView {
        match std::mem::replace(self, Receiving::Nothing) {
            Receiving::Admitted { early } => {
                let Some(sponsor) = sponsor(view) else {
                    return AtView::Nothing;
                };
                // Chunks that came before the view count only if they are the sponsor's, for this view.
                let early = early.filter(|a| a.from == (sponsor.rank, sponsor.process) && a.view == view.id);
                *self = Receiving::Awaiting {
                    sponsor,
                    view: view.id,
                    assembly: early,
                };
                self.take_whole().map_or(AtView::Nothing, AtView::Whole)
            }
            Receiving::Awaiting {
                sponsor, view: awaited, ..
            } if !view.contains(sponsor) => AtView::SponsorGone { sponsor, awaited },
            other => {
                *self = other;
                AtView::Nothing
            }
        }
    }

    /// A snapshot chunk arrived: `Ok(Some)` once the awaited snapshot is whole, `Err` with what was
    /// wrong (the chunk is dropped), `Ok(None)` otherwise (kept, or not for this member).
    pub fn on_chunk(&mut self, chunk: Chunk) -> Result<Option<Snapshot>, String> {
        let (from, view) = (chunk.from, chunk.part.view);
        match self {
            Receiving::Admitted { early } => add_chunk(early, chunk)?,
            Receiving::Awaiting {
                sponsor,
                view: awaited,
                assembly,
            } if (sponsor.rank, sponsor.process) == from && *awaited == view => add_chunk(assembly, chunk)?,
            _ => return Ok(None),
        }
        Ok(self.take_whole())
    }

    fn take_whole(&mut self) -> Option<Snapshot> {
        let whole = matches!(self, Receiving::Awaiting { assembly: Some(a), .. } if a.is_whole());
        if !whole {
            return None;
        }
        let Receiving::Awaiting {
            sponsor,
            assembly: Some(assembly),
            ..
        } = std::mem::replace(self, Receiving::Nothing)
        else {
            return None;
        };
        Some(Snapshot {
            sponsor,
            position: assembly.position,
            bytes: assembly.bytes,
        })
    }
}

/// A snapshot being reassembled from its chunks.
#[derive(Clone, Debug, Hash)]
pub(super) struct Assembly {
    from: (Rank, ProcessId),
    view: ViewId,
    position: u64,
    total: u64,
    bytes: Vec<u8>,
}

impl Assembly {
    fn is_whole(&self) -> bool {
        self.bytes.len() as u64 == self.total
    }
}

/// Adds `chunk` to the assembly in `slot` (see the module's invariants).
fn add_chunk(slot: &mut Option<Assembly>, chunk: Chunk) -> Result<(), String> {
    let Chunk { from, part: chunk } = chunk;
    if chunk.offset == 0 {
        *slot = Some(Assembly {
            from,
            view: chunk.view,
            position: chunk.position,
            total: chunk.total,
            bytes: chunk.bytes,
        });
        return Ok(());
    }
    let fits = slot.as_ref().is_some_and(|a| {
        a.from == from
            && a.view == chunk.view
            && a.position == chunk.position
            && a.total == chunk.total
            && a.bytes.len() as u64 == chunk.offset
    });
    if !fits {
        *slot = None;
        return Err(format!(
            "snapshot chunk at offset {} of {} from rank {} does not continue the snapshot in progress",
            chunk.offset, chunk.total, from.0
        ));
    }
    if let Some(assembly) = slot.as_mut() {
        assembly.bytes.extend_from_slice(&chunk.bytes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Incarnation;

    fn life(rank: u16, incarnation: u64) -> MemberId {
        MemberId {
            rank: Rank(rank),
            incarnation: Incarnation(incarnation),
            process: ProcessId(u64::from(rank) * 100 + incarnation),
        }
    }

    fn chunk(from: MemberId, view: u64, offset: u64, total: u64, bytes: &[u8]) -> Chunk {
        Chunk {
            from: (from.rank, from.process),
            part: SnapshotChunk {
                view: ViewId(view),
                position: 7,
                offset,
                total,
                bytes: bytes.to_vec(),
            },
        }
    }

    fn admitting() -> View {
        View {
            id: ViewId(3),
            members: vec![life(1, 1), life(2, 3)],
        }
    }

    #[test]
    fn an_early_snapshot_of_the_sponsor_is_whole_at_the_admitting_view() {
        let mut receiving = Receiving::Admitted { early: None };
        assert!(receiving.on_chunk(chunk(life(1, 1), 3, 0, 2, b"ab")).unwrap().is_none());
        let AtView::Whole(whole) = receiving.on_view(&admitting()) else {
            panic!("whole at the view")
        };
        assert_eq!((whole.sponsor, whole.bytes.as_slice()), (life(1, 1), &b"ab"[..]));
        assert!(matches!(receiving, Receiving::Nothing));
    }

    #[test]
    fn a_stray_chunk_breaks_the_assembly() {
        let mut receiving = Receiving::Admitted { early: None };
        assert!(matches!(receiving.on_view(&admitting()), AtView::Nothing));
        assert!(receiving.on_chunk(chunk(life(1, 1), 3, 0, 4, b"ab")).unwrap().is_none());
        assert!(receiving.on_chunk(chunk(life(1, 1), 3, 3, 4, b"cd")).is_err(), "a gap");
        assert!(receiving.on_chunk(chunk(life(1, 1), 3, 0, 4, b"ab")).unwrap().is_none());
        let whole = receiving.on_chunk(chunk(life(1, 1), 3, 2, 4, b"cd")).unwrap().unwrap();
        assert_eq!(whole.bytes, b"abcd");
    }

    #[test]
    fn chunks_of_another_sender_or_view_do_not_count() {
        let mut receiving = Receiving::Admitted { early: None };
        receiving.on_view(&admitting());
        assert!(receiving.on_chunk(chunk(life(2, 3), 3, 0, 1, b"a")).unwrap().is_none());
        assert!(receiving.on_chunk(chunk(life(1, 1), 2, 0, 1, b"a")).unwrap().is_none());
        assert!(matches!(receiving, Receiving::Awaiting { assembly: None, .. }));
    }

    #[test]
    fn a_sponsor_that_leaves_first_is_gone() {
        let mut receiving = Receiving::Admitted { early: None };
        receiving.on_view(&admitting());
        let without = View {
            id: ViewId(4),
            members: vec![life(2, 3)],
        };
        assert!(matches!(receiving.on_view(&without), AtView::SponsorGone { .. }));
    }
}
