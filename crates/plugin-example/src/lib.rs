//! `x-greeting`: an example of a plugin that is not bundled. It adds a header with a
//! configured greeting to every response of the routes it is enabled on.
//!
//! A custom plugin has two halves, and a custom build installs both on every node:
//! - the **schema** ([`SCHEMA`], a `tidegate_model::plugins::CustomSchema`): CPs validate
//!   configs with it, so every CP of a group must have it;
//! - the **runtime** ([`Greeting`], a `tidegate_plugins::Factory` building
//!   `tidegate_plugins::Plugin` instances): DPs run it and advertise it, with
//!   [`SCHEMA`]'s version, to the CP.
//!
//! A DP without it (a stock build, or one whose `plugins` setting leaves it out) is
//! refused any config that uses it: the CP marks it `plugin_set_incompatible` and keeps
//! it on its last config until the plugin is removed or the DP is upgraded.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};
use tidegate_model::error::Errors;
use tidegate_model::plugins::{CustomSchema, PluginConfig, HTTP_PROTOCOLS};
use tidegate_plugins::{Ctx, Factory, Plugin, Runtime};

pub const NAME: &str = "x-greeting";

pub const SCHEMA: CustomSchema = CustomSchema {
    name: NAME,
    // After auth (key-auth is 1250), before the transformers (800).
    priority: 850,
    version: "1.0.0",
    protocols: HTTP_PROTOCOLS,
    read,
};

/// The config as stored: defaults filled in, every field checked, errors by field.
fn read(config: &Map<String, Value>) -> Result<Map<String, Value>, Errors> {
    let mut errors = Errors::default();
    let mut out = Map::new();
    for key in config.keys() {
        if key != "greeting" && key != "header_name" {
            errors.field(key.clone(), "unknown field");
        }
    }
    match config.get("greeting") {
        None | Some(Value::Null) => {
            out.insert("greeting".into(), Value::from("hello"));
        }
        Some(Value::String(s)) if HeaderValue::from_str(s).is_ok() => {
            out.insert("greeting".into(), Value::from(s.clone()));
        }
        Some(Value::String(_)) => errors.field("greeting", "not a valid header value"),
        Some(_) => errors.field("greeting", "expected a string"),
    }
    match config.get("header_name") {
        None | Some(Value::Null) => {
            out.insert("header_name".into(), Value::from("X-Greeting"));
        }
        Some(Value::String(s)) if HeaderName::from_bytes(s.as_bytes()).is_ok() => {
            out.insert("header_name".into(), Value::from(s.clone()));
        }
        Some(Value::String(s)) => errors.field("header_name", format!("bad header name '{s}'")),
        Some(_) => errors.field("header_name", "expected a string"),
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The typed config the runtime reads once per config version.
#[derive(Deserialize)]
struct Config {
    greeting: String,
    header_name: String,
}

/// The runtime half: builds instances from validated configs.
pub struct Greeting;

struct Instance {
    header: HeaderName,
    value: HeaderValue,
}

impl Factory for Greeting {
    fn name(&self) -> &'static str {
        NAME
    }
    fn priority(&self) -> i64 {
        SCHEMA.priority
    }
    fn version(&self) -> &'static str {
        SCHEMA.version
    }
    fn build(&self, config: &PluginConfig, _rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
        let c: Config = tidegate_plugins::custom_config(config)?;
        Ok(Arc::new(Instance {
            header: HeaderName::from_bytes(c.header_name.as_bytes()).map_err(|e| e.to_string())?,
            value: HeaderValue::from_str(&c.greeting).map_err(|e| e.to_string())?,
        }))
    }
}

impl Plugin for Instance {
    fn response_headers(&self, _cx: &mut Ctx<'_>, resp: &mut http::response::Parts) {
        resp.headers.insert(self.header.clone(), self.value.clone());
    }
}

/// Installs both halves; call before starting the node.
pub fn install() {
    tidegate_model::plugins::register_custom(SCHEMA).expect("x-greeting's schema is valid");
    tidegate_plugins::register_custom(Greeting);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_gets_defaults_and_errors_by_field() {
        let empty = Map::new();
        assert_eq!(
            Value::Object(read(&empty).unwrap()),
            json!({"greeting": "hello", "header_name": "X-Greeting"})
        );
        let bad = json!({"greeting": 3, "header_name": "a b", "extra": 1});
        let e = read(bad.as_object().unwrap()).unwrap_err();
        assert_eq!(
            e.to_json(),
            json!({"greeting": "expected a string", "header_name": "bad header name 'a b'", "extra": "unknown field"})
        );
    }
}
