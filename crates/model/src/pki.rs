//! Certificate and private-key validation, re-implementing what Kong checks
//! when a certificate entity is created: both PEMs must parse, and the key
//! must be the private half of the certificate's public key.
//!
//! Pure: no I/O, no clock, no OS randomness. Validity dates are returned for
//! the caller to compare against its own notion of "now".

use ring::agreement;
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    Ec,
    Ed25519,
}

#[derive(Debug, Clone)]
pub struct CertInfo {
    /// sha256 of the DER of the first certificate, lowercase hex (Kong's `cert_digest`)
    pub digest: String,
    pub not_before: i64, // unix seconds
    pub not_after: i64,  // unix seconds
    pub is_ca: bool,     // basicConstraints CA:TRUE
    pub key_type: KeyType,
    /// raw subject public key bytes (the BIT STRING content of SubjectPublicKeyInfo)
    pub public_key: Vec<u8>,
    /// DNS names from subjectAltName, then the subject CN if no SAN (may be empty)
    pub names: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub key_type: KeyType,
    pub public_key: Vec<u8>,
}

/// Bounds parsing work on untrusted admin input.
const MAX_PEM_LEN: usize = 64 * 1024;

// DER content bytes of the OIDs we accept.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_CTX0: u8 = 0xa0; // [0] constructed
const TAG_CTX1: u8 = 0xa1; // [1] constructed
const TAG_CTX1_PRIM: u8 = 0x81; // [1] IMPLICIT BIT STRING (PKCS#8 v2 publicKey)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn from_oid(oid: &[u8]) -> Option<Curve> {
        match oid {
            OID_P256 => Some(Curve::P256),
            OID_P384 => Some(Curve::P384),
            OID_P521 => Some(Curve::P521),
            _ => None,
        }
    }

    fn scalar_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// Uncompressed point: 0x04 || X || Y.
    fn point_len(self) -> usize {
        1 + 2 * self.scalar_len()
    }
}

/// Parses the first certificate of a PEM string (a chain may follow; each further block must also parse).
pub fn parse_cert(pem: &str) -> Result<CertInfo, String> {
    let fail = |reason: &str| format!("invalid certificate: {reason}");
    if pem.len() > MAX_PEM_LEN {
        return Err(fail("too large"));
    }
    let blocks = pem::parse_many(pem).map_err(|e| fail(&format!("malformed PEM ({e})")))?;
    if blocks.is_empty() {
        return Err(fail("no PEM certificate found"));
    }
    let mut first = None;
    for (i, block) in blocks.iter().enumerate() {
        // Prefix chain errors with the position so the admin knows which block is bad.
        let at = |reason: String| {
            if i == 0 {
                fail(&reason)
            } else {
                fail(&format!("chain certificate #{}: {reason}", i + 1))
            }
        };
        if block.tag() != "CERTIFICATE" {
            return Err(at(format!("unexpected PEM block \"{}\"", block.tag())));
        }
        let der = block.contents();
        let cert = match X509Certificate::from_der(der) {
            Ok((rest, _)) if !rest.is_empty() => {
                return Err(at("trailing data after certificate".into()));
            }
            Ok((_, cert)) => cert,
            Err(x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e)) => {
                return Err(at(format!("malformed certificate ({e})")));
            }
            Err(x509_parser::nom::Err::Incomplete(_)) => {
                return Err(at("truncated certificate".into()));
            }
        };
        if i == 0 {
            first = Some(cert_info(der, &cert).map_err(|r| at(r.into()))?);
        }
    }
    // blocks is non-empty, so the first iteration set it.
    first.ok_or_else(|| fail("no PEM certificate found"))
}

fn cert_info(der: &[u8], cert: &X509Certificate<'_>) -> Result<CertInfo, &'static str> {
    let (key_type, public_key) = cert_public_key(cert)?;

    let mut is_ca = false;
    let mut san_dns = Vec::new();
    let mut seen_bc = false;
    let mut seen_san = false;
    // x509-parser silently maps unparseable extensions to ParseError; the two
    // we report on must not be ambiguous, so reject malformed or duplicate ones.
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                if std::mem::replace(&mut seen_bc, true) {
                    return Err("duplicate basicConstraints extension");
                }
                is_ca = bc.ca;
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                if std::mem::replace(&mut seen_san, true) {
                    return Err("duplicate subjectAltName extension");
                }
                san_dns.extend(san.general_names.iter().filter_map(|gn| match gn {
                    GeneralName::DNSName(name) => Some(name.to_string()),
                    _ => None,
                }));
            }
            ParsedExtension::ParseError { .. } => {
                if ext.oid == x509_parser::oid_registry::OID_X509_EXT_BASIC_CONSTRAINTS {
                    return Err("malformed basicConstraints extension");
                }
                if ext.oid == x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME {
                    return Err("malformed subjectAltName extension");
                }
            }
            _ => {}
        }
    }

    // RFC 6125: the CN is only an identity when no DNS SAN is present. The
    // last CN is the most specific one (same choice as OpenSSL and Go).
    let names = if san_dns.is_empty() {
        cert.subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .last()
            .map(|cn| vec![cn.to_string()])
            .unwrap_or_default()
    } else {
        san_dns
    };

    Ok(CertInfo {
        digest: hex::encode(Sha256::digest(der)),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca,
        key_type,
        public_key,
        names,
    })
}

