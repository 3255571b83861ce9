//! request-size-limiting: refuses request bodies over a size.

use serde::{Deserialize, Serialize};

use super::PluginSchema;
use crate::input::Reader;

pub const SIZE_UNITS: &[&str] = &["megabytes", "kilobytes", "bytes"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSizeLimitingConfig {
    pub allowed_payload_size: i64,
    pub size_unit: String,
    pub require_content_length: bool,
}

impl RequestSizeLimitingConfig {
    /// The limit in bytes.
    pub fn limit_bytes(&self) -> i64 {
        let factor = match self.size_unit.as_str() {
            "bytes" => 1,
            "kilobytes" => 1024,
            _ => 1024 * 1024,
        };
        self.allowed_payload_size.saturating_mul(factor)
    }
}

impl PluginSchema for RequestSizeLimitingConfig {
    const NAME: &'static str = "request-size-limiting";
    const PRIORITY: i64 = 951;
    const VERSION: &'static str = "3.9.0";

    fn read(r: &mut Reader<'_>) -> Self {
        RequestSizeLimitingConfig {
            allowed_payload_size: r.integer("allowed_payload_size").unwrap_or(128),
            size_unit: r
                .one_of("size_unit", SIZE_UNITS)
                .unwrap_or_else(|| SIZE_UNITS[0].into()),
            require_content_length: r.boolean("require_content_length").unwrap_or(false),
        }
    }
}
