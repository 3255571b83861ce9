//! The bundled plugins, one file each. A plugin file has its instance type (built from
//! the typed config in `tidegate_model::plugins`) and implements [`crate::Plugin`];
//! [`register_all`] is the one list of them.

use std::sync::Arc;

use tidegate_model::plugins::{PluginConfig, PluginSchema};

use crate::phase::Plugin;
use crate::registry::{Factory, Registry};
use crate::runtime::Runtime;

pub mod acl;
pub mod basic_auth;
pub mod correlation_id;
pub mod cors;
pub mod ip_restriction;
pub mod key_auth;
pub mod rate_limiting;
pub mod request_size_limiting;
pub mod request_termination;
pub mod request_transformer;
pub mod response_transformer;
#[cfg(test)]
pub(crate) mod testing;
mod util;

/// What building one instance gives.
pub type Built = Result<Arc<dyn Plugin>, String>;

/// A bundled plugin's factory: its schema's name, priority and version, and how an
/// instance is made from its config variant.
struct Bundled<C: PluginSchema> {
    unwrap: fn(&PluginConfig) -> Option<&C>,
    build: fn(&C, &Runtime) -> Built,
}

impl<C: PluginSchema + Send + Sync + 'static> Factory for Bundled<C> {
    fn name(&self) -> &'static str {
        C::NAME
    }
    fn priority(&self) -> i64 {
        C::PRIORITY
    }
    fn version(&self) -> &'static str {
        C::VERSION
    }
    fn build(&self, config: &PluginConfig, rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
        let c = (self.unwrap)(config)
            .ok_or_else(|| format!("a config of '{}' given to '{}'", config.name(), C::NAME))?;
        (self.build)(c, rt)
    }
}

macro_rules! bundled {
    ($r:ident; $( $variant:ident => $module:ident ),* $(,)?) => {
        $(
            $r.register(Bundled {
                unwrap: |c| match c {
                    PluginConfig::$variant(c) => Some(c),
                    #[allow(unreachable_patterns)]
                    _ => None,
                },
                build: $module::build,
            });
        )*
    };
}

pub(crate) fn register_all(r: &mut Registry) {
    bundled! { r;
        CorrelationId => correlation_id,
        Cors => cors,
        KeyAuth => key_auth,
        BasicAuth => basic_auth,
        Acl => acl,
        RateLimiting => rate_limiting,
        RequestTermination => request_termination,
        IpRestriction => ip_restriction,
        RequestSizeLimiting => request_size_limiting,
        RequestTransformer => request_transformer,
        ResponseTransformer => response_transformer,
    }
}
