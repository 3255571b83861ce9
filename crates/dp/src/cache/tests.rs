use super::*;

use serde_json::json;
use tidegate_model::{EntityKind, Fixed};
use tidegate_state::{encode_snapshot, Command, Machine, Op, Snapshot};

/// A config of `n` services, the same every time.
fn config(n: u128) -> ConfigState {
    let mut m = Machine::new();
    for i in 1..=n {
        let c = Command {
            request_id: Uuid::from_u128(i),
            fixed: Fixed {
                id: Uuid::from_u128(0x1000 + i),
                now: 1_700_000_000,
                entropy: i,
            },
            op: Op::Create {
                kind: EntityKind::Service,
                body: json!({"name": format!("svc-{i}"), "url": "http://upstream:8080/x"})
                    .to_string(),
            },
        };
        m.execute(&c).0.expect("valid service");
    }
    m.config
}

fn open() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("prefix")).unwrap();
    (dir, cache)
}

fn corruption(e: CacheError) -> Corruption {
    match e {
        CacheError::Corrupt { problem, .. } => problem,
        other => panic!("expected a corrupt-file error, got {other}"),
    }
}

#[test]
fn empty_prefix_has_no_cache() {
    let (_dir, cache) = open();
    assert!(cache.prefix().is_dir());
    assert!(cache.load().unwrap().is_none());
}

#[test]
fn round_trip() {
    let (_dir, mut cache) = open();
    for n in [0, 1, 25] {
        let state = config(n);
        cache.store(&state).unwrap();
        let back = cache.load().unwrap().unwrap();
        assert_eq!(back, state);
        assert_eq!(back.hash(), state.hash());
        assert_eq!(back.version(), n as u64);
    }
    // A fresh handle (a restarted DP) reads the same.
    let again = Cache::open(cache.prefix())
        .unwrap()
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(again, config(25));
    let leftovers: Vec<_> = fs::read_dir(cache.prefix())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_layout_is_the_documented_one() {
    let state = config(2);
    let bytes = encode_file(&state);
    assert_eq!(&bytes[..8], b"TIDEGCFG");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 1);
    let body = encode_snapshot(&state.snapshot());
    assert_eq!(
        u64::from_le_bytes(bytes[10..18].try_into().unwrap()),
        body.len() as u64
    );
    assert_eq!(&bytes[18..18 + body.len()], &body[..]);
    let sum = Sha256::digest(&bytes[..18 + body.len()]);
    assert_eq!(&bytes[18 + body.len()..], sum.as_slice());
}

/// Every single flipped byte is caught, with the check that owns that part of the file.
#[test]
fn any_corrupt_byte_is_an_error() {
    let good = encode_file(&config(3));
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x20;
        let problem = decode_file(&bad).expect_err(&format!("flipped byte {i} accepted"));
        let expected_kind = match i {
            0..=7 => matches!(problem, Corruption::BadMagic),
            8..=9 => matches!(problem, Corruption::Format(_)),
            10..=17 => matches!(problem, Corruption::Length { .. }),
            // Body or checksum: the checksum, before anything decodes the body.
            _ => problem == Corruption::Checksum,
        };
        assert!(expected_kind, "byte {i}: {problem}");
    }
}

#[test]
fn a_corrupt_cache_file_is_a_clear_error() {
    let (_dir, mut cache) = open();
    cache.store(&config(3)).unwrap();
    let mut bytes = fs::read(cache.path()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(cache.path(), &bytes).unwrap();
    let err = cache.load().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("config.cache"), "{msg}");
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(msg.contains("remove it"), "{msg}");
    assert_eq!(corruption(err), Corruption::Checksum);
}

#[test]
fn a_truncated_file_is_an_error_at_every_length() {
    let good = encode_file(&config(3));
    for len in 0..good.len() {
        let problem = decode_file(&good[..len]).expect_err(&format!("{len} bytes accepted"));
        let torn = matches!(
            problem,
            Corruption::TruncatedHeader(l) if l == len as u64
        ) || matches!(
            problem,
            Corruption::Length { expected, actual } if expected == good.len() as u64 && actual == len as u64
        );
        assert!(torn, "{len} bytes: {problem}");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        decode_file(&longer),
        Err(Corruption::Length { .. })
    ));
    // Whatever the file is, a clear message.
    let (_dir, mut cache) = open();
    cache.store(&config(3)).unwrap();
    fs::write(cache.path(), &good[..good.len() - 1]).unwrap();
    let msg = cache.load().unwrap_err().to_string();
    assert!(msg.contains("torn file"), "{msg}");
}

