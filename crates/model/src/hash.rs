//! The config hash: an order-independent digest of the whole config that one Event
//! updates in O(1).
//!
//! Each entity contributes `sha256(kind tag || postcard(entity))` truncated to 128 bits;
//! the config hash is the wrapping sum of those digests. Addition is commutative, so
//! creation order does not matter; replacing an entity subtracts its old digest and adds
//! the new one. Entities are unique by (kind, id), so no digest is ever counted twice.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::entity::Entity;

/// One entity's contribution to the config hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityDigest(pub u128);

/// The digest of a whole config: 32 lowercase hex characters when displayed, like Kong's.
/// The empty config hashes to all zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfigHash(pub u128);

/// Domain separation for the digest: changing the canonical encoding must change this.
const DIGEST_DOMAIN: &[u8] = b"tidegate/entity/v1\0";

impl EntityDigest {
    pub fn of(entity: &Entity) -> Self {
        let body = postcard::to_stdvec(entity).expect("entities encode infallibly");
        Self::of_encoded(&body)
    }

    /// The digest of an entity from its postcard encoding, for callers that hold the
    /// bytes already (a DP rebuilding a state from a snapshot): `of` without encoding.
    pub fn of_encoded(body: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(DIGEST_DOMAIN);
        h.update(body);
        let out = h.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&out[..16]);
        EntityDigest(u128::from_be_bytes(first))
    }
}

// === impl ConfigHash ===

impl ConfigHash {
    pub const EMPTY: ConfigHash = ConfigHash(0);

    pub fn add(&mut self, d: EntityDigest) {
        self.0 = self.0.wrapping_add(d.0);
    }

    pub fn remove(&mut self, d: EntityDigest) {
        self.0 = self.0.wrapping_sub(d.0);
    }

    pub fn of<'a>(entities: impl IntoIterator<Item = &'a Entity>) -> Self {
        let mut h = ConfigHash::EMPTY;
        for e in entities {
            h.add(EntityDigest::of(e));
        }
        h
    }

    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(ConfigHash)
    }
}

impl fmt::Display for ConfigHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
