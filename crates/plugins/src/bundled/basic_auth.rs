//! basic-auth: authenticates a consumer by the username and password of an
//! `Authorization` (or `Proxy-Authorization`) `Basic` header.

use std::sync::Arc;

use base64::Engine;
use http::header::{AUTHORIZATION, PROXY_AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue};
use tidegate_model::entities::hash_password;
use tidegate_model::plugins::basic_auth::BasicAuthConfig;

use super::key_auth::{constant_time_eq, fall_back_to_anonymous, set_consumer};
use crate::consumers::BasicCredential;
use crate::context::{Credential, Ctx, Req};
use crate::phase::{Access, Exit, Flow, Plugin};
use crate::runtime::Runtime;

const ERR_UNAUTHORIZED: &str = "Unauthorized";
const ERR_UNEXPECTED: &str = "An unexpected error occurred";

pub struct BasicAuth {
    anonymous: Option<String>,
    hide_credentials: bool,
    www_authenticate: HeaderValue,
}

pub fn build(c: &BasicAuthConfig, _rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
    let www_authenticate = HeaderValue::from_str(&format!("Basic realm=\"{}\"", c.realm))
        .map_err(|_| format!("realm '{}' is not a valid header value", c.realm))?;
    Ok(Arc::new(BasicAuth {
        anonymous: c.anonymous.clone(),
        hide_credentials: c.hide_credentials,
        www_authenticate,
    }))
}

enum Failure {
    Unauthorized,
    Unexpected,
}

impl BasicAuth {
    /// Kong's `retrieve_credentials`: the username and password in header `name`, which
    /// goes away from the upstream request when credentials are hidden (whether or not
    /// it held any).
    fn retrieve(&self, req: &mut Req, name: HeaderName) -> Option<(String, String)> {
        let parsed = req.headers.get(&name).and_then(|v| parse(v.as_bytes()));
        if self.hide_credentials {
            req.headers.remove(name);
        }
        parsed
    }

    fn authenticate(&self, cx: &mut Ctx<'_>, req: &mut Req) -> Result<(), Failure> {
        if !req.headers.contains_key(AUTHORIZATION)
            && !req.headers.contains_key(PROXY_AUTHORIZATION)
        {
            return Err(Failure::Unauthorized);
        }
        let consumers = cx.consumers;
        // The proxy header is tried first; the other only when it names no credential.
        let mut found: Option<(&BasicCredential, String, String)> = self
            .retrieve(req, PROXY_AUTHORIZATION)
            .and_then(|(user, pass)| consumers.basic(&user).map(|c| (c, user, pass)));
        if found.is_none() {
            let Some((user, pass)) = self.retrieve(req, AUTHORIZATION) else {
                return Err(Failure::Unauthorized);
            };
            found = consumers.basic(&user).map(|c| (c, user, pass));
        }
        let Some((cred, username, password)) = found else {
            return Err(Failure::Unauthorized);
        };
        let digest = hash_password(cred.consumer, &password);
        if !constant_time_eq(digest.as_bytes(), cred.password_hash.as_bytes()) {
            return Err(Failure::Unauthorized);
        }
        let Some(consumer) = consumers.get(&cred.consumer) else {
            tracing::error!(credential = %cred.id, consumer = %cred.consumer, "basic-auth credential without its consumer");
            return Err(Failure::Unexpected);
        };
        let credential = Credential {
            id: cred.id,
            identifier: username,
        };
        set_consumer(cx, &mut req.headers, consumer.clone(), Some(credential));
        Ok(())
    }
}

impl Plugin for BasicAuth {
    fn access<'a>(&'a self, cx: &'a mut Ctx<'_>, req: &'a mut Req) -> Access<'a> {
        // With `anonymous` set, auth plugins are alternatives: one that already
        // authenticated the request is enough.
        if self.anonymous.is_some() && cx.credential.is_some() {
            return Access::CONTINUE;
        }
        let failure = match self.authenticate(cx, req) {
            Ok(()) => return Access::CONTINUE,
            Err(f) => f,
        };
        if let Some(anonymous) = &self.anonymous {
            return Access::Done(fall_back_to_anonymous(cx, req, anonymous));
        }
        Access::Done(Flow::Exit(match failure {
            Failure::Unauthorized => {
                let mut e = Exit::error(401, ERR_UNAUTHORIZED);
                e.headers
                    .insert(WWW_AUTHENTICATE, self.www_authenticate.clone());
                e
            }
            Failure::Unexpected => Exit::error(500, ERR_UNEXPECTED),
        }))
    }
}

/// The credentials of a `Basic` header value, matched as Kong's regexes do:
/// `\s*[Bb]asic\s*(.+)` anywhere in the value, then `([^:]+):(.*)` anywhere in the
/// decoded text (so the username is the first non-empty run before a colon, and the
/// password stops at a newline).
fn parse(value: &[u8]) -> Option<(String, String)> {
    let at = value
        .windows(5)
        .position(|w| w == b"Basic" || w == b"basic")?;
    let rest = &value[at + 5..];
    let start = rest
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(rest.len());
    let encoded = &rest[start..];
    if encoded.is_empty() {
        return None;
    }
    let decoded = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
    .decode(encoded)
    .ok()?;
    let mut from = 0;
    loop {
        let colon = from + decoded[from..].iter().position(|&c| c == b':')?;
        if colon > from {
            let user = &decoded[from..colon];
            let pass = &decoded[colon + 1..];
            let pass = &pass[..pass.iter().position(|&c| c == b'\n').unwrap_or(pass.len())];
            return Some((
                String::from_utf8(user.to_vec()).ok()?,
                String::from_utf8(pass.to_vec()).ok()?,
            ));
        }
        from = colon + 1;
    }
}

#[cfg(test)]
mod tests;
