//! A minimal blocking HTTP/1.1 client for `config db_import|db_export`: one request per
//! connection, plain `http://` only (the Admin API listens on loopback by default), no
//! dependencies beyond std.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// How long to wait for the TCP connection to a CP.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one read or write may stall; an import of a large file is one Raft entry,
/// applied before the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of a body is written between two progress reports: small next to a large
/// import, large enough that reporting costs nothing.
const UPLOAD_CHUNK: usize = 256 << 10;
/// Largest response accepted: a whole exported file, JSON-escaped, has room here.
const MAX_RESPONSE_BYTES: u64 = 4 * tidegate_model::declarative::MAX_DECLARATIVE_BYTES as u64;

/// Where a CP's Admin API is: `http://host[:port][/base]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminUrl {
    /// As the user gave it, for messages.
    pub shown: String,
    pub(super) host: String,
    pub(super) port: u16,
    /// A path prefix without trailing slash (`""` or `/admin`).
    pub(super) base: String,
}

/// A response: status and body parsed as JSON (`Null` when empty, a string when not JSON).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl AdminUrl {
    pub fn parse(raw: &str) -> anyhow::Result<AdminUrl> {
        let trimmed = raw.trim();
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                bail!("{raw}: only http:// Admin API addresses are supported here, not {scheme}://")
            }
            None => trimmed,
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            // `[::1]:8001`, `host:8001`; a bare IPv6 address needs brackets.
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("{raw}: bad port {p:?}"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            bail!("{raw}: no host in the Admin API address");
        }
        Ok(AdminUrl {
            shown: trimmed.to_string(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            base: path.trim_end_matches('/').to_string(),
        })
    }

    /// One request with `Connection: close`. Errors before an answer arrives say that the
    /// Admin API cannot be reached and how to fix that.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let payload = body.map(Value::to_string);
        self.send(
            method,
            path,
            payload.as_deref().map(str::as_bytes),
            &mut |_, _| {},
        )
    }

    /// [`Self::request`] with a JSON body already serialised, written in chunks:
    /// `sent(done, total)` is called after each one, the last time with `done == total`,
    /// when only the answer is left to wait for.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        json_body: Option<&[u8]>,
        sent: &mut dyn FnMut(u64, u64),
    ) -> anyhow::Result<Response> {
        let unreachable = |why: String| {
            anyhow::anyhow!(
                "cannot reach the Admin API at {} ({why}); start the node or pass --admin-url",
                self.shown
            )
        };
        let mut stream = self.connect().map_err(|e| unreachable(e.to_string()))?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        stream.set_write_timeout(Some(IO_TIMEOUT)).ok();
        let payload = json_body.unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
             Accept: application/json\r\nUser-Agent: tidegate/{}\r\n",
            self.base,
            env!("CARGO_PKG_VERSION")
        );
        if json_body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        stream
            .write_all(head.as_bytes())
            .map_err(|e| unreachable(e.to_string()))?;
        let total = payload.len() as u64;
        let mut done = 0u64;
        let mut write_error = None;
        for chunk in payload.chunks(UPLOAD_CHUNK) {
            if let Err(e) = stream.write_all(chunk) {
                // The node may have answered and closed before taking the whole body
                // (a body over its limit): that answer says more than the write error.
                write_error = Some(e);
                break;
            }
            done += chunk.len() as u64;
            sent(done, total);
        }
        if payload.is_empty() {
            sent(0, 0);
        }
        let mut raw = Vec::new();
        let read = (&mut stream)
            .take(MAX_RESPONSE_BYTES + 1)
            .read_to_end(&mut raw);
        if let Some(e) = write_error {
            if raw.is_empty() {
                return Err(unreachable(e.to_string()));
            }
        } else {
            read.with_context(|| format!("reading the answer of {}", self.shown))?;
        }
        if raw.len() as u64 > MAX_RESPONSE_BYTES {
            bail!(
                "the answer of {} exceeds {MAX_RESPONSE_BYTES} bytes",
                self.shown
            );
        }
        if raw.is_empty() {
            return Err(unreachable(
                "the connection closed without an answer".into(),
            ));
        }
        parse_response(&raw).with_context(|| format!("a malformed answer from {}", self.shown))
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let mut last = None;
        for addr in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address")
        }))
    }
}

/// Status line, headers, and a body framed by `Content-Length`, chunks, or the close.
pub fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).context("headers are not UTF-8")?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .context("the body is shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    let text = String::from_utf8(body).context("the body is not UTF-8")?;
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok(Response { status, body })
}

fn dechunk(mut s: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = s
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunk without its size line")?;
        let size = std::str::from_utf8(&s[..eol]).context("a chunk size is not text")?;
        let size = size.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size, 16).context("a bad chunk size")?;
        s = &s[eol + 2..];
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(s.get(..n).context("a truncated chunk")?);
        s = s.get(n..).unwrap_or(&[]);
        s = s.strip_prefix(b"\r\n").unwrap_or(s);
    }
}
