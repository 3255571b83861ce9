//! Building the router from routes and finding the route for a request.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::HashMap;

// The router's sets are looked up on every request with client-supplied strings but
// filled only from the config, so a fast hasher cannot be flooded; SipHash was ~1/3 of
// a lookup.
type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use regex::Regex;
use tidegate_model::entities::Route;
use tidegate_model::typedefs::normalize_uri;
use uuid::Uuid;

use crate::host::split_port;

mod index;

// Kong's MATCH_RULES bits: their numeric order is the tie-break between categories of
// equal weight (hosts > headers > paths > methods > snis).
const HOST: u8 = 0x40;
const HEADER: u8 = 0x20;
const URI: u8 = 0x10;
const METHOD: u8 = 0x08;
const SNI: u8 = 0x04;
const RULES_IN_ORDER: [u8; 5] = [HOST, HEADER, URI, METHOD, SNI];

// Kong's MATCH_SUBRULES: compared as a number, so a wildcard host with a port beats
// plain hosts, which beat a regex path.
const HAS_REGEX_URI: u8 = 0x01;
const PLAIN_HOSTS_ONLY: u8 = 0x02;
const HAS_WILDCARD_HOST_PORT: u8 = 0x04;

/// The scheme the request arrived with (on this hop, not `X-Forwarded-Proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Grpc,
    Grpcs,
}

impl Scheme {
    /// nginx's `$scheme`, which is what Kong's router sees: gRPC arrives as http(s).
    fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Grpcs)
    }
}

/// Request headers as the router reads them. Names are passed lower-case.
pub trait Headers {
    /// Whether `pred` holds for any value of header `name`.
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&str) -> bool) -> bool;

    fn contains(&self, name: &str) -> bool {
        self.any_value(name, &mut |_| true)
    }
}

/// A request without headers.
pub struct NoHeaders;

impl Headers for NoHeaders {
    fn any_value(&self, _: &str, _: &mut dyn FnMut(&str) -> bool) -> bool {
        false
    }
}

/// Name/value pairs in request order; a repeated header appears once per value.
impl Headers for &[(&str, &str)] {
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && pred(v))
    }
}

impl Headers for Vec<(&str, &str)> {
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.as_slice().any_value(name, pred)
    }
}

/// What the router needs to know about a request.
pub struct RequestView<'a> {
    pub method: &'a str,
    /// The `Host` header as sent, port included when given.
    pub host: Option<&'a str>,
    /// The request target as received (query string and all); normalised here as Kong
    /// does before matching.
    pub path: &'a str,
    pub headers: &'a dyn Headers,
    pub sni: Option<&'a str>,
    pub scheme: Scheme,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathHandling {
    V0,
    V1,
}

/// The parts of a route the proxy needs after matching.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub id: Uuid,
    pub name: Option<String>,
    pub service_id: Option<Uuid>,
    pub strip_path: bool,
    pub path_handling: PathHandling,
    pub preserve_host: bool,
    pub https_redirect_status_code: u16,
    https_only: bool,
    grpcs_only: bool,
    grpc: bool,
}

/// What Kong's access phase does with a matched route before proxying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolCheck {
    Proceed,
    /// The route is https-only and the request was not: 426 `Please use HTTPS
    /// protocol`, or a redirect to https with this status (301/302/307/308).
    HttpsRequired {
        status: u16,
    },
    /// A grpcs-only route reached over plain text: Kong answers 200 with
    /// `grpc-status: 1`, `grpc-message: gRPC request matched gRPCs route`.
    GrpcsRequired,
}

/// Regex path captures; groups that did not take part are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Captures {
    /// `[0]` is the whole match, then the route's groups by number.
    pub numbered: Vec<Option<String>>,
    pub named: Vec<(String, Option<String>)>,
}

