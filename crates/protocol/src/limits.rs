//! Bounds on untrusted input.

/// Hard limits on what a peer may send. Each is enforced as soon as the
/// offending length header has been read, before any payload is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Keys must be strictly shorter than this. nutcracker requires a key to
    /// fit in one mbuf: `mbuf_size - 48` (16336 with the default `-m 16384`).
    pub max_key_len: usize,
    /// Largest bulk string accepted (Redis' own `proto-max-bulk-len` default).
    pub max_bulk_len: usize,
    /// Largest element count of one array.
    pub max_array_len: usize,
    /// Deepest nesting of arrays in a reply (requests are flat).
    pub max_depth: usize,
}

/// nutcracker's default mbuf chunk size (`-m`).
pub const DEFAULT_MBUF_SIZE: usize = 16384;
/// Bytes of each mbuf taken by nutcracker's trailing header.
pub const MBUF_HEADER_SIZE: usize = 48;

impl Limits {
    /// Limits matching nutcracker run with `-m mbuf_size`.
    pub fn for_mbuf_size(mbuf_size: usize) -> Limits {
        Limits {
            max_key_len: mbuf_size.saturating_sub(MBUF_HEADER_SIZE),
            ..Limits::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_len: DEFAULT_MBUF_SIZE - MBUF_HEADER_SIZE,
            max_bulk_len: 512 * 1024 * 1024,
            max_array_len: 1024 * 1024,
            max_depth: 64,
        }
    }
}
