//! Everything a seed decides before the run: the topology, the DPs' versions and
//! plugins, the fault schedule and the workload's shape.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The version every simulated CP runs.
pub const CP_VERSION: &str = "3.4.2";

/// How a DP relates to the CPs, decided by the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpKind {
    /// Same version, every bundled plugin.
    Compatible,
    /// An older minor the CP accepts (3.2 / 3.3), every plugin.
    OlderAccepted,
    /// A version the CP refuses at Hello (newer, other major, too old).
    VersionRejected,
    /// Lacks one bundled plugin.
    MissingPlugin(String),
    /// Has one plugin at another major.minor.
    PluginVersion(String),
}

#[derive(Debug, Clone)]
pub struct DpSpec {
    pub name: String,
    pub version: String,
    pub kind: DpKind,
    /// name → version, as announced.
    pub plugins: BTreeMap<String, String>,
    /// The order it tries the CPs in.
    pub addresses: Vec<String>,
}

/// A fault, started at some time and (for most) undone after `hold`.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Splits every host into two sides.
    Split {
        side_a: Vec<String>,
        hold: Duration,
    },
    /// Cuts the current leader off from the other CPs (DPs and its clients still reach
    /// it, and it still thinks it leads for a while).
    IsolateLeader {
        hold: Duration,
    },
    /// Drops everything from `from` to `to`, while `to` → `from` flows.
    OneWay {
        from: String,
        to: String,
        hold: Duration,
    },
    /// A burst of lost messages on one link: the link is down briefly.
    LinkFlap {
        a: String,
        b: String,
        hold: Duration,
    },
    /// Raises the max message latency everywhere.
    Slow {
        max_latency: Duration,
        hold: Duration,
    },
    CrashCp {
        cp: usize,
        hold: Duration,
    },
    /// Every CP loses power at once.
    PowerLoss {
        hold: Duration,
    },
    CrashDp {
        dp: usize,
        hold: Duration,
    },
    /// A DP loses every CP.
    CutOffDp {
        dp: usize,
        hold: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub cps: usize,
    pub dps: Vec<DpSpec>,
    /// Per CP: fsync latency of its simulated disk.
    pub cp_fsync: Vec<Duration>,
    /// Per CP: clock skew in seconds (what its "wall clock" adds to simulated time).
    pub cp_skew: Vec<i64>,
    pub dp_fsync: Vec<Duration>,
    /// Faults by start time (after boot).
    pub faults: Vec<(Duration, Fault)>,
    /// How long faults and new admin operations go on.
    pub chaos: Duration,
    /// Concurrent admin clients.
    pub clients: usize,
    /// Mean pause between one client's operations.
    pub think: Duration,
    pub base_latency: Duration,
}

pub fn cp_name(i: usize) -> String {
    format!("cp{}", i + 1)
}

pub fn dp_name(i: usize) -> String {
    format!("dp{}", i + 1)
}

/// The plugins a CP has: every bundled one, at its version.
pub fn cp_plugins() -> BTreeMap<String, String> {
    tidegate_model::plugins::bundled()
        .into_iter()
        .map(|p| (p.name.to_string(), p.version.to_string()))
        .collect()
}

/// Plugins the workload uses (a DP lacking one of them matters).
pub const WORKLOAD_PLUGINS: [&str; 5] = [
    "key-auth",
    "cors",
    "correlation-id",
    "rate-limiting",
    "request-size-limiting",
];