impl Captures {
    pub fn name(&self, name: &str) -> Option<&str> {
        self.named
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// The route a request matched and what matched (Kong's `match_t`).
#[derive(Debug, Clone)]
pub struct Match<'r> {
    pub route: &'r RouteInfo,
    /// The normalised request path the router matched against.
    pub path: String,
    /// The route path that matched (a regex without its `~`).
    pub matched_uri: Option<&'r str>,
    pub uri_prefix: Option<String>,
    pub uri_postfix: Option<String>,
    pub captures: Option<Captures>,
    /// The route host that matched (a wildcard as configured).
    pub matched_host: Option<&'r str>,
    /// Header name and the lower-cased value that matched.
    pub matched_headers: Vec<(&'r str, String)>,
    pub matched_method: Option<String>,
    pub matched_sni: Option<String>,
    /// The part of the path strip_path removes (Kong's `match_t.prefix`).
    pub prefix: Option<String>,
}

impl Match<'_> {
    /// Kong's protocol checks in `access`, given the scheme the client used
    /// (`X-Forwarded-Proto` from a trusted peer, else the connection's). The 415 and
    /// 426-HTTP/2 answers for gRPC routes depend on the content type and HTTP version,
    /// which the proxy checks when [`RouteInfo::is_grpc`] holds.
    pub fn protocol_check(&self, forwarded_https: bool) -> ProtocolCheck {
        let r = self.route;
        if r.https_only && !forwarded_https {
            return ProtocolCheck::HttpsRequired {
                status: r.https_redirect_status_code,
            };
        }
        if r.grpcs_only && !forwarded_https {
            return ProtocolCheck::GrpcsRequired;
        }
        ProtocolCheck::Proceed
    }
}

impl RouteInfo {
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("could not categorize route {0}")]
    NoMatchingFields(Uuid),
    #[error("route {route}: invalid regex {pattern:?}: {error}")]
    Regex {
        route: Uuid,
        pattern: String,
        error: String,
    },
}

/// Routes compiled for one config version.
pub struct Router {
    infos: Vec<RouteInfo>,
    /// One entry per (route, path), in Kong's priority order.
    routes: Vec<Compiled>,
    categories: Vec<Category>,
    /// Category bits → position in `categories`.
    category_index: [Option<usize>; 128],
    // Indexes over all routes that guess the best category a request may hit.
    plain_hosts: FastSet<String>,
    wildcards: index::Wildcards,
    header_names: Vec<String>,
    regexes: index::RegexPaths,
    plain_uris: FastSet<String>,
    /// Distinct lengths of prefix paths, longest first.
    prefix_lens: Vec<usize>,
    methods: FastSet<String>,
    snis: FastSet<String>,
    // The linear scans the indexes replace, kept as the reference they are tested against.
    #[cfg(test)]
    wildcard_hosts: Vec<(usize, usize)>,
    #[cfg(test)]
    regex_uris: Vec<usize>,
    #[cfg(test)]
    prefix_uris: Vec<String>,
}

struct HostRule {
    value: String,
    wildcard: Option<Regex>,
}

struct HeaderRule {
    name: String,
    values: Vec<String>,
    pattern: Option<Regex>,
}

enum PathRule {
    Prefix(String),
    /// One regex serves both the request-wide scan and the match: the trailing
    /// `(?P<uri_postfix>.*)` never changes whether it matches.
    Regex {
        value: String,
        strip: Regex,
    },
}

impl PathRule {
    fn value(&self) -> &str {
        match self {
            PathRule::Prefix(v) => v,
            PathRule::Regex { value, .. } => value,
        }
    }
}

struct Compiled {
    info: usize,
    rules: u8,
    weight: u8,
    hosts: Vec<HostRule>,
    headers: Vec<HeaderRule>,
    path: Option<PathRule>,
    methods: Vec<String>,
    snis: Vec<String>,
    sort_key: SortKey,
}

/// `sort_routes`, made total with the id and path position for determinism where
/// Lua's unstable sort would pick either.
type SortKey = (
    Reverse<u8>,
    Reverse<usize>,
    Reverse<i64>,
    Reverse<usize>,
    i64,
    Uuid,
    usize,
);

#[derive(Default)]
struct Category {
    bits: u8,
    weight: u8,
    all: Vec<usize>,
    by_host: FastMap<String, Vec<usize>>,
    by_header: FastMap<String, Vec<usize>>,
    by_uri: FastMap<String, Vec<usize>>,
    by_method: FastMap<String, Vec<usize>>,
    by_sni: FastMap<String, Vec<usize>>,
}

