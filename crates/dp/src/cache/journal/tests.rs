use super::*;

use std::fs;

use serde_json::json;
use tidegate_model::{EntityKind, Fixed};
use tidegate_state::{encode_event, Command, Machine, Op};
use uuid::Uuid;

use crate::cache::{Cache, CacheFile, CACHE_FILE};

/// A config history: `step` adds `n` services in one Command; returns the Events
/// encoded, as the CP sends them.
struct History {
    m: Machine,
    tag: &'static str,
}

impl History {
    fn new(tag: &'static str) -> Self {
        History {
            m: Machine::new(),
            tag,
        }
    }

    fn state(&self) -> ConfigState {
        self.m.config.clone()
    }

    fn step(&mut self, n: u64) -> Vec<Vec<u8>> {
        let end = self.m.config.version() + n;
        let mut encoded = Vec::new();
        // Commands of at most 1,000 operations, as the Admin API takes them.
        while self.m.config.version() < end {
            let from = self.m.config.version();
            let ops = (from + 1..=end.min(from + 1_000))
                .map(|v| Op::Create {
                    kind: EntityKind::Service,
                    body: json!({"name": format!("{}-{v}", self.tag), "url": "http://upstream:8080/x"})
                        .to_string(),
                })
                .collect();
            let c = Command {
                request_id: Uuid::from_u128(from as u128 + 1),
                fixed: Fixed {
                    id: Uuid::from_u128(0x1_0000 + from as u128),
                    now: 1_700_000_000,
                    entropy: from as u128,
                },
                op: Op::Batch { ops },
            };
            let (outcome, events) = self.m.execute(&c);
            outcome.expect("valid batch");
            encoded.extend(events.iter().map(encode_event));
        }
        encoded
    }
}

fn open() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("prefix")).unwrap();
    (dir, cache)
}

fn reload(cache: &Cache) -> crate::cache::Loaded {
    Cache::open(cache.prefix())
        .unwrap()
        .load_detailed()
        .unwrap()
        .expect("a cache")
}

#[test]
fn appends_replay_over_the_cache_without_rewriting_it() {
    let (_dir, mut cache) = open();
    let mut h = History::new("svc");
    h.step(3);
    cache.store(&h.state()).unwrap();
    let written = fs::read(cache.path()).unwrap();
    let mut from = Point::of(&h.state());
    for n in [1, 4, 2] {
        let events = h.step(n);
        cache.append(&h.state(), from, &events).unwrap();
        from = Point::of(&h.state());
    }
    // One change: the cache file is untouched, the journal holds it.
    assert_eq!(fs::read(cache.path()).unwrap(), written);
    let loaded = reload(&cache);
    assert_eq!(loaded.from, CacheFile::Current);
    assert_eq!(loaded.journal.records, 3);
    assert_eq!(loaded.journal.refused, None);
    assert_eq!(loaded.state, h.state());
    assert_eq!(loaded.state.version(), 10);
    assert_eq!(loaded.state.recompute_hash(), loaded.state.hash());
}

#[test]
fn a_torn_last_record_leaves_the_config_before_it() {
    let (_dir, mut cache) = open();
    let mut h = History::new("svc");
    h.step(2);
    cache.store(&h.state()).unwrap();
    let base = Point::of(&h.state());
    let events = h.step(3);
    cache.append(&h.state(), base, &events).unwrap();
    let middle = h.state();
    let events = h.step(5);
    cache
        .append(&h.state(), Point::of(&middle), &events)
        .unwrap();

    let path = cache.prefix().join(JOURNAL_FILE);
    let whole = fs::read(&path).unwrap();
    let record_len = |at: usize| {
        4 + u32::from_le_bytes(whole[at..at + 4].try_into().unwrap()) as usize + SUM_LEN
    };
    let last_start = HEADER_LEN as usize + record_len(HEADER_LEN as usize);
    let last_len = record_len(last_start);
    // A crash leaves any prefix of the last record's bytes over the zeros that were there.
    for cut in [0, 1, 4, 5, last_len / 2, last_len - 1] {
        let mut torn = whole.clone();
        torn[last_start + cut..last_start + last_len].fill(0);
        fs::write(&path, &torn).unwrap();
        let loaded = reload(&cache);
        assert_eq!(loaded.state, middle, "cut at {cut}");
        assert_eq!(loaded.journal.records, 1);
        assert_eq!(loaded.journal.refused, None);
    }
    // A flipped bit anywhere in it, too.
    for at in [0, 4, 20, last_len - 1] {
        let mut bad = whole.clone();
        bad[last_start + at] ^= 0x40;
        fs::write(&path, &bad).unwrap();
        assert_eq!(reload(&cache).state, middle, "bit flipped at {at}");
    }
    fs::write(&path, &whole).unwrap();
    assert_eq!(reload(&cache).state, h.state());
}

