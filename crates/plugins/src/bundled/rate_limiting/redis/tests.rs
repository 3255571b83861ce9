//! RESP encoding and parsing, and the pool against a small in-process RESP server (the
//! proxy's tests run the policy against a real redis-server).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;

use super::*;

#[test]
fn commands_are_arrays_of_bulk_strings() {
    let mut p = Pipeline::new();
    p.cmd(&[b"GET", b"k"])
        .cmd(&[b"INCRBY", b"ratelimit:x", b"1"]);
    assert_eq!(p.len(), 2);
    assert_eq!(
        p.bytes(),
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$6\r\nINCRBY\r\n$11\r\nratelimit:x\r\n$1\r\n1\r\n"
    );
}

#[test]
fn replies_parse() {
    let cases: &[(&[u8], Reply)] = &[
        (b"+OK\r\n", Reply::Status("OK".into())),
        (
            b"-WRONGPASS invalid username-password pair\r\n",
            Reply::Error("WRONGPASS invalid username-password pair".into()),
        ),
        (b":42\r\n", Reply::Int(42)),
        (b":-3\r\n", Reply::Int(-3)),
        (b"$-1\r\n", Reply::Bulk(None)),
        (b"$0\r\n\r\n", Reply::Bulk(Some(vec![]))),
        (b"$4\r\na\r\nb\r\n", Reply::Bulk(Some(b"a\r\nb".to_vec()))),
        (b"*-1\r\n", Reply::Array(None)),
        (b"*0\r\n", Reply::Array(Some(vec![]))),
        (
            b"*3\r\n:1\r\n$1\r\nx\r\n*1\r\n+y\r\n",
            Reply::Array(Some(vec![
                Reply::Int(1),
                Reply::Bulk(Some(b"x".to_vec())),
                Reply::Array(Some(vec![Reply::Status("y".into())])),
            ])),
        ),
    ];
    for (raw, want) in cases {
        let mut buf = raw.to_vec();
        buf.extend_from_slice(b"+next\r\n");
        assert_eq!(
            parse(&buf).unwrap(),
            Some((want.clone(), raw.len())),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
        // Every strict prefix is incomplete, never an error.
        for n in 0..raw.len() {
            assert_eq!(parse(&raw[..n]).unwrap(), None, "prefix {n} of {raw:?}");
        }
    }
}

#[test]
fn garbage_is_a_protocol_error() {
    for raw in [
        &b"?what\r\n"[..],
        b"\r\n",
        b":12x\r\n",
        b"$3\r\nabcd\r\n",
        b"$99999999999\r\n",
        b"*2\r\n:1\r\n!\r\n",
    ] {
        assert!(
            matches!(parse(raw), Err(Error::Protocol(_))),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
    let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
    assert!(matches!(parse(deep.as_bytes()), Err(Error::Protocol(_))));
}

#[test]
fn counters_read_from_get_replies() {
    assert_eq!(Reply::Bulk(None).counter().unwrap(), 0);
    assert_eq!(Reply::Bulk(Some(b"17".to_vec())).counter().unwrap(), 17);
    assert_eq!(Reply::Int(3).counter().unwrap(), 3);
    assert!(matches!(
        Reply::Bulk(Some(b"x".to_vec())).counter(),
        Err(Error::Protocol(_))
    ));
    assert!(matches!(
        Reply::Error("WRONGTYPE".into()).counter(),
        Err(Error::Server(_))
    ));
}

// === the pool against a fake server ===

/// A RESP server that answers AUTH/SELECT with +OK (or an error for a wrong password),
/// GET with nil and anything else with :1, and records each command.
struct Fake {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    commands: Arc<Mutex<Vec<String>>>,
}

async fn fake(answer: bool) -> Fake {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let commands = Arc::new(Mutex::new(Vec::new()));
    let (a, c) = (accepted.clone(), commands.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                loop {
                    while let Ok(Some((Reply::Array(Some(args)), used))) = parse(&buf) {
                        buf.advance(used);
                        let words: Vec<String> = args
                            .iter()
                            .map(|a| match a {
                                Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
                                other => format!("{other:?}"),
                            })
                            .collect();
                        let reply: &[u8] = match words[0].as_str() {
                            "AUTH" if words.last().unwrap() != "secret" => b"-WRONGPASS no\r\n",
                            "AUTH" | "SELECT" => b"+OK\r\n",
                            "GET" => b"$-1\r\n",
                            _ => b":1\r\n",
                        };
                        c.lock().unwrap().push(words.join(" "));
                        if answer {
                            s.write_all(reply).await.unwrap();
                        }
                    }
                    if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                }
            });
        }
    });
    Fake {
        addr,
        accepted,
        commands,
    }
}