// === impl Router ===

impl Router {
    /// Compiles the routes of the http subsystem. Stream-only routes are skipped; the
    /// caller leaves out routes whose service is disabled, as Kong's `build_router` does.
    pub fn build<'a>(routes: impl IntoIterator<Item = &'a Route>) -> Result<Router, BuildError> {
        let mut infos = Vec::new();
        let mut compiled = Vec::new();
        for route in routes {
            let http = route
                .protocols
                .iter()
                .any(|p| matches!(p.as_str(), "http" | "https" | "grpc" | "grpcs"));
            if !http {
                continue;
            }
            let info = infos.len();
            infos.push(route_info(route));
            // Kong splits a route with several paths so each path sorts on its own.
            match route.paths.as_deref() {
                Some(paths) if paths.len() > 1 => {
                    for (i, p) in paths.iter().enumerate() {
                        compiled.push(compile(route, info, Some(p), i)?);
                    }
                }
                Some([p]) => compiled.push(compile(route, info, Some(p), 0)?),
                _ => compiled.push(compile(route, info, None, 0)?),
            }
        }
        compiled.sort_by_key(|c| c.sort_key);

        let mut router = Router {
            infos,
            routes: Vec::new(),
            categories: Vec::new(),
            category_index: [None; 128],
            plain_hosts: FastSet::default(),
            wildcards: index::Wildcards::default(),
            header_names: Vec::new(),
            regexes: index::RegexPaths::default(),
            plain_uris: FastSet::default(),
            prefix_lens: Vec::new(),
            methods: FastSet::default(),
            snis: FastSet::default(),
            #[cfg(test)]
            wildcard_hosts: Vec::new(),
            #[cfg(test)]
            regex_uris: Vec::new(),
            #[cfg(test)]
            prefix_uris: Vec::new(),
        };
        let mut by_bits: HashMap<u8, Category> = HashMap::new();
        for (i, c) in compiled.iter().enumerate() {
            router.index(i, c);
            let cat = by_bits.entry(c.rules).or_insert_with(|| Category {
                bits: c.rules,
                weight: c.weight,
                ..Category::default()
            });
            cat.add(i, c);
        }
        router.routes = compiled;
        let mut categories: Vec<Category> = by_bits.into_values().collect();
        categories.sort_by_key(|c| (Reverse(c.weight), Reverse(c.bits)));
        for (i, c) in categories.iter().enumerate() {
            router.category_index[usize::from(c.bits)] = Some(i);
        }
        router.categories = categories;
        router.wildcards.finish();
        router.regexes.finish();
        let mut lens: Vec<usize> = router.plain_uris.iter().map(String::len).collect();
        lens.sort_unstable_by(|a, b| b.cmp(a));
        lens.dedup();
        router.prefix_lens = lens;
        #[cfg(test)]
        {
            let mut prefixes: Vec<String> = router.plain_uris.iter().cloned().collect();
            // Two prefixes of one path never have equal length, so ties cannot matter.
            prefixes.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
            router.prefix_uris = prefixes;
        }
        Ok(router)
    }

    /// Every compiled route.
    pub fn routes(&self) -> impl Iterator<Item = &RouteInfo> {
        self.infos.iter()
    }

    /// The number of routes compiled (after skipping stream routes).
    pub fn len(&self) -> usize {
        self.infos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    fn index(&mut self, i: usize, c: &Compiled) {
        for (h, host) in c.hosts.iter().enumerate() {
            if let Some(re) = &host.wildcard {
                self.wildcards.add(i, h, &host.value, re);
                #[cfg(test)]
                self.wildcard_hosts.push((i, h));
            } else {
                self.plain_hosts.insert(host.value.clone());
            }
        }
        for h in &c.headers {
            if !self.header_names.contains(&h.name) {
                self.header_names.push(h.name.clone());
            }
        }
        match &c.path {
            Some(PathRule::Prefix(v)) => {
                self.plain_uris.insert(v.clone());
            }
            Some(PathRule::Regex { value, strip }) => {
                self.regexes.add(i, value, strip);
                #[cfg(test)]
                self.regex_uris.push(i);
            }
            None => {}
        }
        self.methods.extend(c.methods.iter().cloned());
        self.snis.extend(c.snis.iter().cloned());
    }

    /// The route Kong's traditional router would pick for this request.
    pub fn find<'r>(&'r self, req: &RequestView<'_>) -> Option<Match<'r>> {
        let path = request_path(req.path);
        let default_port = if req.scheme.is_tls() { 443 } else { 80 };
        let split = req.host.map(|h| split_port(h, Some(default_port)));
        let mut cx = Cx {
            req,
            path: &path,
            raw_host: req.host.unwrap_or(""),
            host_no_port: split.as_ref().map(|s| s.0),
            host_with_port: split.as_ref().map(|s| s.1.as_ref()),
            sni: req.sni.unwrap_or(""),
            hit_host: None,
            hit_header: None,
            hit_uri: None,
        };

        // Every wildcard and regex that matches, found once: the category scans below
        // draw their candidates from these.
        let mut hits = Hits::default();
        let first_wild = cx
            .host_with_port
            .and_then(|h| self.wildcards.matching(h, &mut hits.wild));
        let first_regex = self.regexes.matching(&path, &mut hits.regex);

        let mut category = 0u8;
        if let Some(name) = self.header_names.iter().find(|n| req.headers.contains(n)) {
            cx.hit_header = Some(name);
            category |= HEADER;
        }
        if let (Some(no_port), Some(with_port)) = (cx.host_no_port, cx.host_with_port) {
            if self.plain_hosts.contains(with_port) || self.plain_hosts.contains(no_port) {
                category |= HOST;
            } else if let Some(v) = first_wild {
                cx.hit_host = Some(v);
                category |= HOST;
            }
        }
        if let Some(v) = first_regex {
            cx.hit_uri = Some(v);
            category |= URI;
        } else if let Some(p) = self
            .prefix_lens
            .iter()
            .filter_map(|&n| path.get(..n))
            .find_map(|p| self.plain_uris.get(p))
        {
            cx.hit_uri = Some(p);
            category |= URI;
        }
        if self.methods.contains(req.method) {
            category |= METHOD;
        }
        if self.snis.contains(cx.sni) {
            category |= SNI;
        }
        if category == 0 {
            return None;
        }

        // Kong starts at the request's own category when one exists, else at the top.
        let start = self.category_index[usize::from(category)].unwrap_or(0);
        let try_route = |i: &usize| self.try_route(*i, &cx);
        for cat in &self.categories[start..] {
            // Only candidates can match, so both of Kong's passes keep their order
            // while skipping the rest.
            let cands = self.candidates(cat, &cx, &hits);
            if cands.is_empty() {
                continue;
            }
            if let Some(reduced) = cat.reduce(&cx) {
                let found = if reduced.len() <= cands.len() {
                    reduced
                        .iter()
                        .filter(|i| cands.binary_search(i).is_ok())
                        .find_map(try_route)
                } else {
                    cands
                        .iter()
                        .filter(|i| reduced.binary_search(i).is_ok())
                        .find_map(try_route)
                };
                if let Some(mut m) = found {
                    m.path = path;
                    return Some(m);
                }
            }
            if let Some(mut m) = cands.iter().find_map(try_route) {
                m.path = path;
                return Some(m);
            }
        }
        None
    }

    /// The routes of `cat`, in priority order, that pass the cheapest necessary check
    /// among the category's rules: a superset of those `try_route` accepts.
    fn candidates<'c>(
        &self,
        cat: &'c Category,
        cx: &Cx<'_, '_>,
        hits: &Hits<'_>,
    ) -> Cow<'c, [usize]> {
        let mut best: Vec<&'c [usize]> = Vec::new();
        let mut best_n = usize::MAX;
        let mut parts: Vec<&'c [usize]> = Vec::new();
        for rule in RULES_IN_ORDER {
            if cat.bits & rule == 0 {
                continue;
            }
            parts.clear();
            let mut add = |set: Option<&'c Vec<usize>>| {
                if let Some(set) = set {
                    if !parts.iter().any(|p| std::ptr::eq(*p, set.as_slice())) {
                        parts.push(set);
                    }
                }
            };
            match rule {
                HOST => {
                    add(cat.by_host.get(cx.hit_host.unwrap_or(cx.raw_host)));
                    if let Some(h) = cx.host_no_port {
                        add(cat.by_host.get(h));
                    }
                    for v in &hits.wild {
                        add(cat.by_host.get(*v));
                    }
                }
                HEADER => {
                    for (name, set) in &cat.by_header {
                        if cx.req.headers.contains(name) {
                            add(Some(set));
                        }
                    }
                }
                URI => {
                    if !cx.path.is_empty() {
                        // Kong accepts a route holding the request-wide hit unchecked.
                        add(cat.by_uri.get(cx.hit_uri.unwrap_or(cx.path)));
                        for p in self.prefix_lens.iter().filter_map(|&n| cx.path.get(..n)) {
                            add(cat.by_uri.get(p));
                        }
                        for v in &hits.regex {
                            add(cat.by_uri.get(*v));
                        }
                    }
                }
                METHOD => add(cat.by_method.get(cx.req.method)),
                _ if cx.req.scheme.is_tls() => add(cat.by_sni.get(cx.sni)),
                // Plain text passes any sni rule.
                _ => add(Some(&cat.all)),
            }
            let n = parts.iter().map(|p| p.len()).sum();
            if n < best_n {
                best_n = n;
                std::mem::swap(&mut best, &mut parts);
                if n == 0 {
                    break;
                }
            }
        }
        match best.as_slice() {
            [] => Cow::Borrowed(&[]),
            [one] => Cow::Borrowed(one),
            many => {
                let mut v = many.concat();
                v.sort_unstable();
                v.dedup();
                Cow::Owned(v)
            }
        }
    }

    /// The linear scan the indexes replaced; the reference they are checked against.
    #[cfg(test)]
    pub(crate) fn find_linear<'r>(&'r self, req: &RequestView<'_>) -> Option<Match<'r>> {
        let path = request_path(req.path);
        let default_port = if req.scheme.is_tls() { 443 } else { 80 };
        let split = req.host.map(|h| split_port(h, Some(default_port)));
        let mut cx = Cx {
            req,
            path: &path,
            raw_host: req.host.unwrap_or(""),
            host_no_port: split.as_ref().map(|s| s.0),
            host_with_port: split.as_ref().map(|s| s.1.as_ref()),
            sni: req.sni.unwrap_or(""),
            hit_host: None,
            hit_header: None,
            hit_uri: None,
        };

        let mut category = 0u8;
        if let Some(name) = self.header_names.iter().find(|n| req.headers.contains(n)) {
            cx.hit_header = Some(name);
            category |= HEADER;
        }
        if let (Some(no_port), Some(with_port)) = (cx.host_no_port, cx.host_with_port) {
            if self.plain_hosts.contains(with_port) || self.plain_hosts.contains(no_port) {
                category |= HOST;
            } else if let Some(&(r, h)) = self.wildcard_hosts.iter().find(|&&(r, h)| {
                let re = self.routes[r].hosts[h].wildcard.as_ref();
                re.is_some_and(|re| re.is_match(with_port))
            }) {
                cx.hit_host = Some(&self.routes[r].hosts[h].value);
                category |= HOST;
            }
        }
        for &r in &self.regex_uris {
            if let Some(PathRule::Regex { value, strip }) = &self.routes[r].path {
                if strip.is_match(&path) {
                    cx.hit_uri = Some(value);
                    category |= URI;
                    break;
                }
            }
        }
        if cx.hit_uri.is_none() {
            if let Some(exact) = self.plain_uris.get(path.as_str()) {
                cx.hit_uri = Some(exact);
                category |= URI;
            } else if let Some(p) = self
                .prefix_uris
                .iter()
                .find(|p| path.starts_with(p.as_str()))
            {
                cx.hit_uri = Some(p);
                category |= URI;
            }
        }
        if self.methods.contains(req.method) {
            category |= METHOD;
        }
        if self.snis.contains(cx.sni) {
            category |= SNI;
        }
        if category == 0 {
            return None;
        }

        // Kong starts at the request's own category when one exists, else at the top.
        let start = self.category_index[usize::from(category)].unwrap_or(0);
        for cat in &self.categories[start..] {
            if let Some(reduced) = cat.reduce(&cx) {
                if let Some(mut m) = reduced.iter().find_map(|&i| self.try_route(i, &cx)) {
                    m.path = path;
                    return Some(m);
                }
            }
            if let Some(mut m) = cat.all.iter().find_map(|&i| self.try_route(i, &cx)) {
                m.path = path;
                return Some(m);
            }
        }
        None
    }

    fn try_route<'r>(&'r self, i: usize, cx: &Cx<'_, 'r>) -> Option<Match<'r>> {
        let c = &self.routes[i];
        let info = &self.infos[c.info];
        let mut m = Match {
            route: info,
            path: String::new(), // filled in by `find` once a route matched
            matched_uri: None,
            uri_prefix: None,
            uri_postfix: None,
            captures: None,
            matched_host: None,
            matched_headers: Vec::new(),
            matched_method: None,
            matched_sni: None,
            prefix: None,
        };
        if c.rules & HOST != 0 {
            m.matched_host = Some(match_host(c, cx)?);
        }
        if c.rules & HEADER != 0 {
            m.matched_headers = match_headers(c, cx)?;
        }
        if c.rules & URI != 0 {
            match_uri(c, cx, &mut m)?;
        }
        if c.rules & METHOD != 0 {
            if !c.methods.iter().any(|x| x == cx.req.method) {
                return None;
            }
            m.matched_method = Some(cx.req.method.to_string());
        }
        if c.rules & SNI != 0 {
            // Kong lets a plain-text request through an sni rule.
            if cx.req.scheme.is_tls() && !c.snis.iter().any(|s| s == cx.sni) {
                return None;
            }
            m.matched_sni = Some(cx.sni.to_string());
        }
        if info.strip_path {
            m.prefix = m.uri_prefix.clone();
        }
        Some(m)
    }
}

