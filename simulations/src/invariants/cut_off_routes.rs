//! A cut-off DP still answers requests from its last config: while a running DP can
//! reach no CP, a request aimed at each route it had when the cut began (a second of
//! grace after it, as in `cut_off`) is still routed — by Kong's router built from the
//! config the DP holds now, as its proxy builds it — to the same route as then.
//!
//! `cut_off` compares what the DP holds; this one asks the router, so it also fails when
//! the DP holds a config its proxy could not build a router from, or one whose routes
//! no longer answer. Pure: no sockets, the router is called directly.

use std::collections::BTreeSet;
use std::time::Duration;

use tidegate_dp::Current;
use tidegate_model::entities::Route;
use tidegate_model::{Entity, EntityKind};
use tidegate_router::{BuildError, NoHeaders, RequestView, Router, Scheme};
use tidegate_state::ConfigState;
use uuid::Uuid;

use super::cut_off::Windows;

pub const NAME: &str = "cut_off_routes";

/// A request made up to reach one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    pub scheme: Scheme,
}

impl Probe {
    fn label(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Https | Scheme::Grpcs => "https",
            Scheme::Http | Scheme::Grpc => "http",
        };
        format!(
            "{} {scheme}://{}{}",
            self.method,
            self.host.as_deref().unwrap_or("-"),
            self.path
        )
    }
}

/// The router the DP's proxy builds from `state`: as `ProxyConfig::build_with` in
/// `crates/proxy/src/config.rs`, routes whose service is disabled are left out (Kong's
/// `build_router` does the same).
pub fn router(state: &ConfigState) -> Result<Router, BuildError> {
    let enabled: BTreeSet<Uuid> = state
        .iter_kind(EntityKind::Service)
        .filter_map(|e| match e {
            Entity::Service(s) if s.enabled => Some(s.id),
            _ => None,
        })
        .collect();
    let routes = state.iter_kind(EntityKind::Route).filter_map(|e| match e {
        Entity::Route(r) => match r.service {
            Some(fk) if !enabled.contains(&fk.id) => None,
            _ => Some(&**r),
        },
        _ => None,
    });
    Router::build(routes)
}

/// A plain request for `route`: its first host, first prefix path and first method, on
/// its first HTTP scheme. None for routes no plain request reaches (header rules,
/// wildcard hosts, regex-only paths, SNI rules, non-HTTP protocols).
fn probe(route: &Route) -> Option<Probe> {
    let scheme = if route.protocols.iter().any(|p| p == "http") {
        Scheme::Http
    } else if route.protocols.iter().any(|p| p == "https") {
        Scheme::Https
    } else {
        return None;
    };
    if route.headers.as_ref().is_some_and(|h| !h.is_empty())
        || route.snis.as_ref().is_some_and(|s| !s.is_empty())
    {
        return None;
    }
    let host = match route.hosts.as_deref() {
        None | Some([]) => None,
        Some([h, ..]) if !h.contains('*') => Some(h.clone()),
        Some(_) => return None,
    };
    let path = match route.paths.as_deref() {
        None | Some([]) => "/".to_string(),
        Some(paths) => paths.iter().find(|p| !p.starts_with('~'))?.clone(),
    };
    let method = route
        .methods
        .as_deref()
        .and_then(|m| m.first().cloned())
        .unwrap_or_else(|| "GET".to_string());
    Some(Probe {
        method,
        host,
        path,
        scheme,
    })
}

/// The route `probe` reaches through `router`.
pub fn answer(router: &Router, probe: &Probe) -> Option<Uuid> {
    router
        .find(&RequestView {
            method: &probe.method,
            host: probe.host.as_deref(),
            path: &probe.path,
            headers: &NoHeaders,
            sni: None,
            scheme: probe.scheme,
        })
        .map(|m| m.route.id)
}

/// One request per route of `state` that a plain request reaches, with the route the
/// router picks for it (another route may win a tie, Kong's priority decides).
pub fn reference(state: &ConfigState) -> Result<Vec<(Probe, Uuid)>, BuildError> {
    let router = router(state)?;
    let mut probes: Vec<(Probe, Uuid)> = Vec::new();
    for e in state.iter_kind(EntityKind::Route) {
        let Entity::Route(r) = e else { continue };
        let Some(p) = probe(r) else { continue };
        if probes.iter().any(|(q, _)| *q == p) {
            continue;
        }
        if let Some(id) = answer(&router, &p) {
            probes.push((p, id));
        }
    }
    Ok(probes)
}

