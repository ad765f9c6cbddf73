//! Frames arriving on a connection: which reach the core, which are held for a view that admits their
//! process, a dialled connection's greeting, a joiner's announced address, snapshot chunks.

use log::{debug, info, warn};

use super::snapshot::Chunk;
use super::ConnId;
use super::{Endpoint, Role};
use crate::message::Message;
use crate::protocol::{Input, Phase};
use crate::types::{MemberId, ProcessId, Rank};
use crate::wire::{Frame, Roster};

impl Endpoint {
    pub(super) fn on_frame(&mut self, conn: ConnId, frame: Frame) {
        let Some((role, process, used)) = self.conns.get(&conn).map(|c| (c.role, c.process, c.used)) else {
            return;
        };
        let me = self.node.me();
        if !used && !matches!(frame, Frame::Register(_)) {
            if let Some(entry) = self.conns.get_mut(&conn) {
                entry.mark_used();
            }
        }
        match (role, frame) {
            (Role::Greeting(life), Frame::Roster(roster)) => self.on_greeting(conn, life, roster),
            (Role::Member(rank), Frame::Protocol(msg)) if self.member_conn.get(&rank) == Some(&conn) => {
                if self.speaks_for_listed_life(rank, process) {
                    self.handle(Input::Received { from: rank, msg });
                } else {
                    debug!(
                        "member {me}: {} from process {process} of rank {rank}, not the life the view lists, dropped",
                        msg.kind()
                    );
                }
            }
            (Role::Member(rank), Frame::Protocol(_)) => {
                debug!("member {me}: frame from an old connection of {rank} dropped")
            }
            (
                Role::Joiner(rank),
                Frame::Protocol(Message::JoinRequest {
                    rank: asked,
                    process: asking,
                }),
            ) => {
                if asked == rank && asking == process {
                    self.handle(Input::JoinRequest { rank, process });
                } else {
                    warn!("member {me}: unexpected join-request frame on connection {conn} dropped: the connection of process {process} asking for rank {rank} asked for rank {asked} as process {asking}");
                }
            }
            (Role::Member(rank) | Role::Joiner(rank), Frame::Register(register))
                if register.rejoin == Some(rank) && register.process == process && register.admitted.is_none() =>
            {
                if let Some(entry) = self.conns.get_mut(&conn) {
                    entry.announced = Some((register.host, register.port));
                }
            }
            // A process still joining learns of its admission from the member that relays the decision,
            // which may be one it only knows as a joiner (it dialled this process while both were
            // joining, and was admitted first). Kept, that decision would wait for an install it
            // causes; it reaches the core, and the install promotes this connection.
            (Role::Joiner(rank), Frame::Protocol(msg @ Message::Decide { .. }))
                if self.admits_me_from(&msg, rank, process) =>
            {
                info!("member {me}: decision admitting this process from {rank} (process {process}), which it knew as a joiner");
                self.handle(Input::Received { from: rank, msg });
            }
            // Sent after a view admitted that process, which this member has not installed yet.
            (Role::Joiner(rank), frame @ (Frame::Protocol(_) | Frame::Snapshot { .. })) => {
                self.keep_early(conn, rank, frame)
            }
            // A member's directory on a member connection: its greeting (read before the connection was
            // handed over), or the directory it hands a life its view just admitted (`hand_directory`).
            (Role::Member(_), Frame::Roster(roster)) => self.learn_addresses(roster.members),
            (
                Role::Member(rank),
                Frame::Snapshot {
                    view,
                    position,
                    offset,
                    total,
                    chunk,
                },
            ) if self.member_conn.get(&rank) == Some(&conn) => {
                let chunk = Chunk {
                    from: (rank, process),
                    view,
                    position,
                    offset,
                    total,
                    bytes: chunk,
                };
                match self.transfer.on_chunk(chunk) {
                    Ok(Some(restored)) => self.restore(restored),
                    Ok(None) => {}
                    Err(problem) => warn!("member {me}: {problem}; dropped"),
                }
            }
            (_, other) => warn!(
                "member {me}: unexpected {} frame on connection {conn} dropped",
                other.kind()
            ),
        }
    }

    /// True if this process is still joining and `msg` decides a view that admits it and lists
    /// `process` as the life of `rank` (the sender speaks for a member of that view).
    fn admits_me_from(&self, msg: &Message, rank: Rank, process: ProcessId) -> bool {
        let Message::Decide { proposal } = msg else {
            return false;
        };
        let me = self.node.me();
        let view = &proposal.view;
        self.node.phase() == Phase::Joining
            && view.member(rank).is_some_and(|m| m.process == process)
            && view
                .member(me.rank)
                .is_some_and(|m| m.process == me.process && m.incarnation.0 == view.id.0)
    }

    /// The greeting on a connection this member dialled to `life`: taken as its member connection if
    /// `life` answered, the view still lists it, and no member connection of it came meanwhile.
    pub(super) fn on_greeting(&mut self, conn: ConnId, life: MemberId, roster: Roster) {
        let me = self.node.me();
        self.learn_addresses(roster.members);
        let answered = roster.from;
        // The process is what a connection speaks for: a process that greeted while still joining
        // names incarnation 0, and is the very life the view admitted since.
        let wanted = answered.is_some_and(|a| a.rank == life.rank && a.process == life.process)
            && self.listed_life(life.rank, life.process).is_some()
            && !self.member_conn.contains_key(&life.rank)
            && !self.directory.was_linked(life);
        self.directory.dial_ended(life);
        if !wanted {
            info!("member {me}: dialled {life}; {answered:?} answered, not taken");
            self.close(conn);
            return;
        }
        info!("member {me}: dialled {life}, which it had no connection to");
        if let Some(entry) = self.conns.get_mut(&conn) {
            entry.role = Role::Member(life.rank);
        }
        self.member_conn.insert(life.rank, conn);
        self.directory.linked(life);
        self.roles_changed = true;
        self.send_unsent(life.rank);
    }

    /// The first frame on a connection a restarted process dialled (heartbeats aside): every address
    /// this member knows, and the life that answers, which is the life the connection speaks with.
    pub(super) fn greet(&mut self, conn: ConnId, rank: Rank) {
        let roster = Roster {
            rank,
            size: self.settings.size,
            members: self.directory.entries().to_vec(),
            from: Some(self.node.me()),
        };
        self.write(conn, Frame::Roster(roster));
    }

    /// Keeps a frame of a joiner connection until a view admits its process; a connection that sends
    /// more than [`early_bytes_max`] before that is closed.
    pub(super) fn keep_early(&mut self, conn: ConnId, rank: Rank, frame: Frame) {
        let me = self.node.me();
        let Some(entry) = self.conns.get_mut(&conn) else { return };
        let kind = frame.kind();
        if entry.early.keep(frame).is_err() {
            warn!("member {me}: connection {conn} of rank {rank} sent over {} bytes before a view admitted it; closing it", entry.early.limit());
            self.forget(conn);
            return;
        }
        if entry.early.len() == 1 {
            info!("member {me}: {kind} frame on connection {conn} of rank {rank}, asking to rejoin, held until a view admits it");
        }
    }
}
