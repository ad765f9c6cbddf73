//! What a connection may do, read from the installed view (never stored), and the endpoint's
//! invariants.
//!
//! A connection speaks for the (rank, process) it opened with, for its whole life. Its standing is:
//! - **member**: it is *the* connection of a process the installed view lists (a process has at most
//!   one); its frames feed the core, and its close suspects that life. Before a first view (a
//!   restarted process still joining), its latest dial to each rank stands so too: its core takes
//!   their frames and installs only a decision that admits it;
//! - **asking**: its process is not listed (a process asking to rejoin, or one this process dialled
//!   while joining that a view did not admit): join requests, the address it announces and a
//!   decision of a view that lists that process are taken, a message for an older view gets the
//!   installed view's decision, the rest is kept until a view lists its process ([`super::early`]);
//!   replies to a
//!   rank's join requests go to every asking connection of that rank;
//! - **greeting**: a redial the endpoint asked for, whose greeting has not named the life yet.
//!
//! So a view change never moves a connection from one role to another: it changes which processes
//! are listed, and the standing of every connection follows.

use super::{ConnId, Endpoint, Origin};
use crate::types::{MemberId, ProcessId, Rank};

/// Where a connection stands in the installed view (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// The connection of a listed life (`None`: a dial of this process before its first view).
    Member(Option<MemberId>),
    /// Of a process the view does not list.
    Asking,
    /// A redial waiting for the greeting that names `life`.
    Greeting(MemberId),
}

impl Endpoint {
    /// Where `conn` stands now.
    pub(super) fn standing(&self, conn: ConnId) -> Option<Standing> {
        let entry = self.conns.get(&conn)?;
        if let Origin::Redialled { life } = entry.origin {
            if !entry.greeted {
                return Some(Standing::Greeting(life));
            }
        }
        if self.to_close.contains(&conn) {
            return Some(Standing::Asking);
        }
        let Some(view) = self.node.view() else {
            // Only its own dials: what members send on theirs before this process installs the view
            // that admits it is kept for that view (its core would drop it now).
            let dialled = entry.origin == Origin::Dialled && self.send_conn(entry.rank) == Some(conn);
            return Some(if dialled {
                Standing::Member(None)
            } else {
                Standing::Asking
            });
        };
        match view.member(entry.rank) {
            Some(life) if life.process == entry.process && self.conn_of(life) == Some(conn) => {
                Some(Standing::Member(Some(life)))
            }
            _ => Some(Standing::Asking),
        }
    }

    /// The connections of `process` for `rank` (greeted, not let go).
    pub(super) fn conns_of(&self, rank: Rank, process: ProcessId) -> impl Iterator<Item = ConnId> + '_ {
        self.conns
            .iter()
            .filter(move |(id, c)| c.rank == rank && c.process == process && c.greeted && !self.to_close.contains(id))
            .map(|(id, _)| *id)
    }

    /// The connection of `life`, a life of the view: the one connection of its process.
    pub(super) fn conn_of(&self, life: MemberId) -> Option<ConnId> {
        self.conns_of(life.rank, life.process).next()
    }

    /// The connection frames for `rank` go on: the one of the process the view lists for it; for a
    /// rank the view does not list, the connection of its departed life while the view lets it go
    /// (the decision goes out to it: a leaver learns it left); before a first view, this process's
    /// latest dial to that rank, or else the latest connection a process of that rank dialled to it
    /// (that process may have been admitted since: rejoin seed 21791, where the joiner's only dial
    /// to a member closed and it could ask nobody else); what comes back on such a connection stands
    /// as asking (a decision of a view listing that process reaches the core, the rest is kept).
    pub(super) fn send_conn(&self, rank: Rank) -> Option<ConnId> {
        match self.node.view() {
            Some(view) => match view.member(rank) {
                Some(life) => self.conn_of(life),
                None => self
                    .to_close
                    .iter()
                    .copied()
                    .find(|c| self.conns.get(c).is_some_and(|c| c.rank == rank && c.life.is_some())),
            },
            None => {
                let mut contacts = self.conns.iter().rev().filter(|(id, c)| {
                    c.rank == rank && c.rank != self.node.me().rank && c.greeted && !self.to_close.contains(id)
                });
                let first = contacts.clone().next().map(|(id, _)| *id);
                contacts
                    .find(|(_, c)| c.origin == Origin::Dialled)
                    .map(|(id, _)| *id)
                    .or(first)
            }
        }
    }

    /// The asking connections of `rank` (of any process): where replies to its join requests go.
    pub(super) fn asking_conns(&self, rank: Rank) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(id, c)| c.rank == rank && self.standing(**id) == Some(Standing::Asking))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Checks the endpoint's invariants (and the core's); panics naming the first that does not hold.
    /// Run after every call in debug builds and in the simulator.
    pub fn check_invariants(&self) {
        let me = self.node.me();
        assert!(
            self.to_close.is_empty(),
            "member {me}: connections let go but not closed after a call"
        );
        for (id, conn) in &self.conns {
            if let Some(life) = conn.life {
                assert!(
                    life.rank == conn.rank && life.process == conn.process,
                    "member {me}: connection {id} of process {} of rank {} served {life}",
                    conn.process,
                    conn.rank
                );
            }
        }
        if let Some(view) = self.node.view() {
            for life in &view.members {
                let conns: Vec<ConnId> = self.conns_of(life.rank, life.process).collect();
                assert!(conns.len() <= 1, "member {me}: {life} has connections {conns:?}");
                for id in conns {
                    assert_eq!(
                        self.conns[&id].life,
                        Some(*life),
                        "member {me}: connection {id} of {life}"
                    );
                }
            }
            for (process, rank) in self.early.to.keys() {
                let listed = view.member(rank).is_some_and(|m| m.process == process);
                assert!(
                    rank != me.rank && (listed || self.conns_of(rank, process).next().is_some()),
                    "member {me}: frames kept for process {process} of rank {rank}, no life of view {} and no connection",
                    view.id
                );
            }
        }
        for (process, conn) in self.early.from.keys() {
            assert!(
                self.conns.get(&conn).is_some_and(|c| c.process == process),
                "member {me}: frames kept from process {process} on connection {conn}, which is not its"
            );
        }
        self.node.check_invariants();
    }
}
