//! `routes`: the rules that match requests and send them to a service.
//!
//! Validation follows Kong's traditional router schema: the subschema (http, stream or
//! grpc) is picked by the first known protocol and decides which fields may be set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl, Fk};
use crate::error::{Errors, FieldError};
use crate::input::{check_one_of, Reader};
use crate::kind::EntityKind;
use crate::typedefs::{self, nonempty, PROTOCOLS, PROTOCOL_SUBSETS};

pub const DEFAULT_HTTPS_REDIRECT_STATUS: i64 = 426;
const REDIRECT_CODES: &[i64] = &[426, 301, 302, 307, 308];
const TLS_PROTOCOLS: &[&str] = &["grpcs", "https", "tls", "tls_passthrough"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrPort {
    pub ip: Option<String>,
    pub port: Option<i64>,
}

/// Fields in Kong 3.0–3.6 declaration order.
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

/// `routes_subschemas.lua`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subschema {
    Http,
    Stream,
    Grpc,
}

fn subschema_of(protocol: &str) -> Option<Subschema> {
    match protocol {
        "http" | "https" => Some(Subschema::Http),
        "tcp" | "tls" | "udp" | "tls_passthrough" => Some(Subschema::Stream),
        "grpc" | "grpcs" => Some(Subschema::Grpc),
        _ => None,
    }
}

/// Lua's `tostring` of the first protocol, for `unknown type: %s`.
fn lua_tostring(v: Option<&Value>) -> String {
    match v {
        None => "nil".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) => "userdata: NULL".into(),
        Some(other) => other.to_string(),
    }
}

/// The protocols as Kong sees them after `process_auto_fields` (deduplicated), the
/// subschema they select, or the error that stops validation.
fn select_subschema(raw: Option<&Value>) -> Result<(Vec<Value>, Subschema), String> {
    let Some(v) = raw else {
        let default = vec![Value::from("http"), Value::from("https")];
        return Ok((default, Subschema::Http));
    };
    match v {
        Value::String(s) => match subschema_of(s) {
            Some(sub) => Ok((vec![v.clone()], sub)),
            None => Err(format!("unknown type: {s}")),
        },
        _ => {
            let Some(items) = typedefs::as_list(v) else {
                return Err("expected a set".into());
            };
            let items: Vec<Value> = typedefs::dedup(items).into_iter().cloned().collect();
            let sub = items.iter().find_map(|p| p.as_str().and_then(subschema_of));
            match sub {
                Some(sub) => Ok((items, sub)),
                None => Err(format!("unknown type: {}", lua_tostring(items.first()))),
            }
        }
    }
}

/// `mutually_exclusive_subsets`: the subsets hit, in order of first appearance.
fn subsets_hit(protocols: &[&str]) -> Vec<&'static [&'static str]> {
    let mut hit: Vec<&'static [&'static str]> = Vec::new();
    for p in protocols {
        if let Some(set) = PROTOCOL_SUBSETS.iter().find(|s| s.contains(p)) {
            if !hit.contains(set) {
                hit.push(set);
            }
        }
    }
    hit
}

/// A `no_*` field of a subschema: any non-null value fails with `msg`.
fn forbid(r: &mut Reader<'_>, key: &'static str, msg: &str) -> bool {
    if r.raw(key).is_some() {
        r.error(key, msg);
        true
    } else {
        false
    }
}

/// One element of `sources` / `destinations`.
fn cidr_port(v: &Value) -> Result<CidrPort, FieldError> {
    if v.is_null() {
        return Err(FieldError::msg("required field missing"));
    }
    let mut rr = Reader::new(v)?;
    let raw_ip = rr.raw("ip");
    let raw_port = rr.raw("port");
    let ip = rr.string_with("ip", typedefs::ip_or_cidr);
    let port = rr.int_between("port", 0, 65535);
    if !nonempty(raw_ip) && !nonempty(raw_port) {
        rr.entity_error("at least one of these fields must be non-empty: 'ip', 'port'");
    }
    rr.finish_nested()?;
    Ok(CidrPort { ip, port })
}

fn read_cidr_ports(r: &mut Reader<'_>, key: &'static str) -> Option<Vec<CidrPort>> {
    let v = r.raw(key)?;
    let Some(items) = typedefs::as_list(v) else {
        r.error(key, "expected a set");
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut errs = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        match cidr_port(item) {
            Ok(c) => out.push(c),
            Err(e) => {
                errs.insert(i + 1, e);
            }
        }
    }
    if errs.is_empty() {
        Some(out)
    } else {
        r.nested_error(key, FieldError::Items(errs));
        None
    }
}

fn header_key(k: &str) -> Result<(), String> {
    if k.eq_ignore_ascii_case("host") {
        return Err(
            "cannot contain 'host' header, which must be specified in the 'hosts' attribute".into(),
        );
    }
    typedefs::header_name(k)
}

