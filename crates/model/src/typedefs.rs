//! Field validators shared by several entities, after Kong's `typedefs.lua`,
//! `kong/tools/ip.lua` and `kong/tools/uri.lua`. Each returns Kong's message on failure.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use crate::error::FieldError;
use crate::input::Reader;

/// `constants.PROTOCOLS` of Kong OSS, sorted as Kong sorts them.
pub const PROTOCOLS: &[&str] = &[
    "grpc",
    "grpcs",
    "http",
    "https",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
];

pub const SERVICE_PROTOCOLS: &[&str] = PROTOCOLS;

/// `routes.protocols.mutually_exclusive_subsets`.
pub const PROTOCOL_SUBSETS: &[&[&str]] = &[
    &["http", "https"],
    &["tcp", "tls", "udp"],
    &["tls_passthrough"],
    &["grpc", "grpcs"],
];

pub const HTTP_METHODS_HINT: &str = "invalid value";

/// Kong's `typedefs.timeout` upper bound: 2^31 - 2 ms.
pub const MAX_TIMEOUT: i64 = (1 << 31) - 2;
pub const DEFAULT_TIMEOUT: i64 = 60_000;
pub const MAX_TAGS: usize = 1000;

// --- kong/tools/ip.lua ---

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Ipv4,
    Ipv6,
    Name,
}

/// The result of Kong's `normalize_ip`: IPv4 without leading zeros, IPv6 fully expanded
/// (no brackets), names unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedHost {
    pub kind: HostKind,
    pub host: String,
    pub port: Option<u32>,
}

const INVALID_PORT: &str = "invalid port number";

/// `hostname_type`: decided by exclusion, not validation.
pub fn hostname_type(s: &str) -> HostKind {
    if s.matches(':').count() > 1 {
        return HostKind::Ipv6;
    }
    let rest = s.bytes().filter(|&b| b != b':');
    let mut any = false;
    for b in rest {
        if !(b.is_ascii_digit() || b == b'.') {
            return HostKind::Name;
        }
        any = true;
    }
    if any {
        HostKind::Ipv4
    } else {
        HostKind::Name
    }
}

