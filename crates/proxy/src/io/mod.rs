//! Socket I/O below the connection tasks: the send chain (`chain`), the
//! stream type and its readiness loops (`stream`), TLS (`tls`), the raw syscalls (`sys`,
//! the only unsafe code besides `uring`), the single-threaded task waker
//! (`wake`), `--busy-poll` (`busy_poll`), `--wait adaptive` (`wait`) and
//! `--io uring`'s per-worker ring for client I/O (`uring`). Nothing here
//! knows a wire protocol.

pub(crate) mod busy_poll;
pub(crate) mod chain;
pub(crate) mod stream;
pub(crate) mod sys;
pub(crate) mod tls;
pub(crate) mod uring;
pub(crate) mod wait;
pub(crate) mod wake;
