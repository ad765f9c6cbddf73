//! The wire format against valid, truncated, oversized and random input.
//!
//! Every frame and every protocol message round-trips; every truncation of a valid frame is an error
//! (never a different valid frame, never a panic); seeded garbage never panics; a huge length prefix is
//! refused before anything is allocated. The garbage comes from a SplitMix64 seeded in the test, so a
//! failure replays exactly. The new fields of version 3 (process identities, messages named by
//! reference, the transfer messages) are pinned byte by byte, an old version's handshake is refused by
//! name, and the largest frames a group of [`wire::MEMBERS_MAX`] members can send are measured against
//! [`wire::FRAME_LEN_MAX`].

mod frame_corpus;

use std::io::Cursor;

use frame_corpus::{all_frames, all_messages, encoded, member, message_ref, multicast, proposal, SplitMix64};
use tom::message::{Ballot, Batch, Message, MessageRef, Multicast, Proposal, Report};
use tom::protocol::{CoreConfig, CARRY_CHUNK_BYTES};
use tom::types::{Incarnation, MemberId, Payload, ProcessId, Rank, Stamp, View, ViewId};
use tom::wire::{
    self, decode, encode, read_frame, Frame, Hello, Nonce, Purpose, ReadError, Register, Roster, RosterEntry, WireError,
};

#[test]
fn every_frame_and_message_round_trips_through_decode_and_read_frame() {
    for frame in all_frames() {
        let bytes = encoded(&frame);
        let body = &bytes[wire::LENGTH_PREFIX_LEN..];
        assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize, body.len());
        assert_eq!(decode(body).as_ref(), Ok(&frame), "decode {frame:?}");
        let mut cursor = Cursor::new(&bytes);
        let read = read_frame(&mut cursor, wire::FRAME_LEN_MAX).expect("read_frame");
        assert_eq!(read, frame);
        assert!(matches!(
            read_frame(&mut cursor, wire::FRAME_LEN_MAX),
            Err(ReadError::Eof)
        ));
    }
}

#[test]
fn batched_frames_read_back_in_order() {
    let frames = all_frames();
    let mut bytes = Vec::new();
    for frame in &frames {
        encode(frame, &mut bytes);
    }
    let mut cursor = Cursor::new(bytes);
    for frame in &frames {
        assert_eq!(&read_frame(&mut cursor, wire::FRAME_LEN_MAX).unwrap(), frame);
    }
    assert!(matches!(
        read_frame(&mut cursor, wire::FRAME_LEN_MAX),
        Err(ReadError::Eof)
    ));
}

#[test]
fn every_truncation_of_every_frame_is_an_error() {
    for frame in all_frames() {
        let bytes = encoded(&frame);
        let body = &bytes[wire::LENGTH_PREFIX_LEN..];
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "body of {frame:?} cut at {cut} decoded");
        }
        for cut in 1..bytes.len() {
            let result = read_frame(&mut Cursor::new(&bytes[..cut]), wire::FRAME_LEN_MAX);
            assert!(
                matches!(result, Err(ReadError::EofMidFrame)),
                "stream of {frame:?} cut at {cut}: {result:?}"
            );
        }
        assert!(matches!(
            read_frame(&mut Cursor::new(&[] as &[u8]), wire::FRAME_LEN_MAX),
            Err(ReadError::Eof)
        ));
    }
}

#[test]
fn trailing_bytes_are_malformed() {
    let mut body = encoded(&Frame::Heartbeat)[wire::LENGTH_PREFIX_LEN..].to_vec();
    body.push(0);
    assert!(matches!(decode(&body), Err(WireError::Malformed(_))));
}

