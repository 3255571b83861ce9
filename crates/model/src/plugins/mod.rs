//! Typed configs of the bundled plugins, validated with Kong's messages.
//!
//! Each plugin is one file with a config struct implementing [`PluginSchema`]; the
//! [`plugin_configs!`] list below is the one place that names them all. The enum's
//! variant order is part of the binary encoding: append new plugins at the end.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::error::FieldError;
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
    /// Plugins that identify the consumer cannot themselves be scoped to one.
    const NO_CONSUMER: bool = false;
    /// Reads `config` with defaults filled in. Errors are left in the reader.
    fn read(r: &mut Reader<'_>) -> Self;
}

macro_rules! plugin_configs {
    ($( $variant:ident => $module:ident :: $ty:ident ),* $(,)?) => {
        $( pub mod $module; )*

        /// A validated plugin config. In JSON it is the bare config object, as Kong shows
        /// it; in the binary encoding it is tagged by variant.
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        pub enum PluginConfig {
            $( $variant($module::$ty), )*
        }

        /// Name, priority and version of every bundled plugin, in priority order.
        pub fn bundled() -> Vec<PluginInfo> {
            let mut all = vec![$( PluginInfo {
                name: <$module::$ty as PluginSchema>::NAME,
                priority: <$module::$ty as PluginSchema>::PRIORITY,
                version: <$module::$ty as PluginSchema>::VERSION,
                protocols: <$module::$ty as PluginSchema>::PROTOCOLS,
                no_consumer: <$module::$ty as PluginSchema>::NO_CONSUMER,
            }, )*];
            all.sort_by(|a, b| b.priority.cmp(&a.priority));
            all
        }

        impl PluginConfig {
            /// Reads the `config` of plugin `name`; `None` for a plugin that is not bundled.
            pub fn read(name: &str, config: Option<&Value>) -> Option<Result<Self, FieldError>> {
                let empty = Value::Object(Default::default());
                let config = config.unwrap_or(&empty);
                $( if name == <$module::$ty as PluginSchema>::NAME {
                    return Some(read_config::<$module::$ty>(config).map(PluginConfig::$variant));
                } )*
                None
            }

            pub fn name(&self) -> &'static str {
                match self { $( PluginConfig::$variant(_) => <$module::$ty as PluginSchema>::NAME, )* }
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
                unreachable!("every variant is listed above")
            }
        }
    };
}

plugin_configs! {
    CorrelationId => correlation_id::CorrelationIdConfig,
}

/// Static facts about a bundled plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: &'static str,
    pub priority: i64,
    pub version: &'static str,
    pub protocols: &'static [&'static str],
    pub no_consumer: bool,
}

pub fn info(name: &str) -> Option<PluginInfo> {
    bundled().into_iter().find(|p| p.name == name)
}

fn read_config<T: PluginSchema>(v: &Value) -> Result<T, FieldError> {
    let mut r = Reader::new(v)?;
    let t = T::read(&mut r);
    r.finish_nested()?;
    Ok(t)
}

#[cfg(test)]
mod tests;
