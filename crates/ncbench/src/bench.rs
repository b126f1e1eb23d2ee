//! Orchestration of `ncbench run`: start the backends once, load the keyspace,
//! expand the sweep into cells, run every cell (per trial) against a freshly
//! started target, scrape the proxy's counters around the measured window,
//! verify the data, then judge (integrity, gates, baseline).
use crate::config::{BenchConfig, Length, LoopMode, Selector, TargetKind, TargetSpec};
use crate::driver::{self, DriveSpec};
use crate::env::{Environment, PlacementReport};
use crate::error::{BenchError, Result};
use crate::events::{EventAction, EventRecord, EventSpec};
use crate::loader;
use crate::progress::Progress;
use crate::results::{BackendInfo, CellParams, CellResult, Ratios, RunResult, Verdict, SCHEMA};
use crate::scrape::{self, POOL};
use crate::shards;
use crate::stats::ProcSyscalls;
use crate::stats::{combine_trials, CellStats};
use crate::target::{self, Backends, Knobs, RunningTarget};
use crate::timeline::{self, Sample};
use crate::workload::Keyspace;
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One cell of the matrix, before it runs.
#[derive(Debug, Clone)]
pub struct CellPlan {
    pub id: String,
    pub params: CellParams,
    pub target: TargetSpec,
    pub knobs: Option<Knobs>,
}

/// Builds the cell id from its parameters; stable across runs so results compare.
pub fn cell_id(p: &CellParams) -> String {
    let mut id = p.target.clone();
    if let Some(m) = p.send_mode {
        id.push_str(&format!("/{m}"));
    }
    if let Some(n) = p.iov_max {
        id.push_str(&format!("/iov{n}"));
    }
    if let Some(l) = p.send_limit {
        id.push_str(&format!("/lim{l}"));
    }
    id.push_str(&format!("/p{}/c{}", p.pipeline, p.connections));
    if let Some(r) = p.rate {
        id.push_str(&format!("/r{r}"));
    }
    if let Some(k) = p.mget_keys {
        id.push_str(&format!("/k{k}"));
    }
    id
}

/// Expands targets × sweep dimensions into cells. Send-path dimensions apply
/// only to targets that have them; the others get one cell per remaining combination.
pub fn expand_cells(cfg: &BenchConfig) -> Vec<CellPlan> {
    let s = &cfg.sweep;
    let w = &cfg.workload;
    let modes = s
        .send_mode
        .clone()
        .unwrap_or_else(|| vec![cfg.proxy.send_mode]);
    let iovs = s.iov_max.clone().unwrap_or_else(|| vec![cfg.proxy.iov_max]);
    let limits = s
        .send_limit
        .clone()
        .unwrap_or_else(|| vec![cfg.proxy.send_limit]);
    let pipelines = s.pipeline.clone().unwrap_or_else(|| vec![w.pipeline]);
    let conns = s.connections.clone().unwrap_or_else(|| vec![w.connections]);
    let rates: Vec<Option<f64>> = match (&s.rate, w.mode) {
        (Some(r), _) => r.iter().map(|&x| Some(x)).collect(),
        (None, LoopMode::Open) => vec![w.rate],
        (None, LoopMode::Closed) => vec![None],
    };
    let mget_keys: Vec<Option<u32>> = match &s.mget_keys {
        Some(v) => v.iter().map(|&k| Some(k)).collect(),
        None => vec![None],
    };
    let mut cells = Vec::new();
    for t in &cfg.targets {
        let knob_sets: Vec<Option<Knobs>> = if t.kind.has_send_knobs() {
            let mut v = Vec::new();
            for &m in &modes {
                for &i in &iovs {
                    for &l in &limits {
                        v.push(Some(Knobs {
                            send_mode: m,
                            iov_max: i,
                            send_limit: l,
                        }));
                    }
                }
            }
            v
        } else {
            vec![None]
        };
        for k in &knob_sets {
            for &p in &pipelines {
                for &c in &conns {
                    for &r in &rates {
                        for &mk in &mget_keys {
                            let params = CellParams {
                                target: t.label(),
                                kind: t.kind.as_str().to_string(),
                                send_mode: k.map(|k| k.send_mode),
                                iov_max: k.map(|k| k.iov_max),
                                send_limit: k.map(|k| k.send_limit),
                                pipeline: p,
                                connections: c,
                                rate: r,
                                mget_keys: mk,
                            };
                            cells.push(CellPlan {
                                id: cell_id(&params),
                                params,
                                target: t.clone(),
                                knobs: *k,
                            });
                        }
                    }
                }
            }
        }
    }
    cells
}

