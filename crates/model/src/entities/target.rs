//! `targets`: the `host:port` members of an upstream's load-balancing ring.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl, Fk};
use crate::input::Reader;
use crate::kind::EntityKind;
use crate::typedefs;

pub const DEFAULT_TARGET_PORT: u16 = 8000;
pub const DEFAULT_WEIGHT: i64 = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
    pub upstream: Option<Fk>,
    pub target: String,
    pub weight: i64,
    pub tags: Option<Vec<String>>,
}

/// The form Kong stores (`format_host(normalize_ip(t), 8000)`): default port 8000, IPv4
/// without leading zeros, IPv6 fully expanded in brackets, names unchanged.
pub fn normalize_target(s: &str) -> Result<String, String> {
    let n = typedefs::normalize_ip(s)
        .map_err(|_| format!("Invalid target ('{s}'); not a valid hostname or ip address"))?;
    Ok(typedefs::format_host(
        &n,
        Some(u32::from(DEFAULT_TARGET_PORT)),
    ))
}

impl EntityKindImpl for Target {
    const KIND: EntityKind = EntityKind::Target;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let updated_at = cx.updated_at(r);
        let upstream = cx.foreign(r, "upstream", EntityKind::Upstream);
        let upstream = r.required("upstream", upstream);
        let target = r
            .req_string("target")
            .and_then(|t| match normalize_target(&t) {
                Ok(n) => Some(n),
                Err(m) => {
                    r.error("target", m);
                    None
                }
            });
        let weight = r.int_between("weight", 0, 65535).unwrap_or(DEFAULT_WEIGHT);
        let tags = cx.tags(r);
        Target {
            id,
            created_at,
            updated_at,
            upstream,
            target: target.unwrap_or_default(),
            weight,
            tags,
        }
    }

    fn foreign_keys(&self) -> Vec<Option<Uuid>> {
        vec![self.upstream.map(|f| f.id)]
    }
    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        let up = self.upstream.map(|f| f.id.to_string()).unwrap_or_default();
        vec![("upstream_target", format!("{up}:{}", self.target))]
    }
    fn endpoint_key(&self) -> Option<String> {
        Some(self.target.clone())
    }
}
