//! Where in a declarative file's text its errors are.
//!
//! Kong's error body names fields by their path in the document (`services[2].routes[0]`,
//! or an entity's name for references and duplicates); it never says where they are in
//! the file, and the body must stay Kong's. This maps such a body back onto the text, for
//! tools that have the file (the CLI, a DP's `declarative_config`): syntax errors get the
//! parser's own line and column, schema errors the line of the node their path reaches.
//!
//! serde_yaml keeps no positions for values, so the text is walked a second time, only
//! when there is an error to place: YAML through saphyr's event parser (its events carry
//! spans), JSON through a small scanner here (saphyr would refuse JSON that is indented
//! with tabs, which serde_json accepts).

use std::fmt;

use serde_json::Value;

use crate::error::KongError;

/// A place in a file's text: line and column, both 1-based, columns in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One error of a declarative file, placed in its text where the text allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub position: Option<Position>,
    /// Where in the document, as `services[1].routes[0].paths[0]`; empty when the error
    /// is about the document as a whole.
    pub path: String,
    pub message: String,
}

impl Located {
    /// `file:line:column: path: message`, the shape editors and terminals link to; parts
    /// that are unknown are left out.
    pub fn render(&self, file: &str) -> String {
        let mut out = file.to_string();
        if let Some(p) = self.position {
            out.push_str(&format!(":{}:{}", p.line, p.column));
        }
        if !self.path.is_empty() {
            out.push_str(": ");
            out.push_str(&self.path);
        }
        out.push_str(": ");
        out.push_str(&self.message);
        out
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("<input>"))
    }
}

/// Kong's prefix of every message about a document that does not parse.
const FAILED_PARSING: &str = "failed parsing declarative configuration: ";

/// Places every error of `err`, a code-14 error of [`super::parse`] (or the same body from
/// a CP's `POST /config`) about `text`, in the order of their positions. Any other error
/// comes back as one entry without a position.
pub fn locate(text: &str, err: &KongError) -> Vec<Located> {
    match err.fields_json() {
        Some(fields) => locate_fields(text, &fields),
        None => vec![unplaced(err.message.clone())],
    }
}

/// [`locate`] for the `fields` of a Kong error body.
pub fn locate_fields(text: &str, fields: &Value) -> Vec<Located> {
    if let Some(msg) = fields
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.get("error"))
        .and_then(Value::as_str)
    {
        return vec![syntax(text, msg)];
    }
    let mut leaves = Vec::new();
    flatten(fields, &mut Vec::new(), &mut leaves);
    let tree = index(text);
    let mut out: Vec<Located> = leaves
        .into_iter()
        .map(|(path, message)| place(tree.as_ref(), &path, message))
        .collect();
    // Stable: errors on one node keep the body's order.
    out.sort_by_key(|l| {
        l.position
            .map_or((usize::MAX, usize::MAX), |p| (p.line, p.column))
    });
    out
}

fn unplaced(message: String) -> Located {
    Located {
        position: None,
        path: String::new(),
        message,
    }
}

/// A document that does not parse: the parser that failed says where, when asked again
/// (only the message travels in Kong's body).
fn syntax(text: &str, msg: &str) -> Located {
    let Some(detail) = msg.strip_prefix(FAILED_PARSING) else {
        return unplaced(msg.to_string());
    };
    let trimmed = text.trim_start();
    let position = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str::<Value>(text)
            .err()
            .filter(|e| e.line() > 0)
            .map(|e| Position {
                line: e.line(),
                column: e.column().max(1),
            })
    } else {
        None
    };
    let position = position.or_else(|| {
        serde_yaml::from_str::<Value>(text)
            .err()
            .and_then(|e| e.location())
            .map(|l| Position {
                line: l.line(),
                column: l.column(),
            })
    });
    // The position is printed in front: it need not be repeated inside the message.
    let message = match position {
        Some(p) => detail.replacen(&format!(" at line {} column {}", p.line, p.column), "", 1),
        None => detail.to_string(),
    };
    Located {
        position,
        path: String::new(),
        message,
    }
}

// --- the error tree -------------------------------------------------------------------

