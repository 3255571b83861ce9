//! request-size-limiting: refuses request bodies over a size. A numeric Content-Length
//! decides without reading the body; otherwise the body is read, at most one byte past
//! the limit, and kept for the upstream.

use std::sync::Arc;

use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::HeaderMap;
use tidegate_model::plugins::request_size_limiting::RequestSizeLimitingConfig;

use crate::body::BodyError;
use crate::context::{Ctx, Req};
use crate::phase::{Access, Exit, Flow, Plugin};
use crate::runtime::Runtime;

const TOO_LARGE: &str = "Request size limit exceeded";
const LENGTH_REQUIRED: &str = "A valid Content-Length header is required";

pub struct RequestSizeLimiting {
    /// Bytes; may be negative (Kong does not refuse a negative size), and then every
    /// request is over it.
    limit: i64,
    require_content_length: bool,
}

pub fn build(c: &RequestSizeLimitingConfig, _rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(RequestSizeLimiting::new(c)))
}

impl RequestSizeLimiting {
    fn new(c: &RequestSizeLimitingConfig) -> Self {
        RequestSizeLimiting {
            limit: c.limit_bytes(),
            require_content_length: c.require_content_length,
        }
    }

    /// Kong's `check_size`: 417 rather than 413 when the client waits for
    /// `100-continue`, so it does not send the body at all.
    fn check(&self, length: f64, headers: &HeaderMap) -> Flow {
        if length <= self.limit as f64 {
            return Flow::Continue;
        }
        let expects_continue = headers
            .get(EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        Flow::Exit(Exit::error(
            if expects_continue { 417 } else { 413 },
            TOO_LARGE,
        ))
    }
}

/// Lua's `tonumber` over a header value, for the forms a Content-Length takes: decimal
/// (with surrounding spaces) or hexadecimal. Anything else is "no Content-Length".
pub(crate) fn lua_number(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let n = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        u64::from_str_radix(hex, 16).ok()? as f64
    } else {
        // `f64::from_str` also takes "inf" and "nan", which Lua does not.
        if !digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            return None;
        }
        digits.parse::<f64>().ok()?
    };
    Some(if neg { -n } else { n })
}

