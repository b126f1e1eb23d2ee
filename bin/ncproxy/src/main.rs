//! `ncproxy`: the command line. Parses nutcracker's flags, loads and
//! validates the YAML, starts the proxy and waits for a signal. Everything
//! else lives in the `nc-proxy` and `nc-config` crates.

use std::process::ExitCode;
use std::time::Duration;

use nc_config::cli::{self, CliAction, Options};
use nc_config::Config;
use nc_proxy::log;

fn main() -> ExitCode {
    let action = match cli::parse(std::env::args_os()) {
        Ok(action) => action,
        Err(err) => {
            eprintln!("{err}");
            eprint!("{}", cli::usage_text());
            return ExitCode::from(1);
        }
    };
    match action {
        CliAction::Help => {
            eprint!("{}", cli::help_text());
            ExitCode::SUCCESS
        }
        CliAction::Version => {
            eprint!("{}", cli::version_text());
            ExitCode::SUCCESS
        }
        CliAction::DescribeStats => {
            eprint!("{}", cli::version_text());
            eprint!("{}", nc_proxy::stats::describe());
            ExitCode::SUCCESS
        }
        CliAction::TestConf(opts) => match Config::load(&opts.conf_file) {
            Ok(config) => {
                for note in config.notes() {
                    eprintln!("{note}");
                }
                eprintln!("{}", nc_config::syntax_ok_line(&opts.conf_file));
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprint!("{}", err.test_conf_stderr());
                ExitCode::from(1)
            }
        },
        CliAction::Run(opts) => run(&opts),
    }
}

