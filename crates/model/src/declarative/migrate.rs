//! The on-the-fly migration of `_format_version` 1.1 and 2.1 files to 3.0: route paths
//! that look like regexes get the `~` prefix 3.0 requires (Kong's `route_path.lua`).

use serde_json::{Map, Value};

/// Characters that Kong's `%XX` decoding keeps encoded (upper-cased).
const RESERVED: &[u8] = b"!#$%&'()*+,/:;=?@[]";
/// Characters that become escaped regex literals when decoded inside a regex path.
const REGEX_META: &[u8] = b".^-{}\\|";

/// Migrates top-level routes and routes nested in top-level services, as Kong does.
pub fn route_paths(top: &mut Map<String, Value>) {
    if let Some(Value::Array(routes)) = top.get_mut("routes") {
        migrate_routes(routes);
    }
    if let Some(Value::Array(services)) = top.get_mut("services") {
        for s in services {
            if let Some(Value::Array(routes)) = s.get_mut("routes") {
                migrate_routes(routes);
            }
        }
    }
    top.insert("_format_version".into(), Value::String("3.0".into()));
}

fn migrate_routes(routes: &mut [Value]) {
    for r in routes {
        if let Some(Value::Array(paths)) = r.get_mut("paths") {
            for p in paths {
                if let Value::String(s) = p {
                    *s = migrate_path(s);
                }
            }
        }
    }
}

/// A path is plain when every character is one of `A-Za-z0-9.-_~/%`; anything else
/// makes it a regex. Kong's PCRE `$` also matches before one final newline.
pub fn is_plain(path: &str) -> bool {
    let path = path.strip_suffix('\n').unwrap_or(path);
    path.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_~/%".contains(&b))
}

pub fn migrate_path(path: &str) -> String {
    if is_plain(path) {
        normalize(path)
    } else {
        format!("~{}", decode_percent(path, true))
    }
}

/// Decodes `%XX` triplets: reserved characters stay encoded (upper-cased); in a regex,
/// regex metacharacters become escaped literals.
fn decode_percent(s: &str, regex: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(n) = u8::from_str_radix(hex, 16) {
                if RESERVED.contains(&n) {
                    out.extend_from_slice(format!("%{}", hex.to_ascii_uppercase()).as_bytes());
                } else if regex && REGEX_META.contains(&n) {
                    out.push(b'\\');
                    out.push(n);
                } else {
                    out.push(n);
                }
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Kong's `uri.normalize(path, true)`: decode unreserved `%XX`, remove dot segments,
/// merge `//`.
pub fn normalize(path: &str) -> String {
    if path.is_empty() || path == "/" {
        return path.to_string();
    }
    let mut p = if path.contains('%') {
        decode_percent(path, false)
    } else {
        path.to_string()
    };
    if p.contains('.') || p.contains("//") {
        while p.contains("//") {
            p = p.replace("//", "/");
        }
        p = remove_dot_segments(&p);
    }
    p
}

fn remove_dot_segments(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let trailing = p.ends_with("/.") || p.ends_with("/..") || p.ends_with('/');
    for seg in p.split('/') {
        match seg {
            "." => {}
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
            }
            s => out.push(s),
        }
    }
    let mut joined = out.join("/");
    if trailing && !joined.ends_with('/') {
        joined.push('/');
    }
    if p.starts_with('/') && !joined.starts_with('/') {
        joined.insert(0, '/');
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_detection_and_prefix() {
        assert_eq!(migrate_path("/prefix"), "/prefix");
        assert_eq!(migrate_path("/regex.+"), "~/regex.+");
        assert_eq!(migrate_path("/users/\\d+"), "~/users/\\d+");
        assert_eq!(migrate_path("/a/(?<id>[0-9]+)"), "~/a/(?<id>[0-9]+)");
        assert_eq!(migrate_path("/a%2Eb"), "/a.b");
        assert_eq!(migrate_path("/a/./b/../c"), "/a/c");
        assert_eq!(migrate_path("/a%2fb"), "/a%2Fb");
        assert_eq!(migrate_path("/x$"), "~/x$");
        assert_eq!(migrate_path("/x%2E*"), "~/x\\.*");
    }

    #[test]
    fn percent_decoding() {
        // Plain: unreserved triplets decode, reserved ones are upper-cased.
        assert_eq!(migrate_path("/caf%c3%a9"), "/caf\u{e9}");
        assert_eq!(migrate_path("/a%3fb%2f"), "/a%3Fb%2F");
        assert_eq!(migrate_path("/a%7e"), "/a~");
        // Regex: reserved kept, metacharacters escaped, others literal.
        assert_eq!(migrate_path("/a+%2a%7c%41"), "~/a+%2A\\|A");
        // A malformed triplet is left alone.
        assert_eq!(migrate_path("/a%zz"), "/a%zz");
        assert_eq!(migrate_path("/a%4"), "/a%4");
    }

    #[test]
    fn dot_segments_and_empty_segments() {
        assert_eq!(migrate_path("/a//b"), "/a/b");
        assert_eq!(migrate_path("/a/b/.."), "/a/");
        assert_eq!(migrate_path("/.."), "/");
        assert_eq!(migrate_path("/a/b/"), "/a/b/");
        assert_eq!(migrate_path("/"), "/");
        assert_eq!(migrate_path(""), "");
        assert_eq!(migrate_path("/v1.0/x"), "/v1.0/x");
    }

    #[test]
    fn a_final_newline_does_not_make_a_regex() {
        assert!(is_plain("/a\n"));
        assert!(!is_plain("/a\n\n"));
        assert!(!is_plain("/a\nb"));
    }
}
