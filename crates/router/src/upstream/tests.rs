use super::upstream_uri;
use crate::router::PathHandling::{self, V0, V1};

/// (service.path, matched route path or none, strip_path, path_handling, request, upstream)
type Row = (
    Option<&'static str>,
    Option<&'static str>,
    bool,
    PathHandling,
    &'static str,
    &'static str,
);

#[test]
fn kong_path_handling_table() {
    #[rustfmt::skip]
    let rows: &[Row] = &[
        // Kong's Admin API docs, "path handling algorithms".
        (Some("/s"), Some("/fv0"), false, V0, "/fv0req", "/s/fv0req"),
        (Some("/s"), Some("/fv1"), false, V1, "/fv1req", "/sfv1req"),
        (Some("/s"), Some("/tv0"), true, V0, "/tv0req", "/s/req"),
        (Some("/s"), Some("/tv1"), true, V1, "/tv1req", "/sreq"),
        (Some("/s"), Some("/fv0/"), false, V0, "/fv0/req", "/s/fv0/req"),
        (Some("/s"), Some("/fv1/"), false, V1, "/fv1/req", "/sfv1/req"),
        (Some("/s"), Some("/tv0/"), true, V0, "/tv0/req", "/s/req"),
        (Some("/s"), Some("/tv1/"), true, V1, "/tv1/req", "/sreq"),
        // get_upstream_uri branches: service path ending in `/`.
        (Some("/s/"), Some("/t"), true, V0, "/t", "/s"),
        (Some("/s/"), Some("/t"), true, V0, "/t/", "/s/"),
        (Some("/s/"), Some("/t"), true, V0, "/t/x", "/s/x"),
        (Some("/s/"), Some("/t/"), true, V0, "/t/x", "/s/x"),
        (Some("/s/"), Some("/t"), false, V0, "/t/x", "/s/t/x"),
        (None, Some("/t"), true, V0, "/t", "/"),
        (None, Some("/t"), true, V0, "/t/x", "/x"),
        (None, None, true, V0, "/x/y", "/x/y"),
        // ... and not ending in `/`.
        (Some("/s"), Some("/t"), true, V0, "/t", "/s"),
        (Some("/s"), Some("/t"), true, V0, "/t/", "/s/"),
        (Some("/s"), None, false, V0, "/", "/s"),
        (Some("/s"), None, true, V0, "/a", "/s/a"),
        // v1 joins without adding a slash, dropping one of two.
        (Some("/s/"), Some("/t"), true, V1, "/t/x", "/s/x"),
        (Some("/s/"), Some("/t"), false, V1, "/t/x", "/s/t/x"),
        (None, Some("/t"), true, V1, "/t", "/"),
    ];
    for &(service, route_path, strip, handling, req, want) in rows {
        let postfix = route_path.map(|p| {
            let end = p.len().min(req.len());
            &req[end..]
        });
        let got = upstream_uri(handling, strip, service, postfix, req);
        assert_eq!(
            got, want,
            "service {service:?} route {route_path:?} strip {strip} {handling:?} request {req}"
        );
    }
}
