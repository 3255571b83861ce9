//! Helpers shared by the bundled plugins: Kong's `name:value` config entries, the
//! header names and values read from them, and percent-decoding.

use http::{HeaderName, HeaderValue};

/// Operations on named values (query or body parameters, JSON properties), in Kong's
/// order: remove, rename, replace, add, append.
#[derive(Default)]
pub(crate) struct Ops<V> {
    pub(crate) remove: Vec<String>,
    pub(crate) rename: Vec<(String, String)>,
    pub(crate) replace: Vec<(String, V)>,
    pub(crate) add: Vec<(String, V)>,
    pub(crate) append: Vec<(String, V)>,
}

/// Lua's `entry:match("^([^:]+):*(.-)$")`: the name before the first colon, the value
/// after the colons that follow it (`None` when empty).
pub(crate) fn split(entry: &str) -> (&str, Option<&str>) {
    match entry.find(':') {
        Some(i) => {
            let v = entry[i..].trim_start_matches(':');
            (&entry[..i], (!v.is_empty()).then_some(v))
        }
        None => (entry, None),
    }
}

/// The names of `entries`, their values ignored.
pub(crate) fn names(entries: &[String]) -> Vec<String> {
    entries.iter().map(|e| split(e).0.to_string()).collect()
}

/// `name:value` entries with a value, as strings; Kong skips the others.
pub(crate) fn pairs(entries: &[String]) -> Vec<(String, String)> {
    entries
        .iter()
        .filter_map(|e| match split(e) {
            (n, Some(v)) => Some((n.to_string(), v.to_string())),
            (_, None) => None,
        })
        .collect()
}

pub(crate) fn header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("'{s}' is not a valid header"))
}

pub(crate) fn header_value(s: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(s).map_err(|_| format!("'{s}' is not a valid header value"))
}

/// `name:value` entries with a value, as headers; Kong skips the others.
pub(crate) fn header_pairs(entries: &[String]) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        if let (n, Some(v)) = split(e) {
            out.push((header_name(n)?, header_value(v)?));
        }
    }
    Ok(out)
}

/// `old:new` entries with a new name, as header renames; Kong skips the others.
pub(crate) fn header_renames(entries: &[String]) -> Result<Vec<(HeaderName, HeaderName)>, String> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        if let (old, Some(new)) = split(e) {
            out.push((header_name(old)?, header_name(new)?));
        }
    }
    Ok(out)
}

/// Percent-decoding with `+` as a space; a malformed escape stays as it is.
pub(crate) fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}