/// One step of a path in Kong's error body.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    /// An array position: an element of an array in the file, or one message of several
    /// about the same node (references, `@entity` checks).
    Idx(usize),
}

fn flatten(v: &Value, path: &mut Vec<Step>, out: &mut Vec<(Vec<Step>, String)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                // Entity-level checks are about the entity itself.
                if k == "@entity" {
                    flatten(child, path, out);
                    continue;
                }
                path.push(Step::Key(k.clone()));
                flatten(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                if child.is_null() {
                    continue;
                }
                path.push(Step::Idx(i));
                flatten(child, path, out);
                path.pop();
            }
        }
        Value::String(s) => out.push((path.clone(), s.clone())),
        Value::Null => {}
        other => out.push((path.clone(), other.to_string())),
    }
}

// --- placing a path -------------------------------------------------------------------

/// Fields by which an error body names an entity instead of its position, in the order
/// they are tried.
const NAMING_FIELDS: [&str; 7] = [
    "name",
    "username",
    "key",
    "instance_name",
    "target",
    "group",
    "id",
];

fn place(tree: Option<&Node>, path: &[Step], message: String) -> Located {
    let Some(root) = tree else {
        return Located {
            position: None,
            path: display(path),
            message,
        };
    };
    let mut node = root;
    let mut pos = root.pos;
    let mut shown = String::new();
    let mut rest = path;
    // Kong names the collection of a nested entity as if it were top-level (`routes`
    // for the routes of a service) when it reports references and duplicates.
    if let [Step::Key(table), second, tail @ ..] = path {
        let top_level = matches!(&root.kind, Kind::Map(es) if es.iter().any(|e| &e.key == table));
        if !top_level {
            if let Some((p, n)) = nested(root, table, second, &message) {
                node = n;
                pos = n.pos;
                shown = p;
                rest = tail;
            }
        }
    }
    while let Some((step, tail)) = rest.split_first() {
        let next = match (step, &node.kind) {
            (Step::Key(k), Kind::Map(entries)) => entries.iter().find(|e| &e.key == k).map(|e| {
                push_key(&mut shown, k);
                (&e.value, e.key_pos)
            }),
            (Step::Idx(i), Kind::Seq(items)) => items.get(*i).map(|n| {
                shown.push_str(&format!("[{i}]"));
                (n, n.pos)
            }),
            // An entity named by its endpoint key or id.
            (Step::Key(k), Kind::Seq(items)) => named(items, k).map(|(i, n)| {
                shown.push_str(&format!("[{i}]"));
                (n, n.pos)
            }),
            _ => None,
        };
        let Some((n, p)) = next else { break };
        node = n;
        pos = p;
        rest = tail;
    }
    // Steps the file does not have: fields that are missing, or several messages about
    // one node (a trailing position that is not an array element).
    let mut unresolved: Vec<Step> = rest.to_vec();
    while matches!(unresolved.last(), Some(Step::Idx(_))) {
        unresolved.pop();
    }
    for step in &unresolved {
        match step {
            Step::Key(k) => push_key(&mut shown, k),
            Step::Idx(i) => shown.push_str(&format!("[{i}]")),
        }
    }
    Located {
        position: Some(pos),
        path: shown,
        message,
    }
}

fn push_key(shown: &mut String, k: &str) {
    if !shown.is_empty() {
        shown.push('.');
    }
    shown.push_str(k);
}

