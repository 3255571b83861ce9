//! Per-Event cost of `ConfigState::apply` (validation already done, index upkeep and the
//! O(1) hash update) at 1k to 1M entities: it should stay flat, since nothing in apply
//! walks the whole config.
//!
//! Run: `cargo bench -p tidegate-state --bench apply`

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;
use tidegate_model::{Ctx, Entity, EntityKind, Fixed, NoLookup};
use tidegate_state::{Change, ConfigState, Event};
use uuid::Uuid;

fn consumer(i: u64, tag: &str) -> Entity {
    let ctx = Ctx {
        fixed: Fixed {
            id: Uuid::from_u128(i as u128 + 1),
            now: 1_700_000_000,
            entropy: 0,
        },
        lookup: &NoLookup,
        force_id: None,
        transform: true,
    };
    Entity::from_json(
        EntityKind::Consumer,
        &json!({"username": format!("user-{i}"), "custom_id": format!("c-{i}"), "tags": [tag]}),
        &ctx,
    )
    .expect("valid consumer")
}

fn state_with(n: u64) -> ConfigState {
    let mut s = ConfigState::new();
    for i in 0..n {
        let e = Event {
            version: i + 1,
            change: Change::Put(consumer(i, "initial")),
        };
        s.apply(&e).unwrap();
    }
    s
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_one_event");
    for n in [1_000u64, 10_000, 100_000, 1_000_000] {
        let mut s = state_with(n);
        // Setup runs ahead of the measured routine within a batch, so versions come from a
        // counter of their own rather than from the state.
        let next = std::cell::Cell::new(s.version() + 1);
        let mut i = 0u64;
        // Replace an existing entity (remove old digest and keys, add new), then delete
        // and re-create another: the three shapes of Event a DP applies.
        group.bench_function(format!("put_replace/{n}"), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    let v = next.get();
                    next.set(v + 1);
                    Event {
                        version: v,
                        change: Change::Put(consumer(i % n, &format!("t{i}"))),
                    }
                },
                |e| {
                    s.apply(black_box(&e)).unwrap();
                    black_box(s.hash());
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("delete_then_put/{n}"), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    let e = consumer(i % n, "again");
                    let v = next.get() - 1;
                    next.set(v + 3);
                    (
                        Event {
                            version: v + 1,
                            change: Change::Delete {
                                kind: EntityKind::Consumer,
                                id: e.id(),
                            },
                        },
                        Event {
                            version: v + 2,
                            change: Change::Put(e),
                        },
                    )
                },
                |(d, p)| {
                    s.apply(black_box(&d)).unwrap();
                    s.apply(black_box(&p)).unwrap();
                    black_box(s.hash());
                },
                BatchSize::SmallInput,
            )
        });
        assert_eq!(s.hash(), s.recompute_hash(), "the incremental hash drifted");
        eprintln!("size {n}: {} entities, config hash {}", s.len(), s.hash());
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench_apply
}
criterion_main!(benches);
