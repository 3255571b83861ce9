use serde_json::json;
use tidegate_model::{Ctx, Entity, EntityKind, Fixed, Fk, NoLookup};
use uuid::Uuid;

use super::*;

fn upstream(spec: serde_json::Value) -> Upstream {
    let ctx = Ctx {
        fixed: Fixed {
            id: Uuid::from_u128(1),
            now: 1_700_000_000,
            entropy: 0,
        },
        lookup: &NoLookup,
        force_id: None,
        transform: true,
    };
    match Entity::from_json(EntityKind::Upstream, &spec, &ctx).expect("valid upstream") {
        Entity::Upstream(u) => *u,
        _ => unreachable!(),
    }
}

fn target(t: &str, weight: i64) -> Target {
    Target {
        id: Uuid::new_v5(&Uuid::NAMESPACE_OID, t.as_bytes()),
        created_at: 0,
        updated_at: 0,
        upstream: Some(Fk {
            id: Uuid::from_u128(1),
        }),
        target: t.to_string(),
        weight,
        tags: None,
    }
}

fn counts(b: &Balancer, n: usize, hash: impl Fn(usize) -> Option<String>) -> Vec<usize> {
    let mut c = vec![0; b.targets.len()];
    for k in 0..n {
        c[b.pick(hash(k).as_deref(), &[]).expect("a healthy target")] += 1;
    }
    c
}

#[test]
fn weighted_round_robin_is_exact_over_a_cycle() {
    let u = upstream(json!({"name": "u"}));
    let b = Balancer::new(
        &u,
        vec![target("a:1", 100), target("b:1", 50), target("c:1", 0)],
    );
    assert_eq!(b.targets.len(), 2, "weight 0 takes no traffic");
    assert_eq!(counts(&b, 300, |_| None), vec![200, 100]);
}

#[test]
fn passive_checks_take_a_target_out_after_tcp_failures() {
    let u = upstream(json!({"name": "u", "healthchecks": {"passive": {
        "unhealthy": {"tcp_failures": 2}, "healthy": {"successes": 5}}}}));
    let b = Balancer::new(&u, vec![target("a:1", 100), target("b:1", 100)]);
    b.report_passive(0, Outcome::TcpFailure);
    assert!(b.is_healthy(0), "one failure is below the threshold");
    b.report_passive(0, Outcome::TcpFailure);
    assert!(!b.is_healthy(0));
    assert_eq!(counts(&b, 10, |_| None), vec![0, 10]);
    b.report_passive(1, Outcome::TcpFailure);
    b.report_passive(1, Outcome::Status(200));
    b.report_passive(1, Outcome::TcpFailure);
    assert!(b.is_healthy(1), "a success resets the failure count");

    // With `healthy.successes` 0 (Kong's default) successes are not counted at all, so
    // they reset nothing (lua-resty-healthcheck's disabled counters).
    let u = upstream(
        json!({"name": "u", "healthchecks": {"passive": {"unhealthy": {"tcp_failures": 2}}}}),
    );
    let b = Balancer::new(&u, vec![target("a:1", 100)]);
    b.report_passive(0, Outcome::TcpFailure);
    b.report_passive(0, Outcome::Status(200));
    b.report_passive(0, Outcome::TcpFailure);
    assert!(!b.is_healthy(0));
}

#[test]
fn kong_defaults_never_mark_targets_unhealthy() {
    let u = upstream(json!({"name": "u"}));
    let b = Balancer::new(&u, vec![target("a:1", 100)]);
    for _ in 0..100 {
        b.report_passive(0, Outcome::TcpFailure);
        b.report_passive(0, Outcome::Status(500));
    }
    assert!(b.is_healthy(0));
}

#[test]
fn active_checks_bring_a_target_back_after_successes() {
    let u = upstream(json!({"name": "u", "healthchecks": {"active": {
        "healthy": {"successes": 2, "interval": 1},
        "unhealthy": {"http_failures": 1, "interval": 1}}}}));
    let b = Balancer::new(&u, vec![target("a:1", 100)]);
    b.report_active(0, Outcome::Status(500));
    assert!(!b.is_healthy(0));
    assert_eq!(b.pick(None, &[]), None, "no healthy target: no peer");
    b.report_active(0, Outcome::Status(200));
    assert!(!b.is_healthy(0));
    b.report_active(0, Outcome::Status(200));
    assert!(b.is_healthy(0));
}

#[test]
fn consistent_hashing_is_sticky_and_moves_few_keys() {
    let u = upstream(json!({"name": "u", "algorithm": "consistent-hashing", "hash_on": "ip"}));
    let three = vec![target("a:1", 100), target("b:1", 100), target("c:1", 100)];
    let b3 = Balancer::new(&u, three.clone());
    let spread = counts(&b3, 3000, |k| Some(format!("10.0.{}.{}", k / 256, k % 256)));
    for c in &spread {
        assert!((700..1300).contains(c), "spread {spread:?}");
    }
    let key = |k: usize| format!("client-{k}");
    let first: Vec<usize> = (0..1000)
        .map(|k| b3.pick(Some(&key(k)), &[]).unwrap())
        .collect();
    let again: Vec<usize> = (0..1000)
        .map(|k| b3.pick(Some(&key(k)), &[]).unwrap())
        .collect();
    assert_eq!(first, again, "the same value goes to the same target");
    // Removing c: only c's keys move.
    let b2 = Balancer::new(&u, three[..2].to_vec());
    let name = |b: &Balancer, i: usize| b.targets[i].host.to_string();
    for (k, &i) in first.iter().enumerate() {
        let before = name(&b3, i);
        let after = name(&b2, b2.pick(Some(&key(k)), &[]).unwrap());
        if before != "c" {
            assert_eq!(before, after, "key {k} moved although its target stayed");
        }
    }
    // A failed target is skipped for the next one on the ring.
    let i = b3.pick(Some("x"), &[]).unwrap();
    let j = b3.pick(Some("x"), &[i]).unwrap();
    assert_ne!(i, j);
}

#[test]
fn least_connections_prefers_the_idle_target() {
    let u = upstream(json!({"name": "u", "algorithm": "least-connections"}));
    let b = Arc::new(Balancer::new(
        &u,
        vec![target("a:1", 100), target("b:1", 100)],
    ));
    let i = b.pick(None, &[]).unwrap();
    let busy = b.start(i);
    for _ in 0..5 {
        assert_ne!(b.pick(None, &[]).unwrap(), i);
    }
    drop(busy);
    let both: std::collections::BTreeSet<usize> =
        (0..10).map(|_| b.pick(None, &[]).unwrap()).collect();
    assert_eq!(both.len(), 2, "with equal load ties rotate");
}

#[test]
fn same_source_ignores_target_order() {
    let u = upstream(json!({"name": "u"}));
    let b = Balancer::new(&u, vec![target("a:1", 100), target("b:1", 100)]);
    assert!(b.same_source(&u, &[target("b:1", 100), target("a:1", 100)]));
    assert!(!b.same_source(&u, &[target("b:1", 100), target("a:1", 10)]));
}
