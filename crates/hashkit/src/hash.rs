//! The twelve key hashes of nutcracker's hashkit (`src/hashkit/nc_*.c`), bit for bit.
//!
//! Several of them are not the textbook algorithm, and the differences are kept on
//! purpose because key placement depends on them:
//! - the C code takes `const char *`, which is signed on x86-64, and some functions
//!   widen a byte *with* sign extension (`(uint32_t)key[i]`): one_at_a_time, the
//!   four fnv variants and the 3-byte tail of hsieh. Others read `uint8_t`.
//! - `crc16` keeps its state in a `uint32_t` and never truncates it, so results go
//!   far above 16 bits ("apple" = 3662830516).
//! - `crc32` is libmemcached's: `(~crc >> 16) & 0x7fff`, a 15-bit value.
//! - `fnv1a_64` runs in 32 bits with the 64-bit offset basis and prime truncated to
//!   32 bits (basis 0x84222325, prime 0x1b3).

use md5::{Digest, Md5};

use crate::HashKind;

impl HashKind {
    /// Hashes `key` exactly as nutcracker's `hash_<name>()` does.
    ///
    /// This is the raw function: an empty key is hashed like any other. Routing
    /// (where an empty key maps to hash 0) lives in [`crate::Continuum::server_for_key`].
    #[inline]
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            HashKind::OneAtATime => one_at_a_time(key),
            HashKind::Md5 => md5(key),
            HashKind::Crc16 => crc16(key),
            HashKind::Crc32 => crc32(key),
            HashKind::Crc32a => crc32a(key),
            HashKind::Fnv1_64 => fnv1_64(key),
            HashKind::Fnv1a_64 => fnv1a_64(key),
            HashKind::Fnv1_32 => fnv1_32(key),
            HashKind::Fnv1a_32 => fnv1a_32(key),
            HashKind::Hsieh => hsieh(key),
            HashKind::Murmur => murmur(key),
            HashKind::Jenkins => jenkins(key),
        }
    }
}

/// A key byte widened the way C widens a (signed) `char` to `uint32_t`.
#[inline(always)]
fn sext32(b: u8) -> u32 {
    b as i8 as u32
}

/// A key byte widened the way C widens a (signed) `char` to `uint64_t`.
#[inline(always)]
fn sext64(b: u8) -> u64 {
    b as i8 as u64
}

/// Little-endian u32 from up to 4 bytes, zero-padded: what the C code's masked
/// word reads (`k[0] & 0xffffff`, ...) amount to on a little-endian machine.
#[inline(always)]
fn le32_padded(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .take(4)
        .enumerate()
        .fold(0, |acc, (i, &b)| acc | (u32::from(b) << (8 * i)))
}

/// Little-endian u16 read widened to u32 (hsieh's `get16bits`, unsigned bytes).
#[inline(always)]
fn get16(b0: u8, b1: u8) -> u32 {
    u32::from(b0) | (u32::from(b1) << 8)
}

fn one_at_a_time(key: &[u8]) -> u32 {
    let mut value: u32 = 0;
    for &b in key {
        value = value.wrapping_add(sext32(b));
        value = value.wrapping_add(value << 10);
        value ^= value >> 6;
    }
    value = value.wrapping_add(value << 3);
    value ^= value >> 11;
    value.wrapping_add(value << 15)
}

