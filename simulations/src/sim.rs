//! The orchestrator: builds one seed's world, drives turmoil step by step, injects the
//! faults and the admin workload between steps, and runs the checkers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use openraft::ServerState;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::cp::{
    self, Attempt, AttemptResult, CpCtx, MemberCall, MemberChange, MemberResult, Request, EPOCH,
};
use crate::dp::{self, DpCtx};
use crate::history::{History, Operation};
use crate::invariants::{self, cut_off::CutOffs, Violation};
use crate::scenario::{cp_name, dp_name, DpKind, Fault, Scenario};
use crate::store::DpDisk;
use crate::workload;

/// Simulated time per step.
pub const TICK: Duration = Duration::from_millis(5);
/// How long the cluster may take to elect its first leader.
const BOOT: Duration = Duration::from_secs(10);
/// After every fault healed: how long until every connected compatible DP must hold the
/// CPs' config and every CP must list every DP with its true hash.
pub const CONVERGENCE_BOUND: Duration = Duration::from_secs(45);
/// How long in-flight admin operations may take to finish after healing.
const DRAIN: Duration = Duration::from_secs(20);
/// How often the running checkers look.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// A client gives up on an attempt it has no answer for after this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(12);
/// The operator gives up on a membership call it has no answer for after this long
/// (adding a learner waits for it to catch up, which a crashed node never does).
const MEMBER_CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the operator looks at the group when it has nothing in flight.
const OPERATOR_PAUSE: Duration = Duration::from_millis(500);
const MAX_ATTEMPTS: u32 = 8;

/// What one seed did and found.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub seed: u64,
    pub violations: Vec<Violation>,
    pub trace_hash: String,
    pub stats: Stats,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub cps: usize,
    pub dps: usize,
    pub faults: usize,
    pub operations: usize,
    pub acked: usize,
    pub open: usize,
    pub final_version: u64,
    pub sim_time: Duration,
    /// Time from healing until everything converged, if it did.
    pub converged_after: Option<Duration>,
}

enum Undo {
    Unblock(String, String),
    Latency,
    RestartCp(usize),
    RestartDp(usize),
    /// The operator wants this CP back in the group.
    Readd(usize),
    /// The end of a lossy period on a link.
    Lossless(String, String),
}

/// The operator of the CP group: it holds the membership it wants (every CP, minus the
/// one it took out, plus the spare once it joined) and, one call at a time, asks the
/// leader (as `GET /clustering/control-planes` names it) for the next change that
/// brings the group there. Goal-driven, so a call lost with a crashed CP, refused by a
/// deposed leader, or applied by a call that came back late is simply looked at again.
struct Operator {
    /// CP indexes it wants out of the group.
    out: BTreeSet<usize>,
    spare_in: bool,
    /// (call id, CP index, deadline).
    in_flight: Option<(u64, usize, Duration)>,
    next_call: u64,
    wake: Duration,
}

struct Client {
    /// Index into the history of the operation it works on.
    current: Option<usize>,
    in_flight: Option<u64>,
    attempts: u32,
    /// When to act next (new operation or retry).
    wake: Duration,
    /// After an answer, send the same request id once more (a lost response).
    duplicate: bool,
}

struct InFlight {
    client: usize,
    op: usize,
    cp: usize,
    deadline: Duration,
}

/// A line-oriented event trace whose hash identifies a run.
pub struct Trace {
    hasher: Sha256,
    pub lines: Option<Vec<String>>,
}

impl Trace {
    fn line(&mut self, at: Duration, text: String) {
        let line = format!("{:>9.3} {text}", at.as_secs_f64());
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        if let Some(lines) = &mut self.lines {
            lines.push(line);
        }
    }
}

pub struct Runner<'a> {
    sim: turmoil::Sim<'a>,
    pub sc: Scenario,
    pub cps: Vec<Arc<CpCtx>>,
    pub dps: Vec<Arc<DpCtx>>,
    rng: SmallRng,
    pub history: History,
    clients: Vec<Client>,
    next_attempt: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// Directed blocks with a count, so overlapping faults undo correctly.
    blocked: BTreeMap<(String, String), u32>,
    down: BTreeMap<String, u32>,
    slow: u32,
    undo: Vec<(Duration, Undo)>,
    next_fault: usize,
    accepting: bool,
    pub trace: Trace,
    pub violations: Vec<Violation>,
    served_seen: Vec<usize>,
    cut_offs: CutOffs,
    next_check: Duration,
    raft_views: Vec<Option<(String, u64, Option<u64>)>>,
    operator: Operator,
    /// Links with message loss: (count of overlapping faults, rate), by name pair in
    /// order. A pair stays here (count 0) once it was lossy, to know its link has a rate.
    lossy: BTreeMap<(String, String), (u32, f64)>,
    cut_off_routes: invariants::cut_off_routes::Probes,
    /// A link was blocked or unblocked, or a host went down or came up, since the DPs'
    /// reachability was last looked at.
    topology_changed: bool,
    /// Per DP: it was not cut off (it could reach a CP, or it was down) at some moment
    /// since the last check. Checks run every `CHECK_EVERY`, and a partition may heal and
    /// another begin between two of them; the DP may have synced in that gap, so its
    /// cut-off window ends there.
    reached: Vec<bool>,
}

