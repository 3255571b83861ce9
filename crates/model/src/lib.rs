//! tidegate's model of the configuration: Kong 3.x entities with their defaults and
//! validation, Kong's error bodies, the declarative file format, and the per-entity digest
//! that the config hash is built from.
//!
//! Pure: no I/O, no clocks, no randomness. Everything that would need one (new ids, the
//! time, generated secrets) comes in through [`entity::Fixed`], so that every node that
//! reads the same input builds the same entity.

pub mod calendar;
pub mod declarative;
pub mod entities;
pub mod entity;
pub mod error;
pub mod hash;
pub mod input;
pub mod ipset;
pub mod kind;
pub mod pki;
pub mod plugins;
pub mod typedefs;

pub use entity::{Ctx, Entity, Fixed, Fk, Lookup, NoLookup};
pub use error::{ErrorCode, Errors, FieldError, KongError};
pub use hash::{ConfigHash, EntityDigest};
pub use kind::EntityKind;

/// The Kong Admin API version whose behaviour tidegate implements. Clients such as decK
/// read `version` from `GET /` to decide which features exist.
pub const KONG_COMPAT_VERSION: &str = "3.9.0";
