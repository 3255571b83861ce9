//! `consumers`: the users of proxied APIs that credentials and plugins hang off.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl};
use crate::input::Reader;
use crate::kind::EntityKind;
use crate::typedefs::nonempty;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    pub tags: Option<Vec<String>>,
}

impl EntityKindImpl for Consumer {
    const KIND: EntityKind = EntityKind::Consumer;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let updated_at = cx.updated_at(r);
        // `at_least_one_of` runs on the input as given, invalid values included.
        let given = nonempty(r.raw("username")) || nonempty(r.raw("custom_id"));
        let username = r.string("username");
        let custom_id = r.string("custom_id");
        let tags = cx.tags(r);
        if !given {
            r.entity_error(
                "at least one of these fields must be non-empty: 'custom_id', 'username'",
            );
        }
        Consumer {
            id,
            created_at,
            updated_at,
            username,
            custom_id,
            tags,
        }
    }

    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        let mut keys = Vec::new();
        if let Some(u) = &self.username {
            keys.push(("username", u.clone()));
        }
        if let Some(c) = &self.custom_id {
            keys.push(("custom_id", c.clone()));
        }
        keys
    }
    fn endpoint_key(&self) -> Option<String> {
        self.username.clone()
    }
}