/// Everything that matched request-wide, as route values.
#[derive(Default)]
struct Hits<'r> {
    wild: Vec<&'r str>,
    regex: Vec<&'r str>,
}

struct Cx<'q, 'r> {
    req: &'q RequestView<'q>,
    path: &'q str,
    raw_host: &'q str,
    host_no_port: Option<&'q str>,
    host_with_port: Option<&'q str>,
    sni: &'q str,
    hit_host: Option<&'r str>,
    hit_header: Option<&'r str>,
    hit_uri: Option<&'r str>,
}

fn request_path(raw: &str) -> String {
    // Kong looks for `?` from the second byte on.
    let cut = raw
        .get(1..)
        .and_then(|rest| rest.find('?'))
        .map_or(raw.len(), |i| i + 1);
    normalize_uri(&raw[..cut], true)
}

fn match_host<'r>(c: &'r Compiled, cx: &Cx<'_, '_>) -> Option<&'r str> {
    let key = cx.hit_host.unwrap_or(cx.raw_host);
    let plain = c.hosts.iter().find(|h| {
        h.wildcard.is_none() && (h.value == key || Some(h.value.as_str()) == cx.host_no_port)
    });
    if let Some(h) = plain {
        return Some(&h.value);
    }
    let with_port = cx.host_with_port?;
    c.hosts
        .iter()
        .find(|h| h.wildcard.as_ref().is_some_and(|re| re.is_match(with_port)))
        .map(|h| h.value.as_str())
}