/// Whether a cell's parameters match a selector (absent keys match anything).
pub fn matches(p: &CellParams, s: &Selector) -> bool {
    s.target.as_ref().is_none_or(|t| *t == p.target)
        && s.send_mode.is_none_or(|m| p.send_mode == Some(m))
        && s.iov_max.is_none_or(|n| p.iov_max == Some(n))
        && s.send_limit.is_none_or(|l| p.send_limit == Some(l))
        && s.pipeline.is_none_or(|n| p.pipeline == n)
        && s.connections.is_none_or(|n| p.connections == n)
        && s.rate.is_none_or(|r| p.rate == Some(r))
        && s.mget_keys.is_none_or(|k| p.mget_keys == Some(k))
}

/// `[placement]` in canonical form, with nothing observed yet.
fn configured_placement(cfg: &BenchConfig) -> PlacementReport {
    let p = cfg.placement.cpus();
    PlacementReport {
        generator: p.generator.as_ref().map(|c| c.to_string()),
        proxies: p.proxies.as_ref().map(|c| c.to_string()),
        backends: p.backends.as_ref().map(|c| c.to_string()),
        observed: BTreeMap::new(),
    }
}

/// Backends, keyspace and scratch space shared by every cell of a run.
pub struct Session {
    pub cfg: BenchConfig,
    pub backends: Backends,
    pub keyspace: Arc<Keyspace>,
    pub env: Environment,
    pub notes: Vec<String>,
    pub workdir: tempfile::TempDir,
    pub started_at: u64,
    /// Distinct `Cpus_allowed_list`s seen per process or thread role, for the report.
    cpus_observed: Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// Each key's Redis Cluster slots, value key and counter key (for
    /// `direct` to a cluster), made once.
    key_slots: std::sync::OnceLock<Arc<Vec<(u16, u16)>>>,
}

impl Session {
    /// Each key's Redis Cluster slots: its value key's and its counter key's.
    fn key_slots(&self) -> Arc<Vec<(u16, u16)>> {
        self.key_slots
            .get_or_init(|| {
                let ks = &self.keyspace;
                let slot = nc_hashkit::cluster_key_slot;
                Arc::new(
                    (0..ks.keys as u32)
                        .map(|k| (slot(&ks.key(k)), slot(&ks.counter_key(k))))
                        .collect(),
                )
            })
            .clone()
    }

