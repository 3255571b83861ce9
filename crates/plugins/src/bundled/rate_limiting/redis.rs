//! A small redis client for the `redis` policy: RESP2 over a tokio `TcpStream`, commands
//! sent as one pipeline per round trip, and a bounded pool of connections per server
//! and login.
//!
//! Every step (waiting for a pooled connection, connecting with AUTH and SELECT, one
//! round trip) is bounded by the plugin's `redis.timeout`. A connection that failed or
//! timed out is dropped, never reused; an idle one is checked for a close by the server
//! before it is handed out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{timeout, Instant};

/// Open connections per pool, busy or idle.
pub const DEFAULT_POOL_SIZE: usize = 64;
/// An idle connection older than this is closed rather than reused (Kong's keepalive
/// timeout for its redis connections).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest reply accepted; the policy's replies are a few bytes.
pub const MAX_REPLY: usize = 1 << 20;
const MAX_DEPTH: usize = 8;

/// Where and as whom to connect; one pool per distinct value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub database: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
    pub ssl: bool,
}

#[derive(Debug)]
pub enum Error {
    Io(std::io::Error),
    Timeout(&'static str),
    /// The server sent something that is not RESP, or too much of it.
    Protocol(String),
    /// An error reply (`-ERR …`) where success was needed (AUTH, SELECT).
    Server(String),
    Unsupported(&'static str),
    /// The connection was closed before any reply came (see [`Conn::round_trip`]).
    Closed,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "redis: {e}"),
            Error::Timeout(what) => write!(f, "redis: timed out {what}"),
            Error::Protocol(e) => write!(f, "redis: protocol error: {e}"),
            Error::Server(e) => write!(f, "redis: {e}"),
            Error::Unsupported(what) => write!(f, "redis: {what} is not supported"),
            Error::Closed => write!(f, "redis: the server closed the connection"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    /// `None` is the null bulk string (GET of a missing key).
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

// === commands ===

/// Commands encoded for one write.
#[derive(Debug, Default)]
pub struct Pipeline {
    buf: Vec<u8>,
    len: usize,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a command as a RESP array of bulk strings.
    pub fn cmd(&mut self, args: &[&[u8]]) -> &mut Self {
        self.buf.push(b'*');
        self.buf
            .extend_from_slice(args.len().to_string().as_bytes());
        self.buf.extend_from_slice(b"\r\n");
        for a in args {
            self.buf.push(b'$');
            self.buf.extend_from_slice(a.len().to_string().as_bytes());
            self.buf.extend_from_slice(b"\r\n");
            self.buf.extend_from_slice(a);
            self.buf.extend_from_slice(b"\r\n");
        }
        self.len += 1;
        self
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

// === replies ===

/// Parses one reply from the front of `buf`: `Ok(None)` while it is incomplete,
/// otherwise the reply and the bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, Error> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Protocol("replies nested too deep".into()));
    }
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_REPLY {
            return Err(Error::Protocol("a reply line longer than the limit".into()));
        }
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..line_end].split_first() else {
        return Err(Error::Protocol("an empty reply line".into()));
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    let used = line_end + 2;
    let int = || -> Result<i64, Error> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Protocol(format!("not an integer: {:?}", text())))
    };
    Ok(Some(match kind {
        b'+' => (Reply::Status(text()), used),
        b'-' => (Reply::Error(text()), used),
        b':' => (Reply::Int(int()?), used),
        b'$' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Reply::Bulk(None), used)));
            }
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > MAX_REPLY {
                return Err(Error::Protocol(format!("a bulk string of {n} bytes")));
            }
            if buf.len() < used + n + 2 {
                return Ok(None);
            }
            if &buf[used + n..used + n + 2] != b"\r\n" {
                return Err(Error::Protocol("a bulk string without its CRLF".into()));
            }
            (
                Reply::Bulk(Some(buf[used..used + n].to_vec())),
                used + n + 2,
            )
        }
        b'*' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), used)));
            }
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > MAX_REPLY {
                return Err(Error::Protocol(format!("an array of {n} items")));
            }
            let mut items = Vec::with_capacity(n.min(64));
            let mut at = used;
            for _ in 0..n {
                match parse_at(&buf[at..], depth + 1)? {
                    None => return Ok(None),
                    Some((r, k)) => {
                        items.push(r);
                        at += k;
                    }
                }
            }
            (Reply::Array(Some(items)), at)
        }
        other => {
            return Err(Error::Protocol(format!(
                "unknown reply type {:?}",
                char::from(other)
            )))
        }
    }))
}

