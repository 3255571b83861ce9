//! acl: lets a consumer through by the groups it belongs to (an allow list) or refuses
//! it (a deny list), after an auth plugin identified it.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use tidegate_model::plugins::acl::AclConfig;

use crate::context::{Ctx, Req};
use crate::phase::{Access, Exit, Plugin};
use crate::runtime::Runtime;

const ERR_FORBIDDEN: &str = "You cannot consume this service";
/// Kong's `kong.response.error(401)` default message.
const ERR_UNAUTHORIZED: &str = "Unauthorized";

const CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");
const AUTHENTICATED_GROUPS: HeaderName = HeaderName::from_static("x-authenticated-groups");

pub struct Acl {
    deny: bool,
    groups: Box<[String]>,
    hide_groups_header: bool,
    always_use_authenticated_groups: bool,
}

pub fn build(c: &AclConfig, _rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
    // The schema lets exactly one list be non-empty; `deny` decides when it has groups.
    let (deny, groups) = match (&c.deny, &c.allow) {
        (Some(d), _) if !d.is_empty() => (true, d.clone()),
        (_, a) => (false, a.clone().unwrap_or_default()),
    };
    Ok(Arc::new(Acl {
        deny,
        groups: groups.into(),
        hide_groups_header: c.hide_groups_header,
        always_use_authenticated_groups: c.always_use_authenticated_groups,
    }))
}

impl Acl {
    /// Whether a request with these groups is refused. `sorted` says the groups are
    /// sorted (a consumer's are), so membership is a binary search.
    fn blocked(&self, groups: &[String], sorted: bool) -> bool {
        let member = |g: &String| {
            if sorted {
                groups.binary_search(g).is_ok()
            } else {
                groups.contains(g)
            }
        };
        let in_group = self.groups.iter().any(member);
        in_group == self.deny
    }
}

impl Plugin for Acl {
    fn access<'a>(&'a self, cx: &'a mut Ctx<'_>, req: &'a mut Req) -> Access<'a> {
        // Groups an auth plugin established without a consumer win when there is no
        // consumer, when the consumer is the anonymous one (no credential), or always
        // when configured so.
        let (groups, sorted, header) = match (&cx.consumer, &cx.authenticated_groups) {
            (None, Some(g)) => (g.clone(), false, AUTHENTICATED_GROUPS),
            (None, None) if cx.credential.is_some() => {
                return Access::exit(Exit::error(403, ERR_FORBIDDEN))
            }
            (None, None) => return Access::exit(Exit::error(401, ERR_UNAUTHORIZED)),
            (Some(_), Some(g))
                if cx.credential.is_none() || self.always_use_authenticated_groups =>
            {
                (g.clone(), false, AUTHENTICATED_GROUPS)
            }
            (Some(c), _) => (c.groups.clone(), true, CONSUMER_GROUPS),
        };
        if self.blocked(&groups, sorted) {
            return Access::exit(Exit::error(403, ERR_FORBIDDEN));
        }
        if !self.hide_groups_header {
            if let Ok(v) = HeaderValue::from_str(&groups.join(", ")) {
                req.headers.insert(header, v);
            }
        }
        Access::CONTINUE
    }
}

#[cfg(test)]
mod tests;
