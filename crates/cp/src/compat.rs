//! Whether a CP may push its config to a DP (DESIGN.md §4): the version check at
//! connection and the plugin check at every push. Pure: the caller brings the versions,
//! the config and the DP's Hello, and decides what to do with the answer.
//!
//! ```text
//!  Hello ──check_version──▶ Err: Rejected{sync_status, reason}, DP keeps its cache
//!    │ Ok
//!    ▼  at every push
//!  plugins_used(config) ─▶ cp_plugin_versions ─▶ check_plugins(used, dp) ─▶ Err: hold back, warn
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use semver::Version;
use serde::Serialize;
use tidegate_model::plugins::PluginInfo;
use tidegate_model::{Entity, EntityKind};
use tidegate_state::ConfigState;

/// How many minor versions a DP may lag behind its CP.
pub const MAX_MINORS_BEHIND: u64 = 2;

/// A DP's sync status, with Kong's names (Kong tooling keys on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Unknown,
    Normal,
    KongVersionIncompatible,
    PluginSetIncompatible,
    PluginVersionIncompatible,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Unknown => "unknown",
            SyncStatus::Normal => "normal",
            SyncStatus::KongVersionIncompatible => "kong_version_incompatible",
            SyncStatus::PluginSetIncompatible => "plugin_set_incompatible",
            SyncStatus::PluginVersionIncompatible => "plugin_version_incompatible",
        }
    }
}

impl fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a tidegate version is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionProblem {
    OtherMajor,
    /// By minor, or by patch/pre-release within the same minor.
    NewerThanCp,
    /// More than [`MAX_MINORS_BEHIND`] minors behind.
    TooOld,
}

/// Why a CP will not push to a DP. [`Self::sync_status`] is the status to record,
/// `Display` the detailed reason (sent to the DP in `Rejected`), [`Self::log_line`] the
/// warn line of DESIGN.md §4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incompatible {
    Version {
        cp: Version,
        dp: Version,
        problem: VersionProblem,
    },
    /// The config uses a plugin the DP does not have.
    PluginMissing { name: String, cp: Version },
    /// The DP has the plugin in another major.minor.
    PluginVersion {
        name: String,
        cp: Version,
        dp: Version,
    },
}

impl Incompatible {
    pub fn sync_status(&self) -> SyncStatus {
        match self {
            Incompatible::Version { .. } => SyncStatus::KongVersionIncompatible,
            Incompatible::PluginMissing { .. } => SyncStatus::PluginSetIncompatible,
            Incompatible::PluginVersion { .. } => SyncStatus::PluginVersionIncompatible,
        }
    }

    /// The detailed reason (Kong's wording where Kong has one).
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// The warn line of DESIGN.md §4, verbatim. Versions are shown as major.minor as in
    /// the design's example; when those are equal (a DP newer by patch) the full versions
    /// are shown, since "2.4 vs 2.4" would explain nothing.
    pub fn log_line(&self, hostname: &str, ip: IpAddr) -> String {
        let reason = match self {
            Incompatible::Version { cp, dp, .. } => {
                let (cp, dp) = if (cp.major, cp.minor) == (dp.major, dp.minor) {
                    (cp.to_string(), dp.to_string())
                } else {
                    (
                        format!("{}.{}", cp.major, cp.minor),
                        format!("{}.{}", dp.major, dp.minor),
                    )
                };
                format!("version mismatches, CP version: {cp} DP version: {dp}")
            }
            Incompatible::PluginMissing { .. } | Incompatible::PluginVersion { .. } => {
                "CP and DP does not have same set of plugins installed or their versions might differ"
                    .to_string()
            }
        };
        format!(
            "unable to send updated configuration to DP node with hostname: {hostname} ip: {ip} reason: {reason}"
        )
    }
}

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Incompatible::Version {
                cp,
                dp,
                problem: VersionProblem::OtherMajor,
            } => write!(
                f,
                "data plane version {dp} is incompatible with control plane version {cp} ({}.x.y are accepted)",
                cp.major
            ),
            Incompatible::Version {
                cp,
                dp,
                problem: VersionProblem::NewerThanCp,
            } => write!(
                f,
                "data plane version {dp} is incompatible with older control plane version {cp}"
            ),
            Incompatible::Version {
                cp,
                dp,
                problem: VersionProblem::TooOld,
            } => write!(
                f,
                "data plane version {dp} is incompatible with control plane version {cp} (at most {MAX_MINORS_BEHIND} minor versions older are accepted)"
            ),
            Incompatible::PluginMissing { name, cp } => {
                write!(f, "configured {name} plugin {cp} is missing from data plane")
            }
            Incompatible::PluginVersion { name, cp, dp } => write!(
                f,
                "configured data plane {name} plugin version {dp} is different to control plane plugin version {cp}"
            ),
        }
    }
}

