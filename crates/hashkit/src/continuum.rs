//! `Continuum`: a pool's routing table, built once per server-set change and queried
//! per request (nc_server.c `server_pool_run` / `server_pool_idx`).

use crate::ketama::Ketama;
use crate::modula::Modula;
use crate::random::Random;
use crate::tag::hash_tag_key;
use crate::{DistributionKind, HashKind};

/// One configured server as the distributions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSpec<'a> {
    /// The name hashed by ketama: the `name` field of `host:port:weight name`, else
    /// `host:port` (or `host` alone for port 11211). Choosing it is the caller's job.
    pub name: &'a [u8],
    /// The configured weight (nutcracker requires >= 1; 0 means "no share").
    pub weight: u32,
}

/// Maps key hashes to server indexes for one pool.
///
/// Server indexes are positions in the `servers` slice given to [`Continuum::build`];
/// the caller sorts servers the way nutcracker does (by name: shorter first, then
/// bytewise) before building.
#[derive(Debug, Clone)]
pub struct Continuum {
    kind: DistributionKind,
    /// Configured servers, live or not: nutcracker's 1-server shortcut looks at this.
    nservers: usize,
    nlive: usize,
    table: Table,
}

#[derive(Debug, Clone)]
enum Table {
    Ketama(Ketama),
    Modula(Modula),
    Random(Random),
}

/// `live[i]`, with servers missing from a short `live` slice counted as live.
#[inline]
pub(crate) fn is_live(live: &[bool], i: usize) -> bool {
    live.get(i).copied().unwrap_or(true)
}

impl Continuum {
    /// Builds the table. `live[i] == false` means server `i` is ejected and gets no
    /// share; entries missing from `live` count as live. Server indexes are
    /// positions in `servers` (already sorted by the caller the way nutcracker sorts
    /// them).
    pub fn build(kind: DistributionKind, servers: &[ServerSpec<'_>], live: &[bool]) -> Continuum {
        let nlive = (0..servers.len()).filter(|&i| is_live(live, i)).count();
        let table = match kind {
            DistributionKind::Ketama => Table::Ketama(Ketama::build(servers, live)),
            DistributionKind::Modula => Table::Modula(Modula::build(servers, live)),
            DistributionKind::Random => Table::Random(Random::build(servers, live)),
        };
        Continuum {
            kind,
            nservers: servers.len(),
            nlive,
            table,
        }
    }

    /// Index of the server for a key hash; `None` when no server is live (or, for
    /// ketama/modula, when every live server has weight 0). `random` ignores `hash`.
    #[inline]
    pub fn dispatch(&self, hash: u32) -> Option<usize> {
        match &self.table {
            Table::Ketama(k) => k.dispatch(hash),
            Table::Modula(m) => m.dispatch(hash),
            Table::Random(r) => r.dispatch(),
        }
    }

    /// The whole routing of one key, as `server_pool_idx` does it:
    /// - no live server: `None` (nutcracker fails the request);
    /// - exactly one *configured* server: index 0, no hashing;
    /// - otherwise apply `hash_tag`, hash (an empty key, or empty tagged part, hashes
    ///   to 0 without calling the hash function) and dispatch. `random` does not hash.
    #[inline]
    pub fn server_for_key(
        &self,
        hash: HashKind,
        tag: Option<[u8; 2]>,
        key: &[u8],
    ) -> Option<usize> {
        if self.nlive == 0 {
            return None;
        }
        if self.nservers == 1 {
            return Some(0);
        }
        if self.kind == DistributionKind::Random {
            return self.dispatch(0);
        }
        let key = hash_tag_key(key, tag);
        let h = if key.is_empty() { 0 } else { hash.hash(key) };
        self.dispatch(h)
    }

    /// Number of live (not ejected) servers.
    pub fn live_count(&self) -> usize {
        self.nlive
    }

    /// Number of configured servers, live or not.
    pub fn server_count(&self) -> usize {
        self.nservers
    }

    /// The distribution this table implements.
    pub fn kind(&self) -> DistributionKind {
        self.kind
    }

    /// Entries in nutcracker's continuum (`ncontinuum`): ketama points, the sum of
    /// live weights for modula, live servers for random.
    pub fn point_count(&self) -> u64 {
        match &self.table {
            Table::Ketama(k) => k.len() as u64,
            Table::Modula(m) => m.len(),
            Table::Random(r) => r.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<Vec<u8>> {
        (1..=n).map(|i| format!("server{i}").into_bytes()).collect()
    }

    fn specs<'a>(names: &'a [Vec<u8>], weights: &[u32]) -> Vec<ServerSpec<'a>> {
        names
            .iter()
            .zip(weights)
            .map(|(n, &weight)| ServerSpec { name: n, weight })
            .collect()
    }

    fn keys(n: usize) -> impl Iterator<Item = Vec<u8>> {
        (0..n).map(|i| format!("key:{i}").into_bytes())
    }

    #[test]
    fn continuum_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Continuum>();
    }

