//! The order of the state transfer, on the receiving side and the sponsor's: which snapshot counts,
//! when a returning member's events are held back, and when a sponsor that still waits for its own
//! state may hand it on.
//!
//! A returning member expects a snapshot from the moment it starts (the sponsor's chunks may arrive
//! before this member learns it was admitted). At the view that admits it, only chunks of that view's
//! sponsor, for that view, count; from then on its events are held until the whole snapshot is
//! restored, and released in order after it. A sponsor still waiting for its own snapshot holds its
//! hand-off with its events, so the state it hands on is the state at the newcomer's join position.
//!
//! # Invariants
//! - chunks are taken only in order: offset 0 starts an assembly, every other chunk must continue it
//!   exactly (same sender, view, position and length, next offset), or the assembly is dropped;
//! - nothing is held unless a snapshot is awaited; releasing keeps the order things were held in.

use crate::event::Event;
use crate::types::{MemberId, ProcessId, Rank, View, ViewId};

/// The life of `view` that hands the state to its new lives: its lowest rank that is not new itself.
pub fn sponsor(view: &View) -> Option<MemberId> {
    view.members.iter().find(|m| m.incarnation.0 != view.id.0).copied()
}

/// The lives that `view` admits.
pub fn new_lives(view: &View) -> impl Iterator<Item = MemberId> + '_ {
    view.members
        .iter()
        .filter(move |m| m.incarnation.0 == view.id.0)
        .copied()
}

/// One chunk of a snapshot, as it arrived.
#[derive(Clone, Debug, Hash)]
pub struct Chunk {
    /// The rank and process it comes from.
    pub from: (Rank, ProcessId),
    /// The view whose new lives it is for.
    pub view: ViewId,
    /// The position the state stands at.
    pub position: u64,
    /// Where the chunk starts in the snapshot.
    pub offset: u64,
    /// The snapshot's length.
    pub total: u64,
    /// The chunk's bytes.
    pub bytes: Vec<u8>,
}

/// A snapshot being reassembled from its chunks.
#[derive(Clone, Debug, Hash)]
struct Assembly {
    from: (Rank, ProcessId),
    view: ViewId,
    position: u64,
    total: u64,
    bytes: Vec<u8>,
}

impl Assembly {
    fn is_complete(&self) -> bool {
        self.bytes.len() as u64 == self.total
    }
}

/// What is deferred while the own snapshot is awaited (not to be confused with the hold-back queue
/// of the core, which holds messages until they may be delivered).
#[derive(Clone, Debug, Hash)]
pub enum Deferred {
    /// An event for the application.
    Event(Event),
    /// `view` made this member the sponsor of its new lives: hand them the state at `position` once
    /// every event before it is released.
    HandOff {
        /// The view.
        view: View,
        /// The position.
        position: u64,
    },
}

/// A whole snapshot, to restore before the released items.
#[derive(Clone, Debug, Hash)]
pub struct Restored {
    /// Who sent it.
    pub sponsor: MemberId,
    /// The position it stands at.
    pub position: u64,
    /// The snapshot.
    pub bytes: Vec<u8>,
    /// What was held, in order.
    pub released: Vec<Deferred>,
}

/// What a new view means for the transfer.
#[derive(Clone, Debug, Hash)]
pub enum AtView {
    /// Nothing to do now.
    Nothing,
    /// The snapshot had come early and is whole.
    Restored(Restored),
    /// The awaited sponsor is not in the view: the state cannot come; this member stops.
    SponsorGone {
        /// The sponsor.
        sponsor: MemberId,
        /// The view whose state was awaited.
        awaited: ViewId,
    },
}

#[derive(Clone, Debug, Hash)]
enum TransferStage {
    /// Nothing to receive.
    None,
    /// Not yet in a view; snapshot chunks that arrive before it are kept.
    Admitted { early: Option<Assembly> },
    /// Waiting for the snapshot of `view` from `sponsor`; events are held.
    Awaiting {
        sponsor: MemberId,
        view: ViewId,
        assembly: Option<Assembly>,
    },
}

/// A member's side of the state transfer.
#[derive(Clone, Debug, Hash)]
pub struct StateTransfer {
    stage: TransferStage,
    deferred: Vec<Deferred>,
}

impl StateTransfer {
    /// `expecting`: a returning member of a group with state to transfer.
    pub fn new(expecting: bool) -> StateTransfer {
        let stage = if expecting {
            TransferStage::Admitted { early: None }
        } else {
            TransferStage::None
        };
        StateTransfer {
            stage,
            deferred: Vec::new(),
        }
    }

    /// True while this member's events wait for its snapshot.
    pub fn is_awaiting(&self) -> bool {
        matches!(self.stage, TransferStage::Awaiting { .. })
    }

    /// Holds `item` if a snapshot is awaited; otherwise gives it back.
    pub fn defer(&mut self, item: Deferred) -> Option<Deferred> {
        if self.is_awaiting() {
            self.deferred.push(item);
            None
        } else {
            Some(item)
        }
    }

