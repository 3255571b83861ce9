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
