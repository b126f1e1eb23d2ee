//! The random distribution (nc_random.c): a uniformly random live server per request.
//!
//! nutcracker calls `random() % nlive` after `srandom(time(NULL))`; the sequence
//! itself is not observable by clients, so we use a small SplitMix64 generator kept
//! in a `Cell` (one `Continuum` per single-threaded worker: `Send`, not `Sync`).

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::continuum::{is_live, ServerSpec};

#[derive(Debug, Clone)]
pub(crate) struct Random {
    live: Vec<u32>,
    state: Cell<u64>,
}

impl Random {
    pub(crate) fn build(servers: &[ServerSpec<'_>], live: &[bool]) -> Random {
        let live = (0..servers.len())
            .filter(|&i| is_live(live, i))
            .map(|i| i as u32)
            .collect();
        Random {
            live,
            state: Cell::new(seed()),
        }
    }

    #[inline]
    pub(crate) fn dispatch(&self) -> Option<usize> {
        let n = self.live.len() as u64;
        if n == 0 {
            return None;
        }
        // Multiply-shift maps 32 random bits onto 0..n; the bias (n / 2^32) is far
        // below anything a load balancer can notice.
        let r = self.next() >> 32;
        let i = ((r * n) >> 32) as usize;
        self.live.get(i).map(|&s| s as usize)
    }

    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// SplitMix64 step.
    #[inline]
    fn next(&self) -> u64 {
        let s = self.state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Time mixed with std's per-process random hasher keys, so workers started in the
/// same nanosecond still get different sequences.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(nanos);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_only_live_servers_roughly_uniformly() {
        let servers = [ServerSpec {
            name: b"s",
            weight: 1,
        }; 5];
        let r = Random::build(&servers, &[true, false, true, true, false]);
        let mut counts = [0u32; 5];
        for _ in 0..30_000 {
            counts[r.dispatch().unwrap()] += 1;
        }
        assert_eq!(counts[1], 0);
        assert_eq!(counts[4], 0);
        for i in [0, 2, 3] {
            assert!((9_000..11_000).contains(&counts[i]), "{counts:?}");
        }
    }

    #[test]
    fn none_when_all_ejected() {
        let servers = [ServerSpec {
            name: b"s",
            weight: 1,
        }; 2];
        assert_eq!(Random::build(&servers, &[false, false]).dispatch(), None);
    }
}
