//! The sequential reference: the committed Raft log replayed through a fresh `Machine`
//! (with every planted bug disarmed), giving each request's first position and outcome,
//! and the config hash at every version.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::EntryPayload;
use tidegate_state::{ConfigState, Machine, Op, Outcome};
use uuid::Uuid;

use crate::cp::CpCtx;

pub struct Replay {
    /// Request id → (position among applied commands, outcome of its first application).
    pub first: BTreeMap<Uuid, (usize, Outcome)>,
    /// `hashes[v]` is the config hash at version v.
    pub hashes: Vec<String>,
    pub machine: Machine,
    /// The log index the replay stops at.
    pub last_index: u64,
    pub source: String,
}

impl Replay {
    /// Replays the longest applied log among the running CPs.
    pub fn of(cps: &[Arc<CpCtx>]) -> Result<Replay, String> {
        let (cp, applied) = cps
            .iter()
            .filter_map(|c| {
                let (last, _) = c.reader()?.last_applied();
                Some((c, last.map_or(0, |l| l.index)))
            })
            .max_by_key(|(c, applied)| (*applied, std::cmp::Reverse(c.index)))
            .ok_or("no CP is running at the end")?;
        if cp.disk.last_purged().is_some() {
            return Err(format!(
                "{}: the log was purged behind a snapshot; replay is not possible",
                crate::scenario::cp_name(cp.index)
            ));
        }
        let entries = cp.disk.log_entries();
        let _disarmed = crate::Disarm::state();
        let mut machine = Machine::new();
        let mut mirror = ConfigState::new();
        let mut first = BTreeMap::new();
        let mut hashes = vec![mirror.hash().to_string()];
        let mut position = 0;
        let mut expected = 0;
        for e in entries.into_iter().filter(|e| e.log_id.index <= applied) {
            if e.log_id.index != expected {
                return Err(format!(
                    "{}: log entry {} where entry {expected} was expected",
                    crate::scenario::cp_name(cp.index),
                    e.log_id.index,
                ));
            }
            expected += 1;
            let EntryPayload::Normal(cmd) = e.payload else {
                continue;
            };
            // A group entry is its members, one after the other (group commit).
            let commands = match cmd.op {
                Op::Group { commands } => commands,
                _ => vec![cmd],
            };
            for cmd in commands {
                let (outcome, events) = machine.execute(&cmd);
                if !matches!(cmd.op, Op::DataPlanes { .. }) {
                    first.entry(cmd.request_id).or_insert((position, outcome));
                    position += 1;
                }
                for ev in &events {
                    mirror
                        .apply(ev)
                        .map_err(|err| format!("replay: event v{}: {err}", ev.version))?;
                    hashes.push(mirror.hash().to_string());
                }
            }
        }
        if expected <= applied {
            return Err(format!(
                "{}: applied up to log index {applied} but its log ends before {expected}",
                crate::scenario::cp_name(cp.index),
            ));
        }
        Ok(Replay {
            first,
            hashes,
            machine,
            last_index: applied,
            source: crate::scenario::cp_name(cp.index),
        })
    }
}