#[test]
fn a_restarted_writer_stores_whole_then_journals_again() {
    let (_dir, mut cache) = open();
    let mut h = History::new("svc");
    h.step(2);
    cache.store(&h.state()).unwrap();
    let mut from = Point::of(&h.state());
    let events = h.step(1);
    cache.append(&h.state(), from, &events).unwrap();
    from = Point::of(&h.state());

    // A new process: it holds no open journal, so its first change is stored whole.
    let mut restarted = Cache::open(cache.prefix()).unwrap();
    assert_eq!(restarted.load().unwrap().unwrap(), h.state());
    let events = h.step(1);
    restarted.append(&h.state(), from, &events).unwrap();
    let loaded = reload(&restarted);
    assert_eq!(loaded.state, h.state());
    assert_eq!(
        loaded.journal.records, 0,
        "stored whole, with a new journal"
    );
    assert_eq!(
        crate::cache::read_file(&restarted.path(), u64::MAX).unwrap(),
        h.state()
    );
    // And the next one is an append again.
    from = Point::of(&h.state());
    let events = h.step(1);
    restarted.append(&h.state(), from, &events).unwrap();
    assert_eq!(reload(&restarted).journal.records, 1);
    assert_eq!(reload(&restarted).state, h.state());
}

#[test]
fn an_append_that_does_not_continue_the_journal_stores_whole() {
    let (_dir, mut cache) = open();
    let mut h = History::new("svc");
    h.step(2);
    cache.store(&h.state()).unwrap();
    let skipped_from = Point::of(&h.state());
    h.step(1);
    // The store of version 3 was lost (it failed): 3 → 4 cannot go after version 2.
    let from = Point::of(&h.state());
    let events = h.step(1);
    assert_ne!(from, skipped_from);
    cache.append(&h.state(), from, &events).unwrap();
    let loaded = reload(&cache);
    assert_eq!(loaded.state, h.state());
    assert_eq!(loaded.journal.records, 0);
}

/// A CP restored from a backup can send a snapshot with the same version as the cache
/// the journal extends; records of the old history must never replay over it.
#[test]
fn records_of_an_old_journal_never_replay_over_a_new_base() {
    let (_dir, mut cache) = open();
    let mut old = History::new("old");
    old.step(2);
    let base = old.state();
    cache.store(&base).unwrap();
    let mut from = Point::of(&base);
    for n in [1, 1, 1] {
        let events = old.step(n);
        cache.append(&old.state(), from, &events).unwrap();
        from = Point::of(&old.state());
    }
    assert_eq!(reload(&cache).state.version(), 5);

    // The same config stored whole again: nothing of the old journal comes back.
    cache.store(&base).unwrap();
    assert_eq!(reload(&cache).state, base);

    // A different history from version 2 on: one longer record over the old ones,
    // which stay in the file after it.
    let mut new_history = History {
        m: Machine {
            config: base.clone(),
            ..Machine::new()
        },
        tag: "new",
    };
    let events = new_history.step(1);
    cache
        .append(&new_history.state(), Point::of(&base), &events)
        .unwrap();
    let loaded = reload(&cache);
    assert_eq!(loaded.state, new_history.state());
    assert_eq!(loaded.journal.records, 1);
}

#[test]
fn a_change_larger_than_the_journal_is_stored_whole() {
    let (_dir, mut cache) = open();
    let mut h = History::new("svc");
    h.step(1);
    cache.store(&h.state()).unwrap();
    let from = Point::of(&h.state());
    // Over the smallest journal limit (1 MiB).
    let events = h.step(20_000);
    assert!(events.iter().map(Vec::len).sum::<usize>() > MIN_LIMIT as usize);
    cache.append(&h.state(), from, &events).unwrap();
    let loaded = reload(&cache);
    assert_eq!(loaded.state, h.state());
    assert_eq!(loaded.journal.records, 0);
    assert!(fs::metadata(cache.path()).unwrap().len() > MIN_LIMIT);
}

#[test]
fn the_journal_grows_past_its_first_chunk_and_replays_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    let mut h = History::new("svc");
    let base = h.state();
    // As if over an 8 MiB cache: the limit is 4 MiB.
    let mut j = Journal::reset(&path, Point::of(&base), 8 << 20).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), CHUNK);
    let mut appended = 0;
    let mut before_full = h.state();
    let full = loop {
        assert!(appended < 100, "the journal never filled");
        let events = h.step(5_000);
        match j.append(Point::of(&h.state()), &events).unwrap() {
            Appended::Durable => appended += 1,
            Appended::Full => break h.state(),
        }
        before_full = h.state();
    };
    assert!(appended >= 3, "{appended}");
    assert_ne!(full, before_full);
    let len = fs::metadata(&path).unwrap().len();
    assert!(len > 2 * MIN_LIMIT && len <= 4 << 20, "{len}");
    let mut state = base.clone();
    let (replay, _) = replay(&path, &mut state).unwrap();
    assert_eq!(replay.records, appended);
    assert_eq!(state, before_full);
}