#[test]
fn not_a_cache_file() {
    assert_eq!(
        decode_file(b"{\"_format_version\": \"3.0\"}"),
        Err(Corruption::BadMagic)
    );
    assert_eq!(decode_file(b"x"), Err(Corruption::BadMagic));
    assert_eq!(decode_file(b""), Err(Corruption::TruncatedHeader(0)));
    let mut newer = encode_file(&config(0));
    newer[8] = 2;
    let e = decode_file(&newer).unwrap_err();
    assert_eq!(e, Corruption::Format(2));
    assert!(e.to_string().contains("newer tidegate"), "{e}");
}

/// A file whose checksum is right but whose snapshot lies about its hash: the last line
/// of defence, `ConfigState::from_snapshot`.
#[test]
fn a_snapshot_whose_hash_does_not_verify_is_refused() {
    let state = config(2);
    let mut snap: Snapshot = state.snapshot();
    snap.hash.0 ^= 1;
    let bytes = encode_body(&encode_snapshot(&snap));
    assert!(matches!(
        decode_file(&bytes),
        Err(Corruption::Hash(StateError::HashMismatch { .. }))
    ));
    let garbage = encode_body(&[0xff; 7]);
    assert!(matches!(decode_file(&garbage), Err(Corruption::Decode(_))));
}

#[test]
fn a_damaged_cache_falls_back_to_the_previous_version() {
    let (_dir, mut cache) = open();
    cache.store(&config(1)).unwrap();
    cache.store(&config(2)).unwrap();
    cache.store(&config(3)).unwrap();
    let mut bytes = fs::read(cache.path()).unwrap();
    bytes.truncate(bytes.len() - 5);
    fs::write(cache.path(), &bytes).unwrap();

    let loaded = cache.load_detailed().unwrap().unwrap();
    assert_eq!(loaded.from, CacheFile::Previous);
    assert_eq!(loaded.state, config(2));
    assert!(matches!(
        loaded.skipped.map(corruption),
        Some(Corruption::Length { .. })
    ));
    assert_eq!(cache.load().unwrap().unwrap(), config(2));

    // Both damaged: the error names the current file.
    fs::write(cache.prefix().join(PREVIOUS_FILE), b"junk").unwrap();
    let err = cache.load().unwrap_err();
    assert!(err.to_string().contains(CACHE_FILE), "{err}");
    assert!(matches!(corruption(err), Corruption::Length { .. }));

    // Storing again heals it.
    cache.store(&config(4)).unwrap();
    assert_eq!(cache.load().unwrap().unwrap(), config(4));
}

/// Removing `config.cache` is how an operator makes a DP use declarative_config; an old
/// `.prev` must not bring the cache back.
#[test]
fn a_removed_cache_is_no_cache_even_with_a_previous_version() {
    let (_dir, mut cache) = open();
    cache.store(&config(1)).unwrap();
    cache.store(&config(2)).unwrap();
    assert!(cache.prefix().join(PREVIOUS_FILE).exists());
    fs::remove_file(cache.path()).unwrap();
    assert!(cache.load().unwrap().is_none());
}

#[test]
fn size_limits() {
    let (_dir, cache) = open();
    let mut cache = cache.with_max_bytes(200);
    let small = config(0);
    cache.store(&small).unwrap();
    let big = config(10);
    let err = cache.store(&big).unwrap_err();
    assert!(
        matches!(err, CacheError::TooLarge { limit: 200, size, .. } if size > 200),
        "{err}"
    );
    assert!(err.to_string().contains("more than the limit of 200 bytes"));
    // The refused store left the cache as it was.
    assert_eq!(cache.load().unwrap().unwrap(), small);

    // A file larger than the limit is refused before it is read.
    fs::write(cache.path(), vec![0u8; 201]).unwrap();
    assert!(matches!(
        cache.load().unwrap_err(),
        CacheError::TooLarge { size: 201, .. }
    ));
    // A header claiming a huge body is a torn file, not an allocation.
    let mut lying = encode_file(&small);
    lying[10..18].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        decode_file(&lying),
        Err(Corruption::Length {
            expected: u64::MAX,
            ..
        })
    ));
}

