//! The wire format against valid, truncated, oversized and random input.
//!
//! Every frame and every protocol message round-trips; every truncation of a valid frame is an error
//! (never a different valid frame, never a panic); seeded garbage never panics; a huge length prefix is
//! refused before anything is allocated. The garbage comes from a SplitMix64 seeded in the test, so a
//! failure replays exactly.

mod frame_corpus;

use std::io::Cursor;

use frame_corpus::{all_frames, encoded, SplitMix64};
use tom::message::{Message, Multicast};
use tom::types::{Incarnation, Payload, Rank, ViewId};
use tom::wire::{self, decode, encode, read_frame, Frame, Hello, Purpose, ReadError, Register, WireError};

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
    // A Data message claiming a 4 GiB payload, and an Ack claiming 4 billion entries, in a few bytes:
    // the decoder must compare the claims with the bytes left before allocating anything.
    let mut data = vec![7, 1];
    data.extend_from_slice(&3u64.to_be_bytes());
    data.extend_from_slice(&1u16.to_be_bytes());
    data.extend_from_slice(&1u64.to_be_bytes());
    data.extend_from_slice(&1u64.to_be_bytes());
    data.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(decode(&data), Err(WireError::Truncated));

    let mut ack = vec![7, 2];
    ack.extend_from_slice(&3u64.to_be_bytes());
    ack.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(decode(&ack), Err(WireError::Truncated));
}

#[test]
fn oversized_payload_is_refused() {
    let frame = Frame::Protocol(Message::Data {
        view: ViewId(1),
        msg: Multicast {
            origin: Rank(1),
            seq: 1,
            lamport: 1,
            payload: Payload::from(vec![0u8; wire::PAYLOAD_LEN_MAX + 1]),
        },
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
        purpose: Purpose::Form,
        nonce: None,
    });
    let register = Frame::Register(Register {
        group: "tom".into(),
        host: "h".into(),
        port: 1,
        rejoin: None,
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