    /// Records where processes or threads were allowed to run: (name, cpu list).
    fn observe<'a>(&self, seen: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut map = self.cpus_observed.lock().unwrap();
        for (name, cpus) in seen {
            map.entry(name.to_string())
                .or_default()
                .insert(cpus.to_string());
        }
    }

    fn placement_report(&self, cfg: &BenchConfig) -> PlacementReport {
        PlacementReport {
            observed: self
                .cpus_observed
                .lock()
                .unwrap()
                .iter()
                .map(|(name, lists)| (name.clone(), lists.iter().cloned().collect()))
                .collect(),
            ..configured_placement(cfg)
        }
    }

    /// A result document for this session with its header filled in (schema,
    /// config, environment with placement, backends) and no cells, gates or
    /// notes yet. Call it after the cells ran: it reports where they ran.
    pub(crate) fn result(&self, cfg: &BenchConfig, kind: &str) -> RunResult {
        RunResult {
            schema: SCHEMA.to_string(),
            kind: kind.to_string(),
            ncbench_version: env!("CARGO_PKG_VERSION").into(),
            started_at: self.started_at,
            config_source: cfg.source.clone(),
            config_fingerprint: cfg.fingerprint(),
            config: serde_json::to_value(cfg).unwrap_or_default(),
            environment: Environment {
                placement: Some(self.placement_report(cfg)),
                ..self.env.clone()
            },
            backends: BackendInfo {
                kind: self.backends.kind.to_string(),
                count: self.backends.addrs.len(),
                version: self.backends.version.clone(),
            },
            cells: Vec::new(),
            reference: None,
            gates: Vec::new(),
            baseline: None,
            verify: None,
            capacity: Vec::new(),
            overhead: Vec::new(),
            notes: Vec::new(),
            verdict: Verdict::default(),
        }
    }

    /// Starts the target of `plan` on this session's backends. An optional
    /// target that is unavailable here (nutcracker not installed, say) is
    /// skipped with a note: `Ok(Err(reason))`.
    pub(crate) fn start_cell(
        &self,
        cfg: &BenchConfig,
        plan: &CellPlan,
        progress: &dyn Progress,
        notes: &mut Vec<String>,
    ) -> Result<std::result::Result<target::RunningTarget, String>> {
        match target::start_target(
            &plan.target,
            plan.knobs,
            &cfg.proxy,
            &self.backends,
            self.workdir.path(),
            cfg.placement.cpus().proxies.as_ref(),
        ) {
            Ok(t) => {
                self.observe(
                    t.cpus_observed
                        .iter()
                        .map(|(n, c)| (n.as_str(), c.as_str())),
                );
                Ok(Ok(t))
            }
            Err(e) if e.unavailable && plan.target.optional => {
                let msg = format!("skipped {}: {}", plan.id, e.error);
                progress.note(&msg);
                notes.push(msg);
                Ok(Err(e.error.to_string()))
            }
            Err(e) => Err(e.error),
        }
    }

    /// Starts the backends and loads the keyspace.
    pub fn start(cfg: &BenchConfig, progress: &dyn Progress) -> Result<Session> {
        let started_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut notes = Vec::new();
        if cfg.placement.cpus().is_set() {
            let msg = format!("placement: {}", configured_placement(cfg).summary());
            progress.note(&msg);
            notes.push(msg);
        }
        let pki = match needs_pki(cfg) {
            true => Some(Arc::new(crate::tls::Pki::generate()?)),
            false => None,
        };
        let backends = target::start_backends(
            &cfg.backends,
            cfg.workload.protocol,
            cfg.workload.value_size.bounds().1,
            cfg.placement.cpus().backends.as_ref(),
            pki,
        )?;
        if let Some(p) = &backends.pki {
            let dir = p.ca().parent().map(|d| d.display().to_string());
            let msg = format!(
                "tls: a CA and a server certificate (localhost, 127.0.0.1) made for this run in {}",
                dir.unwrap_or_default()
            );
            progress.note(&msg);
            notes.push(msg);
        }
        if let Some(t) = &backends.tls {
            let ports: Vec<String> = t.addrs.iter().map(|a| a.to_string()).collect();
            let msg = format!("tls: backends serve TLS on {}", ports.join(", "));
            progress.note(&msg);
            notes.push(msg);
        }
        let msg = match backends.kind {
            "embedded" => format!(
                "backends: {} x embedded in-process RESP backend (`{}` not found on PATH; install redis-server for real numbers)",
                backends.addrs.len(),
                cfg.backends.redis_server
            ),
            kind => format!(
                "backends: {} x {}",
                backends.addrs.len(),
                backends.version.clone().unwrap_or_else(|| kind.to_string())
            ),
        };
        progress.note(&msg);
        notes.push(msg);
        if cfg!(debug_assertions) {
            let m = "this is a debug build of ncbench: numbers are not comparable to release builds (use --release)".to_string();
            progress.note(&m);
            notes.push(m);
        }
        let keyspace = Keyspace::new(&cfg.workload);
        if cfg.run.preload {
            let t = Instant::now();
            let n = match backends.is_cluster() {
                true => loader::preload_cluster(
                    &backends.addrs,
                    &keyspace,
                    &cfg.workload,
                    backends.owned,
                )?,
                false => loader::preload(
                    &backends.addrs,
                    backends.loader_tls()?.as_ref(),
                    &keyspace,
                    &cfg.workload,
                    backends.owned,
                )?,
            };
            progress.note(&format!(
                "preloaded {n} keys in {:.1}s",
                t.elapsed().as_secs_f64()
            ));
        }
        let mut env = Environment::detect();
        match backends.kind {
            "memcached" => env.memcached = backends.version.clone(),
            _ => env.redis_server = backends.version.clone(),
        }
        if cfg.targets.iter().any(|t| t.kind == TargetKind::Nutcracker) {
            env.nutcracker =
                crate::procs::which("nutcracker").and_then(|b| crate::procs::version_of(&b, "-V"));
        }
        let workdir = tempfile::Builder::new()
            .prefix("ncbench-")
            .tempdir()
            .map_err(|e| BenchError::setup(format!("cannot create a scratch directory: {e}")))?;
        let session = Session {
            cfg: cfg.clone(),
            backends,
            keyspace,
            env,
            notes,
            workdir,
            started_at,
            cpus_observed: Mutex::default(),
            key_slots: std::sync::OnceLock::new(),
        };
        session.observe(
            session
                .backends
                .cpus_observed
                .iter()
                .map(|(n, c)| (n.as_str(), c.as_str())),
        );
        Ok(session)
    }

    /// Runs load against a started target once and measures it: the
    /// driver's counters and histograms, the proxy's stats and the /proc
    /// syscall counters of the proxy and the backends around the measured
    /// window, the backends' own counters (shard balance), a sample of the
    /// syscall counters at every interval edge, and the config's events at
    /// their times.
    pub fn measure(
        &self,
        params: &CellParams,
        target: &RunningTarget,
        length: Length,
        interval: Duration,
        events: &[EventSpec],
        progress: &dyn Progress,
    ) -> Result<Measured> {
        let cfg = &self.cfg;
        let mode = if params.rate.is_some() {
            LoopMode::Open
        } else {
            LoopMode::Closed
        };
        let generator = cfg.placement.cpus().generator.clone();
        let threads = if cfg.run.threads == 0 {
            driver::auto_threads(params.connections, generator.as_ref())
        } else {
            cfg.run.threads as usize
        };
        let spec = DriveSpec {
            addrs: target.addrs.clone(),
            connections: params.connections,
            pipeline: params.pipeline,
            mode,
            rate: params.rate,
            warmup: cfg.run.warmup.0,
            length,
            timeout: cfg.run.timeout.0,
            time_limit: cfg.run.time_limit.0,
            threads,
            workload: crate::config::Workload {
                mget_keys: params.mget_keys.unwrap_or(cfg.workload.mget_keys),
                ..cfg.workload.clone()
            },
            keyspace: self.keyspace.clone(),
            seed: cfg.workload.seed,
            cpus: generator,
            interval,
            route: target.slot_owners.as_ref().map(|owners| driver::SlotRoute {
                owners: owners.clone(),
                key_slots: self.key_slots(),
            }),
            tls: target.tls.clone(),
        };
        let h = driver::start(spec)?;
        let sample = |h: &driver::DriveHandle| Sample {
            t_ns: h.t0.elapsed().as_nanos() as u64,
            proxy: target.io.read(),
            backends: self.backends.io(),
        };
        let edge = |h: &driver::DriveHandle| Edge {
            scrape: target
                .stats
                .and_then(|a| scrape::fetch(a).ok())
                .and_then(|d| scrape::snapshot(&d, POOL)),
            sample: sample(h),
            shards: self.shard_counters(),
        };
        let mut samples = vec![sample(&h)];
        let mut events_left: Vec<&EventSpec> = events.iter().collect();
        events_left.sort_by_key(|e| e.at);
        let mut events_ran: Vec<EventRecord> = Vec::new();
        let mut next_sample = h.t0 + interval;
        let mut before: Option<Edge> = None;
        let after = loop {
            let now = Instant::now();
            progress.tick(h.completed(), now - h.t0);
            // Sample before running events: an edge's counters must not miss
            // a backend an event at that instant kills.
            if now >= next_sample {
                samples.push(sample(&h));
                next_sample += interval;
            }
            while let Some(e) = events_left.first().filter(|e| h.t0 + e.at.0 <= now) {
                let e = *e;
                events_left.remove(0);
                events_ran.push(self.run_event(e, target, h.t0));
            }
            if before.is_none() && now >= h.warm_end {
                before = Some(edge(&h));
            }
            let done = match h.end {
                Some(end) => now >= end,
                None => h.is_finished(),
            };
            if done {
                break edge(&h);
            }
            let mut wake = now + Duration::from_millis(200);
            wake = wake.min(next_sample);
            if before.is_none() {
                wake = wake.min(h.warm_end);
            }
            if let Some(end) = h.end {
                wake = wake.min(end);
            }
            if let Some(e) = events_left.first() {
                wake = wake.min(h.t0 + e.at.0);
            }
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        };
        let out = h.join()?;
        self.observe(out.cpus_observed.iter().map(|c| ("generator", c.as_str())));
        let mut stats = CellStats::from_thread(&out.stats, out.window.as_secs_f64(), params.rate);
        let warm_ns = cfg.run.warmup.0.as_nanos() as u64;
        let end_ns = warm_ns + out.window.as_nanos() as u64;
        if let Some(b) = &before {
            let a = &after;
            if let (Some(bs), Some(az)) = (&b.scrape, &a.scrape) {
                stats.proxy = Some(scrape::window(bs, az, stats.requests));
            }
            stats.syscalls = proc_syscalls(&b.sample, &a.sample, stats.requests);
            stats.shards = shards::window(&self.backends.addrs, &b.shards, &a.shards);
        }
        samples.push(after.sample);
        let marks: Vec<(u64, String)> = events_ran
            .iter()
            .map(|e| ((e.ran_at_s * 1e9) as u64, e.event.clone()))
            .collect();
        stats.timeline = timeline::points(&out.stats.timeline, &samples, &marks, warm_ns, end_ns);
        stats.events = events_ran;
        stats.latency_hdr = crate::export::encode_histogram(&out.stats.latency);
        let tl = &out.stats.timeline;
        let iv = tl.interval_ns as i64;
        let intervals = tl
            .buckets
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let start = tl.start_of(*i);
                start >= warm_ns as i64 && start + iv <= end_ns as i64 + iv / 10
            })
            .map(|(_, b)| b.latency.clone())
            .collect();
        Ok(Measured {
            stats,
            latency: out.stats.latency,
            intervals,
        })
    }

    /// Every backend's own counters now (None for one that does not answer).
    fn shard_counters(&self) -> Vec<Option<shards::Counters>> {
        if self.backends.tls.as_ref().is_some_and(|t| t.only) {
            // Read over plaintext; TLS-only backends are not asked.
            return Vec::new();
        }
        match self.backends.kind {
            "redis-server" | "memcached" | "external" | "redis-cluster" => {
                shards::read_all(&self.backends.addrs, self.backends.protocol)
            }
            // The embedded backend keeps no INFO counters.
            _ => Vec::new(),
        }
    }

    /// Runs one event now and says how it went.
    fn run_event(&self, e: &EventSpec, target: &RunningTarget, t0: Instant) -> EventRecord {
        let started = Instant::now();
        let outcome = match (e.action, e.backend) {
            (a, Some(i)) if a.on_backend() => {
                let who = self.backends.describe(i as usize);
                match self.backends.act(i as usize, a) {
                    Ok(()) => format!("ok ({who})"),
                    Err(why) => format!("failed: {why}"),
                }
            }
            (a, Some(i)) if a.needs_cluster() => {
                match self
                    .backends
                    .cluster_act(a, i as usize, e.to.map(|t| t as usize), e.slots)
                {
                    Ok(what) => format!("ok ({what})"),
                    Err(why) => format!("failed: {why}"),
                }
            }
            (EventAction::Reload, _) => match &e.proxy {
                Some(change) => target.reload(change),
                None => "failed: a reload needs proxy = { ... }".into(),
            },
            (a, _) => format!("not supported: `{a}` needs a cluster backend"),
        };
        EventRecord {
            event: e.label(),
            at_s: e.at.0.as_secs_f64(),
            ran_at_s: (started - t0).as_secs_f64(),
            took_ms: started.elapsed().as_secs_f64() * 1e3,
            outcome,
        }
    }

    /// After a cell with events: continue stopped backends, start killed
    /// ones again and write their keys again. Returns notes on what it did.
    pub(crate) fn restore_backends(&self) -> Result<Vec<String>> {
        let (restarted, problems) = self.backends.restore();
        if !problems.is_empty() {
            return Err(BenchError::setup(format!(
                "cannot restore the backends after the events: {}",
                problems.join("; ")
            )));
        }
        let mut notes = Vec::new();
        for i in restarted {
            let addr = self.backends.addrs[i];
            if self.cfg.run.preload {
                // Events act only on backends ncbench started: plain ports.
                loader::preload(&[addr], None, &self.keyspace, &self.cfg.workload, false)?;
            }
            notes.push(format!(
                "backend {i} ({addr}) was down after the events: started again and preloaded"
            ));
        }
        Ok(notes)
    }
}

