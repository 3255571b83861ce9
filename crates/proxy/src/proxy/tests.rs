use super::*;

#[test]
fn host_port_leaves_out_default_ports() {
    assert_eq!(host_port("a.com", 80, false), "a.com");
    assert_eq!(host_port("a.com", 443, false), "a.com:443");
    assert_eq!(host_port("a.com", 443, true), "a.com");
    assert_eq!(host_port("::1", 8000, false), "[::1]:8000");
}

#[test]
fn strip_port_handles_ipv6() {
    assert_eq!(strip_port("a.com:8000"), "a.com");
    assert_eq!(strip_port("a.com"), "a.com");
    assert_eq!(strip_port("[::1]:80"), "::1");
    assert_eq!(strip_port("::1"), "::1");
}

#[test]
fn escape_path_reescapes_what_normalisation_decoded() {
    assert_eq!(escape_path("/a b/%2F/ü"), "/a%20b/%2F/%C3%BC");
    assert_eq!(escape_path("/x;y=1/@:"), "/x;y=1/@:");
}

#[test]
fn hop_by_hop_headers_go() {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static("close, x-secret"),
    );
    h.insert("x-secret", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert("x-kept", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h, false);
    let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, vec!["te", "x-kept"]);
}

#[test]
fn hop_by_hop_index_agrees_with_the_list() {
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
    }
    assert_eq!(hop_by_hop_index(&header::HOST), None);
    assert_eq!(hop_by_hop_index(&HeaderName::from_static("x-te")), None);
}

#[test]
fn hop_by_hop_only_what_is_there_and_what_connection_names() {
    let names = |h: &HeaderMap| h.keys().map(|k| k.as_str().to_string()).collect::<Vec<_>>();
    // Nothing hop-by-hop: untouched.
    let mut h = HeaderMap::new();
    h.insert("x-a", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h, false);
    assert_eq!(names(&h), ["x-a"]);
    // The usual `Connection: keep-alive` goes with the header itself; a TE other than
    // `trailers` goes; on an upgrade, Upgrade stays.
    let mut h = HeaderMap::new();
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static("Keep-Alive, X-Other"),
    );
    h.insert("x-other", HeaderValue::from_static("1"));
    h.insert(header::TE, HeaderValue::from_static("gzip"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
    h.insert("x-b", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h, true);
    assert_eq!(names(&h), ["upgrade", "x-b"]);
    // Only a Transfer-Encoding.
    let mut h = HeaderMap::new();
    h.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    strip_hop_by_hop(&mut h, false);
    assert_eq!(names(&h), ["content-type"]);
}

#[test]
fn latency_values_from_the_table_and_beyond_it() {
    for ms in [0u64, 1, 9, 10, 99, 100, 999, 1000, 12_345] {
        assert_eq!(millis(Duration::from_millis(ms)), ms.to_string().as_str());
    }
    assert_eq!(millis(Duration::from_micros(1_500)), "1");
}

#[test]
fn request_ids_are_32_hex_and_distinct() {
    let ids = RequestIds::new(42);
    let a = ids.next().as_str().to_string();
    let b = ids.next().as_str().to_string();
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
    assert_eq!(
        RequestIds::new(42).next().as_str(),
        a,
        "same seed, same sequence"
    );
    // The same digits as formatting the two halves would give.
    let n = 0u64;
    let x = splitmix(42 ^ n);
    let y = splitmix(x ^ 42u64.rotate_left(17));
    assert_eq!(a, format!("{x:016x}{y:016x}"));
}
