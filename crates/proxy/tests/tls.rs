//! TLS termination: certificates chosen by SNI (two names, two certificates, a wildcard,
//! the default), HTTP/2 through ALPN, SNI routes, and an https service upstream.

mod support;

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

struct Cert {
    pem: String,
    key: String,
    der: Vec<u8>,
}

fn cert(name: &str) -> Cert {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    Cert {
        pem: c.cert.pem(),
        key: c.signing_key.serialize_pem(),
        der: c.cert.der().to_vec(),
    }
}

/// Accepts any certificate: the tests look at which one was presented.
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn connect(addr: std::net::SocketAddr, sni: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .unwrap()
}

fn presented(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn config(up: &Upstream, one: &Cert, two: &Cert, wild: &Cert) -> String {
    json!({
        "_format_version": "3.0",
        "certificates": [
            {"cert": one.pem, "key": one.key, "snis": [{"name": "one.test"}]},
            {"cert": two.pem, "key": two.key, "snis": [{"name": "two.test"}]},
            {"cert": wild.pem, "key": wild.key, "snis": [{"name": "*.wild.test"}]},
        ],
        "services": [{
            "name": "s",
            "url": format!("http://127.0.0.1:{}", up.port()),
            "routes": [
                {"name": "any", "paths": ["/"]},
                {"name": "two-only", "paths": ["/two"], "snis": ["two.test"], "protocols": ["https"]},
            ],
        }],
    })
    .to_string()
}

#[tokio::test]
async fn certificates_by_sni_and_http2_by_alpn() {
    let up = Upstream::start("u", Mode::Echo).await;
    let (one, two, wild) = (cert("one.test"), cert("two.test"), cert("*.wild.test"));
    let h = Harness::start(&config(&up, &one, &two, &wild)).await;

    let s = connect(h.https, "one.test", &[b"http/1.1"]).await;
    assert_eq!(presented(&s), one.der);
    let r = send_on(s, get("one.test", "/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.upstream_header("x-forwarded-proto").as_deref(),
        Some("https")
    );

    let s = connect(h.https, "two.test", &[b"http/1.1"]).await;
    assert_eq!(presented(&s), two.der);
    assert_eq!(
        send_on(s, get("two.test", "/two/x")).await.json()["uri"],
        "/x",
        "SNI route"
    );
    let s = connect(h.https, "one.test", &[b"http/1.1"]).await;
    assert_eq!(
        send_on(s, get("one.test", "/two/x")).await.json()["uri"],
        "/two/x",
        "other SNI: the catch-all route"
    );

    let s = connect(h.https, "a.wild.test", &[b"http/1.1"]).await;
    assert_eq!(presented(&s), wild.der, "wildcard SNI");

    let s = connect(h.https, "unknown.test", &[b"http/1.1"]).await;
    let default = presented(&s);
    assert!(
        default != one.der && default != two.der && default != wild.der,
        "the default certificate"
    );

    // HTTP/2 to the client (ALPN h2), HTTP/1.1 to the upstream.
    let s = connect(h.https, "one.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("https://one.test/h2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send2.send_request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let r = collect(resp).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "HTTP/1.1");
    assert_eq!(
        r.upstream_header("host"),
        Some(format!("127.0.0.1:{}", up.port()))
    );
    assert_eq!(
        r.upstream_header("x-forwarded-host").as_deref(),
        Some("one.test")
    );
    h.stop().await;
}

#[tokio::test]
async fn https_service_upstream_with_and_without_verification() {
    // The proxy's own TLS listener serves as an https upstream for a second route.
    let up = Upstream::start("u", Mode::Echo).await;
    let (one, two, wild) = (cert("one.test"), cert("two.test"), cert("*.wild.test"));
    let mut h = Harness::start(&config(&up, &one, &two, &wild)).await;
    let port = h.https.port();
    let mut doc: serde_json::Value = serde_json::from_str(&config(&up, &one, &two, &wild)).unwrap();
    doc["services"].as_array_mut().unwrap().push(json!({
        "name": "tls-up",
        "url": format!("https://127.0.0.1:{port}/"),
        "routes": [
            {"name": "via-tls", "paths": ["/via-tls"], "hosts": ["one.test"], "preserve_host": true},
        ],
    }));
    doc["services"].as_array_mut().unwrap().push(json!({
        "name": "tls-verify",
        "url": format!("https://127.0.0.1:{port}/"),
        "tls_verify": true,
        "routes": [{"name": "verify", "paths": ["/verify"]}],
    }));
    h.load(&doc.to_string()).await;
    // tls_verify off (Kong's default): the proxy's self-signed certificate is accepted;
    // SNI is the Host sent upstream (one.test), so the upstream picks one.test's cert.
    let r = send(h.http, get("one.test", "/via-tls/x")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["uri"], "/x");
    assert_eq!(
        r.upstream_header("x-forwarded-proto").as_deref(),
        Some("https"),
        "arrived over TLS"
    );
    // tls_verify on, no trusted roots: the handshake fails, 502.
    let r = send(h.http, get("x", "/verify")).await;
    assert_eq!(r.status, 502);
    h.stop().await;
}

#[tokio::test]
async fn tls_verify_with_ca_certificates() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tidegate test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["one.test".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();

    let up = Upstream::start("u", Mode::Echo).await;
    let mut h = Harness::start("_format_version: \"3.0\"\n").await;
    let port = h.https.port();
    let ca_id = "6a0c7f4c-52a4-4e57-9f5e-3bd1f1d9f3a1";
    let doc = json!({
        "_format_version": "3.0",
        "ca_certificates": [{"id": ca_id, "cert": ca_cert.pem()}],
        "certificates": [{"cert": leaf.pem(), "key": leaf_key.serialize_pem(), "snis": [{"name": "one.test"}]}],
        "services": [
            {"name": "echo", "url": format!("http://127.0.0.1:{}", up.port()),
             "routes": [{"name": "echo", "paths": ["/"], "protocols": ["https"]}]},
            {"name": "verified", "url": format!("https://127.0.0.1:{port}/"), "tls_verify": true,
             "ca_certificates": [ca_id],
             "routes": [{"name": "good", "paths": ["/v"], "hosts": ["one.test"], "preserve_host": true, "protocols": ["http"]},
                        {"name": "bad", "paths": ["/v"], "hosts": ["other.test"], "preserve_host": true, "protocols": ["http"]}]},
        ],
    });
    h.load(&doc.to_string()).await;
    // SNI one.test: the CA-signed certificate for that name verifies.
    let r = send(h.http, get("one.test", "/v/x")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["uri"], "/x");
    // SNI other.test: the default self-signed certificate does not.
    let r = send(h.http, get("other.test", "/v/x")).await;
    assert_eq!(r.status, 502);
    h.stop().await;
}
