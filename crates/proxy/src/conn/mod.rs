//! The connection tasks: `client` (read, parse, route, reply in order),
//! `server` (inq/outq and FIFO reply matching per backend connection) and
//! `replies` (a client's in-order reply queue and fragment coalescing).
//! They sit below the workers and pools: nothing here binds a listener or
//! admits a client.

pub(crate) mod client;
pub(crate) mod replies;
pub(crate) mod server;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

/// Per-worker state every connection of the worker can reach.
pub(crate) struct WorkerCtx {
    /// Which worker this is (0-based): its column in per-worker counters.
    pub(crate) index: usize,
    /// Set on drain: clients stop reading and close after their replies.
    pub(crate) draining: Cell<bool>,
    clients: RefCell<HashMap<u64, Weak<replies::ClientShared>>>,
    next_client: Cell<u64>,
}

impl WorkerCtx {
    pub(crate) fn new(index: usize) -> WorkerCtx {
        WorkerCtx {
            index,
            draining: Cell::new(false),
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

    pub(crate) fn active_clients(&self) -> usize {
        self.clients.borrow().len()
    }

    pub(crate) fn start_drain(&self) {
        self.draining.set(true);
        let clients: Vec<_> = self
            .clients
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for client in clients {
            client.waker.wake();
        }
    }
}
