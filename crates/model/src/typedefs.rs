//! Field validators shared by several entities, after Kong's `typedefs.lua`. Each returns
//! Kong's message on failure.

use std::net::IpAddr;

pub const PROTOCOLS: &[&str] = &[
    "grpc",
    "grpcs",
    "http",
    "https",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
    "ws",
    "wss",
];

pub const SERVICE_PROTOCOLS: &[&str] = &[
    "grpc",
    "grpcs",
    "http",
    "https",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
    "ws",
    "wss",
];

pub const HTTP_METHODS_HINT: &str = "invalid value";

/// Kong's `typedefs.timeout`: 1 ms up to 2^31 - 2 ms.
pub const MAX_TIMEOUT: i64 = (1 << 31) - 2;
pub const DEFAULT_TIMEOUT: i64 = 60_000;
pub const MAX_TAGS: usize = 1000;

/// `typedefs.host`: a hostname or IP address, no port.
pub fn host(s: &str) -> Result<(), String> {
    match split_host_port(s) {
        Some((h, None)) if valid_hostname_or_ip(h) => Ok(()),
        Some((h, Some(_))) if valid_hostname_or_ip(h) => Err("must not have a port".into()),
        _ => Err(format!("invalid value: {s}")),
    }
}

/// `typedefs.host_with_optional_port`.
pub fn host_with_optional_port(s: &str) -> Result<(), String> {
    match split_host_port(s) {
        Some((h, _)) if valid_hostname_or_ip(h) => Ok(()),
        _ => Err(format!("invalid value: {s}")),
    }
}

/// Splits `host[:port]`, `[v6]:port` or a bare IPv6 address. `None` when the port is not
/// a number in range.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return match after {
            "" => Some((h, None)),
            p => Some((h, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some((s, None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((h, Some(p.parse().ok()?)))
        }
        None => Some((s, None)),
    }
}

pub fn valid_hostname_or_ip(h: &str) -> bool {
    if h.parse::<IpAddr>().is_ok() {
        return true;
    }
    valid_hostname(h)
}

/// RFC 1123 labels; `_` is tolerated as Kong tolerates it in names such as SRV records.
pub fn valid_hostname(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.is_empty() || h.len() > 253 {
        return false;
    }
    h.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// `typedefs.path` for services: starts with `/`, no empty segments, valid percent
/// encoding, only characters allowed in an RFC 3986 path.
pub fn path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err("should start with: /".into());
    }
    if s.contains("//") {
        return Err("must not have empty segments".into());
    }
    check_path_chars(s)
}

fn check_path_chars(s: &str) -> Result<(), String> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let ok = bytes.get(i + 1).is_some_and(|c| c.is_ascii_hexdigit())
                && bytes.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit());
            if !ok {
                let end = (i + 3).min(bytes.len());
                return Err(format!(
                    "invalid url-encoded value: '{}'",
                    String::from_utf8_lossy(&bytes[i..end])
                ));
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@/".contains(&b)
            || b >= 0x80;
        if !allowed {
            return Err(format!(
                "invalid path: '{s}' (characters outside of the reserved list of RFC 3986 found)"
            ));
        }
        i += 1;
    }
    Ok(())
}

/// `typedefs.utf8_name`: names of services, routes and upstreams.
pub fn utf8_name(s: &str) -> Result<(), String> {
    let ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c) || !c.is_ascii());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid value '{s}': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
        ))
    }
}

/// `typedefs.tag`.
pub fn tag(s: &str) -> Result<(), String> {
    let ok = s
        .chars()
        .all(|c| (!c.is_ascii() || (c.is_ascii_graphic() || c == ' ')) && c != ',' && c != '/');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tag '{s}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
        ))
    }
}

/// `typedefs.sni`: a hostname, optionally with one leading `*.` or trailing `.*`, never
/// an IP address.
pub fn sni(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Err("must not be an IP".into());
    }
    if s.contains(':') {
        return Err("must not have a port".into());
    }
    let stripped = s
        .strip_prefix("*.")
        .or_else(|| s.strip_suffix(".*"))
        .unwrap_or(s);
    if stripped.contains('*') {
        return Err("only one wildcard must be specified".into());
    }
    if valid_hostname(stripped) {
        Ok(())
    } else {
        Err(format!("invalid value: {s}"))
    }
}

/// An IP address or CIDR block, as `typedefs.ip_or_cidr` accepts.
pub fn ip_or_cidr(s: &str) -> Result<(), String> {
    if parse_cidr(s).is_some() {
        Ok(())
    } else {
        Err(format!("invalid ip or cidr range: '{s}'"))
    }
}

/// Parses `addr` or `addr/len` into the address and prefix length.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => {
            if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u8 = l.parse().ok()?;
            if n > max {
                return None;
            }
            n
        }
        None => max,
    };
    Some((ip, len))
}

/// `typedefs.header_name`: an HTTP token.
pub fn header_name(s: &str) -> Result<(), String> {
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("bad header name '{s}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"))
    }
}

/// Kong's `validate_regex` over route paths and header values: we compile with the same
/// engine the router uses, so a pattern accepted here always compiles on the DP.
pub fn regex(pattern: &str) -> Result<(), String> {
    regex::Regex::new(pattern)
        .map(|_| ())
        .map_err(|e| format!("invalid regex: '{pattern}' ({})", first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .last()
        .unwrap_or("")
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host("example.com"), Ok(()));
        assert_eq!(host("10.0.0.1"), Ok(()));
        assert_eq!(host("::1"), Ok(()));
        assert_eq!(host("example.com:80"), Err("must not have a port".into()));
        assert_eq!(host("exa mple"), Err("invalid value: exa mple".into()));
        assert_eq!(host_with_optional_port("[::1]:8000"), Ok(()));
        assert_eq!(split_host_port("a:99999"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(path("/a/b"), Ok(()));
        assert_eq!(path("a"), Err("should start with: /".into()));
        assert_eq!(path("/a//b"), Err("must not have empty segments".into()));
        assert!(path("/a%zz").unwrap_err().contains("invalid url-encoded value"));
        assert!(path("/a b").unwrap_err().contains("RFC 3986"));
    }

    #[test]
    fn names_tags_snis_cidrs() {
        assert_eq!(utf8_name("my-svc.v1_~"), Ok(()));
        assert_eq!(utf8_name("ünïcode"), Ok(()));
        assert!(utf8_name("a b").is_err());
        assert_eq!(tag("prod team"), Ok(()));
        assert!(tag("a,b").is_err());
        assert!(tag("a/b").is_err());
        assert_eq!(sni("*.example.com"), Ok(()));
        assert_eq!(sni("example.*"), Ok(()));
        assert!(sni("*.*.example.com").is_err());
        assert!(sni("10.0.0.1").is_err());
        assert_eq!(parse_cidr("10.0.0.0/8"), Some(("10.0.0.0".parse().unwrap(), 8)));
        assert_eq!(parse_cidr("::1"), Some(("::1".parse().unwrap(), 128)));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert!(header_name("X-Api-Key").is_ok());
        assert!(header_name("bad header").is_err());
    }
}
