//! correlation-id: tags every request and response with a unique id.

use serde::{Deserialize, Serialize};

use super::PluginSchema;
use crate::input::Reader;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrelationIdConfig {
    pub header_name: String,
    pub generator: String,
    pub echo_downstream: bool,
}

impl PluginSchema for CorrelationIdConfig {
    const NAME: &'static str = "correlation-id";
    const PRIORITY: i64 = 100_001;
    const VERSION: &'static str = "3.9.0";

    fn read(r: &mut Reader<'_>) -> Self {
        CorrelationIdConfig {
            // A plain string in Kong's schema, not `typedefs.header_name`.
            header_name: r
                .string("header_name")
                .unwrap_or_else(|| "Kong-Request-ID".into()),
            generator: r
                .one_of("generator", &["uuid", "uuid#counter", "tracker"])
                .unwrap_or_else(|| "uuid#counter".into()),
            echo_downstream: r.boolean("echo_downstream").unwrap_or(false),
        }
    }
}