/// Kong leaves `~*` header values to the router; we reject a pattern our router could
/// not compile, with the same message as a bad regex path.
fn header_value(v: &str) -> Result<(), String> {
    match v.strip_prefix("~*") {
        Some(re) => typedefs::regex(re),
        None => Ok(()),
    }
}

impl EntityKindImpl for Route {
    const KIND: EntityKind = EntityKind::Route;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        use Subschema::*;

        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let updated_at = cx.updated_at(r);
        let name = r.string_with("name", typedefs::utf8_name);

        let raw_protocols = r.raw("protocols");
        let (protocol_values, sub, stop) = match select_subschema(raw_protocols) {
            Ok((p, sub)) => (p, sub, None),
            Err(m) => (Vec::new(), Http, Some(m)),
        };
        let is_set = raw_protocols.is_none_or(|v| typedefs::as_list(v).is_some());
        // `protocols` itself: elements, then the set-level validators.
        let mut protocols_ok = stop.is_none();
        let mut protocols: Vec<String> = Vec::new();
        if stop.is_none() {
            if !is_set {
                r.error("protocols", "expected a set");
                protocols_ok = false;
            } else {
                let mut errs = BTreeMap::new();
                for (i, p) in protocol_values.iter().enumerate() {
                    match typedefs::value_str(p).and_then(|s| check_one_of(s, PROTOCOLS)) {
                        Ok(()) => protocols.push(p.as_str().unwrap_or_default().to_string()),
                        Err(m) => {
                            errs.insert(i + 1, FieldError::Msg(m));
                        }
                    }
                }
                if !errs.is_empty() {
                    r.nested_error("protocols", FieldError::Items(errs));
                    protocols_ok = false;
                } else {
                    let names: Vec<&str> = protocols.iter().map(String::as_str).collect();
                    let hit = subsets_hit(&names);
                    if hit.len() > 1 {
                        let sets: Vec<String> = hit
                            .iter()
                            .map(|s| format!("({})", typedefs::quoted_list(s)))
                            .collect();
                        r.error(
                            "protocols",
                            format!("these sets are mutually exclusive: {}", sets.join(", ")),
                        );
                        protocols_ok = false;
                    }
                }
            }
        }
        if protocols.is_empty() {
            protocols = vec!["http".into(), "https".into()];
        }

        let raw_methods = r.raw("methods").cloned();
        let raw_hosts = r.raw("hosts").cloned();
        let raw_paths = r.raw("paths").cloned();
        let raw_headers = r.raw("headers").cloned();
        let raw_snis = r.raw("snis").cloned();
        let raw_sources = r.raw("sources").cloned();
        let raw_destinations = r.raw("destinations").cloned();