fn cert_public_key(cert: &X509Certificate<'_>) -> Result<(KeyType, Vec<u8>), &'static str> {
    let spki = cert.public_key();
    if spki.subject_public_key.unused_bits != 0 {
        return Err("malformed subject public key");
    }
    let key = spki.subject_public_key.data.as_ref();
    match spki.algorithm.algorithm.as_bytes() {
        OID_RSA_ENCRYPTION => {
            // Strict DER parse: guarantees the raw bytes equal the canonical
            // encoding we build from private keys, so byte equality is sound.
            let mut outer = Der::new(key);
            let mut seq = Der::new(outer.read(TAG_SEQUENCE)?);
            outer.finish()?;
            seq.read_positive_int()?;
            seq.read_positive_int()?;
            seq.finish().map_err(|_| "malformed RSA public key")?;
            Ok((KeyType::Rsa, key.to_vec()))
        }
        OID_EC_PUBLIC_KEY => {
            let params = spki
                .algorithm
                .parameters
                .as_ref()
                .ok_or("missing EC curve parameters")?;
            if params.header.tag().0 != u32::from(TAG_OID) {
                return Err("unsupported EC curve parameters");
            }
            let curve = Curve::from_oid(params.data).ok_or("unsupported EC curve")?;
            // Only the uncompressed form is comparable with keys; point length
            // also pins the curve, so equal bytes imply equal curves.
            if key.len() != curve.point_len() || key[0] != 0x04 {
                return Err("unsupported EC public key encoding");
            }
            Ok((KeyType::Ec, key.to_vec()))
        }
        OID_ED25519 => {
            if key.len() != 32 {
                return Err("malformed Ed25519 public key");
            }
            Ok((KeyType::Ed25519, key.to_vec()))
        }
        _ => Err("unsupported public key algorithm"),
    }
}

/// Parses a PEM private key: PKCS#8 ("PRIVATE KEY": RSA, EC P-256/P-384, Ed25519), PKCS#1 ("RSA PRIVATE KEY"), SEC1 ("EC PRIVATE KEY", with or without the embedded public key).
pub fn parse_key(pem: &str) -> Result<KeyInfo, String> {
    let fail = |reason: &str| format!("invalid key: {reason}");
    if pem.len() > MAX_PEM_LEN {
        return Err(fail("too large"));
    }
    let blocks = pem::parse_many(pem).map_err(|e| fail(&format!("malformed PEM ({e})")))?;
    let mut key = None;
    for block in &blocks {
        match block.tag() {
            // `openssl ecparam -genkey` emits this before the key; the key
            // carries the curve itself.
            "EC PARAMETERS" => {}
            "ENCRYPTED PRIVATE KEY" => return Err(fail("encrypted keys are not supported")),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                if key.replace(block).is_some() {
                    return Err(fail("more than one private key"));
                }
            }
            other => return Err(fail(&format!("unexpected PEM block \"{other}\""))),
        }
    }
    let block = key.ok_or_else(|| fail("no PEM private key found"))?;
    // Legacy OpenSSL encryption keeps the "RSA/EC PRIVATE KEY" tag and marks it in a header.
    if block
        .headers()
        .get("Proc-Type")
        .is_some_and(|v| v.contains("ENCRYPTED"))
    {
        return Err(fail("encrypted keys are not supported"));
    }
    let der = block.contents();
    let parsed = match block.tag() {
        "RSA PRIVATE KEY" => parse_pkcs1(der),
        "EC PRIVATE KEY" => parse_sec1(der, None),
        _ => parse_pkcs8(der),
    };
    parsed.map_err(fail)
}

/// Whether the key is the private half of the certificate's public key.
pub fn key_matches(cert: &CertInfo, key: &KeyInfo) -> bool {
    cert.key_type == key.key_type && cert.public_key == key.public_key
}

/// PKCS#8 PrivateKeyInfo / OneAsymmetricKey (RFC 5208, RFC 5958).
fn parse_pkcs8(der: &[u8]) -> Result<KeyInfo, &'static str> {
    let mut outer = Der::new(der);
    let mut seq = Der::new(outer.read(TAG_SEQUENCE)?);
    outer.finish()?;
    if seq.read_small_uint()? > 1 {
        return Err("unsupported PKCS#8 version");
    }
    let mut alg = Der::new(seq.read(TAG_SEQUENCE)?);
    let oid = alg.read(TAG_OID)?;
    let params = if alg.is_empty() {
        None
    } else {
        Some(alg.read_any()?)
    };
    alg.finish()?;
    let private_key = seq.read(TAG_OCTET_STRING)?;
    seq.read_optional(TAG_CTX0)?; // attributes
    seq.read_optional(TAG_CTX1_PRIM)?; // v2 publicKey: we derive it instead
    seq.finish()?;

    match oid {
        OID_RSA_ENCRYPTION => {
            if !matches!(params, None | Some((TAG_NULL, []))) {
                return Err("unexpected RSA algorithm parameters");
            }
            parse_pkcs1(private_key)
        }
        OID_EC_PUBLIC_KEY => match params {
            Some((TAG_OID, curve)) => {
                let curve = Curve::from_oid(curve).ok_or("unsupported EC curve")?;
                parse_sec1(private_key, Some(curve))
            }
            None => parse_sec1(private_key, None),
            Some(_) => Err("unsupported EC curve parameters"),
        },
        OID_ED25519 => {
            // ring also checks the v2 embedded public key when present.
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|_| "malformed Ed25519 private key")?;
            Ok(KeyInfo {
                key_type: KeyType::Ed25519,
                public_key: pair.public_key().as_ref().to_vec(),
            })
        }
        _ => Err("unsupported key algorithm"),
    }
}

/// PKCS#1 RSAPrivateKey (RFC 8017 A.1.2). Parsed by hand rather than with
/// ring so that keys ring refuses (e.g. 1024-bit) still validate as Kong does.
fn parse_pkcs1(der: &[u8]) -> Result<KeyInfo, &'static str> {
    let mut outer = Der::new(der);
    let mut seq = Der::new(outer.read(TAG_SEQUENCE)?);
    outer.finish()?;
    let version = seq.read_small_uint()?;
    if version > 1 {
        return Err("unsupported RSA key version");
    }
    let n = seq.read_positive_int()?;
    let e = seq.read_positive_int()?;
    // privateExponent, prime1, prime2, exponent1, exponent2, coefficient
    for _ in 0..6 {
        seq.read_positive_int()?;
    }
    if version == 1 {
        seq.read_optional(TAG_SEQUENCE)?; // otherPrimeInfos
    }
    seq.finish()?;

    // RSAPublicKey ::= SEQUENCE { modulus, publicExponent }, same bytes as the
    // certificate's SPKI BIT STRING since both sides are minimal DER.
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    encode_tlv(&mut body, TAG_INTEGER, n);
    encode_tlv(&mut body, TAG_INTEGER, e);
    let mut public_key = Vec::with_capacity(body.len() + 4);
    encode_tlv(&mut public_key, TAG_SEQUENCE, &body);
    Ok(KeyInfo {
        key_type: KeyType::Rsa,
        public_key,
    })
}

/// SEC1 ECPrivateKey (RFC 5915). `outer_curve` comes from the PKCS#8 wrapper.
fn parse_sec1(der: &[u8], outer_curve: Option<Curve>) -> Result<KeyInfo, &'static str> {
    let mut outer = Der::new(der);
    let mut seq = Der::new(outer.read(TAG_SEQUENCE)?);
    outer.finish()?;
    if seq.read_small_uint()? != 1 {
        return Err("unsupported EC key version");
    }
    let scalar = seq.read(TAG_OCTET_STRING)?;
    let inner_curve = match seq.read_optional(TAG_CTX0)? {
        Some(params) => {
            let mut params = Der::new(params);
            let (tag, oid) = params.read_any()?;
            params.finish()?;
            if tag != TAG_OID {
                return Err("unsupported EC curve parameters");
            }
            Some(Curve::from_oid(oid).ok_or("unsupported EC curve")?)
        }
        None => None,
    };
    let embedded = match seq.read_optional(TAG_CTX1)? {
        Some(wrapped) => {
            let mut wrapped = Der::new(wrapped);
            let bits = wrapped.read(TAG_BIT_STRING)?;
            wrapped.finish()?;
            match bits.split_first() {
                Some((0, point)) => Some(point),
                _ => return Err("malformed EC public key"),
            }
        }
        None => None,
    };
    seq.finish()?;

    let curve = match (outer_curve, inner_curve) {
        (Some(a), Some(b)) if a != b => return Err("conflicting EC curve parameters"),
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => return Err("missing EC curve parameters"),
    };
    let public_key = ec_public_key(curve, scalar)?;
    // A stale embedded point would make key_matches lie, so insist it agrees
    // with the point derived from the private scalar.
    if embedded.is_some_and(|point| point != public_key.as_slice()) {
        return Err("EC public key does not match private key");
    }
    Ok(KeyInfo {
        key_type: KeyType::Ec,
        public_key,
    })
}