/// A run of ASCII digits as a port; anything past 65535 is Kong's "invalid port number".
fn parse_port(digits: &str) -> Result<u32, String> {
    let mut n: u64 = 0;
    for b in digits.bytes() {
        n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    if n > 65535 {
        Err(INVALID_PORT.into())
    } else {
        Ok(n as u32)
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub fn normalize_ipv4(address: &str) -> Result<(String, Option<u32>), String> {
    let invalid = || format!("invalid ipv4 address: {address}");
    let (addr, port) = match address.split_once(':') {
        Some((a, p)) if all_digits(p) => (a, Some(p)),
        Some(_) => return Err(invalid()),
        None => (address, None),
    };
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 || parts.iter().any(|p| !all_digits(p) || p.len() > 3) {
        return Err(invalid());
    }
    let mut octets = [0u32; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        *o = p.parse().map_err(|_| invalid())?;
        if *o > 255 {
            return Err(invalid());
        }
    }
    let port = port.map(parse_port).transpose()?;
    let [a, b, c, d] = octets;
    Ok((format!("{a}.{b}.{c}.{d}"), port))
}

/// The end of a Lua `%b[]` match starting at byte 0, exclusive.
fn balanced_brackets(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

pub fn normalize_ipv6(address: &str) -> Result<(String, Option<u32>), String> {
    let (check, port) = match address
        .starts_with('[')
        .then(|| balanced_brackets(address))
        .flatten()
    {
        Some(end) => {
            let inner = &address[1..end - 1];
            let rest = &address[end..];
            let port = if rest.is_empty() {
                None
            } else {
                match rest.strip_prefix(':') {
                    // Kong errors out (500) on "[::1]:"; reject it as malformed instead.
                    Some(p) if all_digits(p) => Some(parse_port(p)?),
                    _ => return Err("invalid ipv6 address".into()),
                }
            };
            (inner, port)
        }
        None => (address, None),
    };
    let mut c = check.to_string();
    if c.starts_with(':') {
        c.insert(0, '0');
    }
    if c.ends_with(':') {
        c.push('0');
    }
    if c.contains("::") {
        let count = c.matches(':').count();
        let ins = format!(":{}", "0:".repeat(8usize.saturating_sub(count)));
        c = c.replacen("::", &ins, 1);
    }
    let groups: Vec<&str> = c.split(':').collect();
    let ok = groups.len() == 8
        && groups
            .iter()
            .all(|g| (1..=4).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err(format!("invalid ipv6 address: {address}"));
    }
    let expanded: Vec<String> = groups
        .iter()
        .map(|g| format!("{:0>4}", g.to_ascii_lowercase()))
        .collect();
    Ok((expanded.join(":"), port))
}

/// Penlight's `stringx.split(s, ".")`: a trailing separator yields a trailing "".
fn pl_split_dots(s: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = s.split('.').collect();
    if parts.last() == Some(&"") {
        parts.pop();
    }
    if parts.len() == 1 && parts[0].is_empty() {
        parts.clear();
    }
    if s.ends_with('.') {
        parts.push("");
    }
    parts
}

pub fn check_hostname(address: &str) -> Result<(String, Option<u32>), String> {
    let (name, port) = match address.rsplit_once(':') {
        Some((n, p)) if all_digits(p) => (n, Some(parse_port(p)?)),
        _ => (address, None),
    };
    let invalid = || format!("invalid hostname: {address}");
    let chars_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !chars_ok {
        return Err(invalid());
    }
    let segments = pl_split_dots(name);
    let last = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        if seg.ends_with('-') || (seg.is_empty() && i + 1 != last) {
            return Err(invalid());
        }
    }
    Ok((name.to_string(), port))
}

/// Kong's `normalize_ip`: the error is returned verbatim by several validators.
pub fn normalize_ip(address: &str) -> Result<NormalizedHost, String> {
    let kind = hostname_type(address);
    let (host, port) = match kind {
        HostKind::Ipv4 => normalize_ipv4(address)?,
        HostKind::Ipv6 => normalize_ipv6(address)?,
        HostKind::Name => check_hostname(address)?,
    };
    Ok(NormalizedHost { kind, host, port })
}

/// Kong's `format_host`: IPv6 in brackets, `port` when the host has none.
pub fn format_host(h: &NormalizedHost, default_port: Option<u32>) -> String {
    let port = h.port.or(default_port);
    let host = match h.kind {
        HostKind::Ipv6 => format!("[{}]", h.host),
        _ => h.host.clone(),
    };
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

// --- host validators ---

/// `typedefs.host`: a hostname or IP address, no port.
pub fn host(s: &str) -> Result<(), String> {
    match normalize_ip(s) {
        Err(e) if e != INVALID_PORT => Err(format!("invalid value: {s}")),
        Err(_) => Err("must not have a port".into()),
        Ok(n) if n.port.is_some() => Err("must not have a port".into()),
        Ok(_) => Ok(()),
    }
}

/// `typedefs.host_with_optional_port`: `normalize_ip`'s own message.
pub fn host_with_optional_port(s: &str) -> Result<(), String> {
    normalize_ip(s).map(|_| ())
}

fn sni_like(host: &str) -> Result<(), String> {
    match normalize_ip(host) {
        Err(e) if e != INVALID_PORT => Err(format!("invalid value: {host}")),
        Err(_) => Err("must not have a port".into()),
        Ok(n) if n.kind != HostKind::Name => Err("must not be an IP".into()),
        Ok(n) if n.port.is_some() => Err("must not have a port".into()),
        Ok(_) => Ok(()),
    }
}

/// `typedefs.sni`: a hostname, never an IP, no port, no wildcard.
pub fn sni(s: &str) -> Result<(), String> {
    sni_like(s)
}

/// `typedefs.wildcard_host` (SNI names): one `*` as first or last character.
pub fn wildcard_host(s: &str) -> Result<(), String> {
    let mut host = s.to_string();
    if let Some(idx) = s.find('*') {
        if idx != 0 && idx + 1 != s.len() {
            return Err("wildcard must be leftmost or rightmost character".into());
        }
        if s.matches('*').count() > 1 {
            return Err("only one wildcard must be specified".into());
        }
        host = s.replace('*', "wildcard");
    }
    // Kong's message names the substituted host.
    sni_like(&host)
}

/// An element of `routes.hosts`: at most one `*`, on the leftmost or rightmost label; a
/// port is allowed.
pub fn route_host(s: &str) -> Result<(), String> {
    if s.matches('*').count() > 1 {
        return Err("invalid wildcard: must have at most one wildcard".into());
    }
    if s.contains('*') && !(s.starts_with("*.") || s.ends_with(".*")) {
        return Err("invalid wildcard: must be placed at leftmost or rightmost label".into());
    }
    host_with_optional_port(&s.replace('*', "abc"))
}

pub fn valid_hostname_or_ip(h: &str) -> bool {
    host(h).is_ok()
}

/// A hostname (not an IP address) as Kong's `check_hostname` accepts it, no port.
pub fn valid_hostname(h: &str) -> bool {
    matches!(normalize_ip(h), Ok(n) if n.kind == HostKind::Name && n.port.is_none())
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
            if !all_digits(p) {
                return None;
            }
            Some((h, Some(p.parse().ok()?)))
        }
        None => Some((s, None)),
    }
}

// --- paths ---

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathErr {
    Rfc3986,
    Percent,
}

/// Kong's `validate_path` (the custom validator shared by `path` and `router_path`).
fn validate_path(p: &str) -> Result<(), (String, PathErr)> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b".-_~/%:@!$&'()*+,;=".contains(&b);
    if !p.starts_with('/') || !p.bytes().all(allowed) {
        return Err((
            format!(
                "invalid path: '{p}' (characters outside of the reserved list of RFC 3986 found)"
            ),
            PathErr::Rfc3986,
        ));
    }
    // Valid `%XX` triplets become `___`; any `%` left is a bad escape.
    let b = p.as_bytes();
    let mut raw = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            raw.extend_from_slice(b"___");
            i += 3;
        } else {
            raw.push(b[i]);
            i += 1;
        }
    }
    if let Some(at) = raw.iter().position(|&c| c == b'%') {
        let end = (at + 3).min(raw.len());
        return Err((
            format!(
                "invalid url-encoded value: '{}'",
                String::from_utf8_lossy(&raw[at..end])
            ),
            PathErr::Percent,
        ));
    }
    Ok(())
}