        const STREAM: &str = "'tcp', 'tls', 'tls_passthrough' or 'udp'";
        let methods = match sub {
            Http => typedefs::read_list(r, "methods", true, typedefs::http_method),
            Stream => {
                forbid(
                    r,
                    "methods",
                    &format!("cannot set 'methods' when 'protocols' is {STREAM}"),
                );
                None
            }
            Grpc => {
                let msg = "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'";
                forbid(r, "methods", msg);
                None
            }
        };
        let (hosts, paths, headers) = if sub == Stream {
            for f in ["hosts", "paths", "headers"] {
                forbid(
                    r,
                    f,
                    &format!("cannot set '{f}' when 'protocols' is {STREAM}"),
                );
            }
            (None, None, None)
        } else {
            let hosts = typedefs::read_list(r, "hosts", false, typedefs::route_host);
            let paths = typedefs::read_list(r, "paths", false, typedefs::router_path);
            let headers = match r.raw("headers") {
                None => None,
                Some(v) => match typedefs::headers_map(v, header_key, header_value) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        r.nested_error("headers", e);
                        None
                    }
                },
            };
            (hosts, paths, headers)
        };

        let https_redirect_status_code = match r.integer("https_redirect_status_code") {
            Some(code) if REDIRECT_CODES.contains(&code) => code,
            Some(_) => {
                r.error(
                    "https_redirect_status_code",
                    "expected one of: 426, 301, 302, 307, 308",
                );
                DEFAULT_HTTPS_REDIRECT_STATUS
            }
            None => DEFAULT_HTTPS_REDIRECT_STATUS,
        };
        let regex_priority = r.integer("regex_priority").unwrap_or(0);
        let strip_path = match (sub, r.boolean("strip_path")) {
            (Grpc, Some(true)) => {
                r.error(
                    "strip_path",
                    "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'",
                );
                false
            }
            (_, Some(b)) => b,
            (Grpc, None) => false,
            (_, None) => true,
        };
        let path_handling = r
            .one_of("path_handling", &["v0", "v1"])
            .unwrap_or_else(|| "v0".into());
        let preserve_host = r.boolean("preserve_host").unwrap_or(false);
        let request_buffering = r.boolean("request_buffering").unwrap_or(true);
        let response_buffering = r.boolean("response_buffering").unwrap_or(true);
        let snis = typedefs::read_list(r, "snis", true, typedefs::sni);
        let (sources, destinations) = match sub {
            Stream => (
                read_cidr_ports(r, "sources"),
                read_cidr_ports(r, "destinations"),
            ),
            Http | Grpc => {
                let which = if sub == Http {
                    "'http' or 'https'"
                } else {
                    "'grpc' or 'grpcs'"
                };
                for f in ["sources", "destinations"] {
                    forbid(
                        r,
                        f,
                        &format!("cannot set '{f}' when 'protocols' is {which}"),
                    );
                }
                (None, None)
            }
        };
        let tags = cx.tags(r);
        let service = cx.foreign(r, "service", EntityKind::Service);

        // Entity checks see the input as given (invalid values included); the
        // `protocols` conditions also apply the field's own validators.
        let names: Vec<&str> = protocol_values.iter().filter_map(Value::as_str).collect();
        let all_strings =
            names.len() == protocol_values.len() && names.iter().all(|s| !s.is_empty());
        let set_ok = is_set && all_strings && !names.is_empty() && subsets_hit(&names).len() <= 1;
        let has = |p: &str| names.contains(&p);

        if set_ok && names.iter().all(|p| !TLS_PROTOCOLS.contains(p)) {
            if let Some(v) = &raw_snis {
                let err = match typedefs::string_list(v, true, typedefs::sni) {
                    Err(e) => Some(e),
                    Ok(l) if !l.is_empty() => Some(FieldError::msg("length must be 0")),
                    Ok(_) => None,
                };
                if let Some(e) = err {
                    typedefs::conditional_failed(
                        r,
                        "snis",
                        e,
                        "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"
                            .into(),
                    );
                }
            }
        }

        let set = |v: &Option<Value>| nonempty(v.as_ref());
        let need = |r: &mut Reader<'_>, fields: &[(&str, &Option<Value>)], msg: String| {
            if !fields.iter().any(|(_, v)| set(v)) {
                r.entity_error(msg);
            }
        };
        let methods_f = ("methods", &raw_methods);
        let hosts_f = ("hosts", &raw_hosts);
        let headers_f = ("headers", &raw_headers);
        let paths_f = ("paths", &raw_paths);
        let snis_f = ("snis", &raw_snis);
        let list = |fields: &[(&str, &Option<Value>)]| {
            typedefs::quoted_list(&fields.iter().map(|f| f.0).collect::<Vec<_>>())
        };
        if protocols_ok {
            match sub {
                Http => {
                    if has("https") {
                        let fields = [methods_f, hosts_f, headers_f, paths_f, snis_f];
                        let msg = format!(
                            "must set one of {} when 'protocols' is 'https'",
                            list(&fields)
                        );
                        need(r, &fields, msg);
                    } else if has("http") {
                        let fields = [methods_f, hosts_f, headers_f, paths_f];
                        let msg = format!(
                            "must set one of {} when 'protocols' is 'http'",
                            list(&fields)
                        );
                        need(r, &fields, msg);
                    }
                }
                Stream => {
                    if names.iter().all(|p| ["tcp", "tls", "udp"].contains(p)) {
                        let fields = [
                            ("sources", &raw_sources),
                            ("destinations", &raw_destinations),
                            snis_f,
                        ];
                        let msg = format!(
                            "must set one of {} when 'protocols' is 'tcp', 'tls' or 'udp'",
                            list(&fields)
                        );
                        need(r, &fields, msg);
                    }
                    if names.iter().all(|p| *p == "tls_passthrough") {
                        need(
                            r,
                            &[snis_f],
                            "must set snis when 'protocols' is 'tls_passthrough'".into(),
                        );
                    }
                }
                Grpc => {
                    if has("grpcs") {
                        let fields = [hosts_f, headers_f, paths_f, snis_f];
                        let msg = format!(
                            "must set one of {} when 'protocols' is 'grpcs'",
                            list(&fields)
                        );
                        need(r, &fields, msg);
                    } else if has("grpc") {
                        let fields = [hosts_f, headers_f, paths_f];
                        let msg = format!(
                            "must set one of {} when 'protocols' is 'grpc'",
                            list(&fields)
                        );
                        need(r, &fields, msg);
                    }
                }
            }
        }

        // An unusable `protocols` stops Kong's validation before anything else.
        if let Some(m) = stop {
            let mut only = Errors::default();
            only.field("protocols", m);
            *r.errors_mut() = only;
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
}