    /// A view was installed.
    pub fn on_view(&mut self, view: &View) -> AtView {
        match std::mem::replace(&mut self.stage, TransferStage::None) {
            TransferStage::Admitted { early } => {
                let Some(sponsor) = sponsor(view) else {
                    return AtView::Nothing;
                };
                // Chunks that came before the view count only if they are the sponsor's, for this view.
                let early = early.filter(|a| a.from == (sponsor.rank, sponsor.process) && a.view == view.id);
                self.stage = TransferStage::Awaiting {
                    sponsor,
                    view: view.id,
                    assembly: early,
                };
                self.restore_if_complete().map_or(AtView::Nothing, AtView::Restored)
            }
            TransferStage::Awaiting {
                sponsor, view: awaited, ..
            } if !view.contains(sponsor) => {
                self.deferred.clear();
                AtView::SponsorGone { sponsor, awaited }
            }
            other => {
                self.stage = other;
                AtView::Nothing
            }
        }
    }

    /// A snapshot chunk arrived: `Ok(Some)` once the awaited snapshot is whole, `Err` with what was
    /// wrong (the chunk is dropped), `Ok(None)` otherwise (kept, or not for this member).
    pub fn on_chunk(&mut self, chunk: Chunk) -> Result<Option<Restored>, String> {
        let (from, view) = (chunk.from, chunk.view);
        let added = match &mut self.stage {
            TransferStage::Admitted { early } => add_chunk(early, chunk),
            TransferStage::Awaiting {
                sponsor,
                view: awaited,
                assembly,
            } if (sponsor.rank, sponsor.process) == from && *awaited == view => add_chunk(assembly, chunk),
            _ => return Ok(None),
        };
        added?;
        Ok(self.restore_if_complete())
    }

    fn restore_if_complete(&mut self) -> Option<Restored> {
        let complete = matches!(&self.stage, TransferStage::Awaiting { assembly: Some(a), .. } if a.is_complete());
        if !complete {
            return None;
        }
        let TransferStage::Awaiting {
            sponsor,
            assembly: Some(assembly),
            ..
        } = std::mem::replace(&mut self.stage, TransferStage::None)
        else {
            return None;
        };
        Some(Restored {
            sponsor,
            position: assembly.position,
            bytes: assembly.bytes,
            released: std::mem::take(&mut self.deferred),
        })
    }
}

/// Adds `chunk` to the assembly in `slot` (see the module's invariants).
fn add_chunk(slot: &mut Option<Assembly>, chunk: Chunk) -> Result<(), String> {
    if chunk.offset == 0 {
        *slot = Some(Assembly {
            from: chunk.from,
            view: chunk.view,
            position: chunk.position,
            total: chunk.total,
            bytes: chunk.bytes,
        });
        return Ok(());
    }
    let fits = slot.as_ref().is_some_and(|a| {
        a.from == chunk.from
            && a.view == chunk.view
            && a.position == chunk.position
            && a.total == chunk.total
            && a.bytes.len() as u64 == chunk.offset
    });
    if !fits {
        *slot = None;
        return Err(format!(
            "snapshot chunk at offset {} of {} from rank {} does not continue the snapshot in progress",
            chunk.offset, chunk.total, chunk.from.0
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
    use crate::endpoint::test_support::life;

    fn chunk(from: MemberId, view: u64, offset: u64, total: u64, bytes: &[u8]) -> Chunk {
        Chunk {
            from: (from.rank, from.process),
            view: ViewId(view),
            position: 7,
            offset,
            total,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn an_early_snapshot_of_the_sponsor_is_restored_at_the_admitting_view() {
        let view = View {
            id: ViewId(3),
            members: vec![life(1, 1), life(2, 3)],
        };
        let mut transfer = StateTransfer::new(true);
        assert!(transfer.on_chunk(chunk(life(1, 1), 3, 0, 2, b"ab")).unwrap().is_none());
        let AtView::Restored(restored) = transfer.on_view(&view) else {
            panic!("restored at the view")
        };
        assert_eq!((restored.sponsor, restored.bytes.as_slice()), (life(1, 1), &b"ab"[..]));
        assert!(!transfer.is_awaiting());
    }

    #[test]
    fn events_wait_for_the_whole_snapshot_and_a_stray_chunk_breaks_the_assembly() {
        let view = View {
            id: ViewId(3),
            members: vec![life(1, 1), life(2, 3)],
        };
        let mut transfer = StateTransfer::new(true);
        assert!(matches!(transfer.on_view(&view), AtView::Nothing));
        assert!(
            transfer.defer(Deferred::Event(Event::Left)).is_none(),
            "held while awaiting"
        );
        assert!(transfer.on_chunk(chunk(life(1, 1), 3, 0, 4, b"ab")).unwrap().is_none());
        assert!(transfer.on_chunk(chunk(life(1, 1), 3, 3, 4, b"cd")).is_err(), "a gap");
        assert!(transfer.on_chunk(chunk(life(1, 1), 3, 0, 4, b"ab")).unwrap().is_none());
        let restored = transfer.on_chunk(chunk(life(1, 1), 3, 2, 4, b"cd")).unwrap().unwrap();
        assert_eq!(restored.bytes, b"abcd");
        assert_eq!(restored.released.len(), 1);
        assert!(
            transfer.defer(Deferred::Event(Event::Left)).is_some(),
            "nothing held once restored"
        );
    }

    #[test]
    fn a_sponsor_that_leaves_first_stops_the_newcomer() {
        let mut transfer = StateTransfer::new(true);
        let admitting = View {
            id: ViewId(3),
            members: vec![life(1, 1), life(2, 3)],
        };
        transfer.on_view(&admitting);
        let without = View {
            id: ViewId(4),
            members: vec![life(2, 3)],
        };
        assert!(matches!(transfer.on_view(&without), AtView::SponsorGone { .. }));
    }
}
