//! key-auth: authenticates consumers by an API key in a header, the query or the body.

use serde::{Deserialize, Serialize};

use super::PluginSchema;
use crate::input::Reader;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAuthConfig {
    pub key_names: Vec<String>,
    pub hide_credentials: bool,
    /// Consumer id or username used when authentication fails.
    pub anonymous: Option<String>,
    pub key_in_header: bool,
    pub key_in_query: bool,
    pub key_in_body: bool,
    pub run_on_preflight: bool,
    pub realm: Option<String>,
}

impl PluginSchema for KeyAuthConfig {
    const NAME: &'static str = "key-auth";
    const PRIORITY: i64 = 1250;
    const VERSION: &'static str = "3.9.0";
    const NO_CONSUMER: bool = true;

    fn read(r: &mut Reader<'_>) -> Self {
        KeyAuthConfig {
            key_names: r
                .strings("key_names", false, super::header_name)
                .unwrap_or_else(|| vec!["apikey".into()]),
            hide_credentials: r.boolean("hide_credentials").unwrap_or(false),
            anonymous: r.string("anonymous"),
            key_in_header: r.boolean("key_in_header").unwrap_or(true),
            key_in_query: r.boolean("key_in_query").unwrap_or(true),
            key_in_body: r.boolean("key_in_body").unwrap_or(false),
            run_on_preflight: r.boolean("run_on_preflight").unwrap_or(true),
            realm: r.string("realm"),
        }
    }
}
