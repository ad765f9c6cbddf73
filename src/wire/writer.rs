//! Encoding: big-endian fields appended to a buffer, one method per frame and message kind.

use super::tags::*;
use super::*;

/// Appends big-endian fields to a buffer. Writing to a `Vec` cannot fail, so nothing here returns an error.
pub(super) struct Writer<'a>(pub(super) &'a mut Vec<u8>);

impl Writer<'_> {
    pub(super) fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    pub(super) fn u16(&mut self, value: u16) {
        let mut bytes = [0; 2];
        BigEndian::write_u16(&mut bytes, value);
        self.0.extend_from_slice(&bytes);
    }
    pub(super) fn u32(&mut self, value: u32) {
        let mut bytes = [0; 4];
        BigEndian::write_u32(&mut bytes, value);
        self.0.extend_from_slice(&bytes);
    }
    pub(super) fn u64(&mut self, value: u64) {
        let mut bytes = [0; 8];
        BigEndian::write_u64(&mut bytes, value);
        self.0.extend_from_slice(&bytes);
    }
    pub(super) fn len(&mut self, len: usize) {
        self.u32(u32::try_from(len).unwrap_or(u32::MAX));
    }
    pub(super) fn bytes(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.0.extend_from_slice(bytes);
    }
    pub(super) fn str(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }
    pub(super) fn rank(&mut self, rank: Rank) {
        self.u16(rank.0);
    }
    pub(super) fn handshake_header(&mut self) {
        self.0.extend_from_slice(&MAGIC);
        self.u16(PROTOCOL_VERSION);
    }
    pub(super) fn option<T>(&mut self, value: &Option<T>, mut item: impl FnMut(&mut Self, &T)) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                item(self, value);
            }
        }
    }
    pub(super) fn list<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        self.len(items.len());
        for value in items {
            item(self, value);
        }
    }
    pub(super) fn stamp(&mut self, stamp: &Stamp) {
        self.u64(stamp.lamport);
        self.rank(stamp.origin);
    }
    pub(super) fn ballot(&mut self, ballot: &Ballot) {
        self.u64(ballot.round);
        self.rank(ballot.proposer);
    }
    pub(super) fn ranks(&mut self, ranks: &[Rank]) {
        self.list(ranks, |w, rank| w.rank(*rank));
    }
    pub(super) fn acks(&mut self, acks: &[u64]) {
        self.list(acks, |w, ack| w.u64(*ack));
    }
    pub(super) fn multicast(&mut self, msg: &Multicast) {
        self.rank(msg.origin);
        self.u64(msg.seq);
        self.u64(msg.lamport);
        self.bytes(msg.payload.as_bytes());
    }
    pub(super) fn view(&mut self, view: &View) {
        self.u64(view.id.0);
        self.list(&view.members, |w, member| w.member_id(member));
    }
    pub(super) fn member_id(&mut self, member: &MemberId) {
        self.rank(member.rank);
        self.u64(member.incarnation.0);
        self.u64(member.process.0);
    }
    pub(super) fn message_ref(&mut self, msg: &MessageRef) {
        self.u64(msg.lamport);
        self.rank(msg.origin);
        self.u64(msg.seq);
    }
    pub(super) fn proposal(&mut self, proposal: &Proposal) {
        self.view(&proposal.view);
        self.list(&proposal.carried, |w, msg| w.message_ref(msg));
        self.u64(proposal.start_position);
        self.u64(proposal.lamport);
    }
    pub(super) fn report(&mut self, report: &Report) {
        self.u64(report.delivered_count);
        self.option(&report.last_delivered, |w, stamp| w.stamp(stamp));
        self.list(&report.held, |w, msg| w.message_ref(msg));
        self.ranks(&report.suspects);
        self.ranks(&report.leaving);
        self.list(&report.joining, |w, (rank, process)| {
            w.rank(*rank);
            w.u64(process.0);
        });
        self.u64(report.lamport);
    }
    pub(super) fn message(&mut self, msg: &Message) {
        match msg {
            Message::Data { view, batch, acks } => self.data(*view, batch, acks),
            Message::Ack { view, acks } => {
                self.tag_and_view(MSG_ACK, *view);
                self.acks(acks);
            }
            Message::Suspect { view, rank } => {
                self.tag_and_view(MSG_SUSPECT, *view);
                self.rank(*rank);
            }
            Message::Leave { view } => self.tag_and_view(MSG_LEAVE, *view),
            Message::Prepare { view, ballot } => {
                self.tag_and_view(MSG_PREPARE, *view);
                self.ballot(ballot);
            }
            Message::Promise {
                view,
                ballot,
                accepted,
                report,
            } => self.promise(*view, ballot, accepted.as_ref(), report),
            Message::Reject { view, ballot, promised } => {
                self.tag_and_view(MSG_REJECT, *view);
                self.ballot(ballot);
                self.ballot(promised);
            }
            Message::Accept { view, ballot, proposal } => {
                self.tag_and_view(MSG_ACCEPT, *view);
                self.ballot(ballot);
                self.proposal(proposal);
            }
            Message::Accepted { view, ballot } => {
                self.tag_and_view(MSG_ACCEPTED, *view);
                self.ballot(ballot);
            }
            Message::Decide { proposal } => {
                self.u8(MSG_DECIDE);
                self.proposal(proposal);
            }
            Message::JoinRequest { rank, process } => {
                self.u8(MSG_JOIN_REQUEST);
                self.rank(*rank);
                self.u64(process.0);
            }
            Message::JoinRefused { reason } => {
                self.u8(MSG_JOIN_REFUSED);
                self.str(reason);
            }
            Message::Fetch { view, wanted } => {
                self.tag_and_view(MSG_FETCH, *view);
                self.list(wanted, |w, msg| w.message_ref(msg));
            }
            Message::Carry { view, msgs } => {
                self.tag_and_view(MSG_CARRY, *view);
                self.list(msgs, |w, msg| w.multicast(msg));
            }
            Message::Progress { view } => self.tag_and_view(MSG_PROGRESS, *view),
        }
    }
    fn tag_and_view(&mut self, tag: u8, view: ViewId) {
        self.u8(tag);
        self.u64(view.0);
    }
    fn data(&mut self, view: ViewId, batch: &Batch, acks: &[u64]) {
        // The origin and the first seq once: the rest of the run follows from them.
        self.tag_and_view(MSG_DATA, view);
        self.rank(batch.origin());
        self.u64(batch.first_seq());
        self.list(batch.msgs(), |w, msg| {
            w.u64(msg.lamport);
            w.bytes(msg.payload.as_bytes());
        });
        self.acks(acks);
    }
    fn promise(&mut self, view: ViewId, ballot: &Ballot, accepted: Option<&(Ballot, Box<Proposal>)>, report: &Report) {
        self.tag_and_view(MSG_PROMISE, view);
        self.ballot(ballot);
        self.option(&accepted, |w, (ballot, proposal)| {
            w.ballot(ballot);
            w.proposal(proposal);
        });
        self.report(report);
    }
    /// One frame's body: its tag, then its fields.
    pub(super) fn frame(&mut self, frame: &Frame) {
        match frame {
            Frame::Hello(hello) => self.hello(hello),
            Frame::Welcome => self.u8(TAG_WELCOME),
            Frame::Refuse { reason } => {
                self.u8(TAG_REFUSE);
                self.str(reason);
            }
            Frame::Heartbeat => self.u8(TAG_HEARTBEAT),
            Frame::Register(register) => self.register(register),
            Frame::Roster(roster) => self.roster(roster),
            Frame::Protocol(msg) => {
                self.u8(TAG_PROTOCOL);
                self.message(msg);
            }
            Frame::StatusReport { report } => {
                self.u8(TAG_STATUS_REPORT);
                self.str(report);
            }
            Frame::Challenge { nonce, proof } => {
                self.u8(TAG_CHALLENGE);
                self.0.extend_from_slice(&nonce.0);
                self.0.extend_from_slice(&proof.0);
            }
            Frame::Proof(proof) => {
                self.u8(TAG_PROOF);
                self.0.extend_from_slice(&proof.0);
            }
            Frame::Snapshot(chunk) => {
                self.u8(TAG_SNAPSHOT);
                for field in [chunk.view.0, chunk.position, chunk.offset, chunk.total] {
                    self.u64(field);
                }
                self.bytes(&chunk.bytes);
            }
        }
    }
    fn hello(&mut self, hello: &Hello) {
        self.u8(TAG_HELLO);
        self.handshake_header();
        self.str(&hello.group);
        self.rank(hello.rank);
        self.u64(hello.incarnation.0);
        self.u64(hello.process.0);
        self.u8(match hello.purpose {
            Purpose::Form => PURPOSE_FORM,
            Purpose::Rejoin => PURPOSE_REJOIN,
            Purpose::Status => PURPOSE_STATUS,
        });
        self.option(&hello.nonce, |w, nonce| w.0.extend_from_slice(&nonce.0));
    }
    fn register(&mut self, register: &Register) {
        self.u8(TAG_REGISTER);
        self.handshake_header();
        self.str(&register.group);
        self.str(&register.host);
        self.u16(register.port);
        self.u64(register.process.0);
        self.option(&register.rejoin, |w, rank| w.rank(*rank));
        self.option(&register.admitted, |w, incarnation| w.u64(incarnation.0));
        self.option(&register.nonce, |w, nonce| w.0.extend_from_slice(&nonce.0));
    }
    fn roster(&mut self, roster: &Roster) {
        self.u8(TAG_ROSTER);
        self.rank(roster.rank);
        self.u16(roster.size);
        self.list(&roster.members, |w, entry| {
            w.rank(entry.rank);
            w.str(&entry.host);
            w.u16(entry.port);
            w.u64(entry.incarnation.0);
            w.u64(entry.process.0);
        });
        self.option(&roster.from, |w, life| w.member_id(life));
    }
}
