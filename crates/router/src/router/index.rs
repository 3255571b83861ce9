//! Prefilters that narrow wildcard hosts and regex paths to the few that can match a
//! request. Each one only rules out; the compiled regex still decides.

use std::collections::HashMap;

use regex::{Regex, RegexSet};

/// Above this many regexes in one bucket, a `RegexSet` tests them in one pass.
const SET_MIN: usize = 16;
const SET_CHUNK: usize = 128;

/// Keys looked up by "which keys are a prefix (or suffix) of this input": one hash
/// probe per distinct key length.
pub(super) struct Affixes<T> {
    map: HashMap<String, T>,
    lens: Vec<usize>,
}

impl<T> Default for Affixes<T> {
    fn default() -> Self {
        Affixes {
            map: HashMap::new(),
            lens: Vec::new(),
        }
    }
}

impl<T: Default> Affixes<T> {
    fn entry(&mut self, key: &str) -> &mut T {
        if !self.map.contains_key(key) {
            self.lens.push(key.len());
        }
        self.map.entry(key.to_string()).or_default()
    }
}

impl<T> Affixes<T> {
    fn finish(&mut self) {
        self.lens.sort_unstable();
        self.lens.dedup();
    }

    fn prefixes_of<'a>(&'a self, s: &str, mut f: impl FnMut(&'a T)) {
        for &n in &self.lens {
            let Some(k) = s.get(..n) else {
                if n > s.len() {
                    break;
                }
                continue;
            };
            if let Some(v) = self.map.get(k) {
                f(v);
            }
        }
    }

    fn suffixes_of<'a>(&'a self, s: &str, mut f: impl FnMut(&'a T)) {
        for &n in &self.lens {
            if n > s.len() {
                break;
            }
            if let Some(v) = s.get(s.len() - n..).and_then(|k| self.map.get(k)) {
                f(v);
            }
        }
    }
}

// === wildcard hosts ===

struct WildValue {
    value: String,
    re: Regex,
    /// The first (route, host) in priority order holding this value.
    first: (usize, usize),
}

#[derive(Default)]
pub(super) struct Wildcards {
    values: Vec<WildValue>,
    ids: HashMap<String, usize>,
    prefix: Affixes<Vec<usize>>,
    suffix: Affixes<Vec<usize>>,
    always: Vec<usize>,
}

/// Characters the host-to-regex translation leaves literal (besides the escaped dot).
fn host_literal(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
}

impl Wildcards {
    /// Entries must come in priority order.
    pub(super) fn add(&mut self, route: usize, host: usize, value: &str, re: &Regex) {
        if self.ids.contains_key(value) {
            return;
        }
        let id = self.values.len();
        self.ids.insert(value.to_string(), id);
        self.values.push(WildValue {
            value: value.to_string(),
            re: re.clone(),
            first: (route, host),
        });
        let parts: Vec<&str> = value.split('*').collect();
        let (head, tail) = (parts[0], parts[parts.len() - 1]);
        if !parts.iter().all(|p| host_literal(p)) {
            self.always.push(id);
        } else if !head.is_empty() {
            self.prefix.entry(head).push(id);
        } else if !tail.is_empty() {
            self.suffix.entry(tail).push(id);
        } else {
            self.always.push(id);
        }
    }

    pub(super) fn finish(&mut self) {
        self.prefix.finish();
        self.suffix.finish();
    }