#[test]
fn huge_length_prefix_is_refused_before_reading_the_body() {
    let bytes = [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3];
    match read_frame(&mut Cursor::new(&bytes), wire::FRAME_LEN_MAX) {
        Err(ReadError::Wire(WireError::TooLong { len, max })) => {
            assert_eq!(len, u64::from(u32::MAX));
            assert_eq!(max, wire::FRAME_LEN_MAX as u64);
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    // A handshake limit refuses what member traffic would allow.
    let mut big = Vec::new();
    encode(
        &Frame::Refuse {
            reason: "x".repeat(wire::HANDSHAKE_LEN_MAX),
        },
        &mut big,
    );
    assert!(matches!(
        read_frame(&mut Cursor::new(&big), wire::HANDSHAKE_LEN_MAX),
        Err(ReadError::Wire(WireError::TooLong { .. }))
    ));
}

#[test]
fn huge_counts_inside_a_small_frame_are_refused_without_allocating() {
    // A Data message claiming a run of 4 billion messages, one claiming a 4 GiB payload, and an Ack
    // claiming 4 billion entries, in a few bytes: the decoder must compare the claims with the bytes
    // left before allocating anything.
    let data_header = |data: &mut Vec<u8>| {
        data.extend_from_slice(&[7, 16]);
        data.extend_from_slice(&3u64.to_be_bytes()); // view
        data.extend_from_slice(&1u16.to_be_bytes()); // origin
        data.extend_from_slice(&1u64.to_be_bytes()); // first seq
    };
    let mut data = Vec::new();
    data_header(&mut data);
    data.extend_from_slice(&u32::MAX.to_be_bytes()); // messages in the run
    assert_eq!(decode(&data), Err(WireError::Truncated));
    let mut data = Vec::new();
    data_header(&mut data);
    data.extend_from_slice(&1u32.to_be_bytes()); // one message
    data.extend_from_slice(&1u64.to_be_bytes()); // its Lamport time
    data.extend_from_slice(&u32::MAX.to_be_bytes()); // its payload's length
    assert_eq!(decode(&data), Err(WireError::Truncated));

    let mut ack = vec![7, 2];
    ack.extend_from_slice(&3u64.to_be_bytes());
    ack.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(decode(&ack), Err(WireError::Truncated));
}

/// A data frame is a run of at least one message whose seqs count up from the first: an empty run,
/// or one that would count past `u64::MAX`, is refused as malformed, never turned into a batch.
#[test]
fn a_data_run_that_is_empty_or_counts_past_the_largest_seq_is_malformed() {
    let run = |first_seq: u64, messages: u32| {
        let mut body = vec![7, 16];
        body.extend_from_slice(&3u64.to_be_bytes());
        body.extend_from_slice(&2u16.to_be_bytes());
        body.extend_from_slice(&first_seq.to_be_bytes());
        body.extend_from_slice(&messages.to_be_bytes());
        for k in 0..messages {
            body.extend_from_slice(&(u64::from(k) + 1).to_be_bytes());
            body.extend_from_slice(&1u32.to_be_bytes());
            body.push(b'x');
        }
        body.extend_from_slice(&0u32.to_be_bytes()); // no acknowledgements
        body
    };
    assert!(matches!(decode(&run(1, 0)), Err(WireError::Malformed(_))));
    assert!(matches!(decode(&run(u64::MAX, 2)), Err(WireError::Malformed(_))));
    match decode(&run(u64::MAX - 1, 2)) {
        Ok(Frame::Protocol(Message::Data { batch, .. })) => {
            assert_eq!(
                (batch.first_seq(), batch.last_seq(), batch.len()),
                (u64::MAX - 1, u64::MAX, 2)
            );
        }
        other => panic!("a run up to the largest seq is a batch, got {other:?}"),
    }
    // The retired tag of the one-message data frame of version 3 is unknown now.
    assert!(matches!(decode(&[7, 1]), Err(WireError::UnknownTag { .. })));
}

#[test]
fn oversized_payload_is_refused() {
    let frame = Frame::Protocol(Message::Data {
        view: ViewId(1),
        batch: Batch::new(Multicast {
            origin: Rank(1),
            seq: 1,
            lamport: 1,
            payload: Payload::from(vec![0u8; wire::PAYLOAD_LEN_MAX + 1]),
        }),
        acks: vec![],
    });
    let bytes = encoded(&frame);
    assert!(matches!(
        decode(&bytes[wire::LENGTH_PREFIX_LEN..]),
        Err(WireError::TooLong { .. })
    ));
}

#[test]
fn handshakes_check_magic_and_version_first() {
    let hello = Frame::Hello(Hello {
        group: "tom".into(),
        rank: Rank(1),
        incarnation: Incarnation(1),
        process: ProcessId(1),
        purpose: Purpose::Form,
        nonce: None,
    });
    let register = Frame::Register(Register {
        group: "tom".into(),
        host: "h".into(),
        port: 1,
        process: ProcessId(1),
        rejoin: None,
        admitted: None,
        nonce: None,
    });
    for frame in [hello, register] {
        let body = encoded(&frame)[wire::LENGTH_PREFIX_LEN..].to_vec();
        assert_eq!(&body[1..5], &wire::MAGIC);
        let mut bad_magic = body.clone();
        bad_magic[1] ^= 0xFF;
        assert_eq!(decode(&bad_magic), Err(WireError::BadMagic));
        // A newer version with fields this version cannot parse: the version is reported, not the fields.
        let mut newer = body[..5].to_vec();
        newer.extend_from_slice(&(wire::PROTOCOL_VERSION + 1).to_be_bytes());
        newer.extend_from_slice(&[0xEE; 3]);
        let error = decode(&newer).unwrap_err();
        assert_eq!(
            error,
            WireError::VersionMismatch {
                ours: wire::PROTOCOL_VERSION,
                theirs: wire::PROTOCOL_VERSION + 1
            }
        );
        let text = error.to_string();
        assert!(text.contains(&wire::PROTOCOL_VERSION.to_string()));
        assert!(text.contains(&(wire::PROTOCOL_VERSION + 1).to_string()));
    }
}

#[test]
fn unknown_tags_and_bad_utf8_are_errors() {
    assert!(matches!(decode(&[200]), Err(WireError::UnknownTag { tag: 200, .. })));
    assert!(matches!(decode(&[7, 99]), Err(WireError::UnknownTag { tag: 99, .. })));
    let mut refuse = vec![3];
    refuse.extend_from_slice(&2u32.to_be_bytes());
    refuse.extend_from_slice(&[0xC3, 0x28]);
    assert_eq!(decode(&refuse), Err(WireError::BadUtf8));
    assert!(decode(&[]).is_err());
}

#[test]
fn seeded_garbage_never_panics() {
    let seeds = 20_000u64;
    let valid: Vec<Vec<u8>> = all_frames().iter().map(encoded).collect();
    for seed in 0..seeds {
        let mut rng = SplitMix64(seed);
        let mut bytes = if seed % 2 == 0 {
            // Pure noise.
            let len = rng.below(96) as usize;
            (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>()
        } else {
            // A valid frame with a few bytes flipped: reaches deep into the decoder.
            let mut bytes = valid[rng.below(valid.len() as u64) as usize].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
            bytes
        };
        if bytes.len() >= wire::LENGTH_PREFIX_LEN {
            let _ = decode(&bytes[wire::LENGTH_PREFIX_LEN..]);
        }
        let _ = decode(&bytes);
        let mut cursor = Cursor::new(&mut bytes);
        while let Ok(_frame) = read_frame(&mut cursor, wire::HANDSHAKE_LEN_MAX) {}
    }
}

/// Which variant a message is. The match has no wildcard, so a new message variant does not compile
/// here until the corpus below is told about it.
fn variant(msg: &Message) -> usize {
    match msg {
        Message::Data { .. } => 0,
        Message::Ack { .. } => 1,
        Message::Suspect { .. } => 2,
        Message::Leave { .. } => 3,
        Message::Prepare { .. } => 4,
        Message::Promise { .. } => 5,
        Message::Reject { .. } => 6,
        Message::Accept { .. } => 7,
        Message::Accepted { .. } => 8,
        Message::Decide { .. } => 9,
        Message::JoinRequest { .. } => 10,
        Message::JoinRefused { .. } => 11,
        Message::Fetch { .. } => 12,
        Message::Carry { .. } => 13,
        Message::Progress { .. } => 14,
    }
}
const VARIANTS: usize = 15;

#[test]
fn the_corpus_holds_every_message_variant_and_each_round_trips() {
    let messages = all_messages();
    let mut seen = [false; VARIANTS];
    for msg in &messages {
        seen[variant(msg)] = true;
        let frame = Frame::Protocol(msg.clone());
        let bytes = encoded(&frame);
        assert_eq!(bytes[wire::LENGTH_PREFIX_LEN], 7, "protocol frame tag of {msg:?}");
        assert_eq!(decode(&bytes[wire::LENGTH_PREFIX_LEN..]), Ok(frame), "{}", msg.kind());
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|v| !seen[*v]).collect();
    assert!(missing.is_empty(), "variants without a corpus entry: {missing:?}");
    // The version 3 shapes, each in its full and its empty form.
    let has = |what: &dyn Fn(&Message) -> bool| messages.iter().any(what);
    assert!(has(&|m| matches!(m, Message::Fetch { wanted, .. } if wanted.len() > 1)));
    assert!(has(
        &|m| matches!(m, Message::Fetch { wanted, .. } if wanted.is_empty())
    ));
    assert!(has(&|m| matches!(m, Message::Carry { msgs, .. } if msgs.len() > 1)));
    assert!(has(&|m| matches!(m, Message::Carry { msgs, .. } if msgs.is_empty())));
    assert!(has(&|m| matches!(m, Message::Progress { .. })));
    assert!(has(
        &|m| matches!(m, Message::JoinRequest { process, .. } if process.0 == u64::MAX)
    ));
    assert!(has(&|m| matches!(m, Message::Promise { report, accepted: Some(_), .. }
        if report.held.len() > 1 && report.joining.len() > 1)));
    assert!(has(
        &|m| matches!(m, Message::Decide { proposal } if proposal.carried.is_empty())
    ));
    assert!(has(&|m| matches!(m, Message::Decide { proposal }
        if proposal.view.members.iter().any(|m| m.process.0 == u64::MAX))));
}

/// The body of `msg` inside its protocol frame, after the frame tag.
fn message_body(msg: Message) -> Vec<u8> {
    let bytes = encoded(&Frame::Protocol(msg));
    assert_eq!(bytes[wire::LENGTH_PREFIX_LEN], 7);
    bytes[wire::LENGTH_PREFIX_LEN + 1..].to_vec()
}

fn be16(value: u16) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}
fn be32(value: u32) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}
fn be64(value: u64) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

#[test]
fn version_3_fields_have_the_documented_layout() {
    // A join request: tag 11, the rank, then the asking process.
    assert_eq!(
        message_body(Message::JoinRequest {
            rank: Rank(4),
            process: ProcessId(0x0102_0304_0506_0708),
        }),
        [vec![11], be16(4), be64(0x0102_0304_0506_0708)].concat()
    );
    // Progress: tag 15, the view.
    assert_eq!(
        message_body(Message::Progress { view: ViewId(9) }),
        [vec![15], be64(9)].concat()
    );
    // Fetch: tag 13, the view, then references as (lamport, origin, seq).
    let wanted = MessageRef {
        lamport: 77,
        origin: Rank(3),
        seq: 5,
    };
    assert_eq!(
        message_body(Message::Fetch {
            view: ViewId(2),
            wanted: vec![wanted],
        }),
        [vec![13], be64(2), be32(1), be64(77), be16(3), be64(5)].concat()
    );
    // Carry: tag 14, the view, then whole multicasts as (origin, seq, lamport, payload).
    assert_eq!(
        message_body(Message::Carry {
            view: ViewId(2),
            msgs: vec![Multicast {
                origin: Rank(3),
                seq: 5,
                lamport: 77,
                payload: Payload::from("ab"),
            }],
        }),
        [
            vec![14],
            be64(2),
            be32(1),
            be16(3),
            be64(5),
            be64(77),
            be32(2),
            b"ab".to_vec()
        ]
        .concat()
    );
    // A decision: each member as (rank, incarnation, process), the carried messages as references.
    let decision = Proposal {
        view: View {
            id: ViewId(6),
            members: vec![member(2, 5, 0xAB)],
        },
        carried: vec![wanted],
        start_position: 40,
        lamport: 41,
    };
    assert_eq!(
        message_body(Message::Decide {
            proposal: Box::new(decision),
        }),
        [
            vec![10],
            be64(6),
            be32(1),
            be16(2),
            be64(5),
            be64(0xAB),
            be32(1),
            be64(77),
            be16(3),
            be64(5),
            be64(40),
            be64(41),
        ]
        .concat()
    );
    // A report: held messages as references, joiners as (rank, process) pairs.
    let promise = Message::Promise {
        view: ViewId(5),
        ballot: Ballot {
            round: 1,
            proposer: Rank(1),
        },
        accepted: None,
        report: Box::new(Report {
            delivered_count: 3,
            last_delivered: Some(Stamp {
                lamport: 8,
                origin: Rank(2),
            }),
            held: vec![wanted],
            suspects: vec![Rank(3)],
            leaving: vec![],
            joining: vec![(Rank(3), ProcessId(0xCD))],
            lamport: 9,
        }),
    };
    assert_eq!(
        message_body(promise),
        [
            vec![6],
            be64(5),
            be64(1),
            be16(1),
            vec![0],
            be64(3),
            vec![1],
            be64(8),
            be16(2),
            be32(1),
            be64(77),
            be16(3),
            be64(5),
            be32(1),
            be16(3),
            be32(0),
            be32(1),
            be16(3),
            be64(0xCD),
            be64(9),
        ]
        .concat()
    );
}

#[test]
fn every_truncation_of_the_version_3_messages_is_truncated() {
    let messages = [
        Message::JoinRequest {
            rank: Rank(2),
            process: ProcessId(u64::MAX),
        },
        Message::Fetch {
            view: ViewId(3),
            wanted: vec![message_ref(1, 1), message_ref(2, 1)],
        },
        Message::Carry {
            view: ViewId(3),
            msgs: vec![multicast(1, 1, "one"), multicast(2, 1, "")],
        },
        Message::Progress { view: ViewId(3) },
        Message::Decide {
            proposal: Box::new(proposal()),
        },
    ];
    for msg in messages {
        let frame = Frame::Protocol(msg);
        let bytes = encoded(&frame);
        let body = &bytes[wire::LENGTH_PREFIX_LEN..];
        for cut in 0..body.len() {
            assert_eq!(
                decode(&body[..cut]),
                Err(WireError::Truncated),
                "{frame:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn counts_of_the_version_3_lists_are_checked_before_allocating() {
    // A Fetch and a Carry claiming 4 billion items in a few bytes.
    for tag in [13u8, 14] {
        let body = [vec![7, tag], be64(3), be32(u32::MAX)].concat();
        assert_eq!(decode(&body), Err(WireError::Truncated), "message tag {tag}");
    }
    // A count the bytes could hold, but one more joiner than there can be members.
    let joining: Vec<(Rank, ProcessId)> = (1..=wire::MEMBERS_MAX + 1).map(|r| (Rank(r), ProcessId(1))).collect();
    let promise = Frame::Protocol(Message::Promise {
        view: ViewId(1),
        ballot: Ballot::default(),
        accepted: None,
        report: Box::new(Report {
            delivered_count: 0,
            last_delivered: None,
            held: vec![],
            suspects: vec![],
            leaving: vec![],
            joining,
            lamport: 0,
        }),
    });
    assert_eq!(
        decode(&encoded(&promise)[wire::LENGTH_PREFIX_LEN..]),
        Err(WireError::TooLong {
            len: u64::from(wire::MEMBERS_MAX) + 1,
            max: u64::from(wire::MEMBERS_MAX)
        })
    );
}

/// A handshake's opening bytes as version 2 wrote them (magic, then the version right after the tag),
/// built by hand so that the test does not depend on this version's encoder.
fn version_2_handshakes() -> Vec<(&'static str, Vec<u8>)> {
    let string = |text: &str| [be32(text.len() as u32), text.as_bytes().to_vec()].concat();
    let hello = [
        vec![1],
        wire::MAGIC.to_vec(),
        be16(2),
        string("tom"),
        be16(2),
        be64(1),
        vec![1], // purpose: form
        vec![0], // no nonce
    ]
    .concat();
    let register = [
        vec![5],
        wire::MAGIC.to_vec(),
        be16(2),
        string("tom"),
        string("127.0.0.1"),
        be16(10_002),
        vec![1],
        be16(2), // a rejoin of rank 2
        vec![0],
    ]
    .concat();
    vec![("hello", hello), ("registration", register)]
}

// Version 3 changed the messages: this build must not speak version 2.
const _: () = assert!(wire::PROTOCOL_VERSION > 2);

#[test]
fn a_version_2_handshake_is_refused_naming_both_versions() {
    for (what, body) in version_2_handshakes() {
        let error = decode(&body).unwrap_err();
        assert_eq!(
            error,
            WireError::VersionMismatch {
                ours: wire::PROTOCOL_VERSION,
                theirs: 2
            },
            "{what}"
        );
        let text = error.to_string();
        assert!(
            text.contains(&format!("version {}", wire::PROTOCOL_VERSION)) && text.contains("version 2"),
            "{what}: {text}"
        );
        // The same through a stream, as an acceptor reads it.
        let frame = [be32(body.len() as u32), body.clone()].concat();
        match read_frame(&mut Cursor::new(&frame), wire::HANDSHAKE_LEN_MAX) {
            Err(ReadError::Wire(read)) => assert_eq!(read, error, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        // The refusal that carries the reason keeps the layout every version reads: tag 3, a string.
        let refusal = encoded(&Frame::Refuse { reason: text.clone() });
        assert_eq!(
            refusal,
            [
                be32(1 + 4 + text.len() as u32),
                vec![3],
                be32(text.len() as u32),
                text.into_bytes()
            ]
            .concat()
        );
    }
}

#[test]
fn handshakes_name_the_calling_process() {
    // A hello: tag, magic, version, group, rank, incarnation, then the process, purpose and nonce.
    let hello = Frame::Hello(Hello {
        group: "g".into(),
        rank: Rank(2),
        incarnation: Incarnation(0),
        process: ProcessId(0x0A0B_0C0D_0E0F_1011),
        purpose: Purpose::Rejoin,
        nonce: None,
    });
    let head = [vec![1], wire::MAGIC.to_vec(), be16(wire::PROTOCOL_VERSION)].concat();
    assert_eq!(
        encoded(&hello)[wire::LENGTH_PREFIX_LEN..],
        [
            head.clone(),
            be32(1),
            b"g".to_vec(),
            be16(2),
            be64(0),
            be64(0x0A0B_0C0D_0E0F_1011),
            vec![2],
            vec![0]
        ]
        .concat()
    );
    // A registration: group, host, port, then the process, the rank rejoined, the life admitted, the nonce.
    let register = Frame::Register(Register {
        group: "g".into(),
        host: "h".into(),
        port: 7,
        process: ProcessId(0xFF),
        rejoin: Some(Rank(3)),
        admitted: Some(Incarnation(5)),
        nonce: Some(Nonce([9; wire::NONCE_LEN])),
    });
    let mut head = head;
    head[0] = 5;
    assert_eq!(
        encoded(&register)[wire::LENGTH_PREFIX_LEN..],
        [
            head,
            be32(1),
            b"g".to_vec(),
            be32(1),
            b"h".to_vec(),
            be16(7),
            be64(0xFF),
            vec![1],
            be16(3),
            vec![1],
            be64(5),
            vec![1],
            vec![9; wire::NONCE_LEN],
        ]
        .concat()
    );
}

#[test]
fn a_snapshot_chunk_must_lie_inside_its_state() {
    let chunk = |offset: u64, total: u64, bytes: &[u8]| {
        [
            vec![8],
            be64(3),
            be64(40),
            be64(offset),
            be64(total),
            be32(bytes.len() as u32),
            bytes.to_vec(),
        ]
        .concat()
    };
    // Inside: decoded as it is.
    assert_eq!(
        decode(&chunk(6, 10, b"abcd")),
        Ok(Frame::Snapshot(wire::SnapshotChunk {
            view: ViewId(3),
            position: 40,
            offset: 6,
            total: 10,
            bytes: b"abcd".to_vec(),
        }))
    );
    // Past the state's end, by one byte or by an offset that wraps around: refused.
    for body in [
        chunk(7, 10, b"abcd"),
        chunk(11, 10, b""),
        chunk(u64::MAX - 1, u64::MAX, b"abcd"),
    ] {
        assert!(matches!(decode(&body), Err(WireError::Malformed(_))), "{body:?}");
    }
}

// ---- the largest frames --------------------------------------------------------------------------------

/// Every message a group of [`wire::MEMBERS_MAX`] members with full windows can hold undelivered at once:
/// `window` messages of each origin (flow control bounds each origin's undelivered messages by its
/// window), with the largest Lamport times and sequence numbers.
fn whole_cut(window: usize) -> Vec<MessageRef> {
    let mut refs: Vec<MessageRef> = (1..=wire::MEMBERS_MAX)
        .flat_map(|origin| {
            (0..window as u64).map(move |k| MessageRef {
                lamport: u64::MAX - k,
                origin: Rank(origin),
                seq: u64::MAX - k,
            })
        })
        .collect();
    refs.sort();
    refs
}

/// A view of [`wire::MEMBERS_MAX`] members, every one a late life of its rank.
fn largest_view() -> View {
    View {
        id: ViewId(u64::MAX),
        members: (1..=wire::MEMBERS_MAX)
            .map(|rank| MemberId {
                rank: Rank(rank),
                incarnation: Incarnation(u64::MAX),
                process: ProcessId(u64::MAX - u64::from(rank)),
            })
            .collect(),
    }
}

/// The frame's body length; asserts that a receiver with the member limit reads it back whole.
fn measured(what: &str, frame: &Frame) -> usize {
    let bytes = encoded(frame);
    let body_len = bytes.len() - wire::LENGTH_PREFIX_LEN;
    println!(
        "{what}: {body_len} bytes ({:.2} MiB, {:.1} % of the frame limit)",
        body_len as f64 / (1024.0 * 1024.0),
        100.0 * body_len as f64 / wire::FRAME_LEN_MAX as f64
    );
    assert!(
        body_len < wire::FRAME_LEN_MAX,
        "{what}: {body_len} bytes, the limit is {}",
        wire::FRAME_LEN_MAX
    );
    let read = read_frame(&mut Cursor::new(&bytes), wire::FRAME_LEN_MAX).expect("read back under the limit");
    assert!(&read == frame, "{what} read back differently");
    body_len
}

#[test]
fn the_largest_view_change_frames_stay_below_the_frame_limit() {
    let window = CoreConfig::new(Rank(1)).window;
    assert_eq!(window, 1024, "the default window");
    let members = usize::from(wire::MEMBERS_MAX);
    let cut = whole_cut(window);
    assert_eq!(cut.len(), members * window);
    let all_ranks: Vec<Rank> = (1..=wire::MEMBERS_MAX).map(Rank).collect();
    let ballot = Ballot {
        round: u64::MAX,
        proposer: Rank(wire::MEMBERS_MAX),
    };
    let next = Proposal {
        view: largest_view(),
        carried: cut.clone(),
        start_position: u64::MAX,
        lamport: u64::MAX,
    };
    // A promise reporting every message held and an accepted value naming the whole cut, with every
    // rank suspected, leaving and joining.
    let promise = Frame::Protocol(Message::Promise {
        view: ViewId(u64::MAX),
        ballot,
        accepted: Some((ballot, Box::new(next.clone()))),
        report: Box::new(Report {
            delivered_count: u64::MAX,
            last_delivered: Some(Stamp {
                lamport: u64::MAX,
                origin: Rank(wire::MEMBERS_MAX),
            }),
            held: cut.clone(),
            suspects: all_ranks.clone(),
            leaving: all_ranks.clone(),
            joining: all_ranks.iter().map(|r| (*r, ProcessId(u64::MAX))).collect(),
            lamport: u64::MAX,
        }),
    });
    let accept = Frame::Protocol(Message::Accept {
        view: ViewId(u64::MAX),
        ballot,
        proposal: Box::new(next.clone()),
    });
    let decide = Frame::Protocol(Message::Decide {
        proposal: Box::new(next),
    });
    let promise_len = measured("largest Promise", &promise);
    let accept_len = measured("largest Accept", &accept);
    let decide_len = measured("largest Decide", &decide);
    // Named by reference, the cut costs the same whatever the payloads: far below the limit even with
    // every one of the cut's messages at the payload limit (which would be members × window MiB whole).
    assert!(promise_len < wire::FRAME_LEN_MAX / 8);
    assert!(accept_len.max(decide_len) < wire::FRAME_LEN_MAX / 16);

    // A transfer chunk: as many maximal payloads as make up a chunk's worth of bytes (the core puts one
    // fewer in a chunk, since it counts each message's fields too).
    let chunk_len = CARRY_CHUNK_BYTES.div_ceil(wire::PAYLOAD_LEN_MAX);
    let payload = Payload::from(vec![0xA5u8; wire::PAYLOAD_LEN_MAX]);
    let carry = Frame::Protocol(Message::Carry {
        view: ViewId(u64::MAX),
        msgs: cut[..chunk_len]
            .iter()
            .map(|r| Multicast {
                origin: r.origin,
                seq: r.seq,
                lamport: r.lamport,
                payload: payload.clone(),
            })
            .collect(),
    });
    let carry_len = measured(
        &format!("Carry chunk of {chunk_len} payloads of {} bytes", wire::PAYLOAD_LEN_MAX),
        &carry,
    );
    assert!(carry_len < wire::FRAME_LEN_MAX / 8);

    // A rejoining member's state, in chunks of the largest size.
    let snapshot = Frame::Snapshot(wire::SnapshotChunk {
        view: ViewId(u64::MAX),
        position: u64::MAX,
        offset: 0,
        total: u64::MAX,
        bytes: vec![0x5A; wire::SNAPSHOT_CHUNK_LEN_MAX],
    });
    let snapshot_len = measured("largest Snapshot chunk", &snapshot);
    assert!(snapshot_len < wire::FRAME_LEN_MAX / 8);
}

#[test]
fn the_largest_roster_stays_below_the_handshake_limit() {
    // Every member of the largest group, each at the longest host name and a late life, answered by a
    // member: what a rejoining process reads before its handshake has made it a member.
    let host = "h".repeat(wire::HOST_LEN_MAX);
    let roster = Frame::Roster(Roster {
        rank: Rank(wire::MEMBERS_MAX),
        size: wire::MEMBERS_MAX,
        members: (1..=wire::MEMBERS_MAX)
            .map(|rank| RosterEntry {
                rank: Rank(rank),
                host: host.clone(),
                port: u16::MAX,
                incarnation: Incarnation(u64::MAX),
                process: ProcessId(u64::MAX),
            })
            .collect(),
        from: Some(member(1, u64::MAX, u64::MAX)),
    });
    let bytes = encoded(&roster);
    let body_len = bytes.len() - wire::LENGTH_PREFIX_LEN;
    println!(
        "largest Roster: {body_len} bytes ({:.1} % of the handshake limit)",
        100.0 * body_len as f64 / wire::HANDSHAKE_LEN_MAX as f64
    );
    assert!(body_len < wire::HANDSHAKE_LEN_MAX);
    assert_eq!(
        read_frame(&mut Cursor::new(&bytes), wire::HANDSHAKE_LEN_MAX).expect("read under the handshake limit"),
        roster
    );
}
