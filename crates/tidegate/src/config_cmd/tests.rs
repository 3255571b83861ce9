//! The pure parts of `config db_import|db_export`: Admin API addresses and responses.

use serde_json::json;

use super::admin_client::{parse_response, AdminUrl};

#[test]
fn admin_urls_parse_like_kong_addresses() {
    let ok = |raw: &str| {
        let u = AdminUrl::parse(raw).unwrap();
        (u.host, u.port, u.base)
    };
    assert_eq!(
        ok("http://127.0.0.1:8001"),
        ("127.0.0.1".into(), 8001, "".into())
    );
    assert_eq!(ok("127.0.0.1:8001/"), ("127.0.0.1".into(), 8001, "".into()));
    assert_eq!(
        ok("HTTP://cp.local/admin/"),
        ("cp.local".into(), 80, "/admin".into())
    );
    assert_eq!(ok("http://[::1]:8001"), ("::1".into(), 8001, "".into()));
    for bad in ["https://127.0.0.1:8444", "http://:8001", "http://host:port"] {
        assert!(AdminUrl::parse(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn responses_are_framed_by_length_chunks_or_close() {
    let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"config\":1}\nextra")
        .unwrap();
    assert_eq!((r.status, r.body), (200, json!({"config": 1})));
    let r = parse_response(
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!((r.status, r.body), (201, json!({"a": 1})));
    let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    assert_eq!((r.status, r.body), (204, json!(null)));
    let r = parse_response(b"HTTP/1.1 502 Bad Gateway\r\n\r\nnot json").unwrap();
    assert_eq!(r.body, json!("not json"));
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    assert!(parse_response(b"garbage").is_err());
}

#[test]
fn progress_meters_redraw_a_terminal_and_print_few_plain_lines() {
    use super::progress::{bytes, due, secs};
    use std::time::Duration;
    let ms = Duration::from_millis;
    // A terminal: each new percent, at most every 100 ms, and always the end.
    assert!(due(true, 1, 0, ms(100)));
    assert!(!due(true, 2, 1, ms(50)));
    assert!(!due(true, 1, 1, ms(500)));
    assert!(due(true, 100, 99, ms(1)));
    // Plain lines: a 10% step and a second since the last line; never the end, which the
    // next stage line says.
    assert!(due(false, 10, 0, ms(1000)));
    assert!(!due(false, 10, 0, ms(999)));
    assert!(!due(false, 19, 10, ms(5000)));
    assert!(due(false, 35, 10, ms(1000)));
    assert!(!due(false, 100, 90, ms(5000)));
    // However fast a transfer reports, plain lines stay under one per step.
    let mut last = 0;
    let mut lines = 0;
    for p in 0..=100u8 {
        if due(false, p, last, ms(1000)) {
            last = p;
            lines += 1;
        }
    }
    assert_eq!(lines, 9);
    assert_eq!(
        (bytes(512), bytes(1536), bytes(12_900_000)),
        ("512 B".into(), "1.5 KiB".into(), "12.3 MiB".into())
    );
    assert_eq!(
        (secs(ms(850)), secs(ms(3300))),
        ("850ms".into(), "3.3s".into())
    );
}