/// `typedefs.path` (services, upstream health-check paths).
pub fn path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err("should start with: /".into());
    }
    if s.contains("//") {
        return Err("must not have empty segments".into());
    }
    validate_path(s).map_err(|(m, _)| m)
}

/// `typedefs.router_path`: a normalized prefix path or a `~` regex that compiles.
pub fn router_path(s: &str) -> Result<(), String> {
    if s.contains("//") {
        return Err("must not have empty segments".into());
    }
    if !(s.starts_with('/') || s.starts_with("~/")) {
        return Err("should start with: / (fixed path) or ~/ (regex path)".into());
    }
    if let Err((m, PathErr::Percent)) = validate_path(s) {
        return Err(m);
    }
    match s.strip_prefix('~') {
        None => {
            let normalized = normalize_uri(s, true);
            if normalized != s {
                return Err(format!(
                    "non-normalized path, consider use '{normalized}' instead"
                ));
            }
            Ok(())
        }
        Some(re) => regex(re),
    }
}

const RESERVED: &[u8] = b"!*'();:@&=+$,/?%#[]";

/// `kong.tools.uri.normalize`: decode unreserved escapes, upper-case reserved ones,
/// remove dot segments and (optionally) merge slashes.
pub fn normalize_uri(uri: &str, merge_slashes: bool) -> String {
    let raw = uri.as_bytes();
    // The common request path: nothing to decode, no dot segment, no double slash.
    // One copy, instead of a working copy and then the result.
    if !raw.contains(&b'%')
        && !raw.contains(&b'.')
        && (!merge_slashes || !raw.windows(2).any(|w| w == b"//"))
    {
        return uri.to_string();
    }
    let mut bytes: Vec<u8> = raw.to_vec();
    if bytes.contains(&b'%') {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |j: usize| bytes.get(j).copied().filter(u8::is_ascii_hexdigit);
            if let (b'%', Some(h), Some(l)) = (bytes[i], hex(i + 1), hex(i + 2)) {
                let num = u8::from_str_radix(&format!("{}{}", h as char, l as char), 16)
                    .expect("two hex digits");
                if RESERVED.contains(&num) {
                    out.extend_from_slice(&[b'%', h.to_ascii_uppercase(), l.to_ascii_uppercase()]);
                } else {
                    out.push(num);
                }
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        bytes = out;
    }
    let has = |needle: &[u8], hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    if !bytes.contains(&b'.') && (!merge_slashes || !has(b"//", &bytes)) {
        return String::from_utf8_lossy(&bytes).into_owned();
    }

    let mut output: Vec<Vec<u8>> = Vec::new();
    let mut u: Vec<u8> = bytes;
    while !u.is_empty() {
        let at = |i: usize| u.get(i).copied();
        let (d0, d1, d2, d3) = (at(0), at(1), at(2), at(3));
        if u == b"/." {
            u = b"/".to_vec();
        } else if u == b"/.." {
            output.pop();
            u = b"/".to_vec();
        } else if u == b"." || u == b".." {
            u.clear();
        } else if d0 == Some(b'.') && d1 == Some(b'.') && d2 == Some(b'/') {
            u.drain(..3);
        } else if (d0 == Some(b'.') && d1 == Some(b'/'))
            || (d0 == Some(b'/') && d1 == Some(b'.') && d2 == Some(b'/'))
        {
            // `./` is dropped; `/./` becomes `/`.
            u.drain(..2);
        } else if d0 == Some(b'/') && d1 == Some(b'.') && d2 == Some(b'.') && d3 == Some(b'/') {
            u.drain(..3);
            output.pop();
        } else if merge_slashes && d0 == Some(b'/') && d1 == Some(b'/') {
            u.drain(..1);
        } else {
            match u[1..].iter().position(|&c| c == b'/') {
                Some(i) => {
                    output.push(u.drain(..=i).collect());
                }
                None => output.push(std::mem::take(&mut u)),
            }
        }
    }
    String::from_utf8_lossy(&output.concat()).into_owned()
}

// --- names, tags, headers ---

/// `typedefs.utf8_name`: names of services, routes, plugins instances.
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

/// `typedefs.header_name` (`utils.validate_header_name`).
pub fn header_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("no header name provided".into());
    }
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "bad header name '{s}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        ))
    }
}

