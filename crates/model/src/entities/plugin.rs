//! `plugins`: an instance of a plugin with its config, scoped globally or to a service,
//! route and/or consumer.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl, Fk};
use crate::error::FieldError;
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

    fn id(&self) -> Uuid {
        self.id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let name = r.req_string("name");
        let info = name.as_deref().and_then(plugins::info);
        if let (Some(n), None) = (&name, &info) {
            // Like Kong's subschema selection: an unknown plugin stops validation here.
            r.error("name", not_enabled(n));
        }
        let instance_name = r.string_with("instance_name", typedefs::utf8_name);
        let created_at = cx.created_at(r);
        let updated_at = cx.updated_at(r);
        let route = cx.foreign(r, "route", EntityKind::Route);
        let service = cx.foreign(r, "service", EntityKind::Service);
        let consumer = cx.foreign(r, "consumer", EntityKind::Consumer);
        let allowed = info.map(|i| i.protocols).unwrap_or(plugins::HTTP_PROTOCOLS);
        let protocols = r
            .strings("protocols", true, |p| crate::input::check_one_of(p, allowed))
            .unwrap_or_else(|| allowed.iter().map(|s| s.to_string()).collect());
        let enabled = r.boolean("enabled").unwrap_or(true);
        let tags = cx.tags(r);
        let raw_config = r.raw("config");

        let mut config = None;
        if let (Some(n), Some(info)) = (&name, info) {
            if info.no_consumer && consumer.is_some() {
                r.error("consumer", "value must be null");
            }
            match PluginConfig::read(n, raw_config).expect("info() found the plugin") {
                Ok(c) => config = Some(c),
                Err(e) => r.nested_error("config", e),
            }
        } else if r.present("config") && !matches!(raw_config, Some(serde_json::Value::Object(_))) {
            r.nested_error("config", FieldError::msg("expected a record"));
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
    fn tags(&self) -> Option<&[String]> {
        self.tags.as_deref()
    }
}
