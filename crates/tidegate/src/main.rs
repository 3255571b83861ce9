//! The `tidegate` binary: the command line, and (as the roles land) settings and the
//! wiring of control plane, data plane and traditional mode.

mod config_cmd;

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
    /// Start the gateway (not built yet: arrives with the control plane).
    Start {
        /// Settings file in kong.conf syntax.
        #[arg(short = 'c', long = "conf")]
        conf: Option<String>,
        /// Directory for the node's data.
        #[arg(short = 'p', long = "prefix")]
        prefix: Option<String>,
    },
}

fn main() -> ExitCode {
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
        Command::Start { .. } => {
            eprintln!(
                "Error: 'tidegate start' is not supported yet: the control plane, data plane and \
                 proxy are still being built. Today tidegate can check declarative files: \
                 'tidegate config parse FILE'."
            );
            Ok(ExitCode::from(2))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}
