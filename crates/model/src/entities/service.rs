//! `services`: an upstream API that routes point at.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl, Fk};
use crate::error::{Errors, FieldError};
use crate::input::{check_one_of, parse_uuid, Reader};
use crate::kind::EntityKind;
use crate::typedefs::{self, DEFAULT_TIMEOUT, MAX_TIMEOUT, SERVICE_PROTOCOLS};

pub const DEFAULT_RETRIES: i64 = 5;
pub const DEFAULT_PORT: i64 = 80;
pub const DEFAULT_HTTPS_PORT: i64 = 443;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
    pub name: Option<String>,
    pub retries: i64,
    pub protocol: String,
    pub host: String,
    pub port: i64,
    pub path: Option<String>,
    pub connect_timeout: i64,
    pub write_timeout: i64,
    pub read_timeout: i64,
    pub tags: Option<Vec<String>>,
    pub client_certificate: Option<Fk>,
    pub tls_verify: Option<bool>,
    pub tls_verify_depth: Option<i64>,
    pub ca_certificates: Option<Vec<Uuid>>,
    pub enabled: bool,
}

/// What luasocket's `url.parse` extracts (the parts Kong's shorthand uses).
#[derive(Debug, Default, PartialEq)]
struct ParsedUrl {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<String>,
    path: Option<String>,
}

/// `socket.url.parse`, step by step: scheme, `//authority`, then fragment, query and
/// params are cut off and what is left is the path.
fn parse_url(url: &str) -> ParsedUrl {
    let mut parsed = ParsedUrl::default();
    let mut rest = url;
    let b = rest.as_bytes();
    if b.first().is_some_and(u8::is_ascii_alphanumeric) {
        let end = b
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || b"+-.".contains(c)))
            .unwrap_or(b.len());
        if b.get(end) == Some(&b':') {
            parsed.scheme = Some(rest[..end].to_string());
            rest = &rest[end + 1..];
        }
    }
    let mut authority = None;
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        authority = Some(&after[..end]);
        rest = &after[end..];
    }
    for cut in ['#', '?', ';'] {
        if let Some(i) = rest.find(cut) {
            rest = &rest[..i];
        }
    }
    if !rest.is_empty() {
        parsed.path = Some(rest.to_string());
    }
    let Some(mut auth) = authority else {
        return parsed;
    };
    if let Some(i) = auth.find('@') {
        auth = &auth[i + 1..];
    }
    if let Some(i) = auth.rfind(':') {
        if !auth[i + 1..].contains(']') {
            parsed.port = Some(auth[i + 1..].to_string());
            auth = &auth[..i];
        }
    }
    if !auth.is_empty() {
        let unbracketed = auth
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .filter(|a| !a.is_empty());
        parsed.host = Some(unbracketed.unwrap_or(auth).to_string());
    }
    parsed
}

/// The values Kong's `url` shorthand writes over protocol, host, port and path.
struct UrlFields {
    protocol: Value,
    host: Option<Value>,
    port: Value,
    path: Option<Value>,
}

fn url_fields(url: &str) -> UrlFields {
    let p = parse_url(url);
    let port_num: Option<u64> = p
        .port
        .as_deref()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .map(|s| s.parse().unwrap_or(u64::MAX));
    let by_port = match port_num {
        Some(80) => Some("http"),
        Some(443) => Some("https"),
        _ => None,
    };
    let protocol = p
        .scheme
        .clone()
        .or(by_port.map(String::from))
        .unwrap_or_else(|| "http".into());
    let port = match (port_num, &p.port) {
        (Some(n), _) => Value::from(n),
        // A non-numeric port stays a string, and fails as one.
        (None, Some(s)) => Value::from(s.clone()),
        (None, None) if protocol == "https" => Value::from(DEFAULT_HTTPS_PORT),
        (None, None) => Value::from(DEFAULT_PORT),
    };
    UrlFields {
        protocol: Value::from(protocol),
        host: p.host.map(Value::from),
        port,
        path: p.path.map(Value::from),
    }
}

fn check_str(v: &Value, check: impl FnOnce(&str) -> Result<(), String>) -> Result<String, String> {
    let s = typedefs::value_str(v)?;
    check(s)?;
    Ok(s.to_string())
}

/// Records the outcome of validating `v` as field `key`.
fn field<T>(r: &mut Reader<'_>, key: &str, res: Result<T, String>) -> Option<T> {
    match res {
        Ok(t) => Some(t),
        Err(m) => {
            r.error(key, m);
            None
        }
    }
}

impl EntityKindImpl for Service {
    const KIND: EntityKind = EntityKind::Service;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let updated_at = cx.updated_at(r);
        let name = r.string_with("name", typedefs::utf8_name);

        // `url` is a write-only shorthand whose parts overwrite protocol, host, port and
        // path, as Kong's shorthand does. A malformed `url` is the only error reported.
        let mut shorthand_error = None;
        let from_url = match r.raw("url") {
            None => None,
            Some(v) => match typedefs::value_str(v) {
                Ok(u) => Some(url_fields(u)),
                Err(m) => {
                    shorthand_error = Some(m);
                    None
                }
            },
        };
        let raw_protocol = r.raw("protocol").cloned();
        let raw_host = r.raw("host").cloned();
        let raw_port = r.raw("port").cloned();
        let raw_path = r.raw("path").cloned();
        let (protocol_v, host_v, port_v, path_v) = match from_url {
            Some(u) => (Some(u.protocol), u.host, Some(u.port), u.path),
            None => (raw_protocol, raw_host, raw_port, raw_path),
        };