/// What one measurement produced.
pub struct Measured {
    pub stats: CellStats,
    /// The measured window's latency histogram (ns).
    pub latency: Histogram<u64>,
    /// The measured window's interval histograms (ns, 2 significant figures).
    pub intervals: Vec<Histogram<u64>>,
}

/// What the clock reads at an edge of the measured window.
struct Edge {
    scrape: Option<scrape::Snapshot>,
    sample: Sample,
    shards: Vec<Option<shards::Counters>>,
}

/// Syscalls over a window from two /proc samples; `requests` = replies.
fn proc_syscalls(b: &Sample, a: &Sample, requests: u64) -> Option<ProcSyscalls> {
    let proxy = a.proxy.zip(b.proxy).map(|(a, b)| a.since(&b));
    let back = a.backends.zip(b.backends).map(|(a, b)| a.since(&b));
    if proxy.is_none() && back.is_none() {
        return None;
    }
    let per = |n: u64| (requests > 0).then(|| n as f64 / requests as f64);
    Some(ProcSyscalls {
        proxy_reads: proxy.map(|p| p.reads),
        proxy_writes: proxy.map(|p| p.writes),
        proxy_per_request: proxy.and_then(|p| per(p.total())),
        proxy_writes_per_request: proxy.and_then(|p| per(p.writes)),
        backend_reads: back.map(|p| p.reads),
        backend_writes: back.map(|p| p.writes),
        backend_per_request: back.and_then(|p| per(p.total())),
    })
}