fn match_headers<'r>(c: &'r Compiled, cx: &Cx<'_, '_>) -> Option<Vec<(&'r str, String)>> {
    let mut out = Vec::with_capacity(c.headers.len());
    for h in &c.headers {
        let mut found = None;
        cx.req.headers.any_value(&h.name, &mut |v| {
            let v = v.to_lowercase();
            let ok = h.values.contains(&v) || h.pattern.as_ref().is_some_and(|re| re.is_match(&v));
            if ok {
                found = Some(v);
            }
            ok
        });
        out.push((h.name.as_str(), found?));
    }
    Some(out)
}

fn match_uri<'r>(c: &'r Compiled, cx: &Cx<'_, 'r>, m: &mut Match<'r>) -> Option<()> {
    let path = cx.path;
    if path.is_empty() {
        return None;
    }
    let rule = c.path.as_ref()?;
    let value = rule.value();
    // Kong trusts the request-wide hit for a route holding the same path value,
    // without re-checking a prefix against the request.
    let indexed = value == cx.hit_uri.unwrap_or(path);
    match rule {
        PathRule::Regex { strip, .. } => match_regex(value, strip, path, m),
        PathRule::Prefix(p) if indexed || path.starts_with(p.as_str()) => {
            let end = p.len().min(path.len());
            m.uri_prefix = Some(path.get(..end).unwrap_or(path).to_string());
            m.uri_postfix = Some(sanitize_postfix(path.get(end..).unwrap_or("")).to_string());
            m.matched_uri = Some(value);
            Some(())
        }
        PathRule::Prefix(_) => None,
    }
}

