//! The ketama continuum (nc_ketama.c `ketama_update` / `ketama_dispatch`).
//!
//! Each live server gets points in proportion to its weight; a point is 4 bytes of
//! the md5 of `"<name>-<i>"`. A key hash maps to the first point `>=` it, wrapping to
//! the first point. The point count is computed in `float` as the C code does.

use crate::continuum::{is_live, ServerSpec};
use crate::hash::{digest_word, md5_digest};

/// KETAMA_POINTS_PER_SERVER: points for a server of average weight.
const POINTS_PER_SERVER: u32 = 160;
/// Points per md5 digest (one per 32-bit word).
const POINTS_PER_HASH: u32 = 4;
/// Most bytes of `"<name>-<i>"` that get hashed. The Debian 0.5.0 binary formats
/// into a 273-byte buffer and clamps the length to 272 (seen in its disassembly:
/// `__snprintf_chk(.., 0x111, ..)`, then `hostlen = min(ret, 0x110)`), unlike
/// older sources whose 86-byte buffer made long names read past the array.
const MAX_HASHED_HOSTLEN: usize = 272;

/// Sorted continuum points, stored as parallel arrays so the binary search only
/// touches the values.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ketama {
    values: Vec<u32>,
    servers: Vec<u32>,
}

/// Points for one live server: `floorf(pct * 160 / 4 * nlive + 1e-10) * 4`.
///
/// The C expression mixes precisions: everything is `float` except the `1e-10`
/// literal, which promotes the sum to `double` before the cast back to `float`. We
/// evaluate in the same order and precision. The result is capped at
/// `160 * nlive` so a corrupt total (0, or a u32 wrap) cannot ask for billions of
/// points; C would misbehave there anyway.
pub(crate) fn points_for(weight: u32, total_weight: u32, nlive: u32) -> u32 {
    let pct: f32 = weight as f32 / total_weight as f32;
    let scaled: f32 = pct * POINTS_PER_SERVER as f32 / 4.0 * nlive as f32;
    let nudged = (f64::from(scaled) + 0.000_000_000_1) as f32;
    // `as u32` saturates (NaN -> 0), matching nothing in C but never panicking.
    let points = (nudged.floor() * 4.0) as u32;
    points.min(POINTS_PER_SERVER.saturating_mul(nlive))
}

