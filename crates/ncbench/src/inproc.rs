//! ncproxy in-process: the target that makes `ncbench run` work on a fresh
//! machine without a prior build of the proxy binary.
//!
//! The generated pool config goes through `nc_config` exactly as the binary's
//! `-c` file would, and `nc_proxy::start` runs the proxy on its own worker
//! threads, with its stats server on a free loopback port, so scraping works
//! the same as for the binary.
use crate::error::{BenchError, Result};
use std::net::SocketAddr;

/// A proxy running on its own threads inside this process.
pub struct InProcProxy {
    proxy: Option<nc_proxy::RunningProxy>,
    stats: Option<SocketAddr>,
}

impl InProcProxy {
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.stats
    }

    /// Stops the workers and joins their threads.
    pub fn stop(mut self) {
        if let Some(p) = self.proxy.take() {
            p.stop();
        }
    }
}

impl Drop for InProcProxy {
    fn drop(&mut self) {
        if let Some(p) = self.proxy.take() {
            p.stop();
        }
    }
}

/// Starts ncproxy in-process with the pool config `yaml`. `None` would mean
/// "not in this build" (the caller then uses the binary); this build has it.
pub fn start(yaml: &str, _listen: SocketAddr, workers: u32) -> Option<Result<InProcProxy>> {
    Some(start_inner(yaml, workers))
}

fn start_inner(yaml: &str, workers: u32) -> Result<InProcProxy> {
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
        ..nc_proxy::RunOptions::default()
    };
    let p = nc_proxy::start(cfg, opts)
        .map_err(|e| BenchError::setup(format!("ncproxy in-process: {e}")))?;
    let stats = p.stats_addr();
    Ok(InProcProxy {
        proxy: Some(p),
        stats,
    })
}