/// Everything `run` produces besides the result document.
pub struct RunOutput {
    pub result: RunResult,
    /// Latency histograms per cell and trial (ns), for HDR logs and plots.
    pub histograms: Vec<Vec<Histogram<u64>>>,
}

/// Runs a whole benchmark (all cells, all trials) and judges it.
pub fn run(cfg: &BenchConfig, progress: &dyn Progress) -> Result<RunOutput> {
    let plans = expand_cells(cfg);
    let session = Session::start(cfg, progress)?;
    let mut notes = session.notes.clone();
    let trials = cfg.run.trials as usize;
    let mut per_cell: Vec<Vec<CellStats>> = vec![Vec::new(); plans.len()];
    let mut hists: Vec<Vec<Histogram<u64>>> = vec![Vec::new(); plans.len()];
    let mut how: Vec<String> = vec![String::new(); plans.len()];
    let mut skipped: Vec<Option<String>> = vec![None; plans.len()];
    let length = cfg.run.length();
    let secs = match length {
        Length::Duration(d) => (d + cfg.run.warmup.0).as_secs_f64(),
        Length::Requests(_) => cfg.run.warmup.0.as_secs_f64() + 5.0,
    };
    let total = plans.len() * trials;
    let mut n = 0;
    // Trial-major order: each trial visits every cell, so slow drift of the
    // machine spreads over all cells instead of biasing the last ones.
    for trial in 0..trials {
        for (i, plan) in plans.iter().enumerate() {
            n += 1;
            if skipped[i].is_some() {
                continue;
            }
            let t = match session.start_cell(cfg, plan, progress, &mut notes)? {
                Ok(t) => t,
                Err(reason) => {
                    skipped[i] = Some(reason);
                    continue;
                }
            };
            let label = if trials > 1 {
                format!("[{n}/{total}] {} (trial {})", plan.id, trial + 1)
            } else {
                format!("[{n}/{total}] {}", plan.id)
            };
            progress.phase(&label, secs);
            how[i] = t.how.clone();
            let res = session.measure(
                &plan.params,
                &t,
                length,
                cfg.run.interval.0,
                &cfg.events,
                progress,
            );
            t.stop();
            let m = res?;
            if !cfg.events.is_empty() {
                for note in session.restore_backends()? {
                    progress.note(&note);
                }
            }
            let (stats, hist) = (m.stats, m.latency);
            progress.finish(&format!(
                "{:.0} ops/s, p99 {}, errors {}, mismatches {}, lost {}",
                stats.ops_per_sec,
                crate::report::fmt_us(stats.latency_us.p99),
                stats.errors,
                stats.mismatches,
                stats.lost
            ));
            per_cell[i].push(stats);
            hists[i].push(hist);
        }
    }

    let verify = if cfg.run.verify {
        let missing_is_failure =
            cfg.run.preload && cfg.workload.mix.del == 0 && !loses_data(&cfg.events);
        let v = match session.backends.cluster_map() {
            Some(map) => loader::verify_cluster(
                &map.map_err(BenchError::setup)?.0,
                &session.keyspace,
                10_000,
                missing_is_failure,
            )?,
            None => loader::verify(
                &session.backends.addrs,
                session.backends.loader_tls()?.as_ref(),
                &session.keyspace,
                10_000,
                missing_is_failure,
            )?,
        };
        progress.note(&format!(
            "verified {} keys with {}: {} bad, {} missing",
            v.checked,
            loader::client_name(cfg.workload.protocol),
            v.bad,
            v.missing
        ));
        Some(v)
    } else {
        None
    };

    let mut cells: Vec<CellResult> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let trials = per_cell[i].clone();
            let summary = if trials.is_empty() {
                CellStats::default()
            } else {
                combine_trials(&trials)
            };
            let latency_hdr = merged(&hists[i]).and_then(|h| crate::export::encode_histogram(&h));
            CellResult {
                id: p.id.clone(),
                params: p.params.clone(),
                how: how[i].clone(),
                skipped: skipped[i].clone(),
                summary,
                trials,
                ratio_to_reference: None,
                latency_hdr,
            }
        })
        .collect();

    let reference = apply_reference(&mut cells, &cfg.reference);
    let gates = crate::gate::evaluate(cfg, &cells);
    let overhead = crate::overhead::rows(&cells);
    let mut result = RunResult {
        overhead,
        cells,
        reference,
        gates,
        verify,
        notes,
        ..session.result(cfg, "run")
    };
    judge(&mut result);
    Ok(RunOutput {
        result,
        histograms: hists,
    })
}