fn run(opts: &Options) -> ExitCode {
    log::set_level(opts.verbosity);
    if let Some(path) = &opts.output {
        if let Err(err) = log::set_output(path) {
            eprintln!(
                "nutcracker: opening log file '{path}' failed: {}",
                os_text(&err)
            );
            return ExitCode::from(1);
        }
    }
    let mut config = match Config::load(&opts.conf_file) {
        Ok(config) => config,
        Err(err) => {
            for line in err.log_lines() {
                log::error(format_args!("{}", line.message));
            }
            if let Some(line) = err.syntax_invalid_line() {
                eprintln!("{line}");
            }
            return ExitCode::from(1);
        }
    };
    opts.apply_overrides(&mut config);
    log::notice(format_args!(
        "ncproxy-{} (nutcracker-0.5.0 compatible) started on pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    ));
    log::notice(format_args!(
        "run, rabbit run / dig that hole, forget the sun / and when at last the work is done / don't sit down / it's time to dig another one"
    ));
    if opts.daemonize {
        // Before any thread exists: only the forking thread survives a fork.
        if let Err(err) = nc_proxy::daemonize() {
            log::error(format_args!("daemonize failed: {}", os_text(&err)));
            return ExitCode::from(1);
        }
    }
    let run_opts = nc_proxy::RunOptions {
        workers: opts.workers.unwrap_or(0),
        stats_addr: Some((opts.stats_addr.clone(), opts.stats_port)),
        stats_interval_ms: opts.stats_interval_ms,
        mbuf_size: opts.mbuf_size,
        prometheus: opts
            .prometheus_port
            .map(|port| (opts.stats_addr.clone(), port)),
        busy_poll: std::time::Duration::from_micros(u64::from(opts.busy_poll_us)),
        wait: opts.wait,
        wait_cap_percent: opts.wait_cap_percent,
        io: opts.io,
    };
    if let Err(err) = log::log_fatal_signals() {
        log::error(format_args!("signal setup failed: {}", os_text(&err)));
    }
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(err) => {
            log::error(format_args!("signal setup failed: {}", os_text(&err)));
            return ExitCode::from(1);
        }
    };
    let mut proxy = match nc_proxy::start(config, run_opts) {
        Ok(proxy) => proxy,
        Err(err) => {
            log::error(format_args!("{err}"));
            log::notice(format_args!("done, rabbit done"));
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &opts.pid_file {
        if let Err(err) = std::fs::write(path, std::process::id().to_string()) {
            log::error(format_args!(
                "opening pid file '{path}' failed: {}",
                os_text(&err)
            ));
            proxy.stop();
            return ExitCode::from(1);
        }
    }
    let (code, drain) = wait_for_signal(signals, &mut proxy, opts);
    if drain {
        proxy.drain(SHUTDOWN_GRACE);
    } else {
        proxy.stop();
    }
    if let Some(path) = &opts.pid_file {
        let _ = std::fs::remove_file(path);
    }
    log::notice(format_args!("done, rabbit done"));
    code
}

/// How long SIGTERM waits for in-flight requests before closing anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Handles signals as nutcracker does until one ends the process: SIGHUP
/// reopens the log file, SIGTTIN/SIGTTOU raise/lower the log level, SIGUSR2
/// is logged, SIGINT exits 1 at once. Beyond nutcracker: SIGUSR1 reloads the
/// configuration. SIGTERM (which nutcracker
/// does not handle) drains: returns `(exit code, drain?)`.
/// The signals ncproxy handles, registered before anything listens so that
/// an early signal is never taken with its default action.
struct Signals {
    runtime: tokio::runtime::Runtime,
    streams: [tokio::signal::unix::Signal; 7],
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let streams = runtime.block_on(async {
            let listen = |kind: i32| signal(SignalKind::from_raw(kind));
            Ok::<_, std::io::Error>([
                listen(libc_signal::SIGINT)?,
                listen(libc_signal::SIGTERM)?,
                listen(libc_signal::SIGHUP)?,
                listen(libc_signal::SIGTTIN)?,
                listen(libc_signal::SIGTTOU)?,
                listen(libc_signal::SIGUSR1)?,
                listen(libc_signal::SIGUSR2)?,
            ])
        })?;
        Ok(Signals { runtime, streams })
    }
}

fn wait_for_signal(
    signals: Signals,
    proxy: &mut nc_proxy::RunningProxy,
    opts: &Options,
) -> (ExitCode, bool) {
    let Signals { runtime, streams } = signals;
    runtime.block_on(async {
        let [mut int, mut term, mut hup, mut ttin, mut ttou, mut usr1, mut usr2] = streams;
        loop {
            tokio::select! {
                _ = int.recv() => {
                    log::notice(format_args!("signal 2 (SIGINT) received, exiting"));
                    return (ExitCode::from(1), false);
                }
                _ = term.recv() => {
                    log::notice(format_args!("signal 15 (SIGTERM) received, draining"));
                    return (ExitCode::SUCCESS, true);
                }
                _ = hup.recv() => {
                    log::notice(format_args!("signal 1 (SIGHUP) received, reopening log file"));
                    if let Err(err) = log::reopen() {
                        eprintln!("reopening log file failed: {}", os_text(&err));
                    }
                }
                _ = ttin.recv() => {
                    log::notice(format_args!("signal 21 (SIGTTIN) received, up logging level"));
                    log::set_level(log::level().saturating_add(1));
                    log::always(format_args!("up log level to {}", log::level()));
                }
                _ = ttou.recv() => {
                    log::notice(format_args!("signal 22 (SIGTTOU) received, down logging level"));
                    log::set_level(log::level().saturating_sub(1));
                    log::always(format_args!("down log level to {}", log::level()));
                }
                _ = usr1.recv() => {
                    log::notice(format_args!("signal 10 (SIGUSR1) received, reloading configuration"));
                    reload(proxy, opts);
                }
                _ = usr2.recv() => log::notice(format_args!("signal 12 (SIGUSR2) received")),
            }
        }
    })
}

/// Re-reads the configuration file; a bad one is rejected with its message
/// and the running configuration keeps serving.
fn reload(proxy: &mut nc_proxy::RunningProxy, opts: &Options) {
    let mut config = match Config::load(&opts.conf_file) {
        Ok(config) => config,
        Err(err) => {
            for line in err.log_lines() {
                log::error(format_args!("{}", line.message));
            }
            log::error(format_args!(
                "reload of configuration file '{}' rejected, keeping the running configuration",
                opts.conf_file
            ));
            return;
        }
    };
    opts.apply_overrides(&mut config);
    match proxy.reload(config) {
        Ok(summary) => log::notice(format_args!(
            "reloaded configuration file '{}': unchanged {:?}, changed {:?}, added {:?}, removed {:?}",
            opts.conf_file, summary.unchanged, summary.changed, summary.added, summary.removed
        )),
        Err(err) => log::error(format_args!(
            "reload rejected, keeping the running configuration: {err}"
        )),
    }
}

/// Signal numbers on Linux (x86_64 and aarch64 agree on these).
mod libc_signal {
    pub(crate) const SIGHUP: i32 = 1;
    pub(crate) const SIGINT: i32 = 2;
    pub(crate) const SIGUSR1: i32 = 10;
    pub(crate) const SIGUSR2: i32 = 12;
    pub(crate) const SIGTERM: i32 = 15;
    pub(crate) const SIGTTIN: i32 = 21;
    pub(crate) const SIGTTOU: i32 = 22;
}

fn os_text(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}
