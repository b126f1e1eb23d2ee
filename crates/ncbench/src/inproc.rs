//! ncproxy in-process: the target that makes `ncbench run` work on a fresh
//! machine without a prior build of the proxy binary.
//!
//! The generated pool config goes through `nc_config` exactly as the binary's
//! `-c` file would, and `nc_proxy::start` runs the proxy on its own worker
//! threads, with its stats server on a free loopback port, so scraping works
//! the same as for the binary. With `[placement] proxies`, the starting
//! thread is pinned while `nc_proxy::start` runs, so every thread the proxy
//! starts inherits those CPUs.
use crate::affinity::{self, CpuList};
use crate::error::{BenchError, Result};
use std::net::SocketAddr;
use std::sync::Mutex;

/// A proxy running on its own threads inside this process.
pub struct InProcProxy {
    /// Behind a lock so that an event can reload it while the load runs.
    proxy: Mutex<Option<nc_proxy::RunningProxy>>,
    stats: Option<SocketAddr>,
    /// Thread id, name and allowed CPUs of each thread the proxy started.
    pub threads_cpus: Vec<(u32, String, String)>,
}

impl InProcProxy {
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.stats
    }

    fn take(&mut self) -> Option<nc_proxy::RunningProxy> {
        self.proxy
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Switches the running proxy to the pool config `yaml`, as SIGUSR1
    /// does for the binary.
    pub fn reload(&self, yaml: &str) -> std::result::Result<(), String> {
        let cfg = nc_config::Config::from_yaml_str(yaml, "<ncbench reloaded pool>")
            .map_err(|e| e.to_string().replace('\n', "; "))?;
        let mut guard = self.proxy.lock().unwrap_or_else(|e| e.into_inner());
        let p = guard.as_mut().ok_or("the proxy is stopped")?;
        p.reload(cfg).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Stops the workers and joins their threads.
    pub fn stop(mut self) {
        if let Some(p) = self.take() {
            p.stop();
        }
    }
}

impl Drop for InProcProxy {
    fn drop(&mut self) {
        if let Some(p) = self.take() {
            p.stop();
        }
    }
}

/// Starts ncproxy in-process with the pool config `yaml`, its threads on
/// `cpus` when given. `None` would mean "not in this build" (the caller then
/// uses the binary); this build has it.
pub fn start(
    yaml: &str,
    _listen: SocketAddr,
    workers: u32,
    busy_poll_us: u32,
    cpus: Option<&CpuList>,
    log: &std::path::Path,
) -> Option<Result<InProcProxy>> {
    // The proxy's log goes to a file, as the binary's `-o` does: a dead
    // backend must not flood ncbench's terminal with reconnect lines.
    if let Err(e) = nc_proxy::log::set_output(&log.to_string_lossy()) {
        return Some(Err(BenchError::io(log, e)));
    }
    Some(start_inner(yaml, workers, busy_poll_us, cpus))
}

/// nc_proxy names its threads `ncproxy-worker-N` and `ncproxy-stats`.
const THREAD_PREFIX: &str = "ncproxy-";

fn start_inner(
    yaml: &str,
    workers: u32,
    busy_poll_us: u32,
    cpus: Option<&CpuList>,
) -> Result<InProcProxy> {
    let cfg = nc_config::Config::from_yaml_str(yaml, "<ncbench generated pool>").map_err(|e| {
        BenchError::setup(format!(
            "ncproxy rejected the generated config: {}",
            e.to_string().replace('\n', "; ")
        ))
    })?;
    let opts = nc_proxy::RunOptions {
        workers: workers as usize,
        // Port 0: the stats server picks a free port and reports it.
        stats_addr: Some(("127.0.0.1".to_string(), 0)),
        stats_interval_ms: 1000,
        busy_poll: std::time::Duration::from_micros(u64::from(busy_poll_us)),
        ..nc_proxy::RunOptions::default()
    };
    // The proxy's threads are the new ones with its names: two proxies
    // starting at once in one process (parallel tests) would take each
    // other's, and the syscalls of one that stopped would vanish.
    let starting = START.lock().unwrap_or_else(|e| e.into_inner());
    let before = affinity::thread_ids();
    let p = affinity::on_cpus(cpus, || nc_proxy::start(cfg, opts))
        .map_err(|e| BenchError::setup(format!("ncproxy in-process: cannot pin: {e}")))?
        .map_err(|e| BenchError::setup(format!("ncproxy in-process: {e}")))?;
    let threads_cpus = proxy_threads(&before);
    drop(starting);
    let stats = p.stats_addr();
    Ok(InProcProxy {
        proxy: Mutex::new(Some(p)),
        stats,
        threads_cpus,
    })
}

/// Held while a proxy starts and its threads are identified.
static START: Mutex<()> = Mutex::new(());

/// The proxy's threads: the ones new since `before` that carry its names (the
/// name also keeps out threads other code in this process started meanwhile).
/// A new thread names itself after it starts, so this waits a little for
/// every new thread to have a proxy name.
fn proxy_threads(before: &[u32]) -> Vec<(u32, String, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let new: Vec<(u32, String, String)> = affinity::thread_ids()
            .into_iter()
            .filter(|t| !before.contains(t))
            .filter_map(|t| affinity::thread_name_and_cpus(t).map(|(n, c)| (t, n, c)))
            .collect();
        let all_named = new
            .iter()
            .all(|(_, name, _)| name.starts_with(THREAD_PREFIX));
        if all_named || std::time::Instant::now() >= deadline {
            return new
                .into_iter()
                .filter(|(_, name, _)| name.starts_with(THREAD_PREFIX))
                .collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
