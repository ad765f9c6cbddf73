//! Frames arriving on a connection: what each may do follows from the connection's standing
//! ([`super::standing`]): the core's frames, a redial's greeting, a joiner's request and announced
//! address, frames kept for a view that lists their process, snapshot chunks.

use log::{debug, info, warn};

use super::standing::Standing;
use super::{Action, Conn, ConnId, Endpoint};
use crate::message::Message;
use crate::protocol::Input;
use crate::state_transfer::Chunk;
use crate::types::{MemberId, ProcessId, Rank};
use crate::wire::{Frame, Register, Roster};

impl Endpoint {
    pub(super) fn on_frame(&mut self, conn: ConnId, frame: Frame) {
        let Some(standing) = self.standing(conn) else { return };
        let Some(&Conn {
            rank, process, used, ..
        }) = self.conns.get(&conn)
        else {
            return;
        };
        if !used && !matches!(frame, Frame::Register(_)) {
            self.mark_used(conn);
        }
        match (standing, frame) {
            (Standing::Greeting(life), Frame::Roster(roster)) => self.on_greeting(conn, life, roster),
            (_, Frame::Register(register)) => self.on_register(conn, rank, process, register),
            (Standing::Member(_), Frame::Protocol(msg)) => self.handle(Input::Received { from: rank, msg }),
            // A member's directory: its greeting (read before the connection was handed over), or the
            // directory it hands a life its view just admitted (`hand_directory`).
            (Standing::Member(_), Frame::Roster(roster)) => self.learn_addresses(roster.members),
            (Standing::Member(_), Frame::Snapshot(part)) => {
                if let Err(problem) = self.transfer.on_chunk(Chunk {
                    from: (rank, process),
                    part,
                }) {
                    warn!("member {}: {problem}; dropped", self.node.me());
                }
                self.carry_out_transfer();
            }
            (Standing::Asking, Frame::Protocol(msg)) => self.on_asking(conn, rank, process, msg),
            // Sent after a view listed that process, which this member has not installed yet.
            (Standing::Asking, frame @ Frame::Snapshot(_)) => self.keep_early(conn, rank, frame),
            (_, other) => warn!(
                "member {}: unexpected {} frame on connection {conn} dropped",
                self.node.me(),
                other.kind()
            ),
        }
    }

    /// A protocol frame of a process the view does not list: its join request, a decision of a view
    /// that lists it, a message of a life a view dropped, or a frame kept for when a view lists it.
    fn on_asking(&mut self, conn: ConnId, rank: Rank, process: ProcessId, msg: Message) {
        let me = self.node.me();
        match msg {
            Message::JoinRequest {
                rank: asked,
                process: asking,
            } => {
                if asked == rank && asking == process {
                    self.handle(Input::JoinRequest { rank, process });
                } else {
                    warn!("member {me}: unexpected join-request frame on connection {conn} dropped: the connection of process {process} asking for rank {rank} asked for rank {asked} as process {asking}");
                }
            }
            // A decision sent by a process of the view it decides: this member may not list it yet
            // (a process admitted by that very view relays it, or one that dialled this process while
            // both were joining), and it may be the only copy to come (the coordinator's own may be lost
            // with it). Kept, it would wait for an install it causes; the core takes it (a joining core
            // only if it admits this very process), and the install lists this connection's process.
            msg @ Message::Decide { .. } if decided_with(&msg, rank, process) => {
                info!("member {me}: decision from {rank} (process {process}), a member of the view it decides");
                self.handle(Input::Received { from: rank, msg });
            }
            // A message for an older view from a process this view does not list: a life a view
            // dropped, still in its old view because its connections to the members that installed
            // the new one broke. The decision that installed this view tells it it is out, as the core
            // tells a member that fell behind (`on_prepare`); kept, it would wait for ever.
            msg if self.is_behind(&msg) => {
                if let Some(decision) = self.node.last_decision() {
                    let (view, kind) = (decision.view.id, msg.kind());
                    info!("member {me}: {kind} frame of an older view from process {process} of rank {rank}, which view {view} does not list: the decision goes to it");
                    let proposal = Box::new(decision.clone());
                    self.write(conn, Frame::Protocol(Message::Decide { proposal }));
                }
            }
            msg => self.keep_early(conn, rank, Frame::Protocol(msg)),
        }
    }

