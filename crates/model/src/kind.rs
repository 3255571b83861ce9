//! The entity kinds, their names, keys and relations: the metadata that the state machine,
//! the Admin API and the declarative loader all drive from, so that a relation is declared
//! once.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityKind {
    // The order is the load order: parents before the children that reference them. The
    // postcard encoding uses the position, so new kinds are appended.
    Certificate,
    CaCertificate,
    Service,
    Route,
    Consumer,
    Upstream,
    Target,
    Sni,
    Plugin,
    KeyauthCredential,
    BasicauthCredential,
    Acl,
}

/// What happens to a child when its parent is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// The child is deleted with the parent.
    Cascade,
    /// The parent cannot be deleted while the child references it (code 4).
    Restrict,
}

/// A foreign-key field of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relation {
    pub field: &'static str,
    pub parent: EntityKind,
    pub on_delete: OnDelete,
}

const fn rel(field: &'static str, parent: EntityKind, on_delete: OnDelete) -> Relation {
    Relation {
        field,
        parent,
        on_delete,
    }
}

// === impl EntityKind ===

impl EntityKind {
    pub const ALL: [EntityKind; 12] = [
        EntityKind::Certificate,
        EntityKind::CaCertificate,
        EntityKind::Service,
        EntityKind::Route,
        EntityKind::Consumer,
        EntityKind::Upstream,
        EntityKind::Target,
        EntityKind::Sni,
        EntityKind::Plugin,
        EntityKind::KeyauthCredential,
        EntityKind::BasicauthCredential,
        EntityKind::Acl,
    ];

    /// Kong's table/DAO name, used in URLs, declarative files and messages.
    pub fn table(self) -> &'static str {
        match self {
            EntityKind::Service => "services",
            EntityKind::Route => "routes",
            EntityKind::Consumer => "consumers",
            EntityKind::Plugin => "plugins",
            EntityKind::Upstream => "upstreams",
            EntityKind::Target => "targets",
            EntityKind::Certificate => "certificates",
            EntityKind::Sni => "snis",
            EntityKind::CaCertificate => "ca_certificates",
            EntityKind::KeyauthCredential => "keyauth_credentials",
            EntityKind::BasicauthCredential => "basicauth_credentials",
            EntityKind::Acl => "acls",
        }
    }

    pub fn from_table(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.table() == name)
    }

    /// The field a URL segment that is not a UUID is looked up by.
    pub fn endpoint_key(self) -> Option<&'static str> {
        match self {
            EntityKind::Service | EntityKind::Route | EntityKind::Upstream => Some("name"),
            EntityKind::Consumer => Some("username"),
            EntityKind::Plugin => Some("instance_name"),
            EntityKind::Target => Some("target"),
            EntityKind::Sni => Some("name"),
            EntityKind::KeyauthCredential => Some("key"),
            EntityKind::BasicauthCredential => Some("username"),
            EntityKind::Acl => Some("group"),
            EntityKind::Certificate | EntityKind::CaCertificate => None,
        }
    }

    /// Foreign keys declared by this kind.
    pub fn relations(self) -> &'static [Relation] {
        use EntityKind::*;
        use OnDelete::*;
        const SERVICE: &[Relation] = &[rel("client_certificate", Certificate, Restrict)];
        const ROUTE: &[Relation] = &[rel("service", Service, Restrict)];
        const PLUGIN: &[Relation] = &[
            rel("route", Route, Cascade),
            rel("service", Service, Cascade),
            rel("consumer", Consumer, Cascade),
        ];
        const UPSTREAM: &[Relation] = &[rel("client_certificate", Certificate, Restrict)];
        const TARGET: &[Relation] = &[rel("upstream", Upstream, Cascade)];
        const SNI: &[Relation] = &[rel("certificate", Certificate, Cascade)];
        const CREDENTIAL: &[Relation] = &[rel("consumer", Consumer, Cascade)];
        match self {
            Service => SERVICE,
            Route => ROUTE,
            Plugin => PLUGIN,
            Upstream => UPSTREAM,
            Target => TARGET,
            Sni => SNI,
            KeyauthCredential | BasicauthCredential | Acl => CREDENTIAL,
            Consumer | Certificate | CaCertificate => &[],
        }
    }

    /// The relations in which `self` is the parent, as (child kind, relation).
    pub fn children(self) -> impl Iterator<Item = (EntityKind, &'static Relation)> {
        Self::ALL.into_iter().flat_map(move |child| {
            child
                .relations()
                .iter()
                .filter(move |r| r.parent == self)
                .map(move |r| (child, r))
        })
    }
}

impl std::fmt::Display for EntityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.table())
    }
}
