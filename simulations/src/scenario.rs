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
    /// The operator removes a CP from the Raft group through the cluster API
    /// (`DELETE /clustering/control-planes/{id}`, i.e. `Backend::remove_member`) and adds
    /// it back after `hold` (`POST`, `Backend::add_member`). The CP keeps running
    /// meanwhile, as one an operator forgot to stop does.
    RemoveCp {
        cp: usize,
        hold: Duration,
    },
    /// The operator adds the spare CP (booted with an empty disk, outside the group) to
    /// the group.
    JoinSpare,
    /// Messages on the link between `a` and `b` are dropped at `rate` per message.
    /// turmoil's TCP does not retransmit: a dropped segment leaves a gap that holds back
    /// everything after it on that connection, so each loss silently black-holes one
    /// direction of a connection (as a lost conntrack or NAT entry does) while new
    /// connections work; only keepalives and timeouts notice. Loss that TCP repairs by
    /// retransmission shows as latency, which `Slow` covers.
    Lossy {
        a: String,
        b: String,
        rate: f64,
        hold: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    /// CPs in the initial Raft group (`cp1..`, node ids from 1).
    pub cps: usize,
    /// A spare CP, `cp{cps + 1}`, that boots outside the group and joins it by
    /// [`Fault::JoinSpare`]. Only with at most 4 CPs: the Raft certificate names `cp1..cp5`.
    pub spare: bool,
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
        Self::from_seed_with(seed, true)
    }

    /// `extras: false` leaves out what [`Extras`] adds: the scenario the seed had before
    /// membership changes, lossy links and the spare existed, for seeds recorded then.
    pub fn from_seed_with(seed: u64, extras: bool) -> Self {
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
        let mut cp_fsync: Vec<Duration> = (0..cps)
            .map(|_| Duration::from_millis(rng.gen_range(1..6)))
            .collect();
        let mut cp_skew: Vec<i64> = (0..cps).map(|_| rng.gen_range(-2..=2)).collect();
        let dp_fsync: Vec<Duration> = (0..ndp)
            .map(|_| Duration::from_millis(rng.gen_range(1..30)))
            .collect();
        let clients = rng.gen_range(2..=4);
        let think = Duration::from_millis(rng.gen_range(100..600));
        let base_latency = Duration::from_millis(rng.gen_range(2..30));
        let extras = if extras {
            Extras::draw(seed, cps, ndp, chaos)
        } else {
            Extras::none()
        };
        for (i, at) in &extras.spare_in_dp_lists {
            let list = &mut dps[*i].addresses;
            let at = (*at).min(list.len());
            list.insert(at, format!("{}:8005", cp_name(cps)));
        }
        faults.extend(extras.faults);
        // Stable: at one instant the older kinds fire first, as before the extras.
        faults.sort_by_key(|(t, _)| *t);
        if extras.spare {
            cp_fsync.push(extras.spare_fsync);
            cp_skew.push(extras.spare_skew);
        }
        Scenario {
            seed,
            cps,
            spare: extras.spare,
            cp_fsync,
            cp_skew,
            dp_fsync,
            dps,
            faults,
            chaos,
            clients,
            think,
            base_latency,
        }
    }

    /// Every CP host, the spare included.
    pub fn all_cps(&self) -> usize {
        self.cps + usize::from(self.spare)
    }
}

/// What a seed adds on top of the original draw: membership changes, lossy links and a
/// spare CP. Drawn from a stream of its own, so a seed that draws none of them runs the
/// same history (and trace hash) as before they existed.
struct Extras {
    spare: bool,
    spare_fsync: Duration,
    spare_skew: i64,
    /// (DP index, position): DPs that also know the spare's address.
    spare_in_dp_lists: Vec<(usize, usize)>,
    faults: Vec<(Duration, Fault)>,
}

impl Extras {
    fn none() -> Extras {
        Extras {
            spare: false,
            spare_fsync: Duration::ZERO,
            spare_skew: 0,
            spare_in_dp_lists: Vec::new(),
            faults: Vec::new(),
        }
    }

    fn draw(seed: u64, cps: usize, ndp: usize, chaos: Duration) -> Extras {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x3e3b_e125_0000);
        let chaos_ms = chaos.as_millis() as u64;
        let mut faults = Vec::new();
        let spare = cps < 5 && rng.gen_bool(0.35);
        let mut spare_in_dp_lists = Vec::new();
        if spare {
            for d in 0..ndp {
                if rng.gen_bool(0.3) {
                    spare_in_dp_lists.push((d, rng.gen_range(0..=cps)));
                }
            }
            faults.push((
                Duration::from_millis(rng.gen_range(1000..chaos_ms - 5000)),
                Fault::JoinSpare,
            ));
        }
        if rng.gen_bool(0.5) {
            for _ in 0..rng.gen_range(1..=2) {
                faults.push((
                    Duration::from_millis(rng.gen_range(500..chaos_ms - 3000)),
                    Fault::RemoveCp {
                        cp: rng.gen_range(0..cps),
                        hold: Duration::from_millis(rng.gen_range(1000..12_000)),
                    },
                ));
            }
        }
        if rng.gen_bool(0.5) {
            let hosts = cps + usize::from(spare);
            for _ in 0..rng.gen_range(1..=3) {
                let a = cp_name(rng.gen_range(0..hosts));
                let b = if rng.gen_bool(0.5) {
                    let mut b = cp_name(rng.gen_range(0..hosts));
                    while b == a {
                        b = cp_name(rng.gen_range(0..hosts));
                    }
                    b
                } else {
                    dp_name(rng.gen_range(0..ndp))
                };
                faults.push((
                    Duration::from_millis(rng.gen_range(500..chaos_ms - 2000)),
                    Fault::Lossy {
                        a,
                        b,
                        rate: rng.gen_range(0.002..0.05),
                        hold: Duration::from_millis(rng.gen_range(2000..10_000)),
                    },
                ));
            }
        }
        Extras {
            spare,
            spare_fsync: Duration::from_millis(rng.gen_range(1..6)),
            spare_skew: rng.gen_range(-2..=2),
            spare_in_dp_lists,
            faults,
        }
    }
}
