//! One file per entity kind: its fields in Kong's JSON shape, its defaults and its
//! validation.

mod certificate;
mod consumer;
mod credentials;
mod plugin;
mod route;
mod service;
mod target;
mod upstream;

pub use certificate::{CaCertificate, Certificate, Sni};
pub use consumer::Consumer;
pub use credentials::{hash_password, Acl, BasicauthCredential, KeyauthCredential};
pub use plugin::{not_enabled, Plugin};
pub use route::{CidrPort, Route};
pub use service::Service;
pub use target::{normalize_target, Target};
pub use upstream::{ActiveCheck, Healthchecks, PassiveCheck, Upstream};
