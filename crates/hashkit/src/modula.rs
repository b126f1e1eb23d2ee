//! The modula distribution (nc_modula.c): `hash % total_live_weight`.
//!
//! nutcracker builds an array holding each live server `weight` times, in server
//! order, and indexes it with `hash % len`. We store cumulative weights instead and
//! binary-search them: same answer, O(live servers) memory whatever the weights.

use crate::continuum::{is_live, ServerSpec};

#[derive(Debug, Clone, Default)]
pub(crate) struct Modula {
    /// Exclusive end of each live server's slot range in the virtual array.
    ends: Vec<u64>,
    servers: Vec<u32>,
}

impl Modula {
    pub(crate) fn build(servers: &[ServerSpec<'_>], live: &[bool]) -> Modula {
        let mut total = 0u64;
        let mut ends = Vec::new();
        let mut indexes = Vec::new();
        for (index, server) in servers.iter().enumerate() {
            // A weight of 0 adds no slots, as the C loop `for (w = 0; w < weight; ..)`.
            if !is_live(live, index) || server.weight == 0 {
                continue;
            }
            total += u64::from(server.weight);
            ends.push(total);
            indexes.push(index as u32);
        }
        Modula {
            ends,
            servers: indexes,
        }
    }

    #[inline]
    pub(crate) fn dispatch(&self, hash: u32) -> Option<usize> {
        let total = *self.ends.last()?;
        let slot = u64::from(hash) % total;
        let i = self.ends.partition_point(|&end| end <= slot);
        self.servers.get(i).map(|&s| s as usize)
    }

    /// Length of nutcracker's continuum array (sum of live weights).
    pub(crate) fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(weight: u32) -> ServerSpec<'static> {
        ServerSpec { name: b"s", weight }
    }

    /// The literal nutcracker construction, for comparison.
    fn naive(servers: &[ServerSpec<'_>], live: &[bool], hash: u32) -> Option<usize> {
        let mut slots = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            if live[i] {
                slots.extend(std::iter::repeat_n(i, s.weight as usize));
            }
        }
        if slots.is_empty() {
            return None;
        }
        Some(slots[hash as usize % slots.len()])
    }

    #[test]
    fn equal_weights_are_hash_mod_n() {
        let servers = [spec(1), spec(1), spec(1)];
        let m = Modula::build(&servers, &[true; 3]);
        for h in 0..30 {
            assert_eq!(m.dispatch(h), Some(h as usize % 3));
        }
        assert_eq!(m.dispatch(u32::MAX), Some((u32::MAX % 3) as usize));
    }

    #[test]
    fn weights_and_ejection_match_the_repeated_array() {
        let servers = [spec(2), spec(1), spec(3), spec(0), spec(4)];
        let lives = [
            [true, true, true, true, true],
            [false, true, true, true, true],
            [true, false, true, false, false],
            [false, false, false, true, false],
        ];
        for live in lives {
            let m = Modula::build(&servers, &live);
            for h in (0..200).chain([u32::MAX - 1, u32::MAX]) {
                assert_eq!(m.dispatch(h), naive(&servers, &live, h), "{live:?} {h}");
            }
        }
    }

    #[test]
    fn no_live_server() {
        let m = Modula::build(&[spec(1)], &[false]);
        assert_eq!(m.dispatch(0), None);
        assert_eq!(m.len(), 0);
    }
}
