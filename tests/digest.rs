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
    // Every length around the padding boundaries.
    for len in 50..140 {
        let mut hash = Sha256::default();
        hash.update(&message[..len]);
        assert_eq!(hash.finalize(), sha256(&message[..len]));
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
