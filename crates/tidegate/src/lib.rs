//! The `tidegate` binary as a library: the command line, settings and the wiring of
//! control plane, data plane and traditional mode. `src/main.rs` only calls [`main`]; a
//! custom build (one that installs its own plugins, see `crates/plugin-example`) does
//! the same after registering them.

/// The proxy makes a few dozen short-lived allocations per request on a handful of
/// threads; mimalloc's thread-local free lists serve them at a fraction of glibc
/// malloc's cost (it was ~19% of the proxy's instructions). Set here, in the library,
/// so custom builds calling [`main`] get it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod config_cmd;
mod data_plane;
mod hybrid_cmd;
mod quickstart;
mod settings;
mod start;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// tidegate: a Kong-compatible API gateway whose control plane needs no database.
#[derive(Parser)]
#[command(name = "tidegate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print tidegate's version and the Kong Admin API version it implements.
    Version,
    /// Work with declarative configuration files (Kong's format).
    Config {
        #[command(subcommand)]
        command: config_cmd::ConfigCommand,
    },
    /// Hybrid mode helpers (Kong's `kong hybrid`).
    Hybrid {
        #[command(subcommand)]
        command: hybrid_cmd::HybridCommand,
    },
    /// Run a local hybrid cluster for a first look: 3 control planes and 2 data planes
    /// as child processes, in ./tidegate-quickstart, until Ctrl-C.
    Quickstart(quickstart::QuickstartArgs),
    /// Start the gateway in the foreground (SIGTERM drains and exits). With no settings:
    /// role = traditional, data in ./tidegate-data, Admin API on 127.0.0.1:8001.
    Start {
        /// Settings file in kong.conf syntax (`key = value`); `TIDEGATE_<KEY>` overrides.
        #[arg(short = 'c', long = "conf")]
        conf: Option<std::path::PathBuf>,
        /// Directory for the node's data (overrides `prefix`).
        #[arg(short = 'p', long = "prefix")]
        prefix: Option<std::path::PathBuf>,
    },
}

fn start(
    conf: Option<std::path::PathBuf>,
    prefix: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let settings = settings::load(conf.as_deref(), prefix.as_deref(), std::env::vars())?;
    start::init_tracing(&settings.log_level);
    let workers = settings.worker_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // One worker is a current-thread runtime: a multi-thread runtime with one worker
    // still hands I/O events and wakeups between threads, which cost the proxy about a
    // third of its CPU per request in the proxy bench.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(start::run(settings))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the command line. Plugins registered before this call
/// (`tidegate_model::plugins::register_custom` and `tidegate_plugins::register_custom`)
/// are installed on this node like the bundled ones.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!(
                "tidegate {} (Kong Admin API {})",
                env!("CARGO_PKG_VERSION"),
                tidegate_model::KONG_COMPAT_VERSION
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { command } => config_cmd::run(command),
        Command::Hybrid { command } => hybrid_cmd::run(command),
        Command::Start { conf, prefix } => start(conf, prefix),
        Command::Quickstart(args) => quickstart::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}
