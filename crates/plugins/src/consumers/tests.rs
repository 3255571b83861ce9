//! The index carried from version to version is the index built from scratch: a seeded
//! walk of consumer and credential changes, each imported as the DP would apply it,
//! compared after every step.

use tidegate_model::declarative::{self, ParseOptions};
use tidegate_state::{Command, Machine, Op};

use super::*;

/// What a consumer of the generated config has.
#[derive(Clone)]
struct Spec {
    name: u32,
    keys: Vec<u32>,
    basic: Option<u32>,
    groups: Vec<u32>,
}

fn doc(specs: &[Spec]) -> String {
    let mut d = String::from("_format_version: \"3.0\"\nconsumers:\n");
    for s in specs {
        d += &format!("- username: user{}\n  custom_id: c{}\n", s.name, s.name);
        if !s.keys.is_empty() {
            d += "  keyauth_credentials:\n";
            for k in &s.keys {
                d += &format!("  - key: key{k}\n");
            }
        }
        if let Some(b) = s.basic {
            d +=
                &format!("  basicauth_credentials:\n  - username: basic{b}\n    password: pw{b}\n");
        }
        if !s.groups.is_empty() {
            d += "  acls:\n";
            for g in &s.groups {
                d += &format!("  - group: group{g}\n");
            }
        }
    }
    d
}

fn import(m: &mut Machine, doc: &str, step: u128) {
    let parsed = declarative::parse(
        doc,
        ParseOptions {
            now: 1_700_000_000,
            entropy: 1,
        },
    )
    .unwrap_or_else(|e| panic!("bad generated config: {e:?}\n{doc}"));
    let (outcome, _) = m.execute(&Command {
        request_id: Uuid::from_u128(1000 + step),
        fixed: tidegate_model::Fixed {
            id: Uuid::from_u128(2000 + step),
            now: 1_700_000_000,
            entropy: 1,
        },
        op: Op::Import {
            entities: parsed.entities,
        },
    });
    outcome.unwrap_or_else(|e| panic!("import refused: {e:?}\n{doc}"));
}

/// Everything the index answers, in a comparable form.
type Entries = (
    Vec<(Uuid, ConsumerInfo)>,
    Vec<(String, Uuid)>,
    Vec<(String, KeyCredential)>,
    Vec<(String, BasicCredential)>,
);

fn entries(c: &Consumers) -> Entries {
    fn all<K: Clone + Ord + Hash, V: Clone>(m: &Sharded<K, V>) -> Vec<(K, V)> {
        let mut out: Vec<(K, V)> = m
            .shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(out.len(), m.len(), "len is kept right");
        out
    }
    (
        all(&c.by_id)
            .into_iter()
            .map(|(k, v)| (k, (*v).clone()))
            .collect(),
        all(&c.by_username),
        all(&c.keys),
        all(&c.basic),
    )
}

/// A small deterministic generator (no dependency on a random crate for one test).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}

#[test]
fn the_carried_index_is_the_rebuilt_index_after_every_change() {
    for seed in 0..4u64 {
        let mut rng = Lcg(seed);
        let mut next = 1000u32;
        let mut fresh = || {
            next += 1;
            next
        };
        let mut specs: Vec<Spec> = (0..200)
            .map(|i| Spec {
                name: i,
                keys: vec![i],
                basic: (i % 3 == 0).then_some(i),
                groups: vec![i % 7],
            })
            .collect();
        let mut m = Machine::new();
        let last = LastIndex::default();
        let mut updates = 0;
        for step in 0..40u128 {
            // Most steps change a few consumers (the carried path); every tenth changes
            // half of them (the rebuild path).
            let changes = if step % 10 == 9 {
                100
            } else {
                1 + rng.below(4)
            };
            for _ in 0..changes {
                let i = rng.below(specs.len() as u32) as usize;
                match rng.below(8) {
                    0 => {
                        specs.remove(i);
                    }
                    1 => specs.push(Spec {
                        name: fresh(),
                        keys: vec![fresh()],
                        basic: Some(fresh()),
                        groups: vec![rng.below(7)],
                    }),
                    2 => specs[i].name = fresh(),
                    3 => specs[i].keys.push(fresh()),
                    4 => specs[i].keys.clear(),
                    5 => specs[i].basic = Some(fresh()),
                    6 => specs[i].groups = vec![rng.below(7), 7 + rng.below(3)],
                    _ => {
                        // A key moves from one consumer to another in one version.
                        let j = rng.below(specs.len() as u32) as usize;
                        if i != j {
                            if let Some(k) = specs[i].keys.pop() {
                                specs[j].keys.push(k);
                            }
                        }
                    }
                }
            }
            // Keep names and groups unique per consumer, as Kong requires.
            for s in &mut specs {
                s.groups.sort_unstable();
                s.groups.dedup();
            }
            let before = m.config.clone();
            import(&mut m, &doc(&specs), step);
            let carried = Consumers::build(&m.config, &last);
            let rebuilt = Consumers::rebuild(&m.config);
            assert!(
                entries(&carried) == entries(&rebuilt),
                "seed {seed}, step {step}: the carried index differs from a rebuild"
            );
            if Consumers::rebuild(&before)
                .updated(&before, &m.config)
                .is_some()
            {
                updates += 1;
            }
        }
        assert!(
            updates >= 20,
            "seed {seed}: the carried path ran only {updates} times"
        );
    }
}

/// Keys spread over the shards: a change then copies a small shard, not most of the index.
#[test]
fn keys_spread_over_the_shards() {
    let spread: std::collections::BTreeSet<usize> =
        (0..1000).map(|i| shard_of(&format!("key-{i}"))).collect();
    assert!(spread.len() > 400, "{}", spread.len());
}
