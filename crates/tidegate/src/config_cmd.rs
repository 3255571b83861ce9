//! `tidegate config …`: write an example declarative file, check one, and export or
//! import the config of a running CP through its Admin API (`GET`/`POST /config`).

mod admin_client;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Subcommand;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use tidegate_model::declarative::{self, ParseOptions, MAX_DECLARATIVE_BYTES};
use tidegate_model::{ConfigHash, EntityKind, KongError};

use admin_client::AdminUrl;

/// The example written by `config init`: the same file the README points at.
const EXAMPLE: &str = include_str!("../../../ops/examples/tidegate.yml");
const DEFAULT_INIT_FILE: &str = "tidegate.yml";
/// The Admin API of a node started with no settings.
const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8001";

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
    /// Export the config of a running CP as a 3.0 declarative file (to FILE, else stdout).
    #[command(name = "db_export")]
    DbExport {
        file: Option<PathBuf>,
        /// The CP's Admin API.
        #[arg(long, default_value = DEFAULT_ADMIN_URL)]
        admin_url: String,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Load a declarative file into a running CP as one replicated write (`POST /config`):
    /// the CP's whole config becomes the file's, all or nothing.
    #[command(name = "db_import")]
    DbImport {
        file: PathBuf,
        /// The CP's Admin API (any CP of a cluster takes the write).
        #[arg(long, default_value = DEFAULT_ADMIN_URL)]
        admin_url: String,
    },
    /// Copy a data plane's config cache (from its prefix) to FILE: one portable file that
    /// provisions another DP while every CP is down (`import-cache`, or copy it to the new
    /// DP's prefix as config.cache). Safe while the DP runs.
    #[command(name = "export-cache")]
    ExportCache {
        file: PathBuf,
        /// The data plane's prefix.
        #[arg(short = 'p', long, default_value = crate::settings::DEFAULT_PREFIX)]
        prefix: PathBuf,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Verify an exported cache file and install it as the config cache in PREFIX; a DP
    /// started there serves it at once, with no CP. Run it while that DP is stopped.
    #[command(name = "import-cache")]
    ImportCache {
        file: PathBuf,
        /// The data plane's prefix.
        #[arg(short = 'p', long, default_value = crate::settings::DEFAULT_PREFIX)]
        prefix: PathBuf,
    },
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
        ConfigCommand::ExportCache {
            file,
            prefix,
            force,
        } => {
            if file.exists() && !force {
                bail!(
                    "{} already exists; use --force to overwrite",
                    file.display()
                );
            }
            if !prefix.join(tidegate_dp::CACHE_FILE).exists() {
                bail!(
                    "no config cache in {}: is it a data plane's prefix (-p), and has it received a config?",
                    prefix.display()
                );
            }
            let cache = tidegate_dp::Cache::open(&prefix)?;
            let state = cache.export(&file)?;
            println!(
                "exported config version {} (hash {}, {} entities) to {}",
                state.version(),
                state.hash(),
                state.len(),
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::ImportCache { file, prefix } => {
            let mut cache = tidegate_dp::Cache::open(&prefix)?;
            let state = cache.import(&file)?;
            println!(
                "installed config version {} (hash {}, {} entities) as the cache in {}",
                state.version(),
                state.hash(),
                state.len(),
                prefix.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::DbExport {
            file,
            admin_url,
            force,
        } => db_export(file.as_deref(), &admin_url, force),
        ConfigCommand::DbImport { file, admin_url } => db_import(&file, &admin_url),
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

/// A declarative file's text, within the size limit.
pub(crate) fn read_declarative(file: &Path) -> anyhow::Result<String> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if meta.len() > MAX_DECLARATIVE_BYTES as u64 {
        bail!(
            "{} is {} bytes; declarative files are limited to {MAX_DECLARATIVE_BYTES} bytes",
            file.display(),
            meta.len()
        );
    }
    std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {} as UTF-8 text", file.display()))
}

fn parse(file: &Path) -> anyhow::Result<ExitCode> {
    let text = read_declarative(file)?;
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

fn db_export(file: Option<&Path>, admin_url: &str, force: bool) -> anyhow::Result<ExitCode> {
    // Checked before the request, so a refusal changes nothing anywhere.
    if let Some(f) = file {
        if f.exists() && !force {
            bail!(
                "{} already exists; pass --force to overwrite it",
                f.display()
            );
        }
    }
    let url = AdminUrl::parse(admin_url)?;
    let resp = url.request("GET", "/config", None)?;
    let yaml = match (resp.status, resp.body.get("config")) {
        (200, Some(Value::String(yaml))) => yaml.clone(),
        _ => bail!(
            "GET {}/config answered {}: {}",
            url.shown,
            resp.status,
            message_of(&resp.body)
        ),
    };
    match file {
        Some(f) => {
            std::fs::write(f, &yaml).with_context(|| format!("cannot write {}", f.display()))?;
            eprintln!("exported the config of {} to {}", url.shown, f.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(yaml.as_bytes())
                .and_then(|()| out.flush())
                .context("cannot write to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn db_import(file: &Path, admin_url: &str) -> anyhow::Result<ExitCode> {
    let text = read_declarative(file)?;
    let url = AdminUrl::parse(admin_url)?;
    let resp = url.request("POST", "/config", Some(&json!({ "config": text })))?;
    match resp.status {
        201 => {
            println!("import successful");
            for kind in EntityKind::ALL {
                let n = resp
                    .body
                    .get(kind.table())
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
                if n > 0 {
                    println!("  {}: {n}", kind.table());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        // Kong's code 14: the file's errors, rendered as `config parse` renders them.
        400 if resp.body.get("code") == Some(&json!(14)) => {
            let mut out = Vec::new();
            match resp.body.get("fields") {
                Some(fields) => render(fields, "", "", &mut out),
                None => out.push(message_of(&resp.body)),
            }
            eprintln!("Error: Failed importing:\n{}", out.join("\n"));
            Ok(ExitCode::from(1))
        }
        status => bail!(
            "POST {}/config answered {status}: {}",
            url.shown,
            message_of(&resp.body)
        ),
    }
}

/// The `message` of a Kong error body, else the body itself.
fn message_of(body: &Value) -> String {
    match body.get("message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => body.to_string(),
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
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Randomness for generated secrets (key-auth keys a file leaves out).
pub(crate) fn entropy() -> anyhow::Result<u128> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("the operating system's random source failed"))?;
    Ok(u128::from_be_bytes(b))
}

#[cfg(test)]
mod tests;