/// Derives the uncompressed public point d·G with ring's constant-time code.
///
/// ring has no public "scalar to public key" API (its PKCS#8 loader demands
/// the public key be embedded), so the scalar is fed through key generation
/// via ring's fixed-output RNG. That RNG is a deprecated internal type; ring
/// 0.17 keeps it, and a ring upgrade must revisit this function.
#[allow(deprecated)]
fn ec_public_key(curve: Curve, scalar: &[u8]) -> Result<Vec<u8>, &'static str> {
    let alg = match curve {
        Curve::P256 => &agreement::ECDH_P256,
        Curve::P384 => &agreement::ECDH_P384,
        Curve::P521 => return Err("unsupported EC curve"),
    };
    // RFC 5915 fixes the length, but old encoders dropped leading zeros.
    let len = curve.scalar_len();
    let start = scalar.iter().position(|&b| b != 0).unwrap_or(scalar.len());
    let significant = &scalar[start..];
    if significant.len() > len {
        return Err("invalid EC private key");
    }
    let mut padded = vec![0u8; len];
    padded[len - significant.len()..].copy_from_slice(significant);
    // Exactly one fill of exactly `len` bytes happens; ring rejects 0 and
    // values >= n (after retrying the same bytes), which we report as invalid.
    let rng = ring::test::rand::FixedSliceRandom { bytes: &padded };
    let private = agreement::EphemeralPrivateKey::generate(alg, &rng)
        .map_err(|_| "invalid EC private key")?;
    let public = private
        .compute_public_key()
        .map_err(|_| "invalid EC private key")?;
    Ok(public.as_ref().to_vec())
}

