//! nutcracker-compatible key hashing and server distribution.
//!
//! Layout: the twelve hash functions of twemproxy's hashkit (`HashKind`), hash-tag
//! extraction, and the three distributions (`DistributionKind`: ketama, modula,
//! random) that map a key hash to a server index. Everything matches nutcracker
//! 0.5.0 bit for bit; only `random` has state (its PRNG).
//!
//! - `hash`: `HashKind::hash`, the twelve hash functions.
//! - `tag`: `hash_tag_key`, the part of a key that is hashed.
//! - `continuum`: `Continuum` and `ServerSpec`, the per-pool routing table.
//! - `ketama`, `modula`, `random`: the three tables behind `Continuum`.
//! - `slot`: Redis Cluster's key slot (`cluster_key_slot`), CRC16 with the
//!   fixed `{tag}` rule, for `distribution: redis_cluster` pools.
//!
//! No function panics on any key: keys are untrusted bytes.
#![forbid(unsafe_code)]

mod continuum;
mod hash;
mod ketama;
mod modula;
mod random;
mod slot;
mod tag;

pub use continuum::{Continuum, ServerSpec};
pub use slot::{cluster_hash_tag, cluster_key_slot, crc16_xmodem, CLUSTER_SLOTS};
pub use tag::hash_tag_key;

/// The `hash:` pool key. Names are the ones nutcracker accepts.
// Variant names mirror the config names (`fnv1a_64`), hence the underscores.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashKind {
    OneAtATime,
    Md5,
    Crc16,
    Crc32,
    Crc32a,
    Fnv1_64,
    Fnv1a_64,
    Fnv1_32,
    Fnv1a_32,
    Hsieh,
    Murmur,
    Jenkins,
}

impl HashKind {
    /// All hashes, in nutcracker's HASH_CODEC order.
    pub const ALL: [HashKind; 12] = [
        HashKind::OneAtATime,
        HashKind::Md5,
        HashKind::Crc16,
        HashKind::Crc32,
        HashKind::Crc32a,
        HashKind::Fnv1_64,
        HashKind::Fnv1a_64,
        HashKind::Fnv1_32,
        HashKind::Fnv1a_32,
        HashKind::Hsieh,
        HashKind::Murmur,
        HashKind::Jenkins,
    ];

    /// The config-file name of this hash (`fnv1a_64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            HashKind::OneAtATime => "one_at_a_time",
            HashKind::Md5 => "md5",
            HashKind::Crc16 => "crc16",
            HashKind::Crc32 => "crc32",
            HashKind::Crc32a => "crc32a",
            HashKind::Fnv1_64 => "fnv1_64",
            HashKind::Fnv1a_64 => "fnv1a_64",
            HashKind::Fnv1_32 => "fnv1_32",
            HashKind::Fnv1a_32 => "fnv1a_32",
            HashKind::Hsieh => "hsieh",
            HashKind::Murmur => "murmur",
            HashKind::Jenkins => "jenkins",
        }
    }

    /// Parses a config-file name; exact, case-sensitive match as in nutcracker.
    pub fn from_name(name: &str) -> Option<HashKind> {
        HashKind::ALL.into_iter().find(|h| h.name() == name)
    }
}

/// The `distribution:` pool key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DistributionKind {
    Ketama,
    Modula,
    Random,
}

impl DistributionKind {
    pub const ALL: [DistributionKind; 3] = [
        DistributionKind::Ketama,
        DistributionKind::Modula,
        DistributionKind::Random,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DistributionKind::Ketama => "ketama",
            DistributionKind::Modula => "modula",
            DistributionKind::Random => "random",
        }
    }

    pub fn from_name(name: &str) -> Option<DistributionKind> {
        DistributionKind::ALL.into_iter().find(|d| d.name() == name)
    }
}
