//! `tidegate-sim`: runs seeds of the deterministic simulation. See the crate docs.
//!
//! Each seed of a range runs in a fresh child process (`--jobs` at a time), so seeds run
//! in parallel and one that panics or aborts does not end the batch. `--seed N` replays
//! exactly what the range saw, in this process.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use clap::Parser;
use tidegate_sim::{repro_command, run_seed, Options, Planted, SeedReport};

#[derive(Parser)]
#[command(about = "Deterministic simulation of tidegate's CPs and DPs")]
struct Args {
    /// One seed, run in this process.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// A range of seeds: `A..B` (B excluded) or `A..` (until interrupted), each in a
    /// child process.
    #[arg(long)]
    seeds: Option<String>,
    /// Print the event trace of the seed (with --seed).
    #[arg(long)]
    trace: bool,
    /// Comma-separated planted bugs to arm (early-ack, forget-request-ids,
    /// skip-plugin-check, publish-before-store).
    #[arg(long, default_value = "")]
    planted: String,
    /// Stop at the first failing seed.
    #[arg(long)]
    fail_fast: bool,
    /// Child processes at once (default: the number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// With --seed: run it this many times in this process and report whether the
    /// traces agree (they must: a seed does not depend on what ran before it).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// With --seed: the scenario without membership changes, lossy links and the spare
    /// CP, as seeds recorded before those existed ran.
    #[arg(long)]
    without_extras: bool,
}

fn parse_range(s: &str) -> Result<(u64, Option<u64>), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("--seeds {s:?}: expected A..B or A.."))?;
    let a: u64 = a.parse().map_err(|e| format!("--seeds start: {e}"))?;
    let b = if b.is_empty() {
        None
    } else {
        Some(b.parse().map_err(|e| format!("--seeds end: {e}"))?)
    };
    Ok((a, b))
}

fn summary(report: &SeedReport, wall: f64) -> String {
    let s = &report.stats;
    let verdict = if report.violations.is_empty() {
        "ok  "
    } else {
        "FAIL"
    };
    format!(
        "seed {:>6} {verdict} trace {} | {} CPs {} DPs {} faults | ops {} acked {} open {} | v{} | converged {} | sim {:.0}s wall {:.2}s",
        report.seed,
        report.trace_hash,
        s.cps,
        s.dps,
        s.faults,
        s.operations,
        s.acked,
        s.open,
        s.final_version,
        s.converged_after.map_or("no".to_string(), |d| format!("{:.1}s", d.as_secs_f64())),
        s.sim_time.as_secs_f64(),
        wall
    )
}

#[allow(clippy::disallowed_methods)] // wall time of the run, for the summary only
fn one(seed: u64, args: &Args, planted: Planted) -> ExitCode {
    let options = Options {
        planted,
        keep_trace: args.trace,
        without_extras: args.without_extras,
    };
    let t = Instant::now();
    let (report, lines) = run_seed(seed, &options);
    let wall = t.elapsed().as_secs_f64();
    if let Some(lines) = &lines {
        for l in lines {
            println!("  {l}");
        }
    }
    println!("{}", summary(&report, wall));
    for v in &report.violations {
        println!(
            "    {} at {:.3}s: {}",
            v.invariant,
            v.at.as_secs_f64(),
            v.detail
        );
    }
    if !report.violations.is_empty() {
        println!("    reproduce: {}", repro_command(seed, &options));
    }
    let mut replayed = true;
    for _ in 1..args.repeat {
        let (again, _) = run_seed(seed, &options);
        let same = again.trace_hash == report.trace_hash;
        replayed &= same;
        println!(
            "again in this process: trace {} ({})",
            again.trace_hash,
            if same { "same" } else { "DIFFERENT" }
        );
    }
    if report.violations.is_empty() && replayed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[allow(clippy::disallowed_methods)] // wall time of the run, for the summary only
fn range(start: u64, end: Option<u64>, args: &Args) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot find this executable: {e}");
            return ExitCode::from(2);
        }
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let began = Instant::now();
    let next = Arc::new(AtomicU64::new(start));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(u64, bool, String)>();
    let mut workers = Vec::new();
    for _ in 0..jobs {
        let (next, stop, tx, exe) = (next.clone(), stop.clone(), tx.clone(), exe.clone());
        let planted = args.planted.clone();
        workers.push(std::thread::spawn(move || loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let seed = next.fetch_add(1, Ordering::Relaxed);
            if end.is_some_and(|e| seed >= e) {
                return;
            }
            let out = Command::new(&exe)
                .args(["--seed", &seed.to_string(), "--planted", &planted])
                .output();
            let (ok, text) = match out {
                Ok(o) => (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stdout).into_owned()
                        + &String::from_utf8_lossy(&o.stderr),
                ),
                Err(e) => (false, format!("seed {seed}: cannot run a child: {e}\n")),
            };
            if tx.send((seed, ok, text)).is_err() {
                return;
            }
        }));
    }
    drop(tx);
    // Print in seed order.
    let mut pending: BTreeMap<u64, (bool, String)> = BTreeMap::new();
    let mut print_next = start;
    let mut failed = Vec::new();
    let mut ran = 0u64;
    for (seed, ok, text) in rx {
        pending.insert(seed, (ok, text));
        while let Some((ok, text)) = pending.remove(&print_next) {
            print!("{text}");
            let _ = std::io::stdout().flush();
            ran += 1;
            if !ok {
                failed.push(print_next);
                if args.fail_fast {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            if end.is_none() && ran.is_multiple_of(100) {
                println!(
                    "== {ran} seeds, {} failed {:?}, {:.0}s",
                    failed.len(),
                    failed,
                    began.elapsed().as_secs_f64()
                );
            }
            print_next += 1;
        }
    }
    for w in workers {
        let _ = w.join();
    }
    println!(
        "{ran} seeds in {:.1}s ({jobs} at a time): {} failed {:?}",
        began.elapsed().as_secs_f64(),
        failed.len(),
        failed
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let planted = match Planted::parse(&args.planted) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match (&args.seed, &args.seeds) {
        (Some(s), _) => one(*s, &args, planted),
        (None, Some(r)) => match parse_range(r) {
            Ok((a, b)) => range(a, b, &args),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        (None, None) => range(0, Some(100), &args),
    }
}
