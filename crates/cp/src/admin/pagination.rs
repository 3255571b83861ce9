//! Kong's list arguments: `size`, an opaque `offset`, and the `tags` filter; and the page
//! body `{"data":[…],"offset":"…","next":"…"}`.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};
use tidegate_model::{Entity, KongError};
use uuid::Uuid;

use super::request::{escape_uri, Query};
use super::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_QUERY_TAGS};

/// The list arguments of one request, validated.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PageParams {
    pub size: usize,
    /// The last id of the previous page: this page starts after it.
    pub after: Option<Uuid>,
    pub tags: Option<TagFilter>,
    /// As the client sent them, to carry into `next`.
    raw_size: Option<String>,
    raw_tags: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TagFilter {
    /// `?tags=a,b`: entities that carry every tag.
    All(Vec<String>),
    /// `?tags=a/b`: entities that carry at least one.
    Any(Vec<String>),
}

/// One page: the entities' bodies and, when more follow, the id to continue after.
pub(super) struct Page {
    pub data: Vec<Value>,
    pub more_after: Option<Uuid>,
}

// === impl PageParams ===

impl PageParams {
    /// Checks in Kong's order: size (endpoint, then DAO), tags (DAO), offset (strategy).
    pub fn parse(query: &Query) -> Result<Self, KongError> {
        let raw_size = query.first("size").map(str::to_string);
        let size = match query.all("size").count() {
            0 => DEFAULT_PAGE_SIZE,
            // Lua sees a repeated argument as a table, which `tonumber` refuses.
            1 => parse_size(raw_size.as_deref().unwrap_or(""))?,
            _ => return Err(KongError::invalid_size("size must be a number")),
        };
        // Kong reads only the first `tags` argument.
        let raw_tags = query.first("tags").map(str::to_string);
        let tags = raw_tags.as_deref().map(parse_tags).transpose()?;
        let after = query.first("offset").map(decode_offset).transpose()?;
        Ok(PageParams {
            size,
            after,
            tags,
            raw_size,
            raw_tags,
        })
    }

    /// Takes one page from `items` (ordered by id), skipping up to `after` and filtering
    /// by tags. Reads one past the page to know whether another follows, as Kong does.
    pub fn page<'a>(
        &self,
        items: impl Iterator<Item = &'a Entity>,
        render: impl Fn(&Entity) -> Value,
    ) -> Page {
        let mut picked: Vec<&Entity> = Vec::with_capacity(self.size.min(DEFAULT_PAGE_SIZE));
        let mut more = false;
        let matching = items
            .filter(|e| self.after.is_none_or(|after| e.id() > after))
            .filter(|e| self.tags.as_ref().is_none_or(|t| t.matches(e.tags())));
        for e in matching {
            if picked.len() == self.size {
                more = true;
                break;
            }
            picked.push(e);
        }
        Page {
            more_after: if more {
                picked.last().map(|e| e.id())
            } else {
                None
            },
            data: picked.into_iter().map(render).collect(),
        }
    }

    /// Kong's page body. `path` is the collection's path, e.g. `/services`.
    ///
    /// Kong's `next` carries `tags` and `size` for top-level lists only; we carry them for
    /// nested lists too, since a `next` without the filter would list other entities.
    pub fn body(&self, page: Page, path: &str) -> Value {
        let mut out = Map::new();
        out.insert("data".into(), Value::Array(page.data));
        match page.more_after {
            Some(id) => {
                let offset = encode_offset(id);
                let mut next = format!("{path}?offset={}", escape_uri(&offset));
                if let Some(t) = &self.raw_tags {
                    next.push_str(&format!("&tags={}", escape_uri(t)));
                }
                if let Some(s) = &self.raw_size {
                    next.push_str(&format!("&size={}", escape_uri(s)));
                }
                out.insert("offset".into(), Value::String(offset));
                out.insert("next".into(), Value::String(next));
            }
            None => {
                out.insert("next".into(), Value::Null);
            }
        }
        Value::Object(out)
    }
}

// === impl TagFilter ===

