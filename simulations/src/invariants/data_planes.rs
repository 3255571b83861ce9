//! `/clustering/data-planes` on every CP eventually lists every DP with its true state:
//! a DP the CPs accept is listed connected, with the version and hash it serves; a DP
//! refused for its version is listed with `kong_version_incompatible`; a DP held back
//! for plugins is listed connected with a `plugin_*_incompatible` status when the config
//! uses the plugin it lacks.

use std::sync::Arc;

use crate::cp::CpCtx;
use crate::dp::{plugins_used, DpCtx};
use crate::scenario::{cp_name, DpKind};

pub const NAME: &str = "data_planes";

pub fn pending(cps: &[Arc<CpCtx>], dps: &[Arc<DpCtx>]) -> Vec<String> {
    let mut out = Vec::new();
    for c in cps {
        let Some(reader) = c.reader() else {
            out.push(format!("{} is not running", cp_name(c.index)));
            continue;
        };
        let used = reader.read(|m| plugins_used(&m.config));
        for d in dps {
            let Some(current) = d.current() else {
                out.push(format!("{} is not running", d.spec.name));
                continue;
            };
            let row = reader.read(|m| m.data_planes.get(&d.node_id).cloned());
            let Some(row) = row else {
                out.push(format!(
                    "{} does not list {}",
                    cp_name(c.index),
                    d.spec.name
                ));
                continue;
            };
            let held_back = match &d.spec.kind {
                DpKind::MissingPlugin(p) | DpKind::PluginVersion(p) => used.contains(p),
                _ => false,
            };
            let (want_status, want_connected, want_state): (&[&str], bool, bool) =
                match &d.spec.kind {
                    DpKind::VersionRejected => (&["kong_version_incompatible"], false, false),
                    _ if held_back => (
                        &["plugin_set_incompatible", "plugin_version_incompatible"],
                        true,
                        true,
                    ),
                    _ => (&["normal"], true, true),
                };
            let hash = current.state.hash().to_string();
            let version = current.state.version();
            let mut wrong = Vec::new();
            if !want_status.contains(&row.sync_status.as_str()) {
                wrong.push(format!(
                    "sync_status {} (want {want_status:?})",
                    row.sync_status
                ));
            }
            if row.connected != want_connected {
                wrong.push(format!("connected {}", row.connected));
            }
            // A DP serving its first config before any cluster config reports nothing.
            if want_state
                && current.from_cluster
                && (row.config_hash != hash || row.config_version != Some(version))
            {
                wrong.push(format!(
                    "config v{:?} {} (it serves v{version} {hash})",
                    row.config_version, row.config_hash
                ));
            }
            if !wrong.is_empty() {
                out.push(format!(
                    "{} lists {} ({:?}) with {}",
                    cp_name(c.index),
                    d.spec.name,
                    d.spec.kind,
                    wrong.join(", ")
                ));
            }
        }
    }
    out
}