    #[test]
    fn ketama_equal_weights_spread_evenly() {
        let names = names(4);
        let c = Continuum::build(
            DistributionKind::Ketama,
            &specs(&names, &[1; 4]),
            &[true; 4],
        );
        assert_eq!(c.point_count(), 640);
        let mut counts = [0usize; 4];
        for key in keys(40_000) {
            counts[c.server_for_key(HashKind::Fnv1a_64, None, &key).unwrap()] += 1;
        }
        for n in counts {
            // 10_000 expected; ketama with 160 points is within ~15%.
            assert!((8_000..12_000).contains(&n), "{counts:?}");
        }
    }

    #[test]
    fn ketama_ejection_moves_only_the_ejected_servers_keys() {
        let names = names(4);
        let specs = specs(&names, &[1; 4]);
        let all = Continuum::build(DistributionKind::Ketama, &specs, &[true; 4]);
        let without2 =
            Continuum::build(DistributionKind::Ketama, &specs, &[true, true, false, true]);
        assert_eq!(without2.live_count(), 3);
        let mut moved = 0;
        for key in keys(10_000) {
            let h = HashKind::Murmur.hash(&key);
            let before = all.dispatch(h).unwrap();
            let after = without2.dispatch(h).unwrap();
            assert_ne!(after, 2);
            if before == 2 {
                moved += 1;
            } else {
                assert_eq!(
                    before,
                    after,
                    "key {:?} moved",
                    String::from_utf8_lossy(&key)
                );
            }
        }
        assert!(moved > 1_500, "{moved}");
    }

    #[test]
    fn ketama_weights_set_point_counts() {
        let names = names(3);
        let c = Continuum::build(
            DistributionKind::Ketama,
            &specs(&names, &[1, 2, 3]),
            &[true; 3],
        );
        let Table::Ketama(k) = &c.table else {
            unreachable!()
        };
        assert_eq!(
            [k.points_of(0), k.points_of(1), k.points_of(2)],
            [80, 160, 240]
        );

        // Ejecting server 2 (weight 3) re-spreads over the remaining weight 3.
        let c = Continuum::build(
            DistributionKind::Ketama,
            &specs(&names, &[1, 2, 3]),
            &[true, true, false],
        );
        let Table::Ketama(k) = &c.table else {
            unreachable!()
        };
        assert_eq!(
            [k.points_of(0), k.points_of(1), k.points_of(2)],
            [104, 212, 0]
        );
    }

    #[test]
    fn modula_indices() {
        let names = names(3);
        let c = Continuum::build(
            DistributionKind::Modula,
            &specs(&names, &[1, 2, 1]),
            &[true; 3],
        );
        // Virtual array [0, 1, 1, 2].
        let got: Vec<_> = (0..8).map(|h| c.dispatch(h).unwrap()).collect();
        assert_eq!(got, [0, 1, 1, 2, 0, 1, 1, 2]);
        assert_eq!(c.point_count(), 4);

        let c = Continuum::build(
            DistributionKind::Modula,
            &specs(&names, &[1, 2, 1]),
            &[true, false, true],
        );
        let got: Vec<_> = (0..4).map(|h| c.dispatch(h).unwrap()).collect();
        assert_eq!(got, [0, 2, 0, 2]);
    }

