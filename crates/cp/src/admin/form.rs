//! Form bodies as Kong reads them (`kong/api/arguments.lua`): `a.b=1` nests records,
//! `a[]=x` appends and `a[2]=x` places array items, a repeated name makes an array, and
//! `""` means `null`. Values stay strings here; [`super::coerce`] gives them the types
//! the entity's schema expects.

use serde_json::{Map, Value};

use super::request::percent_decode;

/// One form field's value: text, or JSON from a multipart part sent as
/// `application/json`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum FormValue {
    Text(String),
    Json(Value),
}

/// `application/x-www-form-urlencoded` pairs in order, a name possibly repeated.
pub(super) fn urlencoded(body: &[u8]) -> Vec<(String, FormValue)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| String::from_utf8_lossy(&percent_decode(s, true)).into_owned();
            (dec(k), FormValue::Text(dec(v)))
        })
        .collect()
}

/// `multipart/form-data` parts that have a name, in order. A file part counts as its
/// text content (how `cert=@cert.pem` reaches a certificate).
pub(super) fn multipart(
    body: &[u8],
    content_type: &str,
) -> Result<Vec<(String, FormValue)>, String> {
    let boundary = content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|b| !b.is_empty())
        .ok_or("no boundary in the Content-Type")?;
    let delimiter = format!("--{boundary}").into_bytes();
    let mut pos = find(body, &delimiter, 0).ok_or("no part delimiter")? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        pos += line_end(&body[pos..]).ok_or("a delimiter is not followed by a line end")?;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("a part has no header end")?;
        let head = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| "a part's headers are not UTF-8".to_string())?;
        let data_start = head_end + 4;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(&delimiter);
        let data_end = find(body, &closing, data_start).ok_or("the last part is not closed")?;
        let data = &body[data_start..data_end];
        pos = data_end + closing.len();

        let mut name = None;
        let mut json = false;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                name = disposition_param(v, "name");
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                json = v
                    .trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json");
            }
        }
        let Some(name) = name else { continue };
        let text = String::from_utf8(data.to_vec())
            .map_err(|_| format!("part '{name}' is not UTF-8 text"))?;
        let value = match json.then(|| serde_json::from_str::<Value>(&text)) {
            Some(Ok(v)) => FormValue::Json(v),
            _ => FormValue::Text(text),
        };
        parts.push((name, value));
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The length of the line end at the start of `b` (transport padding allowed before it).
fn line_end(b: &[u8]) -> Option<usize> {
    let pad = b.iter().take_while(|c| **c == b' ' || **c == b'\t').count();
    match &b[pad..] {
        [b'\r', b'\n', ..] => Some(pad + 2),
        [b'\n', ..] => Some(pad + 1),
        _ => None,
    }
}

/// `name="x"` from a Content-Disposition value.
fn disposition_param(value: &str, param: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == param).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// A value being built: records keep the order names first appeared in.
#[derive(Debug, Clone)]
enum Node {
    Leaf(FormValue),
    Record(Vec<(String, Node)>),
    /// 1-based positions, as Lua's.
    Array(Vec<(usize, Node)>),
}

/// One step of a field name: a record key, or an array position (`None` appends).
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(Option<usize>),
}

/// Decodes form pairs into one JSON object.
pub(super) fn decode(pairs: Vec<(String, FormValue)>) -> Value {
    // nginx hands a repeated name over once, with all its values.
    let mut grouped: Vec<(String, Vec<FormValue>)> = Vec::new();
    for (k, v) in pairs {
        match grouped.iter_mut().find(|(name, _)| *name == k) {
            Some((_, values)) => values.push(v),
            None => grouped.push((k, vec![v])),
        }
    }
    let mut root = Vec::new();
    for (name, mut values) in grouped {
        let value = if values.len() == 1 {
            Node::Leaf(values.remove(0))
        } else {
            Node::Array(
                values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (i + 1, Node::Leaf(v)))
                    .collect(),
            )
        };
        let steps = steps(&name);
        insert_record(&mut root, &steps, value);
    }
    to_json(Node::Record(root))
}

