//! The connection tasks: `client` (read, parse, route, reply in order),
//! `server` (inq/outq and FIFO reply matching per backend connection),
//! `replies` (a client's in-order reply queue and fragment coalescing) and
//! `idle` (idle clients parked without a task or buffers until their socket
//! is readable). They sit below the workers and pools: nothing here binds a
//! listener or admits a client.

pub(crate) mod client;
pub(crate) mod idle;
pub(crate) mod replies;
pub(crate) mod server;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use crate::stats::WorkerStats;
use crate::worker::Admission;

/// Per-worker state every connection of the worker can reach.
pub(crate) struct WorkerCtx {
    /// Which worker this is (0-based): its column in per-worker counters.
    pub(crate) index: usize,
    /// Set on drain: clients stop reading and close after their replies.
    pub(crate) draining: Cell<bool>,
    /// The worker's own counters (connections, waiting, parked clients).
    pub(crate) stats: Arc<WorkerStats>,
    /// The process-wide client caps; a client's slot is released when its
    /// connection closes, whether it ends as a task or parked.
    pub(crate) admission: Arc<Admission>,
    /// Idle clients parked outside the runtime.
    pub(crate) idle: idle::IdleSet,
    clients: RefCell<HashMap<u64, Weak<replies::ClientShared>>>,
    next_client: Cell<u64>,
}

impl WorkerCtx {
    pub(crate) fn new(
        index: usize,
        stats: Arc<WorkerStats>,
        admission: Arc<Admission>,
    ) -> WorkerCtx {
        WorkerCtx {
            index,
            draining: Cell::new(false),
            stats,
            admission,
            idle: idle::IdleSet::new(),
            clients: RefCell::new(HashMap::new()),
            next_client: Cell::new(0),
        }
    }

    /// Registers a client so a drain can wake it; returns its id.
    pub(crate) fn register(&self, client: &Rc<replies::ClientShared>) -> u64 {
        let id = self.next_client.get();
        self.next_client.set(id + 1);
        self.clients.borrow_mut().insert(id, Rc::downgrade(client));
        id
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.clients.borrow_mut().remove(&id);
    }

    /// Client tasks on this worker (parked clients have none).
    pub(crate) fn active_clients(&self) -> usize {
        self.clients.borrow().len()
    }

    /// The client tasks now, to visit (a drain, an idle sweep).
    pub(crate) fn clients(&self) -> Vec<Rc<replies::ClientShared>> {
        self.clients
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub(crate) fn start_drain(&self) {
        self.draining.set(true);
        // Parked clients sent nothing that awaits a reply: they close now.
        self.idle.close_all(self);
        for client in self.clients() {
            client.waker.wake();
        }
    }
}