    #[test]
    fn one_configured_server_skips_hashing() {
        let one = names(1);
        for kind in DistributionKind::ALL {
            let c = Continuum::build(kind, &specs(&one, &[1]), &[true]);
            assert_eq!(c.server_for_key(HashKind::Md5, None, b"anything"), Some(0));
            let dead = Continuum::build(kind, &specs(&one, &[1]), &[false]);
            assert_eq!(dead.server_for_key(HashKind::Md5, None, b"anything"), None);
        }
        // Two configured, one live: the shortcut does not apply, but the only live
        // server gets every key.
        let names = names(2);
        let c = Continuum::build(
            DistributionKind::Ketama,
            &specs(&names, &[1, 1]),
            &[false, true],
        );
        for key in keys(100) {
            assert_eq!(c.server_for_key(HashKind::Md5, None, &key), Some(1));
        }
    }

    #[test]
    fn empty_key_and_hash_tag() {
        let names = names(5);
        let specs = specs(&names, &[1; 5]);
        for kind in [DistributionKind::Ketama, DistributionKind::Modula] {
            let c = Continuum::build(kind, &specs, &[true; 5]);
            for h in HashKind::ALL {
                assert_eq!(c.server_for_key(h, None, b""), c.dispatch(0));
                assert_eq!(
                    c.server_for_key(h, Some(*b"{}"), b"{}"),
                    c.dispatch(h.hash(b"{}"))
                );
                let tagged = c.server_for_key(h, Some(*b"{}"), b"user:{42}:a");
                assert_eq!(tagged, c.dispatch(h.hash(b"42")));
                assert_eq!(tagged, c.server_for_key(h, Some(*b"{}"), b"other{42}"));
            }
        }
    }

    #[test]
    fn nothing_live() {
        let names = names(3);
        let specs = specs(&names, &[1; 3]);
        for kind in DistributionKind::ALL {
            let c = Continuum::build(kind, &specs, &[false; 3]);
            assert_eq!(c.live_count(), 0);
            assert_eq!(c.dispatch(123), None);
            assert_eq!(c.server_for_key(HashKind::Crc32a, None, b"k"), None);
            let empty = Continuum::build(kind, &[], &[]);
            assert_eq!(empty.dispatch(1), None);
            assert_eq!(empty.server_for_key(HashKind::Crc32a, None, b"k"), None);
        }
    }

    /// Keys are untrusted: any bytes, any length, through every combination.
    #[test]
    fn arbitrary_keys_never_panic() {
        let names = names(5);
        let specs = specs(&names, &[1, 0, 3, 1, 2]);
        let tables: Vec<Continuum> = DistributionKind::ALL
            .into_iter()
            .flat_map(|kind| {
                [
                    Continuum::build(kind, &specs, &[true; 5]),
                    Continuum::build(kind, &specs, &[false, true, false, true, true]),
                    Continuum::build(kind, &specs[..1], &[]),
                ]
            })
            .collect();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let len = (next() % 700) as usize;
            let key: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let tag = match next() % 3 {
                0 => None,
                1 => Some(*b"{}"),
                _ => Some([next() as u8, next() as u8]),
            };
            for c in &tables {
                for h in HashKind::ALL {
                    let got = c.server_for_key(h, tag, &key);
                    assert!(got.is_some_and(|i| i < c.server_count()));
                }
            }
        }
    }

    #[test]
    fn random_uses_live_servers_only() {
        let names = names(3);
        let c = Continuum::build(
            DistributionKind::Random,
            &specs(&names, &[1; 3]),
            &[true, false, true],
        );
        let mut seen = [false; 3];
        for key in keys(200) {
            seen[c.server_for_key(HashKind::Md5, None, &key).unwrap()] = true;
        }
        assert_eq!(seen, [true, false, true]);
    }
}
