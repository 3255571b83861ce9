use super::*;

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::json;

use crate::codec::{decode_event, decode_snapshot, encode_event, encode_snapshot};

fn fixed(n: u128) -> Fixed {
    Fixed {
        id: Uuid::from_u128(0xa000_0000_0000_0000_0000_0000_0000_0000 + n),
        now: 1_700_000_000 + n as i64,
        entropy: n * 7919,
    }
}

fn cmd(n: u128, op: Op) -> Command {
    Command {
        request_id: Uuid::from_u128(n),
        fixed: fixed(n),
        op,
    }
}

fn create(kind: EntityKind, body: Value) -> Op {
    Op::Create {
        kind,
        body: body.to_string(),
    }
}

fn run(m: &mut Machine, n: u128, op: Op) -> Outcome {
    m.execute(&cmd(n, op)).0
}

/// A machine holding service `s` (command 1) and its route `r` (command 2).
fn service_with_route() -> Machine {
    let mut m = Machine::new();
    run(
        &mut m,
        1,
        create(EntityKind::Service, json!({"name": "s", "host": "a.com"})),
    )
    .unwrap();
    let route = json!({"name": "r", "paths": ["/"], "service": {"name": "s"}});
    run(&mut m, 2, create(EntityKind::Route, route)).unwrap();
    m
}

// === examples ===

#[test]
fn create_assigns_the_fixed_id_and_one_version() {
    let mut m = Machine::new();
    let out = run(
        &mut m,
        1,
        create(
            EntityKind::Service,
            json!({"name": "a", "host": "example.com"}),
        ),
    );
    let applied = out.expect("valid service");
    assert_eq!(applied.entity, Some((EntityKind::Service, fixed(1).id)));
    assert_eq!(applied.version, 1);
    assert_eq!(m.config.version(), 1);
    let svc = m
        .config
        .get(EntityKind::Service, fixed(1).id)
        .unwrap()
        .to_json();
    assert_eq!(svc["created_at"], json!(fixed(1).now));
    assert_eq!(svc["port"], json!(80));
}

#[test]
fn duplicate_names_are_a_409_with_kongs_body() {
    let mut m = Machine::new();
    run(
        &mut m,
        1,
        create(EntityKind::Service, json!({"name": "x", "host": "a.com"})),
    )
    .unwrap();
    let err = run(
        &mut m,
        2,
        create(EntityKind::Service, json!({"name": "x", "host": "b.com"})),
    )
    .unwrap_err();
    assert_eq!(err.status(), 409);
    assert_eq!(
        err.to_json(),
        json!({"code": 5, "name": "unique constraint violation",
               "message": "UNIQUE violation detected on '{name=\"x\"}'",
               "fields": {"name": "x"}})
    );
    assert_eq!(m.config.version(), 1);
}

#[test]
fn a_retried_request_applies_once() {
    let mut m = Machine::new();
    let c = cmd(1, create(EntityKind::Consumer, json!({"username": "bob"})));
    let (first, events) = m.execute(&c);
    assert_eq!(events.len(), 1);
    let (second, again) = m.execute(&c);
    assert!(again.is_empty());
    assert_eq!(first, second);
    assert_eq!(m.config.version(), 1);
    assert_eq!(m.config.count(EntityKind::Consumer), 1);
}

