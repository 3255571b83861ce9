//! # tidegate-sim: deterministic simulation of CPs and DPs
//!
//! Runs the real control-plane and data-plane code — openraft with the real state
//! machine, the Raft link over tonic with mutual TLS, the real write path
//! (`RaftNode::write`, followers forwarding to the leader), the real DP sync service and
//! the real DP sync client — on turmoil's simulated network and clock, with simulated
//! disks that lose un-synced writes on a crash. One seed decides everything: the
//! topology (3–5 CPs, sometimes a spare CP outside the group, 5–7 DPs of various versions
//! and plugin sets), the fault schedule, the membership changes and the admin workload; the same seed replays the same history bit for bit (the
//! trace hash says so).
//!
//! ```text
//!  seed ─▶ Scenario ─▶ turmoil hosts cp1..cpN (Raft, sync service)   dp1..dpM (DpSync)
//!              │            ▲ admin attempts (Backend::write)           │ config watch
//!              │            │                                           ▼
//!              ├─▶ Runner: faults + clients between steps ─▶ checkers (src/invariants/)
//!              └─▶ operator: membership calls (Backend::add_member / remove_member)
//! ```
//!
//! ## Run
//!
//! ```text
//! cargo run -p tidegate-sim --release -- --seeds 0..1000     # a range, one line per seed
//! cargo run -p tidegate-sim --release -- --seed 42 --trace   # one seed, with its event trace
//! cargo run -p tidegate-sim --release -- --seeds 0..200 --planted forget-request-ids
//! ```
//!
//! Each seed of a range runs in a fresh child process, `--jobs` at a time (default: one
//! per CPU), and prints one line (`ok`/`FAIL`, its trace hash, topology, operations,
//! final config version, time to converge). A failing seed prints its violations and the
//! command that reproduces it; the exit status is 1 when any seed failed. `--fail-fast`
//! stops at the first failure.
//!
//! Why child processes: `--jobs` of them run in parallel, and one seed that panics or
//! aborts cannot take the others down. A seed replays bit for bit from a fresh process
//! (same trace hash in debug and release builds) and also after other seeds ran in the
//! same process (`--seed N --repeat 3` checks it). That needs one piece of process-wide
//! state reset before each run: tokio numbers tasks from one process-wide counter and a
//! runtime keeps its tasks in lists picked by `id % 4`, so the order in which a crashed
//! host's tasks are dropped — its connections closed, the messages that sends, the
//! latencies they draw — depended on how many tasks earlier seeds had spawned.
//! [`run_seed`] first brings the counter to the residue a fresh process starts at.
//!
//! **Long-run mode**: `--seeds 0..` (no end) runs seeds until interrupted, printing a
//! summary line every 100 seeds and every failure as it is found; start from another
//! point for fresh histories, e.g. `--seeds $(date +%s)..`.
//!
//! Measured on the 2-core dev machine: a seed is 40–90 s of simulated time, ~0.7 s of
//! wall time in release and ~1.8 s in the dev profile (dependencies optimised, see the
//! workspace Cargo.toml); 200 seeds take about 3 minutes in dev with `--jobs 2`, which is
//! what CI runs, reusing the suite's build.
//!
//! ## What happens in a seed
//!
//! 1. Boot: the CPs form a group; a leader is elected (≤ 10 s simulated).
//! 2. Chaos (25–40 s): admin clients send operations of every `Op` kind to random CPs
//!    (retrying with the same request id on failure, and sometimes re-sending after an
//!    answer as if it were lost); faults fire: splits, an isolated leader, one-way
//!    partitions, link flaps, slow links, lossy links, CP and DP crashes with restarts, a
//!    power loss of every CP, DPs cut off from every CP; and the operator changes the
//!    group's membership.
//! 3. Heal: every fault ends, the operator wants every CP (the spare too) in the group;
//!    in-flight operations drain.
//! 4. Convergence: within [`sim::CONVERGENCE_BOUND`] the group is back to its full
//!    membership (one uniform config), the CPs agree, every compatible DP serves their
//!    config, every CP lists every DP truthfully.
//! 5. Final checks over the admin history and the committed log.
//!
//! ### Membership changes
//!
//! They go through the code path the binary uses, the calls behind
//! `/clustering/control-planes` (`Backend::add_member`: `add_learner` then
//! `change_membership(AddVoterIds)`; `Backend::remove_member`:
//! `change_membership(RemoveVoters)`), called on the CP host like an admin request. A
//! `RemoveCp` fault takes a CP out of the group for a while and puts it back; the CP
//! keeps running meanwhile (its DPs and admin clients still reach it, it campaigns in
//! vain). A seed with at most 4 CPs may have a spare, `cp{N+1}`, that boots with an empty
//! disk, is left out of `raft_peers` so it never initializes a group, and joins by a
//! `JoinSpare` fault (some DPs list its address, and admin clients reach it before it
//! joined). The operator is goal-driven: it asks the current leader for the next change
//! towards the membership it wants, one call at a time, and looks again after an answer,
//! a refusal, a lost call or a timeout. openraft leaves a group in a joint config when
//! the leader loses leadership between the two steps of `change_membership`; the cluster
//! API does not show it (it lists both configs' voters as one set), and only another
//! change ends it, so the operator re-sends the call that made it.
//!
//! ### Lossy links
//!
//! A `Lossy` fault sets turmoil's per-link fail rate for a while: each message on that
//! link is lost with that probability (with everything in flight on it). turmoil's TCP
//! never retransmits, so one lost segment holds back everything after it on that
//! connection, in that direction, for good — the connection is black-holed, not reset,
//! as when a middlebox loses a flow's state — while new connections work
//! (`tests/loss_model.rs` pins this down). Only HTTP/2 keepalives and RPC timeouts notice;
//! the loss that real TCP repairs by retransmission shows as latency, which the `Slow`
//! fault covers. turmoil's repair of a lost message heals both directions of a link and
//! would lift a one-way partition on it, so a link carries no loss while it is blocked.
//!
//! The membership changes, lossy links and the spare are drawn from a random stream of
//! their own: a seed that draws none of them runs the history it ran before they existed,
//! and `--without-extras` runs any seed that way (the regression seeds recorded before
//! them do).
//!
//! The invariants, one file each under `src/invariants/`: `acked_writes`,
//! `linearizable` (the committed log replayed through a fresh state machine explains
//! every answer and respects real time; exactly-once under retries), `dp_version`
//! (never backwards, never a state the cluster did not have), `convergence`,
//! `incompatible`, `cut_off`, `cut_off_routes` (a cut-off DP still routes a request for
//! each route it had, through Kong's router built from the config it holds, to the same
//! route), `data_planes`; plus `no_crash` and `liveness`.
//!
//! ## Planted bugs
//!
//! [`Planted`] arms bugs that production cannot turn on: the switches in `tidegate-raft`
//! (its in-memory store), `tidegate-state`, `tidegate-cp` and `tidegate-dp` exist only with
//! their `planted` feature (which only this crate enables) and are thread-locals that
//! start off. `tests/seeds.rs` proves each is caught within a few hundred seeds.
//!
//! ## What is simulated differently from production
//!
//! - Admin requests call `Backend::write` on the CP directly, and the operator's
//!   membership calls `Backend::add_member` / `remove_member` (the HTTP layer is tested
//!   in `crates/cp`); the client → CP hop has no network faults of its own, but a CP
//!   crash loses the request and a slow answer times the client out.
//! - The operator sees the group as the leader's metrics show it, as
//!   `GET /clustering/control-planes` on the leader would, minus the joint state.
//! - The DP sync runs without TLS (the Raft link runs mutual TLS, with Ed25519
//!   certificates made once per process).
//! - Stores: CPs run `tidegate_raft::MemStorage::with_fsync` (the in-memory store, with
//!   an fsync delay and crash loss) under the real state machine; the sled store is tested
//!   by openraft's suite.

