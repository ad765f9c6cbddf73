//! What a new view does to the connections: joiner connections of the lives it admits are promoted,
//! connections of departed lives close after the decision went out on them, a newly admitted life keeps
//! its dials to processes still joining ([`super::roles`]); announced addresses are committed, and a
//! restarted process registers its admission.

use log::{debug, info};

use super::{roles, Action, ConnId, Endpoint, Role};
use crate::event::Event;
use crate::types::{Rank, View};
use crate::wire::RosterEntry;

impl Endpoint {
    pub(super) fn installed(&mut self, view: View) {
        self.unsent
            .retain(|rank, (process, _)| view.member(*rank).is_some_and(|m| m.process == *process));
        self.adopt(&view);
        self.commit_addresses(&view);
        self.hand_directory(&view);
        self.roles_changed = true;
        self.announce_admission(&view);
        self.transfer_state(&view);
        // A newcomer whose sponsor left stops at this view (`Excluded`, the last event): no `View` after.
        if !self.finished {
            self.report(Event::View(view));
        }
    }

    /// A new view: joiner connections of the processes it admitted become member connections,
    /// connections that speak for no life it lists close once the decision (already queued) has gone
    /// out, and a life just admitted keeps its dials to processes still joining ([`roles`]).
    pub(super) fn adopt(&mut self, view: &View) {
        let me = self.node.me();
        let adoption = roles::adopt(me, view, &self.links(), &self.joiner_conn, &self.dialled_while_joining);
        for (rank, conn) in adoption.promote {
            let Some(entry) = self.conns.get_mut(&conn) else {
                continue;
            };
            let process = entry.process;
            entry.role = Role::Member(rank);
            if !entry.early.is_empty() {
                debug!(
                    "member {me}: {} early frames ({} bytes) of rank {rank} to replay",
                    entry.early.len(),
                    entry.early.bytes()
                );
                self.replay.push((conn, entry.early.take()));
            }
            self.joiner_conn.remove(&(rank, process));
            self.member_conn.insert(rank, conn);
            if let Some(life) = view.member(rank).filter(|m| m.process == process) {
                self.directory.linked(life);
            }
        }
        for &(rank, conn) in &adoption.demote {
            info!("member {me}: connection {conn}, dialled while joining, speaks for no life of rank {rank} in view {}: kept as its process's joiner connection", view.id);
        }
        self.to_demote.extend(adoption.demote);
        self.to_close.extend(adoption.close);
    }

    /// A member connection dialled while joining, to a process the view does not list, becomes that
    /// process's joiner connection (after the decision went out on it).
    ///
    /// The rank's member connection may already be another one: the view also promoted the connection
    /// the listed life dialled (rejoin seed 19242: a dial to a process still joining, left in neither
    /// role, was never promoted when a later view admitted that process, and the group excluded it for
    /// want of a connection).
    pub(super) fn demote(&mut self, rank: Rank, conn: ConnId) {
        if self.member_conn.get(&rank) == Some(&conn) {
            self.member_conn.remove(&rank);
        }
        self.dialled_while_joining.remove(&conn);
        let Some(entry) = self.conns.get_mut(&conn).filter(|c| c.role == Role::Member(rank)) else {
            return;
        };
        entry.role = Role::Joiner(rank);
        let process = entry.process;
        self.roles_changed = true;
        if let Some(older) = self.joiner_conn.insert((rank, process), conn) {
            self.close(older);
        }
    }

    /// The addresses the lives of `view` announced on their connections, now that the view admits
    /// their processes, go to the directory; and this member's own entry names its current life.
    pub(super) fn commit_addresses(&mut self, view: &View) {
        let me = self.node.me();
        let mut admitted: Vec<RosterEntry> = Vec::new();
        for member in view.members.iter().filter(|m| m.rank != me.rank) {
            let announced = self
                .member_conn
                .get(&member.rank)
                .and_then(|conn| self.conns.get(conn))
                .filter(|conn| conn.process == member.process)
                .and_then(|conn| conn.announced.clone());
            if let Some((host, port)) = announced {
                admitted.push(RosterEntry {
                    rank: member.rank,
                    host,
                    port,
                    incarnation: member.incarnation,
                    process: member.process,
                });
            }
        }
        if let Some(own) = self.directory.own(me.rank).cloned() {
            admitted.push(RosterEntry {
                incarnation: me.incarnation,
                process: me.process,
                ..own
            });
        }
        self.learn_addresses(admitted);
    }

    /// A restarted process just installed the view that admitted it: it registers with the helper,
    /// whose roster then names the lives it may have to dial.
    pub(super) fn announce_admission(&mut self, view: &View) {
        let me = self.node.me();
        if me.incarnation.0 != view.id.0 {
            return;
        }
        if let Some((host, port)) = self.settings.announce.take() {
            self.actions.push(Action::RegisterAdmitted { life: me, host, port });
        }
    }
}
