//! Certificate generation, so that nobody needs openssl to try tidegate:
//!
//! - `gen_cert`, behind `tidegate hybrid gen_cert`: a `shared`-mode pair, as Kong's
//!   `kong hybrid gen_cert` makes (EC P-384, CN `kong_clustering`, three years by default).
//! - `gen_ca` and `issue`: a private CA and certificates signed by it, for links that
//!   verify peers against a CA (the Raft link's `raft_ca_cert`, `pki` mode here). The
//!   quickstart makes its Raft credentials with them.

use std::net::IpAddr;

use rcgen::string::Ia5String;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use tidegate_model::calendar::civil_from_days;

use crate::SHARED_SERVER_NAME;

pub struct GeneratedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA made by `gen_ca`. Its key stays in memory, never serialised: a caller that
/// wants nothing more signed after start-up (the quickstart) just drops it.
pub struct GeneratedCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A self-signed certificate valid from `now_unix` (the day before, against clock skew
/// between nodes) for `days` days.
pub fn gen_cert(now_unix: i64, days: u32) -> Result<GeneratedCert, String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .map_err(|e| format!("cannot generate an EC P-384 key: {e}"))?;
    let mut params =
        CertificateParams::new(vec![SHARED_SERVER_NAME.to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name = common_name_dn(SHARED_SERVER_NAME);
    set_validity(&mut params, now_unix, days);
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign the certificate: {e}"))?;
    Ok(GeneratedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A self-signed CA named `common_name`, valid as `gen_cert`'s certificates are. It may
/// sign certificates and CRLs only, with no path length limit (it signs leaves directly).
pub fn gen_ca(now_unix: i64, days: u32, common_name: &str) -> Result<GeneratedCa, String> {
    let key = new_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, now_unix, days);
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign the CA certificate: {e}"))?;
    Ok(GeneratedCa {
        cert_pem: cert.pem(),
        issuer: Issuer::new(params, key),
    })
}

/// A certificate signed by `ca` for `dns_names` and `ips`, usable both as a server and
/// as a client: on a mutual-TLS link between peers (Raft) every node is both.
pub fn issue(
    ca: &GeneratedCa,
    now_unix: i64,
    days: u32,
    common_name: &str,
    dns_names: &[&str],
    ips: &[IpAddr],
) -> Result<GeneratedCert, String> {
    let key = new_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(common_name);
    for name in dns_names {
        let dns =
            Ia5String::try_from(*name).map_err(|e| format!("invalid DNS name '{name}': {e}"))?;
        params.subject_alt_names.push(SanType::DnsName(dns));
    }
    params
        .subject_alt_names
        .extend(ips.iter().copied().map(SanType::IpAddress));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    // Lets verifiers pick the right CA key should the CA ever be re-issued.
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now_unix, days);
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(|e| format!("cannot sign the certificate for '{common_name}': {e}"))?;
    Ok(GeneratedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// EC P-256 for CA-signed certificates: what every TLS stack verifies, and quicker to
/// generate than `gen_cert`'s P-384 (the quickstart makes four at each first start).
fn new_key() -> Result<KeyPair, String> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("cannot generate an EC P-256 key: {e}"))
}

fn common_name_dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// From the day before `now_unix`, against clock skew between nodes, to `days` days on.
fn set_validity(params: &mut CertificateParams, now_unix: i64, days: u32) {
    let day = now_unix.div_euclid(86_400);
    // The dates are centuries inside rcgen's range: the narrowing casts cannot cut.
    let (y, m, d) = civil_from_days(day - 1);
    params.not_before = date_time_ymd(y as i32, m as u8, d as u8);
    let (y, m, d) = civil_from_days(day + i64::from(days));
    params.not_after = date_time_ymd(y as i32, m as u8, d as u8);
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use std::time::{SystemTime, UNIX_EPOCH};

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

    use super::{gen_ca, issue, GeneratedCa, GeneratedCert};

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// rustls checks validity against the real clock, so the certificates start today:
    /// a test reading the wall clock, not code a simulation runs.
    #[allow(clippy::disallowed_methods)]
    fn now() -> i64 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        i64::try_from(secs).unwrap()
    }

    fn peer(ca: &GeneratedCa, name: &str) -> GeneratedCert {
        issue(ca, now(), 30, name, &["localhost"], &[LOCALHOST]).unwrap()
    }

    fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn roots(ca: &GeneratedCa) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        for c in chain(&ca.cert_pem) {
            roots.add(c).unwrap();
        }
        Arc::new(roots)
    }

    /// A server that requires a client certificate signed by `trusted`, presenting `me`.
    fn server(trusted: &GeneratedCa, me: &GeneratedCert) -> ServerConnection {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots(trusted), provider.clone())
                .build()
                .unwrap();
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                chain(&me.cert_pem),
                PrivateKeyDer::from_pem_slice(me.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        ServerConnection::new(Arc::new(config)).unwrap()
    }

    /// A client that trusts servers signed by `trusted`, presenting `me`, dialling `name`.
    fn client(trusted: &GeneratedCa, me: &GeneratedCert, name: &str) -> ClientConnection {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(trusted))
            .with_client_auth_cert(
                chain(&me.cert_pem),
                PrivateKeyDer::from_pem_slice(me.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        ClientConnection::new(Arc::new(config), name).unwrap()
    }

    /// Moves TLS records between the two in memory until both finish the handshake or
    /// one refuses the other; Err names the side that refused and why.
    fn handshake(c: &mut ClientConnection, s: &mut ServerConnection) -> Result<(), String> {
        // A TLS 1.3 handshake with client certificates takes a few flights; more rounds
        // than this means the loop is stuck, not slow.
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets()
                    .map_err(|e| format!("server refused: {e}"))?;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets()
                    .map_err(|e| format!("client refused: {e}"))?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        Err("the handshake did not finish".into())
    }

    #[test]
    fn issued_certificates_pass_mutual_tls_and_another_cas_do_not() {
        let ca = gen_ca(now(), 30, "test CA").unwrap();
        let (a, b) = (peer(&ca, "cp1"), peer(&ca, "cp2"));
        // Both SANs work as the server's name, and each certificate serves both ends.
        handshake(&mut client(&ca, &b, "127.0.0.1"), &mut server(&ca, &a)).unwrap();
        handshake(&mut client(&ca, &a, "localhost"), &mut server(&ca, &b)).unwrap();

        let err = handshake(&mut client(&ca, &b, "10.0.0.1"), &mut server(&ca, &a)).unwrap_err();
        assert!(
            err.starts_with("client refused") && err.contains("not valid for name"),
            "{err}"
        );

        let other = gen_ca(now(), 30, "other CA").unwrap();
        let stranger = peer(&other, "cp9");
        // A client certificate from another CA, refused by the server...
        let err = handshake(
            &mut client(&ca, &stranger, "127.0.0.1"),
            &mut server(&ca, &a),
        )
        .unwrap_err();
        assert!(
            err.starts_with("server refused") && err.contains("UnknownIssuer"),
            "{err}"
        );
        // ...and a server certificate from another CA, refused by the client.
        let err = handshake(
            &mut client(&ca, &b, "127.0.0.1"),
            &mut server(&ca, &stranger),
        )
        .unwrap_err();
        assert!(
            err.starts_with("client refused") && err.contains("UnknownIssuer"),
            "{err}"
        );
    }

    #[test]
    fn ca_and_leaf_say_what_they_are_for_and_are_dated_like_gen_cert() {
        use x509_parser::extensions::GeneralName;
        // 2026-11-18 11:06 UTC: valid from 2026-11-17 00:00 to 2026-12-18 00:00 UTC.
        let now = 1_795_000_000;
        let (from, until) = (1_794_873_600, 1_797_552_000);
        let ca = gen_ca(now, 30, "test CA").unwrap();
        let leaf = issue(&ca, now, 30, "cp1", &["localhost"], &[LOCALHOST]).unwrap();

        let ca_der = pem::parse(&ca.cert_pem).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(ca_der.contents()).unwrap();
        assert!(ca_cert.basic_constraints().unwrap().unwrap().value.ca);
        assert!(ca_cert.key_usage().unwrap().unwrap().value.key_cert_sign());
        assert_eq!(ca_cert.validity().not_before.timestamp(), from);
        assert_eq!(ca_cert.validity().not_after.timestamp(), until);

        let leaf_der = pem::parse(&leaf.cert_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(leaf_der.contents()).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert!(cert
            .basic_constraints()
            .unwrap()
            .is_none_or(|b| !b.value.ca));
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let sans = &cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        assert_eq!(
            sans,
            &[
                GeneralName::DNSName("localhost"),
                GeneralName::IPAddress(&[127, 0, 0, 1])
            ]
        );
        assert_eq!(cert.validity().not_before.timestamp(), from);
        assert_eq!(cert.validity().not_after.timestamp(), until);
        assert!(leaf.key_pem.contains("PRIVATE KEY"));

        let err = issue(&ca, now, 30, "cp1", &["bad name é"], &[])
            .err()
            .unwrap();
        assert!(err.contains("invalid DNS name"), "{err}");
    }
}
