//! cors: answers preflight requests and adds the CORS response headers.

use serde::{Deserialize, Serialize};

use super::PluginSchema;
use crate::input::Reader;

/// `Access-Control-Allow-Methods` choices, in Kong's declared order (also the default).
pub const METHODS: &[&str] = &[
    "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorsConfig {
    pub origins: Option<Vec<String>>,
    pub headers: Option<Vec<String>>,
    pub exposed_headers: Option<Vec<String>>,
    pub methods: Vec<String>,
    #[serde(with = "super::number::option")]
    pub max_age: Option<f64>,
    pub credentials: bool,
    pub private_network: bool,
    pub preflight_continue: bool,
    pub allow_origin_absent: bool,
}

/// Kong's `validate_asterisk_or_regex`. Kong compiles with PCRE; the `regex` crate is
/// what the DP matches with, so a pattern it cannot compile is refused here.
fn asterisk_or_regex(v: &str) -> Result<(), String> {
    if v == "*" || regex::Regex::new(v).is_ok() {
        Ok(())
    } else {
        Err(format!("'{v}' is not a valid regex"))
    }
}

impl PluginSchema for CorsConfig {
    const NAME: &'static str = "cors";
    const PRIORITY: i64 = 2000;
    const VERSION: &'static str = "3.9.0";
    const NO_CONSUMER: bool = true;

    fn read(r: &mut Reader<'_>) -> Self {
        CorsConfig {
            origins: r.strings("origins", false, asterisk_or_regex),
            headers: r.strings("headers", false, |_| Ok(())),
            exposed_headers: r.strings("exposed_headers", false, |_| Ok(())),
            methods: r
                .strings("methods", false, |m| crate::input::check_one_of(m, METHODS))
                .unwrap_or_else(|| METHODS.iter().map(|m| m.to_string()).collect()),
            max_age: r.number("max_age"),
            credentials: r.boolean("credentials").unwrap_or(false),
            private_network: r.boolean("private_network").unwrap_or(false),
            preflight_continue: r.boolean("preflight_continue").unwrap_or(false),
            allow_origin_absent: r.boolean("allow_origin_absent").unwrap_or(true),
        }
    }
}