impl Reply {
    /// A counter as GET returns it: missing is zero.
    pub fn counter(&self) -> Result<u64, Error> {
        match self {
            Reply::Bulk(None) => Ok(0),
            Reply::Bulk(Some(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .map(|n| n.max(0) as u64)
                .ok_or_else(|| {
                    Error::Protocol(format!(
                        "a counter that is not a number: {:?}",
                        String::from_utf8_lossy(b)
                    ))
                }),
            Reply::Int(n) => Ok((*n).max(0) as u64),
            Reply::Error(e) => Err(Error::Server(e.clone())),
            other => Err(Error::Protocol(format!("unexpected reply {other:?}"))),
        }
    }
}

// === connections ===

pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Connects, logs in and selects the database (Kong does both on a new connection
    /// only; a pooled one keeps them).
    pub async fn open(s: &Settings) -> Result<Conn, Error> {
        if s.ssl {
            return Err(Error::Unsupported("TLS to redis (redis.ssl)"));
        }
        let stream = TcpStream::connect((s.host.as_str(), s.port)).await?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            buf: BytesMut::with_capacity(512),
        };
        let mut setup = Pipeline::new();
        if let Some(pass) = s.password.as_deref().filter(|p| !p.is_empty()) {
            match s.username.as_deref().filter(|u| !u.is_empty()) {
                Some(user) => setup.cmd(&[b"AUTH", user.as_bytes(), pass.as_bytes()]),
                None => setup.cmd(&[b"AUTH", pass.as_bytes()]),
            };
        }
        if s.database != 0 {
            setup.cmd(&[b"SELECT", s.database.to_string().as_bytes()]);
        }
        if !setup.is_empty() {
            for r in conn.round_trip(&setup).await? {
                if let Reply::Error(e) = r {
                    return Err(Error::Server(e));
                }
            }
        }
        Ok(conn)
    }

    /// Writes the pipeline and reads one reply per command. [`Error::Closed`]: the
    /// write found the connection closed, or it ended before the first byte of a reply.
    /// On a pooled connection that is almost always a close while it idled, so the
    /// pipeline did not run; a server dying between running it and replying looks the
    /// same, and then the one retry in [`Pool::run`] counts a request twice.
    pub async fn round_trip(&mut self, p: &Pipeline) -> Result<Vec<Reply>, Error> {
        if let Err(e) = self.stream.write_all(p.bytes()).await {
            return Err(match e.kind() {
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                    Error::Closed
                }
                _ => Error::Io(e),
            });
        }
        let mut replies = Vec::with_capacity(p.len());
        let mut received = false;
        while replies.len() < p.len() {
            match parse(&self.buf)? {
                Some((r, used)) => {
                    self.buf.advance(used);
                    replies.push(r);
                }
                None => match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) if !received => return Err(Error::Closed),
                    Ok(0) => return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into())),
                    Ok(_) => received = true,
                    Err(e) if !received && e.kind() == std::io::ErrorKind::ConnectionReset => {
                        return Err(Error::Closed)
                    }
                    Err(e) => return Err(Error::Io(e)),
                },
            }
        }
        Ok(replies)
    }

    /// Whether the server is still there: nothing to read and not closed. A reply
    /// nobody asked for also disqualifies the connection.
    fn idle_and_open(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

// === pools ===

/// Every pool of the process, kept in the plugin [`crate::Runtime`]: instances of any
/// config version that name the same server share its connections. A pool lives as
/// long as an instance holds it: when the last config version using a server (or a
/// password) is gone, its connections close.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<Settings, Weak<Pool>>>,
}

impl Pools {
    /// The pool for `s`, made on first use. Called when an instance is built, so the
    /// request path never takes this lock.
    pub fn get(&self, s: &Settings) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|_, p| p.strong_count() > 0);
        if let Some(p) = pools.get(s).and_then(Weak::upgrade) {
            return p;
        }
        let p = Arc::new(Pool::new(s.clone(), DEFAULT_POOL_SIZE));
        pools.insert(s.clone(), Arc::downgrade(&p));
        p
    }

    /// Pools still in use.
    pub fn len(&self) -> usize {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.values().filter(|p| p.strong_count() > 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Pool {
    settings: Settings,
    /// One permit per open connection, so that at most `size` exist.
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<(Conn, Instant)>>,
    size: usize,
}

impl Pool {
    pub fn new(settings: Settings, size: usize) -> Pool {
        Pool {
            settings,
            permits: Arc::new(Semaphore::new(size)),
            idle: Mutex::new(Vec::with_capacity(size)),
            size,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sends `p` on a pooled connection and returns its replies (error replies
    /// included: the caller decides what they mean).
    pub async fn run(&self, p: &Pipeline) -> Result<Vec<Reply>, Error> {
        let limit = self.settings.timeout;
        let _permit = timeout(limit, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Error::Timeout("waiting for a pooled connection"))?
            .map_err(|_| Error::Timeout("waiting for a pooled connection (pool closed)"))?;
        let (mut conn, reused) = match self.take_idle() {
            Some(c) => (c, true),
            None => (self.open().await?, false),
        };
        let mut sent = timeout(limit, conn.round_trip(p)).await;
        // The server may close an idle connection just after the liveness check; the
        // pipeline did not run, so it goes once more on a new connection.
        if reused && matches!(sent, Ok(Err(Error::Closed))) {
            conn = self.open().await?;
            sent = timeout(limit, conn.round_trip(p)).await;
        }
        let replies = sent.map_err(|_| Error::Timeout("waiting for a reply"))??;
        self.put_idle(conn);
        Ok(replies)
    }

    async fn open(&self) -> Result<Conn, Error> {
        timeout(self.settings.timeout, Conn::open(&self.settings))
            .await
            .map_err(|_| Error::Timeout("connecting"))?
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((c, since)) = idle.pop() {
            if since.elapsed() < IDLE_TIMEOUT && c.idle_and_open() {
                return Some(c);
            }
        }
        None
    }

    fn put_idle(&self, c: Conn) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Connections left over from a busier moment close once they idled too long.
        idle.retain(|(_, since)| now.duration_since(*since) < IDLE_TIMEOUT);
        if idle.len() < self.size {
            idle.push((c, now));
        }
    }

    /// Idle connections held (for tests and metrics).
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests;