/// Whether the run needs its own certificates: TLS backends ncbench
/// starts, or an ncproxy target with a TLS listener.
fn needs_pki(cfg: &BenchConfig) -> bool {
    let b = &cfg.backends;
    (b.tls && b.kind != crate::config::BackendKind::External)
        || cfg.targets.iter().any(|t| t.tls && t.kind.is_ncproxy())
}

/// Whether the events throw data away (a killed backend comes back empty).
pub fn loses_data(events: &[EventSpec]) -> bool {
    events
        .iter()
        .any(|e| matches!(e.action, EventAction::Kill | EventAction::Restart))
}

/// Merges histograms (None when there are none).
pub fn merged(hs: &[Histogram<u64>]) -> Option<Histogram<u64>> {
    let mut it = hs.iter();
    let mut m = it.next()?.clone();
    for h in it {
        let _ = m.add(h);
    }
    Some(m)
}

/// Picks the reference cell and fills every cell's ratios to it.
pub fn apply_reference(cells: &mut [CellResult], sel: &Selector) -> Option<String> {
    let r = cells
        .iter()
        .find(|c| c.skipped.is_none() && matches(&c.params, sel))?
        .clone();
    for c in cells.iter_mut().filter(|c| c.skipped.is_none()) {
        c.ratio_to_reference = Some(Ratios {
            ops_per_sec: ratio(c.summary.ops_per_sec, r.summary.ops_per_sec),
            latency_us_p99: ratio(c.summary.latency_us.p99, r.summary.latency_us.p99),
        });
    }
    Some(r.id)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Sets the verdict from integrity, errors, data verification, gates and baseline.
pub fn judge(r: &mut RunResult) {
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    for c in r.cells.iter().filter(|c| c.skipped.is_none()) {
        let s = &c.summary;
        let events: Vec<&EventRecord> = c.trials.iter().flat_map(|t| &t.events).collect();
        for e in events.iter().filter(|e| e.failed()) {
            reasons.push(format!("{}: event `{}` {}", c.id, e.event, e.outcome));
        }
        if !events.is_empty() {
            // Errors and lost replies are what events cause: counted by kind,
            // shown in the timeline, not failures. Mismatches still are.
            if s.mismatches > 0 {
                reasons.push(format!(
                    "{}: integrity: {} mismatched replies{}",
                    c.id,
                    s.mismatches,
                    s.first_problem
                        .as_ref()
                        .map(|p| format!(" (first: {p})"))
                        .unwrap_or_default()
                ));
            }
            if s.errors > 0 || s.lost > 0 || s.conn_errors > 0 {
                warnings.push(format!(
                    "{}: during events: {} error replies, {} lost replies, {} connection errors",
                    c.id, s.errors, s.lost, s.conn_errors
                ));
            }
            if s.requests == 0 {
                reasons.push(format!("{}: no request completed", c.id));
            }
            continue;
        }
        if s.mismatches > 0 || s.lost > 0 {
            reasons.push(format!(
                "{}: integrity: {} mismatched and {} lost replies{}",
                c.id,
                s.mismatches,
                s.lost,
                s.first_problem
                    .as_ref()
                    .map(|p| format!(" (first: {p})"))
                    .unwrap_or_default()
            ));
        }
        if s.errors > 0 {
            reasons.push(format!(
                "{}: {} error replies{}",
                c.id,
                s.errors,
                s.first_problem
                    .as_ref()
                    .map(|p| format!(" (first: {p})"))
                    .unwrap_or_default()
            ));
        }
        if s.requests == 0 {
            reasons.push(format!("{}: no request completed", c.id));
        }
        if let Some(rate) = s.target_rate {
            if s.ops_per_sec < 0.95 * rate {
                warnings.push(format!(
                    "{}: target rate not reached ({:.0} of {:.0}/s); the system (or the driver, send lag p99 {}) could not keep up",
                    c.id,
                    s.ops_per_sec,
                    rate,
                    crate::report::fmt_us(s.send_lag_us_p99)
                ));
            }
        }
        if s.conn_errors > 0 {
            warnings.push(format!(
                "{}: {} connection errors (reconnected)",
                c.id, s.conn_errors
            ));
        }
    }
    if let Some(v) = &r.verify {
        if !v.ok() {
            reasons.push(format!(
                "data verification: {} bad and {} missing of {} keys{}",
                v.bad,
                v.missing,
                v.checked,
                v.first_bad
                    .as_ref()
                    .map(|p| format!(" (first: {p})"))
                    .unwrap_or_default()
            ));
        }
    }
    for g in &r.gates {
        match g.verdict.as_str() {
            "fail" => reasons.push(format!("gate `{}`: {}", g.name, g.detail)),
            "skip" => warnings.push(format!("gate `{}` skipped: {}", g.name, g.detail)),
            "inconclusive" => {
                warnings.push(format!("gate `{}` inconclusive: {}", g.name, g.detail))
            }
            _ => {}
        }
    }
    if let Some(b) = &r.baseline {
        for c in &b.checks {
            match c.verdict.as_str() {
                "fail" => reasons.push(format!("baseline {}: {}", b.file, c.detail)),
                "inconclusive" => warnings.push(format!("baseline {}: {}", b.file, c.detail)),
                _ => {}
            }
        }
    }
    r.verdict = Verdict {
        pass: reasons.is_empty(),
        reasons,
        warnings,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml_str;

    #[test]
    fn sweep_expands_knobs_only_for_ncproxy() {
        let cfg = from_toml_str(
            r#"
[[target]]
kind = "ncproxy"
[[target]]
kind = "nutcracker"
[[target]]
kind = "direct"
[sweep]
send_mode = ["batched", "per_message"]
iov_max = [16, 128]
pipeline = [1, 16]
"#,
            "t",
        )
        .unwrap();
        let cells = expand_cells(&cfg);
        assert_eq!(cells.len(), 2 * 2 * 2 + 2 + 2);
        assert_eq!(cells[0].id, "ncproxy/batched/iov16/limnone/p1/c50");
        assert!(cells.iter().any(|c| c.id == "nutcracker/p16/c50"));
        let sel = Selector {
            send_mode: Some(crate::config::SendMode::PerMessage),
            ..Selector::default()
        };
        assert_eq!(cells.iter().filter(|c| matches(&c.params, &sel)).count(), 4);
    }
}
