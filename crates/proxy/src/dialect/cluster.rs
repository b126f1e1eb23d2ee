//! Redis Cluster on the wire: the errors a node answers instead of serving
//! a key (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, READONLY, MASTERDOWN), the
//! redirect target they name, the requests the proxy sends itself (ASKING,
//! READONLY, CLUSTER SLOTS) and the CLUSTER SLOTS reply, parsed into slot
//! ranges. Strings are redis/src/cluster.c's (shared/reference/redis-cluster.md §1.2).

use std::ops::RangeInclusive;

use bytes::Bytes;
use nc_protocol::resp::{self, ArrayElements, ReplyKind};
use nc_protocol::Limits;

/// Sent immediately before a command redirected by ASK, in the same send.
pub(crate) static ASKING: Bytes = Bytes::from_static(b"*1\r\n$6\r\nASKING\r\n");
/// Sent first on every node connection of a pool that reads from replicas.
pub(crate) static READONLY: Bytes = Bytes::from_static(b"*1\r\n$8\r\nREADONLY\r\n");
/// The topology query.
pub(crate) static CLUSTER_SLOTS: Bytes =
    Bytes::from_static(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n");

/// A node's refusal to serve a request, by the first word of its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClusterError {
    /// `-MOVED <slot> <host>:<port>`: the slot lives elsewhere now.
    Moved,
    /// `-ASK <slot> <host>:<port>`: this key is being migrated; ask there once.
    Ask,
    /// `-TRYAGAIN`: a multi-key request whose keys are split by a migration.
    TryAgain,
    /// `-CLUSTERDOWN`: the cluster (or the slot) is not served right now.
    ClusterDown,
    /// `-READONLY`: a write reached a master that was demoted to a replica.
    ReadOnly,
    /// `-MASTERDOWN`: a replica lost its master and serves no stale data.
    MasterDown,
}

/// The cluster error `reply` (one complete error reply) is, if any.
pub(crate) fn classify(reply: &[u8]) -> Option<ClusterError> {
    let end = reply
        .iter()
        .position(|&c| c == b' ' || c == b'\r')
        .unwrap_or(reply.len());
    match &reply[..end] {
        b"-MOVED" => Some(ClusterError::Moved),
        b"-ASK" => Some(ClusterError::Ask),
        b"-TRYAGAIN" => Some(ClusterError::TryAgain),
        b"-CLUSTERDOWN" => Some(ClusterError::ClusterDown),
        b"-READONLY" => Some(ClusterError::ReadOnly),
        b"-MASTERDOWN" => Some(ClusterError::MasterDown),
        _ => None,
    }
}

/// Where a MOVED or ASK sends a slot. An empty host (a node that announces
/// no endpoint) means the host of the node that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redirect {
    pub(crate) slot: u16,
    pub(crate) host: Option<String>,
    pub(crate) port: u16,
}

/// Parses `-MOVED 3999 127.0.0.1:6381\r\n` (or ASK). IPv6 endpoints keep
/// their colons: the port is after the last one.
pub(crate) fn parse_redirect(reply: &[u8]) -> Option<Redirect> {
    let line = reply.strip_suffix(b"\r\n").unwrap_or(reply);
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split(' ');
    words.next()?;
    let slot: u16 = words.next()?.parse().ok()?;
    let endpoint = words.next()?;
    if words.next().is_some() || usize::from(slot) >= nc_hashkit::CLUSTER_SLOTS {
        return None;
    }
    let (host, port) = endpoint.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(Redirect {
        slot,
        host: (!host.is_empty() && host != "?").then(|| host.to_owned()),
        port,
    })
}

/// One node as CLUSTER SLOTS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeAddr {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl NodeAddr {
    /// `host:port`, the node's name in stats and logs.
    pub(crate) fn name(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }
}

/// One `[start, end, master, replica...]` entry of CLUSTER SLOTS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotRange {
    pub(crate) slots: RangeInclusive<u16>,
    pub(crate) master: NodeAddr,
    pub(crate) replicas: Vec<NodeAddr>,
}

