//! [`PluginSet`]: the plugin instances of one config version, resolved per request with
//! Kong's precedence, and the phase runner.
//!
//! Precedence (Kong 3.x without consumer groups), most specific first: consumer + route +
//! service, consumer + route, consumer + service, route + service, consumer, route,
//! service, global. Each plugin is resolved at its own turn with the consumer known then,
//! so a consumer-scoped instance applies to every plugin that runs after authentication.
//! Disabled instances are not loaded, so a less specific enabled one applies, as in Kong.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tidegate_model::{Entity, EntityKind};
use tidegate_state::ConfigState;
use uuid::Uuid;

use crate::consumers::Consumers;
use crate::context::{Ctx, PluginScope, Protocol, Req};
use crate::phase::{Access, Exit, Flow, Plugin};
use crate::registry::Registry;
use crate::runtime::Runtime;

/// One instance and where it applies.
#[derive(Clone)]
pub struct Inst {
    pub id: Uuid,
    pub name: &'static str,
    pub plugin: Arc<dyn Plugin>,
    protocols: u8,
    /// The instance's own scope (not the request's).
    route: Option<Uuid>,
    service: Option<Uuid>,
}

/// Looked up once per plugin per request: foldhash rather than SipHash. Keys are ids
/// from the config, not from the client.
type ByScope<K> = HashMap<K, Inst, foldhash::fast::RandomState>;

#[derive(Default)]
struct Scoped {
    global: Option<Inst>,
    route: ByScope<Uuid>,
    service: ByScope<Uuid>,
    consumer: ByScope<Uuid>,
    route_service: ByScope<(Uuid, Uuid)>,
    consumer_route: ByScope<(Uuid, Uuid)>,
    consumer_service: ByScope<(Uuid, Uuid)>,
    consumer_route_service: ByScope<(Uuid, Uuid, Uuid)>,
}

struct Slot {
    name: &'static str,
    priority: i64,
    scoped: Scoped,
}

/// The plugins of one config version.
#[derive(Default)]
pub struct PluginSet {
    /// One slot per plugin with an enabled instance, highest priority first.
    slots: Vec<Slot>,
    consumers: Consumers,
}

/// The instances that took part in a request, in the order they ran; the response
/// phases run for these.
pub type Ran = Vec<Inst>;

