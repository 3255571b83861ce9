//! basic-auth: authenticates consumers by username and password.

use serde::{Deserialize, Serialize};

use super::PluginSchema;
use crate::input::Reader;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAuthConfig {
    /// Consumer id or username used when authentication fails.
    pub anonymous: Option<String>,
    pub hide_credentials: bool,
    pub realm: String,
}

impl PluginSchema for BasicAuthConfig {
    const NAME: &'static str = "basic-auth";
    const PRIORITY: i64 = 1100;
    const VERSION: &'static str = "3.9.0";
    const NO_CONSUMER: bool = true;

    fn read(r: &mut Reader<'_>) -> Self {
        BasicAuthConfig {
            anonymous: r.string("anonymous"),
            hide_credentials: r.boolean("hide_credentials").unwrap_or(false),
            realm: r.string("realm").unwrap_or_else(|| "service".into()),
        }
    }
}