#[test]
fn a_record_that_misses_its_hash_is_refused_and_said_so() {
    let (_dir, mut cache) = open();
    let mut h = History::new("svc");
    h.step(1);
    cache.store(&h.state()).unwrap();
    let good_from = Point::of(&h.state());
    let events = h.step(1);
    cache.append(&h.state(), good_from, &events).unwrap();
    let good = h.state();
    let events = h.step(1);
    let mut lie = Point::of(&h.state());
    lie.hash = ConfigHash(lie.hash.0 ^ 1);
    let journal = cache.journal.as_mut().unwrap();
    journal.append(lie, &events).unwrap();

    let loaded = reload(&cache);
    assert_eq!(loaded.state, good);
    assert_eq!(loaded.journal.records, 1);
    let why = loaded.journal.refused.expect("refused");
    assert!(why.contains("journal record 2"), "{why}");
    assert!(why.contains("the record says"), "{why}");
}

#[test]
fn a_journal_over_another_base_is_ignored() {
    let (_dir, mut cache) = open();
    let mut h = History::new("svc");
    h.step(1);
    cache.store(&h.state()).unwrap();
    let first = fs::read(cache.path()).unwrap();
    let from = Point::of(&h.state());
    let events = h.step(1);
    cache.append(&h.state(), from, &events).unwrap();
    h.step(1);
    cache.store(&h.state()).unwrap();
    // The cache file put back by hand: the journal names the newer one.
    fs::write(cache.path(), &first).unwrap();
    let loaded = reload(&cache);
    assert_eq!(loaded.state.version(), 1);
    assert_eq!(loaded.journal.records, 0);
    // A removed cache is still no cache, journal or not.
    fs::remove_file(cache.prefix().join(CACHE_FILE)).unwrap();
    assert!(Cache::open(cache.prefix())
        .unwrap()
        .load()
        .unwrap()
        .is_none());
}

#[test]
fn a_resumed_cache_appends_after_the_records_it_replayed() {
    let (_dir, mut cache) = open();
    let mut h = History::new("svc");
    h.step(2);
    cache.store(&h.state()).unwrap();
    let written = fs::read(cache.path()).unwrap();
    let mut from = Point::of(&h.state());
    for n in [1, 2] {
        let events = h.step(n);
        cache.append(&h.state(), from, &events).unwrap();
        from = Point::of(&h.state());
    }
    // A third record torn by the crash.
    let torn_from = h.state();
    let events = h.step(3);
    cache.append(&h.state(), from, &events).unwrap();
    let path = cache.prefix().join(JOURNAL_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let mut at = HEADER_LEN as usize;
    for _ in 0..2 {
        at += 4 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize + SUM_LEN;
    }
    bytes[at + 10] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let mut resumed = Cache::open(cache.prefix()).unwrap();
    assert_eq!(resumed.resume().unwrap().unwrap(), torn_from);
    // The change after the restart is appended where the torn one was, with a
    // different (shorter) record: no rewrite of config.cache.
    let mut h2 = History {
        m: Machine {
            config: torn_from.clone(),
            ..Machine::new()
        },
        tag: "after",
    };
    let events = h2.step(1);
    resumed
        .append(&h2.state(), Point::of(&torn_from), &events)
        .unwrap();
    assert_eq!(fs::read(cache.path()).unwrap(), written);
    let loaded = reload(&resumed);
    assert_eq!(loaded.state, h2.state());
    assert_eq!(loaded.journal.records, 3);
    assert_eq!(loaded.journal.refused, None);
}

#[test]
fn a_resumed_cache_after_a_refused_record_stores_whole() {
    let (_dir, mut cache) = open();
    let mut h = History::new("svc");
    h.step(1);
    cache.store(&h.state()).unwrap();
    let from = Point::of(&h.state());
    let events = h.step(1);
    let mut lie = Point::of(&h.state());
    lie.hash = ConfigHash(lie.hash.0 ^ 1);
    cache
        .journal
        .as_mut()
        .unwrap()
        .append(lie, &events)
        .unwrap();

    let mut resumed = Cache::open(cache.prefix()).unwrap();
    let served = resumed.resume().unwrap().unwrap();
    assert_eq!(Point::of(&served), from);
    assert!(resumed.journal.is_none());
    let mut h2 = History {
        m: Machine {
            config: served.clone(),
            ..Machine::new()
        },
        tag: "after",
    };
    let events = h2.step(1);
    resumed.append(&h2.state(), from, &events).unwrap();
    let loaded = reload(&resumed);
    assert_eq!(loaded.state, h2.state());
    assert_eq!(loaded.journal.records, 0, "stored whole");
}