fn match_regex<'r>(value: &'r str, strip: &Regex, path: &str, m: &mut Match<'r>) -> Option<()> {
    let caps = strip.captures(path)?;
    let postfix_group = caps.len() - 1;
    let postfix = caps.get(postfix_group);
    if let Some(p) = postfix {
        m.uri_prefix = Some(path[..p.start()].to_string());
        m.uri_postfix = Some(sanitize_postfix(p.as_str()).to_string());
    }
    // FIXME: with an alternation outside any group Kong leaves the unmatched postfix
    // group among the captures; we always drop it.
    m.matched_uri = Some(value);
    if postfix_group > 1 {
        let numbered = (0..postfix_group)
            .map(|i| caps.get(i).map(|g| g.as_str().to_string()))
            .collect();
        let named = strip
            .capture_names()
            .enumerate()
            .filter(|&(i, _)| i < postfix_group)
            .filter_map(|(i, n)| {
                n.map(|n| (n.to_string(), caps.get(i).map(|g| g.as_str().to_string())))
            })
            .collect();
        m.captures = Some(Captures { numbered, named });
    }
    Some(())
}

/// `sanitize_uri_postfix`: a postfix starting with a dot segment loses it.
fn sanitize_postfix(p: &str) -> &str {
    match p {
        "." | ".." => "",
        _ => p
            .strip_prefix("./")
            .or_else(|| p.strip_prefix("../"))
            .unwrap_or(p),
    }
}