/// Parses a CLUSTER SLOTS reply. Node entries have 2 elements (3.x) or more
/// (id, metadata): extras are ignored. An empty or NULL endpoint is the
/// host of the node that answered (`answered_host`); `?` is an unknown
/// node, skipped (a range without a usable master is an error).
pub(crate) fn parse_slots(
    reply: &[u8],
    answered_host: &str,
    limits: &Limits,
) -> Result<Vec<SlotRange>, &'static str> {
    let top = resp::parse_reply(reply, limits).map_err(|_| "not a complete reply")?;
    if top.kind == ReplyKind::Error {
        return Err("an error reply");
    }
    let entries = ArrayElements::new(&reply[..top.len], limits).map_err(|_| "not an array")?;
    let mut ranges = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = &reply[entry];
        let mut fields =
            ArrayElements::new(entry, limits).map_err(|_| "a range is not an array")?;
        let start = fields.next().and_then(|f| integer(&entry[f]));
        let end = fields.next().and_then(|f| integer(&entry[f]));
        let (Some(start), Some(end)) = (start, end) else {
            return Err("a range without integer bounds");
        };
        if start > end || end as usize >= nc_hashkit::CLUSTER_SLOTS {
            return Err("a range outside 0..16383");
        }
        let mut nodes = fields.map(|f| node(&entry[f], answered_host, limits));
        let master = match nodes.next() {
            Some(Ok(Some(master))) => master,
            Some(Err(e)) => return Err(e),
            _ => return Err("a range without a usable master"),
        };
        let mut replicas = Vec::new();
        for replica in nodes {
            if let Some(replica) = replica? {
                replicas.push(replica);
            }
        }
        ranges.push(SlotRange {
            slots: start as u16..=end as u16,
            master,
            replicas,
        });
    }
    Ok(ranges)
}

/// `[endpoint, port, ...]`; `Ok(None)` for an unknown (`?`) endpoint.
fn node(
    entry: &[u8],
    answered_host: &str,
    limits: &Limits,
) -> Result<Option<NodeAddr>, &'static str> {
    let mut fields = ArrayElements::new(entry, limits).map_err(|_| "a node is not an array")?;
    let (Some(host), Some(port)) = (fields.next(), fields.next()) else {
        return Err("a node without endpoint and port");
    };
    let port = integer(&entry[port])
        .filter(|p| *p > 0 && *p <= u64::from(u16::MAX))
        .ok_or("a node with a bad port")? as u16;
    let host = match bulk(&entry[host]) {
        Some(b"?") => return Ok(None),
        Some(b"") | None => answered_host.to_owned(),
        Some(host) => {
            String::from_utf8(host.to_vec()).map_err(|_| "a node endpoint that is not UTF-8")?
        }
    };
    Ok(Some(NodeAddr { host, port }))
}

