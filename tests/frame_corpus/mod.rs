//! Valid frames of every kind, and a seeded generator: the starting points of the wire tests and of the
//! fuzzer, shared so that both see every frame the protocol can send.
#![allow(dead_code)]

use tom::message::{Ballot, Batch, Message, MessageRef, Multicast, Proposal, Report};
use tom::types::{Incarnation, MemberId, Payload, ProcessId, Rank, Stamp, View, ViewId};
use tom::wire::{self, encode, Frame, Hello, Nonce, Proof, Purpose, Register, Roster, RosterEntry};

/// SplitMix64: a tiny, well-mixed generator; good enough for test input and trivially seeded.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

pub fn multicast(origin: u16, seq: u64, payload: &str) -> Multicast {
    Multicast {
        origin: Rank(origin),
        seq,
        lamport: seq * 3 + u64::from(origin),
        payload: Payload::from(payload),
    }
}

/// The name of [`multicast`]`(origin, seq, _)`, without its payload.
pub fn message_ref(origin: u16, seq: u64) -> MessageRef {
    multicast(origin, seq, "").reference()
}

pub fn member(rank: u16, incarnation: u64, process: u64) -> MemberId {
    MemberId {
        rank: Rank(rank),
        incarnation: Incarnation(incarnation),
        process: ProcessId(process),
    }
}

/// A next view (rank 3 in its third life, run by the largest process identity),
/// carrying two named messages.
pub fn proposal() -> Proposal {
    Proposal {
        view: View {
            id: ViewId(4),
            members: vec![member(1, 1, 0x0123_4567_89AB_CDEF), member(3, 3, u64::MAX)],
        },
        carried: vec![message_ref(1, 7), message_ref(3, 2)],
        start_position: 99,
        lamport: 1234,
    }
}

/// A proposal of a view that carries nothing, with a member whose process identity is 0.
pub fn empty_proposal() -> Proposal {
    Proposal {
        view: View {
            id: ViewId(2),
            members: vec![member(2, 2, 0)],
        },
        carried: vec![],
        start_position: 0,
        lamport: 0,
    }
}

pub fn ballot(round: u64, proposer: u16) -> Ballot {
    Ballot {
        round,
        proposer: Rank(proposer),
    }
}

/// One of every message variant, with nested values filled in (and the empty/`None` cases too).
pub fn all_messages() -> Vec<Message> {
    let view = ViewId(3);
    vec![
        Message::Data {
            view,
            batch: Batch::new(multicast(2, 5, "hello, group")),
            acks: vec![4, 0, 9],
        },
        Message::Data {
            view,
            batch: Batch::new(Multicast {
                origin: Rank(1),
                seq: 1,
                lamport: 1,
                payload: Payload::from(vec![0u8, 255, 7, 0]),
            }),
            acks: vec![],
        },
        Message::Data {
            view,
            batch: Batch::from_msgs(vec![
                multicast(3, 7, "one"),
                Multicast {
                    seq: 8,
                    lamport: 25,
                    ..multicast(3, 7, "")
                },
                Multicast {
                    seq: 9,
                    lamport: 26,
                    ..multicast(3, 7, "three")
                },
            ])
            .expect("a run of one origin's consecutive messages"),
            acks: vec![9, 2, 7],
        },
        Message::Ack {
            view,
            acks: vec![u64::MAX, 0, 17],
        },
        Message::Suspect { view, rank: Rank(2) },
        Message::Leave { view },
        Message::Prepare {
            view,
            ballot: ballot(2, 1),
        },
        Message::Promise {
            view,
            ballot: ballot(2, 1),
            accepted: Some((ballot(1, 3), Box::new(proposal()))),
            report: Box::new(Report {
                delivered_count: 41,
                last_delivered: Some(Stamp {
                    lamport: 40,
                    origin: Rank(2),
                }),
                held: vec![message_ref(2, 9), message_ref(1, 10), message_ref(3, 11)],
                suspects: vec![Rank(2)],
                leaving: vec![Rank(4)],
                joining: vec![(Rank(5), ProcessId(0xFEED_F00D)), (Rank(6), ProcessId(u64::MAX))],
                lamport: 77,
            }),
        },
        Message::Promise {
            view,
            ballot: ballot(0, 2),
            accepted: None,
            report: Box::new(Report {
                delivered_count: 0,
                last_delivered: None,
                held: vec![],
                suspects: vec![],
                leaving: vec![],
                joining: vec![],
                lamport: 0,
            }),
        },
        Message::Reject {
            view,
            ballot: ballot(1, 1),
            promised: ballot(5, 2),
        },
        Message::Accept {
            view,
            ballot: ballot(3, 3),
            proposal: Box::new(proposal()),
        },
        Message::Accepted {
            view,
            ballot: ballot(3, 3),
        },
        Message::Promise {
            view,
            ballot: ballot(4, 3),
            accepted: Some((ballot(4, 1), Box::new(empty_proposal()))),
            report: Box::new(Report {
                delivered_count: 3,
                last_delivered: None,
                held: vec![message_ref(3, 1)],
                suspects: vec![],
                leaving: vec![],
                joining: vec![(Rank(2), ProcessId(0))],
                lamport: 9,
            }),
        },
        Message::Accept {
            view: ViewId(1),
            ballot: ballot(1, 2),
            proposal: Box::new(empty_proposal()),
        },
        Message::Decide {
            proposal: Box::new(proposal()),
        },
        Message::Decide {
            proposal: Box::new(empty_proposal()),
        },
        Message::JoinRequest {
            rank: Rank(4),
            process: ProcessId(0x0123_4567_89AB_CDEF),
        },
        Message::JoinRequest {
            rank: Rank(1),
            process: ProcessId(u64::MAX),
        },
        Message::JoinRefused {
            reason: "rank 4 is alive — ünïcode reason".into(),
        },
        Message::Fetch {
            view,
            wanted: vec![message_ref(1, 7), message_ref(3, 2)],
        },
        Message::Fetch { view, wanted: vec![] },
        Message::Carry {
            view,
            msgs: vec![
                multicast(1, 7, "carried"),
                multicast(3, 2, ""),
                Multicast {
                    origin: Rank(2),
                    seq: u64::MAX,
                    lamport: u64::MAX,
                    payload: Payload::from(vec![0u8, 1, 255]),
                },
            ],
        },
        Message::Carry { view, msgs: vec![] },
        Message::Progress { view },
        Message::Progress { view: ViewId(u64::MAX) },
    ]
}