impl<'a> Runner<'a> {
    pub fn new(seed: u64, extras: bool, keep_trace: bool) -> Self {
        let sc = Scenario::from_seed_with(seed, extras);
        let sim = turmoil::Builder::new()
            .rng_seed(seed)
            .simulation_duration(Duration::from_secs(24 * 3600))
            .tick_duration(TICK)
            .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(sc.base_latency)
            .tcp_capacity(1 << 16)
            .enable_random_order()
            .build();
        let cps: Vec<Arc<CpCtx>> = (0..sc.all_cps())
            .map(|i| {
                Arc::new(CpCtx {
                    index: i,
                    node_id: i as u64 + 1,
                    cps: sc.cps,
                    seed,
                    skew: sc.cp_skew[i],
                    disk: tidegate_raft::MemStorage::with_fsync(sc.cp_fsync[i]),
                    incarnation: Mutex::new(0),
                    inbox: Mutex::new(None),
                    outbox: Mutex::new(Vec::new()),
                    member_outbox: Mutex::new(Vec::new()),
                    raft: Mutex::new(None),
                    reader: Mutex::new(None),
                    failures: Mutex::new(Vec::new()),
                })
            })
            .collect();
        let dps: Vec<Arc<DpCtx>> = sc
            .dps
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                Arc::new(DpCtx {
                    index: i,
                    seed,
                    spec: spec.clone(),
                    node_id: Uuid::from_u128(0xd9_0000_0000 + ((seed as u128) << 16) + i as u128),
                    disk: DpDisk::new(sc.dp_fsync[i]),
                    incarnation: Mutex::new(0),
                    served: Mutex::new(Vec::new()),
                    config: Mutex::new(None),
                    status: Mutex::new(None),
                })
            })
            .collect();
        let mut runner = Runner {
            sim,
            rng: SmallRng::seed_from_u64(seed ^ 0x00ad_0017),
            history: History::default(),
            clients: (0..sc.clients)
                .map(|_| Client {
                    current: None,
                    in_flight: None,
                    attempts: 0,
                    wake: BOOT,
                    duplicate: false,
                })
                .collect(),
            next_attempt: 1,
            in_flight: BTreeMap::new(),
            blocked: BTreeMap::new(),
            down: BTreeMap::new(),
            slow: 0,
            undo: Vec::new(),
            next_fault: 0,
            accepting: true,
            trace: Trace {
                hasher: Sha256::new(),
                lines: keep_trace.then(Vec::new),
            },
            violations: Vec::new(),
            served_seen: vec![0; dps.len()],
            cut_offs: CutOffs::new(dps.len()),
            topology_changed: false,
            reached: vec![false; dps.len()],
            next_check: Duration::ZERO,
            raft_views: vec![None; sc.all_cps()],
            operator: Operator {
                out: BTreeSet::new(),
                spare_in: false,
                in_flight: None,
                next_call: 1,
                wake: BOOT,
            },
            lossy: BTreeMap::new(),
            cut_off_routes: invariants::cut_off_routes::Probes::new(dps.len()),
            sc,
            cps,
            dps,
        };
        for c in runner.cps.clone() {
            runner
                .sim
                .host(cp_name(c.index), move || cp::run(c.clone()));
        }
        for d in runner.dps.clone() {
            runner
                .sim
                .host(dp_name(d.index), move || dp::run(d.clone()));
        }
        runner
    }

    pub fn now(&self) -> Duration {
        self.sim.elapsed()
    }

    fn note(&mut self, text: String) {
        let at = self.now();
        self.trace.line(at, text);
    }

    fn violation(&mut self, invariant: &'static str, detail: String) {
        let at = self.now();
        self.note(format!("VIOLATION {invariant}: {detail}"));
        self.violations.push(Violation {
            invariant,
            at,
            detail,
        });
    }

    /// One step of the world plus everything the orchestrator does between steps.
    fn step(&mut self) -> bool {
        if let Err(e) = self.sim.step() {
            self.violation("no_crash", format!("a host failed: {e}"));
            return false;
        }
        let now = self.now();
        self.collect_results(now);
        self.collect_member_results(now);
        self.fire_undos(now);
        if self.accepting {
            self.fire_faults(now);
        }
        self.note_reachability();
        self.drive_clients(now);
        self.drive_operator(now);
        if now >= self.next_check {
            self.next_check = now + CHECK_EVERY;
            self.running_checks(now);
        }
        for c in &self.cps {
            let failures = std::mem::take(&mut *c.failures.lock().expect("lock"));
            for f in failures {
                self.violations.push(Violation {
                    invariant: "no_crash",
                    at: now,
                    detail: f,
                });
            }
        }
        true
    }

    fn advance_until(&mut self, until: Duration) -> bool {
        while self.now() < until {
            if !self.step() {
                return false;
            }
        }
        true
    }

    // === faults ===

    fn is_down(&self, host: &str) -> bool {
        self.down.get(host).copied().unwrap_or(0) > 0
    }

    fn block(&mut self, from: &str, to: &str) {
        let n = self
            .blocked
            .entry((from.to_string(), to.to_string()))
            .or_insert(0);
        *n += 1;
        if *n == 1 {
            self.topology_changed = true;
            self.sim.partition_oneway(from, to);
            self.sync_loss(from, to);
        }
    }

    fn unblock(&mut self, from: &str, to: &str) {
        let key = (from.to_string(), to.to_string());
        if let Some(n) = self.blocked.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.topology_changed = true;
                self.blocked.remove(&key);
                self.sim.repair_oneway(from, to);
                self.sync_loss(from, to);
            }
        }
    }

    pub fn is_blocked(&self, from: &str, to: &str) -> bool {
        self.blocked
            .contains_key(&(from.to_string(), to.to_string()))
    }

    fn link_key(a: &str, b: &str) -> (String, String) {
        if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        }
    }

    /// Gives the link between `a` and `b` the loss rate its faults want, none while it is
    /// blocked either way: turmoil's random loss marks the whole link failed and its
    /// repair heals both directions, which would silently lift a one-way block. Whenever
    /// the rate drops to zero, a failed state left behind is repaired and the blocks put
    /// back, for the same reason.
    fn sync_loss(&mut self, a: &str, b: &str) {
        let key = Self::link_key(a, b);
        let Some((count, rate)) = self.lossy.get(&key).copied() else {
            return;
        };
        let blocked = self.is_blocked(a, b) || self.is_blocked(b, a);
        let rate = if count > 0 && !blocked { rate } else { 0.0 };
        self.sim.set_link_fail_rate(a, b, rate);
        if rate == 0.0 {
            self.sim.repair(a, b);
            for (from, to) in [(a, b), (b, a)] {
                if self.is_blocked(from, to) {
                    self.sim.partition_oneway(from, to);
                }
            }
        }
    }

    fn block_both(&mut self, a: &str, b: &str, until: Duration) {
        self.block(a, b);
        self.block(b, a);
        self.undo
            .push((until, Undo::Unblock(a.to_string(), b.to_string())));
        self.undo
            .push((until, Undo::Unblock(b.to_string(), a.to_string())));
    }

    fn crash(&mut self, host: &str) {
        let n = self.down.entry(host.to_string()).or_insert(0);
        *n += 1;
        if *n > 1 {
            return;
        }
        self.topology_changed = true;
        self.sim.crash(host);
        if let Some(c) = self.cps.iter().find(|c| cp_name(c.index) == host) {
            c.crashed();
            // Attempts in flight on it are lost with it.
            let lost: Vec<u64> = self
                .in_flight
                .iter()
                .filter(|(_, f)| f.cp == c.index)
                .map(|(id, _)| *id)
                .collect();
            let now = self.now();
            let index = c.index;
            for id in lost {
                self.attempt_failed(id, now, "the control plane crashed".into());
            }
            if let Some((call, _, _)) = self.operator.in_flight.filter(|(_, cp, _)| *cp == index) {
                self.note(format!("operator call {call}: lost with the crashed CP"));
                self.operator.in_flight = None;
            }
        }
        if let Some(d) = self.dps.iter().find(|d| dp_name(d.index) == host) {
            d.crashed();
        }
    }

    fn restart(&mut self, host: &str) {
        if let Some(n) = self.down.get_mut(host) {
            *n -= 1;
            if *n == 0 {
                self.topology_changed = true;
                self.down.remove(host);
                self.sim.bounce(host);
            }
        }
    }

    /// Whether DP `i` is running and can reach no CP: each is down or blocked either way.
    fn is_cut_off(&self, i: usize) -> bool {
        let dp = dp_name(i);
        !self.is_down(&dp)
            && (0..self.cps.len()).all(|c| {
                let cp = cp_name(c);
                self.is_down(&cp) || self.is_blocked(&cp, &dp) || self.is_blocked(&dp, &cp)
            })
    }

    /// After faults began or ended: marks the DPs that can reach a CP now (see
    /// `reached`).
    fn note_reachability(&mut self) {
        if !std::mem::take(&mut self.topology_changed) {
            return;
        }
        for i in 0..self.dps.len() {
            if !self.is_cut_off(i) {
                self.reached[i] = true;
            }
        }
    }

    fn current_leader(&self) -> Option<usize> {
        self.cps
            .iter()
            .filter(|c| !self.is_down(&cp_name(c.index)))
            .filter_map(|c| {
                let raft = c.raft()?;
                let m = raft.metrics().borrow().clone();
                (m.state == ServerState::Leader).then_some((m.current_term, c.index))
            })
            .max()
            .map(|(_, i)| i)
    }

    fn fire_faults(&mut self, now: Duration) {
        let boot = BOOT;
        while let Some((at, fault)) = self.sc.faults.get(self.next_fault).cloned() {
            if boot + at > now {
                return;
            }
            self.next_fault += 1;
            self.inject(now, fault);
        }
    }

    fn inject(&mut self, now: Duration, fault: Fault) {
        let cps: Vec<String> = (0..self.cps.len()).map(cp_name).collect();
        match fault {
            Fault::Split { side_a, hold } => {
                self.note(format!("fault split {side_a:?} for {hold:?}"));
                let all: Vec<String> = cps
                    .iter()
                    .cloned()
                    .chain((0..self.dps.len()).map(dp_name))
                    .collect();
                for a in &side_a {
                    for b in all.iter().filter(|h| !side_a.contains(h)) {
                        self.block_both(a, b, now + hold);
                    }
                }
            }
            Fault::IsolateLeader { hold } => {
                let Some(l) = self.current_leader() else {
                    self.note("fault isolate-leader: no leader now".into());
                    return;
                };
                self.note(format!("fault isolate leader {} for {hold:?}", cp_name(l)));
                for other in cps.iter().filter(|c| **c != cp_name(l)) {
                    self.block_both(&cp_name(l), other, now + hold);
                }
            }
            Fault::OneWay { from, to, hold } => {
                self.note(format!("fault one-way {from} -/-> {to} for {hold:?}"));
                self.block(&from, &to);
                self.undo.push((now + hold, Undo::Unblock(from, to)));
            }
            Fault::LinkFlap { a, b, hold } => {
                self.note(format!("fault link {a} <-/-> {b} for {hold:?}"));
                self.block_both(&a, &b, now + hold);
            }
            Fault::Slow { max_latency, hold } => {
                self.note(format!("fault slow network {max_latency:?} for {hold:?}"));
                self.slow += 1;
                self.sim.set_max_message_latency(max_latency);
                self.undo.push((now + hold, Undo::Latency));
            }
            Fault::CrashCp { cp, hold } => {
                self.note(format!("fault crash {} for {hold:?}", cp_name(cp)));
                self.crash(&cp_name(cp));
                self.undo.push((now + hold, Undo::RestartCp(cp)));
            }
            Fault::PowerLoss { hold } => {
                self.note(format!("fault power loss of every CP for {hold:?}"));
                for cp in 0..self.cps.len() {
                    self.crash(&cp_name(cp));
                    self.undo.push((now + hold, Undo::RestartCp(cp)));
                }
            }
            Fault::CrashDp { dp, hold } => {
                self.note(format!("fault crash {} for {hold:?}", dp_name(dp)));
                self.crash(&dp_name(dp));
                self.undo.push((now + hold, Undo::RestartDp(dp)));
            }
            Fault::CutOffDp { dp, hold } => {
                self.note(format!(
                    "fault cut {} off every CP for {hold:?}",
                    dp_name(dp)
                ));
                for c in &cps {
                    self.block_both(&dp_name(dp), c, now + hold);
                }
            }
            Fault::RemoveCp { cp, hold } => {
                if let Some(other) = self.operator.out.first() {
                    self.note(format!(
                        "fault remove {} from the group: skipped, {} is out",
                        cp_name(cp),
                        cp_name(*other)
                    ));
                    return;
                }
                self.note(format!(
                    "fault remove {} from the group for {hold:?}",
                    cp_name(cp)
                ));
                self.operator.out.insert(cp);
                self.undo.push((now + hold, Undo::Readd(cp)));
            }
            Fault::JoinSpare => {
                self.note(format!(
                    "fault join the spare {} to the group",
                    cp_name(self.sc.cps)
                ));
                self.operator.spare_in = true;
            }
            Fault::Lossy { a, b, rate, hold } => {
                self.note(format!(
                    "fault lossy link {a} <-> {b} at {rate:.3} per message for {hold:?}"
                ));
                let entry = self
                    .lossy
                    .entry(Self::link_key(&a, &b))
                    .or_insert((0, rate));
                entry.0 += 1;
                entry.1 = rate;
                self.sync_loss(&a, &b);
                self.undo.push((now + hold, Undo::Lossless(a, b)));
            }
        }
    }

    fn apply_undo(&mut self, u: Undo) {
        match u {
            Undo::Unblock(a, b) => self.unblock(&a, &b),
            Undo::Latency => {
                self.slow -= 1;
                if self.slow == 0 {
                    self.sim.set_max_message_latency(self.sc.base_latency);
                }
            }
            Undo::RestartCp(i) => {
                self.note(format!("restart {}", cp_name(i)));
                self.restart(&cp_name(i));
            }
            Undo::RestartDp(i) => {
                self.note(format!("restart {}", dp_name(i)));
                self.restart(&dp_name(i));
            }
            Undo::Readd(i) => {
                self.note(format!("the operator wants {} back", cp_name(i)));
                self.operator.out.remove(&i);
            }
            Undo::Lossless(a, b) => {
                if let Some(entry) = self.lossy.get_mut(&Self::link_key(&a, &b)) {
                    entry.0 -= 1;
                }
                self.sync_loss(&a, &b);
            }
        }
    }

    fn fire_undos(&mut self, now: Duration) {
        if !self.undo.iter().any(|(t, _)| *t <= now) {
            return;
        }
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.undo)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.undo = rest;
        for (_, u) in due {
            self.apply_undo(u);
        }
    }

    /// Ends every fault now.
    fn heal(&mut self) {
        self.note("heal".into());
        let all = std::mem::take(&mut self.undo);
        for (_, u) in all {
            self.apply_undo(u);
        }
        self.operator.spare_in = self.sc.spare;
        debug_assert!(self.blocked.is_empty() && self.down.is_empty());
        debug_assert!(self.lossy.values().all(|(n, _)| *n == 0));
    }

    // === admin clients ===

    fn pick_cp(&mut self) -> usize {
        self.rng.gen_range(0..self.cps.len())
    }

    fn send_attempt(&mut self, client: usize, now: Duration) {
        let Some(op) = self.clients[client].current else {
            return;
        };
        let cp = self.pick_cp();
        let id = self.next_attempt;
        self.next_attempt += 1;
        self.clients[client].attempts += 1;
        let operation = &self.history.ops[op];
        let attempt = Attempt {
            id,
            op: operation.op.clone(),
            request_id: operation.request_id,
        };
        let label = format!(
            "client {client} attempt {id} of {} ({}) to {}",
            &operation.request_id.to_string()[..8],
            operation.label,
            cp_name(cp)
        );
        self.note(label);
        match self.cps[cp].send(Request::Write(attempt)) {
            Ok(()) => {
                self.clients[client].in_flight = Some(id);
                self.in_flight.insert(
                    id,
                    InFlight {
                        client,
                        op,
                        cp,
                        deadline: now + ATTEMPT_TIMEOUT,
                    },
                );
            }
            Err(_) => {
                // Connection refused: the CP is down. Nothing was sent.
                self.note(format!("attempt {id}: connection refused"));
                self.clients[client].in_flight = None;
                self.retry_later(client, now);
            }
        }
    }

    fn retry_later(&mut self, client: usize, now: Duration) {
        let c = &mut self.clients[client];
        if c.attempts >= MAX_ATTEMPTS {
            if let Some(op) = c.current.take() {
                self.history.ops[op].open = true;
            }
            c.attempts = 0;
            c.duplicate = false;
            let think = self
                .rng
                .gen_range(0..self.sc.think.as_millis() as u64 * 2 + 1);
            self.clients[client].wake = now + Duration::from_millis(think);
            return;
        }
        let pause = self.rng.gen_range(100..1500);
        self.clients[client].wake = now + Duration::from_millis(pause);
    }

    fn attempt_failed(&mut self, id: u64, now: Duration, why: String) {
        let Some(f) = self.in_flight.remove(&id) else {
            return;
        };
        self.note(format!("attempt {id}: unconfirmed: {why}"));
        self.history.ops[f.op].unconfirmed += 1;
        if self.clients[f.client].in_flight == Some(id) {
            self.clients[f.client].in_flight = None;
            self.retry_later(f.client, now);
        }
    }

    fn collect_results(&mut self, now: Duration) {
        let mut results: Vec<(u64, AttemptResult)> = Vec::new();
        for c in &self.cps {
            results.extend(c.take_results());
        }
        for (id, result) in results {
            match result {
                Err(e) => self.attempt_failed(id, now, e),
                Ok(outcome) => {
                    let Some(f) = self.in_flight.remove(&id) else {
                        // Answered after the client gave up on it: not seen.
                        self.note(format!("attempt {id}: late answer ignored"));
                        continue;
                    };
                    let short = match &outcome {
                        Ok(a) => format!("ok v{} events {}", a.version, a.events),
                        Err(e) => format!("refused {:?}", e.code),
                    };
                    self.note(format!("attempt {id}: {short}"));
                    self.history.ops[f.op].acks.push((now, outcome));
                    let c = &mut self.clients[f.client];
                    c.in_flight = None;
                    if !c.duplicate && self.accepting && self.rng.gen_bool(0.15) {
                        // The answer was "lost": send it once more.
                        self.clients[f.client].duplicate = true;
                        self.clients[f.client].wake = now + Duration::from_millis(50);
                    } else {
                        let c = &mut self.clients[f.client];
                        c.current = None;
                        c.attempts = 0;
                        c.duplicate = false;
                        let think = self
                            .rng
                            .gen_range(0..self.sc.think.as_millis() as u64 * 2 + 1);
                        self.clients[f.client].wake = now + Duration::from_millis(think);
                    }
                }
            }
        }
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.attempt_failed(id, now, "no answer in time".into());
        }
    }

    fn drive_clients(&mut self, now: Duration) {
        for client in 0..self.clients.len() {
            let c = &self.clients[client];
            if c.in_flight.is_some() || c.wake > now {
                continue;
            }
            if c.current.is_none() {
                if !self.accepting {
                    continue;
                }
                let request_id = Uuid::from_u128(self.rng.gen());
                let unix = EPOCH as i64 + now.as_secs() as i64;
                let op = workload::next_op(&mut self.rng, request_id, unix);
                self.history.ops.push(Operation {
                    request_id,
                    label: workload::describe(&op),
                    op,
                    invoked: now,
                    acks: Vec::new(),
                    unconfirmed: 0,
                    open: false,
                });
                self.clients[client].current = Some(self.history.ops.len() - 1);
                self.clients[client].attempts = 0;
            }
            self.send_attempt(client, now);
        }
    }

    fn clients_idle(&self) -> bool {
        self.clients.iter().all(|c| c.current.is_none())
    }

    // === the operator ===

    /// The voters the operator wants, by node id.
    fn wanted_voters(&self) -> BTreeSet<u64> {
        (0..self.sc.cps)
            .filter(|i| !self.operator.out.contains(i))
            .chain(self.operator.spare_in.then_some(self.sc.cps))
            .map(|i| self.cps[i].node_id)
            .collect()
    }

    /// The next change the group needs, as the current leader sees it; None when it is
    /// where the operator wants it (Err: there is no leader to ask).
    ///
    /// The target is the last config of a joint one: openraft leaves a group joint when
    /// the leader loses leadership between the two steps of `change_membership`, and
    /// only another change finishes it. `/clustering/control-planes` lists the voters of
    /// both configs as one set, so an operator cannot tell; re-sending the call that
    /// made it (add or remove of the same node) finishes it, and that is what this does.
    fn next_member_change(&self) -> Result<Option<(usize, MemberChange)>, String> {
        let leader = self.current_leader().ok_or("no leader")?;
        let raft = self.cps[leader].raft().ok_or("no leader")?;
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let configs = membership.get_joint_config();
        let target: BTreeSet<u64> = configs.last().cloned().unwrap_or_default();
        let nodes: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
        let want = self.wanted_voters();
        let add = |id: u64| {
            let i = self
                .cps
                .iter()
                .position(|c| c.node_id == id)
                .expect("wanted voters are CPs");
            let address = self.cps[i].raft_address();
            Some((leader, MemberChange::Add { node: id, address }))
        };
        // Adding first keeps the quorum as large as it can be while it changes.
        if let Some(id) = want.iter().find(|id| !target.contains(id)) {
            return Ok(add(*id));
        }
        if let Some(id) = nodes.iter().find(|id| !want.contains(id)) {
            return Ok(Some((leader, MemberChange::Remove { node: *id })));
        }
        if let [first, last] = configs.as_slice() {
            // Joint with the wanted target: what remains is a node the last change added.
            if let Some(id) = last.iter().find(|id| !first.contains(id)) {
                return Ok(add(*id));
            }
        }
        Ok(None)
    }

    fn drive_operator(&mut self, now: Duration) {
        if let Some((call, _, deadline)) = self.operator.in_flight {
            if deadline <= now {
                self.note(format!("operator call {call}: no answer in time"));
                self.operator.in_flight = None;
            } else {
                return;
            }
        }
        if self.operator.wake > now {
            return;
        }
        self.operator.wake = now + OPERATOR_PAUSE;
        let Ok(Some((leader, change))) = self.next_member_change() else {
            return;
        };
        let id = self.operator.next_call;
        self.operator.next_call += 1;
        self.note(format!(
            "operator call {id}: {change:?} to {}",
            cp_name(leader)
        ));
        let call = MemberCall { id, change };
        match self.cps[leader].send(Request::Member(call)) {
            Ok(()) => self.operator.in_flight = Some((id, leader, now + MEMBER_CALL_TIMEOUT)),
            Err(_) => self.note(format!("operator call {id}: connection refused")),
        }
    }

    fn collect_member_results(&mut self, now: Duration) {
        let mut results: Vec<(u64, MemberResult)> = Vec::new();
        for c in &self.cps {
            results.extend(c.take_member_results());
        }
        for (id, result) in results {
            let current = self
                .operator
                .in_flight
                .is_some_and(|(call, _, _)| call == id);
            let text = match &result {
                Ok(voters) => format!("ok, voters {voters:?}"),
                Err(e) => format!("refused: {e}"),
            };
            if current {
                self.note(format!("operator call {id}: {text}"));
                self.operator.in_flight = None;
                self.operator.wake = now + OPERATOR_PAUSE;
            } else {
                self.note(format!("operator call {id}: late answer: {text}"));
            }
        }
    }

    /// What keeps the group from the membership the operator wants, if anything.
    fn membership_pending(&self) -> Option<String> {
        match self.next_member_change() {
            Ok(None) => None,
            Ok(Some((leader, change))) => Some(format!(
                "the group is not back to its full membership: {} still needs {change:?}",
                cp_name(leader)
            )),
            Err(why) => Some(format!(
                "the group is not back to its full membership: {why}"
            )),
        }
    }

    // === checks ===

    fn running_checks(&mut self, now: Duration) {
        for i in 0..self.cps.len() {
            let Some(raft) = self.cps[i].raft() else {
                continue;
            };
            let m = raft.metrics().borrow().clone();
            let view = (format!("{:?}", m.state), m.current_term, m.current_leader);
            if self.raft_views[i].as_ref() != Some(&view) {
                self.note(format!(
                    "{} is {} in term {} (leader {:?}, applied {:?})",
                    cp_name(i),
                    view.0,
                    view.1,
                    view.2,
                    m.last_applied.map(|l| l.index)
                ));
                self.raft_views[i] = Some(view);
            }
        }
        for i in 0..self.dps.len() {
            let served = self.dps[i].served();
            let from = self.served_seen[i];
            self.served_seen[i] = served.len();
            for k in from..served.len() {
                let prev = if k == 0 { None } else { Some(&served[k - 1]) };
                let spec = &self.dps[i].spec;
                let mut found = invariants::dp_version::on_served(spec, prev, &served[k]);
                found.extend(invariants::incompatible::on_served(spec, &served[k]));
                for (inv, detail) in found {
                    self.violation(inv, detail);
                }
            }
        }
        // Cut-off DPs keep serving their last config.
        for i in 0..self.dps.len() {
            let up = !self.is_down(&dp_name(i));
            let cut = self.is_cut_off(i);
            if std::mem::take(&mut self.reached[i]) {
                // A window that spans a moment of reachability is two windows.
                self.cut_offs.close(i);
                self.cut_off_routes.close(i);
            }
            let current = if up { self.dps[i].current() } else { None };
            let incarnation = *self.dps[i].incarnation.lock().expect("lock");
            if let Some(detail) =
                self.cut_offs
                    .observe(i, cut, now, incarnation, current.as_deref())
            {
                self.violation("cut_off", detail);
            }
            if let Some(detail) =
                self.cut_off_routes
                    .observe(i, cut, now, incarnation, current.as_deref())
            {
                self.violation(invariants::cut_off_routes::NAME, detail);
            }
        }
    }

    /// Runs one seed to the end; also returns the trace lines if they were kept.
    pub fn run_with_trace(mut self) -> (SeedReport, Option<Vec<String>>) {
        self.note(format!(
            "scenario: {} CPs, DPs {:?}, {} faults, {} clients, chaos {:?}",
            self.sc.cps,
            self.sc
                .dps
                .iter()
                .map(|d| format!("{} {} {:?}", d.name, d.version, d.kind))
                .collect::<Vec<_>>(),
            self.sc.faults.len(),
            self.sc.clients,
            self.sc.chaos
        ));
        if self.sc.spare {
            let spare = cp_name(self.sc.cps);
            let dps: Vec<&str> = self
                .sc
                .dps
                .iter()
                .filter(|d| {
                    d.addresses
                        .iter()
                        .any(|a| a.starts_with(&format!("{spare}:")))
                })
                .map(|d| d.name.as_str())
                .collect();
            self.note(format!(
                "scenario: spare {spare} outside the group, known to DPs {dps:?}"
            ));
        }
        let ok = self.boot() && self.advance_until(BOOT + self.sc.chaos);
        let mut converged_after = None;
        if ok {
            self.accepting = false;
            self.heal();
            let healed = self.now();
            let drained = self.drain(healed + DRAIN);
            if drained {
                converged_after = self.converge(healed);
                self.final_checks();
            }
        }
        self.finish(converged_after)
    }

    fn boot(&mut self) -> bool {
        while self.now() < BOOT {
            if !self.step() {
                return false;
            }
            if self.current_leader().is_some() {
                let l = self.current_leader().expect("checked");
                self.note(format!("booted: leader {}", cp_name(l)));
                return true;
            }
        }
        self.violation("liveness", "no leader elected within the boot time".into());
        false
    }

    /// Lets in-flight operations finish (retries included).
    fn drain(&mut self, until: Duration) -> bool {
        while !self.clients_idle() {
            if self.now() >= until {
                let open: Vec<String> = self
                    .clients
                    .iter()
                    .filter_map(|c| c.current)
                    .map(|op| self.history.ops[op].label.clone())
                    .collect();
                self.violation(
                    "liveness",
                    format!("admin operations still unanswered {DRAIN:?} after healing: {open:?}"),
                );
                return false;
            }
            if !self.step() {
                return false;
            }
        }
        true
    }

    /// Waits for convergence up to the bound; records what did not converge.
    fn converge(&mut self, healed: Duration) -> Option<Duration> {
        let deadline = healed + CONVERGENCE_BOUND;
        loop {
            let mut pending_dp = invariants::convergence::pending(&self.cps, &self.dps);
            pending_dp.extend(self.membership_pending());
            let pending_rows = invariants::data_planes::pending(&self.cps, &self.dps);
            if pending_dp.is_empty() && pending_rows.is_empty() {
                let after = self.now() - healed;
                self.note(format!("converged {after:?} after healing"));
                return Some(after);
            }
            if self.now() >= deadline {
                for p in pending_dp {
                    self.violation("convergence", p);
                }
                for p in pending_rows {
                    self.violation("data_planes", p);
                }
                return None;
            }
            let next = self.now() + CHECK_EVERY;
            if !self.advance_until(next) {
                return None;
            }
        }
    }

    fn final_checks(&mut self) {
        let found = invariants::check_final(self);
        for (inv, detail) in found {
            self.violation(inv, detail);
        }
    }

    fn finish(mut self, converged_after: Option<Duration>) -> (SeedReport, Option<Vec<String>>) {
        // Every publish of every DP, in order, belongs to the trace.
        for d in &self.dps {
            for s in d.served() {
                let line = format!(
                    "{} served v{} {} (cluster {}, incarnation {})",
                    d.spec.name, s.version, s.hash, s.from_cluster, s.incarnation
                );
                self.trace.line(s.at, line);
            }
        }
        let final_version = self
            .cps
            .iter()
            .filter_map(|c| c.reader())
            .map(|r| r.read(|m| m.config.version()))
            .max()
            .unwrap_or(0);
        let stats = Stats {
            cps: self.sc.cps,
            dps: self.dps.len(),
            faults: self.sc.faults.len(),
            operations: self.history.ops.len(),
            acked: self
                .history
                .ops
                .iter()
                .filter(|o| !o.acks.is_empty())
                .count(),
            open: self
                .history
                .ops
                .iter()
                .filter(|o| o.acks.is_empty())
                .count(),
            final_version,
            sim_time: self.now(),
            converged_after,
        };
        let now = self.now();
        self.trace.line(now, format!("end {stats:?}"));
        let hash = std::mem::replace(&mut self.trace.hasher, Sha256::new()).finalize();
        let lines = self.trace.lines.take();
        (
            SeedReport {
                seed: self.sc.seed,
                violations: self.violations,
                trace_hash: hex::encode(&hash[..16]),
                stats,
            },
            lines,
        )
    }
}

/// Whether a DP should end up holding the CPs' config.
pub fn should_converge(kind: &DpKind, used: &std::collections::BTreeSet<String>) -> bool {
    match kind {
        DpKind::Compatible | DpKind::OlderAccepted => true,
        DpKind::VersionRejected => false,
        DpKind::MissingPlugin(p) | DpKind::PluginVersion(p) => !used.contains(p),
    }
}
