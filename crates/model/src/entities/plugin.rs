//! `plugins`: an instance of a plugin with its config, scoped globally or to a service,
//! route and/or consumer.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl, Fk};
use crate::error::Errors;
use crate::input::Reader;
use crate::kind::EntityKind;
use crate::plugins::{self, PluginConfig};
use crate::typedefs;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plugin {
    pub id: Uuid,
    pub name: String,
    pub instance_name: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub route: Option<Fk>,
    pub service: Option<Fk>,
    pub consumer: Option<Fk>,
    pub config: PluginConfig,
    pub protocols: Vec<String>,
    pub enabled: bool,
    pub tags: Option<Vec<String>>,
}

/// Kong's message for a plugin that is not installed.
pub fn not_enabled(name: &str) -> String {
    format!("plugin '{name}' not enabled; add it to the 'plugins' configuration property")
}

impl EntityKindImpl for Plugin {
    const KIND: EntityKind = EntityKind::Plugin;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        // `name` selects the subschema; without a known one Kong validates nothing else.
        let (name, stop) = match r.raw("name") {
            None => (None, Some("required field missing".to_string())),
            Some(Value::String(n)) if plugins::info(n).is_some() => (Some(n.clone()), None),
            Some(Value::String(n)) => (Some(n.clone()), Some(not_enabled(n))),
            Some(_) => (None, Some("expected a string".to_string())),
        };
        let info = name.as_deref().and_then(plugins::info);
        let instance_name = r.string_with("instance_name", typedefs::utf8_name);
        let created_at = cx.created_at(r);
        let updated_at = cx.updated_at(r);
        let route = cx.foreign(r, "route", EntityKind::Route);
        let service = cx.foreign(r, "service", EntityKind::Service);
        // Plugins that identify the consumer specialise it to `typedefs.no_consumer`.
        let consumer = if info.is_some_and(|i| i.no_consumer) && r.raw("consumer").is_some() {
            r.error("consumer", "value must be null");
            None
        } else {
            cx.foreign(r, "consumer", EntityKind::Consumer)
        };
        let allowed = info.map(|i| i.protocols).unwrap_or(plugins::HTTP_PROTOCOLS);
        let protocols = typedefs::read_list(r, "protocols", true, |p| {
            crate::input::check_one_of(p, allowed)
        })
        .unwrap_or_else(|| {
            let default = info.map_or(plugins::HTTP_PROTOCOLS, |i| i.default_protocols);
            default.iter().map(|s| s.to_string()).collect()
        });
        let enabled = r.boolean("enabled").unwrap_or(true);
        let tags = cx.tags(r);
        let raw_config = r.raw("config");

        let mut config = None;
        if let (Some(n), Some(_)) = (&name, info) {
            match PluginConfig::read(n, raw_config).expect("info() found the plugin") {
                Ok(c) => config = Some(c),
                Err(e) => r.nested_error("config", e),
            }
        }
        if let Some(m) = stop {
            let mut only = Errors::default();
            only.field("name", m);
            *r.errors_mut() = only;
        }

        Plugin {
            id,
            name: name.unwrap_or_default(),
            instance_name,
            created_at,
            updated_at,
            route,
            service,
            consumer,
            // A placeholder when invalid: the reader holds errors, so this value is dropped.
            config: config.unwrap_or_else(|| {
                PluginConfig::read("correlation-id", None)
                    .expect("bundled")
                    .expect("defaults are valid")
            }),
            protocols,
            enabled,
            tags,
        }
    }

    fn foreign_keys(&self) -> Vec<Option<Uuid>> {
        vec![
            self.route.map(|f| f.id),
            self.service.map(|f| f.id),
            self.consumer.map(|f| f.id),
        ]
    }
    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        let id = |f: Option<Fk>| f.map(|f| f.id.to_string()).unwrap_or_default();
        let mut keys = vec![(
            "cache_key",
            format!(
                "{}:{}:{}:{}",
                self.name,
                id(self.route),
                id(self.service),
                id(self.consumer)
            ),
        )];
        if let Some(n) = &self.instance_name {
            keys.push(("instance_name", n.clone()));
        }
        keys
    }
    fn endpoint_key(&self) -> Option<String> {
        self.instance_name.clone()
    }
}
