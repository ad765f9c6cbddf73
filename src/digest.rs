//! SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), written here because the design card allows no
//! crypto crate. They serve one purpose: the group secret's challenge–response ([`crate::auth`]).
//!
//! # Invariants
//! - Checked against the published test vectors of FIPS 180-4 (the NIST examples) and RFC 4231 in
//!   `tests/digest.rs`.
//! - Never panics, for any input length: the message length is counted in bits modulo 2^64, as the
//!   standard pads it.
//! - Not hardened against side channels beyond [`equal_in_constant_time`], which is what checking a
//!   proof needs: the secret is only ever an HMAC key, and the proofs compared are public once sent.

/// Bytes of a SHA-256 digest (and of an HMAC-SHA-256).
pub const DIGEST_LEN: usize = 32;

/// Bytes of a SHA-256 block; HMAC pads its key to this length.
const BLOCK_LEN: usize = 64;

/// The first 32 bits of the fractional parts of the cube roots of the first 64 primes.
const ROUND_CONSTANTS: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

/// The first 32 bits of the fractional parts of the square roots of the first 8 primes.
const INITIAL_STATE: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// An incremental SHA-256: feed it with [`Sha256::update`], read the digest with [`Sha256::finalize`].
#[derive(Clone, Debug)]
pub struct Sha256 {
    state: [u32; 8],
    /// Bytes of an unfinished block.
    block: [u8; BLOCK_LEN],
    block_len: usize,
    /// Message length so far, in bytes, modulo 2^64 (the standard counts bits modulo 2^64).
    total_len: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

impl Sha256 {
    /// A hash of the empty message, ready for input.
    pub fn new() -> Sha256 {
        Sha256 {
            state: INITIAL_STATE,
            block: [0; BLOCK_LEN],
            block_len: 0,
            total_len: 0,
        }
    }

    /// Appends `bytes` to the message.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.total_len = self.total_len.wrapping_add(bytes.len() as u64);
        while !bytes.is_empty() {
            let take = (BLOCK_LEN - self.block_len).min(bytes.len());
            self.block[self.block_len..self.block_len + take].copy_from_slice(&bytes[..take]);
            self.block_len += take;
            bytes = &bytes[take..];
            if self.block_len == BLOCK_LEN {
                let block = self.block;
                self.compress(&block);
                self.block_len = 0;
            }
        }
    }

    /// Pads the message and returns its digest.
    pub fn finalize(mut self) -> [u8; DIGEST_LEN] {
        let bit_len = self.total_len.wrapping_mul(8);
        // A one bit, zeros up to 56 bytes into a block, then the length in bits, big-endian.
        let mut padding = [0u8; BLOCK_LEN + 8];
        padding[0] = 0x80;
        let zeros = (BLOCK_LEN + 56 - 1 - self.block_len) % BLOCK_LEN;
        let pad_len = 1 + zeros;
        padding[pad_len..pad_len + 8].copy_from_slice(&bit_len.to_be_bytes());
        let total_len = self.total_len;
        self.update(&padding[..pad_len + 8]);
        self.total_len = total_len;
        debug_assert_eq!(self.block_len, 0);
        let mut digest = [0u8; DIGEST_LEN];
        for (chunk, word) in digest.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }

    fn compress(&mut self, block: &[u8; BLOCK_LEN]) {
        let mut schedule = [0u32; 64];
        for (word, chunk) in schedule.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        for i in 16..64 {
            let s0 = schedule[i - 15].rotate_right(7) ^ schedule[i - 15].rotate_right(18) ^ (schedule[i - 15] >> 3);
            let s1 = schedule[i - 2].rotate_right(17) ^ schedule[i - 2].rotate_right(19) ^ (schedule[i - 2] >> 10);
            schedule[i] = schedule[i - 16]
                .wrapping_add(s0)
                .wrapping_add(schedule[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.state;
        for (constant, word) in ROUND_CONSTANTS.iter().zip(schedule) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let choice = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(choice)
                .wrapping_add(*constant)
                .wrapping_add(word);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let majority = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(majority);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (word, value) in self.state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *word = word.wrapping_add(value);
        }
    }
}

/// The SHA-256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hash = Sha256::new();
    hash.update(bytes);
    hash.finalize()
}

/// HMAC-SHA-256 of the concatenation of `parts` under `key` (RFC 2104): the parts spare callers a copy.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // A key longer than a block is hashed first; a shorter one is padded with zeros.
    let mut padded_key = [0u8; BLOCK_LEN];
    if key.len() > BLOCK_LEN {
        padded_key[..DIGEST_LEN].copy_from_slice(&sha256(key));
    } else {
        padded_key[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(&padded_key.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(&padded_key.map(|b| b ^ 0x5c));
    outer.update(&inner.finalize());
    outer.finalize()
}

/// True if `a` and `b` are equal, looking at every byte whatever the first difference (so a forger learns
/// nothing from how long a check takes). Lengths are public: different lengths return `false` at once.
pub fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}