impl Scenario {
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5ce7_a210);
        let cps = rng.gen_range(3..=5);
        let ndp = rng.gen_range(5..=7);
        let all_plugins = cp_plugins();
        let mut dps = Vec::new();
        for i in 0..ndp {
            // The first three are plain compatible DPs, so every seed has convergence
            // to check; the others draw a kind.
            let kind = if i < 3 {
                DpKind::Compatible
            } else {
                match rng.gen_range(0..6) {
                    0 => DpKind::Compatible,
                    1 => DpKind::OlderAccepted,
                    2 => DpKind::VersionRejected,
                    3 | 4 => DpKind::MissingPlugin(
                        (*WORKLOAD_PLUGINS.choose(&mut rng).expect("non-empty")).to_string(),
                    ),
                    _ => DpKind::PluginVersion(
                        (*WORKLOAD_PLUGINS.choose(&mut rng).expect("non-empty")).to_string(),
                    ),
                }
            };
            let version = match &kind {
                DpKind::OlderAccepted => ["3.2.7", "3.3.0", "3.4.0"]
                    .choose(&mut rng)
                    .expect("non-empty")
                    .to_string(),
                DpKind::VersionRejected => ["3.5.0", "2.4.2", "3.1.9", "3.4.3"]
                    .choose(&mut rng)
                    .expect("non-empty")
                    .to_string(),
                _ => CP_VERSION.to_string(),
            };
            let mut plugins = all_plugins.clone();
            match &kind {
                DpKind::MissingPlugin(p) => {
                    plugins.remove(p);
                }
                DpKind::PluginVersion(p) => {
                    plugins.insert(p.clone(), "3.8.1".to_string());
                }
                _ => {}
            }
            // A patch-level difference is compatible: some DPs carry one.
            let patch_level = rng.gen_bool(0.3);
            if patch_level
                && !matches!(&kind, DpKind::MissingPlugin(p) | DpKind::PluginVersion(p) if p == "cors")
            {
                plugins.insert("cors".into(), "3.9.7".into());
            }
            let mut addresses: Vec<String> =
                (0..cps).map(|c| format!("{}:8005", cp_name(c))).collect();
            addresses.shuffle(&mut rng);
            dps.push(DpSpec {
                name: dp_name(i),
                version,
                kind,
                plugins,
                addresses,
            });
        }
        let chaos = Duration::from_secs(rng.gen_range(25..=40));
        let mut faults = Vec::new();
        let mut t = Duration::from_millis(rng.gen_range(500..3000));
        let hosts: Vec<String> = (0..cps).map(cp_name).chain((0..ndp).map(dp_name)).collect();
        while t < chaos {
            let hold = Duration::from_millis(rng.gen_range(300..8000));
            let fault = match rng.gen_range(0..100) {
                0..=11 => {
                    let side_a: Vec<String> = hosts
                        .iter()
                        .filter(|_| rng.gen_bool(0.5))
                        .cloned()
                        .collect();
                    Fault::Split { side_a, hold }
                }
                12..=23 => Fault::IsolateLeader { hold },
                24..=33 => {
                    let a = rng.gen_range(0..cps);
                    let b = (a + rng.gen_range(1..cps)) % cps;
                    let (from, to) = if rng.gen_bool(0.7) {
                        (cp_name(a), cp_name(b))
                    } else {
                        let d = rng.gen_range(0..ndp);
                        if rng.gen_bool(0.5) {
                            (cp_name(a), dp_name(d))
                        } else {
                            (dp_name(d), cp_name(a))
                        }
                    };
                    Fault::OneWay { from, to, hold }
                }
                34..=43 => {
                    let a = rng.gen_range(0..hosts.len());
                    let b = (a + rng.gen_range(1..hosts.len())) % hosts.len();
                    Fault::LinkFlap {
                        a: hosts[a].clone(),
                        b: hosts[b].clone(),
                        hold: hold / 4,
                    }
                }
                44..=51 => Fault::Slow {
                    max_latency: Duration::from_millis(rng.gen_range(20..400)),
                    hold,
                },
                52..=69 => Fault::CrashCp {
                    cp: rng.gen_range(0..cps),
                    hold,
                },
                70..=73 => Fault::PowerLoss { hold: hold / 2 },
                74..=87 => Fault::CrashDp {
                    dp: rng.gen_range(0..ndp),
                    hold,
                },
                _ => Fault::CutOffDp {
                    dp: rng.gen_range(0..ndp),
                    hold: hold.max(Duration::from_secs(3)),
                },
            };
            faults.push((t, fault));
            t += Duration::from_millis(rng.gen_range(500..4000));
        }
        Scenario {
            seed,
            cps,
            cp_fsync: (0..cps)
                .map(|_| Duration::from_millis(rng.gen_range(1..6)))
                .collect(),
            cp_skew: (0..cps).map(|_| rng.gen_range(-2..=2)).collect(),
            dp_fsync: (0..ndp)
                .map(|_| Duration::from_millis(rng.gen_range(1..30)))
                .collect(),
            dps,
            faults,
            chaos,
            clients: rng.gen_range(2..=4),
            think: Duration::from_millis(rng.gen_range(100..600)),
            base_latency: Duration::from_millis(rng.gen_range(2..30)),
        }
    }
}