/// The 16-byte md5 digest, shared with ketama's point hashing.
pub(crate) fn md5_digest(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// Word `alignment` (0..4) of an md5 digest, little-endian (nc_ketama.c `ketama_hash`).
#[inline]
pub(crate) fn digest_word(digest: &[u8; 16], alignment: usize) -> u32 {
    le32_padded(&digest[alignment * 4..alignment * 4 + 4])
}

fn md5(key: &[u8]) -> u32 {
    digest_word(&md5_digest(key), 0)
}

/// CRC-16/XMODEM table (poly 0x1021, MSB first), as in nc_crc16.c.
pub(crate) const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32 table (reflected poly 0xEDB88320), as in nc_crc32.c.
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc16(key: &[u8]) -> u32 {
    // The state is 32 bits wide and shifted left without masking, so bits above 16
    // accumulate; only bits 8..16 feed the table index. The char's sign extension
    // is masked away by `& 0xff`.
    key.iter().fold(0u32, |crc, &b| {
        (crc << 8) ^ u32::from(CRC16_TABLE[(((crc >> 8) ^ u32::from(b)) & 0xff) as usize])
    })
}

#[inline]
fn crc32_raw(key: &[u8]) -> u32 {
    key.iter().fold(u32::MAX, |crc, &b| {
        (crc >> 8) ^ CRC32_TABLE[((crc ^ u32::from(b)) & 0xff) as usize]
    })
}

fn crc32(key: &[u8]) -> u32 {
    // libmemcached compatibility: 15 bits of the complemented CRC.
    ((!crc32_raw(key)) >> 16) & 0x7fff
}

fn crc32a(key: &[u8]) -> u32 {
    !crc32_raw(key)
}

const FNV_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV_32_INIT: u32 = 2_166_136_261;
const FNV_32_PRIME: u32 = 16_777_619;

fn fnv1_64(key: &[u8]) -> u32 {
    let hash = key.iter().fold(FNV_64_INIT, |h, &b| {
        h.wrapping_mul(FNV_64_PRIME) ^ sext64(b)
    });
    hash as u32
}

fn fnv1a_64(key: &[u8]) -> u32 {
    // nutcracker truncates both constants to 32 bits and hashes in 32 bits.
    key.iter().fold(FNV_64_INIT as u32, |h, &b| {
        (h ^ sext32(b)).wrapping_mul(FNV_64_PRIME as u32)
    })
}

fn fnv1_32(key: &[u8]) -> u32 {
    key.iter().fold(FNV_32_INIT, |h, &b| {
        h.wrapping_mul(FNV_32_PRIME) ^ sext32(b)
    })
}

fn fnv1a_32(key: &[u8]) -> u32 {
    key.iter().fold(FNV_32_INIT, |h, &b| {
        (h ^ sext32(b)).wrapping_mul(FNV_32_PRIME)
    })
}

fn hsieh(key: &[u8]) -> u32 {
    if key.is_empty() {
        return 0;
    }
    let mut hash: u32 = 0;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        hash = hash.wrapping_add(get16(c[0], c[1]));
        let tmp = (get16(c[2], c[3]) << 11) ^ hash;
        hash = (hash << 16) ^ tmp;
        hash = hash.wrapping_add(hash >> 11);
    }
    match *chunks.remainder() {
        [b0, b1, b2] => {
            hash = hash.wrapping_add(get16(b0, b1));
            hash ^= hash << 16;
            // `(uint32_t)key[2] << 18`: this byte is read as a signed char.
            hash ^= sext32(b2) << 18;
            hash = hash.wrapping_add(hash >> 11);
        }
        [b0, b1] => {
            hash = hash.wrapping_add(get16(b0, b1));
            hash ^= hash << 11;
            hash = hash.wrapping_add(hash >> 17);
        }
        [b0] => {
            hash = hash.wrapping_add(u32::from(b0));
            hash ^= hash << 10;
            hash = hash.wrapping_add(hash >> 1);
        }
        _ => {}
    }
    hash ^= hash << 3;
    hash = hash.wrapping_add(hash >> 5);
    hash ^= hash << 4;
    hash = hash.wrapping_add(hash >> 17);
    hash ^= hash << 25;
    hash.wrapping_add(hash >> 6)
}