        let protocol = match &protocol_v {
            None => Some("http".to_string()),
            Some(v) => {
                let res = check_str(v, |s| check_one_of(s, SERVICE_PROTOCOLS));
                field(r, "protocol", res)
            }
        };
        let host = match &host_v {
            None => None,
            Some(v) => {
                let res = check_str(v, typedefs::host);
                field(r, "host", res)
            }
        };
        let host = r.required("host", host);
        let port = match &port_v {
            None => Some(DEFAULT_PORT),
            Some(v) => {
                let res = typedefs::value_int_between(v, 0, 65535);
                field(r, "port", res)
            }
        };
        let path = match &path_v {
            None => None,
            Some(v) => {
                let res = check_str(v, typedefs::path);
                field(r, "path", res)
            }
        };

        let retries = r
            .int_between("retries", 0, 32767)
            .unwrap_or(DEFAULT_RETRIES);
        let timeout = |r: &mut Reader<'_>, key| r.int_between(key, 1, MAX_TIMEOUT);
        let connect_timeout = timeout(r, "connect_timeout").unwrap_or(DEFAULT_TIMEOUT);
        let write_timeout = timeout(r, "write_timeout").unwrap_or(DEFAULT_TIMEOUT);
        let read_timeout = timeout(r, "read_timeout").unwrap_or(DEFAULT_TIMEOUT);
        let tags = cx.tags(r);
        let raw_client_certificate = r.raw("client_certificate").is_some();
        let client_certificate = cx.foreign(r, "client_certificate", EntityKind::Certificate);
        let raw_tls_verify = r.raw("tls_verify").is_some();
        let tls_verify = r.boolean("tls_verify");
        let raw_tls_verify_depth = r.raw("tls_verify_depth").is_some();
        let tls_verify_depth = r.int_between("tls_verify_depth", 0, 64);
        let raw_ca_certificates = r.raw("ca_certificates").is_some();
        let ca_certificates =
            typedefs::read_list(r, "ca_certificates", false, |s| parse_uuid(s).map(|_| ())).map(
                |v| {
                    v.iter()
                        .map(|s| parse_uuid(s).expect("checked above"))
                        .collect()
                },
            );
        let enabled = r.boolean("enabled").unwrap_or(true);

        // Kong's conditional entity checks, in order; they only apply to a valid protocol.
        if let Some(p) = protocol.as_deref() {
            let msg = typedefs::conditional_msg("protocol");
            let must_be_null = || FieldError::msg("value must be null");
            if ["tcp", "tls", "udp", "grpc", "grpcs"].contains(&p) && path_v.is_some() {
                typedefs::conditional_failed(r, "path", must_be_null(), msg.clone());
            }
            if !["https", "tls"].contains(&p) {
                for (f, set) in [
                    ("client_certificate", raw_client_certificate),
                    ("tls_verify", raw_tls_verify),
                    ("tls_verify_depth", raw_tls_verify_depth),
                    ("ca_certificates", raw_ca_certificates),
                ] {
                    if set {
                        typedefs::conditional_failed(r, f, must_be_null(), msg.clone());
                    }
                }
            }
        }

        if let Some(m) = shorthand_error {
            let mut only = Errors::default();
            only.field("url", m);
            *r.errors_mut() = only;
        }

        Service {
            id,
            created_at,
            updated_at,
            name,
            retries,
            protocol: protocol.unwrap_or_else(|| "http".into()),
            host: host.unwrap_or_default(),
            port: port.unwrap_or(DEFAULT_PORT),
            path,
            connect_timeout,
            write_timeout,
            read_timeout,
            tags,
            client_certificate,
            tls_verify,
            tls_verify_depth,
            ca_certificates,
            enabled,
        }
    }

    fn foreign_keys(&self) -> Vec<Option<Uuid>> {
        vec![self.client_certificate.map(|f| f.id)]
    }
    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        self.name.iter().map(|n| ("name", n.clone())).collect()
    }
    fn endpoint_key(&self) -> Option<String> {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luasocket_url_parse() {
        let p = parse_url("https://user:pw@[::1]:8443/a/b;p?q=1#f");
        assert_eq!(p.scheme.as_deref(), Some("https"));
        assert_eq!(p.host.as_deref(), Some("::1"));
        assert_eq!(p.port.as_deref(), Some("8443"));
        assert_eq!(p.path.as_deref(), Some("/a/b"));
        let p = parse_url("example.com");
        assert_eq!(
            p,
            ParsedUrl {
                path: Some("example.com".into()),
                ..Default::default()
            }
        );
        let p = parse_url("localhost:8080");
        assert_eq!(p.scheme.as_deref(), Some("localhost"));
        assert_eq!(p.path.as_deref(), Some("8080"));
    }
}
