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
            Message::Data { view, batch, acks } => {
                // The origin and the first seq once: the rest of the run follows from them.
                self.u8(MSG_DATA);
                self.u64(view.0);
                self.rank(batch.origin());
                self.u64(batch.first_seq());
                self.list(batch.msgs(), |w, msg| {
                    w.u64(msg.lamport);
                    w.bytes(msg.payload.as_bytes());
                });
                self.acks(acks);
            }
            Message::Ack { view, acks } => {
                self.u8(MSG_ACK);
                self.u64(view.0);
                self.acks(acks);
            }
            Message::Suspect { view, rank } => {
                self.u8(MSG_SUSPECT);
                self.u64(view.0);
                self.rank(*rank);
            }
            Message::Leave { view } => {
                self.u8(MSG_LEAVE);
                self.u64(view.0);
            }
            Message::Prepare { view, ballot } => {
                self.u8(MSG_PREPARE);
                self.u64(view.0);
                self.ballot(ballot);
            }
            Message::Promise {
                view,
                ballot,
                accepted,
                report,
            } => {
                self.u8(MSG_PROMISE);
                self.u64(view.0);
                self.ballot(ballot);
                self.option(accepted, |w, (ballot, proposal)| {
                    w.ballot(ballot);
                    w.proposal(proposal);
                });
                self.report(report);
            }
            Message::Reject { view, ballot, promised } => {
                self.u8(MSG_REJECT);
                self.u64(view.0);
                self.ballot(ballot);
                self.ballot(promised);
            }
            Message::Accept { view, ballot, proposal } => {
                self.u8(MSG_ACCEPT);
                self.u64(view.0);
                self.ballot(ballot);
                self.proposal(proposal);
            }
            Message::Accepted { view, ballot } => {
                self.u8(MSG_ACCEPTED);
                self.u64(view.0);
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
                self.u8(MSG_FETCH);
                self.u64(view.0);
                self.list(wanted, |w, msg| w.message_ref(msg));
            }
            Message::Carry { view, msgs } => {
                self.u8(MSG_CARRY);
                self.u64(view.0);
                self.list(msgs, |w, msg| w.multicast(msg));
            }
            Message::Progress { view } => {
                self.u8(MSG_PROGRESS);
                self.u64(view.0);
            }
        }
    }
}