/// One frame of every kind: a hello for every purpose and a registration for every combination of its
/// options, each with and without a nonce, rosters with and without the answering life, snapshot
/// chunks, and every protocol message.
pub fn all_frames() -> Vec<Frame> {
    let nonces = [None, Some(Nonce([0xA5; wire::NONCE_LEN]))];
    let mut frames = Vec::new();
    for (purpose, group, rank, incarnation, process) in [
        (Purpose::Form, "tom", 3, 1, 0x0123_4567_89AB_CDEF),
        // A restarted process not yet admitted: the group decides its incarnation.
        (Purpose::Rejoin, "lab-7", 2, 0, u64::MAX),
        (Purpose::Rejoin, "lab-7", 2, 9, 1),
        (Purpose::Status, "", 0, 0, 0),
    ] {
        for nonce in nonces {
            frames.push(Frame::Hello(Hello {
                group: group.into(),
                rank: Rank(rank),
                incarnation: Incarnation(incarnation),
                process: ProcessId(process),
                purpose,
                nonce,
            }));
        }
    }
    for (rejoin, admitted, host, port, process) in [
        (None, None, "10.0.0.7", 10_001, 0xFEED_F00D),
        // A restarted process looking the roster up, then recording its address once admitted.
        (Some(Rank(3)), None, "node-3.lab.example", 65_535, u64::MAX),
        (
            Some(Rank(3)),
            Some(Incarnation(7)),
            "node-3.lab.example",
            65_535,
            u64::MAX,
        ),
    ] {
        for nonce in nonces {
            frames.push(Frame::Register(Register {
                group: "tom".into(),
                host: host.into(),
                port,
                process: ProcessId(process),
                rejoin,
                admitted,
                nonce,
            }));
        }
    }
    frames.extend([
        Frame::Welcome,
        Frame::Refuse {
            reason: "wrong group".into(),
        },
        Frame::Heartbeat,
        Frame::Challenge {
            nonce: Nonce([1; wire::NONCE_LEN]),
            proof: Proof([2; wire::PROOF_LEN]),
        },
        Frame::Proof(Proof([0xFF; wire::PROOF_LEN])),
    ]);
    // The helper's roster (no answering life), and a member's answer to a rejoining process: rank 1 in
    // its fourth life answers, rank 2's new process is still asking (incarnation 0), rank 3 is a founder.
    let lives = [member(1, 4, 0xABCD), member(2, 0, u64::MAX), member(3, 1, 0)];
    for from in [None, Some(lives[0])] {
        frames.push(Frame::Roster(Roster {
            rank: Rank(2),
            size: 3,
            members: lives
                .iter()
                .map(|life| RosterEntry {
                    rank: life.rank,
                    host: format!("::{}", life.rank.0),
                    port: 10_000 + life.rank.0,
                    incarnation: life.incarnation,
                    process: life.process,
                })
                .collect(),
            from,
        }));
    }
    frames.extend(all_messages().into_iter().map(Frame::Protocol));
    // A state in one chunk, the first, a middle and the last chunk of a longer one, and an empty state.
    for (offset, total, chunk) in [
        (0, 10, &b"counter=41"[..]),
        (0, 100, &b"first"[..]),
        (5, 100, &b"middle"[..]),
        (96, 100, &b"last"[..]),
        (0, 0, &b""[..]),
    ] {
        frames.push(Frame::Snapshot(wire::SnapshotChunk {
            view: ViewId(7),
            position: 41,
            offset,
            total,
            bytes: chunk.to_vec(),
        }));
    }
    frames.push(Frame::StatusReport {
        report: "member 1#1 Member\nhead none".into(),
    });
    frames
}

pub fn encoded(frame: &Frame) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode(frame, &mut bytes);
    bytes
}