/// `utils.validate_http_token` (cookie names): an RFC 2616 token.
pub fn http_token(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("no token provided".into());
    }
    let forbidden = |b: u8| !(0x20..0x7f).contains(&b) || b" \t()<>@,;:\\\"/?={}[]".contains(&b);
    if s.bytes().any(forbidden) {
        Err(
            "contains one or more invalid characters. ASCII control characters (0-31;127), \
             space, tab and the characters ()<>@,;:\\\"/?={}[] are not allowed."
                .into(),
        )
    } else {
        Ok(())
    }
}

/// `typedefs.http_method` element: `^%u+$`.
pub fn http_method(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("invalid value: {s}"))
    }
}

// --- addresses ---

/// `typedefs.ip_or_cidr`.
pub fn ip_or_cidr(s: &str) -> Result<(), String> {
    if parse_cidr(s).is_some() {
        Ok(())
    } else {
        Err(format!("invalid ip or cidr range: '{s}'"))
    }
}

/// Parses `addr` or `addr/len` into the address and prefix length. The prefix must be
/// written canonically (`/8`, not `/08`), as Kong's prefix tables require.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    // Kong looks for the slash from the third byte on.
    let slash = s
        .bytes()
        .enumerate()
        .skip(2)
        .find(|&(_, b)| b == b'/')
        .map(|(i, _)| i);
    let (addr, len) = match slash {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => {
            if !all_digits(l) || (l.len() > 1 && l.starts_with('0')) {
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

/// Kong's regex dry-run over route paths. We compile with the engine the router uses, so
/// the reason in parentheses is that engine's, not PCRE's.
pub fn regex(pattern: &str) -> Result<(), String> {
    regex::Regex::new(pattern).map(|_| ()).map_err(|e| {
        format!(
            "invalid regex: '{pattern}' (PCRE returned: {})",
            last_line(&e.to_string())
        )
    })
}

fn last_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

// --- generic value checks (Kong's `validate_field` pieces) ---

/// Kong's `is_nonempty`: not null, not `""`, not an empty table.
pub fn nonempty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// A Lua sequence: a JSON array, or `{}` (an empty table).
pub fn as_list(v: &Value) -> Option<&[Value]> {
    static EMPTY: [Value; 0] = [];
    match v {
        Value::Array(a) => Some(a),
        Value::Object(o) if o.is_empty() => Some(&EMPTY),
        _ => None,
    }
}

/// A string element or value with `len_min = 1`; `required` elements reject null.
pub fn value_str(v: &Value) -> Result<&str, String> {
    match v {
        Value::Null => Err("required field missing".into()),
        Value::String(s) if s.is_empty() => Err("length must be at least 1".into()),
        Value::String(s) => Ok(s),
        _ => Err("expected a string".into()),
    }
}

/// An integer the way Lua sees numbers (integral floats count).
pub fn value_int(v: &Value) -> Result<i64, String> {
    crate::input::as_integer(v)
}

pub fn value_int_between(v: &Value, lo: i64, hi: i64) -> Result<i64, String> {
    let i = value_int(v)?;
    crate::input::check_between(i as f64, lo as f64, hi as f64)?;
    Ok(i)
}

/// Kong sets drop duplicates before validation, keeping the first occurrence.
pub fn dedup(items: &[Value]) -> Vec<&Value> {
    let mut out: Vec<&Value> = Vec::with_capacity(items.len());
    for v in items {
        // Tables never compare equal in Lua.
        let is_table = v.is_array() || v.is_object();
        if is_table || !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// An array (or set) of strings each passing `check`; errors by 1-based position.
pub fn string_list(
    v: &Value,
    set: bool,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, FieldError> {
    let Some(items) = as_list(v) else {
        return Err(FieldError::msg(if set {
            "expected a set"
        } else {
            "expected an array"
        }));
    };
    let items: Vec<&Value> = if set {
        dedup(items)
    } else {
        items.iter().collect()
    };
    let mut out = Vec::with_capacity(items.len());
    let mut errs = BTreeMap::new();
    for (i, item) in items.into_iter().enumerate() {
        match value_str(item).and_then(|s| check(s).map(|_| s)) {
            Ok(s) => out.push(s.to_string()),
            Err(m) => {
                errs.insert(i + 1, FieldError::Msg(m));
            }
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(FieldError::Items(errs))
    }
}

/// Reads a list field with [`string_list`], recording its error.
pub fn read_list<'a>(
    r: &mut Reader<'a>,
    key: &'a str,
    set: bool,
    check: impl Fn(&str) -> Result<(), String>,
) -> Option<Vec<String>> {
    let v = r.raw(key)?;
    match string_list(v, set, check) {
        Ok(l) => Some(l),
        Err(e) => {
            r.nested_error(key, e);
            None
        }
    }
}

/// `typedefs.headers`-like map: keys checked by `key_check`, values arrays of strings
/// checked by `value_check`. Like Kong, only the first failure is reported.
pub fn headers_map(
    v: &Value,
    key_check: impl Fn(&str) -> Result<(), String>,
    value_check: impl Fn(&str) -> Result<(), String>,
) -> Result<BTreeMap<String, Vec<String>>, FieldError> {
    let obj = match v {
        Value::Object(o) => o,
        Value::Array(a) if a.is_empty() => return Ok(BTreeMap::new()),
        _ => return Err(FieldError::msg("expected a map")),
    };
    let mut out = BTreeMap::new();
    for (k, vals) in obj {
        if k.is_empty() {
            return Err(FieldError::msg("length must be at least 1"));
        }
        key_check(k).map_err(FieldError::Msg)?;
        if vals.is_null() {
            return Err(FieldError::msg("required field missing"));
        }
        let list = string_list(vals, false, &value_check)?;
        out.insert(k.clone(), list);
    }
    Ok(out)
}

/// Kong's `conditional` entity check failing: the field's error is replaced by the
/// then-match error and `@entity` gets the check's message (duplicates kept, as in Kong).
pub fn conditional_failed(r: &mut Reader<'_>, then_field: &str, err: FieldError, msg: String) {
    let errs = r.errors_mut();
    errs.fields.insert(then_field.to_string(), err);
    errs.entity.push(msg);
}

/// `failed conditional validation given value of field '<f>'`.
pub fn conditional_msg(if_field: &str) -> String {
    format!("failed conditional validation given value of field '{if_field}'")
}

/// `'a', 'b', 'c'`.
pub fn quoted_list(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Result<(HostKind, String, Option<u32>), String> {
        normalize_ip(s).map(|h| (h.kind, h.host, h.port))
    }

    #[test]
    fn normalize_ip_like_kong() {
        use HostKind::*;
        assert_eq!(
            n("001.002.003.004:123"),
            Ok((Ipv4, "1.2.3.4".into(), Some(123)))
        );
        assert_eq!(n("1.2.3"), Err("invalid ipv4 address: 1.2.3".into()));
        assert_eq!(
            n("1.2.3.256"),
            Err("invalid ipv4 address: 1.2.3.256".into())
        );
        assert_eq!(n("1.2.3.4:65536"), Err("invalid port number".into()));
        assert_eq!(
            n("::1"),
            Ok((Ipv6, "0000:0000:0000:0000:0000:0000:0000:0001".into(), None))
        );
        assert_eq!(
            n("[FE80::1]:8080"),
            Ok((
                Ipv6,
                "fe80:0000:0000:0000:0000:0000:0000:0001".into(),
                Some(8080)
            ))
        );
        assert_eq!(n("[::1]x"), Err("invalid ipv6 address".into()));
        assert_eq!(n("1::2::3"), Err("invalid ipv6 address: 1::2::3".into()));
        assert_eq!(
            n("Example.COM:80"),
            Ok((Name, "Example.COM".into(), Some(80)))
        );
        assert_eq!(n("a_b.c."), Ok((Name, "a_b.c.".into(), None)));
        assert_eq!(n("a-.com"), Err("invalid hostname: a-.com".into()));
        assert_eq!(n("a..com"), Err("invalid hostname: a..com".into()));
        assert_eq!(n(".a.com"), Err("invalid hostname: .a.com".into()));
        assert_eq!(n("exa mple"), Err("invalid hostname: exa mple".into()));
        assert_eq!(n("a.com:99999"), Err("invalid port number".into()));
        assert_eq!(n("a.com:"), Err("invalid hostname: a.com:".into()));
    }

    #[test]
    fn hosts() {
        assert_eq!(host("example.com"), Ok(()));
        assert_eq!(host("10.0.0.1"), Ok(()));
        assert_eq!(host("::1"), Ok(()));
        assert_eq!(host("example.com:80"), Err("must not have a port".into()));
        assert_eq!(
            host("example.com:99999"),
            Err("must not have a port".into())
        );
        assert_eq!(host("exa mple"), Err("invalid value: exa mple".into()));
        assert_eq!(host_with_optional_port("[::1]:8000"), Ok(()));
        assert_eq!(
            host_with_optional_port("a b"),
            Err("invalid hostname: a b".into())
        );
        assert_eq!(split_host_port("a:99999"), None);
        assert_eq!(route_host("*.example.com:8080"), Ok(()));
        assert_eq!(route_host("example.*"), Ok(()));
        assert_eq!(
            route_host("*.*.com"),
            Err("invalid wildcard: must have at most one wildcard".into())
        );
        assert_eq!(
            route_host("a.*.com"),
            Err("invalid wildcard: must be placed at leftmost or rightmost label".into())
        );
        assert_eq!(
            route_host("*.exa mple.com"),
            Err("invalid hostname: abc.exa mple.com".into())
        );
    }

    #[test]
    fn snis() {
        assert_eq!(sni("example.com"), Ok(()));
        assert_eq!(sni("10.0.0.1"), Err("must not be an IP".into()));
        assert_eq!(sni("example.com:443"), Err("must not have a port".into()));
        assert_eq!(
            sni("*.example.com"),
            Err("invalid value: *.example.com".into())
        );
        assert_eq!(wildcard_host("*.example.com"), Ok(()));
        assert_eq!(wildcard_host("example.*"), Ok(()));
        assert_eq!(
            wildcard_host("a.*.com"),
            Err("wildcard must be leftmost or rightmost character".into())
        );
        assert_eq!(
            wildcard_host("*.example.*"),
            Err("only one wildcard must be specified".into())
        );
        assert_eq!(
            wildcard_host("*.exa mple.com"),
            Err("invalid value: wildcard.exa mple.com".into())
        );
        assert_eq!(wildcard_host("1.2.3.4"), Err("must not be an IP".into()));
    }

    #[test]
    fn paths() {
        assert_eq!(path("/a/b"), Ok(()));
        assert_eq!(path("a"), Err("should start with: /".into()));
        assert_eq!(path("/a//b"), Err("must not have empty segments".into()));
        assert_eq!(
            path("/a%zz"),
            Err("invalid url-encoded value: '%zz'".into())
        );
        assert_eq!(
            path("/a%%41"),
            Err("invalid url-encoded value: '%__'".into())
        );
        assert_eq!(
            path("/a b"),
            Err(
                "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)"
                    .into()
            )
        );
        assert!(path("/caf\u{e9}").unwrap_err().contains("RFC 3986"));
        assert_eq!(router_path("/a b"), Ok(()));
        assert_eq!(
            router_path("/a/../b"),
            Err("non-normalized path, consider use '/b' instead".into())
        );
        assert_eq!(
            router_path("/%7euser"),
            Err("non-normalized path, consider use '/~user' instead".into())
        );
        assert_eq!(
            router_path("/a%2fb"),
            Err("non-normalized path, consider use '/a%2Fb' instead".into())
        );
        assert_eq!(router_path("~/a(b)?"), Ok(()));
        assert!(router_path("~/a(")
            .unwrap_err()
            .starts_with("invalid regex: '/a(' (PCRE returned: "));
        assert_eq!(
            router_path("a"),
            Err("should start with: / (fixed path) or ~/ (regex path)".into())
        );
    }

    #[test]
    fn uri_normalization() {
        assert_eq!(normalize_uri("/a/./b/../c", true), "/a/c");
        assert_eq!(normalize_uri("/a/..", true), "/");
        assert_eq!(normalize_uri("/a%2e%2E/b", true), "/a../b");
        assert_eq!(normalize_uri("/a/b/", true), "/a/b/");
        assert_eq!(normalize_uri("/a%3ab", true), "/a%3Ab");
        assert_eq!(normalize_uri("/plain/path", true), "/plain/path");
        assert_eq!(normalize_uri("", true), "");
        assert_eq!(normalize_uri("/", true), "/");
        assert_eq!(normalize_uri("/a//b", true), "/a/b");
        assert_eq!(normalize_uri("/a//b", false), "/a//b");
    }

    #[test]
    fn names_tags_cidrs_tokens() {
        assert_eq!(utf8_name("my-svc.v1_~"), Ok(()));
        assert_eq!(utf8_name("ünïcode"), Ok(()));
        assert!(utf8_name("a b").is_err());
        assert_eq!(tag("prod team"), Ok(()));
        assert!(tag("a,b").is_err());
        assert!(tag("a/b").is_err());
        assert_eq!(
            parse_cidr("10.0.0.0/8"),
            Some(("10.0.0.0".parse().unwrap(), 8))
        );
        assert_eq!(parse_cidr("::/0"), Some(("::".parse().unwrap(), 0)));
        assert_eq!(parse_cidr("::1"), Some(("::1".parse().unwrap(), 128)));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("10.0.0.0/08"), None);
        assert!(header_name("X-Api_Key").is_ok());
        assert!(header_name("X.Api").is_err());
        assert!(http_token("session").is_ok());
        assert!(http_token("a b").is_err());
        assert!(http_token("a;b").is_err());
        assert_eq!(http_method("GET"), Ok(()));
        assert_eq!(http_method("get"), Err("invalid value: get".into()));
    }
}
