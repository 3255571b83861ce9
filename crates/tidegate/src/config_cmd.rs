//! `tidegate config …`: write an example declarative file, check one, and export or
//! import the config of a running CP through its Admin API (`GET`/`POST /config`).

mod admin_client;
mod progress;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Subcommand;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use tidegate_model::declarative::{self, ParseOptions, MAX_DECLARATIVE_BYTES};
use tidegate_model::{ConfigHash, EntityKind, ErrorCode, KongError};

use admin_client::AdminUrl;
use progress::{bytes, secs, Progress};

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
            eprintln!("Error: Failed parsing:\n{}", file_errors(file, &text, &e));
            Ok(ExitCode::from(1))
        }
    }
}

/// A declarative file's errors, one a line, each at `FILE:LINE:COLUMN` where the text
/// tells (Kong's body names only the path inside the document).
pub(crate) fn file_errors(file: &Path, text: &str, e: &KongError) -> String {
    if e.code != ErrorCode::DeclarativeConfig {
        return pretty_error(e);
    }
    located(file, &declarative::locate(text, e))
}

fn located(file: &Path, errors: &[declarative::Located]) -> String {
    let name = file.display().to_string();
    errors
        .iter()
        .map(|l| l.render(&name))
        .collect::<Vec<_>>()
        .join("\n")
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

/// Reads, counts and uploads a declarative file, saying on stderr how far it got: a large
/// import spends seconds in each stage, the longest waiting for the cluster to apply it.
/// The CP checks the file (its schemas, custom plugins included, are the ones that
/// count); only a file that is not YAML or JSON at all is refused here.
fn db_import(file: &Path, admin_url: &str) -> anyhow::Result<ExitCode> {
    let progress = Progress::stderr();
    let url = AdminUrl::parse(admin_url)?;
    // Before reading a file that may take seconds to parse: a node that is not there is
    // the most common failure.
    url.request("GET", "/status", None)?;
    let text = read_declarative(file)?;
    progress.line(&format!(
        "read {}: {}",
        file.display(),
        bytes(text.len() as u64)
    ));
    let before_parse = progress.elapsed();
    let doc = match declarative::parse_document(&text) {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("Error: Failed importing:\n{}", file_errors(file, &text, &e));
            return Ok(ExitCode::from(1));
        }
    };
    let counts = declarative::count_entities(&doc);
    drop(doc);
    let total: usize = counts.values().sum();
    let by_kind: Vec<String> = counts
        .iter()
        .map(|(kind, n)| format!("{}: {n}", kind.table()))
        .collect();
    progress.line(&format!(
        "parsed in {}: {total} {}{}",
        secs(progress.elapsed() - before_parse),
        if total == 1 { "entity" } else { "entities" },
        if by_kind.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_kind.join(", "))
        }
    ));
    let body = json!({ "config": text }).to_string().into_bytes();
    let mut meter = Some(progress.meter(format!("uploading to {}", url.shown), body.len() as u64));
    let mut uploaded_at = progress.elapsed();
    let resp = url.send("POST", "/config", Some(&body), &mut |done, total| {
        if let Some(m) = meter.as_mut() {
            m.advance(done);
        }
        if done == total {
            let took = meter.take().map(|m| m.finish()).unwrap_or_default();
            uploaded_at = progress.elapsed();
            progress.line(&format!(
                "uploaded {} in {}; waiting for the cluster to apply it",
                bytes(total),
                secs(took)
            ));
        }
    });
    if let Some(m) = meter.take() {
        m.finish();
    }
    let resp = resp?;
    match resp.status {
        201 => {
            let applied = progress.elapsed() - uploaded_at;
            // The node answers once it applied the import itself, so its hash now is the
            // import's (or a later write's).
            let hash = url
                .request("GET", "/status", None)
                .ok()
                .and_then(|r| r.body["configuration_hash"].as_str().map(str::to_string));
            progress.line(&format!(
                "applied in {}{}; {} in all",
                secs(applied),
                hash.map(|h| format!(", config hash {h}"))
                    .unwrap_or_default(),
                secs(progress.elapsed())
            ));
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
        // Kong's code 14: the file's errors, placed in the file.
        400 if resp.body.get("code") == Some(&json!(14)) => {
            let out = match resp.body.get("fields") {
                Some(fields) => located(file, &declarative::locate_fields(&text, fields)),
                None => message_of(&resp.body),
            };
            eprintln!("Error: Failed importing:\n{out}");
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
