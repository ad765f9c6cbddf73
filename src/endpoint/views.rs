//! What a new view does to the connections. No connection changes role: the view changes which
//! processes are listed, and each connection's standing follows ([`super::standing`]). What is left
//! to do here: the connections of lives the view dropped close after the decision went out on them,
//! a newly listed process keeps one connection (of two, the one both ends choose: [`keep_of`]) whose
//! early frames are replayed; announced addresses are committed, and a restarted process registers
//! its admission.
use log::debug;

use super::{Action, ConnId, Endpoint, Origin};
use crate::event::Event;
use crate::types::{MemberId, View};
use crate::wire::RosterEntry;

impl Endpoint {
    pub(super) fn installed(&mut self, view: View) {
        let me = self.node.me();
        self.early
            .to
            .retain(|process, rank| rank != me.rank && view.member(rank).is_some_and(|m| m.process == process));
        self.settle(&view);
        self.commit_addresses(&view);
        self.hand_directory(&view);
        self.roles_changed = true;
        self.announce_admission(&view);
        self.transfer
            .on_view(&view, self.node.me(), self.node.delivered_count());
        self.carry_out_transfer();
        // A newcomer whose sponsor left stops at this view (`Excluded`, the last event): no `View` after.
        if !self.finished {
            self.report(Event::View(view));
        }
    }

    /// A new view changes which processes are listed; the connections follow ([`super::standing`]):
    /// a connection that served a life the view no longer lists is let go (after the decision, already
    /// queued, went out on it: that life, still running somewhere, learns it is out); a newly listed
    /// process keeps one connection, whose early frames reach the core once the outputs are out.
    pub(super) fn settle(&mut self, view: &View) {
        let me = self.node.me();
        let departed: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.life.is_some_and(|life| !view.contains(life)))
            .map(|(id, _)| *id)
            .collect();
        self.to_close.extend(departed);
        let first_view = view.admits(me);
        // This life's dials made while joining to a process the view does not list (it may still be
        // asking to rejoin): of two connections with it, keep the one it dialled.
        if first_view {
            let redundant: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.origin == Origin::Dialled && self.listed_life(c.rank, c.process).is_none())
                .filter(|(id, c)| self.conns_of(c.rank, c.process).any(|other| other != **id))
                .map(|(id, _)| *id)
                .collect();
            self.to_close.extend(redundant);
        }
        for life in view.members.iter().filter(|m| m.rank != me.rank) {
            let conns: Vec<ConnId> = self.conns_of(life.rank, life.process).collect();
            let Some(kept) = keep_of(me, *life, &conns, |c| self.conns[&c].origin) else {
                continue;
            };
            self.to_close.extend(conns.iter().filter(|c| **c != kept));
            let Some(entry) = self.conns.get_mut(&kept).filter(|c| c.life.is_none()) else {
                continue;
            };
            entry.life = Some(*life);
            let early = self.early.from.frames(life.process, kept, false);
            if !early.is_empty() {
                debug!("member {me}: {} early frames of {life} to replay", early.len());
                self.replay.push((kept, early));
            }
            self.directory.linked(*life);
        }
    }

    /// The addresses the lives of `view` announced on their connections, now that the view admits
    /// their processes, go to the directory; and this member's own entry names its current life.
    pub(super) fn commit_addresses(&mut self, view: &View) {
        let me = self.node.me();
        let mut admitted: Vec<RosterEntry> = Vec::new();
        for member in view.members.iter().filter(|m| m.rank != me.rank) {
            let announced = self
                .conn_of(*member)
                .and_then(|conn| self.conns.get(&conn))
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

    /// Every life `view` admits gets this member's directory on its connection: it may have found the
    /// group before lives it must now dial came back (and without a helper it has nobody else to
    /// learn their addresses from).
    pub(super) fn hand_directory(&mut self, view: &View) {
        let me = self.node.me();
        let admitted: Vec<MemberId> = view
            .members
            .iter()
            .filter(|m| m.rank != me.rank && view.admits(**m))
            .copied()
            .collect();
        for life in admitted {
            if let Some(conn) = self.conn_of(life) {
                self.greet(conn, life.rank);
            }
        }
    }

    /// A restarted process just installed the view that admitted it: it registers with the helper,
    /// whose roster then names the lives it may have to dial.
    pub(super) fn announce_admission(&mut self, view: &View) {
        let me = self.node.me();
        if !view.admits(me) {
            return;
        }
        if let Some((host, port)) = self.settings.announce.take() {
            self.actions.push(Action::RegisterAdmitted { life: me, host, port });
        }
    }
}

/// Which of the connections `conns` of `life`'s process `me` keeps at the install of a view that
/// lists it: the only one; of two (each dialled the other), the one the life admitted later dialled,
/// or, of two lives admitted by the same view, the one the lower rank dialled. Both ends choose alike.
fn keep_of(me: MemberId, life: MemberId, conns: &[ConnId], origin: impl Fn(ConnId) -> Origin) -> Option<ConnId> {
    let dialled_here = |c: ConnId| matches!(origin(c), Origin::Dialled | Origin::Redialled { .. });
    let mine = conns.iter().copied().find(|c| dialled_here(*c));
    let theirs = conns.iter().copied().find(|c| !dialled_here(*c));
    let prefer_mine = if life.incarnation == me.incarnation {
        me.rank < life.rank
    } else {
        me.incarnation > life.incarnation
    };
    if prefer_mine {
        mine.or(theirs)
    } else {
        theirs.or(mine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::test_support::life;

    #[test]
    fn of_two_connections_both_ends_keep_the_same_one() {
        let origin = |c: ConnId| if c == 1 { Origin::Dialled } else { Origin::Accepted };
        // 2#3 and 4#3 both admitted by view 3, each dialled the other: the lower rank's dial.
        assert_eq!(
            keep_of(life(2, 3), life(4, 3), &[1, 2], origin),
            Some(1),
            "2 keeps its dial"
        );
        assert_eq!(
            keep_of(life(4, 3), life(2, 3), &[1, 2], origin),
            Some(2),
            "4 keeps 2's dial"
        );
        // 2#3 admitted before 4#4: the later one's dial.
        assert_eq!(
            keep_of(life(2, 3), life(4, 4), &[1, 2], origin),
            Some(2),
            "2 keeps 4's dial"
        );
        assert_eq!(
            keep_of(life(4, 4), life(2, 3), &[1, 2], origin),
            Some(1),
            "4 keeps its dial"
        );
        assert_eq!(keep_of(life(4, 4), life(2, 3), &[2], origin), Some(2), "the only one");
        assert_eq!(keep_of(life(4, 4), life(2, 3), &[], origin), None);
    }
}
