//! Kong's "traditional" router: which route a request matches, compiled once per
//! config version. Pure and synchronous; the proxy owns I/O.
//!
//! The rules follow `kong/router/traditional.lua` (Kong 3.x) line by line, including
//! its category walk and candidate reduction, because those decide ties between routes
//! that both match. Where we differ, the code says so.

mod host;
mod router;
mod upstream;

pub use router::{
    BuildError, Captures, Headers, Match, NoHeaders, PathHandling, ProtocolCheck, RequestView,
    RouteInfo, Router, Scheme,
};
pub use upstream::{upstream_path, upstream_uri};