// === impl Category ===

impl Category {
    fn add(&mut self, i: usize, c: &Compiled) {
        self.all.push(i);
        for h in &c.hosts {
            self.by_host.entry(h.value.clone()).or_default().push(i);
        }
        for h in &c.headers {
            self.by_header.entry(h.name.clone()).or_default().push(i);
        }
        if let Some(p) = &c.path {
            self.by_uri
                .entry(p.value().to_string())
                .or_default()
                .push(i);
        }
        for x in &c.methods {
            self.by_method.entry(x.clone()).or_default().push(i);
        }
        for x in &c.snis {
            self.by_sni.entry(x.clone()).or_default().push(i);
        }
    }

    /// Kong's reducer: the routes indexed under the request's values, tried before the
    /// whole category. A header hit wins outright; otherwise the smallest set.
    fn reduce(&self, cx: &Cx<'_, '_>) -> Option<&[usize]> {
        let mut smallest: Option<&Vec<usize>> = None;
        for rule in RULES_IN_ORDER {
            if self.bits & rule == 0 {
                continue;
            }
            let found = match rule {
                HOST => self.by_host.get(cx.hit_host.unwrap_or(cx.raw_host)),
                HEADER => cx.hit_header.and_then(|n| self.by_header.get(n)),
                URI => cx.hit_uri.and_then(|u| self.by_uri.get(u)),
                METHOD => self.by_method.get(cx.req.method),
                _ => self.by_sni.get(cx.sni),
            };
            if let Some(set) = found {
                if rule == HEADER {
                    return Some(set);
                }
                if smallest.is_none_or(|s| set.len() < s.len()) {
                    smallest = Some(set);
                }
            }
        }
        smallest.map(Vec::as_slice)
    }
}

// === compiling a route ===

