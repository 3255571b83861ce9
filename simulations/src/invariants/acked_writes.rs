//! No acknowledged write is lost: once every fault healed, each request a client got an
//! answer for is in the committed log, and every CP holds the state that log produces
//! (same config version and hash, same request outcomes).

use std::sync::Arc;

use super::replay::Replay;
use crate::cp::CpCtx;
use crate::history::History;
use crate::scenario::cp_name;

pub const NAME: &str = "acked_writes";

pub fn check(
    history: &History,
    replay: &Replay,
    cps: &[Arc<CpCtx>],
) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for op in history.ops.iter().filter(|o| !o.acks.is_empty()) {
        if !replay.first.contains_key(&op.request_id) {
            found.push((
                NAME,
                format!(
                    "request {} ({}) was acknowledged at {:?} but is not in the committed log of {}",
                    op.request_id,
                    op.label,
                    op.completed().unwrap_or_default(),
                    replay.source
                ),
            ));
        }
    }
    let want = (
        replay.machine.config.version(),
        replay.machine.config.hash().to_string(),
    );
    for c in cps {
        let Some(reader) = c.reader() else {
            found.push((
                NAME,
                format!("{} is not running at the end", cp_name(c.index)),
            ));
            continue;
        };
        let have = reader.read(|m| (m.config.version(), m.config.hash().to_string()));
        if have != want {
            found.push((
                NAME,
                format!(
                    "{} holds v{} {} but replaying the committed log gives v{} {}",
                    cp_name(c.index),
                    have.0,
                    have.1,
                    want.0,
                    want.1
                ),
            ));
        }
        for op in history.ops.iter().filter(|o| !o.acks.is_empty()) {
            let recorded = reader.read(|m| m.requests.get(&op.request_id).cloned());
            if recorded.is_none() {
                found.push((
                    NAME,
                    format!(
                        "{} has no record of acknowledged request {} ({})",
                        cp_name(c.index),
                        op.request_id,
                        op.label
                    ),
                ));
            }
        }
    }
    found
}