/// The value of a `:n\r\n` element.
fn integer(element: &[u8]) -> Option<u64> {
    let digits = element.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The data of a `$n\r\n...\r\n` element; None for a NULL bulk.
fn bulk(element: &[u8]) -> Option<&[u8]> {
    let rest = element.strip_prefix(b"$")?;
    let line_end = rest.iter().position(|&c| c == b'\r')?;
    let len: usize = std::str::from_utf8(&rest[..line_end]).ok()?.parse().ok()?;
    rest.get(line_end + 2..line_end + 2 + len)
}

/// Whether `ranges` assign every slot exactly once.
pub(crate) fn covers_every_slot(ranges: &[SlotRange]) -> bool {
    let mut sorted: Vec<&RangeInclusive<u16>> = ranges.iter().map(|r| &r.slots).collect();
    sorted.sort_by_key(|r| *r.start());
    let mut next = 0usize;
    for range in sorted {
        if usize::from(*range.start()) != next {
            return false;
        }
        next = usize::from(*range.end()) + 1;
    }
    next == nc_hashkit::CLUSTER_SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_their_first_word() {
        for (reply, class) in [
            (
                &b"-MOVED 12182 127.0.0.1:17103\r\n"[..],
                Some(ClusterError::Moved),
            ),
            (b"-ASK 12182 127.0.0.1:17101\r\n", Some(ClusterError::Ask)),
            (
                b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
                Some(ClusterError::TryAgain),
            ),
            (
                b"-CLUSTERDOWN The cluster is down\r\n",
                Some(ClusterError::ClusterDown),
            ),
            (
                b"-CLUSTERDOWN Hash slot not served\r\n",
                Some(ClusterError::ClusterDown),
            ),
            (
                b"-READONLY You can't write against a read only replica.\r\n",
                Some(ClusterError::ReadOnly),
            ),
            (
                b"-MASTERDOWN Link with MASTER is down\r\n",
                Some(ClusterError::MasterDown),
            ),
            (
                b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
                None,
            ),
            (b"-MOVEDX 1 a:1\r\n", None),
            (b"-ERR MOVED\r\n", None),
        ] {
            assert_eq!(classify(reply), class, "{}", String::from_utf8_lossy(reply));
        }
    }

    #[test]
    fn redirects() {
        assert_eq!(
            parse_redirect(b"-MOVED 12182 127.0.0.1:17103\r\n"),
            Some(Redirect {
                slot: 12182,
                host: Some("127.0.0.1".into()),
                port: 17103
            })
        );
        assert_eq!(
            parse_redirect(b"-ASK 3999 :6380\r\n"),
            Some(Redirect {
                slot: 3999,
                host: None,
                port: 6380
            })
        );
        assert_eq!(
            parse_redirect(b"-MOVED 1 ::1:7000\r\n").and_then(|r| r.host),
            Some("::1".into())
        );
        for bad in [
            &b"-MOVED 16384 a:1\r\n"[..],
            b"-MOVED x a:1\r\n",
            b"-MOVED 1 a\r\n",
            b"-MOVED 1 a:99999\r\n",
            b"-MOVED 1\r\n",
            b"-MOVED 1 a:1 extra\r\n",
        ] {
            assert_eq!(
                parse_redirect(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn node_entry(host: Option<&str>, port: u16, extra: &str) -> String {
        let host = match host {
            Some(h) => format!("${}\r\n{h}\r\n", h.len()),
            None => "$-1\r\n".to_owned(),
        };
        let n = if extra.is_empty() { 2 } else { 4 };
        format!("*{n}\r\n{host}:{port}\r\n{extra}")
    }

    #[test]
    fn cluster_slots_shapes() {
        let id = format!("$40\r\n{}\r\n*0\r\n", "a".repeat(40));
        let reply = format!(
            "*3\r\n*4\r\n:0\r\n:5460\r\n{}{}*3\r\n:5461\r\n:10922\r\n{}*4\r\n:10923\r\n:16383\r\n{}{}",
            node_entry(Some("127.0.0.1"), 7000, &id),
            node_entry(Some("127.0.0.1"), 7003, &id),
            node_entry(Some(""), 7001, ""),
            node_entry(None, 7002, ""),
            node_entry(Some("?"), 7005, ""),
        );
        let limits = Limits::default();
        let ranges = parse_slots(reply.as_bytes(), "10.0.0.9", &limits).unwrap();
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges[0].slots, 0..=5460);
        assert_eq!(ranges[0].master.name(), "127.0.0.1:7000");
        assert_eq!(ranges[0].replicas[0].name(), "127.0.0.1:7003");
        assert_eq!(ranges[1].master.name(), "10.0.0.9:7001");
        assert_eq!(ranges[2].master.name(), "10.0.0.9:7002");
        assert!(ranges[2].replicas.is_empty(), "a '?' replica is skipped");
        assert!(covers_every_slot(&ranges));
        assert!(!covers_every_slot(&ranges[..2]));

        let overlapping = format!(
            "*2\r\n*3\r\n:0\r\n:9000\r\n{}*3\r\n:8000\r\n:16383\r\n{}",
            node_entry(Some("h"), 1, ""),
            node_entry(Some("h"), 2, ""),
        );
        let ranges = parse_slots(overlapping.as_bytes(), "h", &limits).unwrap();
        assert!(!covers_every_slot(&ranges));

        assert!(parse_slots(
            b"-ERR This instance has cluster support disabled\r\n",
            "h",
            &limits
        )
        .is_err());
        assert!(parse_slots(b"*1\r\n*2\r\n:0\r\n:16383\r\n", "h", &limits).is_err());
        assert!(parse_slots(
            b"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",
            "h",
            &limits
        )
        .is_err());
        assert_eq!(parse_slots(b"*0\r\n", "h", &limits), Ok(Vec::new()));
    }
}
