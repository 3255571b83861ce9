//! `routes`: the rules that match requests and send them to a service.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl, Fk};
use crate::error::FieldError;
use crate::input::{read_strings, Reader};
use crate::kind::EntityKind;
use crate::typedefs::{self, PROTOCOLS};

pub const DEFAULT_HTTPS_REDIRECT_STATUS: i64 = 426;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrPort {
    pub ip: Option<String>,
    pub port: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
    pub name: Option<String>,
    pub protocols: Vec<String>,
    pub methods: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    pub https_redirect_status_code: i64,
    pub regex_priority: i64,
    pub strip_path: bool,
    pub path_handling: String,
    pub preserve_host: bool,
    pub request_buffering: bool,
    pub response_buffering: bool,
    pub snis: Option<Vec<String>>,
    pub sources: Option<Vec<CidrPort>>,
    pub destinations: Option<Vec<CidrPort>>,
    pub tags: Option<Vec<String>>,
    pub service: Option<Fk>,
}

/// A route path: `/prefix` or `~/regex`.
fn route_path(s: &str) -> Result<(), String> {
    if let Some(re) = s.strip_prefix('~') {
        if !re.starts_with('/') {
            return Err("should start with: / (fixed path) or ~/ (regex path)".into());
        }
        return typedefs::regex(re);
    }
    if !s.starts_with('/') {
        return Err("should start with: / (fixed path) or ~/ (regex path)".into());
    }
    if s.contains("//") {
        return Err("must not have empty segments".into());
    }
    Ok(())
}

/// A route host: a hostname, optionally with a port, optionally with one `*` at either end.
fn route_host(s: &str) -> Result<(), String> {
    let Some((h, _port)) = typedefs::split_host_port(s) else {
        return Err(format!("invalid value: {s}"));
    };
    let stars = h.matches('*').count();
    if stars > 1 {
        return Err("only one wildcard must be specified".into());
    }
    let core = if stars == 1 {
        if let Some(rest) = h.strip_prefix("*.") {
            rest
        } else if let Some(rest) = h.strip_suffix(".*") {
            rest
        } else {
            return Err("wildcard must be leftmost or rightmost character".into());
        }
    } else {
        h
    };
    if typedefs::valid_hostname_or_ip(core) {
        Ok(())
    } else {
        Err(format!("invalid value: {s}"))
    }
}

fn method(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("invalid value: {s}"))
    }
}

fn read_cidr_ports(r: &mut Reader<'_>, key: &'static str) -> Option<Vec<CidrPort>> {
    r.records(key, |rr| {
        let ip = rr.string_with("ip", typedefs::ip_or_cidr);
        let port = rr.int_between("port", 0, 65535);
        if ip.is_none() && port.is_none() && !rr.has_errors() {
            rr.entity_error("at least one of these fields must be non-empty: 'ip', 'port'");
        }
        CidrPort { ip, port }
    })
}

fn read_headers(name: &str, v: &Value) -> Result<Vec<String>, FieldError> {
    if name.eq_ignore_ascii_case("host") {
        return Err(FieldError::msg(
            "cannot contain 'host' header, which must be specified in the 'hosts' attribute",
        ));
    }
    typedefs::header_name(name).map_err(FieldError::Msg)?;
    let values = read_strings(v, false, |val| match val.strip_prefix("~*") {
        Some(re) => typedefs::regex(re),
        None => Ok(()),
    })?;
    if values.is_empty() {
        return Err(FieldError::msg("length must be at least 1"));
    }
    Ok(values)
}

