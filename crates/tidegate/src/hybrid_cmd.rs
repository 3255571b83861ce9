//! `tidegate hybrid gen_cert [CERT KEY]`: a `cluster_mtls = shared` pair, as Kong's
//! `kong hybrid gen_cert`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum HybridCommand {
    /// Generate the certificate and key every CP and DP shares in `cluster_mtls = shared`
    /// (EC P-384, CN kong_clustering). Copy both files to every node.
    #[command(name = "gen_cert")]
    GenCert {
        /// Where to write the certificate.
        #[arg(default_value = "cluster.crt")]
        cert: PathBuf,
        /// Where to write the private key (mode 0600).
        #[arg(default_value = "cluster.key")]
        key: PathBuf,
        /// Validity in days.
        #[arg(short = 'd', long, default_value_t = 1095)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: HybridCommand) -> anyhow::Result<std::process::ExitCode> {
    let HybridCommand::GenCert {
        cert,
        key,
        days,
        force,
    } = cmd;
    if days == 0 {
        bail!("--days must be at least 1");
    }
    for p in [&cert, &key] {
        if p.exists() && !force {
            bail!("{} already exists; use --force to overwrite", p.display());
        }
    }
    let now = crate::start::SystemClock.now();
    let pair = tidegate_tls::gen_cert(now, days).map_err(anyhow::Error::msg)?;
    write_file(&key, &pair.key_pem, 0o600)?;
    write_file(&cert, &pair.cert_pem, 0o644)?;
    println!(
        "Successfully generated certificate/key pairs, they have been written to: '{}' and '{}'.",
        cert.display(),
        key.display()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Writes `text` to `path` with `mode`, synced: certificates, keys and quickstart's files.
pub(crate) fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
