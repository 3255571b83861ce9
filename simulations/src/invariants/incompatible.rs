//! An incompatible DP never receives config it cannot run: a DP the CP refuses at Hello
//! (version) never serves any cluster config, and no DP ever serves a cluster config
//! that uses a plugin it lacks or has at another major.minor than the CPs'.

use crate::dp::Served;
use crate::scenario::{cp_plugins, DpKind, DpSpec};

pub const NAME: &str = "incompatible";

fn major_minor(v: &str) -> Option<(u64, u64)> {
    let v = semver::Version::parse(v).ok()?;
    Some((v.major, v.minor))
}

pub fn on_served(spec: &DpSpec, new: &Served) -> Vec<(&'static str, String)> {
    if !new.from_cluster {
        return Vec::new();
    }
    if spec.kind == DpKind::VersionRejected {
        return vec![(
            NAME,
            format!(
                "{} (version {}, refused by the CPs) serves cluster config v{}",
                spec.name, spec.version, new.version
            ),
        )];
    }
    let cp = cp_plugins();
    let mut found = Vec::new();
    for p in &new.plugins {
        let ok = match (spec.plugins.get(p), cp.get(p)) {
            (Some(dp_v), Some(cp_v)) => major_minor(dp_v) == major_minor(cp_v),
            _ => false,
        };
        if !ok {
            found.push((
                NAME,
                format!(
                    "{} serves v{} which uses plugin {p}, that it has as {:?} (CP: {:?})",
                    spec.name,
                    new.version,
                    spec.plugins.get(p),
                    cp.get(p)
                ),
            ));
        }
    }
    found
}
