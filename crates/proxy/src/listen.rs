//! Kong's `proxy_listen` syntax: `off`, or comma-separated `ADDR:PORT [ssl] [http2] …`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// One proxy listener as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    /// TLS termination, certificates chosen by SNI.
    pub ssl: bool,
    /// HTTP/2: through ALPN `h2` on an `ssl` listener, prior-knowledge h2c on a plain one.
    pub http2: bool,
}

/// nginx `listen` flags Kong passes through that change nothing here.
const IGNORED_FLAGS: &[&str] = &["deferred", "bind", "reuseport"];
const IGNORED_PREFIXES: &[&str] = &["backlog=", "ipv6only=", "so_keepalive="];

/// Parses `proxy_listen` (e.g. `"0.0.0.0:8000, 0.0.0.0:8443 ssl http2"`). `off` yields no
/// listener. Errors name the entry at fault.
pub fn parse_proxy_listen(s: &str) -> Result<Vec<Listen>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in s.split(',') {
        let mut words = entry.split_whitespace();
        let Some(addr) = words.next() else {
            return Err(format!("invalid proxy_listen value {s:?}: empty entry"));
        };
        let addr =
            parse_addr(addr).map_err(|e| format!("invalid proxy_listen entry {entry:?}: {e}"))?;
        let mut listen = Listen {
            addr,
            ssl: false,
            http2: false,
        };
        for w in words {
            match w {
                "ssl" => listen.ssl = true,
                "http2" => listen.http2 = true,
                "proxy_protocol" => {
                    return Err(format!(
                        "invalid proxy_listen entry {entry:?}: proxy_protocol is not supported"
                    ))
                }
                w if IGNORED_FLAGS.contains(&w)
                    || IGNORED_PREFIXES.iter().any(|p| w.starts_with(p)) => {}
                w => {
                    return Err(format!(
                        "invalid proxy_listen entry {entry:?}: unknown flag {w:?}"
                    ))
                }
            }
        }
        out.push(listen);
    }
    Ok(out)
}

fn parse_addr(a: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = a.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let (host, port) = a
        .rsplit_once(':')
        .ok_or_else(|| format!("{a:?} is not ADDRESS:PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port in {a:?}"))?;
    let ip = match host {
        "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("bad address in {a:?}"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kong_default_proxy_listen() {
        let got = parse_proxy_listen(
            "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Listen {
                    addr: "0.0.0.0:8000".parse().unwrap(),
                    ssl: false,
                    http2: false
                },
                Listen {
                    addr: "0.0.0.0:8443".parse().unwrap(),
                    ssl: true,
                    http2: true
                },
            ]
        );
    }

    #[test]
    fn off_ipv6_star_and_errors() {
        assert_eq!(parse_proxy_listen(" off ").unwrap(), vec![]);
        let v6 = parse_proxy_listen("[::1]:9000 http2").unwrap();
        assert_eq!(v6[0].addr, "[::1]:9000".parse().unwrap());
        assert!(v6[0].http2 && !v6[0].ssl);
        assert_eq!(
            parse_proxy_listen("*:80").unwrap()[0].addr,
            "0.0.0.0:80".parse().unwrap()
        );
        assert!(parse_proxy_listen("0.0.0.0:8000 quic")
            .unwrap_err()
            .contains("unknown flag"));
        assert!(parse_proxy_listen("0.0.0.0")
            .unwrap_err()
            .contains("ADDRESS:PORT"));
        assert!(parse_proxy_listen("0.0.0.0:8000,")
            .unwrap_err()
            .contains("empty entry"));
        assert!(parse_proxy_listen("0.0.0.0:8000 proxy_protocol").is_err());
    }
}
