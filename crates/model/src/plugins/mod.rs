//! Typed configs of the bundled plugins, validated with Kong's messages.
//!
//! Each plugin is one file with a config struct implementing [`PluginSchema`]; the
//! [`plugin_configs!`] list below is the one place that names them all. The enum's
//! variant order is part of the binary encoding: append new plugins at the end.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{Errors, FieldError};
use crate::input::Reader;

/// The protocols a plugin accepts by default (`typedefs.protocols_http` in Kong).
pub const HTTP_PROTOCOLS: &[&str] = &["grpc", "grpcs", "http", "https"];

/// A bundled plugin's schema: what a config holds and how it is read.
pub trait PluginSchema:
    Sized + Clone + PartialEq + std::fmt::Debug + Serialize + DeserializeOwned
{
    /// The plugin name, as in `plugins.name`.
    const NAME: &'static str;
    /// Kong's execution priority: higher runs first.
    const PRIORITY: i64;
    /// The plugin's own semver version, advertised by DPs and checked by the CP.
    const VERSION: &'static str;
    /// Protocols an instance may be enabled for.
    const PROTOCOLS: &'static [&'static str] = HTTP_PROTOCOLS;
    /// Protocols an instance gets when none are given (Kong may default to a subset).
    const DEFAULT_PROTOCOLS: &'static [&'static str] = Self::PROTOCOLS;
    /// Plugins that identify the consumer cannot themselves be scoped to one.
    const NO_CONSUMER: bool = false;
    /// Reads `config` with defaults filled in. Errors are left in the reader.
    fn read(r: &mut Reader<'_>) -> Self;
    /// The config record's `custom_validator`: Kong runs it only when every field is valid,
    /// and its message replaces the record's errors (`fields.config = "<msg>"`).
    fn custom_validator(&self) -> Result<(), String> {
        Ok(())
    }
    /// The plugin's `entity_checks`. Kong evaluates them over the input values, valid or
    /// not, so they get the raw config. Messages go to `entity`; the "required field
    /// missing" of a `conditional` goes to `fields` (nested under `config` in Kong).
    fn entity_checks(_raw: &Map<String, Value>, _errs: &mut Errors) {}
}

macro_rules! plugin_configs {
    ($( $variant:ident => $module:ident :: $ty:ident ),* $(,)?) => {
        $( pub mod $module; )*

        /// A validated plugin config. In JSON it is the bare config object, as Kong shows
        /// it; in the binary encoding it is tagged by variant.
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        pub enum PluginConfig {
            $( $variant($module::$ty), )*
            /// A plugin a custom build registered with [`register_custom`]. Last, so
            /// that bundled plugins keep their tags in the binary encoding.
            Custom(CustomConfig),
        }

        /// Name, priority and version of every bundled plugin, in priority order.
        pub fn bundled() -> Vec<PluginInfo> {
            let mut all = vec![$( PluginInfo {
                name: <$module::$ty as PluginSchema>::NAME,
                priority: <$module::$ty as PluginSchema>::PRIORITY,
                version: <$module::$ty as PluginSchema>::VERSION,
                protocols: <$module::$ty as PluginSchema>::PROTOCOLS,
                default_protocols: <$module::$ty as PluginSchema>::DEFAULT_PROTOCOLS,
                no_consumer: <$module::$ty as PluginSchema>::NO_CONSUMER,
            }, )*];
            all.sort_by(|a, b| b.priority.cmp(&a.priority));
            all
        }

        impl PluginConfig {
            /// Reads the `config` of plugin `name`; `None` for a plugin that is not bundled.
            /// The plugin's entity-check messages come first in `config`'s own `@entity`
            /// (Kong puts them in the plugin's top-level `@entity`; see [`Self::read_parts`]).
            pub fn read(name: &str, config: Option<&Value>) -> Option<Result<Self, FieldError>> {
                Self::read_parts(name, config).map(|r| r.map_err(ConfigErrors::into_field_error))
            }

            /// Like [`Self::read`], with the entity-check messages kept apart, for a caller
            /// that places them at the plugin's top-level `@entity` as Kong does.
            pub fn read_parts(name: &str, config: Option<&Value>) -> Option<Result<Self, ConfigErrors>> {
                let empty = Value::Object(Default::default());
                let config = config.unwrap_or(&empty);
                $( if name == <$module::$ty as PluginSchema>::NAME {
                    return Some(read_config::<$module::$ty>(config).map(PluginConfig::$variant));
                } )*
                let schema = custom_schema(name)?;
                Some(read_custom(&schema, config).map(PluginConfig::Custom))
            }

            pub fn name(&self) -> &str {
                match self {
                    $( PluginConfig::$variant(_) => <$module::$ty as PluginSchema>::NAME, )*
                    PluginConfig::Custom(c) => &c.name,
                }
            }
        }

        impl Serialize for PluginConfig {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut _index = 0u32;
                $(
                    if let PluginConfig::$variant(c) = self {
                        return if s.is_human_readable() {
                            c.serialize(s)
                        } else {
                            s.serialize_newtype_variant("PluginConfig", _index, stringify!($variant), c)
                        };
                    }
                    _index += 1;
                )*
                if let PluginConfig::Custom(c) = self {
                    return if s.is_human_readable() {
                        c.config.serialize(s)
                    } else {
                        s.serialize_newtype_variant("PluginConfig", _index, "Custom", c)
                    };
                }
                unreachable!("every variant is listed above")
            }
        }
    };
}

