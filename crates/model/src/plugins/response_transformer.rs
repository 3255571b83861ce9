//! response-transformer: rewrites response headers and JSON body properties.

use serde::{Deserialize, Serialize};

use super::request_transformer::{colon_header_values, colon_headers, colon_pair};
use super::PluginSchema;
use crate::input::{check_one_of, Reader};

pub const JSON_TYPES: &[&str] = &["boolean", "number", "string"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseTransformerConfig {
    pub remove: RemoveTransforms,
    pub rename: RemoveTransforms,
    pub replace: JsonTransforms,
    pub add: JsonTransforms,
    pub append: JsonTransforms,
}

/// `remove` (plain names) and `rename` (`old:new` pairs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveTransforms {
    pub json: Vec<String>,
    pub headers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonTransforms {
    pub json: Vec<String>,
    /// The type of each `json` value, by position.
    pub json_types: Vec<String>,
    pub headers: Vec<String>,
}

type Check = fn(&str) -> Result<(), String>;

fn read_pairs(r: &mut Reader<'_>, key: &'static str, json: Check, headers: Check) -> RemoveTransforms {
    r.record(key, |r| RemoveTransforms {
        json: r.strings("json", false, json).unwrap_or_default(),
        headers: r.strings("headers", false, headers).unwrap_or_default(),
    })
    .unwrap_or_default()
}

fn read_json(r: &mut Reader<'_>, key: &'static str) -> JsonTransforms {
    r.record(key, |r| JsonTransforms {
        json: r.strings("json", false, colon_pair).unwrap_or_default(),
        json_types: r
            .strings("json_types", false, |t| check_one_of(t, JSON_TYPES))
            .unwrap_or_default(),
        headers: r
            .strings("headers", false, colon_header_values)
            .unwrap_or_default(),
    })
    .unwrap_or_default()
}

impl PluginSchema for ResponseTransformerConfig {
    const NAME: &'static str = "response-transformer";
    const PRIORITY: i64 = 800;
    const VERSION: &'static str = "3.9.0";

    fn read(r: &mut Reader<'_>) -> Self {
        let any: Check = |_| Ok(());
        ResponseTransformerConfig {
            remove: read_pairs(r, "remove", any, any),
            rename: read_pairs(r, "rename", colon_pair, colon_headers),
            replace: read_json(r, "replace"),
            add: read_json(r, "add"),
            append: read_json(r, "append"),
        }
    }
}