pub mod cp;
pub mod dp;
pub mod history;
pub mod invariants;
pub mod net;
pub mod scenario;
pub mod sim;
pub mod store;
pub mod tls;
pub mod workload;

pub use invariants::Violation;
pub use sim::{SeedReport, Stats};

/// Bugs to plant, for proving that the simulator catches them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Planted {
    /// The CP log store acknowledges an append before it is durable.
    pub early_ack: bool,
    /// The state machine forgets request-id de-duplication.
    pub forget_request_ids: bool,
    /// The CP pushes config to DPs without the plugin check.
    pub skip_plugin_check: bool,
    /// The DP serves a config before its cache store is durable.
    pub publish_before_store: bool,
}

impl Planted {
    pub const NAMES: [&'static str; 4] = [
        "early-ack",
        "forget-request-ids",
        "skip-plugin-check",
        "publish-before-store",
    ];

    pub fn parse(names: &str) -> Result<Planted, String> {
        let mut p = Planted::default();
        for n in names.split(',').filter(|n| !n.is_empty()) {
            match n {
                "early-ack" => p.early_ack = true,
                "forget-request-ids" => p.forget_request_ids = true,
                "skip-plugin-check" => p.skip_plugin_check = true,
                "publish-before-store" => p.publish_before_store = true,
                other => {
                    return Err(format!(
                        "unknown planted bug {other:?}; known: {}",
                        Planted::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(p)
    }

    pub fn names(&self) -> Vec<&'static str> {
        let on = [
            self.early_ack,
            self.forget_request_ids,
            self.skip_plugin_check,
            self.publish_before_store,
        ];
        Planted::NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect()
    }

    fn arm(&self) {
        tidegate_raft::planted::set_early_ack(self.early_ack);
        tidegate_state::planted::set_forget_request_ids(self.forget_request_ids);
        tidegate_cp::planted::set_skip_plugin_check(self.skip_plugin_check);
        tidegate_dp::planted::set_publish_before_store(self.publish_before_store);
    }
}

/// Disarms the state machine's planted bug while the checker replays the log (the
/// reference must be the correct machine), re-arming it after.
pub(crate) struct Disarm {
    forget_request_ids: bool,
}

impl Disarm {
    pub(crate) fn state() -> Disarm {
        let was = ARMED.with(|a| a.get().forget_request_ids);
        tidegate_state::planted::set_forget_request_ids(false);
        Disarm {
            forget_request_ids: was,
        }
    }
}

impl Drop for Disarm {
    fn drop(&mut self) {
        tidegate_state::planted::set_forget_request_ids(self.forget_request_ids);
    }
}

thread_local! {
    static ARMED: std::cell::Cell<Planted> = const { std::cell::Cell::new(Planted {
        early_ack: false,
        forget_request_ids: false,
        skip_plugin_check: false,
        publish_before_store: false,
    }) };
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub planted: Planted,
    /// Keep the event trace lines in the report.
    pub keep_trace: bool,
    /// Leave out the membership changes, lossy links and spare CP, replaying the
    /// scenario a seed had before they existed (regression seeds recorded then).
    pub without_extras: bool,
}

/// Runs one seed on this thread. Deterministic: the same seed and options give the same
/// report and trace hash.
pub fn run_seed(seed: u64, options: &Options) -> (SeedReport, Option<Vec<String>>) {
    // Made before the world: keys come from the OS, once per process.
    let _ = tls::raft_tls();
    align_task_ids();
    tidegate_raft::seed_thread_rng(seed);
    ARMED.with(|a| a.set(options.planted));
    options.planted.arm();
    let runner = sim::Runner::new(seed, !options.without_extras, options.keep_trace);
    let (report, lines) = runner.run_with_trace();
    Planted::default().arm();
    ARMED.with(|a| a.set(Planted::default()));
    (report, lines)
}

/// Tasks per shard cycle of tokio's task lists: a current-thread runtime keeps its tasks
/// in 4 lists picked by `task id % 4`, and a larger power of two covers more shards too.
const TASK_ID_CYCLE: u64 = 64;

/// Makes the next tokio task id ≡ 1 (mod [`TASK_ID_CYCLE`]), as in a fresh process.
///
/// tokio numbers tasks from one process-wide counter, and a runtime keeps its tasks in
/// lists chosen by `id % 4`; dropping a runtime (a crash or a restart of a simulated
/// host) shuts its tasks down list by list. So the order in which a crashed host's
/// connections close — and with it which simulated messages are sent first and which
/// random latency each draws — depends on the ids, and thereby on how many tasks earlier
/// seeds in this process spawned. From the same residue, a seed replays bit for bit.
fn align_task_ids() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a bare current-thread runtime builds");
    rt.block_on(async {
        loop {
            let probe = tokio::spawn(async {});
            let id: u64 = probe
                .id()
                .to_string()
                .parse()
                .expect("tokio task ids display as integers");
            let _ = probe.await;
            if id.is_multiple_of(TASK_ID_CYCLE) {
                return;
            }
        }
    });
}

/// The command that reproduces a seed.
pub fn repro_command(seed: u64, options: &Options) -> String {
    let planted = &options.planted;
    // The same profile as this run, so the command rebuilds nothing.
    let profile = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    let mut cmd = format!("cargo run -p tidegate-sim{profile} -- --seed {seed} --trace");
    let names = planted.names();
    if !names.is_empty() {
        cmd.push_str(&format!(" --planted {}", names.join(",")));
    }
    if options.without_extras {
        cmd.push_str(" --without-extras");
    }
    cmd
}