impl PluginSet {
    /// Builds every enabled instance the registry knows. Returns the set and one warning
    /// per instance left out.
    pub fn build(
        state: &ConfigState,
        registry: &Registry,
        rt: &Runtime,
    ) -> (PluginSet, Vec<String>) {
        let mut warnings = Vec::new();
        let mut slots: HashMap<&'static str, Slot> = HashMap::new();
        for e in state.iter_kind(EntityKind::Plugin) {
            let Entity::Plugin(p) = e else { continue };
            if !p.enabled {
                continue;
            }
            let Some(factory) = registry.get(&p.name) else {
                warnings.push(format!(
                    "plugin '{}' ({}) is not installed on this node; it is not run",
                    p.name, p.id
                ));
                continue;
            };
            let plugin = match factory.build(&p.config, rt) {
                Ok(pl) => pl,
                Err(e) => {
                    warnings.push(format!("plugin '{}' ({}) left out: {e}", p.name, p.id));
                    continue;
                }
            };
            let protocols = p
                .protocols
                .iter()
                .filter_map(|n| Protocol::from_name(n))
                .fold(0u8, |m, p| m | p.bit());
            let name = factory.name();
            let inst = Inst {
                id: p.id,
                name,
                plugin,
                protocols,
                route: p.route.map(|f| f.id),
                service: p.service.map(|f| f.id),
            };
            let slot = slots.entry(name).or_insert_with(|| Slot {
                name,
                priority: factory.priority(),
                scoped: Scoped::default(),
            });
            let s = &mut slot.scoped;
            let (r, sv, c) = (
                p.route.map(|f| f.id),
                p.service.map(|f| f.id),
                p.consumer.map(|f| f.id),
            );
            match (c, r, sv) {
                (Some(c), Some(r), Some(sv)) => {
                    s.consumer_route_service.insert((c, r, sv), inst);
                }
                (Some(c), Some(r), None) => {
                    s.consumer_route.insert((c, r), inst);
                }
                (Some(c), None, Some(sv)) => {
                    s.consumer_service.insert((c, sv), inst);
                }
                (None, Some(r), Some(sv)) => {
                    s.route_service.insert((r, sv), inst);
                }
                (Some(c), None, None) => {
                    s.consumer.insert(c, inst);
                }
                (None, Some(r), None) => {
                    s.route.insert(r, inst);
                }
                (None, None, Some(sv)) => {
                    s.service.insert(sv, inst);
                }
                (None, None, None) => s.global = Some(inst),
            }
        }
        let mut slots: Vec<Slot> = slots.into_values().collect();
        // Ties in priority run in name order, so every DP runs them the same way.
        slots.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(b.name)));
        let last = rt.shared::<crate::consumers::LastIndex>();
        let consumers = if slots.is_empty() {
            // Nothing to carry an index for; an old one would only pin its config.
            last.clear();
            Consumers::default()
        } else {
            Consumers::build(state, &last)
        };
        (PluginSet { slots, consumers }, warnings)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn consumers(&self) -> &Consumers {
        &self.consumers
    }

    /// The instance of the plugin in `slot` that applies to this request now.
    fn resolve(&self, slot: usize, cx: &Ctx<'_>) -> Option<&Inst> {
        let s = &self.slots[slot].scoped;
        let (r, sv) = (cx.route_id, cx.service_id);
        let c = cx.consumer.as_ref().map(|c| c.id);
        let found = c
            .zip(r)
            .zip(sv)
            .and_then(|((c, r), sv)| s.consumer_route_service.get(&(c, r, sv)))
            .or_else(|| c.zip(r).and_then(|k| s.consumer_route.get(&k)))
            .or_else(|| c.zip(sv).and_then(|k| s.consumer_service.get(&k)))
            .or_else(|| r.zip(sv).and_then(|k| s.route_service.get(&k)))
            .or_else(|| c.and_then(|c| s.consumer.get(&c)))
            .or_else(|| r.and_then(|r| s.route.get(&r)))
            .or_else(|| sv.and_then(|sv| s.service.get(&sv)))
            .or(s.global.as_ref())?;
        (found.protocols & cx.protocol.bit() != 0).then_some(found)
    }

    /// The access phase, in priority order. Returns the instances that apply to the
    /// request and, when one answered the request itself, its response. As in Kong
    /// (`delay_response`), the instances after an exit do not run their access phase
    /// but are still collected, so their response phases see the exit's response
    /// (response-transformer on a 403, cors headers on a 401).
    pub async fn access(&self, cx: &mut Ctx<'_>, req: &mut Req) -> (Ran, Option<Exit>) {
        let mut ran = Vec::new();
        let mut exit = None;
        for i in 0..self.slots.len() {
            let Some(inst) = self.resolve(i, cx).cloned() else {
                continue;
            };
            if exit.is_none() {
                cx.plugin = PluginScope {
                    id: inst.id,
                    route: inst.route,
                    service: inst.service,
                };
                let flow = match inst.plugin.access(cx, req) {
                    Access::Done(f) => f,
                    Access::Pending(fut) => fut.await,
                };
                if let Flow::Exit(e) = flow {
                    exit = Some(e);
                }
            }
            ran.push(inst);
        }
        (ran, exit)
    }

    /// Response headers for the instances that ran; `cx.response_headers` are added
    /// first, so a plugin sees (and may change) them.
    pub fn response_headers(ran: &Ran, cx: &mut Ctx<'_>, resp: &mut http::response::Parts) {
        // `drain` names a header once for all its values.
        let mut last = None;
        for (name, value) in cx.response_headers.drain() {
            if let Some(n) = name {
                resp.headers.remove(&n);
                last = Some(n);
            }
            if let Some(n) = &last {
                resp.headers.append(n.clone(), value);
            }
        }
        for inst in ran {
            inst.plugin.response_headers(cx, resp);
        }
    }

    /// Whether any instance that ran needs the whole response body.
    pub fn wants_response_body(ran: &Ran, cx: &Ctx<'_>, resp: &http::response::Parts) -> bool {
        ran.iter().any(|i| i.plugin.wants_response_body(cx, resp))
    }

    pub fn response_body(
        ran: &Ran,
        cx: &mut Ctx<'_>,
        resp: &http::response::Parts,
        body: &mut Bytes,
    ) {
        for inst in ran {
            if inst.plugin.wants_response_body(cx, resp) {
                inst.plugin.response_body(cx, resp, body);
            }
        }
    }

    pub fn log(ran: &Ran, cx: &Ctx<'_>, resp: &http::response::Parts) {
        for inst in ran {
            inst.plugin.log(cx, resp);
        }
    }
}

#[cfg(test)]
mod tests;
