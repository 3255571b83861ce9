//! The data plane's plugins: the phase trait every plugin implements, Kong's scoping
//! precedence, and the bundled plugins.
//!
//! ```text
//!  config version ──PluginSet::build──▶ PluginSet (instances with typed configs, the
//!                     │                  consumer/credential index) ── swapped with the
//!                     │                  proxy's config, built off the request path
//!                     ▼
//!  request ─▶ access (priority order; each plugin's instance resolved with the consumer
//!             known at its turn) ─▶ [exit or upstream] ─▶ response_headers ─▶
//!             response_body (only when a plugin asked) ─▶ log
//! ```
//!
//! A plugin instance is built once per config version from its typed config; nothing
//! walks JSON per request. State that must outlive a config version (rate-limit
//! counters, redis connections) lives in the [`Runtime`], which the proxy keeps for its
//! whole life.

mod body;
pub mod bundled;
mod consumers;
mod context;
mod phase;
mod registry;
mod runtime;
mod set;

pub use body::{collect, BodyError, BoxBody, BoxError, RequestBody};
pub use consumers::{BasicCredential, ConsumerInfo, Consumers, KeyCredential};
pub use context::{Credential, Ctx, PluginScope, Protocol, Req, ResponseSource};
pub use phase::{Access, Exit, ExitBody, Flow, PhaseFuture, Plugin};
pub use registry::{custom_config, register_custom, Factory, Registry};
pub use runtime::Runtime;
pub use set::{Inst, PluginSet, Ran};
