use super::*;

use serde_json::json;
use tidegate_model::{Ctx, Fixed, Lookup, NoLookup};

use crate::command::{Command, EntityRef, Op};
use crate::machine::Machine;
use crate::state::ConfigState;

/// A small config built the same way every time: fixed ids, times and entropy.
fn golden_machine() -> (Machine, Vec<Command>) {
    let bodies = [
        (
            EntityKind::Service,
            json!({"name": "billing", "url": "https://billing.internal:8443/v1", "tags": ["prod"]}),
        ),
        (
            EntityKind::Route,
            json!({"name": "billing-route", "paths": ["/billing", "~/invoices/(?<id>\\d+)$"], "methods": ["GET"], "service": {"name": "billing"}}),
        ),
        (
            EntityKind::Consumer,
            json!({"username": "alice", "custom_id": "a-1"}),
        ),
        (
            EntityKind::KeyauthCredential,
            json!({"key": "k-1", "consumer": {"username": "alice"}}),
        ),
        (
            EntityKind::Acl,
            json!({"group": "admins", "consumer": {"username": "alice"}}),
        ),
        (
            EntityKind::Plugin,
            json!({"name": "correlation-id", "route": {"name": "billing-route"}}),
        ),
        (EntityKind::Upstream, json!({"name": "billing.upstream"})),
        (
            EntityKind::Target,
            json!({"target": "10.0.0.7:9000", "weight": 20, "upstream": {"name": "billing.upstream"}}),
        ),
    ];
    let mut m = Machine::new();
    let mut cmds = Vec::new();
    for (i, (kind, body)) in bodies.into_iter().enumerate() {
        let n = i as u128 + 1;
        let c = Command {
            request_id: Uuid::from_u128(n),
            fixed: Fixed {
                id: Uuid::from_u128(0x1000 + n),
                now: 1_700_000_000 + n as i64,
                entropy: n,
            },
            op: Op::Create {
                kind,
                body: body.to_string(),
            },
        };
        m.execute(&c).0.expect("golden commands are valid");
        cmds.push(c);
    }
    cmds.push(Command {
        request_id: Uuid::from_u128(99),
        fixed: Fixed {
            id: Uuid::from_u128(0x1099),
            now: 1_700_000_099,
            entropy: 99,
        },
        op: Op::Delete {
            kind: EntityKind::Consumer,
            key: EntityRef::Key("alice".into()),
        },
    });
    (m, cmds)
}

/// Compares `bytes` with the stored golden file; `UPDATE_GOLDEN=1` rewrites it. A failure
/// here means the wire or log format changed: that breaks mixed-version clusters unless
/// the change follows the rules at the top of codec.rs.
fn check_golden(name: &str, bytes: &[u8]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.hex"));
    let hex_now = hex::encode(bytes);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{hex_now}\n")).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 once)", path.display()));
    assert_eq!(
        stored.trim(),
        hex_now,
        "the encoding of {name} changed; see codec.rs for the compatibility rules"
    );
}

#[test]
fn golden_snapshot() {
    let (m, _) = golden_machine();
    let snap = m.config.snapshot();
    let bytes = encode_snapshot(&snap);
    check_golden("snapshot-v1", &bytes);
    // Encoding straight from the state writes the same bytes.
    assert_eq!(encode_state(&m.config), bytes);
    let back = ConfigState::from_snapshot(decode_snapshot(&bytes).unwrap()).unwrap();
    assert_eq!(back, m.config);
    // The hash is part of the contract between CP and DP versions too.
    check_golden("config-hash-v1", m.config.hash().to_hex().as_bytes());
}

#[test]
fn golden_events_and_commands() {
    let (_, cmds) = golden_machine();
    let mut m = Machine::new();
    let mut all = Vec::new();
    for c in &cmds {
        let (out, events) = m.execute(c);
        out.unwrap();
        for e in events {
            all.extend_from_slice(&encode_event(&e));
        }
    }
    check_golden("events-v1", &all);
    let mut log = Vec::new();
    for c in &cmds {
        log.extend_from_slice(&postcard::to_stdvec(c).unwrap());
    }
    check_golden("commands-v1", &log);
}

