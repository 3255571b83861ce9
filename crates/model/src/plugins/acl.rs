//! acl: allows or denies consumers by the groups they belong to.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::PluginSchema;
use crate::error::Errors;
use crate::input::Reader;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclConfig {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub hide_groups_header: bool,
    pub always_use_authenticated_groups: bool,
}

const LISTS: &[&str] = &["allow", "deny"];

impl PluginSchema for AclConfig {
    const NAME: &'static str = "acl";
    const PRIORITY: i64 = 950;
    const VERSION: &'static str = "3.9.0";
    const NO_CONSUMER: bool = true;

    fn read(r: &mut Reader<'_>) -> Self {
        AclConfig {
            allow: r.strings("allow", false, |_| Ok(())),
            deny: r.strings("deny", false, |_| Ok(())),
            hide_groups_header: r.boolean("hide_groups_header").unwrap_or(false),
            always_use_authenticated_groups: r
                .boolean("always_use_authenticated_groups")
                .unwrap_or(false),
        }
    }

    // Kong reports these at the plugin's top-level `@entity`, in this order; with neither
    // list set both fail.
    fn entity_checks(raw: &Map<String, Value>, errs: &mut Errors) {
        if super::count_nonempty(raw, LISTS) != 1 {
            errs.entity(format!(
                "exactly one of these fields must be non-empty: {}",
                super::quoted_config_fields(LISTS)
            ));
        }
        super::at_least_one_of(raw, LISTS, errs);
    }
}
