//! The admin history is linearizable. The witness is the committed Raft log: replayed
//! through a fresh state machine (the sequential specification), it must
//!
//! - give every answer a client received — including the second answer to a request sent
//!   twice, which must be the first one again (exactly-once under retries);
//! - respect real time: an operation answered before another was first sent comes first
//!   in the log.
//!
//! A Raft system's linearization is its log order, so checking that order (rather than
//! searching every order, as a general checker would) is complete for it.
//!
//! Also here: no request's create shows up as two entities (a retry applied twice), in
//! any CP's actual state.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidegate_state::Op;

use super::replay::Replay;
use crate::cp::CpCtx;
use crate::history::History;
use crate::scenario::cp_name;

pub const NAME: &str = "linearizable";

pub fn check(
    history: &History,
    replay: &Replay,
    cps: &[Arc<CpCtx>],
) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for op in &history.ops {
        let Some((_, expected)) = replay.first.get(&op.request_id) else {
            continue;
        };
        for (at, got) in &op.acks {
            if got != expected {
                found.push((
                    NAME,
                    format!(
                        "request {} ({}) answered {:?} at {at:?}; the sequential replay of the log answers {:?}",
                        op.request_id,
                        op.label,
                        short(got),
                        short(expected)
                    ),
                ));
            }
        }
    }
    // Real-time order.
    let mut acked: Vec<(std::time::Duration, usize, &str)> = history
        .ops
        .iter()
        .filter_map(|o| {
            let done = o.completed()?;
            let (pos, _) = replay.first.get(&o.request_id)?;
            Some((done, *pos, o.label.as_str()))
        })
        .collect();
    acked.sort();
    for b in &history.ops {
        let Some((pos_b, _)) = replay.first.get(&b.request_id) else {
            continue;
        };
        // Every operation completed before b was invoked must precede it.
        for (done, pos_a, label_a) in acked.iter().take_while(|(d, _, _)| *d < b.invoked) {
            if pos_a > pos_b {
                found.push((
                    NAME,
                    format!(
                        "'{label_a}' was answered at {done:?}, before '{}' was sent at {:?}, yet the log orders it after",
                        b.label, b.invoked
                    ),
                ));
            }
        }
    }
    // Exactly once: one create request, at most one entity with its tag.
    let creates: BTreeMap<String, &str> = history
        .ops
        .iter()
        .filter(|o| matches!(o.op, Op::Create { .. }))
        .map(|o| (crate::workload::request_tag(o.request_id), o.label.as_str()))
        .collect();
    for c in cps {
        let Some(reader) = c.reader() else { continue };
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        reader.read(|m| {
            for e in m.config.iter() {
                for t in e.tags().unwrap_or_default() {
                    if creates.contains_key(t) {
                        *count.entry(t.clone()).or_default() += 1;
                    }
                }
            }
        });
        for (tag, n) in count.into_iter().filter(|(_, n)| *n > 1) {
            found.push((
                NAME,
                format!(
                    "{}: one request ('{}', {tag}) created {n} entities: a retry was applied twice",
                    cp_name(c.index),
                    creates[&tag]
                ),
            ));
        }
    }
    found
}

fn short(o: &tidegate_state::Outcome) -> String {
    match o {
        Ok(a) => format!(
            "ok v{} events {} entity {:?}",
            a.version,
            a.events,
            a.entity.map(|e| e.1)
        ),
        Err(e) => format!("error {:?}: {}", e.code, e.message),
    }
}
