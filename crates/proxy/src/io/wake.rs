//! A single-threaded task wake-up: a connection task registers its waker on
//! every poll; producers on the same worker call `wake` as often as they like
//! and only the first call after a poll reaches the executor.

use std::cell::{Cell, RefCell};
use std::task::Waker;

#[derive(Default)]
pub(crate) struct TaskWaker {
    waker: RefCell<Option<Waker>>,
    notified: Cell<bool>,
}

impl TaskWaker {
    /// The same as `default()`, usable in a `const` thread-local.
    pub(crate) const fn new() -> TaskWaker {
        TaskWaker {
            waker: RefCell::new(None),
            notified: Cell::new(false),
        }
    }

    /// Called at the start of the owning task's poll.
    pub(crate) fn register(&self, waker: &Waker) {
        self.notified.set(false);
        let mut slot = self.waker.borrow_mut();
        match slot.as_ref() {
            Some(current) if current.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    pub(crate) fn wake(&self) {
        if self.notified.replace(true) {
            return;
        }
        if let Some(waker) = self.waker.borrow().as_ref() {
            waker.wake_by_ref();
        }
    }
}
