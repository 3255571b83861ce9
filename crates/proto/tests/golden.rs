//! Golden encodings of the CP ↔ DP messages. A DP and a CP of different minor versions
//! must read each other's bytes, so an encoding that changes by accident fails here.
//! After an intended, compatible change (see the rules at the top of
//! proto/cluster.proto), add a new golden file rather than rewrite an old one;
//! `UPDATE_GOLDEN=1` writes missing or changed files.

use std::collections::BTreeMap;

use prost::Message;
use tidegate_proto::cluster::{
    cp_message, dp_message, snapshot_request, Ack, Compression, CpMessage, DpMessage, Events,
    Hello, Plugin, Rejected, Snapshot, SnapshotRequest, Status,
};

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Vec<u8> {
    let pairs = s.as_bytes().chunks_exact(2);
    assert!(pairs.remainder().is_empty(), "odd hex length");
    pairs
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).expect("hex digit"))
        .collect()
}

/// Compares `msg`'s encoding with the stored file, and checks the stored bytes still
/// decode to `msg` (what an older peer sent must stay readable).
fn check_golden<M: Message + Default + PartialEq + std::fmt::Debug>(name: &str, msg: &M) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.hex"));
    let now = to_hex(&msg.encode_to_vec());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{now}\n")).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 once)", path.display()));
    assert_eq!(
        stored.trim(),
        now,
        "the encoding of {name} changed; see the rules at the top of proto/cluster.proto"
    );
    let back = M::decode(from_hex(stored.trim()).as_slice()).expect("golden bytes decode");
    assert_eq!(&back, msg);
}

fn hello() -> Hello {
    Hello {
        node_id: "6f1c1f0e-3b6a-4c1e-9d2a-1b2c3d4e5f60".into(),
        hostname: "dp-1".into(),
        version: "0.4.2".into(),
        plugins: vec![
            Plugin {
                name: "correlation-id".into(),
                version: "3.9.0".into(),
            },
            Plugin {
                name: "key-auth".into(),
                version: "3.9.1".into(),
            },
        ],
        // Maps are BTreeMaps (build.rs), so several labels encode in a fixed order.
        labels: BTreeMap::from([
            ("region".to_string(), "eu-west".to_string()),
            ("tier".to_string(), "edge".to_string()),
        ]),
        last_version: Some(42),
        last_hash: Some("0123456789abcdef0123456789abcdef".into()),
        entity_schema: 1,
        snapshot_format: 1,
    }
}

fn dp(msg: dp_message::Msg) -> DpMessage {
    DpMessage { msg: Some(msg) }
}

fn cp(msg: cp_message::Msg) -> CpMessage {
    CpMessage { msg: Some(msg) }
}

#[test]
fn golden_hello() {
    check_golden("dp-hello-v1", &dp(dp_message::Msg::Hello(hello())));
}

#[test]
fn golden_snapshot() {
    let snapshot = Snapshot {
        version: 42,
        hash: "0123456789abcdef0123456789abcdef".into(),
        compression: Compression::None as i32,
        // The body's own encoding is pinned by crates/state's golden files.
        body: (0u8..=63).collect(),
    };
    check_golden("cp-snapshot-v1", &cp(cp_message::Msg::Snapshot(snapshot)));
}

#[test]
fn golden_other_messages() {
    check_golden(
        "dp-status-v1",
        &dp(dp_message::Msg::Status(Status {
            version: 43,
            hash: "fedcba9876543210fedcba9876543210".into(),
        })),
    );
    check_golden(
        "dp-snapshot-request-v1",
        &dp(dp_message::Msg::SnapshotRequest(SnapshotRequest {
            reason: snapshot_request::Reason::VersionGap as i32,
            detail: "have 42, got 44".into(),
        })),
    );
    check_golden(
        "cp-events-v1",
        &cp(cp_message::Msg::Events(Events {
            events: vec![vec![43, 0, 1], vec![44, 1, 2, 3]],
        })),
    );
    check_golden(
        "cp-rejected-v1",
        &cp(cp_message::Msg::Rejected(Rejected {
            sync_status: "kong_version_incompatible".into(),
            reason:
                "data plane version 0.4.3 is incompatible with older control plane version 0.4.2"
                    .into(),
        })),
    );
    check_golden(
        "cp-ack-v1",
        &cp(cp_message::Msg::Ack(Ack {
            cp_id: "1".into(),
            cp_version: "0.4.2".into(),
        })),
    );
}

/// What a newer peer adds must not break an older reader: unknown fields are skipped,
/// and an unknown oneof member reads as "no message", which the reader must not take
/// for any known one.
#[test]
fn newer_fields_and_messages_are_skipped() {
    let mut bytes = dp(dp_message::Msg::Hello(hello())).encode_to_vec();
    // Field 99 of DpMessage (varint 7), as a newer DP might send.
    bytes.extend_from_slice(&[0x98, 0x06, 0x07]);
    assert_eq!(
        DpMessage::decode(bytes.as_slice()).unwrap(),
        dp(dp_message::Msg::Hello(hello()))
    );

    let mut inner = hello().encode_to_vec();
    // Field 50 of Hello (length-delimited "x").
    inner.extend_from_slice(&[0x92, 0x03, 0x01, b'x']);
    assert_eq!(Hello::decode(inner.as_slice()).unwrap(), hello());

    // A CpMessage whose only member is an unknown field 20 (an empty message).
    let unknown = [0xa2, 0x01, 0x00];
    assert_eq!(CpMessage::decode(&unknown[..]).unwrap().msg, None);

    // An unknown enum value survives as its number instead of collapsing to NONE.
    let snap = Snapshot {
        compression: 7,
        ..Default::default()
    };
    let back = Snapshot::decode(snap.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back.compression, 7);
    assert!(Compression::try_from(back.compression).is_err());
}

/// `last_version` is optional so a DP holding the empty config (version 0) and a DP
/// holding nothing read differently.
#[test]
fn last_version_zero_is_not_absent() {
    let zero = Hello {
        last_version: Some(0),
        ..Default::default()
    };
    let none = Hello::default();
    assert_ne!(zero.encode_to_vec(), none.encode_to_vec());
    assert_eq!(
        Hello::decode(zero.encode_to_vec().as_slice())
            .unwrap()
            .last_version,
        Some(0)
    );
    assert_eq!(
        Hello::decode(none.encode_to_vec().as_slice())
            .unwrap()
            .last_version,
        None
    );
}
