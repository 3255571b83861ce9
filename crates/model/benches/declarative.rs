//! Parsing and validating a large generated declarative file: 10,000 services, 10,000
//! routes, 10,000 consumers each with a key-auth credential, and 1,000 plugins. Prints the
//! time per parse and the process's peak resident memory.
//!
//! Run: `cargo bench -p tidegate-model --bench declarative`

use std::fmt::Write as _;

use criterion::{criterion_group, criterion_main, Criterion};
use tidegate_model::declarative::{parse, ParseOptions};

const SERVICES: usize = 10_000;
const CONSUMERS: usize = 10_000;
const PLUGINS: usize = 1_000;

fn generate() -> String {
    let mut y = String::with_capacity(8 << 20);
    y.push_str("_format_version: \"3.0\"\nservices:\n");
    for i in 0..SERVICES {
        let _ = write!(
            y,
            "  - name: svc-{i}\n    url: http://backend-{m}.internal:8080/api/{i}\n    tags: [team-{t}]\n    routes:\n      - name: route-{i}\n        paths: [/svc/{i}]\n        methods: [GET, POST]\n",
            m = i % 50,
            t = i % 20
        );
        if i < PLUGINS {
            y.push_str("    plugins:\n      - name: correlation-id\n        config:\n          header_name: X-Request-ID\n");
        }
    }
    y.push_str("consumers:\n");
    for i in 0..CONSUMERS {
        let _ = write!(
            y,
            "  - username: user-{i}\n    custom_id: cid-{i}\n    keyauth_credentials:\n      - key: key-{i:08}\n"
        );
    }
    y
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

// A benchmark measures wall time by definition.
#[allow(clippy::disallowed_methods)]
fn bench_parse(c: &mut Criterion) {
    let text = generate();
    let before = peak_rss_mib();
    let opts = ParseOptions {
        now: 1_700_000_000,
        entropy: 7,
    };
    let started = std::time::Instant::now();
    let parsed = parse(&text, opts).expect("the generated file is valid");
    let first = started.elapsed();
    let after = peak_rss_mib();
    eprintln!(
        "declarative: {} bytes, {} entities; first parse {:.2?}; peak RSS {:.1} MiB before parsing, {:.1} MiB after",
        text.len(),
        parsed.entities.len(),
        first,
        before,
        after
    );
    drop(parsed);

    let mut group = c.benchmark_group("declarative");
    group.sample_size(10);
    group.bench_function(
        "parse_10k_services_10k_routes_10k_consumers_1k_plugins",
        |b| b.iter(|| parse(&text, opts).expect("valid")),
    );
    group.finish();
    eprintln!(
        "declarative: peak RSS over the whole run {:.1} MiB",
        peak_rss_mib()
    );
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