#[test]
fn deleting_a_referenced_service_is_refused_and_cascades_go_children_first() {
    let mut m = service_with_route();
    run(
        &mut m,
        3,
        create(
            EntityKind::Plugin,
            json!({"name": "correlation-id", "service": {"name": "s"}}),
        ),
    )
    .unwrap();
    let err = run(
        &mut m,
        4,
        Op::Delete {
            kind: EntityKind::Service,
            key: EntityRef::Key("s".into()),
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_json(),
        json!({"code": 4, "name": "foreign key violation",
               "message": "an existing 'routes' entity references this 'services' entity",
               "fields": {"@referenced_by": "routes"}})
    );
    assert_eq!(m.config.len(), 3);

    // Without the route, the service goes and takes its plugin with it.
    run(
        &mut m,
        5,
        Op::Delete {
            kind: EntityKind::Route,
            key: EntityRef::Key("r".into()),
        },
    )
    .unwrap();
    let (out, events) = m.execute(&cmd(
        6,
        Op::Delete {
            kind: EntityKind::Service,
            key: EntityRef::Key("s".into()),
        },
    ));
    out.unwrap();
    let kinds: Vec<EntityKind> = events.iter().map(|e| e.change.kind()).collect();
    assert_eq!(kinds, vec![EntityKind::Plugin, EntityKind::Service]);
    assert!(m.config.is_empty());
    assert_eq!(m.config.hash(), tidegate_model::ConfigHash::EMPTY);
}

#[test]
fn deleting_what_is_absent_succeeds_without_a_version() {
    let mut m = Machine::new();
    let out = run(
        &mut m,
        1,
        Op::Delete {
            kind: EntityKind::Service,
            key: EntityRef::Key("nope".into()),
        },
    );
    assert_eq!(out.unwrap().events, 0);
    assert_eq!(m.config.version(), 0);
}

#[test]
fn patch_merges_and_keeps_id_and_created_at() {
    let mut m = Machine::new();
    run(
        &mut m,
        1,
        create(
            EntityKind::Service,
            json!({"name": "s", "host": "a.com", "path": "/x"}),
        ),
    )
    .unwrap();
    run(
        &mut m,
        2,
        Op::Patch {
            kind: EntityKind::Service,
            key: EntityRef::Key("s".into()),
            body: json!({"retries": 9, "path": null}).to_string(),
        },
    )
    .unwrap();
    let svc = m
        .config
        .get(EntityKind::Service, fixed(1).id)
        .unwrap()
        .to_json();
    assert_eq!(svc["retries"], json!(9));
    assert_eq!(svc["path"], Value::Null);
    assert_eq!(svc["host"], json!("a.com"));
    assert_eq!(svc["created_at"], json!(fixed(1).now));
    assert_eq!(svc["updated_at"], json!(fixed(2).now));

    let missing = run(
        &mut m,
        3,
        Op::Patch {
            kind: EntityKind::Service,
            key: EntityRef::Key("nope".into()),
            body: "{}".into(),
        },
    )
    .unwrap_err();
    assert_eq!(missing.status(), 404);
}

#[test]
fn upsert_by_name_creates_then_replaces_with_defaults() {
    let mut m = Machine::new();
    let upsert = |body: Value| Op::Upsert {
        kind: EntityKind::Service,
        key: EntityRef::Key("s".into()),
        body: body.to_string(),
    };
    run(
        &mut m,
        1,
        upsert(json!({"host": "a.com", "retries": 1, "name": "ignored"})),
    )
    .unwrap();
    let id = m
        .config
        .find_by_key(EntityKind::Service, "s")
        .expect("the URL name wins");
    run(&mut m, 2, upsert(json!({"host": "b.com"}))).unwrap();
    let svc = m.config.get(EntityKind::Service, id).unwrap().to_json();
    assert_eq!(svc["host"], json!("b.com"));
    assert_eq!(
        svc["retries"],
        json!(5),
        "PUT replaces: unspecified fields go back to defaults"
    );
    assert_eq!(m.config.count(EntityKind::Service), 1);
}

#[test]
fn reimporting_the_same_entities_produces_no_events() {
    let mut m = Machine::new();
    run(
        &mut m,
        1,
        create(EntityKind::Service, json!({"name": "s", "host": "a.com"})),
    )
    .unwrap();
    run(
        &mut m,
        2,
        create(EntityKind::Consumer, json!({"username": "u"})),
    )
    .unwrap();
    let entities: Vec<Entity> = m.config.iter().cloned().collect();
    let (out, events) = m.execute(&cmd(
        3,
        Op::Import {
            entities: entities.clone(),
        },
    ));
    assert_eq!(out.unwrap().events, 0);
    assert!(events.is_empty());

    // Dropping one entity from the import deletes exactly that one.
    let fewer: Vec<Entity> = entities
        .into_iter()
        .filter(|e| e.kind() != EntityKind::Consumer)
        .collect();
    let (_, events) = m.execute(&cmd(4, Op::Import { entities: fewer }));
    assert_eq!(events.len(), 1);
    assert!(matches!(
        events[0].change,
        Change::Delete {
            kind: EntityKind::Consumer,
            ..
        }
    ));
}

#[test]
fn an_import_with_a_dangling_reference_is_refused_whole() {
    let mut m = service_with_route();
    // Keep the route, drop its service.
    let route_only: Vec<Entity> = m.config.iter_kind(EntityKind::Route).cloned().collect();
    let before = m.config.clone();
    let err = run(
        &mut m,
        3,
        Op::Import {
            entities: route_only,
        },
    )
    .unwrap_err();
    assert_eq!(err.code, tidegate_model::ErrorCode::DeclarativeConfig);
    assert!(
        err.message.contains("no such entry in 'services'"),
        "{}",
        err.message
    );
    assert_eq!(m.config, before);
}

// === properties over random Command sequences ===

/// An abstract admin action over a small universe of names, so that sequences hit
/// conflicts, dangling references, cascades and retries often.
#[derive(Debug, Clone)]
enum Action {
    Service {
        name: u8,
        host: u8,
        retries: u8,
    },
    Route {
        name: u8,
        service: u8,
        path: u8,
    },
    Consumer {
        name: u8,
    },
    KeyAuth {
        consumer: u8,
        key: u8,
    },
    Acl {
        consumer: u8,
        group: u8,
    },
    Plugin {
        service: Option<u8>,
    },
    Upstream {
        name: u8,
    },
    Target {
        upstream: u8,
        port: u8,
    },
    PatchService {
        name: u8,
        retries: u8,
    },
    UpsertConsumer {
        name: u8,
        custom: u8,
    },
    Delete {
        kind: u8,
        name: u8,
    },
    Invalid {
        port: u32,
    },
    /// Re-send the command `back` steps earlier with its request id.
    Retry {
        back: u8,
    },
    /// Replace the whole config by what it was `back` steps earlier.
    Import {
        back: u8,
    },
    /// A service and a route on it in one batch; often collides, then must undo.
    Batch {
        service: u8,
        route: u8,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..4u8, 0..3u8, 0..6u8).prop_map(|(name, host, retries)| Action::Service { name, host, retries }),
        4 => (0..4u8, 0..4u8, 0..3u8).prop_map(|(name, service, path)| Action::Route { name, service, path }),
        3 => (0..4u8).prop_map(|name| Action::Consumer { name }),
        2 => (0..4u8, 0..4u8).prop_map(|(consumer, key)| Action::KeyAuth { consumer, key }),
        2 => (0..4u8, 0..2u8).prop_map(|(consumer, group)| Action::Acl { consumer, group }),
        2 => proptest::option::of(0..4u8).prop_map(|service| Action::Plugin { service }),
        1 => (0..2u8).prop_map(|name| Action::Upstream { name }),
        2 => (0..2u8, 0..3u8).prop_map(|(upstream, port)| Action::Target { upstream, port }),
        2 => (0..4u8, 0..6u8).prop_map(|(name, retries)| Action::PatchService { name, retries }),
        2 => (0..4u8, 0..3u8).prop_map(|(name, custom)| Action::UpsertConsumer { name, custom }),
        3 => (0..5u8, 0..4u8).prop_map(|(kind, name)| Action::Delete { kind, name }),
        1 => (65_536..70_000u32).prop_map(|port| Action::Invalid { port }),
        1 => (1..6u8).prop_map(|back| Action::Retry { back }),
        1 => (0..8u8).prop_map(|back| Action::Import { back }),
        2 => (0..4u8, 0..4u8).prop_map(|(service, route)| Action::Batch { service, route }),
    ]
}

