use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_stream::StreamExt;

use super::*;

const NOW: i64 = 1_795_000_000; // 2026-11-18

fn shared_pair() -> (String, String) {
    let g = gen_cert(NOW, 1095).unwrap();
    (g.cert_pem, g.key_pem)
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

fn issue(ca: &Ca, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Runs one handshake between a CP with `cp` and a DP with `dp`; Ok when both sides
/// accepted each other.
async fn handshake(cp: &ClusterTls, dp: &ClusterTls) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut accepted = incoming(listener, cp.server_config().unwrap());
    let client = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = dp.server_name(&addr.to_string()).unwrap();
        let mut s = TlsConnector::from(dp.client_config().unwrap())
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        // TLS 1.3 reports a refused client certificate on the first read.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        match s.read(&mut b).await {
            Ok(1) => Ok(()),
            Ok(_) => Err("closed by the server".to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let server = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let r = tokio::time::timeout(Duration::from_secs(2), accepted.next())
            .await
            .ok()
            .flatten()?;
        Some(match r {
            Ok(mut s) => {
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.unwrap();
                s.write_all(&b).await.unwrap();
                s.flush().await.unwrap();
                // Hold the stream until the client, having read the echo, hangs up.
                let _ = s.read(&mut b).await;
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        })
    };
    let (c, s) = tokio::join!(client, server);
    match (c, s) {
        (Ok(()), Some(Ok(()))) => Ok(()),
        (Err(e), _) => Err(e),
        (Ok(()), other) => Err(format!("server side: {other:?}")),
    }
}

#[tokio::test]
async fn shared_mode_accepts_only_the_same_certificate() {
    let (cert, key) = shared_pair();
    let node = ClusterTls::from_pem("shared", &cert, &key, None, None).unwrap();
    handshake(&node, &node).await.unwrap();

    let (other_cert, other_key) = shared_pair();
    let stranger = ClusterTls::from_pem("shared", &other_cert, &other_key, None, None).unwrap();
    let err = handshake(&node, &stranger).await.unwrap_err();
    assert!(!err.is_empty());
}

#[tokio::test]
async fn shared_mode_refuses_an_expired_certificate() {
    // Valid for one day, three years ago.
    let g = gen_cert(NOW - 3 * 365 * 86_400, 1).unwrap();
    let node = ClusterTls::from_pem("shared", &g.cert_pem, &g.key_pem, None, None).unwrap();
    let err = handshake(&node, &node).await.unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");
}

#[tokio::test]
async fn pki_mode_checks_the_ca_and_the_server_name() {
    let ca1 = ca("cluster CA");
    let (cp_cert, cp_key) = issue(&ca1, &["cp.example"]);
    let (dp_cert, dp_key) = issue(&ca1, &["dp.example"]);
    let cp = ClusterTls::from_pem("pki", &cp_cert, &cp_key, Some(&ca1.pem), None).unwrap();
    let dp =
        ClusterTls::from_pem("pki", &dp_cert, &dp_key, Some(&ca1.pem), Some("cp.example")).unwrap();
    handshake(&cp, &dp).await.unwrap();

    // The CP's certificate does not name what the DP expects.
    let wrong_name = ClusterTls::from_pem(
        "pki",
        &dp_cert,
        &dp_key,
        Some(&ca1.pem),
        Some("other.example"),
    )
    .unwrap();
    let err = handshake(&cp, &wrong_name).await.unwrap_err();
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for"),
        "{err}"
    );

    // A DP certificate from another CA (say, the Raft CA) is refused by the CP.
    let ca2 = ca("raft CA");
    let (x_cert, x_key) = issue(&ca2, &["dp.example"]);
    let outsider =
        ClusterTls::from_pem("pki", &x_cert, &x_key, Some(&ca1.pem), Some("cp.example")).unwrap();
    handshake(&cp, &outsider).await.unwrap_err();
}

#[test]
fn settings_errors_say_what_to_fix() {
    let (cert, key) = shared_pair();
    let e = ClusterTls::from_pem("mutual", &cert, &key, None, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cluster_mtls must be 'shared' or 'pki', got 'mutual'"
    );
    let e = ClusterTls::from_pem("pki", &cert, &key, None, None).unwrap_err();
    assert_eq!(e.to_string(), "cluster_mtls = pki needs cluster_ca_cert");
    let e = ClusterTls::from_pem("shared", "not a pem", &key, None, None).unwrap_err();
    assert!(e.to_string().starts_with("cluster_cert: "), "{e}");
    let (_, other_key) = shared_pair();
    let e = ClusterTls::from_pem("shared", &cert, &other_key, None, None).unwrap_err();
    assert!(
        e.to_string().starts_with("invalid cluster TLS settings"),
        "{e}"
    );
}

#[test]
fn generated_certificates_last_the_requested_days() {
    let g = gen_cert(NOW, 1095).unwrap();
    let der = pem::parse(&g.cert_pem).unwrap();
    let expiry = cert_expiry(der.contents()).unwrap();
    let days = (expiry - NOW) / 86_400;
    assert!((1094..=1096).contains(&days), "{days}");
    assert!(g.key_pem.contains("PRIVATE KEY"));
}
