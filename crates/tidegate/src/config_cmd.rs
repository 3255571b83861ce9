//! `tidegate config …`: write an example declarative file, and check one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Subcommand;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use tidegate_model::declarative::{self, ParseOptions, MAX_DECLARATIVE_BYTES};
use tidegate_model::{ConfigHash, EntityKind, KongError};

/// The example written by `config init`: the same file the README points at.
const EXAMPLE: &str = include_str!("../../../ops/examples/tidegate.yml");
const DEFAULT_INIT_FILE: &str = "tidegate.yml";

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Write a commented example declarative file (default: ./tidegate.yml).
    Init {
        file: Option<PathBuf>,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check a declarative file: print entity counts and the config hash, or Kong's errors.
    Parse { file: PathBuf },
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Init { file, force } => {
            let file = file.unwrap_or_else(|| PathBuf::from(DEFAULT_INIT_FILE));
            init(&file, force)?;
            println!("{} written", file.display());
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Parse { file } => parse(&file),
    }
}

fn init(file: &Path, force: bool) -> anyhow::Result<()> {
    if file.exists() && !force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            file.display()
        );
    }
    std::fs::write(file, EXAMPLE).with_context(|| format!("cannot write {}", file.display()))
}

fn parse(file: &Path) -> anyhow::Result<ExitCode> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if meta.len() > MAX_DECLARATIVE_BYTES as u64 {
        bail!(
            "{} is {} bytes; declarative files are limited to {MAX_DECLARATIVE_BYTES} bytes",
            file.display(),
            meta.len()
        );
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {} as UTF-8 text", file.display()))?;
    let opts = ParseOptions {
        now: unix_now(),
        entropy: entropy()?,
    };
    match declarative::parse(&text, opts) {
        Ok(config) => {
            println!("parse successful");
            for kind in EntityKind::ALL {
                let n = config.entities.iter().filter(|e| e.kind() == kind).count();
                if n > 0 {
                    println!("  {}: {n}", kind.table());
                }
            }
            println!("config hash: {}", ConfigHash::of(&config.entities));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("Error: Failed parsing:\n{}", pretty_error(&e));
            Ok(ExitCode::from(1))
        }
    }
}

/// Kong's CLI rendering of a declarative error (`pretty_print_error`): one line per
/// field, indented by depth, entries named by position.
pub fn pretty_error(e: &KongError) -> String {
    let mut out = Vec::new();
    match e.fields_json() {
        Some(fields) => render(&fields, "", "", &mut out),
        None => out.push(e.message.clone()),
    }
    out.join("\n")
}

fn render(v: &Value, item: &str, indent: &str, out: &mut Vec<String>) {
    let deeper = format!("{indent}  ");
    let mut line = |label: String, child: &Value, child_item: &str| match child {
        Value::Object(_) | Value::Array(_) => {
            out.push(format!("{indent}{label}:"));
            render(child, child_item, &deeper, out);
        }
        Value::String(s) => out.push(format!("{indent}{label}: {s}")),
        other => out.push(format!("{indent}{label}: {other}")),
    };
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                line(format!("in '{k}'"), child, k);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                if !child.is_null() {
                    line(format!("- in entry {} of '{item}'", i + 1), child, item);
                }
            }
        }
        other => out.push(format!("{indent}{other}")),
    }
}

// The binary owns the real clock; the model and state take time from here.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Randomness for generated secrets (key-auth keys a file leaves out).
fn entropy() -> anyhow::Result<u128> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("the operating system's random source failed"))?;
    Ok(u128::from_be_bytes(b))
}