fn route_info(r: &Route) -> RouteInfo {
    let has = |p: &str| r.protocols.iter().any(|x| x == p);
    RouteInfo {
        id: r.id,
        name: r.name.clone(),
        service_id: r.service.map(|s| s.id),
        strip_path: r.strip_path,
        path_handling: if r.path_handling == "v1" {
            PathHandling::V1
        } else {
            PathHandling::V0
        },
        preserve_host: r.preserve_host,
        https_redirect_status_code: u16::try_from(r.https_redirect_status_code).unwrap_or(426),
        https_only: has("https") && !has("http"),
        grpcs_only: has("grpcs") && !has("grpc"),
        grpc: has("grpc") || has("grpcs"),
    }
}

fn regex(route: &Route, pattern: String) -> Result<Regex, BuildError> {
    Regex::new(&pattern).map_err(|e| BuildError::Regex {
        route: route.id,
        pattern,
        error: e.to_string(),
    })
}

fn compile(
    route: &Route,
    info: usize,
    path: Option<&String>,
    pos: usize,
) -> Result<Compiled, BuildError> {
    let mut rules = 0u8;
    let mut weight = 0u8;
    let mut submatch = 0u8;

    let mut hosts = Vec::new();
    if let Some(list) = &route.hosts {
        let mut wildcard = false;
        for h in list {
            if h.contains('*') {
                wildcard = true;
                let mut re = format!("^{}", h.replace('.', "\\.").replace('*', ".+"));
                if split_port(h, None).2 {
                    submatch |= HAS_WILDCARD_HOST_PORT;
                } else {
                    re.push_str("(?::\\d+)?");
                }
                re.push('$');
                hosts.push(HostRule {
                    value: h.clone(),
                    wildcard: Some(regex(route, re)?),
                });
            } else {
                hosts.push(HostRule {
                    value: h.clone(),
                    wildcard: None,
                });
            }
        }
        if !list.is_empty() {
            rules |= HOST;
            weight += 1;
        }
        if !wildcard {
            submatch |= PLAIN_HOSTS_ONLY;
        }
    }

    let mut headers = Vec::new();
    if let Some(map) = &route.headers {
        for (name, values) in map {
            let name = name.to_lowercase();
            if name == "host" {
                continue;
            }
            let pattern = match values.as_slice() {
                [only] => match only.strip_prefix("~*") {
                    Some(p) => Some(regex(route, p.to_string())?),
                    None => None,
                },
                _ => None,
            };
            headers.push(HeaderRule {
                name,
                values: values.iter().map(|v| v.to_lowercase()).collect(),
                pattern,
            });
        }
        if !headers.is_empty() {
            rules |= HEADER;
            weight += 1;
        }
    }

    let mut max_uri_length = 0;
    let path = match path {
        None => None,
        Some(p) => {
            rules |= URI;
            weight += 1;
            Some(match p.strip_prefix('~') {
                None => {
                    max_uri_length = p.len();
                    PathRule::Prefix(normalize_uri(p, true))
                }
                Some(re) => {
                    submatch |= HAS_REGEX_URI;
                    // PCRE's anchored flag pins every alternative to the start.
                    PathRule::Regex {
                        value: re.to_string(),
                        strip: regex(route, format!("^(?:{re}(?P<uri_postfix>.*))"))?,
                    }
                }
            })
        }
    };

    let methods: Vec<String> = route.methods.clone().unwrap_or_default();
    if !methods.is_empty() {
        rules |= METHOD;
        weight += 1;
    }
    let snis: Vec<String> = route
        .snis
        .iter()
        .flatten()
        .map(|s| match s.strip_suffix('.') {
            Some(t) if s.len() > 1 => t.to_string(),
            _ => s.clone(),
        })
        .collect();
    if !snis.is_empty() {
        rules |= SNI;
        weight += 1;
    }

    if rules == 0 {
        return Err(BuildError::NoMatchingFields(route.id));
    }
    let regex_priority = if submatch & HAS_REGEX_URI != 0 {
        route.regex_priority
    } else {
        0
    };
    Ok(Compiled {
        info,
        rules,
        weight,
        sort_key: (
            Reverse(submatch),
            Reverse(headers.len()),
            Reverse(regex_priority),
            Reverse(max_uri_length),
            route.created_at,
            route.id,
            pos,
        ),
        hosts,
        headers,
        path,
        methods,
        snis,
    })
}

#[cfg(test)]
mod tests;