/// `a.b[1][]` → key a, key b, index 1, append. A name that starts or ends with a dot is
/// taken as it is.
fn steps(name: &str) -> Vec<Step> {
    if name.starts_with('.') || name.ends_with('.') {
        return vec![Step::Key(name.to_string())];
    }
    let mut out = Vec::new();
    for piece in name.split('.').filter(|p| !p.is_empty()) {
        let mut indexes = Vec::new();
        let mut base = piece;
        // `(.+)\[(\d*)\]$`, peeled from the end.
        while let Some(open) = base.strip_suffix(']').and_then(|b| b.rfind('[')) {
            let inner = &base[open + 1..base.len() - 1];
            if open == 0 || !inner.bytes().all(|c| c.is_ascii_digit()) {
                break;
            }
            indexes.push(inner.parse::<usize>().ok());
            base = &base[..open];
        }
        out.push(Step::Key(base.to_string()));
        out.extend(indexes.into_iter().rev().map(Step::Index));
    }
    if out.is_empty() {
        out.push(Step::Key(name.to_string()));
    }
    out
}

fn insert_record(record: &mut Vec<(String, Node)>, steps: &[Step], value: Node) {
    let Some((Step::Key(k), rest)) = steps.split_first() else {
        return;
    };
    let slot = match record.iter().position(|(name, _)| name == k) {
        Some(i) => &mut record[i].1,
        None => {
            record.push((k.clone(), empty_for(rest)));
            &mut record.last_mut().expect("just pushed").1
        }
    };
    insert_at(slot, rest, value);
}

fn insert_at(slot: &mut Node, steps: &[Step], value: Node) {
    match steps.first() {
        None => combine(slot, value),
        Some(Step::Key(_)) => {
            if !matches!(slot, Node::Record(_)) {
                *slot = Node::Record(Vec::new());
            }
            if let Node::Record(r) = slot {
                insert_record(r, steps, value);
            }
        }
        Some(Step::Index(i)) => {
            if !matches!(slot, Node::Array(_)) {
                *slot = Node::Array(Vec::new());
            }
            let Node::Array(items) = slot else { return };
            let rest = &steps[1..];
            let at = match i {
                Some(n) => *n,
                None if rest.is_empty() => {
                    // `a[]` with several values appends each of them.
                    let values = match value {
                        Node::Array(vs) => vs.into_iter().map(|(_, v)| v).collect(),
                        v => vec![v],
                    };
                    for v in values {
                        let next = items.iter().map(|(p, _)| *p).max().unwrap_or(0) + 1;
                        items.push((next, v));
                    }
                    return;
                }
                None => items.iter().map(|(p, _)| *p).max().unwrap_or(0) + 1,
            };
            let pos = match items.iter().position(|(p, _)| *p == at) {
                Some(pos) => pos,
                None => {
                    items.push((at, empty_for(rest)));
                    items.len() - 1
                }
            };
            insert_at(&mut items[pos].1, rest, value);
        }
    }
}

/// What a slot starts as before the rest of a name fills it.
fn empty_for(rest: &[Step]) -> Node {
    match rest.first() {
        Some(Step::Index(_)) => Node::Array(Vec::new()),
        _ => Node::Record(Vec::new()),
    }
}

/// A value arriving where one is already: Kong makes the two an array.
fn combine(slot: &mut Node, value: Node) {
    let empty = match slot {
        Node::Record(r) => r.is_empty(),
        Node::Array(a) => a.is_empty(),
        Node::Leaf(_) => false,
    };
    if empty {
        *slot = value;
        return;
    }
    match (slot, value) {
        (Node::Array(items), Node::Array(more)) => {
            let base = items.iter().map(|(p, _)| *p).max().unwrap_or(0);
            items.extend(more.into_iter().map(|(p, v)| (base + p, v)));
        }
        (Node::Array(items), v) => {
            let next = items.iter().map(|(p, _)| *p).max().unwrap_or(0) + 1;
            items.push((next, v));
        }
        (slot @ Node::Leaf(_), v) => {
            let old = std::mem::replace(slot, Node::Array(Vec::new()));
            *slot = Node::Array(vec![(1, old), (2, v)]);
        }
        // A record and a value under one name: the record stays.
        (Node::Record(_), _) => {}
    }
}

fn to_json(node: Node) -> Value {
    match node {
        // Kong's `infer`: an empty form value is `null`.
        Node::Leaf(FormValue::Text(s)) if s.is_empty() => Value::Null,
        Node::Leaf(FormValue::Text(s)) => Value::String(s),
        Node::Leaf(FormValue::Json(v)) => v,
        Node::Record(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, to_json(v)))
                .collect::<Map<String, Value>>(),
        ),
        Node::Array(mut items) => {
            items.sort_by_key(|(p, _)| *p);
            Value::Array(items.into_iter().map(|(_, v)| to_json(v)).collect())
        }
    }
}
