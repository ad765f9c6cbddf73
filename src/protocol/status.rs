//! A node's answer to "why isn't it delivered?": the head of its hold-back queue and whose
//! acknowledgements it waits for, its view, its suspects (`tom-member --status`, the simulator's
//! failure reports).

use super::Phase;
use crate::types::{MemberId, Stamp, View};

/// Why a message is not yet delivered, as seen by one member: the answer to "why isn't it delivered?".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Status {
    /// This life.
    pub me: MemberId,
    /// Where it is in its life.
    pub phase: Phase,
    /// The installed view, if any.
    pub view: Option<View>,
    /// The Lamport clock.
    pub lamport: u64,
    /// Messages delivered since formation.
    pub delivered_count: u64,
    /// Undelivered messages held.
    pub held: usize,
    /// The head of the hold-back queue and the members whose acknowledgement it still waits for.
    pub head: Option<(Stamp, Vec<MemberId>)>,
    /// Multicasts waiting to be sent.
    pub backlog: usize,
    /// Members this one suspects.
    pub suspects: Vec<MemberId>,
    /// While joining: the last reason a member gave for not admitting this process yet.
    pub join_refusal: Option<String>,
}

impl std::fmt::Display for Status {
    /// A readable report: what a status query over a member's port answers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "member {} ({:?})", self.me, self.phase)?;
        match &self.view {
            Some(view) => {
                let lives: Vec<String> = view.members.iter().map(|m| m.to_string()).collect();
                writeln!(f, "view {}: {} (rank#incarnation)", view.id, lives.join(" "))?
            }
            None => writeln!(f, "view: none yet (joining)")?,
        }
        writeln!(
            f,
            "lamport {}, delivered {}, held back {}, backlog {}",
            self.lamport, self.delivered_count, self.held, self.backlog
        )?;
        match &self.head {
            Some((stamp, waiting)) if waiting.is_empty() => writeln!(f, "head {stamp}: deliverable")?,
            Some((stamp, waiting)) => {
                let lives: Vec<String> = waiting.iter().map(|m| m.to_string()).collect();
                writeln!(
                    f,
                    "head {stamp} (lamport.origin): waiting for acknowledgements from {}",
                    lives.join(" ")
                )?
            }
            None => writeln!(f, "head: nothing held back")?,
        }
        let suspects: Vec<String> = self.suspects.iter().map(|m| m.to_string()).collect();
        write!(
            f,
            "suspects: {}",
            if suspects.is_empty() {
                "none".to_string()
            } else {
                suspects.join(" ")
            }
        )?;
        if let Some(reason) = &self.join_refusal {
            write!(f, "\nlast join refusal: {reason}")?;
        }
        Ok(())
    }
}