impl TagFilter {
    pub fn matches(&self, tags: Option<&[String]>) -> bool {
        let tags = tags.unwrap_or(&[]);
        let has = |t: &String| tags.contains(t);
        match self {
            TagFilter::All(want) => want.iter().all(has),
            TagFilter::Any(want) => want.iter().any(has),
        }
    }
}

/// `size` as Kong reads it: Lua's `tonumber`, then an integer in 1..=max.
pub(super) fn parse_size(raw: &str) -> Result<usize, KongError> {
    let n = lua_tonumber(raw).ok_or_else(|| KongError::invalid_size("size must be a number"))?;
    if n.fract() != 0.0 || n < 1.0 || n > MAX_PAGE_SIZE as f64 {
        return Err(KongError::invalid_size(&format!(
            "size must be an integer between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    Ok(n as usize)
}

/// What Lua's `tonumber` accepts from a string: decimal (with exponent) or `0x` hex,
/// surrounded by whitespace. Not `inf` or `nan`, which Rust's parser would take.
pub(super) fn lua_tonumber(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        let v = u64::from_str_radix(hex, 16).ok()? as f64;
        return Some(if neg { -v } else { v });
    }
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    t.parse::<f64>().ok()
}

/// The bytes Kong allows in a tag filter: printable ASCII but `,` and `/`, and UTF-8.
fn is_tag_byte(b: u8) -> bool {
    matches!(b, 0x20..=0x2B | 0x2D | 0x2E | 0x30..=0x7E | 0x80..=0xF4)
}

/// Kong's `TAGS_AND_REGEX` / `TAGS_OR_REGEX`: tags separated by one kind of separator,
/// no empty tag except after a trailing separator.
fn split_tags(raw: &str, sep: u8) -> Option<Vec<String>> {
    let ok = !raw.is_empty()
        && raw.as_bytes()[0] != sep
        && raw.bytes().all(|b| b == sep || is_tag_byte(b))
        && !raw
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == sep && w[1] == sep);
    ok.then(|| {
        raw.split(sep as char)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    })
}

pub(super) fn parse_tags(raw: &str) -> Result<TagFilter, KongError> {
    let filter = if let Some(tags) = split_tags(raw, b',') {
        TagFilter::All(tags)
    } else if let Some(tags) = split_tags(raw, b'/') {
        TagFilter::Any(tags)
    } else {
        return Err(invalid_tags("invalid filter syntax"));
    };
    let (TagFilter::All(tags) | TagFilter::Any(tags)) = &filter;
    if tags.len() > MAX_QUERY_TAGS {
        return Err(invalid_tags(&format!(
            "cannot query more than {MAX_QUERY_TAGS} tags"
        )));
    }
    Ok(filter)
}

fn invalid_tags(why: &str) -> KongError {
    let mut options = BTreeMap::new();
    options.insert("tags".to_string(), why.to_string());
    KongError::invalid_options(&options)
}

/// Kong's postgres token: base64 of the JSON array of the last primary key.
pub(super) fn encode_offset(id: Uuid) -> String {
    STANDARD.encode(Value::Array(vec![Value::String(id.to_string())]).to_string())
}

/// The JSON inside an offset token (base64 of JSON, as Kong's postgres strategy writes
/// them), with Kong's code-7 errors.
pub(super) fn decode_token(token: &str) -> Result<Value, KongError> {
    // A `+` sent unescaped in a query string arrives as a space.
    let text = token.replace(' ', "+");
    let bytes = STANDARD
        .decode(text.as_bytes())
        .map_err(|_| KongError::invalid_offset(token, "bad base64 encoding"))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| KongError::invalid_offset(token, "bad json encoding"))
}

pub(super) fn decode_offset(token: &str) -> Result<Uuid, KongError> {
    let json = decode_token(token)?;
    match json.as_array().map(Vec::as_slice) {
        Some([Value::String(id)]) => tidegate_model::input::parse_uuid(id)
            .map_err(|_| KongError::invalid_offset(token, "not an offset of this listing")),
        _ => Err(KongError::invalid_offset(
            token,
            "not an offset of this listing",
        )),
    }
}