/// An older reader keeps working when a newer writer appends a field at the end of an
/// entity: the rule the envelope exists for.
#[test]
fn an_older_reader_ignores_fields_appended_by_a_newer_schema() {
    let ctx = Ctx {
        fixed: Fixed {
            id: Uuid::from_u128(5),
            now: 1,
            entropy: 0,
        },
        lookup: &NoLookup,
        force_id: None,
        transform: true,
    };
    let consumer =
        Entity::from_json(EntityKind::Consumer, &json!({"username": "u"}), &ctx).unwrap();
    let mut bytes = postcard::to_stdvec(&consumer).unwrap();
    // A hypothetical schema 2 appended `type: u8` and `username_lower: String`.
    bytes.extend_from_slice(&postcard::to_stdvec(&(3u8, "u".to_string())).unwrap());
    let newer = EntityBody {
        schema: ENTITY_SCHEMA + 1,
        bytes: bytes.clone(),
    };
    assert_eq!(decode_entity(&newer).unwrap(), consumer);

    // The same trailing bytes under our own schema number mean corruption.
    let same = EntityBody {
        schema: ENTITY_SCHEMA,
        bytes,
    };
    assert!(matches!(
        decode_entity(&same),
        Err(CodecError::Trailing { .. })
    ));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for input in [
        &b""[..],
        b"\xff\xff\xff\xff",
        b"\x01\x02\x03",
        &[0u8; 64][..],
    ] {
        let _ = decode_event(input);
        let _ = decode_snapshot(input);
    }
    assert!(decode_event(b"").is_err());
    let mut snap = encode_snapshot(&crate::Snapshot {
        version: 1,
        hash: ConfigHash::EMPTY,
        entities: vec![],
    });
    snap[0] = 9; // format 9
    assert_eq!(decode_snapshot(&snap), Err(CodecError::SnapshotTooNew(9)));
}

/// The old two-step path, the reference `decode_state` must agree with.
fn reference(bytes: &[u8]) -> Result<ConfigState, SnapshotError> {
    Ok(ConfigState::from_snapshot(decode_snapshot(bytes)?)?)
}

/// A snapshot's bytes built from its parts, so that a test can put anything in them.
fn wire(format: u16, version: u64, hash: ConfigHash, bodies: Vec<EntityBody>) -> Vec<u8> {
    postcard::to_stdvec(&SnapshotWire {
        format,
        version,
        hash: hash.0,
        entities: bodies,
    })
    .unwrap()
}

