//! Redis Cluster's key slot: `CRC16(key) mod 16384` with the fixed hash-tag
//! rule of redis/src/cluster.c `keyHashSlot`. Unlike the pool's `hash_tag`,
//! the rule is not configurable: a cluster routes by it, so a proxy that
//! hashed any other part of the key would send it to the wrong node.

use crate::hash::CRC16_TABLE;

/// Slots in a Redis Cluster.
pub const CLUSTER_SLOTS: usize = 16384;

/// CRC-16/XMODEM truncated to 16 bits, as Redis computes it (nutcracker's
/// `crc16` hash keeps a wider state; see `hash`).
pub fn crc16_xmodem(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The part of `key` Redis Cluster hashes: between the first `{` and the
/// first `}` after it, when that is not empty; else the whole key.
pub fn cluster_hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

/// The slot of `key` (0..16384).
#[inline]
pub fn cluster_key_slot(key: &[u8]) -> u16 {
    crc16_xmodem(cluster_hash_tag(key)) & (CLUSTER_SLOTS as u16 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(crc16_xmodem(b""), 0);
    }

    /// Vectors verified with `CLUSTER KEYSLOT` on redis-server 7.0.15
    /// (shared/reference/redis-cluster.md §1.1).
    #[test]
    fn slots_agree_with_cluster_keyslot() {
        for (key, slot) in [
            (&b"123456789"[..], 12739),
            (b"foo", 12182),
            (b"bar", 5061),
            (b"baz", 4813),
            (b"{bar}vaz", 5061),
            (b"foo{bar}{zap}", 5061),
            (b"hello", 866),
            (b"{user1000}.following", 3443),
            (b"{user1000}.followers", 3443),
            (b"user1000", 3443),
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
            (b"{bar", cluster_key_slot(b"{bar")),
            (b"{}", 15257),
            (b"", 0),
        ] {
            assert_eq!(
                cluster_key_slot(key),
                slot,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(
            cluster_key_slot(b"foo{{bar}}zap"),
            cluster_key_slot(b"{bar")
        );
    }

    #[test]
    fn tags() {
        assert_eq!(cluster_hash_tag(b"a{b}c"), b"b");
        assert_eq!(cluster_hash_tag(b"a{}c{d}"), b"a{}c{d}");
        assert_eq!(cluster_hash_tag(b"a{b"), b"a{b");
        assert_eq!(cluster_hash_tag(b"}a{b}"), b"b");
        assert_eq!(cluster_hash_tag(b"{{b}}"), b"{b");
    }
}
