//! TLS on both sides: certificates chosen by SNI from `certificates`/`snis` for the
//! proxy's `ssl` listeners (a self-signed default when none matches, as Kong's), and the
//! client configs for https and grpcs services (`tls_verify`, `ca_certificates`,
//! `client_certificate`).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tidegate_model::entities::{Certificate, Sni};

use crate::config::Live;

/// A certificate with its optional alternate (the other key type, `cert_alt`/`key_alt`).
#[derive(Debug)]
pub struct CertPair {
    main: Arc<CertifiedKey>,
    alt: Option<Arc<CertifiedKey>>,
}

/// SNI name → certificate, for one config version.
#[derive(Default)]
pub struct CertMap {
    exact: HashMap<String, Arc<CertPair>>,
    /// `*.example.com` and `example.*` as configured.
    wildcard: HashMap<String, Arc<CertPair>>,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// === impl CertMap ===

impl CertMap {
    pub fn build<'a>(
        certs: impl IntoIterator<Item = &'a Certificate>,
        snis: impl IntoIterator<Item = &'a Sni>,
    ) -> Result<CertMap, (uuid::Uuid, String)> {
        let mut by_id: HashMap<uuid::Uuid, Arc<CertPair>> = HashMap::new();
        let mut pending: Vec<&Certificate> = certs.into_iter().collect();
        let snis: Vec<&Sni> = snis.into_iter().collect();
        // Only certificates some SNI names are worth parsing.
        pending.retain(|c| {
            snis.iter()
                .any(|s| s.certificate.is_some_and(|f| f.id == c.id))
        });
        for c in pending {
            let pair = cert_pair(c).map_err(|e| (c.id, e))?;
            by_id.insert(c.id, Arc::new(pair));
        }
        let mut map = CertMap::default();
        for s in snis {
            let Some(pair) = s.certificate.and_then(|f| by_id.get(&f.id)) else {
                continue;
            };
            let name = s.name.to_ascii_lowercase();
            if name.starts_with("*.") || name.ends_with(".*") {
                map.wildcard.insert(name, pair.clone());
            } else {
                map.exact.insert(name, pair.clone());
            }
        }
        Ok(map)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// Kong's `find_certificate`: the exact name, then `*.` + all but the first label,
    /// then all but the last label + `.*`.
    pub fn find(&self, sni: &str) -> Option<&Arc<CertPair>> {
        let sni = sni.to_ascii_lowercase();
        if let Some(p) = self.exact.get(&sni) {
            return Some(p);
        }
        if let Some((_, rest)) = sni.split_once('.') {
            if let Some(p) = self.wildcard.get(&format!("*.{rest}")) {
                return Some(p);
            }
        }
        let (head, _) = sni.rsplit_once('.')?;
        self.wildcard.get(&format!("{head}.*"))
    }
}

fn cert_pair(c: &Certificate) -> Result<CertPair, String> {
    let main = certified_key(&c.cert, &c.key)?;
    let alt = match (&c.cert_alt, &c.key_alt) {
        (Some(cert), Some(key)) => Some(certified_key(cert, key)?),
        _ => None,
    };
    Ok(CertPair { main, alt })
}

pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, String> {
    let chain = parse_certs(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("cannot read the key: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unsupported key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read the certificate: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in PEM".into());
    }
    Ok(chain)
}

// === server side ===

/// Kong's default certificate: self-signed for `localhost`, made at start-up.
pub fn default_cert() -> Result<Arc<CertPair>, String> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(|e| format!("cannot generate the default certificate: {e}"))?;
    let main = certified_key(
        &generated.cert.pem(),
        &generated.signing_key.serialize_pem(),
    )?;
    Ok(Arc::new(CertPair { main, alt: None }))
}

/// Picks the certificate for each handshake from the config being served.
#[derive(Debug)]
pub struct SniResolver {
    pub live: Arc<Live>,
    pub default: Arc<CertPair>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let config = self.live.load();
        let pair = hello
            .server_name()
            .and_then(|n| config.certs.find(n).cloned())
            .unwrap_or_else(|| self.default.clone());
        let schemes = hello.signature_schemes();
        match &pair.alt {
            Some(alt) if pair.main.key.choose_scheme(schemes).is_none() => Some(alt.clone()),
            _ => Some(pair.main.clone()),
        }
    }
}

/// The server config of an `ssl` listener; ALPN offers `h2` only with `http2`.
pub fn server_config(resolver: Arc<SniResolver>, http2: bool) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

// === client side ===

/// How a service's upstream TLS is set up.
pub struct ClientTls {
    pub verify: bool,
    /// PEM of each CA the service trusts (`ca_certificates`); empty: the proxy's roots.
    pub cas: Vec<String>,
    /// `client_certificate` as (cert, key) PEM.
    pub client_cert: Option<(String, String)>,
    pub h2: bool,
}

pub fn client_config(
    tls: &ClientTls,
    default_roots: Option<&Arc<RootCertStore>>,
) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.verify {
        let roots = if tls.cas.is_empty() {
            default_roots
                .cloned()
                .unwrap_or_else(|| Arc::new(RootCertStore::empty()))
        } else {
            let mut roots = RootCertStore::empty();
            for pem in &tls.cas {
                for c in parse_certs(pem)? {
                    roots
                        .add(c)
                        .map_err(|e| format!("bad CA certificate: {e}"))?;
                }
            }
            Arc::new(roots)
        };
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    };
    let mut config = match &tls.client_cert {
        Some((cert, key)) => {
            let chain = parse_certs(cert)?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("cannot read the client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = if tls.h2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// Roots from a PEM bundle (Kong's `lua_ssl_trusted_certificate`).
pub fn roots_from_pem(pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in parse_certs(pem)? {
        roots
            .add(c)
            .map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    Ok(roots)
}

pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|e| format!("invalid server name {host:?}: {e}"))
}

/// `tls_verify` off (Kong's default, nginx's `proxy_ssl_verify off`): any certificate is
/// accepted, but handshake signatures are still checked.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