/// Turns actions into Commands; imports and retries look at what came before.
fn commands(actions: &[Action]) -> Vec<Command> {
    let mut m = Machine::new();
    let mut out: Vec<Command> = Vec::new();
    let mut history: Vec<Vec<Entity>> = vec![Vec::new()];
    for (i, a) in actions.iter().enumerate() {
        let n = i as u128 + 1;
        let svc = |i: u8| format!("svc-{i}");
        let op = match a {
            Action::Service {
                name,
                host,
                retries,
            } => create(
                EntityKind::Service,
                json!({"name": svc(*name), "host": format!("h{host}.example"), "retries": retries}),
            ),
            Action::Route {
                name,
                service,
                path,
            } => create(
                EntityKind::Route,
                json!({"name": format!("route-{name}"), "paths": [format!("/p{path}")],
                       "service": {"name": svc(*service)}}),
            ),
            Action::Consumer { name } => create(
                EntityKind::Consumer,
                json!({"username": format!("user-{name}")}),
            ),
            Action::KeyAuth { consumer, key } => create(
                EntityKind::KeyauthCredential,
                json!({"key": format!("key-{key}"), "consumer": {"username": format!("user-{consumer}")}}),
            ),
            Action::Acl { consumer, group } => create(
                EntityKind::Acl,
                json!({"group": format!("g{group}"), "consumer": {"username": format!("user-{consumer}")}}),
            ),
            Action::Plugin { service } => {
                let mut body = json!({"name": "correlation-id"});
                if let Some(s) = service {
                    body["service"] = json!({"name": svc(*s)});
                }
                create(EntityKind::Plugin, body)
            }
            Action::Upstream { name } => create(
                EntityKind::Upstream,
                json!({"name": format!("up{name}.internal")}),
            ),
            Action::Target { upstream, port } => create(
                EntityKind::Target,
                json!({"target": format!("10.0.0.1:{}", 8000 + *port as u16),
                       "upstream": {"name": format!("up{upstream}.internal")}}),
            ),
            Action::PatchService { name, retries } => Op::Patch {
                kind: EntityKind::Service,
                key: EntityRef::Key(svc(*name)),
                body: json!({"retries": retries}).to_string(),
            },
            Action::UpsertConsumer { name, custom } => Op::Upsert {
                kind: EntityKind::Consumer,
                key: EntityRef::Key(format!("user-{name}")),
                body: json!({"custom_id": format!("c{custom}")}).to_string(),
            },
            Action::Delete { kind, name } => {
                let (kind, key) = match kind {
                    0 => (EntityKind::Service, svc(*name)),
                    1 => (EntityKind::Route, format!("route-{name}")),
                    2 => (EntityKind::Consumer, format!("user-{name}")),
                    3 => (EntityKind::Upstream, format!("up{name}.internal")),
                    _ => (EntityKind::KeyauthCredential, format!("key-{name}")),
                };
                Op::Delete {
                    kind,
                    key: EntityRef::Key(key),
                }
            }
            Action::Invalid { port } => create(
                EntityKind::Service,
                json!({"host": "x.example", "port": port}),
            ),
            Action::Retry { back } => {
                if let Some(prev) = out
                    .len()
                    .checked_sub(*back as usize)
                    .and_then(|j| out.get(j))
                {
                    let c = prev.clone();
                    let _ = m.execute(&c);
                    out.push(c);
                    history.push(m.config.iter().cloned().collect());
                    continue;
                }
                create(
                    EntityKind::Consumer,
                    json!({"username": format!("late-{i}")}),
                )
            }
            Action::Batch { service, route } => Op::Batch {
                ops: vec![
                    create(
                        EntityKind::Service,
                        json!({"name": svc(*service), "host": "batch.example"}),
                    ),
                    create(
                        EntityKind::Route,
                        json!({"name": format!("route-{route}"), "hosts": ["b.example"],
                               "service": {"name": svc(*service)}}),
                    ),
                ],
            },
            Action::Import { back } => {
                let j = history.len().saturating_sub(1 + *back as usize);
                Op::Import {
                    entities: history[j].clone(),
                }
            }
        };
        let c = cmd(n, op);
        let _ = m.execute(&c);
        out.push(c);
        history.push(m.config.iter().cloned().collect());
    }
    out
}

