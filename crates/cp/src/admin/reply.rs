//! Responses: a status and an optional JSON body, turned into HTTP in one place so every
//! response carries the same headers.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use tidegate_model::KongError;

use crate::backend::{MemberChangeError, WriteError};

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// What a handler answers. Also the error type of handlers, so `?` can return early with
/// the client's answer.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
}

/// A handler's result: `Err` is an early answer, not a failure of the server.
pub(super) type Handled = Result<Reply, Reply>;

// === impl Reply ===

impl Reply {
    pub fn json(status: StatusCode, body: Value) -> Self {
        Reply {
            status,
            body: Some(body),
        }
    }

    pub fn ok(body: Value) -> Self {
        Self::json(StatusCode::OK, body)
    }

    pub fn no_content() -> Self {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
        }
    }

    /// Kong's shape for errors that are not DAO errors: `{"message": …}`.
    pub fn message(status: StatusCode, message: impl Into<String>) -> Self {
        Self::json(status, json!({ "message": message.into() }))
    }

    pub fn not_found() -> Self {
        Self::message(StatusCode::NOT_FOUND, "Not found")
    }

    pub fn method_not_allowed() -> Self {
        Self::message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::message(StatusCode::BAD_REQUEST, message)
    }

    pub fn kong(e: &KongError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        Self::json(status, e.to_json())
    }

    /// Ours, not Kong's: a write that could not be decided. The body tells the operator
    /// what happened and what to do about it.
    pub fn write_error(e: &WriteError) -> Self {
        let (status, advice) = match e {
            WriteError::NoLeader { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the change was not applied; retry once a leader is elected (a majority of \
                 control planes must be up and able to reach each other)",
            ),
            WriteError::Timeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "the change may still apply; retry with the same X-Request-Id header so it \
                 applies at most once, or read the entity back before retrying without one",
            ),
            WriteError::Storage { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "this control plane needs an operator (check its disk and logs); send \
                 changes to another control plane meanwhile",
            ),
            WriteError::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the change was not applied; send it to another control plane",
            ),
        };
        tracing::warn!(error = %e, "admin write failed");
        Self::message(status, format!("{e}: {advice}"))
    }

    pub fn member_change_error(e: &MemberChangeError) -> Self {
        match e {
            MemberChangeError::Invalid(m) => Self::bad_request(m.clone()),
            MemberChangeError::Busy(m) => Self::message(StatusCode::CONFLICT, m.clone()),
            MemberChangeError::Write(w) => Self::write_error(w),
        }
    }

    pub fn into_response(self, server: &HeaderValue) -> Response<Full<Bytes>> {
        let bytes = match self.body {
            Some(mut v) => {
                integral_floats_as_integers(&mut v);
                Bytes::from(serde_json::to_vec(&v).expect("JSON values always serialise"))
            }
            None => Bytes::new(),
        };
        let mut resp = Response::new(Full::new(bytes));
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
        headers.insert(SERVER, server.clone());
        resp
    }
}

/// Kong's cjson writes numbers with `%.14g`, so a whole `1.0` goes out as `1`; clients
/// such as decK decode fields like `healthchecks.active.timeout` into integers and
/// refuse `1.0`.
pub(super) fn integral_floats_as_integers(v: &mut Value) {
    // Beyond 2^53 a double no longer holds every integer; cjson would print an exponent.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() <= EXACT {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}