fn settings(f: &Fake, password: Option<&str>) -> Settings {
    Settings {
        host: "127.0.0.1".into(),
        port: f.addr.port(),
        database: 3,
        username: Some("tg".into()),
        password: password.map(str::to_string),
        timeout: Duration::from_millis(500),
        ssl: false,
    }
}

fn get() -> Pipeline {
    let mut p = Pipeline::new();
    p.cmd(&[b"GET", b"k"]);
    p
}

#[tokio::test]
async fn a_connection_logs_in_once_and_is_reused() {
    let f = fake(true).await;
    let pool = Pool::new(settings(&f, Some("secret")), 4);
    for _ in 0..3 {
        assert_eq!(pool.run(&get()).await.unwrap(), vec![Reply::Bulk(None)]);
    }
    assert_eq!(f.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.idle(), 1);
    assert_eq!(
        *f.commands.lock().unwrap(),
        ["AUTH tg secret", "SELECT 3", "GET k", "GET k", "GET k"]
    );
}

#[tokio::test]
async fn a_refused_login_is_an_error_and_no_connection_is_kept() {
    let f = fake(true).await;
    let pool = Pool::new(settings(&f, Some("wrong")), 4);
    let e = pool.run(&get()).await.unwrap_err();
    assert!(
        matches!(&e, Error::Server(m) if m.starts_with("WRONGPASS")),
        "{e}"
    );
    assert_eq!(pool.idle(), 0);
}

#[tokio::test]
async fn a_silent_server_times_out_and_its_connection_is_dropped() {
    let f = fake(false).await;
    let mut s = settings(&f, None);
    s.database = 0;
    s.timeout = Duration::from_millis(100);
    let pool = Pool::new(s, 4);
    let e = pool.run(&get()).await.unwrap_err();
    assert!(matches!(e, Error::Timeout("waiting for a reply")), "{e}");
    assert_eq!(pool.idle(), 0);
}

#[tokio::test]
async fn nothing_listening_is_an_io_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let pool = Pool::new(
        Settings {
            host: "127.0.0.1".into(),
            port,
            database: 0,
            username: None,
            password: None,
            timeout: Duration::from_secs(2),
            ssl: false,
        },
        4,
    );
    assert!(matches!(pool.run(&get()).await, Err(Error::Io(_))));
}

#[tokio::test]
async fn a_connection_the_server_closed_is_not_handed_out() {
    // A server that answers one command per connection, then closes it.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let mut buf = BytesMut::new();
            while !matches!(parse(&buf), Ok(Some(_))) {
                if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    break;
                }
            }
            s.write_all(b"$-1\r\n").await.unwrap();
            s.shutdown().await.unwrap();
            // Wait for the client to see the close before the listener goes on.
            let _ = s.read_buf(&mut buf).await;
        }
    });
    let pool = Pool::new(
        Settings {
            host: "127.0.0.1".into(),
            port,
            database: 0,
            username: None,
            password: None,
            timeout: Duration::from_secs(2),
            ssl: false,
        },
        4,
    );
    pool.run(&get()).await.unwrap();
    // Whether the close reached this socket before the next run (the connection is
    // not handed out) or after (the pipeline is sent again on a new connection), every
    // run succeeds, each on a connection of its own.
    for _ in 0..3 {
        pool.run(&get()).await.unwrap();
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn tls_is_refused_rather_than_sent_in_clear() {
    let f = fake(true).await;
    let mut s = settings(&f, None);
    s.ssl = true;
    let pool = Pool::new(s, 4);
    assert!(matches!(pool.run(&get()).await, Err(Error::Unsupported(_))));
    assert_eq!(f.accepted.load(Ordering::SeqCst), 0);
}

#[test]
fn instances_share_a_pool_while_one_holds_it() {
    let pools = Pools::default();
    let s = Settings {
        host: "127.0.0.1".into(),
        port: 6379,
        database: 0,
        username: None,
        password: None,
        timeout: Duration::from_secs(1),
        ssl: false,
    };
    let a = pools.get(&s);
    let b = pools.get(&s);
    assert!(Arc::ptr_eq(&a, &b));
    let other = pools.get(&Settings {
        password: Some("x".into()),
        ..s.clone()
    });
    assert!(!Arc::ptr_eq(&a, &other));
    assert_eq!(pools.len(), 2);
    drop((a, b, other));
    // Nobody holds them: gone, connections and all.
    assert!(pools.is_empty());
    assert_eq!(pools.get(&s).settings(), &s);
}
