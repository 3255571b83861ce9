//! request-termination: answers every request (or those carrying a trigger) with a
//! fixed response, before any upstream is involved.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use tidegate_model::plugins::request_termination::RequestTerminationConfig;

use crate::context::{Ctx, Req};
use crate::phase::{Access, Exit, ExitBody, Plugin};
use crate::runtime::Runtime;

pub struct RequestTermination {
    status: u16,
    message: Option<String>,
    body: Option<(Option<HeaderValue>, Bytes)>,
    echo: bool,
    trigger: Option<String>,
}

pub fn build(c: &RequestTerminationConfig, _rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
    let content_type = match &c.content_type {
        Some(ct) => Some(
            HeaderValue::from_str(ct)
                .map_err(|_| format!("content_type '{ct}' is not a valid header value"))?,
        ),
        None => None,
    };
    Ok(Arc::new(RequestTermination {
        status: u16::try_from(c.status_code).map_err(|_| "status_code out of range".to_string())?,
        message: c.message.clone(),
        body: c
            .body
            .as_ref()
            .map(|b| (content_type, Bytes::from(b.clone()))),
        echo: c.echo,
        trigger: c.trigger.clone(),
    }))
}

/// Kong's `DEFAULT_RESPONSE`, used when no message is configured.
fn default_message(status: u16) -> Option<&'static str> {
    Some(match status {
        401 => "Unauthorized",
        404 => "Not found",
        405 => "Method not allowed",
        500 => "An unexpected error occurred",
        502 => "Bad Gateway",
        503 => "Service unavailable",
        _ => return None,
    })
}

impl RequestTermination {
    fn triggered(&self, req: &Req) -> bool {
        let Some(t) = &self.trigger else { return true };
        req.headers.contains_key(t.as_str())
            || req.query.as_deref().is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv.split_once('=').map_or(kv, |(k, _)| k) == t)
            })
    }

    /// Kong's echo: what the request looked like, as JSON.
    fn echo(&self, cx: &Ctx<'_>, req: &Req) -> serde_json::Value {
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers
            .keys()
            .map(|k| {
                let vals: Vec<&str> = req
                    .headers
                    .get_all(k)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                let v = if vals.len() == 1 {
                    serde_json::Value::from(vals[0])
                } else {
                    serde_json::Value::from(vals)
                };
                (k.as_str().to_string(), v)
            })
            .collect();
        let query: serde_json::Map<String, serde_json::Value> = req
            .query
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv
                    .split_once('=')
                    .map_or((kv, serde_json::Value::Bool(true)), |(k, v)| (k, v.into()));
                (k.to_string(), v)
            })
            .collect();
        serde_json::json!({
            "message": self.message.as_deref().or(default_message(self.status)),
            "kong": {
                "route_id": cx.route_id.map(|u| u.to_string()),
                "service_id": cx.service_id.map(|u| u.to_string()),
                "consumer_id": cx.consumer.as_ref().map(|c| c.id.to_string()),
            },
            "request": {
                "method": req.method.as_str(),
                "path": req.path,
                "query": query,
                "headers": headers,
                "raw_body": req.body.buffered().map(|b| String::from_utf8_lossy(b).into_owned()),
            },
        })
    }
}

impl Plugin for RequestTermination {
    fn access<'a>(&'a self, cx: &'a mut Ctx<'_>, req: &'a mut Req) -> Access<'a> {
        if !self.triggered(req) {
            return Access::CONTINUE;
        }
        if let Some((ct, body)) = &self.body {
            let mut e = Exit::empty(self.status);
            e.body = ExitBody::Raw {
                content_type: Some(
                    ct.clone()
                        .unwrap_or(HeaderValue::from_static("application/json; charset=utf-8")),
                ),
                body: body.clone(),
            };
            return Access::exit(e);
        }
        if self.echo {
            return Access::exit(Exit::json(self.status, self.echo(cx, req)));
        }
        // Kong encodes `{ message = nil }` as `{}`.
        let body = match self.message.as_deref().or(default_message(self.status)) {
            Some(msg) => serde_json::json!({ "message": msg }),
            None => serde_json::json!({}),
        };
        Access::exit(Exit::json(self.status, body))
    }
}