fn encode_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// Minimal strict-DER reader for the key structures above: definite,
/// minimally encoded lengths and low-number tags only.
struct Der<'a> {
    buf: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Der { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn finish(&self) -> Result<(), &'static str> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err("trailing data in DER structure")
        }
    }

    fn read_any(&mut self) -> Result<(u8, &'a [u8]), &'static str> {
        const TRUNCATED: &str = "truncated DER structure";
        let (&tag, rest) = self.buf.split_first().ok_or(TRUNCATED)?;
        if tag & 0x1f == 0x1f {
            return Err("unsupported DER tag");
        }
        let (&first, mut rest) = rest.split_first().ok_or(TRUNCATED)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            // 0x80 (indefinite) is BER-only; 3 length bytes cover any input under the PEM cap.
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 3 || rest.len() < count {
                return Err("invalid DER length");
            }
            let (bytes, tail) = rest.split_at(count);
            rest = tail;
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if bytes[0] == 0 || len < 0x80 {
                return Err("non-minimal DER length");
            }
            len
        };
        if rest.len() < len {
            return Err(TRUNCATED);
        }
        let (content, tail) = rest.split_at(len);
        self.buf = tail;
        Ok((tag, content))
    }

    fn read(&mut self, tag: u8) -> Result<&'a [u8], &'static str> {
        match self.read_any()? {
            (t, content) if t == tag => Ok(content),
            _ => Err("unexpected DER structure"),
        }
    }

    fn read_optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, &'static str> {
        if self.buf.first() == Some(&tag) {
            self.read(tag).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A non-negative, non-zero, minimally encoded INTEGER; returns its DER content.
    fn read_positive_int(&mut self) -> Result<&'a [u8], &'static str> {
        let content = self.read(TAG_INTEGER)?;
        match content {
            [] => Err("invalid DER integer"),
            [b, ..] if b & 0x80 != 0 => Err("negative integer in key"),
            [0, next, ..] if next & 0x80 == 0 => Err("non-minimal DER integer"),
            [0] => Err("zero integer in key"),
            _ => Ok(content),
        }
    }

    fn read_small_uint(&mut self) -> Result<u8, &'static str> {
        match self.read(TAG_INTEGER)? {
            [v] if v & 0x80 == 0 => Ok(*v),
            _ => Err("unsupported version"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, KeyPair,
        SignatureAlgorithm,
    };

    // Generated once with the openssl CLI (see the brief); rcgen cannot make
    // RSA keys, and SEC1/PKCS#1 encodings must come from a real encoder.
    const RSA2048_KEY_PKCS8: &str = "\
    -----BEGIN PRIVATE KEY-----\n\
    MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCZu5IOPB5xN249\n\
    PgWdUCXob1T8eYTK2hXr4pRw9tMjjkubXE9AF3Rn2yahED323x7NMe2LTmmzX35K\n\
    Cn7M3u6SHi8i31yeYz7HehccczxIA8Pmhvb+KsZaJ2ufI416HD8+1oXYea+QI3Rf\n\
    Z6rsbygN3wYxhsmyzfk2Stvce36JaMA+QgirSL6bojDz9oVqIEl+zfP5wueit7nB\n\
    wmshGIJNkEDc0blYJIst8CLCNrQHEFQUgX1lMt7+JzpaKx0hvVIOQLNiAXcSJq4l\n\
    QAIhFPDF2AdNJXGWLGd1AxWFRPD8aGipdwK42zXyPgFUxnm2B6rXUTwJc4X2L4Rb\n\
    Fa6FmG2ZAgMBAAECggEAArSjJlZ8XQGSJ7Lw04W0ARen2dYEAQjzuVDQdtN/6vXd\n\
    Ep5+M5J7b+d9Z3jFymjqCHJQQV3PgkK+54EwnZzv0HOxCy6oro3wbn98Ks9EDeq+\n\
    YXnZx3vhEqLzzoYdk5BYiZvUw7b9Nhl1pHHf4iThAit9Fv/jCrSm0Jk32N/LMz0K\n\
    extlQfNuQRaHbeXRiVGhw2i69RoSBQtUvtO3uq5mx3xUiR6iURogMo5JvgLXj65Y\n\
    CCOe6czuarSn6zgeiHQxxzbsirJMASC+xKkXAiQTGGdvA25Gaytlh4pN2aQrY43l\n\
    cuL9i+omY5viGRKufozgBpq/dGBnDs3TAoEZbHofoQKBgQDPPfmgGJ9oiou0DTCV\n\
    vtk0/htdR/2ul8PjrPrVTssXBeoHE7JXtojCHI3+MNC14Ikb5r0E0OlEq9ALnxhy\n\
    nModnGWhuLKYOUnA2DoZqwCprp0w1DBcKwxsL7/TNpkVbqPZQGXNP/K+VTRYnJyg\n\
    k9ZKqeo9icum41Kal2tfL9k7MQKBgQC95sSCGBqKUCtnHHeHXAEhG5UnjbdJeoPf\n\
    XjKSIFNYsrvqooVvyJxBXHFDAEfF6xEdGs/7dE5KHK/JYhTPpIJBUctwS8YWL0Z8\n\
    pULLr6NdMqvPTsdI2Vhi71TRPHxRGal7URK9h5/EVPkm44eNI3FMdyPEcyW2crc5\n\
    HLw2Fvru6QKBgG8ru8DZ9IlL6O1JNgreOf5nYZ6Eg90opHh5zoSmo+NR1Ny/ACh1\n\
    Tp9yWelFnnAyZtqEyFjRCJFB6XSSf7bbzMBdqVc7kPJ/qMS+OUyTouNjPAd5jAel\n\
    QCC47JoM68nHdDWSigm0iC753f665HpvU8DxrSodxRVdVG6BU6PYMxvBAoGBALc5\n\
    rkabfRgQzB/bvpRSuCA6ncohGUSDOjPNjluhZumA4oE8OCUn2WPTDtEHtziGWufL\n\
    E/tZN6SYUx+qS8wgvTDK+9AovEJxcMAZL/6ZQ7VLi6wlJXDrjDVBGIQdqRETAoyi\n\
    J8PI1OU424CjLgmGte2CUndcZnnH63Lmf85sk8bpAoGBAJNgiK7KmTdzrN1O3CZQ\n\
    cGMaiwkBjOcYUZj1OXeU/i0bwV/wCdwVvOGZJJoV+JgE6+oO19/1KrR3W9T//Zb+\n\
    VXaX/J0jfDLXg3b6ph7DYe3nX3/1il/v6pPpqm2cyYovO84qU33rv0R7Z5HE4LcK\n\
    6JSynanYPcKBI9eZsHhGsoku\n\
    -----END PRIVATE KEY-----\n";

    const RSA2048_KEY_PKCS1: &str = "\
    -----BEGIN RSA PRIVATE KEY-----\n\
    MIIEpAIBAAKCAQEAmbuSDjwecTduPT4FnVAl6G9U/HmEytoV6+KUcPbTI45Lm1xP\n\
    QBd0Z9smoRA99t8ezTHti05ps19+Sgp+zN7ukh4vIt9cnmM+x3oXHHM8SAPD5ob2\n\
    /irGWidrnyONehw/PtaF2HmvkCN0X2eq7G8oDd8GMYbJss35Nkrb3Ht+iWjAPkII\n\
    q0i+m6Iw8/aFaiBJfs3z+cLnore5wcJrIRiCTZBA3NG5WCSLLfAiwja0BxBUFIF9\n\
    ZTLe/ic6WisdIb1SDkCzYgF3EiauJUACIRTwxdgHTSVxlixndQMVhUTw/GhoqXcC\n\
    uNs18j4BVMZ5tgeq11E8CXOF9i+EWxWuhZhtmQIDAQABAoIBAAK0oyZWfF0Bkiey\n\
    8NOFtAEXp9nWBAEI87lQ0HbTf+r13RKefjOSe2/nfWd4xcpo6ghyUEFdz4JCvueB\n\
    MJ2c79BzsQsuqK6N8G5/fCrPRA3qvmF52cd74RKi886GHZOQWImb1MO2/TYZdaRx\n\
    3+Ik4QIrfRb/4wq0ptCZN9jfyzM9CnsbZUHzbkEWh23l0YlRocNouvUaEgULVL7T\n\
    t7quZsd8VIkeolEaIDKOSb4C14+uWAgjnunM7mq0p+s4Hoh0Mcc27IqyTAEgvsSp\n\
    FwIkExhnbwNuRmsrZYeKTdmkK2ON5XLi/YvqJmOb4hkSrn6M4Aaav3RgZw7N0wKB\n\
    GWx6H6ECgYEAzz35oBifaIqLtA0wlb7ZNP4bXUf9rpfD46z61U7LFwXqBxOyV7aI\n\
    whyN/jDQteCJG+a9BNDpRKvQC58YcpzKHZxlobiymDlJwNg6GasAqa6dMNQwXCsM\n\
    bC+/0zaZFW6j2UBlzT/yvlU0WJycoJPWSqnqPYnLpuNSmpdrXy/ZOzECgYEAvebE\n\
    ghgailArZxx3h1wBIRuVJ423SXqD314ykiBTWLK76qKFb8icQVxxQwBHxesRHRrP\n\
    +3ROShyvyWIUz6SCQVHLcEvGFi9GfKVCy6+jXTKrz07HSNlYYu9U0Tx8URmpe1ES\n\
    vYefxFT5JuOHjSNxTHcjxHMltnK3ORy8Nhb67ukCgYBvK7vA2fSJS+jtSTYK3jn+\n\
    Z2GehIPdKKR4ec6EpqPjUdTcvwAodU6fclnpRZ5wMmbahMhY0QiRQel0kn+228zA\n\
    XalXO5Dyf6jEvjlMk6LjYzwHeYwHpUAguOyaDOvJx3Q1kooJtIgu+d3+uuR6b1PA\n\
    8a0qHcUVXVRugVOj2DMbwQKBgQC3Oa5Gm30YEMwf276UUrggOp3KIRlEgzozzY5b\n\
    oWbpgOKBPDglJ9lj0w7RB7c4hlrnyxP7WTekmFMfqkvMIL0wyvvQKLxCcXDAGS/+\n\
    mUO1S4usJSVw64w1QRiEHakREwKMoifDyNTlONuAoy4JhrXtglJ3XGZ5x+ty5n/O\n\
    bJPG6QKBgQCTYIiuypk3c6zdTtwmUHBjGosJAYznGFGY9Tl3lP4tG8Ff8AncFbzh\n\
    mSSaFfiYBOvqDtff9Sq0d1vU//2W/lV2l/ydI3wy14N2+qYew2Ht519/9Ypf7+qT\n\
    6aptnMmKLzvOKlN9679Ee2eRxOC3CuiUsp2p2D3CgSPXmbB4RrKJLg==\n\
    -----END RSA PRIVATE KEY-----\n";

    const RSA2048_CERT: &str = "\
    -----BEGIN CERTIFICATE-----\n\
    MIIDTDCCAjSgAwIBAgIUT0+msIzKu8aHxXq8RgITHx7NOKgwDQYJKoZIhvcNAQEL\n\
    BQAwGzEZMBcGA1UEAwwQcnNhLmV4YW1wbGUudGVzdDAeFw0yNjExMjYwOTE1NTFa\n\
    Fw0zNjExMjMwOTE1NTFaMBsxGTAXBgNVBAMMEHJzYS5leGFtcGxlLnRlc3QwggEi\n\
    MA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQCZu5IOPB5xN249PgWdUCXob1T8\n\
    eYTK2hXr4pRw9tMjjkubXE9AF3Rn2yahED323x7NMe2LTmmzX35KCn7M3u6SHi8i\n\
    31yeYz7HehccczxIA8Pmhvb+KsZaJ2ufI416HD8+1oXYea+QI3RfZ6rsbygN3wYx\n\
    hsmyzfk2Stvce36JaMA+QgirSL6bojDz9oVqIEl+zfP5wueit7nBwmshGIJNkEDc\n\
    0blYJIst8CLCNrQHEFQUgX1lMt7+JzpaKx0hvVIOQLNiAXcSJq4lQAIhFPDF2AdN\n\
    JXGWLGd1AxWFRPD8aGipdwK42zXyPgFUxnm2B6rXUTwJc4X2L4RbFa6FmG2ZAgMB\n\
    AAGjgYcwgYQwHQYDVR0OBBYEFJSujfDB4xAlbCyAlHJWU9Z4w1nmMB8GA1UdIwQY\n\
    MBaAFJSujfDB4xAlbCyAlHJWU9Z4w1nmMA8GA1UdEwEB/wQFMAMBAf8wMQYDVR0R\n\
    BCowKIIQcnNhLmV4YW1wbGUudGVzdIIUd3d3LnJzYS5leGFtcGxlLnRlc3QwDQYJ\n\
    KoZIhvcNAQELBQADggEBAH2DqHs1X+6saRvDWIwB3jQEEKKk5+R+GSexjqpxp4B6\n\
    +q4HilH0o90hzoDuL6GOVw/8DoWsegnoAGQ6uw9kECEmki8Xlg7HixZo1gcYSO9B\n\
    1iJpo2usSvos4XyepR4LY3BiPRfdSkQwL4aNzU11dN0N3h97tLJ5Xx7sSMnaRbTi\n\
    YTlfusRCcyEdBpXHvijK/+ZShOjcyWeBsQOez5CTs06AlrgdPSjdXItM3gow4MVR\n\
    r3QJ95tBokpVuDEYugQje2HHNE0ZAeS4SvHgaE6tn+/X/gwBudI3Y3cSwrt6LCsx\n\
    FPSaBQF/Z8/wr5ShRrLlwbC29g9qDsP24gxYRB3Hnoc=\n\
    -----END CERTIFICATE-----\n";

    const RSA1024_KEY_PKCS1: &str = "\
    -----BEGIN RSA PRIVATE KEY-----\n\
    MIICWwIBAAKBgQCxeKmJmjmRlPPIuY3UypVVsj1t/NU8Zd+5ZRNQROW6uMN7OTDV\n\
    pqzKcgNUmyv1BaKRttT42pszD0L4uP6tEtCf4AvCMaizMnX39yZvAFzFOz+b5lSN\n\
    0zLcUeJPq2A1YQXcUE608tfHqp4B7OFi2UiifEMl38nYd/OczFafSKukVQIDAQAB\n\
    AoGAS8jtDPew8bwbxnGGYYII90lf9iHrpRkTyoWhE7v4Jh5US8CGXBYK34CEb5K7\n\
    2KwJWhQrKgGgGNPBk5jcGGhacdTkT00UrVb7UMv3J9Khf93+WKZIZa+be3QMv2+m\n\
    C5L4lHVJegXRNV2E2XMXQAgkq6YRV2wc8vxXS0aobB7dsMECQQDgAVskxNFIX15z\n\
    EKZhbcQ2jYQJcPrbTn9wANoeF/+fwmDleqYTugkMOr2r0/IECNC8RBoKWWL4ruIl\n\
    9NOdZKhtAkEAytHQlKgSnlLBVQf5FfwGfj6qQKjZDk+UTUBb/YaaQfLAiVhDWQDr\n\
    XHzaLllH7mX3TXYdJUr/1MH/XammktZKiQJATn6LJq5FO9wXZ7C87MUfDZK3YuuR\n\
    LAosw924kPUN4Tim5aL90UnOY9etoSmK0/kW0/H1Qg0ijkwR+QT6plugXQJADmsa\n\
    C+di43R4oAXgFEsFXyYvTkdynszTeyZvI7fU8YlDXMA0kXg6QynxDMh2D6GaEhyq\n\
    d8M8KrDb6Zms6NVpGQJAOKR+VCHVtb5BfVFNYv7FwCd3c/LNTozBKPotu7KlzPVW\n\
    twXA4m4h5Ekjdh6CNEqo0Y+wiYBJFj1YTkgwS5K7Rw==\n\
    -----END RSA PRIVATE KEY-----\n";

    const RSA1024_CERT: &str = "\
    -----BEGIN CERTIFICATE-----\n\
    MIICGDCCAYGgAwIBAgIUTsM36qtI7iz1wV+GmQFtFfg1DlgwDQYJKoZIhvcNAQEL\n\
    BQAwHjEcMBoGA1UEAwwTbGVnYWN5LmV4YW1wbGUudGVzdDAeFw0yNjExMjYwOTE1\n\
    NTFaFw0zNjExMjMwOTE1NTFaMB4xHDAaBgNVBAMME2xlZ2FjeS5leGFtcGxlLnRl\n\
    c3QwgZ8wDQYJKoZIhvcNAQEBBQADgY0AMIGJAoGBALF4qYmaOZGU88i5jdTKlVWy\n\
    PW381Txl37llE1BE5bq4w3s5MNWmrMpyA1SbK/UFopG21PjamzMPQvi4/q0S0J/g\n\
    C8IxqLMydff3Jm8AXMU7P5vmVI3TMtxR4k+rYDVhBdxQTrTy18eqngHs4WLZSKJ8\n\
    QyXfydh385zMVp9Iq6RVAgMBAAGjUzBRMB0GA1UdDgQWBBRk9U3CAA0gwkXnwTnZ\n\
    XEJCxtPx5TAfBgNVHSMEGDAWgBRk9U3CAA0gwkXnwTnZXEJCxtPx5TAPBgNVHRMB\n\
    Af8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA4GBAD2ZJaTHJjXWOB0jACAo8Mx2lIS/\n\
    NVUGocnBvgU5RfztHkRlZ3Gd0N81ZtZ+er/SCVfxaOQ4ggSAd1Ec/Xeo78kKIokM\n\
    MxdLKhyO+K3CHcPvwfjgwJjEDZLscNIpSuB2m+1zOPU3BJjfbEOV7TDz1Y7N49sf\n\
    1WtyZf8AQYm8NYEy\n\
    -----END CERTIFICATE-----\n";

    const P256_KEY_SEC1: &str = "\
    -----BEGIN EC PRIVATE KEY-----\n\
    MHcCAQEEIA6LWr6TXPdtZJskcS9MLoVBr42F4nR0nYGCdFEvvMssoAoGCCqGSM49\n\
    AwEHoUQDQgAEAteAUOJQnlQNLqGUrAfrUetsrWX8XF7NLdVDcJbros4WKXEFtWmM\n\
    acXoXpL7+6EYUmsJFwdrR4s3EakKp7sm1Q==\n\
    -----END EC PRIVATE KEY-----\n";

    const P256_KEY_SEC1_NO_PUBLIC: &str = "\
    -----BEGIN EC PRIVATE KEY-----\n\
    MDECAQEEIA6LWr6TXPdtZJskcS9MLoVBr42F4nR0nYGCdFEvvMssoAoGCCqGSM49\n\
    AwEH\n\
    -----END EC PRIVATE KEY-----\n";

    const P256_KEY_PKCS8_NO_PUBLIC: &str = "\
    -----BEGIN PRIVATE KEY-----\n\
    MEECAQAwEwYHKoZIzj0CAQYIKoZIzj0DAQcEJzAlAgEBBCAOi1q+k1z3bWSbJHEv\n\
    TC6FQa+NheJ0dJ2BgnRRL7zLLA==\n\
    -----END PRIVATE KEY-----\n";

    const P256_CERT: &str = "\
    -----BEGIN CERTIFICATE-----\n\
    MIIBjDCCATOgAwIBAgIUeoPDexnivbfX7XlabfcvfEjxh6IwCgYIKoZIzj0EAwIw\n\
    HDEaMBgGA1UEAwwRcDI1Ni5leGFtcGxlLnRlc3QwHhcNMjYxMTI2MDkxNTUxWhcN\n\
    MzYxMTIzMDkxNTUxWjAcMRowGAYDVQQDDBFwMjU2LmV4YW1wbGUudGVzdDBZMBMG\n\
    ByqGSM49AgEGCCqGSM49AwEHA0IABALXgFDiUJ5UDS6hlKwH61HrbK1l/FxezS3V\n\
    Q3CW66LOFilxBbVpjGnF6F6S+/uhGFJrCRcHa0eLNxGpCqe7JtWjUzBRMB0GA1Ud\n\
    DgQWBBR3dWs3IUOo2Cl753E4SSevRRuVTTAfBgNVHSMEGDAWgBR3dWs3IUOo2Cl7\n\
    53E4SSevRRuVTTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIHdE\n\
    EOTB9GvHrqIpy+2uTSIE+kYxSlcql3kyRPpCdbzqAiAQfCW93WMU9kMerU7x9Va1\n\
    Pe1kNDIqWTTfsc2LF6CFuA==\n\
    -----END CERTIFICATE-----\n";

    const P384_KEY_SEC1: &str = "\
    -----BEGIN EC PRIVATE KEY-----\n\
    MIGkAgEBBDBSbE9S1SxcHhqzE+gQ9Gt8JrEwnYpF2X8LSkiOuYSa6e+okz4VBcOe\n\
    EuGFAqPq6rygBwYFK4EEACKhZANiAASSmOlxStG2HewL1Xw2iIbLncKlvG9t+dlt\n\
    ZfXyBlQM9KISESP/bLPZBMtfqH90kuLr/nu7Fk9XdKOpcb/X1i7Rg477mZTOQTqg\n\
    HaiQ42YNvupj764hQbZka+e4gwVYFRE=\n\
    -----END EC PRIVATE KEY-----\n";

    const P384_KEY_SEC1_NO_PUBLIC: &str = "\
    -----BEGIN EC PRIVATE KEY-----\n\
    MD4CAQEEMFJsT1LVLFweGrMT6BD0a3wmsTCdikXZfwtKSI65hJrp76iTPhUFw54S\n\
    4YUCo+rqvKAHBgUrgQQAIg==\n\
    -----END EC PRIVATE KEY-----\n";

    const P384_CERT: &str = "\
    -----BEGIN CERTIFICATE-----\n\
    MIIByzCCAVCgAwIBAgIUBhO61COIWrw642KflOEWGibAgjMwCgYIKoZIzj0EAwIw\n\
    HDEaMBgGA1UEAwwRcDM4NC5leGFtcGxlLnRlc3QwHhcNMjYxMTI2MDkxNTUxWhcN\n\
    MzYxMTIzMDkxNTUxWjAcMRowGAYDVQQDDBFwMzg0LmV4YW1wbGUudGVzdDB2MBAG\n\
    ByqGSM49AgEGBSuBBAAiA2IABJKY6XFK0bYd7AvVfDaIhsudwqW8b2352W1l9fIG\n\
    VAz0ohIRI/9ss9kEy1+of3SS4uv+e7sWT1d0o6lxv9fWLtGDjvuZlM5BOqAdqJDj\n\
    Zg2+6mPvriFBtmRr57iDBVgVEaNTMFEwHQYDVR0OBBYEFIoV4lzvS8odw02KEk6f\n\
    i6b5JlXEMB8GA1UdIwQYMBaAFIoV4lzvS8odw02KEk6fi6b5JlXEMA8GA1UdEwEB\n\
    /wQFMAMBAf8wCgYIKoZIzj0EAwIDaQAwZgIxAN+Pe9p9f5glF+UM4v/SDWqFwWoN\n\
    4P3QVAcuLVAU7Q1OBwsCxnzuHyeBQLKiqU1olQIxAKpHrjmbl7PKSXuxSfzufPvy\n\
    yvduthqulZLGtsMAGdfP4E8mHGtT4OZYQo3niRmmAQ==\n\
    -----END CERTIFICATE-----\n";

    const ED25519_KEY_PKCS8_V1: &str = "\
    -----BEGIN PRIVATE KEY-----\n\
    MC4CAQAwBQYDK2VwBCIEINk7DFfyZxvVx5TRhbBesmY9d2bsQUE/dUrScnY7fIf2\n\
    -----END PRIVATE KEY-----\n";

    const ED25519_CERT: &str = "\
    -----BEGIN CERTIFICATE-----\n\
    MIIBSDCB+6ADAgECAhR9AXrKLyZDNoqIKZ9rA+/E7Fx9vDAFBgMrZXAwGjEYMBYG\n\
    A1UEAwwPZWQuZXhhbXBsZS50ZXN0MB4XDTI2MTEyNjA5MTYyM1oXDTM2MTEyMzA5\n\
    MTYyM1owGjEYMBYGA1UEAwwPZWQuZXhhbXBsZS50ZXN0MCowBQYDK2VwAyEATT2w\n\
    E6Pbo/cRMZPX+1ISGjJ0OmQiy+9dFXebA2nuk3KjUzBRMB0GA1UdDgQWBBRgqCAX\n\
    ca3Qg0arDGdqJS/MRK9+bzAfBgNVHSMEGDAWgBRgqCAXca3Qg0arDGdqJS/MRK9+\n\
    bzAPBgNVHRMBAf8EBTADAQH/MAUGAytlcANBABRW5Xq3gy9HS/aVWt+l0gTgYlDV\n\
    rPiXQ//MUiXI8/FaTa91FeldDVDCgo3G7GwCAQmMObGNerCBXRpZI60MtA0=\n\
    -----END CERTIFICATE-----\n";

    const X25519_KEY: &str = "\
    -----BEGIN PRIVATE KEY-----\n\
    MC4CAQAwBQYDK2VuBCIEINiKyZ79MIOM+9bYzZQKYFwYYUObO1hdxY+ozz8aCp50\n\
    -----END PRIVATE KEY-----\n";

    fn algorithms() -> [(&'static SignatureAlgorithm, KeyType); 3] {
        [
            (&rcgen::PKCS_ECDSA_P256_SHA256, KeyType::Ec),
            (&rcgen::PKCS_ECDSA_P384_SHA384, KeyType::Ec),
            (&rcgen::PKCS_ED25519, KeyType::Ed25519),
        ]
    }

    fn self_signed(alg: &'static SignatureAlgorithm, ca: bool) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(vec![
            "tidegate.test".to_string(),
            "www.tidegate.test".to_string(),
        ])
        .unwrap();
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let cert = params.self_signed(&key).unwrap();
        (cert, key)
    }

    fn assert_pair(cert_pem: &str, key_pem: &str, key_type: KeyType) -> (CertInfo, KeyInfo) {
        let cert = parse_cert(cert_pem).unwrap();
        let key = parse_key(key_pem).unwrap();
        assert_eq!(cert.key_type, key_type);
        assert_eq!(key.key_type, key_type);
        assert!(key_matches(&cert, &key), "{key_type:?} pair should match");
        (cert, key)
    }

    fn to_pem(tag: &str, der: Vec<u8>) -> String {
        pem::encode(&pem::Pem::new(tag, der))
    }

    fn der_of(pem_str: &str) -> Vec<u8> {
        pem::parse(pem_str).unwrap().into_contents()
    }

    /// SEC1 P-256 key with only a private scalar and the curve OID.
    fn sec1_p256(scalar: &[u8]) -> String {
        let mut body = vec![0x02, 0x01, 0x01];
        encode_tlv(&mut body, TAG_OCTET_STRING, scalar);
        let mut oid = Vec::new();
        encode_tlv(&mut oid, TAG_OID, OID_P256);
        encode_tlv(&mut body, TAG_CTX0, &oid);
        let mut der = Vec::new();
        encode_tlv(&mut der, TAG_SEQUENCE, &body);
        to_pem("EC PRIVATE KEY", der)
    }

    #[test]
    fn rsa_pkcs8_key_matches_cert() {
        let (cert, key) = assert_pair(RSA2048_CERT, RSA2048_KEY_PKCS8, KeyType::Rsa);
        // DER RSAPublicKey: SEQUENCE { INTEGER modulus (257 bytes), INTEGER e }
        assert_eq!(&key.public_key[..4], &[0x30, 0x82, 0x01, 0x0a]);
        assert_eq!(cert.public_key, key.public_key);
    }

    #[test]
    fn rsa_pkcs1_key_matches_cert() {
        let (_, pkcs1) = assert_pair(RSA2048_CERT, RSA2048_KEY_PKCS1, KeyType::Rsa);
        let pkcs8 = parse_key(RSA2048_KEY_PKCS8).unwrap();
        assert_eq!(pkcs1.public_key, pkcs8.public_key);
    }

    #[test]
    fn rsa_1024_bit_key_matches_cert() {
        assert_pair(RSA1024_CERT, RSA1024_KEY_PKCS1, KeyType::Rsa);
    }

    #[test]
    fn rsa_mismatched_keys_do_not_match() {
        let cert_2048 = parse_cert(RSA2048_CERT).unwrap();
        let cert_1024 = parse_cert(RSA1024_CERT).unwrap();
        assert!(!key_matches(
            &cert_2048,
            &parse_key(RSA1024_KEY_PKCS1).unwrap()
        ));
        assert!(!key_matches(
            &cert_1024,
            &parse_key(RSA2048_KEY_PKCS1).unwrap()
        ));
        assert!(!key_matches(&cert_2048, &parse_key(P256_KEY_SEC1).unwrap()));
    }

    #[test]
    fn rcgen_pairs_match() {
        for (alg, key_type) in algorithms() {
            let (cert, key) = self_signed(alg, false);
            let (cert_info, key_info) = assert_pair(&cert.pem(), &key.serialize_pem(), key_type);
            assert_eq!(cert_info.public_key, key.public_key_raw());
            assert_eq!(key_info.public_key, key.public_key_raw());
        }
    }

    #[test]
    fn rcgen_mismatched_pairs_do_not_match() {
        let pairs: Vec<_> = algorithms()
            .iter()
            .map(|(alg, _)| self_signed(alg, false))
            .collect();
        for (i, (cert, _)) in pairs.iter().enumerate() {
            let cert = parse_cert(&cert.pem()).unwrap();
            for (j, (_, key)) in pairs.iter().enumerate() {
                let key = parse_key(&key.serialize_pem()).unwrap();
                assert_eq!(key_matches(&cert, &key), i == j, "cert {i} key {j}");
            }
        }
        // Same algorithm, different key.
        for (alg, _) in algorithms() {
            let (cert, _) = self_signed(alg, false);
            let other = KeyPair::generate_for(alg).unwrap();
            let cert = parse_cert(&cert.pem()).unwrap();
            assert!(!key_matches(
                &cert,
                &parse_key(&other.serialize_pem()).unwrap()
            ));
        }
    }

    #[test]
    fn key_types_must_be_equal() {
        let cert = parse_cert(P256_CERT).unwrap();
        let key = KeyInfo {
            key_type: KeyType::Ed25519,
            public_key: cert.public_key.clone(),
        };
        assert!(!key_matches(&cert, &key));
    }

    #[test]
    fn ca_certificate_has_is_ca() {
        for (alg, _) in algorithms() {
            let (ca, _) = self_signed(alg, true);
            assert!(parse_cert(&ca.pem()).unwrap().is_ca);
            let (leaf, _) = self_signed(alg, false);
            assert!(!parse_cert(&leaf.pem()).unwrap().is_ca);
        }
    }

    #[test]
    fn digest_is_sha256_of_first_der() {
        let (leaf, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256, false);
        let (ca, _) = self_signed(&rcgen::PKCS_ED25519, true);
        let expected = hex::encode(Sha256::digest(leaf.der()));
        assert_eq!(parse_cert(&leaf.pem()).unwrap().digest, expected);
        let chain = format!("{}{}", leaf.pem(), ca.pem());
        assert_eq!(parse_cert(&chain).unwrap().digest, expected);
        assert_eq!(expected.len(), 64);
        assert_eq!(expected, expected.to_lowercase());
    }

    #[test]
    fn validity_and_san_names() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            CertificateParams::new(vec!["a.tidegate.test".into(), "b.tidegate.test".into()])
                .unwrap();
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2030, 1, 1);
        let cert = parse_cert(&params.self_signed(&key).unwrap().pem()).unwrap();
        assert_eq!(cert.not_before, 1_577_836_800);
        assert_eq!(cert.not_after, 1_893_456_000);
        assert_eq!(cert.names, ["a.tidegate.test", "b.tidegate.test"]);

        let openssl = parse_cert(RSA2048_CERT).unwrap();
        assert_eq!(openssl.names, ["rsa.example.test", "www.rsa.example.test"]);
        assert!(openssl.not_before < openssl.not_after);
    }

    #[test]
    fn common_name_used_without_san() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "fallback.tidegate.test");
        let cert = parse_cert(&params.self_signed(&key).unwrap().pem()).unwrap();
        assert_eq!(cert.names, ["fallback.tidegate.test"]);
        assert_eq!(
            parse_cert(RSA1024_CERT).unwrap().names,
            ["legacy.example.test"]
        );
    }

    #[test]
    fn every_chain_block_must_parse() {
        let (leaf, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256, false);
        let (ca, _) = self_signed(&rcgen::PKCS_ECDSA_P384_SHA384, true);
        assert!(parse_cert(&format!("{}\n{}", leaf.pem(), ca.pem())).is_ok());

        let junk = to_pem("CERTIFICATE", b"not a certificate".to_vec());
        let err = parse_cert(&format!("{}{}", leaf.pem(), junk)).unwrap_err();
        assert!(
            err.starts_with("invalid certificate: chain certificate #2: "),
            "{err}"
        );

        let err = parse_cert(&format!("{}{}", leaf.pem(), P256_KEY_SEC1)).unwrap_err();
        assert!(err.contains("unexpected PEM block"), "{err}");
    }

    #[test]
    fn sec1_and_pkcs8_ec_keys_match_openssl_certs() {
        let (_, with_public) = assert_pair(P256_CERT, P256_KEY_SEC1, KeyType::Ec);
        let (_, derived) = assert_pair(P256_CERT, P256_KEY_SEC1_NO_PUBLIC, KeyType::Ec);
        let (_, pkcs8) = assert_pair(P256_CERT, P256_KEY_PKCS8_NO_PUBLIC, KeyType::Ec);
        assert_eq!(with_public.public_key, derived.public_key);
        assert_eq!(with_public.public_key, pkcs8.public_key);
        assert_eq!(derived.public_key.len(), 65);

        let (_, p384) = assert_pair(P384_CERT, P384_KEY_SEC1, KeyType::Ec);
        let (_, p384_derived) = assert_pair(P384_CERT, P384_KEY_SEC1_NO_PUBLIC, KeyType::Ec);
        assert_eq!(p384.public_key, p384_derived.public_key);
        assert_eq!(p384.public_key.len(), 97);

        let p256_cert = parse_cert(P256_CERT).unwrap();
        assert!(!key_matches(&p256_cert, &p384));
    }

    #[test]
    fn sec1_with_ec_parameters_block() {
        // What `openssl ecparam -genkey -name prime256v1` prints without -noout.
        let params =
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";
        assert_pair(P256_CERT, &format!("{params}{P256_KEY_SEC1}"), KeyType::Ec);
    }

    #[test]
    fn sec1_embedded_public_key_must_agree() {
        let own = parse_key(P256_KEY_SEC1).unwrap().public_key;
        let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut der = der_of(P256_KEY_SEC1);
        let at = der.windows(own.len()).position(|w| w == own).unwrap();
        der[at..at + own.len()].copy_from_slice(other.public_key_raw());
        let err = parse_key(&to_pem("EC PRIVATE KEY", der)).unwrap_err();
        assert_eq!(err, "invalid key: EC public key does not match private key");
    }

    #[test]
    fn ec_scalar_is_range_checked_and_padded() {
        // d = 1 encoded without leading zeros gives the generator point.
        let g = parse_key(&sec1_p256(&[1])).unwrap().public_key;
        assert_eq!(
            hex::encode(&g[..33]),
            "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
        );
        assert!(parse_key(&sec1_p256(&[0; 32])).is_err());
        assert!(parse_key(&sec1_p256(&[0xff; 32])).is_err()); // >= group order
        assert!(parse_key(&sec1_p256(&[1; 33])).is_err());
    }

    #[test]
    fn ed25519_openssl_pkcs8_v1_matches() {
        let (_, key) = assert_pair(ED25519_CERT, ED25519_KEY_PKCS8_V1, KeyType::Ed25519);
        assert_eq!(key.public_key.len(), 32);
    }

    #[test]
    fn garbage_certificates_are_rejected() {
        let mut truncated = der_of(RSA2048_CERT);
        truncated.truncate(truncated.len() - 10);
        let mut trailing = der_of(RSA2048_CERT);
        trailing.push(0);
        let inputs = [
            String::new(),
            "garbage".to_string(),
            "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n".into(),
            to_pem("CERTIFICATE", vec![0x30, 0x03, 0x02, 0x01, 0x00]),
            to_pem("CERTIFICATE", truncated),
            to_pem("CERTIFICATE", trailing),
            RSA2048_KEY_PKCS8.to_string(),
        ];
        for input in inputs {
            let err = parse_cert(&input).unwrap_err();
            assert!(err.starts_with("invalid certificate: "), "{err}");
        }
    }

    #[test]
    fn garbage_keys_are_rejected() {
        let mut truncated = der_of(RSA2048_KEY_PKCS1);
        truncated.truncate(truncated.len() - 10);
        let inputs = [
            String::new(),
            "garbage".to_string(),
            "-----BEGIN PRIVATE KEY-----\n!!!not base64!!!\n-----END PRIVATE KEY-----\n".into(),
            to_pem("PRIVATE KEY", b"junk".to_vec()),
            to_pem("EC PRIVATE KEY", b"junk".to_vec()),
            to_pem("RSA PRIVATE KEY", truncated),
            RSA2048_CERT.to_string(),
            format!("{RSA2048_KEY_PKCS1}{P256_KEY_SEC1}"),
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n".into(),
        ];
        for input in inputs {
            let err = parse_key(&input).unwrap_err();
            assert!(err.starts_with("invalid key: "), "{err}");
        }
    }

    #[test]
    fn unsupported_and_encrypted_keys_are_rejected() {
        assert_eq!(
            parse_key(X25519_KEY).unwrap_err(),
            "invalid key: unsupported key algorithm"
        );
        let encrypted = to_pem("ENCRYPTED PRIVATE KEY", vec![0x30, 0x00]);
        assert_eq!(
            parse_key(&encrypted).unwrap_err(),
            "invalid key: encrypted keys are not supported"
        );
        let legacy = RSA2048_KEY_PKCS1.replacen(
            "-----BEGIN RSA PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
             DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n",
            1,
        );
        assert_eq!(
            parse_key(&legacy).unwrap_err(),
            "invalid key: encrypted keys are not supported"
        );
    }

    #[test]
    fn oversized_input_is_rejected() {
        let big = format!("{RSA2048_CERT}{}", " ".repeat(MAX_PEM_LEN));
        assert_eq!(
            parse_cert(&big).unwrap_err(),
            "invalid certificate: too large"
        );
        let big = format!("{RSA2048_KEY_PKCS8}{}", " ".repeat(MAX_PEM_LEN));
        assert_eq!(parse_key(&big).unwrap_err(), "invalid key: too large");
        // Exactly at the limit is still parsed.
        let pad = MAX_PEM_LEN - RSA2048_CERT.len();
        assert!(parse_cert(&format!("{RSA2048_CERT}{}", "\n".repeat(pad))).is_ok());
    }
}