fn murmur(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // The C code narrows the length to uint32_t for the seed.
    let len = key.len() as u32;
    let mut h = 0xdead_beef_u32.wrapping_mul(len) ^ len;

    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = le32_padded(c).wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        h ^= le32_padded(tail);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// nutcracker's jenkins: lookup3 `hashlittle` with initval 13 (nc_jenkins.c).
fn jenkins(key: &[u8]) -> u32 {
    hashlittle(key, 13)
}

/// Bob Jenkins' lookup3 `hashlittle`. The C code picks an aligned-word,
/// aligned-halfword or byte path by pointer alignment; on a little-endian
/// machine all three give this result.
fn hashlittle(key: &[u8], initval: u32) -> u32 {
    let init = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (init, init, init);
    if key.is_empty() {
        return c;
    }

    // Every block but the last goes through `mix`; the last (1..=12 bytes) through
    // `final`. A key of exactly 12*n bytes therefore ends with a full block.
    let mut rest = key;
    while rest.len() > 12 {
        a = a.wrapping_add(le32_padded(&rest[0..4]));
        b = b.wrapping_add(le32_padded(&rest[4..8]));
        c = c.wrapping_add(le32_padded(&rest[8..12]));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    a = a.wrapping_add(le32_padded(rest));
    b = b.wrapping_add(le32_padded(rest.get(4..).unwrap_or(&[])));
    c = c.wrapping_add(le32_padded(rest.get(8..).unwrap_or(&[])));
    final_mix(&mut a, &mut b, &mut c);
    c
}

#[inline(always)]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline(always)]
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(kind: HashKind, key: &[u8], expect: u32) {
        assert_eq!(
            kind.hash(key),
            expect,
            "{}({:?})",
            kind.name(),
            String::from_utf8_lossy(key)
        );
    }

    /// src/test_all.c (identical to libmemcached's vectors).
    #[test]
    fn apple_vectors() {
        let cases = [
            (HashKind::OneAtATime, 2_297_466_611),
            (HashKind::Md5, 3_195_025_439),
            (HashKind::Crc16, 3_662_830_516),
            (HashKind::Crc32, 10_542),
            (HashKind::Crc32a, 2_838_417_488),
            (HashKind::Fnv1_32, 67_176_023),
            (HashKind::Fnv1a_32, 280_767_167),
            (HashKind::Fnv1_64, 473_199_127),
            (HashKind::Fnv1a_64, 1_488_911_807),
            (HashKind::Hsieh, 3_738_850_110),
            (HashKind::Jenkins, 1_442_444_624),
            (HashKind::Murmur, 4_142_305_122),
        ];
        assert_eq!(cases.len(), HashKind::ALL.len());
        for (kind, expect) in cases {
            check(kind, b"apple", expect);
        }
    }

    #[test]
    fn tables_match_the_c_source() {
        assert_eq!(CRC16_TABLE[1], 0x1021);
        assert_eq!(CRC16_TABLE[128], 0x9188);
        assert_eq!(CRC16_TABLE[255], 0x1ef0);
        assert_eq!(CRC32_TABLE[1], 0x7707_3096);
        assert_eq!(CRC32_TABLE[128], 0xedb8_8320);
        assert_eq!(CRC32_TABLE[255], 0x2d02_ef8d);
    }

    #[test]
    fn empty_key() {
        // What each C function returns for length 0 (no bytes are read).
        check(HashKind::OneAtATime, b"", 0);
        check(HashKind::Md5, b"", 0xd98c_1dd4); // digest d41d8cd9..., little-endian
        check(HashKind::Crc16, b"", 0);
        check(HashKind::Crc32, b"", 0);
        check(HashKind::Crc32a, b"", 0);
        check(HashKind::Fnv1_64, b"", FNV_64_INIT as u32);
        check(HashKind::Fnv1a_64, b"", FNV_64_INIT as u32);
        check(HashKind::Fnv1_32, b"", FNV_32_INIT);
        check(HashKind::Fnv1a_32, b"", FNV_32_INIT);
        check(HashKind::Hsieh, b"", 0);
        check(HashKind::Jenkins, b"", 0xdead_beef + 13);
        // murmur: h = 0, then the final mix of 0 is 0.
        check(HashKind::Murmur, b"", 0);
    }

    /// Independent, literal transcriptions of the sign-extending C expressions, used
    /// to pin the behaviour for bytes >= 0x80.
    #[test]
    fn high_bytes_are_sign_extended_where_c_does_it() {
        // one_at_a_time("\xff"): value += 0xffffffff.
        let mut v: u32 = 0xffff_ffff;
        v = v.wrapping_add(v << 10);
        v ^= v >> 6;
        v = v.wrapping_add(v << 3);
        v ^= v >> 11;
        v = v.wrapping_add(v << 15);
        check(HashKind::OneAtATime, b"\xff", v);

        check(
            HashKind::Fnv1a_32,
            b"\x80",
            (FNV_32_INIT ^ 0xffff_ff80).wrapping_mul(FNV_32_PRIME),
        );
        check(
            HashKind::Fnv1_32,
            b"\x80",
            FNV_32_INIT.wrapping_mul(FNV_32_PRIME) ^ 0xffff_ff80,
        );
        check(
            HashKind::Fnv1a_64,
            b"\x80",
            (0x8422_2325u32 ^ 0xffff_ff80).wrapping_mul(0x1b3),
        );
        check(
            HashKind::Fnv1_64,
            b"\x80",
            (FNV_64_INIT.wrapping_mul(FNV_64_PRIME) ^ 0xffff_ffff_ffff_ff80) as u32,
        );

        // Unsigned readers: crc16/crc32/crc32a mask to 8 bits anyway; murmur,
        // jenkins and md5 read uint8_t. murmur("\x80") by the unsigned formula:
        let m = 0x5bd1_e995u32;
        let mut h = 0xdead_beef_u32 ^ 1;
        h ^= 0x80;
        h = h.wrapping_mul(m);
        h ^= h >> 13;
        h = h.wrapping_mul(m);
        h ^= h >> 15;
        check(HashKind::Murmur, b"\x80", h);

        // hsieh's 1-byte tail reads `(unsigned char)`, but its 3-byte tail reads the
        // third byte as a signed char: "ab\xc1" by the sign-extending formula.
        let mut hh: u32 = get16(b'a', b'b');
        hh ^= hh << 16;
        hh ^= 0xffff_ffc1u32 << 18;
        hh = hh.wrapping_add(hh >> 11);
        hh ^= hh << 3;
        hh = hh.wrapping_add(hh >> 5);
        hh ^= hh << 4;
        hh = hh.wrapping_add(hh >> 17);
        hh ^= hh << 25;
        hh = hh.wrapping_add(hh >> 6);
        check(HashKind::Hsieh, b"ab\xc1", hh);
    }

    #[test]
    fn crc_agrees_with_standard_crcs_in_their_defined_bits() {
        // crc32a is plain CRC-32 ("123456789" check value).
        check(HashKind::Crc32a, b"123456789", 0xcbf4_3926);
        // crc16's low 16 bits are CRC-16/XMODEM (check value 0x31c3).
        assert_eq!(HashKind::Crc16.hash(b"123456789") & 0xffff, 0x31c3);
        // crc32 is the top 15 bits of CRC-32.
        check(HashKind::Crc32, b"123456789", (0xcbf4_3926 >> 16) & 0x7fff);
    }

    #[test]
    fn jenkins_matches_lookup3_reference_values() {
        // lookup3.c driver5: hashlittle("Four score and seven years ago", 30, 0)
        // = 0x17770551 and with initval 1 = 0xcd628161; nutcracker's jenkins is
        // the same function with initval 13.
        let s = b"Four score and seven years ago";
        assert_eq!(hashlittle(s, 0), 0x1777_0551);
        assert_eq!(hashlittle(s, 1), 0xcd62_8161);
        assert_eq!(hashlittle(b"", 0), 0xdead_beef);
        assert_eq!(jenkins(s), hashlittle(s, 13));
    }

    /// Every tail length of the block hashes (hsieh: 4, murmur: 4, jenkins: 12) and
    /// long keys: nothing panics, and values depend on every byte.
    #[test]
    fn all_lengths_and_all_bytes_matter() {
        let data: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        for len in 0..data.len() {
            let key = &data[..len];
            for kind in HashKind::ALL {
                let h = kind.hash(key);
                if len == 0 || kind == HashKind::Crc32 {
                    continue;
                }
                // Flipping the last byte must change the hash (crc32 keeps only 15
                // bits, so collisions there are legitimate and it is skipped).
                let mut flipped = key.to_vec();
                flipped[len - 1] ^= 0x01;
                assert_ne!(h, kind.hash(&flipped), "{} len {len}", kind.name());
            }
        }
    }
}