/// What changed between the reference answers and `state`'s router, if anything.
pub fn compare(reference: &[(Probe, Uuid)], state: &ConfigState) -> Result<(), String> {
    let router = router(state).map_err(|e| format!("its proxy cannot build a router: {e}"))?;
    let wrong: Vec<String> = reference
        .iter()
        .filter_map(|(p, want)| {
            let got = answer(&router, p);
            (got != Some(*want)).then(|| {
                format!(
                    "{} went to route {want}, now {}",
                    p.label(),
                    got.map_or("matches no route".to_string(), |g| format!("to route {g}"))
                )
            })
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// The cut-off windows of every DP, and what their requests answered at the start.
pub struct Probes {
    /// Per window: None until the grace ran out; then the requests and where they went.
    windows: Windows<Vec<(Probe, Uuid)>>,
    /// Windows in which at least one request was checked, for the report.
    pub checked: usize,
}

impl Probes {
    pub fn new(dps: usize) -> Self {
        Probes {
            windows: Windows::new(dps),
            checked: 0,
        }
    }

    /// Ends DP `i`'s window (see [`Windows::close`]).
    pub fn close(&mut self, i: usize) {
        self.windows.close(i);
    }

    /// One sample of DP `i`: whether it is cut off now and the config it holds.
    pub fn observe(
        &mut self,
        i: usize,
        cut: bool,
        now: Duration,
        incarnation: u64,
        current: Option<&Current>,
    ) -> Option<String> {
        let window = self
            .windows
            .sample(i, cut, now, incarnation, current.is_some())?;
        let current = current?;
        let state = &current.state;
        let Some(before) = &window.reference else {
            return match reference(state) {
                Ok(probes) => {
                    if !probes.is_empty() {
                        self.checked += 1;
                    }
                    window.reference = Some(probes);
                    None
                }
                Err(e) => {
                    window.reference = Some(Vec::new());
                    Some(format!(
                        "dp{} is cut off from every CP and holds v{} {}, from which its proxy cannot build a router: {e}",
                        i + 1,
                        state.version(),
                        state.hash()
                    ))
                }
            };
        };
        match compare(before, state) {
            Ok(()) => None,
            Err(what) => {
                let detail = format!(
                    "dp{} is cut off from every CP since {:?}; from v{} {} it answers: {what}",
                    i + 1,
                    window.start,
                    state.version(),
                    state.hash()
                );
                // Report a change once; later samples compare with what it serves now.
                window.reference = reference(state).ok();
                Some(detail)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::cut_off::GRACE;
    use tidegate_model::declarative::{parse_value, ParseOptions};
    use tidegate_state::Machine;

    fn state_of(doc: serde_json::Value) -> ConfigState {
        let parsed = parse_value(
            doc,
            ParseOptions {
                now: 1_700_000_000,
                entropy: 7,
            },
        )
        .expect("valid declarative config");
        let mut m = Machine::new();
        let cmd = tidegate_state::Command {
            request_id: Uuid::from_u128(1),
            fixed: tidegate_model::Fixed {
                id: Uuid::from_u128(2),
                now: 1_700_000_000,
                entropy: 3,
            },
            op: tidegate_state::Op::Import {
                entities: parsed.entities,
            },
        };
        let (outcome, _) = m.execute(&cmd);
        outcome.expect("the import applies");
        m.config
    }

    fn two_routes(enabled: bool, second_path: &str) -> ConfigState {
        state_of(serde_json::json!({
            "_format_version": "3.0",
            "services": [
                {"name": "a", "url": "http://a.internal", "routes": [{"name": "ra", "paths": ["/a"]}]},
                {"name": "b", "url": "http://b.internal", "enabled": enabled,
                 "routes": [{"name": "rb", "paths": [second_path], "hosts": ["b.example"]}]},
            ],
        }))
    }

    #[test]
    fn every_plain_route_gets_a_request_that_reaches_it() {
        let state = two_routes(true, "/b");
        let probes = reference(&state).unwrap();
        assert_eq!(probes.len(), 2, "{probes:?}");
        assert!(probes
            .iter()
            .any(|(p, _)| p.path == "/a" && p.host.is_none()));
        assert!(probes
            .iter()
            .any(|(p, _)| p.path == "/b" && p.host.as_deref() == Some("b.example")));
        assert_eq!(compare(&probes, &state), Ok(()));
    }

    #[test]
    fn a_route_that_no_longer_answers_is_reported() {
        let before = two_routes(true, "/b");
        let probes = reference(&before).unwrap();
        let moved = compare(&probes, &two_routes(true, "/elsewhere")).unwrap_err();
        assert!(
            moved.contains("/b") && moved.contains("matches no route"),
            "{moved}"
        );
        let disabled = compare(&probes, &two_routes(false, "/b")).unwrap_err();
        assert!(disabled.contains("matches no route"), "{disabled}");
        let emptied = compare(&probes, &ConfigState::new()).unwrap_err();
        assert_eq!(emptied.matches("matches no route").count(), 2, "{emptied}");
    }

    #[test]
    fn a_window_reports_a_change_after_the_grace_only() {
        let before = Current::from_cache(two_routes(true, "/b"));
        let after = Current::from_cache(ConfigState::new());
        let mut w = Probes::new(1);
        let s = Duration::from_secs;
        assert_eq!(w.observe(0, true, s(10), 1, Some(&before)), None);
        // Within the grace: config still landing, not checked.
        assert_eq!(w.observe(0, true, s(10) + GRACE / 2, 1, Some(&after)), None);
        assert_eq!(w.observe(0, true, s(12), 1, Some(&before)), None);
        assert_eq!(w.checked, 1);
        assert_eq!(w.observe(0, true, s(13), 1, Some(&before)), None);
        let found = w
            .observe(0, true, s(14), 1, Some(&after))
            .expect("a violation");
        assert!(found.contains("dp1 is cut off"), "{found}");
        // Reconnected: the window closes, nothing to report.
        assert_eq!(w.observe(0, false, s(15), 1, Some(&after)), None);
    }
}
