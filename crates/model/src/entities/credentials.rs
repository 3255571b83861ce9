//! The consumer credentials of the bundled auth plugins: `keyauth_credentials`,
//! `basicauth_credentials` and `acls`.

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl, Fk};
use crate::input::Reader;
use crate::kind::EntityKind;
use crate::typedefs::nonempty;

/// Kong's `DAO_MAX_TTL` (seconds).
pub const MAX_TTL: i64 = 100_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyauthCredential {
    pub id: Uuid,
    pub created_at: i64,
    pub consumer: Option<Fk>,
    pub key: String,
    /// Seconds after `created_at` when the key stops working. Kong only honours this with a
    /// database; our DPs honour it from the replicated config.
    pub ttl: Option<i64>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicauthCredential {
    pub id: Uuid,
    pub created_at: i64,
    pub consumer: Option<Fk>,
    pub username: String,
    /// `sha1(password .. consumer_id)` in hex, as Kong stores it.
    pub password: String,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub id: Uuid,
    pub created_at: i64,
    pub consumer: Option<Fk>,
    pub group: String,
    pub tags: Option<Vec<String>>,
}

/// Kong's basic-auth password digest (`kong/plugins/basic-auth/crypto.lua`).
pub fn hash_password(consumer_id: Uuid, password: &str) -> String {
    let mut h = Sha1::new();
    h.update(password.as_bytes());
    h.update(consumer_id.to_string().as_bytes());
    hex::encode(h.finalize())
}

fn consumer(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Option<Fk> {
    let c = cx.foreign(r, "consumer", EntityKind::Consumer);
    r.required("consumer", c)
}

impl EntityKindImpl for KeyauthCredential {
    const KIND: EntityKind = EntityKind::KeyauthCredential;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let consumer = consumer(r, cx);
        // A missing key is generated from the proposer's entropy: 32 hex characters, the
        // shape of Kong's `random_string()`.
        let key = r
            .string("key")
            .unwrap_or_else(|| format!("{:032x}", cx.ctx.fixed.entropy));
        let ttl = r.int_between("ttl", 0, MAX_TTL);
        let tags = cx.tags(r);
        KeyauthCredential {
            id,
            created_at,
            consumer,
            key,
            ttl,
            tags,
        }
    }

    fn foreign_keys(&self) -> Vec<Option<Uuid>> {
        vec![self.consumer.map(|f| f.id)]
    }
    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        vec![("key", self.key.clone())]
    }
    fn endpoint_key(&self) -> Option<String> {
        Some(self.key.clone())
    }
}

impl EntityKindImpl for BasicauthCredential {
    const KIND: EntityKind = EntityKind::BasicauthCredential;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let consumer_given = r.raw("consumer").is_some();
        let consumer = consumer(r, cx);
        let username = r.req_string("username");
        let password_given = nonempty(r.raw("password"));
        let password = r.req_string("password");
        let tags = cx.tags(r);
        // The hashing transformation needs both of its inputs.
        if password_given && !consumer_given {
            r.entity_error("all or none of these fields must be set: 'password', 'consumer.id'");
        }
        // `_transform: false` (an exported file) carries the stored digest already.
        let password = match (password, consumer, cx.ctx.transform) {
            (Some(p), Some(c), true) => hash_password(c.id, &p),
            (Some(p), _, _) => p,
            (None, _, _) => String::new(),
        };
        BasicauthCredential {
            id,
            created_at,
            consumer,
            username: username.unwrap_or_default(),
            password,
            tags,
        }
    }

    fn foreign_keys(&self) -> Vec<Option<Uuid>> {
        vec![self.consumer.map(|f| f.id)]
    }
    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        vec![("username", self.username.clone())]
    }
    fn endpoint_key(&self) -> Option<String> {
        Some(self.username.clone())
    }
}

impl EntityKindImpl for Acl {
    const KIND: EntityKind = EntityKind::Acl;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let consumer = consumer(r, cx);
        let group = r.req_string("group");
        let tags = cx.tags(r);
        Acl {
            id,
            created_at,
            consumer,
            group: group.unwrap_or_default(),
            tags,
        }
    }

    fn foreign_keys(&self) -> Vec<Option<Uuid>> {
        vec![self.consumer.map(|f| f.id)]
    }
    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        let c = self.consumer.map(|f| f.id.to_string()).unwrap_or_default();
        vec![("consumer_group", format!("{c}:{}", self.group))]
    }
    fn endpoint_key(&self) -> Option<String> {
        Some(self.group.clone())
    }
}