impl EntityKindImpl for Route {
    const KIND: EntityKind = EntityKind::Route;

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
        let protocols = r
            .strings("protocols", true, |p| crate::input::check_one_of(p, PROTOCOLS))
            .unwrap_or_else(|| vec!["http".into(), "https".into()]);
        let methods = r.strings("methods", true, method);
        let hosts = r.strings("hosts", false, route_host);
        let paths = r.strings("paths", false, route_path);
        let headers = r.map("headers", read_headers);
        let https_redirect_status_code = r
            .integer("https_redirect_status_code")
            .and_then(|code| {
                match crate::input::check_one_of(&code.to_string(), &["426", "301", "302", "307", "308"]) {
                    Ok(()) => Some(code),
                    Err(m) => {
                        r.error("https_redirect_status_code", m);
                        None
                    }
                }
            })
            .unwrap_or(DEFAULT_HTTPS_REDIRECT_STATUS);
        let regex_priority = r.integer("regex_priority").unwrap_or(0);
        let strip_path = r.boolean("strip_path").unwrap_or(true);
        let path_handling = r.one_of("path_handling", &["v0", "v1"]).unwrap_or_else(|| "v0".into());
        let preserve_host = r.boolean("preserve_host").unwrap_or(false);
        let request_buffering = r.boolean("request_buffering").unwrap_or(true);
        let response_buffering = r.boolean("response_buffering").unwrap_or(true);
        let snis = r.strings("snis", true, typedefs::sni);
        let sources = read_cidr_ports(r, "sources");
        let destinations = read_cidr_ports(r, "destinations");
        let tags = cx.tags(r);
        let service = cx.foreign(r, "service", EntityKind::Service);

        let non_empty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
        let has_headers = headers.as_ref().is_some_and(|h| !h.is_empty());
        let is = |p: &str| protocols.iter().any(|x| x == p);
        let http_like = protocols
            .iter()
            .any(|p| ["http", "https", "grpc", "grpcs", "ws", "wss"].contains(&p.as_str()));
        let stream_like = protocols
            .iter()
            .any(|p| ["tcp", "tls", "udp", "tls_passthrough"].contains(&p.as_str()));
        let tls_like = protocols
            .iter()
            .any(|p| ["https", "grpcs", "tls", "tls_passthrough", "wss"].contains(&p.as_str()));

        if !r.has_errors() {
            if http_like && stream_like {
                r.error(
                    "protocols",
                    "mixing http and stream protocols is not allowed",
                );
            } else if http_like {
                let any = non_empty(&methods) || non_empty(&hosts) || non_empty(&paths) || has_headers;
                let with_snis = any || non_empty(&snis);
                if is("https") || is("grpcs") || is("wss") {
                    if !with_snis {
                        let which = if is("https") { "https" } else if is("grpcs") { "grpcs" } else { "wss" };
                        let other = if is("http") { "http" } else { which };
                        r.entity_error(format!(
                            "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is '{other}'"
                        ));
                        let _ = which;
                    }
                } else if !any {
                    let which = protocols.first().map(String::as_str).unwrap_or("http");
                    r.entity_error(format!(
                        "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is '{which}'"
                    ));
                }
                if (is("grpc") || is("grpcs")) && non_empty(&methods) {
                    r.error("methods", "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'");
                }
            } else if stream_like {
                let any = sources.as_ref().is_some_and(|v| !v.is_empty())
                    || destinations.as_ref().is_some_and(|v| !v.is_empty())
                    || non_empty(&snis);
                if !any {
                    r.entity_error(
                        "must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'",
                    );
                }
                for (f, set) in [
                    ("methods", non_empty(&methods)),
                    ("hosts", non_empty(&hosts)),
                    ("paths", non_empty(&paths)),
                    ("headers", has_headers),
                ] {
                    if set {
                        r.error(f, format!("cannot set '{f}' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or 'udp'"));
                    }
                }
            }
            if non_empty(&snis) && !tls_like {
                r.error(
                    "snis",
                    "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'",
                );
            }
        }

        Route {
            id,
            created_at,
            updated_at,
            name,
            protocols,
            methods,
            hosts,
            paths,
            headers,
            https_redirect_status_code,
            regex_priority,
            strip_path,
            path_handling,
            preserve_host,
            request_buffering,
            response_buffering,
            snis,
            sources,
            destinations,
            tags,
            service,
        }
    }

    fn foreign_keys(&self) -> Vec<Option<Uuid>> {
        vec![self.service.map(|f| f.id)]
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