plugin_configs! {
    CorrelationId => correlation_id::CorrelationIdConfig,
    Cors => cors::CorsConfig,
    KeyAuth => key_auth::KeyAuthConfig,
    BasicAuth => basic_auth::BasicAuthConfig,
    IpRestriction => ip_restriction::IpRestrictionConfig,
    RequestSizeLimiting => request_size_limiting::RequestSizeLimitingConfig,
    Acl => acl::AclConfig,
    RateLimiting => rate_limiting::RateLimitingConfig,
    RequestTermination => request_termination::RequestTerminationConfig,
    RequestTransformer => request_transformer::RequestTransformerConfig,
    ResponseTransformer => response_transformer::ResponseTransformerConfig,
}

/// Static facts about a bundled plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: &'static str,
    pub priority: i64,
    pub version: &'static str,
    pub protocols: &'static [&'static str],
    /// What `protocols` defaults to; a subset of `protocols`.
    pub default_protocols: &'static [&'static str],
    pub no_consumer: bool,
}

/// A bundled or custom plugin by name.
pub fn info(name: &str) -> Option<PluginInfo> {
    installed().into_iter().find(|p| p.name == name)
}

/// The bundled plugins and those a custom build registered, in priority order.
pub fn installed() -> Vec<PluginInfo> {
    let mut all = bundled();
    all.extend(custom().iter().map(CustomSchema::info));
    all.sort_by_key(|p| std::cmp::Reverse(p.priority));
    all
}

// --- plugins added by a custom build ---

/// A plugin a custom build adds: its facts and how its `config` is read. Registered
/// with [`register_custom`] before the node starts, on CPs (which validate configs) and
/// DPs (which advertise it) alike; every CP of a group must register the same schemas,
/// since each replica validates the writes it applies.
#[derive(Debug, Clone, Copy)]
pub struct CustomSchema {
    pub name: &'static str,
    pub priority: i64,
    pub version: &'static str,
    pub protocols: &'static [&'static str],
    /// Reads `config` (an empty object when absent): the config with its defaults filled
    /// in, or the errors by field as Kong reports them.
    pub read: CustomRead,
}

/// See [`CustomSchema::read`].
pub type CustomRead = fn(&Map<String, Value>) -> Result<Map<String, Value>, Errors>;

impl CustomSchema {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: self.name,
            priority: self.priority,
            version: self.version,
            protocols: self.protocols,
            default_protocols: self.protocols,
            no_consumer: false,
        }
    }
}

static CUSTOM: std::sync::RwLock<Vec<CustomSchema>> = std::sync::RwLock::new(Vec::new());

