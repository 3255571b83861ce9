//! ip-restriction: allows or denies clients by IP address or CIDR range.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::PluginSchema;
use crate::error::Errors;
use crate::input::Reader;
use crate::typedefs;

use crate::typedefs::PROTOCOLS;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpRestrictionConfig {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    /// Status of the rejection (403 when unset). A Kong `number`, with no range check.
    #[serde(with = "super::number::option")]
    pub status: Option<f64>,
    pub message: Option<String>,
}

impl PluginSchema for IpRestrictionConfig {
    const NAME: &'static str = "ip-restriction";
    const PRIORITY: i64 = 990;
    const VERSION: &'static str = "3.9.0";
    const PROTOCOLS: &'static [&'static str] = PROTOCOLS;
    const DEFAULT_PROTOCOLS: &'static [&'static str] =
        &["http", "https", "tcp", "tls", "grpc", "grpcs"];

    fn read(r: &mut Reader<'_>) -> Self {
        IpRestrictionConfig {
            allow: r.strings("allow", false, typedefs::ip_or_cidr),
            deny: r.strings("deny", false, typedefs::ip_or_cidr),
            status: r.number("status"),
            message: r.string("message"),
        }
    }

    // Kong reports this at the plugin's top-level `@entity`.
    fn entity_checks(raw: &Map<String, Value>, errs: &mut Errors) {
        super::at_least_one_of(raw, &["allow", "deny"], errs);
    }
}