impl Ketama {
    pub(crate) fn build(servers: &[ServerSpec<'_>], live: &[bool]) -> Ketama {
        let live_iter = || {
            servers
                .iter()
                .enumerate()
                .filter(|&(i, _)| is_live(live, i))
        };
        let nlive = live_iter().count() as u32;
        // uint32_t in C: wraps on overflow.
        let total_weight = live_iter().fold(0u32, |t, (_, s)| t.wrapping_add(s.weight));

        let mut points: Vec<(u32, u32)> = Vec::new();
        let mut host = Vec::with_capacity(MAX_HASHED_HOSTLEN + 16);
        for (index, server) in live_iter() {
            let count = points_for(server.weight, total_weight, nlive);
            for i in 0..count / POINTS_PER_HASH {
                point_name(&mut host, server.name, i);
                let digest = md5_digest(&host);
                for word in 0..POINTS_PER_HASH as usize {
                    points.push((digest_word(&digest, word), index as u32));
                }
            }
        }
        // qsort by value. glibc's qsort is a merge sort for arrays this size, so
        // equal values keep generation order (lower server index first); a stable
        // sort reproduces that.
        points.sort_by_key(|&(value, _)| value);
        let (values, servers) = points.into_iter().unzip();
        Ketama { values, servers }
    }

    #[inline]
    pub(crate) fn dispatch(&self, hash: u32) -> Option<usize> {
        // Lower bound: first point with value >= hash; past the end wraps to 0.
        let i = self.values.partition_point(|&v| v < hash);
        let i = if i == self.values.len() { 0 } else { i };
        self.servers.get(i).map(|&s| s as usize)
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    #[cfg(test)]
    pub(crate) fn points_of(&self, server: usize) -> usize {
        self.servers
            .iter()
            .filter(|&&s| s as usize == server)
            .count()
    }
}

/// Writes the bytes nutcracker md5s for point group `i` of a server:
/// `snprintf(host, 273, "%.*s-%u", name.len, name, i)`, at most 272 bytes.
///
/// `%.*s` stops at a NUL inside the name, so we do too.
fn point_name(host: &mut Vec<u8>, name: &[u8], i: u32) {
    use std::io::Write;

    host.clear();
    let name = name
        .iter()
        .position(|&b| b == 0)
        .map_or(name, |nul| &name[..nul]);
    host.extend_from_slice(name);
    // Writing to a Vec cannot fail.
    let _ = write!(host, "-{i}");
    host.truncate(MAX_HASHED_HOSTLEN);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `ketama_hash` of nc_ketama.c: word `alignment` of md5(key).
    fn ketama_hash(key: &[u8], alignment: usize) -> u32 {
        digest_word(&md5_digest(key), alignment)
    }

    #[test]
    fn point_hash_vectors() {
        // src/test_all.c
        assert_eq!(ketama_hash(b"server1-8", 0), 3_853_726_576);
        assert_eq!(ketama_hash(b"server1-8", 3), 2_667_054_752);
    }

    #[test]
    fn point_counts_follow_the_float_formula() {
        // Equal weights: 160 each, except where f32 rounding of 1/n lands just
        // below 40 points per hash: then C's floorf drops a whole digest (156).
        // These n come from compiling the C expression with gcc on x86-64.
        let short = [25, 47, 50, 55, 61];
        for n in 1..=64 {
            let expect = if short.contains(&n) { 156 } else { 160 };
            assert_eq!(points_for(1, n, n), expect, "n={n}");
            assert_eq!(points_for(7, 7 * n, n), expect, "n={n}");
        }
        // Weights 1,2,3 (total 6, 3 servers): 1/6*40*3 = 20 -> 80; 40 -> 160; 60 -> 240.
        assert_eq!(points_for(1, 6, 3), 80);
        assert_eq!(points_for(2, 6, 3), 160);
        assert_eq!(points_for(3, 6, 3), 240);
        // Weights 1 and 2: 1/3*80 = 26.67 -> 26*4 = 104; 2/3*80 = 53.33 -> 212.
        assert_eq!(points_for(1, 3, 2), 104);
        assert_eq!(points_for(2, 3, 2), 212);
        // Cases where f32 rounding makes C give one digest (4 points) less than
        // exact arithmetic would (values from gcc, x86-64):
        // (weight, total live weight, live servers, points).
        for (w, t, n, pts) in [
            (1, 25, 5, 28),
            (24, 25, 5, 764),
            (29, 30, 3, 460),
            (25, 48, 6, 496),
            (11, 14, 7, 876),
        ] {
            assert_eq!(points_for(w, t, n), pts, "{w}/{t} of {n}");
        }
        // Degenerate totals never panic nor explode.
        assert_eq!(points_for(0, 0, 1), 0);
        assert_eq!(points_for(1, 0, 1), 160);
        assert_eq!(points_for(0, 5, 2), 0);
    }

    #[test]
    fn float_not_double() {
        // A case where float and double rounding differ in the point count would
        // catch a port that computes in f64. Search for one and check we follow f32.
        let mut found = false;
        'outer: for nlive in 2..40u32 {
            for total in nlive..400 {
                for w in 1..total {
                    let f32_pts = points_for(w, total, nlive);
                    let pct = f64::from(w) / f64::from(total);
                    let f64_pts =
                        ((pct * 160.0 / 4.0 * f64::from(nlive) + 1e-10).floor() * 4.0) as u32;
                    if f32_pts != f64_pts {
                        found = true;
                        break 'outer;
                    }
                }
            }
        }
        assert!(found, "float and double agree everywhere searched");
    }

    #[test]
    fn point_names() {
        let mut buf = Vec::new();
        point_name(&mut buf, b"server1", 8);
        assert_eq!(buf, b"server1-8");
        point_name(&mut buf, b"a\0b", 12);
        assert_eq!(buf, b"a-12");
        // 83-byte names (as in the golden data): "-10" makes 86 bytes, all hashed.
        let name83 = [b'x'; 83];
        point_name(&mut buf, &name83, 10);
        assert_eq!(buf.len(), 86);
        assert_eq!(&buf[83..], b"-10");
        // Past 272 bytes the formatted string is cut.
        let long = [b'y'; 300];
        point_name(&mut buf, &long, 7);
        assert_eq!(buf, &long[..272]);
        point_name(&mut buf, &long[..270], 39);
        assert_eq!(&buf[268..], b"yy-3");
    }

    #[test]
    fn dispatch_wraps_and_breaks_ties_low() {
        let k = Ketama {
            values: vec![10, 20, 20, 30],
            servers: vec![0, 1, 2, 3],
        };
        assert_eq!(k.dispatch(0), Some(0));
        assert_eq!(k.dispatch(10), Some(0));
        assert_eq!(k.dispatch(11), Some(1));
        assert_eq!(k.dispatch(20), Some(1));
        assert_eq!(k.dispatch(30), Some(3));
        assert_eq!(k.dispatch(31), Some(0));
        assert_eq!(k.dispatch(u32::MAX), Some(0));
        assert_eq!(Ketama::default().dispatch(5), None);
    }
}