impl std::error::Error for Incompatible {}

/// The version check at connection: same major; the DP's minor equal to the CP's or at
/// most [`MAX_MINORS_BEHIND`] below. A DP newer than the CP is refused, including by
/// patch within the same minor (CP x.4.2 accepts x.4.0–x.4.2, refuses x.4.3): a newer DP
/// may expect fixes the CP's config does not carry. Older minors are accepted at any
/// patch (x.3.8 under x.4.2). Within the same minor, pre-releases compare by semver
/// precedence (x.4.2-rc.1 < x.4.2); build metadata is ignored.
pub fn check_version(cp: &Version, dp: &Version) -> Result<(), Incompatible> {
    let refuse = |problem| {
        Err(Incompatible::Version {
            cp: cp.clone(),
            dp: dp.clone(),
            problem,
        })
    };
    if dp.major != cp.major {
        return refuse(VersionProblem::OtherMajor);
    }
    if dp.minor > cp.minor
        || (dp.minor == cp.minor && dp.cmp_precedence(cp) == std::cmp::Ordering::Greater)
    {
        return refuse(VersionProblem::NewerThanCp);
    }
    if cp.minor - dp.minor > MAX_MINORS_BEHIND {
        return refuse(VersionProblem::TooOld);
    }
    Ok(())
}

/// The plugin check at every push. `used`: the plugins the config uses, at the CP's
/// versions; `dp`: what the DP advertised. Each used plugin must be on the DP with the
/// same major.minor (patches may differ); unused and extra plugins do not matter. The
/// first failure in name order is reported, so the answer is deterministic.
pub fn check_plugins(
    used: &BTreeMap<String, Version>,
    dp: &BTreeMap<String, Version>,
) -> Result<(), Incompatible> {
    for (name, cp_v) in used {
        match dp.get(name) {
            None => {
                return Err(Incompatible::PluginMissing {
                    name: name.clone(),
                    cp: cp_v.clone(),
                })
            }
            Some(dp_v) if (dp_v.major, dp_v.minor) != (cp_v.major, cp_v.minor) => {
                return Err(Incompatible::PluginVersion {
                    name: name.clone(),
                    cp: cp_v.clone(),
                    dp: dp_v.clone(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Names of the plugins the config uses. Disabled instances count: Kong's check walks
/// every plugin entity regardless of `enabled`, and a DP must be able to represent the
/// instance so that enabling it later is one Event, not an incompatibility.
pub fn plugins_used(config: &ConfigState) -> BTreeSet<String> {
    config
        .iter_kind(EntityKind::Plugin)
        .filter_map(|e| match e {
            Entity::Plugin(p) => Some(p.name.clone()),
            _ => None,
        })
        .collect()
}

/// name → version of the given plugins (e.g. [`tidegate_model::plugins::bundled`]).
///
/// # Panics
/// On a version that is not semver: plugin versions are compile-time constants, and
/// `every_bundled_plugin_version_is_semver` tests the bundled ones.
pub fn plugin_versions(installed: &[PluginInfo]) -> BTreeMap<String, Version> {
    installed
        .iter()
        .map(|p| {
            let v = Version::parse(p.version)
                .unwrap_or_else(|e| panic!("plugin {} version {:?}: {e}", p.name, p.version));
            (p.name.to_string(), v)
        })
        .collect()
}

/// The `used` argument of [`check_plugins`]: the used plugins at the CP's versions. A
/// used plugin the CP does not have is left out: the CP's schema validation refuses such
/// a config, so it cannot occur.
pub fn cp_plugin_versions(
    used: &BTreeSet<String>,
    cp_plugins: &BTreeMap<String, Version>,
) -> BTreeMap<String, Version> {
    used.iter()
        .filter_map(|n| cp_plugins.get(n).map(|v| (n.clone(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests;
