//! SHA-256 and HMAC-SHA-256 against their published test vectors: the NIST examples of FIPS 180-4 and
//! all seven test cases of RFC 4231. The group secret's handshake is only as sound as these.

use tom::digest::{equal_in_constant_time, hmac_sha256, sha256, Sha256};

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn sha256_matches_the_fips_180_4_examples() {
    let cases: [(&[u8], &str); 4] = [
        (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        ),
        (
            b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
        ),
    ];
    for (message, digest) in cases {
        assert_eq!(
            sha256(message).to_vec(),
            hex(digest),
            "{:?}",
            String::from_utf8_lossy(message)
        );
    }
    assert_eq!(
        sha256(&vec![b'a'; 1_000_000]).to_vec(),
        hex("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    );
}

#[test]
fn hmac_sha256_matches_rfc_4231() {
    let long_key = [0xaa; 131];
    let key_25: Vec<u8> = (1..=25).collect();
    let cases: [(&[u8], &[u8], &str); 7] = [
        (
            &[0x0b; 20],
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            &[0xaa; 20],
            &[0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        (
            &key_25,
            &[0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        // Test case 5 publishes only the first 128 bits.
        (&[0x0c; 20], b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
        (
            &long_key,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            &long_key,
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to \
              be hashed before being used by the HMAC algorithm.",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (i, (key, message, mac)) in cases.into_iter().enumerate() {
        let expected = hex(mac);
        assert_eq!(
            hmac_sha256(key, &[message])[..expected.len()].to_vec(),
            expected,
            "RFC 4231 test case {}",
            i + 1
        );
    }
}

#[test]
fn pieces_give_the_same_digest_as_the_whole() {
    let message: Vec<u8> = (0..1_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let whole = sha256(&message);
    for chunk in [1, 3, 55, 56, 63, 64, 65, 200] {
        let mut hash = Sha256::new();
        for piece in message.chunks(chunk) {
            hash.update(piece);
        }
        assert_eq!(hash.finalize(), whole, "chunks of {chunk}");
    }
    let key = b"key";
    assert_eq!(
        hmac_sha256(key, &[&message]),
        hmac_sha256(key, &[&message[..10], &message[10..500], &[], &message[500..]])
    );
}

#[test]
fn constant_time_comparison() {
    assert!(equal_in_constant_time(b"same", b"same"));
    assert!(equal_in_constant_time(b"", b""));
    assert!(!equal_in_constant_time(b"same", b"sane"));
    assert!(!equal_in_constant_time(b"same", b"same!"));
    assert!(!equal_in_constant_time(&[0; 32], &[1; 32]));
}

/// Lengths at the padding and block boundaries (55/56 bytes: the length field just fits or spills into a
/// second block) and HMAC keys of 63, 64 and 65 bytes (a key longer than a block is hashed first). The
/// expected digests were computed independently with Python's `hashlib` and `hmac`:
/// `hashlib.sha256(bytes((i*7+3)%256 for i in range(n)))` and
/// `hmac.new(bytes((i*13+1)%256 for i in range(n)), b"tom key boundary", hashlib.sha256)`.
#[test]
fn boundary_lengths_match_an_independent_implementation() {
    let message: Vec<u8> = (0..128u32).map(|i| (i * 7 + 3) as u8).collect();
    let digests = [
        (55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"),
        (56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"),
        (63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"),
        (64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"),
        (65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"),
        (119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"),
        (120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"),
        (128, "d2742f1f4ac6bb7ca2b239ee18402ba8b3f9f8e652d2a72973c2b9ba11c08cf6"),
    ];
    for (len, digest) in digests {
        assert_eq!(sha256(&message[..len]).to_vec(), hex(digest), "SHA-256 of {len} bytes");
    }
    let keys = [
        (63, "49450e584b1d211b42785efe8df1d3d4afcd1aa0ee00615adafb9d2adf2e9284"),
        (64, "a48c0998bd03c9c21f3db8ef60fa1c5bf80503718638e7ab3ebfc7d4d48b70ea"),
        (65, "ea76970eed2de890a1ca642697612f883d7bcb7b13dd861f471a2bf22beba5ad"),
    ];
    for (len, mac) in keys {
        let key: Vec<u8> = (0..len as u32).map(|i| (i * 13 + 1) as u8).collect();
        assert_eq!(
            hmac_sha256(&key, &[b"tom key boundary"]).to_vec(),
            hex(mac),
            "HMAC with a {len}-byte key"
        );
    }
}