impl Plugin for RequestSizeLimiting {
    fn access<'a>(&'a self, _cx: &'a mut Ctx<'_>, req: &'a mut Req) -> Access<'a> {
        let declared = req
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(lua_number);
        if let Some(n) = declared {
            return Access::Done(self.check(n, &req.headers));
        }
        // Kong compares the first Transfer-Encoding value with "chunked" exactly.
        let chunked = req
            .headers
            .get(TRANSFER_ENCODING)
            .is_some_and(|v| v.as_bytes() == b"chunked");
        if self.require_content_length && !chunked {
            return Access::exit(Exit::error(411, LENGTH_REQUIRED));
        }
        if self.limit < 0 {
            // Even an empty body is over a negative limit; no need to read it.
            return Access::Done(self.check(0.0, &req.headers));
        }
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        Access::Pending(Box::pin(async move {
            match req.body.read(limit).await {
                Ok(_) => Flow::Continue,
                Err(BodyError::TooLarge { .. }) => self.check(f64::INFINITY, &req.headers),
                Err(BodyError::Read(e)) => {
                    // nginx answers a body it cannot read (broken chunking) with 400.
                    tracing::debug!(error = %e, "request-size-limiting: reading the body failed");
                    Flow::Exit(Exit::error(400, "Bad request"))
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use serde_json::json;

    use super::*;
    use crate::body::RequestBody;
    use crate::bundled::testing;
    use crate::consumers::Consumers;

    fn plugin(config: serde_json::Value) -> RequestSizeLimiting {
        RequestSizeLimiting::new(&testing::typed_config!(
            RequestSizeLimiting,
            "request-size-limiting",
            config
        ))
    }

    fn req(headers: &[(&str, &str)], body: RequestBody) -> Req {
        testing::req(http::Method::POST, "/", None, headers, body)
    }

    /// A streamed body sent in chunks of 10 bytes, with no length known up front.
    fn streamed(len: usize) -> RequestBody {
        let chunks = vec![b'x'; len]
            .chunks(10)
            .map(Bytes::copy_from_slice)
            .collect();
        RequestBody::stream(Chunks(chunks).boxed_unsync())
    }

    struct Chunks(std::collections::VecDeque<Bytes>);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = crate::BoxError;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }

    async fn run(p: &RequestSizeLimiting, r: &mut Req) -> Option<(u16, String)> {
        let consumers = Consumers::default();
        let mut cx = testing::cx(&consumers);
        testing::error_exit(testing::access(p, &mut cx, r).await)
    }

    #[test]
    fn lua_numbers() {
        for (s, n) in [
            ("12", Some(12.0)),
            (" 12 ", Some(12.0)),
            ("0x10", Some(16.0)),
            ("1e3", Some(1000.0)),
            ("-1", Some(-1.0)),
            ("", None),
            ("12abc", None),
            ("inf", None),
            ("nan", None),
        ] {
            assert_eq!(lua_number(s), n, "{s:?}");
        }
    }

    #[tokio::test]
    async fn content_length_decides_without_reading() {
        let p = plugin(json!({"allowed_payload_size": 10, "size_unit": "bytes"}));
        let big = || {
            RequestBody::stream(
                Full::new(Bytes::from(vec![0u8; 11]))
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            )
        };
        let mut r = req(&[("content-length", "11")], big());
        assert_eq!(run(&p, &mut r).await, Some((413, TOO_LARGE.into())));
        assert!(matches!(r.body, RequestBody::Stream(_)), "not read");

        let mut r = req(&[("content-length", "10")], big());
        assert_eq!(run(&p, &mut r).await, None);
        assert!(matches!(r.body, RequestBody::Stream(_)), "not read");

        let mut r = req(
            &[("content-length", "11"), ("expect", " 100-Continue ")],
            big(),
        );
        assert_eq!(run(&p, &mut r).await, Some((417, TOO_LARGE.into())));
    }

    #[tokio::test]
    async fn without_content_length_the_body_is_read_up_to_the_limit() {
        let p = plugin(json!({"allowed_payload_size": 1, "size_unit": "kilobytes"}));
        let mut r = req(&[("transfer-encoding", "chunked")], streamed(1025));
        assert_eq!(run(&p, &mut r).await, Some((413, TOO_LARGE.into())));

        let mut r = req(&[("transfer-encoding", "chunked")], streamed(1024));
        assert_eq!(run(&p, &mut r).await, None);
        assert_eq!(
            r.body.buffered().map(Bytes::len),
            Some(1024),
            "kept for the upstream"
        );

        // A Content-Length that is not a number counts as none.
        let mut r = req(&[("content-length", "abc")], streamed(2000));
        assert_eq!(run(&p, &mut r).await, Some((413, TOO_LARGE.into())));
    }

    #[tokio::test]
    async fn require_content_length() {
        let p = plugin(
            json!({"allowed_payload_size": 1, "size_unit": "bytes", "require_content_length": true}),
        );
        let mut r = req(&[], streamed(0));
        assert_eq!(run(&p, &mut r).await, Some((411, LENGTH_REQUIRED.into())));
        // Chunked bodies are read and measured instead.
        let mut r = req(&[("transfer-encoding", "chunked")], streamed(1));
        assert_eq!(run(&p, &mut r).await, None);
        let mut r = req(&[("transfer-encoding", "chunked")], streamed(2));
        assert_eq!(run(&p, &mut r).await, Some((413, TOO_LARGE.into())));
        let mut r = req(&[("content-length", "1")], streamed(1));
        assert_eq!(run(&p, &mut r).await, None);
    }

    #[tokio::test]
    async fn units() {
        for (size, unit, bytes) in [
            (2, "megabytes", 2 << 20),
            (3, "kilobytes", 3 << 10),
            (5, "bytes", 5),
        ] {
            let p = plugin(json!({"allowed_payload_size": size, "size_unit": unit}));
            let cl = |n: i64| n.to_string();
            let mut r = req(&[("content-length", &cl(bytes))], streamed(0));
            assert_eq!(run(&p, &mut r).await, None, "{unit}");
            let mut r = req(&[("content-length", &cl(bytes + 1))], streamed(0));
            assert!(run(&p, &mut r).await.is_some(), "{unit}");
        }
        // The default is 128 megabytes.
        let p = plugin(json!({}));
        assert_eq!(p.limit, 128 << 20);
    }
}
