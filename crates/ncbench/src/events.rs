//! Events during a run (`[[event]]`): at a time since the load started, do
//! something to a backend or to the proxy, and record when it happened and
//! how it went. The timeline shows the effect; integrity checking goes on
//! (errors are counted by kind, mismatches still fail the run).
//!
//! Actions: `kill` (SIGKILL), `stop` (SIGSTOP), `continue` (SIGCONT) and
//! `restart` (kill if running, then start again on the same port, empty) a
//! backend ncbench started; `reload` the proxy with a changed pool
//! (`proxy = { ... }`): the ncproxy binary gets its rewritten config file and
//! SIGUSR1, in-process ncproxy the same config through `reload`. nutcracker
//! cannot reload (SIGUSR1 is a no-op there), which the record says.
//! With `[backends] kind = "cluster"`, the actions are the cluster's own
//! topology changes instead: `reshard` moves `slots` slots from master
//! `backend` to master `to` (redis-cli --cluster reshard) and `failover`
//! makes master `backend`'s replica take over (CLUSTER FAILOVER on the
//! replica). They are not undone after the cell.
//!
//! After every cell, backends are put back: stopped ones continued, killed
//! ones started again and their keys written again, so the next cell starts
//! from the same state.
use crate::config::{ProxySection, SendLimit, SendMode};
use crate::units::Dur;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What an event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    /// SIGKILL a backend (it stays down until a `restart` or the end of the cell).
    Kill,
    /// SIGSTOP a backend: connections stay open, nothing is answered.
    Stop,
    /// SIGCONT a stopped backend.
    Continue,
    /// Kill a backend if it runs, then start it again on the same port (empty).
    Restart,
    /// Reload the proxy with the pool changed by `proxy = { ... }`.
    Reload,
    /// Move slots between cluster nodes (needs a Redis Cluster backend).
    Reshard,
    /// Fail a cluster primary over to its replica (needs a Redis Cluster backend).
    Failover,
}

impl EventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Kill => "kill",
            EventAction::Stop => "stop",
            EventAction::Continue => "continue",
            EventAction::Restart => "restart",
            EventAction::Reload => "reload",
            EventAction::Reshard => "reshard",
            EventAction::Failover => "failover",
        }
    }

    /// Whether the action acts on `backend = N`.
    pub fn on_backend(self) -> bool {
        matches!(
            self,
            EventAction::Kill | EventAction::Stop | EventAction::Continue | EventAction::Restart
        )
    }

    /// Whether the action needs a cluster backend.
    pub fn needs_cluster(self) -> bool {
        matches!(self, EventAction::Reshard | EventAction::Failover)
    }
}

impl fmt::Display for EventAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pool settings a `reload` changes; absent keys stay as they were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_mode: Option<SendMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iov_max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_limit: Option<SendLimit>,
}

impl ProxyChange {
    pub fn is_empty(&self) -> bool {
        *self == ProxyChange::default()
    }

    /// `proxy` with this change applied.
    pub fn apply(&self, proxy: &ProxySection) -> ProxySection {
        let mut p = proxy.clone();
        if let Some(h) = &self.hash {
            p.hash.clone_from(h);
        }
        if let Some(d) = &self.distribution {
            p.distribution.clone_from(d);
        }
        if let Some(n) = self.server_connections {
            p.server_connections = n;
        }
        if let Some(t) = self.timeout_ms {
            p.timeout_ms = t;
        }
        if let Some(m) = self.send_mode {
            p.send_mode = m;
        }
        if let Some(n) = self.iov_max {
            p.iov_max = n;
        }
        if let Some(l) = self.send_limit {
            p.send_limit = l;
        }
        p
    }
}

/// `[[event]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Time since the load started (warmup included), e.g. `"5s"`.
    pub at: Dur,
    pub action: EventAction,
    /// Index of the backend (0-based, in `[backends]` order) for backend actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<u32>,
    /// What a `reload` changes in the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyChange>,
    /// `reshard`: the master (0-based) that gets the slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    /// `reshard`: how many slots move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
}

impl EventSpec {
    /// Short name for tables and timelines: `kill backend 0`, `reload proxy`.
    pub fn label(&self) -> String {
        match (self.action, self.backend) {
            (EventAction::Reshard, Some(b)) => format!(
                "reshard {} slots from master {b} to master {}",
                self.slots.unwrap_or(0),
                self.to.unwrap_or(0)
            ),
            (EventAction::Failover, Some(b)) => format!("failover of master {b}"),
            (a, Some(b)) if a.on_backend() => format!("{a} backend {b}"),
            (a, _) => format!("{a} proxy"),
        }
    }
}

/// What happened when an event ran.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct EventRecord {
    /// `kill backend 0`.
    pub event: String,
    /// Scheduled time, seconds since the load started.
    pub at_s: f64,
    /// When it actually ran.
    pub ran_at_s: f64,
    /// How long the action took (a restart waits until the backend listens).
    pub took_ms: f64,
    /// `ok`, `failed: ...` or `not supported: ...`.
    pub outcome: String,
}

impl EventRecord {
    pub fn failed(&self) -> bool {
        self.outcome.starts_with("failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_applies_only_given_keys() {
        let p = ProxySection::default();
        let c = ProxyChange {
            server_connections: Some(3),
            ..ProxyChange::default()
        };
        let q = c.apply(&p);
        assert_eq!(q.server_connections, 3);
        assert_eq!(q.hash, p.hash);
        assert!(!c.is_empty() && ProxyChange::default().is_empty());
        let e = EventSpec {
            at: Dur(std::time::Duration::from_secs(1)),
            action: EventAction::Kill,
            backend: Some(1),
            proxy: None,
            to: None,
            slots: None,
        };
        assert_eq!(e.label(), "kill backend 1");
    }
}
