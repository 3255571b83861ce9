//! The Kong-compatible Admin API over HTTP (being built).