fn display(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => push_key(&mut s, k),
            Step::Idx(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The last element of `items` that one of its naming fields calls `name`: with
/// duplicates, Kong reports the later one.
fn named<'a>(items: &'a [Node], name: &str) -> Option<(usize, &'a Node)> {
    NAMING_FIELDS.iter().find_map(|field| {
        items
            .iter()
            .enumerate()
            .rev()
            .find(|(_, n)| field_is(n, field, name))
    })
}

/// A nested entity that the error body names under its table at the top: by endpoint key
/// or id (`routes.r`), or by position in its own list, which is ambiguous across parents
/// and is settled by the value a uniqueness message quotes.
fn nested<'a>(
    root: &'a Node,
    table: &str,
    second: &Step,
    message: &str,
) -> Option<(String, &'a Node)> {
    let mut lists = Vec::new();
    collections(root, table, &mut String::new(), &mut lists);
    let candidates: Vec<(String, &Node)> = lists
        .iter()
        .flat_map(|(p, items)| {
            items
                .iter()
                .enumerate()
                .map(move |(i, n)| (format!("{p}[{i}]"), n))
        })
        .collect();
    match second {
        Step::Key(k) => {
            for field in NAMING_FIELDS {
                if let Some(c) = candidates.iter().rev().find(|(_, n)| field_is(n, field, k)) {
                    return Some(c.clone());
                }
            }
            None
        }
        Step::Idx(i) => {
            if let [(p, items)] = lists.as_slice() {
                return items.get(*i).map(|n| (format!("{p}[{i}]"), n));
            }
            let (field, value) = uniqueness(message)?;
            let field = if field == "primary key" { "id" } else { field };
            candidates
                .iter()
                .rev()
                .find(|(_, n)| field_is(n, field, value))
                .cloned()
        }
    }
}

fn field_is(n: &Node, field: &str, value: &str) -> bool {
    matches!(&n.kind, Kind::Map(entries) if entries.iter().any(|e| {
        e.key == field && matches!(&e.value.kind, Kind::Scalar(s) if s == value)
    }))
}

/// Every sequence in the document under a key named `table`, with its path.
fn collections<'a>(
    node: &'a Node,
    table: &str,
    at: &mut String,
    out: &mut Vec<(String, &'a [Node])>,
) {
    match &node.kind {
        Kind::Map(entries) => {
            for e in entries {
                let len = at.len();
                push_key(at, &e.key);
                if let (true, Kind::Seq(items)) = (e.key == table, &e.value.kind) {
                    out.push((at.clone(), items));
                }
                collections(&e.value, table, at, out);
                at.truncate(len);
            }
        }
        Kind::Seq(items) => {
            for (i, n) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                collections(n, table, at, out);
                at.truncate(len);
            }
        }
        Kind::Scalar(_) | Kind::Other => {}
    }
}

/// `(field, value)` of Kong's "… entity with FIELD set to 'VALUE' already declared".
fn uniqueness(message: &str) -> Option<(&str, &str)> {
    let rest = message.split_once(" entity with ")?.1;
    let (field, rest) = rest.split_once(" set to '")?;
    let value = rest.strip_suffix("' already declared")?;
    Some((field, value))
}

// --- the position index ---------------------------------------------------------------

/// A node of the document with where it starts.
#[derive(Debug)]
struct Node {
    pos: Position,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
    /// An alias, or what the index does not look into.
    Other,
}

#[derive(Debug)]
struct Entry {
    key: String,
    key_pos: Position,
    value: Node,
}

/// The document's tree of positions, or `None` when the text cannot be walked (the
/// errors are then given without positions).
fn index(text: &str) -> Option<Node> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Some(n) = json::index(text) {
            return Some(n);
        }
    }
    yaml_index(text)
}