/// Adds a custom plugin's schema. A name a bundled plugin has is refused; registering a
/// name again replaces its schema.
pub fn register_custom(schema: CustomSchema) -> Result<(), String> {
    if bundled().iter().any(|p| p.name == schema.name) {
        return Err(format!(
            "custom plugin '{}': a bundled plugin has that name",
            schema.name
        ));
    }
    let parts: Vec<&str> = schema.version.split('.').collect();
    let semver = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !semver {
        return Err(format!(
            "custom plugin '{}': version '{}' is not semver (x.y.z)",
            schema.name, schema.version
        ));
    }
    let mut all = CUSTOM.write().unwrap_or_else(|p| p.into_inner());
    all.retain(|s| s.name != schema.name);
    all.push(schema);
    Ok(())
}

/// The custom plugins registered so far.
pub fn custom() -> Vec<CustomSchema> {
    CUSTOM.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn custom_schema(name: &str) -> Option<CustomSchema> {
    custom().into_iter().find(|s| s.name == name)
}

fn read_custom(schema: &CustomSchema, v: &Value) -> Result<CustomConfig, ConfigErrors> {
    let Value::Object(obj) = v else {
        return Err(ConfigErrors {
            entity: Vec::new(),
            config: Some(FieldError::msg("expected a record")),
        });
    };
    match (schema.read)(obj) {
        Ok(config) => Ok(CustomConfig {
            name: schema.name.to_string(),
            config,
        }),
        Err(e) => Err(ConfigErrors {
            entity: Vec::new(),
            config: Some(FieldError::Record(e)),
        }),
    }
}

/// A custom plugin's validated config. JSON shows the bare config object, as for
/// bundled plugins; the binary encoding carries the name and the config as JSON text
/// (the binary format cannot describe arbitrary JSON by itself).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomConfig {
    pub name: String,
    pub config: Map<String, Value>,
}

impl Serialize for CustomConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.config.serialize(s)
        } else {
            let text = serde_json::to_string(&self.config).map_err(serde::ser::Error::custom)?;
            (&self.name, text).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for CustomConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            return Err(serde::de::Error::custom(
                "a custom plugin config is read through its schema, not deserialized from JSON",
            ));
        }
        let (name, text) = <(String, String)>::deserialize(d)?;
        let config = serde_json::from_str(&text).map_err(serde::de::Error::custom)?;
        Ok(CustomConfig { name, config })
    }
}

/// Why a config was refused, split the way Kong reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// Entity-check messages: Kong's top-level `fields["@entity"]` of the plugin.
    pub entity: Vec<String>,
    /// `fields.config`: a record of field errors, or one message from the record's
    /// custom validator.
    pub config: Option<FieldError>,
}

impl ConfigErrors {
    /// Everything under `config`, entity-check messages first in its `@entity`.
    pub fn into_field_error(self) -> FieldError {
        let mut entity = self.entity;
        match self.config {
            Some(FieldError::Record(mut e)) => {
                entity.append(&mut e.entity);
                e.entity = entity;
                FieldError::Record(e)
            }
            Some(FieldError::Msg(m)) if !entity.is_empty() => {
                entity.push(m);
                FieldError::Record(Errors {
                    entity,
                    fields: Default::default(),
                })
            }
            Some(other) => other,
            None => FieldError::Record(Errors {
                entity,
                fields: Default::default(),
            }),
        }
    }
}

fn read_config<T: PluginSchema>(v: &Value) -> Result<T, ConfigErrors> {
    let Value::Object(obj) = v else {
        return Err(ConfigErrors {
            entity: Vec::new(),
            config: Some(FieldError::msg("expected a record")),
        });
    };
    let mut r = Reader::of(obj);
    let t = T::read(&mut r);
    let mut config = match r.finish() {
        Err(e) => Some(FieldError::Record(e)),
        Ok(()) => t.custom_validator().err().map(FieldError::Msg),
    };
    let mut checks = Errors::default();
    T::entity_checks(obj, &mut checks);
    if !checks.fields.is_empty() {
        match &mut config {
            None => {
                config = Some(FieldError::Record(Errors {
                    entity: Vec::new(),
                    fields: checks.fields,
                }))
            }
            Some(FieldError::Record(e)) => merge_fields(e, checks.fields),
            // Kong cannot nest an error under a string either.
            Some(_) => {}
        }
    }
    if config.is_none() && checks.entity.is_empty() {
        Ok(t)
    } else {
        Err(ConfigErrors {
            entity: checks.entity,
            config,
        })
    }
}

