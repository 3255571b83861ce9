//! The request body as plugins see it: streamed to the upstream untouched unless a
//! plugin asks for it, then read once (within a limit) and kept in memory.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

pub enum RequestBody {
    Stream(BoxBody),
    Buffered(Bytes),
    /// Reading failed; the request cannot go on.
    Gone,
}

#[derive(Debug)]
pub enum BodyError {
    /// Larger than the limit the reader gave.
    TooLarge { limit: usize },
    /// The client went away or sent a broken body.
    Read(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "request body larger than {limit} bytes"),
            BodyError::Read(e) => write!(f, "reading the request body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl RequestBody {
    pub fn stream(body: BoxBody) -> Self {
        RequestBody::Stream(body)
    }

    /// The whole body, read now if it was not yet. A body over `limit` bytes is an
    /// error and is gone afterwards (the request cannot be forwarded any more).
    pub async fn read(&mut self, limit: usize) -> Result<&Bytes, BodyError> {
        if let RequestBody::Stream(_) = self {
            let RequestBody::Stream(b) = std::mem::replace(self, RequestBody::Gone) else {
                unreachable!("checked above")
            };
            *self = RequestBody::Buffered(collect(b, limit).await?);
        }
        match self {
            RequestBody::Buffered(b) => Ok(b),
            _ => Err(BodyError::Read("the body was already consumed".into())),
        }
    }

    /// The body once read, if it was.
    pub fn buffered(&self) -> Option<&Bytes> {
        match self {
            RequestBody::Buffered(b) => Some(b),
            _ => None,
        }
    }

    pub fn replace(&mut self, body: Bytes) {
        *self = RequestBody::Buffered(body);
    }

    /// For the upstream request. A buffered body is sent whole.
    pub fn into_body(self) -> BoxBody {
        match self {
            RequestBody::Stream(b) => b,
            RequestBody::Buffered(b) => Full::new(b).map_err(|e| match e {}).boxed_unsync(),
            RequestBody::Gone => http_body_util::Empty::new()
                .map_err(|e| match e {})
                .boxed_unsync(),
        }
    }
}

/// Reads a whole body of at most `limit` bytes. (A loop rather than `Limited` +
/// `collect`: with those, rustc cannot prove a caller's future `Send`.)
pub async fn collect(mut body: BoxBody, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}