    /// A restarted process announces the address it listens at: committed once a view lists it.
    fn on_register(&mut self, conn: ConnId, rank: Rank, process: ProcessId, register: Register) {
        if register.rejoin == Some(rank) && register.process == process && register.admitted.is_none() {
            if let Some(entry) = self.conns.get_mut(&conn) {
                entry.announced = Some((register.host, register.port));
            }
        } else {
            debug!(
                "member {}: unexpected registration on connection {conn} dropped",
                self.node.me()
            );
        }
    }

    /// True if `msg` is a membership message (a suspicion, a view change's, a leave) naming a view
    /// older than the installed one: what a life a view dropped sends while it waits in its old view.
    /// Data and acknowledgements are kept like any other early frame: they ask for nothing.
    fn is_behind(&self, msg: &Message) -> bool {
        let current = self.node.view().map(|v| v.id);
        let membership = !matches!(msg, Message::Data { .. } | Message::Ack { .. });
        membership
            && msg
                .view()
                .is_some_and(|view| current.is_some_and(|current| view < current))
    }

    /// The greeting on a connection this member dialled to `life`: taken as its connection if `life`
    /// answered, the view still lists it, and no connection of it came meanwhile.
    pub(super) fn on_greeting(&mut self, conn: ConnId, life: MemberId, roster: Roster) {
        let me = self.node.me();
        self.learn_addresses(roster.members);
        let answered = roster.from;
        // The process is what a connection speaks for: a process that greeted while still joining
        // names incarnation 0, and is the very life the view admitted since.
        let wanted = answered.is_some_and(|a| a.rank == life.rank && a.process == life.process)
            && self.listed_life(life.rank, life.process).is_some()
            && self.conn_of(life).is_none()
            && !self.directory.was_linked(life);
        self.directory.dial_ended(life);
        if !wanted {
            info!("member {me}: dialled {life}; {answered:?} answered, not taken");
            self.close(conn);
            return;
        }
        info!("member {me}: dialled {life}, which it had no connection to");
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.greeted = true;
            entry.life = Some(life);
        }
        self.directory.linked(life);
        self.roles_changed = true;
        self.send_unsent(life);
    }

    /// Every address this member knows, and the life that answers, on `conn` of a process of `rank`:
    /// the first frame on a connection a restarted process dialled (heartbeats aside), which names the
    /// life the connection speaks with, and the directory a life the view just admitted gets. Only
    /// for this connection: a next connection of that process is greeted anew.
    pub(super) fn greet(&mut self, conn: ConnId, rank: Rank) {
        let roster = Roster {
            rank,
            size: self.settings.size,
            members: self.directory.entries().to_vec(),
            from: Some(self.node.me()),
        };
        self.actions.push(Action::Write {
            conn,
            frame: Frame::Roster(roster),
        });
    }

    /// Keeps a frame of an asking connection until a view lists its process; a connection that sends
    /// more than [`super::early_bytes_max`] before that is closed.
    pub(super) fn keep_early(&mut self, conn: ConnId, rank: Rank, frame: Frame) {
        let me = self.node.me();
        let Some(process) = self.conns.get(&conn).map(|c| c.process) else {
            return;
        };
        let kind = frame.kind();
        let Ok(kept) = self.early.from.keep(process, conn, frame) else {
            warn!("member {me}: connection {conn} of rank {rank} sent over {} bytes before a view listed its process; closing it", self.early.from.limit());
            self.close(conn);
            return;
        };
        if kept == 1 {
            info!("member {me}: {kind} frame on connection {conn} of rank {rank}, asking to rejoin, held until a view admits it");
        }
    }
}

/// True if `msg` decides a view that lists `process` as the life of `rank` (its sender is a member of
/// the view it decides).
fn decided_with(msg: &Message, rank: Rank, process: ProcessId) -> bool {
    matches!(msg, Message::Decide { proposal } if proposal.view.member(rank).is_some_and(|m| m.process == process))
}
