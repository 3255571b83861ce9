//! request-termination: answers every request with a fixed response.

use serde::{Deserialize, Serialize};

use super::PluginSchema;
use crate::input::Reader;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestTerminationConfig {
    pub status_code: i64,
    pub message: Option<String>,
    pub content_type: Option<String>,
    pub body: Option<String>,
    pub echo: bool,
    /// Only terminate when this header or query argument is present.
    pub trigger: Option<String>,
}

impl PluginSchema for RequestTerminationConfig {
    const NAME: &'static str = "request-termination";
    const PRIORITY: i64 = 2;
    const VERSION: &'static str = "3.9.0";

    fn read(r: &mut Reader<'_>) -> Self {
        RequestTerminationConfig {
            status_code: r.int_between("status_code", 100, 599).unwrap_or(503),
            message: r.string("message"),
            content_type: r.string("content_type"),
            body: r.string("body"),
            echo: r.boolean("echo").unwrap_or(false),
            trigger: r.string_with("trigger", super::header_name),
        }
    }

    fn custom_validator(&self) -> Result<(), String> {
        // Strings are non-empty once read, so presence is `is_some`.
        let has_content = self.content_type.is_some() || self.body.is_some();
        if self.message.is_some() && has_content {
            return Err("message cannot be used with content_type or body".into());
        }
        if self.content_type.is_some() && self.body.is_none() {
            return Err("content_type requires a body".into());
        }
        if self.echo && has_content {
            return Err("echo cannot be used with content_type and body".into());
        }
        Ok(())
    }
}