fn merge_fields(into: &mut Errors, from: std::collections::BTreeMap<String, FieldError>) {
    for (k, v) in from {
        match (into.fields.get_mut(&k), v) {
            (Some(FieldError::Record(a)), FieldError::Record(b)) => {
                for m in b.entity {
                    a.entity(m);
                }
                merge_fields(a, b.fields);
            }
            (Some(_), _) => {}
            (None, v) => {
                into.fields.insert(k, v);
            }
        }
    }
}

// --- helpers shared by the plugin files ---

/// Kong's `validate_header_name` (`typedefs.header_name` in plugin schemas): stricter
/// than an HTTP token, only `^[a-zA-Z0-9-_]+$`.
pub(crate) fn header_name(s: &str) -> Result<(), String> {
    if valid_header_name(s) {
        Ok(())
    } else {
        Err(format!(
            "bad header name '{s}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        ))
    }
}

pub(crate) fn valid_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Kong's `is_nonempty`: nil, null, `""` and an empty table are empty.
pub(crate) fn is_nonempty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// `'config.a', 'config.b'`, as Kong's `quoted_list` names plugin fields.
pub(crate) fn quoted_config_fields(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("'config.{k}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many of `keys` are non-empty in the raw config.
pub(crate) fn count_nonempty(raw: &Map<String, Value>, keys: &[&str]) -> usize {
    keys.iter().filter(|k| is_nonempty(raw.get(**k))).count()
}

/// `at_least_one_of` over `config.<keys>`.
pub(crate) fn at_least_one_of(raw: &Map<String, Value>, keys: &[&str], errs: &mut Errors) {
    if count_nonempty(raw, keys) == 0 {
        errs.entity(format!(
            "at least one of these fields must be non-empty: {}",
            quoted_config_fields(keys)
        ));
    }
}

/// A failed `conditional { then_match = { required = true } }`: the missing field is
/// reported at its path and the condition in `@entity`.
pub(crate) fn conditional_required(errs: &mut Errors, if_field: &str, then_path: &[&str]) {
    errs.entity(format!(
        "failed conditional validation given value of field 'config.{if_field}'"
    ));
    let Some((last, parents)) = then_path.split_last() else {
        return;
    };
    let mut node = errs;
    for key in parents {
        let entry = node
            .fields
            .entry(key.to_string())
            .or_insert_with(|| FieldError::Record(Errors::default()));
        match entry {
            FieldError::Record(inner) => node = inner,
            _ => return,
        }
    }
    node.field(*last, "required field missing");
}

/// A string field with `len_min = 0`: only the type is checked.
pub(crate) fn string_len0(r: &mut Reader<'_>, key: &'static str) -> Option<String> {
    match r.raw(key)? {
        Value::String(s) => Some(s.clone()),
        _ => {
            r.error(key, "expected a string");
            None
        }
    }
}

/// Kong `number` fields: JSON shows integral values without a fraction (`429`, as Lua's
/// cjson prints them); the binary encoding keeps the plain `f64`.
pub(crate) mod number {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct Num(f64);

    impl Serialize for Num {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let v = self.0;
            if s.is_human_readable() && v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
                s.serialize_i64(v as i64)
            } else {
                s.serialize_f64(v)
            }
        }
    }

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        Num(*v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        f64::deserialize(d)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(&Num(*v)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            Option::<f64>::deserialize(d)
        }
    }
}

/// A number with `gt = 0`.
pub(crate) fn positive_number(r: &mut Reader<'_>, key: &'static str) -> Option<f64> {
    let v = r.number(key)?;
    if v > 0.0 {
        Some(v)
    } else {
        r.error(key, "value must be greater than 0");
        None
    }
}

#[cfg(test)]
mod tests;
