//! The consumers and credentials of one config version, indexed for the auth plugins:
//! key-auth keys, basic-auth usernames, acl groups.

use std::collections::HashMap;
use std::sync::Arc;

use tidegate_model::{Entity, EntityKind};
use tidegate_state::ConfigState;
use uuid::Uuid;

/// A consumer as plugins need it, with its acl groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub id: Uuid,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    /// The groups of its `acls` credentials, sorted.
    pub groups: Arc<[String]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCredential {
    pub id: Uuid,
    pub consumer: Uuid,
    /// Unix seconds after which the key no longer authenticates (`created_at + ttl`).
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredential {
    pub id: Uuid,
    pub consumer: Uuid,
    /// `sha1(password .. consumer_id)` in hex, as stored.
    pub password_hash: String,
}

#[derive(Default)]
pub struct Consumers {
    by_id: HashMap<Uuid, Arc<ConsumerInfo>>,
    by_username: HashMap<String, Uuid>,
    keys: HashMap<String, KeyCredential>,
    basic: HashMap<String, BasicCredential>,
}

impl Consumers {
    pub fn build(state: &ConfigState) -> Self {
        let mut groups: HashMap<Uuid, Vec<String>> = HashMap::new();
        for e in state.iter_kind(EntityKind::Acl) {
            if let Entity::Acl(a) = e {
                if let Some(c) = a.consumer {
                    groups.entry(c.id).or_default().push(a.group.clone());
                }
            }
        }
        let mut out = Consumers::default();
        for e in state.iter_kind(EntityKind::Consumer) {
            if let Entity::Consumer(c) = e {
                let mut g = groups.remove(&c.id).unwrap_or_default();
                g.sort();
                g.dedup();
                if let Some(u) = &c.username {
                    out.by_username.insert(u.clone(), c.id);
                }
                out.by_id.insert(
                    c.id,
                    Arc::new(ConsumerInfo {
                        id: c.id,
                        username: c.username.clone(),
                        custom_id: c.custom_id.clone(),
                        groups: g.into(),
                    }),
                );
            }
        }
        for e in state.iter_kind(EntityKind::KeyauthCredential) {
            if let Entity::KeyauthCredential(k) = e {
                if let Some(c) = k.consumer {
                    let expires_at = k.ttl.filter(|t| *t > 0).map(|t| k.created_at + t);
                    out.keys.insert(
                        k.key.clone(),
                        KeyCredential {
                            id: k.id,
                            consumer: c.id,
                            expires_at,
                        },
                    );
                }
            }
        }
        for e in state.iter_kind(EntityKind::BasicauthCredential) {
            if let Entity::BasicauthCredential(b) = e {
                if let Some(c) = b.consumer {
                    out.basic.insert(
                        b.username.clone(),
                        BasicCredential {
                            id: b.id,
                            consumer: c.id,
                            password_hash: b.password.clone(),
                        },
                    );
                }
            }
        }
        out
    }

    pub fn get(&self, id: &Uuid) -> Option<&Arc<ConsumerInfo>> {
        self.by_id.get(id)
    }

    /// Kong's `anonymous` takes a consumer id or username.
    pub fn find(&self, id_or_username: &str) -> Option<&Arc<ConsumerInfo>> {
        match id_or_username.parse::<Uuid>() {
            Ok(id) => self.by_id.get(&id),
            Err(_) => self
                .by_username
                .get(id_or_username)
                .and_then(|id| self.by_id.get(id)),
        }
    }

    pub fn key(&self, key: &str) -> Option<&KeyCredential> {
        self.keys.get(key)
    }

    pub fn basic(&self, username: &str) -> Option<&BasicCredential> {
        self.basic.get(username)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