/// Builds the tree from saphyr's events.
fn yaml_index(text: &str) -> Option<Node> {
    use saphyr_parser::{Event, Parser};

    enum Frame {
        Seq(Position, Vec<Node>),
        Map(Position, Vec<Entry>, Option<(String, Position)>),
    }
    let mut stack: Vec<Frame> = Vec::new();
    for ev in Parser::new_from_str(text) {
        let (event, span) = ev.ok()?;
        let pos = Position {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        let done = match event {
            Event::Scalar(v, ..) => Node {
                pos,
                kind: Kind::Scalar(v.into_owned()),
            },
            Event::Alias(_) => Node {
                pos,
                kind: Kind::Other,
            },
            Event::SequenceStart(..) => {
                stack.push(Frame::Seq(pos, Vec::new()));
                continue;
            }
            Event::MappingStart(..) => {
                stack.push(Frame::Map(pos, Vec::new(), None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop()? {
                Frame::Seq(p, items) => Node {
                    pos: p,
                    kind: Kind::Seq(items),
                },
                Frame::Map(p, entries, _) => Node {
                    pos: p,
                    kind: Kind::Map(entries),
                },
            },
            Event::DocumentEnd | Event::StreamEnd => return None,
            _ => continue,
        };
        match stack.last_mut() {
            None => return Some(done),
            Some(Frame::Seq(_, items)) => items.push(done),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                None => {
                    let key = match done.kind {
                        Kind::Scalar(s) => s,
                        _ => String::new(),
                    };
                    *pending = Some((key, done.pos));
                }
                Some((key, key_pos)) => entries.push(Entry {
                    key,
                    key_pos,
                    value: done,
                }),
            },
        }
    }
    None
}

/// A JSON scanner that records where each value starts. It trusts that serde_json
/// accepted the text and gives up (`None`) on anything unexpected.
mod json {
    use super::{Entry, Kind, Node, Position};

    /// Deeper than the declarative limit, so a document that was accepted is walked whole.
    const MAX_DEPTH: usize = 64;

    pub(super) fn index(text: &str) -> Option<Node> {
        let mut s = Scanner {
            b: text.as_bytes(),
            text,
            i: 0,
            line: 1,
            column: 1,
        };
        s.ws();
        s.value(0)
    }

    struct Scanner<'a> {
        b: &'a [u8],
        text: &'a str,
        i: usize,
        line: usize,
        /// In characters: continuation bytes of UTF-8 do not count.
        column: usize,
    }

    impl Scanner<'_> {
        fn pos(&self) -> Position {
            Position {
                line: self.line,
                column: self.column,
            }
        }

        fn bump(&mut self) {
            let c = self.b[self.i];
            self.i += 1;
            if c == b'\n' {
                self.line += 1;
                self.column = 1;
            } else if c & 0xC0 != 0x80 {
                self.column += 1;
            }
        }

        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.bump();
            }
        }

        fn eat(&mut self, c: u8) -> Option<()> {
            self.ws();
            (self.peek()? == c).then(|| self.bump())
        }

        fn value(&mut self, depth: usize) -> Option<Node> {
            if depth > MAX_DEPTH {
                return None;
            }
            self.ws();
            let pos = self.pos();
            let kind = match self.peek()? {
                b'{' => {
                    self.bump();
                    let mut entries = Vec::new();
                    self.ws();
                    if self.peek()? == b'}' {
                        self.bump();
                    } else {
                        loop {
                            self.ws();
                            let key_pos = self.pos();
                            let key = self.string()?;
                            self.eat(b':')?;
                            let value = self.value(depth + 1)?;
                            entries.push(Entry {
                                key,
                                key_pos,
                                value,
                            });
                            self.ws();
                            match self.peek()? {
                                b',' => self.bump(),
                                b'}' => {
                                    self.bump();
                                    break;
                                }
                                _ => return None,
                            }
                        }
                    }
                    Kind::Map(entries)
                }
                b'[' => {
                    self.bump();
                    let mut items = Vec::new();
                    self.ws();
                    if self.peek()? == b']' {
                        self.bump();
                    } else {
                        loop {
                            items.push(self.value(depth + 1)?);
                            self.ws();
                            match self.peek()? {
                                b',' => self.bump(),
                                b']' => {
                                    self.bump();
                                    break;
                                }
                                _ => return None,
                            }
                        }
                    }
                    Kind::Seq(items)
                }
                b'"' => Kind::Scalar(self.string()?),
                _ => {
                    let start = self.i;
                    while matches!(self.peek(), Some(c) if !b" \t\r\n,]}".contains(&c)) {
                        self.bump();
                    }
                    Kind::Scalar(self.text.get(start..self.i)?.to_string())
                }
            };
            Some(Node { pos, kind })
        }

        /// A string literal, unescaped by serde_json.
        fn string(&mut self) -> Option<String> {
            if self.peek()? != b'"' {
                return None;
            }
            let start = self.i;
            self.bump();
            loop {
                match self.peek()? {
                    b'\\' => {
                        self.bump();
                        self.peek()?;
                        self.bump();
                    }
                    b'"' => {
                        self.bump();
                        break;
                    }
                    _ => self.bump(),
                }
            }
            serde_json::from_str(self.text.get(start..self.i)?).ok()
        }
    }
}

#[cfg(test)]
mod tests;
