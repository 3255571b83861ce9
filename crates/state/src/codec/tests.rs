use super::*;

use serde_json::json;
use tidegate_model::{Ctx, Fixed, NoLookup};

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
