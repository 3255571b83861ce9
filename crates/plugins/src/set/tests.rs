use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::consumers::ConsumerInfo;

/// Answers with its own tag, so a test sees which instance ran.
struct Tag(&'static str);

impl Plugin for Tag {
    fn access<'a>(&'a self, _cx: &'a mut Ctx<'_>, _req: &'a mut Req) -> Access<'a> {
        Access::exit(Exit::error(200, self.0))
    }
}

fn inst(tag: &'static str, protocols: u8) -> Inst {
    Inst {
        id: Uuid::nil(),
        name: "tag",
        plugin: Arc::new(Tag(tag)),
        protocols,
        route: None,
        service: None,
    }
}

const ALL: u8 = 0b1111;

fn ids() -> (Uuid, Uuid, Uuid) {
    (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3))
}

/// Every scope configured, each tagged with its name.
fn every_scope() -> PluginSet {
    let (c, r, s) = ids();
    let mut sc = Scoped {
        global: Some(inst("global", ALL)),
        ..Default::default()
    };
    sc.service.insert(s, inst("service", ALL));
    sc.route.insert(r, inst("route", ALL));
    sc.consumer.insert(c, inst("consumer", ALL));
    sc.route_service.insert((r, s), inst("route+service", ALL));
    sc.consumer_service
        .insert((c, s), inst("consumer+service", ALL));
    sc.consumer_route
        .insert((c, r), inst("consumer+route", ALL));
    sc.consumer_route_service
        .insert((c, r, s), inst("consumer+route+service", ALL));
    PluginSet {
        slots: vec![Slot {
            name: "tag",
            priority: 1,
            scoped: sc,
        }],
        consumers: Consumers::default(),
    }
}

fn consumer(id: Uuid) -> Arc<ConsumerInfo> {
    Arc::new(ConsumerInfo {
        id,
        username: None,
        custom_id: None,
        groups: Arc::from(Vec::new()),
    })
}

fn resolved(set: &PluginSet, c: Option<Uuid>, r: Option<Uuid>, s: Option<Uuid>) -> Option<String> {
    let consumers = Consumers::default();
    let mut cx = Ctx::new(
        "id",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        Protocol::Http,
        &consumers,
        0.0,
    );
    cx.route_id = r;
    cx.service_id = s;
    cx.consumer = c.map(consumer);
    let inst = set.resolve(0, &cx)?;
    let mut req = Req {
        method: http::Method::GET,
        path: "/".into(),
        query: None,
        headers: Default::default(),
        body: crate::RequestBody::Buffered(Bytes::new()),
        upstream_path: None,
    };
    let tag = match inst.plugin.access(&mut cx, &mut req) {
        Access::Done(Flow::Exit(Exit {
            body: crate::ExitBody::Error(tag),
            ..
        })) => Some(tag),
        _ => None,
    };
    tag
}

/// Kong's precedence, one row per rule: removing the most specific scope each time shows
/// the next one wins.
#[test]
fn the_most_specific_scope_wins_in_kongs_order() {
    let (c, r, s) = ids();
    let order = [
        "consumer+route+service",
        "consumer+route",
        "consumer+service",
        "route+service",
        "consumer",
        "route",
        "service",
        "global",
    ];
    let mut set = every_scope();
    for want in order {
        assert_eq!(
            resolved(&set, Some(c), Some(r), Some(s)).as_deref(),
            Some(want)
        );
        let sc = &mut set.slots[0].scoped;
        match want {
            "consumer+route+service" => sc.consumer_route_service.clear(),
            "consumer+route" => sc.consumer_route.clear(),
            "consumer+service" => sc.consumer_service.clear(),
            "route+service" => sc.route_service.clear(),
            "consumer" => sc.consumer.clear(),
            "route" => sc.route.clear(),
            "service" => sc.service.clear(),
            _ => sc.global = None,
        }
    }
    assert_eq!(resolved(&set, Some(c), Some(r), Some(s)), None);
}

#[test]
fn scopes_that_name_another_entity_do_not_apply() {
    let (c, r, s) = ids();
    let other = Uuid::from_u128(9);
    let set = every_scope();
    assert_eq!(
        resolved(&set, None, Some(r), Some(s)).as_deref(),
        Some("route+service")
    );
    assert_eq!(
        resolved(&set, Some(other), Some(r), Some(s)).as_deref(),
        Some("route+service")
    );
    assert_eq!(
        resolved(&set, Some(c), Some(other), Some(s)).as_deref(),
        Some("consumer+service")
    );
    assert_eq!(
        resolved(&set, Some(c), Some(other), Some(other)).as_deref(),
        Some("consumer")
    );
    assert_eq!(
        resolved(&set, None, Some(other), Some(s)).as_deref(),
        Some("service")
    );
    assert_eq!(resolved(&set, None, None, None).as_deref(), Some("global"));
}

/// An instance whose `protocols` leave out the request's does not run, and a less
/// specific one does not stand in for it (Kong resolves first, then checks protocols).
#[test]
fn an_instance_for_other_protocols_does_not_run() {
    let (_, r, _) = ids();
    let mut sc = Scoped {
        global: Some(inst("global", ALL)),
        ..Default::default()
    };
    sc.route.insert(r, inst("route", Protocol::Https.bit()));
    let set = PluginSet {
        slots: vec![Slot {
            name: "tag",
            priority: 1,
            scoped: sc,
        }],
        consumers: Consumers::default(),
    };
    assert_eq!(resolved(&set, None, Some(r), None), None);
    assert_eq!(resolved(&set, None, None, None).as_deref(), Some("global"));
}
