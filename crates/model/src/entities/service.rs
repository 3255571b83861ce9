//! `services`: an upstream API that routes point at.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl, Fk};
use crate::input::Reader;
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

/// The parts of a service `url`: protocol, host, port, path.
struct UrlParts {
    protocol: String,
    host: String,
    port: Option<i64>,
    path: Option<String>,
}

fn parse_url(url: &str) -> Result<UrlParts, String> {
    let invalid = || "missing host in url".to_string();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "missing host in url".to_string())?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_string())),
        None => (rest, None),
    };
    if authority.is_empty() {
        return Err(invalid());
    }
    let (host, port) = typedefs::split_host_port(authority)
        .ok_or_else(|| format!("invalid port in url: {url}"))?;
    Ok(UrlParts {
        protocol: scheme.to_ascii_lowercase(),
        host: host.to_string(),
        port: port.map(i64::from),
        path,
    })
}

impl EntityKindImpl for Service {
    const KIND: EntityKind = EntityKind::Service;

    fn id(&self) -> Uuid {
        self.id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let updated_at = cx.updated_at(r);
        let name = r.string_with("name", typedefs::utf8_name);

        // `url` is a write-only shorthand for protocol + host + port + path.
        let url = r.string("url");
        let url_parts = match url.as_deref().map(parse_url) {
            Some(Ok(p)) => Some(p),
            Some(Err(m)) => {
                r.error("url", m);
                None
            }
            None => None,
        };
        if url.is_some() {
            for f in ["protocol", "host", "port", "path"] {
                if r.present(f) {
                    r.entity_error(format!(
                        "these sets of fields are mutually exclusive: 'url' and 'protocol', 'host', 'port', 'path'"
                    ));
                    let _ = f;
                    break;
                }
            }
        }

        let mut protocol = r.one_of("protocol", SERVICE_PROTOCOLS);
        let mut host = r.string_with("host", typedefs::host);
        let mut port = r.int_between("port", 0, 65535);
        let mut path = r.string_with("path", typedefs::path);
        if let Some(p) = url_parts {
            match typedefs::host(&p.host) {
                Ok(()) => host = host.or(Some(p.host)),
                Err(m) => r.error("host", m),
            }
            match crate::input::check_one_of(&p.protocol, SERVICE_PROTOCOLS) {
                Ok(()) => protocol = protocol.or(Some(p.protocol.clone())),
                Err(m) => r.error("protocol", m),
            }
            if let Some(pp) = &p.path {
                match typedefs::path(pp) {
                    Ok(()) => path = path.or(Some(pp.clone())),
                    Err(m) => r.error("path", m),
                }
            }
            let default_port = if p.protocol == "https" || p.protocol == "grpcs" || p.protocol == "wss" {
                DEFAULT_HTTPS_PORT
            } else {
                DEFAULT_PORT
            };
            port = port.or(Some(p.port.unwrap_or(default_port)));
        }
        let host = r.required("host", host);
        let protocol = protocol.unwrap_or_else(|| "http".into());

        let retries = r.int_between("retries", 0, 32767).unwrap_or(DEFAULT_RETRIES);
        let connect_timeout = r.int_between("connect_timeout", 1, MAX_TIMEOUT).unwrap_or(DEFAULT_TIMEOUT);
        let write_timeout = r.int_between("write_timeout", 1, MAX_TIMEOUT).unwrap_or(DEFAULT_TIMEOUT);
        let read_timeout = r.int_between("read_timeout", 1, MAX_TIMEOUT).unwrap_or(DEFAULT_TIMEOUT);
        let tags = cx.tags(r);
        let client_certificate = cx.foreign(r, "client_certificate", EntityKind::Certificate);
        let tls_verify = r.boolean("tls_verify");
        let tls_verify_depth = r.int_between("tls_verify_depth", 0, 64);
        let ca_certificates = r
            .strings("ca_certificates", false, |s| crate::input::parse_uuid(s).map(|_| ()))
            .map(|v| v.iter().map(|s| crate::input::parse_uuid(s).expect("checked above")).collect());
        let enabled = r.boolean("enabled").unwrap_or(true);

        // TLS settings mean nothing for plain-text protocols (Kong's conditional checks).
        let tls_protocols = ["https", "tls", "wss"];
        let tls = tls_protocols.contains(&protocol.as_str());
        if !tls {
            let mut bad = false;
            for (f, set) in [
                ("client_certificate", client_certificate.is_some()),
                ("tls_verify", tls_verify.is_some()),
                ("tls_verify_depth", tls_verify_depth.is_some()),
                ("ca_certificates", ca_certificates.is_some()),
            ] {
                if set {
                    r.error(f, "value must be null");
                    bad = true;
                }
            }
            if bad {
                r.entity_error("failed conditional validation given value of field 'protocol'");
            }
        }
        if path.is_some() && !["http", "https", "ws", "wss"].contains(&protocol.as_str()) {
            r.error("path", "value must be null");
            r.entity_error("failed conditional validation given value of field 'protocol'");
        }

        Service {
            id,
            created_at,
            updated_at,
            name,
            retries,
            protocol,
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
    fn tags(&self) -> Option<&[String]> {
        self.tags.as_deref()
    }
}