#[test]
fn decoding_into_a_state_agrees_with_decoding_then_rebuilding() {
    let (m, cmds) = golden_machine();
    // Before the final delete, the config still holds a consumer with credentials.
    let mut before = Machine::new();
    for c in &cmds[..cmds.len() - 1] {
        before.execute(c).0.unwrap();
    }
    let snap = before.config.snapshot();
    let bodies = || snap.entities.iter().map(encode_entity).collect::<Vec<_>>();
    let ok = encode_snapshot(&snap);
    let state = decode_state(&ok).unwrap();
    assert_eq!(state, before.config);
    assert_eq!(state.version(), snap.version);
    for (kind, id) in before.config.iter().map(|e| (e.kind(), e.id())) {
        assert_eq!(
            state.children_of(kind, id).collect::<Vec<_>>(),
            before.config.children_of(kind, id).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        state.find_by_key(EntityKind::Consumer, "alice"),
        before.config.find_by_key(EntityKind::Consumer, "alice")
    );
    assert_eq!(
        decode_state(&encode_snapshot(&m.config.snapshot())).unwrap(),
        m.config
    );

    // Out of order: the same state.
    let mut reversed = bodies();
    reversed.reverse();
    let reversed = wire(SNAPSHOT_FORMAT, snap.version, snap.hash, reversed);
    assert_eq!(decode_state(&reversed).unwrap(), before.config);

    // A decodable encoding that is not the canonical one (an overlong varint): its bytes
    // hash differently from the entity, and the snapshot is judged on the entity, as
    // before.
    let mut bent = bodies();
    let first = &snap.entities[0];
    let canonical = postcard::to_stdvec(first).unwrap();
    let mut overlong = None;
    for at in 1..canonical.len() {
        // A one-byte varint `v` also reads as `v | 0x80, 0x00`.
        if canonical[at] < 0x80 {
            let mut b = canonical.clone();
            b[at] |= 0x80;
            b.insert(at + 1, 0);
            if postcard::from_bytes::<Entity>(&b).ok().as_ref() == Some(first) {
                overlong = Some(b);
                break;
            }
        }
    }
    bent[0].bytes = overlong.expect("some varint of the entity can be made overlong");
    let bent = wire(SNAPSHOT_FORMAT, snap.version, snap.hash, bent);
    assert_eq!(decode_state(&bent).unwrap(), before.config);
    assert_eq!(reference(&bent).unwrap(), before.config);

    // Every failure is the one the two-step path reports, in the same precedence.
    let mut cases: Vec<Vec<u8>> = Vec::new();
    let wrong = ConfigHash(snap.hash.0 ^ 1);
    cases.push(wire(SNAPSHOT_FORMAT, 1, wrong, bodies()));
    let mut dup = bodies();
    dup.insert(1, encode_entity(&snap.entities[0]));
    cases.push(wire(SNAPSHOT_FORMAT, 1, snap.hash, dup));
    let mut dup_then_garbage = bodies();
    dup_then_garbage.insert(1, encode_entity(&snap.entities[0]));
    dup_then_garbage.push(EntityBody {
        schema: ENTITY_SCHEMA,
        bytes: vec![0xff; 3],
    });
    cases.push(wire(SNAPSHOT_FORMAT, 1, snap.hash, dup_then_garbage));
    let mut trailing = bodies();
    trailing[2].bytes.push(0);
    cases.push(wire(SNAPSHOT_FORMAT, 1, snap.hash, trailing));
    let mut newer = bodies();
    newer[1].bytes = vec![0xff];
    cases.push(wire(SNAPSHOT_FORMAT + 1, 1, snap.hash, newer));
    cases.push(ok[..ok.len() - 3].to_vec());
    cases.push(vec![]);
    for (i, case) in cases.iter().enumerate() {
        let got = decode_state(case).expect_err(&format!("case {i} accepted"));
        assert_eq!(Err(got), reference(case), "case {i}");
    }
}

/// The indexes a snapshot's state is built with are those of applying its entities one
/// at a time: a unique key held twice ends with the later entity, a parent with several
/// children lists them all, whether the snapshot is in order or not.
#[test]
fn indexes_built_from_a_snapshot_are_those_of_applying_it_entity_by_entity() {
    use tidegate_model::entities::{Consumer, KeyauthCredential};
    use tidegate_model::entity::Fk;

    let consumer = |id: u128, username: &str| {
        Entity::Consumer(Box::new(Consumer {
            id: Uuid::from_u128(id),
            created_at: 1,
            updated_at: 1,
            username: Some(username.into()),
            custom_id: None,
            tags: None,
        }))
    };
    let key = |id: u128, consumer: u128, key: &str| {
        Entity::KeyauthCredential(Box::new(KeyauthCredential {
            id: Uuid::from_u128(id),
            created_at: 1,
            consumer: Some(Fk {
                id: Uuid::from_u128(consumer),
            }),
            key: key.into(),
            ttl: None,
            tags: None,
        }))
    };
    // Ids spread over shards (their leading bits) and within one.
    let ids = |n: u128| (n << 120) | n;
    let ordered = vec![
        consumer(ids(1), "dup"),
        consumer(ids(2), "dup"),
        consumer(ids(3), "solo"),
        consumer(ids(3) + 1, "next-door"),
        key(ids(4), ids(1), "k"),
        key(ids(5), ids(1), "k2"),
        key(ids(6), ids(3), "k"),
    ];
    let mut shuffled = ordered.clone();
    shuffled.swap(0, 1);
    shuffled.swap(4, 6);
    for entities in [ordered, shuffled] {
        let mut one_by_one = ConfigState::new();
        for (i, e) in entities.iter().enumerate() {
            one_by_one
                .apply(&crate::Event {
                    version: i as u64 + 1,
                    change: crate::Change::Put(e.clone()),
                })
                .unwrap();
        }
        let snap = crate::Snapshot {
            version: entities.len() as u64,
            hash: ConfigHash::of(&entities),
            entities: entities.clone(),
        };
        let built = decode_state(&encode_snapshot(&snap)).unwrap();
        assert_eq!(built, one_by_one);
        for (kind, k) in [
            (EntityKind::Consumer, "dup"),
            (EntityKind::Consumer, "solo"),
            (EntityKind::Consumer, "next-door"),
            (EntityKind::KeyauthCredential, "k"),
            (EntityKind::KeyauthCredential, "k2"),
        ] {
            assert_eq!(
                built.find_by_key(kind, k),
                one_by_one.find_by_key(kind, k),
                "{k}"
            );
            assert!(built.find_by_key(kind, k).is_some(), "{k}");
        }
        for e in &entities {
            let (kind, id) = (e.kind(), e.id());
            let children: Vec<_> = built.children_of(kind, id).collect();
            assert_eq!(
                children,
                one_by_one.children_of(kind, id).collect::<Vec<_>>()
            );
        }
        assert_eq!(
            built
                .children_of(EntityKind::Consumer, Uuid::from_u128(ids(1)))
                .count(),
            2
        );
    }
}