/// Runs the commands, checking at each step that a rejection changed nothing, and
/// returns the machine and every Event in order.
fn execute_all(cmds: &[Command]) -> (Machine, Vec<Event>) {
    let mut m = Machine::new();
    let mut events = Vec::new();
    for c in cmds {
        let before = m.config.clone();
        let retry = m.requests.get(&c.request_id).cloned();
        let (outcome, evs) = m.execute(c);
        if let Some(first) = retry {
            assert_eq!(outcome, first, "a retry got a different answer");
            assert!(evs.is_empty(), "a retry applied again");
            assert_eq!(m.config, before, "a retry changed the config");
            continue;
        }
        match &outcome {
            Err(_) => assert_eq!(m.config, before, "a rejected command changed the config"),
            Ok(a) => {
                assert_eq!(a.version, m.config.version());
                assert_eq!(a.events, evs.len() as u64);
            }
        }
        events.extend(evs);
    }
    (m, events)
}

fn replay(events: &[Event]) -> ConfigState {
    let mut s = ConfigState::new();
    for e in events {
        s.apply(e).expect("events are consecutive");
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Replaying every Event equals restoring a snapshot taken at any version and
    /// applying the tail: same entities, same version, same hash.
    #[test]
    fn snapshot_plus_tail_equals_full_replay(actions in prop::collection::vec(action(), 1..60), cut in any::<prop::sample::Index>()) {
        let cmds = commands(&actions);
        let (m, events) = execute_all(&cmds);
        let full = replay(&events);
        prop_assert_eq!(&full, &m.config);
        prop_assert_eq!(full.recompute_hash(), full.hash());

        let k = cut.index(events.len() + 1);
        let head = replay(&events[..k]);
        let bytes = encode_snapshot(&head.snapshot());
        let restored = ConfigState::from_snapshot(decode_snapshot(&bytes).unwrap()).unwrap();
        prop_assert_eq!(&restored, &head);
        let mut resumed = restored;
        for e in &events[k..] {
            resumed.apply(e).unwrap();
        }
        prop_assert_eq!(&resumed, &full);
        prop_assert_eq!(resumed.hash(), full.hash());
    }

    /// The same final config built in another order has the same hash.
    #[test]
    fn hash_does_not_depend_on_order(actions in prop::collection::vec(action(), 1..60), seed in any::<u64>()) {
        let (m, _) = execute_all(&commands(&actions));
        let mut entities: Vec<Entity> = m.config.iter().cloned().collect();
        // A deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..entities.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            entities.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut s = ConfigState::new();
        for (i, e) in entities.iter().enumerate() {
            s.apply(&Event { version: i as u64 + 1, change: Change::Put(e.clone()) }).unwrap();
        }
        prop_assert_eq!(s.hash(), m.config.hash());

        // And through Commands: re-creating every entity from its JSON, parents first but
        // otherwise shuffled, gives the same entities and hash.
        entities.sort_by_key(|e| e.kind());
        let mut fresh = Machine::new();
        for (i, e) in entities.iter().enumerate() {
            let c = Command {
                request_id: Uuid::from_u128(1_000_000 + i as u128),
                fixed: fixed(1_000_000 + i as u128),
                op: create(e.kind(), e.to_json()),
            };
            let (out, _) = fresh.execute(&c);
            prop_assert!(out.is_ok(), "re-creating {:?} failed: {:?}", e, out);
        }
        prop_assert_eq!(fresh.config.hash(), m.config.hash());
        let a: Vec<&Entity> = fresh.config.iter().collect();
        let b: Vec<&Entity> = m.config.iter().collect();
        prop_assert_eq!(a, b);
    }

    /// Encoding then decoding is the identity for Events, Snapshots and Commands.
    #[test]
    fn encodings_round_trip(actions in prop::collection::vec(action(), 1..40)) {
        let cmds = commands(&actions);
        let (m, events) = execute_all(&cmds);
        for e in &events {
            prop_assert_eq!(&decode_event(&encode_event(e)).unwrap(), e);
        }
        let snap = m.config.snapshot();
        prop_assert_eq!(decode_snapshot(&encode_snapshot(&snap)).unwrap(), snap);
        for c in &cmds {
            let bytes = postcard::to_stdvec(c).unwrap();
            prop_assert_eq!(&postcard::from_bytes::<Command>(&bytes).unwrap(), c);
        }
    }
}

#[test]
fn a_batch_applies_all_or_nothing() {
    let mut m = Machine::new();
    run(
        &mut m,
        1,
        create(EntityKind::Service, json!({"name": "s", "host": "a.com"})),
    )
    .unwrap();
    let before = m.config.clone();
    let batch = |name: &str, second_service: &str| Op::Batch {
        ops: vec![
            create(
                EntityKind::Route,
                json!({"name": name, "paths": ["/a"], "service": {"name": "s"}}),
            ),
            Op::Patch {
                kind: EntityKind::Service,
                key: EntityRef::Key("s".into()),
                body: json!({"retries": 1}).to_string(),
            },
            create(
                EntityKind::Service,
                json!({"name": second_service, "host": "b.com"}),
            ),
        ],
    };
    // The third op collides with the existing name: the route and the patch are undone.
    let err = run(&mut m, 2, batch("r", "s")).unwrap_err();
    assert_eq!(err.status(), 409);
    assert_eq!(m.config, before);
    assert_eq!(m.config.recompute_hash(), m.config.hash());

    let (out, events) = m.execute(&cmd(3, batch("r", "t")));
    let applied = out.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(applied.version, 4);
    assert_eq!(applied.entity.map(|(k, _)| k), Some(EntityKind::Route));
    let ids: BTreeSet<Uuid> = m.config.iter().map(|e| e.id()).collect();
    assert_eq!(ids.len(), 3, "each op of the batch got its own id");
    // The events replay to the same state.
    let mut replica = ConfigState::from_snapshot(before.snapshot()).unwrap();
    for e in &events {
        replica.apply(e).unwrap();
    }
    assert_eq!(replica, m.config);

    let nested = run(
        &mut m,
        4,
        Op::Batch {
            ops: vec![Op::Batch { ops: vec![] }],
        },
    )
    .unwrap_err();
    assert_eq!(nested.status(), 405);
}

#[test]
fn a_group_applies_each_member_on_its_own() {
    let mut m = Machine::new();
    let members = vec![
        cmd(1, create(EntityKind::Consumer, json!({"username": "ann"}))),
        // Refused (duplicate username): must not undo `ann` nor stop `bob`.
        cmd(2, create(EntityKind::Consumer, json!({"username": "ann"}))),
        cmd(3, create(EntityKind::Consumer, json!({"username": "bob"}))),
        // A retry of command 3 inside the same group answers command 3's outcome.
        cmd(3, create(EntityKind::Consumer, json!({"username": "bob"}))),
    ];
    let (outcomes, events) = m.execute_group(&members);
    assert_eq!(outcomes.len(), 4);
    let ann = outcomes[0].as_ref().unwrap();
    assert_eq!(ann.version, 1);
    assert_eq!(outcomes[1].as_ref().unwrap_err().status(), 409);
    assert_eq!(outcomes[2].as_ref().unwrap().version, 2);
    assert_eq!(outcomes[3], outcomes[2]);
    assert_eq!(events.len(), 2);
    assert_eq!(m.config.version(), 2);
    assert_eq!(m.config.iter_kind(EntityKind::Consumer).count(), 2);

    // The same members one entry each reach the same state and events.
    let mut one_by_one = Machine::new();
    let mut separate = Vec::new();
    for c in &members {
        separate.extend(one_by_one.execute(c).1);
    }
    assert_eq!(one_by_one.config, m.config);
    assert_eq!(separate, events);

    let nested = m.execute(&cmd(
        9,
        Op::Group {
            commands: vec![cmd(
                10,
                create(EntityKind::Consumer, json!({"username": "cy"})),
            )],
        },
    ));
    assert_eq!(nested.0.unwrap_err().status(), 405);
    let in_batch = run(
        &mut m,
        11,
        Op::Batch {
            ops: vec![Op::Group { commands: vec![] }],
        },
    );
    assert_eq!(in_batch.unwrap_err().status(), 405);
    assert_eq!(m.config.version(), 2);
}