#[test]
fn export_and_import() {
    let (dir, mut cache) = open();
    let file = dir.path().join("exported.cache");
    assert!(matches!(
        cache.export(&file).unwrap_err(),
        CacheError::Missing { .. }
    ));
    cache.store(&config(5)).unwrap();
    assert_eq!(cache.export(&file).unwrap(), config(5));
    assert_eq!(read_file(&file, DEFAULT_MAX_BYTES).unwrap(), config(5));
    // Same format as the cache itself: the file can be dropped in as a new DP's cache.
    assert_eq!(fs::read(&file).unwrap(), fs::read(cache.path()).unwrap());

    let (_dir2, mut other) = open();
    assert_eq!(other.import(&file).unwrap(), config(5));
    assert_eq!(other.load().unwrap().unwrap(), config(5));

    // A damaged file is refused and leaves the cache untouched.
    let mut bytes = fs::read(&file).unwrap();
    bytes[20] ^= 0xff;
    fs::write(&file, &bytes).unwrap();
    let err = other.import(&file).unwrap_err();
    assert!(err.to_string().contains("exported.cache"), "{err}");
    assert_eq!(other.load().unwrap().unwrap(), config(5));

    // write_file on its own, as `export-cache` of a running DP would use it.
    let plain = dir.path().join("plain.cache");
    write_file(&plain, &config(1), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(read_file(&plain, DEFAULT_MAX_BYTES).unwrap(), config(1));
}

#[test]
fn node_id_is_generated_once() {
    let (_dir, cache) = open();
    let mut calls = 0;
    let id = cache
        .node_id(|| {
            calls += 1;
            [7; 16]
        })
        .unwrap();
    assert_eq!(calls, 1);
    assert_eq!(id.get_version_num(), 4, "random UUIDs are version 4");
    assert_eq!(id, uuid::Builder::from_random_bytes([7; 16]).into_uuid());
    let text = fs::read_to_string(cache.prefix().join(NODE_ID_FILE)).unwrap();
    assert_eq!(text, format!("{id}\n"));

    // Later opens read it back and never call for randomness.
    let again = Cache::open(cache.prefix())
        .unwrap()
        .node_id(|| panic!("the id exists already"))
        .unwrap();
    assert_eq!(again, id);
}

#[test]
fn a_damaged_node_id_is_an_error_not_a_new_id() {
    let (_dir, cache) = open();
    let path = cache.prefix().join(NODE_ID_FILE);
    for (content, reason) in [
        (&b"not-a-uuid\n"[..], "invalid"),
        (&b"00000000-0000-0000-0000-000000000000\n"[..], "nil UUID"),
        (&b"\xff\xfe"[..], "not UTF-8"),
        (&[b'a'; 300][..], "more than the limit"),
    ] {
        fs::write(&path, content).unwrap();
        let err = cache.node_id(|| panic!("must not regenerate")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(reason), "{msg}");
        assert!(msg.contains(NODE_ID_FILE), "{msg}");
    }
    // Surrounding whitespace is fine (an operator may have edited the file).
    fs::write(&path, "  6f1c1f0e-3b6a-4c1e-9d2a-1b2c3d4e5f60 \n").unwrap();
    assert_eq!(
        cache.node_id(|| panic!()).unwrap().to_string(),
        "6f1c1f0e-3b6a-4c1e-9d2a-1b2c3d4e5f60"
    );
}

#[test]
fn an_io_error_names_the_file_and_the_operation() {
    let (dir, _cache) = open();
    let file = dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    // A prefix below a regular file cannot be created.
    let err = Cache::open(&file.join("sub")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("a-file/sub: cannot create directory"), "{msg}");
    let err = read_file(&dir.path().join("absent"), 100).unwrap_err();
    assert!(err.is_not_found());
    assert!(err.to_string().contains("absent: cannot open"), "{err}");
}
