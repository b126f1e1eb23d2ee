//! Routing a key to a server index: the pool's hash and distribution
//! continuum (nc-hashkit), rebuilt on this worker when a server is ejected
//! (on any worker) or comes back (after `server_retry_timeout`, or a
//! successful health check). With `auto_eject_drop: false` the ring keeps
//! ejected servers and their keys get no server (the request fails at once).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nc_hashkit::{Continuum, ServerSpec};

use super::health::{ejection_clock_us, Ejection, PoolShared};

/// The pool's continuum over the servers marked live.
fn build_continuum(config: &nc_config::Pool, live: &[bool]) -> Continuum {
    let specs: Vec<ServerSpec<'_>> = config
        .servers
        .iter()
        .map(|s| ServerSpec {
            name: s.name.as_bytes(),
            weight: s.weight,
        })
        .collect();
    Continuum::build(config.distribution, &specs, live)
}

/// One worker's router for one pool.
pub(crate) struct Router {
    config: Arc<nc_config::Pool>,
    shared: Arc<PoolShared>,
    continuum: RefCell<Continuum>,
    /// With `auto_eject_drop: false`: the ejected servers, still in the ring.
    ejected: RefCell<Vec<bool>>,
    pub(crate) ejection: Rc<Ejection>,
}

impl Router {
    pub(crate) fn new(config: Arc<nc_config::Pool>, shared: Arc<PoolShared>) -> Router {
        let live = vec![true; config.servers.len()];
        let continuum = RefCell::new(build_continuum(&config, &live));
        let ejection = Rc::new(Ejection::new(&config));
        Router {
            ejected: RefCell::new(vec![false; config.servers.len()]),
            config,
            shared,
            continuum,
            ejection,
        }
    }

    /// Rebuilds the continuum when an ejection started (on any worker) or
    /// ended.
    #[inline]
    fn refresh(&self) {
        if self.ejection.policy.is_none() {
            return;
        }
        let ejections = self.shared.health.ejections.load(Ordering::Acquire);
        let ended = self
            .ejection
            .next_rebuild_us
            .get()
            .is_some_and(|at| ejection_clock_us() >= at);
        if ended || ejections != self.ejection.seen_ejections.get() {
            self.rebuild(ejections);
        }
    }

    #[cold]
    fn rebuild(&self, ejections: u64) {
        let now = ejection_clock_us();
        let mut next: Option<u64> = None;
        let live: Vec<bool> = self
            .shared
            .health
            .servers
            .iter()
            .map(|health| {
                let until = health.ejected_until_us.load(Ordering::Relaxed);
                if until > now {
                    next = Some(next.map_or(until, |n| n.min(until)));
                }
                until <= now
            })
            .collect();
        if self.ejection.keep_in_ring {
            // The ring keeps every server; routing to an ejected one fails.
            *self.ejected.borrow_mut() = live.iter().map(|l| !l).collect();
        } else {
            *self.continuum.borrow_mut() = build_continuum(&self.config, &live);
        }
        self.ejection.next_rebuild_us.set(next);
        self.ejection.seen_ejections.set(ejections);
    }

    /// The server index for a key, or None when no server is live.
    #[inline]
    pub(crate) fn route(&self, key: &[u8]) -> Option<usize> {
        self.refresh();
        let tag = self.config.hash_tag;
        let server = self
            .continuum
            .borrow()
            .server_for_key(self.config.hash, tag, key)?;
        if self.ejection.keep_in_ring && self.ejected.borrow()[server] {
            return None;
        }
        Some(server)
    }
}