    /// Pushes every wildcard value matching `host` (port included) and returns the
    /// one the first matching route in priority order holds.
    pub(super) fn matching<'a>(&'a self, host: &str, out: &mut Vec<&'a str>) -> Option<&'a str> {
        let mut ids: Vec<usize> = self.always.clone();
        self.prefix.prefixes_of(host, |v| ids.extend_from_slice(v));
        self.suffix.suffixes_of(host, |v| ids.extend_from_slice(v));
        // A portless pattern also matches with the request's `:port` after it.
        if let Some((h, port)) = host.rsplit_once(':') {
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                self.suffix.suffixes_of(h, |v| ids.extend_from_slice(v));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let mut best: Option<&WildValue> = None;
        for id in ids {
            let w = &self.values[id];
            if w.re.is_match(host) {
                out.push(&w.value);
                if best.is_none_or(|b| w.first < b.first) {
                    best = Some(w);
                }
            }
        }
        best.map(|w| w.value.as_str())
    }
}

// === regex paths ===

struct RegexValue {
    value: String,
    re: Regex,
    /// The first route in priority order holding this value.
    first: usize,
}

#[derive(Default)]
struct Bucket {
    ids: Vec<usize>,
    sets: Vec<RegexSet>,
}

#[derive(Default)]
pub(super) struct RegexPaths {
    values: Vec<RegexValue>,
    ids: HashMap<String, usize>,
    prefix: Affixes<Bucket>,
    always: Bucket,
}

/// The text every match of `re` (anchored at the start) begins with. Stops at the
/// first construct that is not a plain literal; a top-level `|` voids it.
fn literal_prefix(re: &str) -> String {
    let mut out = String::new();
    if re.contains('|') {
        return out;
    }
    let mut it = re.chars().peekable();
    while let Some(c) = it.next() {
        let lit = if c.is_ascii_alphanumeric() || "/-_~%,;=@:!&'<>\"".contains(c) {
            c
        } else if c == '\\' {
            match it.next() {
                // `\<` and `\>` are word boundaries, not literals.
                Some(d) if d.is_ascii_punctuation() && !matches!(d, '<' | '>') => d,
                _ => break,
            }
        } else {
            break;
        };
        if matches!(it.peek(), Some('?' | '*' | '+' | '{')) {
            break;
        }
        out.push(lit);
    }
    out
}

impl RegexPaths {
    /// Entries must come in priority order.
    pub(super) fn add(&mut self, route: usize, value: &str, re: &Regex) {
        if self.ids.contains_key(value) {
            return;
        }
        let id = self.values.len();
        self.ids.insert(value.to_string(), id);
        self.values.push(RegexValue {
            value: value.to_string(),
            re: re.clone(),
            first: route,
        });
        let lit = literal_prefix(value);
        if lit.is_empty() {
            self.always.ids.push(id);
        } else {
            self.prefix.entry(&lit).ids.push(id);
        }
    }

    pub(super) fn finish(&mut self) {
        self.prefix.finish();
        let values = &self.values;
        let sets = |b: &mut Bucket| {
            if b.ids.len() >= SET_MIN {
                b.sets = b
                    .ids
                    .chunks(SET_CHUNK)
                    .map(|c| RegexSet::new(c.iter().map(|&id| values[id].re.as_str())))
                    .collect::<Result<_, _>>()
                    // Too big for a set: test one by one.
                    .unwrap_or_default();
            }
        };
        sets(&mut self.always);
        self.prefix.map.values_mut().for_each(sets);
    }

    /// Pushes every regex value matching `path` and returns the one the first matching
    /// route in priority order holds.
    pub(super) fn matching<'a>(&'a self, path: &str, out: &mut Vec<&'a str>) -> Option<&'a str> {
        let mut ids = Vec::new();
        self.scan(&self.always, path, &mut ids);
        self.prefix
            .prefixes_of(path, |b| self.scan(b, path, &mut ids));
        let mut best: Option<&RegexValue> = None;
        for id in ids {
            let r = &self.values[id];
            out.push(&r.value);
            if best.is_none_or(|b| r.first < b.first) {
                best = Some(r);
            }
        }
        best.map(|r| r.value.as_str())
    }

    fn scan(&self, b: &Bucket, path: &str, ids: &mut Vec<usize>) {
        if b.sets.is_empty() {
            ids.extend(
                b.ids
                    .iter()
                    .filter(|&&id| self.values[id].re.is_match(path)),
            );
        } else {
            for (c, set) in b.sets.iter().enumerate() {
                ids.extend(set.matches(path).iter().map(|m| b.ids[c * SET_CHUNK + m]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::literal_prefix;

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("/users/\\d+"), "/users/");
        assert_eq!(literal_prefix("/ab?c"), "/a");
        assert_eq!(literal_prefix("/a\\.b(x)"), "/a.b");
        assert_eq!(literal_prefix("/a|/b"), "");
        assert_eq!(literal_prefix("(?i)/a"), "");
        assert_eq!(literal_prefix("/a{2}"), "/");
        assert_eq!(literal_prefix("/x.y"), "/x");
        assert_eq!(literal_prefix("/x\\<y"), "/x");
    }
}
