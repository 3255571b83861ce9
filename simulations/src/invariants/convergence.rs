//! Every connected compatible DP reaches the CPs' config within a bound of simulated time
//! after the faults heal; the CPs agree among themselves first (same applied log index,
//! config version and hash).

use std::sync::Arc;

use crate::cp::CpCtx;
use crate::dp::{plugins_used, DpCtx};
use crate::scenario::cp_name;
use crate::sim::should_converge;

pub const NAME: &str = "convergence";

/// What has not converged yet (empty: converged).
pub fn pending(cps: &[Arc<CpCtx>], dps: &[Arc<DpCtx>]) -> Vec<String> {
    let mut out = Vec::new();
    let states: Vec<(usize, u64, u64, String)> = cps
        .iter()
        .filter_map(|c| {
            let r = c.reader()?;
            let (last, _) = r.last_applied();
            let (v, h) = r.read(|m| (m.config.version(), m.config.hash().to_string()));
            Some((c.index, last.map_or(0, |l| l.index), v, h))
        })
        .collect();
    if states.len() < cps.len() {
        out.push("not every CP is running".to_string());
        return out;
    }
    let Some(top) = states.iter().max_by_key(|s| s.1) else {
        return out;
    };
    for s in &states {
        if (s.1, s.2, &s.3) != (top.1, top.2, &top.3) {
            out.push(format!(
                "{} holds v{} {} (log {}), {} holds v{} {} (log {})",
                cp_name(s.0),
                s.2,
                s.3,
                s.1,
                cp_name(top.0),
                top.2,
                top.3,
                top.1
            ));
        }
    }
    let used = cps[top.0]
        .reader()
        .map(|r| r.read(|m| plugins_used(&m.config)))
        .unwrap_or_default();
    for d in dps {
        if !should_converge(&d.spec.kind, &used) {
            continue;
        }
        match d.current() {
            None => out.push(format!("{} is not running", d.spec.name)),
            Some(c) => {
                let have = (c.state.version(), c.state.hash().to_string());
                if have != (top.2, top.3.clone()) || !c.from_cluster {
                    out.push(format!(
                        "{} ({:?}) serves v{} {} (cluster config: {}), the CPs hold v{} {}",
                        d.spec.name, d.spec.kind, have.0, have.1, c.from_cluster, top.2, top.3
                    ));
                }
            }
        }
    }
    out
}
