//! The path sent upstream: strip_path with path_handling v0 and v1.

use crate::router::{Match, PathHandling};

/// The upstream path for a match, from the service's `path` (`/` when unset).
pub fn upstream_path(m: &Match<'_>, service_path: Option<&str>) -> String {
    upstream_uri(
        m.route.path_handling,
        m.route.strip_path,
        service_path,
        m.uri_postfix.as_deref(),
        &m.path,
    )
}

/// Kong's upstream URI rules (`find_match` for v1, `get_upstream_uri` for v0).
/// `req_uri` is the normalised request path; `uri_postfix` what followed the matched
/// route path, `None` when the route matched without a path.
pub fn upstream_uri(
    handling: PathHandling,
    strip: bool,
    service_path: Option<&str>,
    uri_postfix: Option<&str>,
    req_uri: &str,
) -> String {
    let base = service_path.unwrap_or("/");
    let postfix = uri_postfix.unwrap_or_else(|| req_uri.get(1..).unwrap_or(""));
    let after_slash = req_uri.get(1..).unwrap_or("");
    match handling {
        PathHandling::V1 => {
            if !strip {
                format!("{base}{after_slash}")
            } else if base.ends_with('/') && postfix.starts_with('/') {
                format!("{}{postfix}", &base[..base.len() - 1])
            } else {
                format!("{base}{postfix}")
            }
        }
        PathHandling::V0 if base.ends_with('/') => {
            if !strip {
                format!("{base}{after_slash}")
            } else if postfix.is_empty() {
                if base == "/" || req_uri.ends_with('/') {
                    base.to_string()
                } else {
                    base[..base.len() - 1].to_string()
                }
            } else if postfix.starts_with('/') {
                format!("{}{postfix}", &base[..base.len() - 1])
            } else {
                format!("{base}{postfix}")
            }
        }
        PathHandling::V0 => {
            if !strip {
                if req_uri == "/" {
                    base.to_string()
                } else {
                    format!("{base}{req_uri}")
                }
            } else if postfix.is_empty() {
                if req_uri.len() > 1 && req_uri.ends_with('/') {
                    format!("{base}/")
                } else {
                    base.to_string()
                }
            } else if postfix.starts_with('/') {
                format!("{base}{postfix}")
            } else {
                format!("{base}/{postfix}")
            }
        }
    }
}

#[cfg(test)]
mod tests;
