//! `certificates`, `snis` and `ca_certificates`: TLS material served by SNI and trusted
//! for upstream verification.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::{Cx, EntityKindImpl, Fk};
use crate::error::Errors;
use crate::input::Reader;
use crate::kind::EntityKind;
use crate::pki;
use crate::typedefs;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
    pub cert: String,
    pub key: String,
    pub cert_alt: Option<String>,
    pub key_alt: Option<String>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sni {
    pub id: Uuid,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub tags: Option<Vec<String>>,
    pub certificate: Option<Fk>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaCertificate {
    pub id: Uuid,
    pub created_at: i64,
    pub updated_at: i64,
    pub cert: String,
    pub cert_digest: String,
    pub tags: Option<Vec<String>>,
}

/// Reads a PEM field with `parse` (a certificate or a key), recording Kong's message
/// when it does not parse.
fn read_pem<T>(
    r: &mut Reader<'_>,
    key: &'static str,
    required: bool,
    parse: fn(&str) -> Result<T, String>,
) -> Option<(String, T)> {
    let pem = if required {
        r.req_string(key)
    } else {
        r.string(key)
    }?;
    match parse(&pem) {
        Ok(info) => Some((pem, info)),
        Err(m) => {
            r.error(key, m);
            None
        }
    }
}

fn read_cert(
    r: &mut Reader<'_>,
    key: &'static str,
    required: bool,
) -> Option<(String, pki::CertInfo)> {
    read_pem(r, key, required, pki::parse_cert)
}

fn read_key(
    r: &mut Reader<'_>,
    key: &'static str,
    required: bool,
) -> Option<(String, pki::KeyInfo)> {
    read_pem(r, key, required, pki::parse_key)
}

impl EntityKindImpl for Certificate {
    const KIND: EntityKind = EntityKind::Certificate;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let updated_at = cx.updated_at(r);
        let cert = read_cert(r, "cert", true);
        let key = read_key(r, "key", true);
        let cert_alt = read_cert(r, "cert_alt", false);
        let key_alt = read_key(r, "key_alt", false);
        let tags = cx.tags(r);
        // `snis` is the DAO's pseudo-field: the caller turns it into SNI rows. A name
        // listed twice is refused before anything else, as Kong's DAO does.
        let duplicated = r.raw("snis").and_then(typedefs::as_list).and_then(|names| {
            names
                .iter()
                .enumerate()
                .find(|(i, n)| n.is_string() && names[..*i].contains(n))
                .and_then(|(_, n)| n.as_str())
        });

        // Kong's entity checks, in order; each skips fields that are already invalid.
        // Expired certificates are accepted, as in Kong: an operator may be mid-rotation.
        let alt_errors = r.field_has_error("cert_alt") || r.field_has_error("key_alt");
        if !alt_errors && cert_alt.is_some() != key_alt.is_some() {
            r.entity_error("all or none of these fields must be set: 'cert_alt', 'key_alt'");
        }
        if let (Some((_, c)), Some((_, k))) = (&cert, &key) {
            if !pki::key_matches(c, k) {
                r.entity_error("certificate does not match key");
            }
        }
        if let (Some((_, c)), Some((_, k))) = (&cert_alt, &key_alt) {
            if !pki::key_matches(c, k) {
                r.entity_error("alternative certificate does not match key");
            }
        }
        if let (Some((_, main)), Some((_, alt))) = (&cert, &cert_alt) {
            if main.key_type == alt.key_type {
                r.entity_error(
                    "certificate and alternative certificate need to have different type (e.g. RSA and ECDSA), the provided certificates were both of the same type",
                );
            }
        }
        if let Some(name) = duplicated {
            let mut only = Errors::default();
            only.field("snis", format!("{name} is duplicated"));
            *r.errors_mut() = only;
        }

        Certificate {
            id,
            created_at,
            updated_at,
            cert: cert.map(|c| c.0).unwrap_or_default(),
            key: key.map(|k| k.0).unwrap_or_default(),
            cert_alt: cert_alt.map(|c| c.0),
            key_alt: key_alt.map(|k| k.0),
            tags,
        }
    }
}

impl EntityKindImpl for Sni {
    const KIND: EntityKind = EntityKind::Sni;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        // Kong keeps the name as given (no lower-casing).
        let name = r
            .req_string("name")
            .and_then(|n| match typedefs::wildcard_host(&n) {
                Ok(()) => Some(n),
                Err(m) => {
                    r.error("name", m);
                    None
                }
            });
        let created_at = cx.created_at(r);
        let updated_at = cx.updated_at(r);
        let tags = cx.tags(r);
        let certificate = cx.foreign(r, "certificate", EntityKind::Certificate);
        let certificate = r.required("certificate", certificate);
        Sni {
            id,
            name: name.unwrap_or_default(),
            created_at,
            updated_at,
            tags,
            certificate,
        }
    }

    fn foreign_keys(&self) -> Vec<Option<Uuid>> {
        vec![self.certificate.map(|f| f.id)]
    }
    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        vec![("name", self.name.clone())]
    }
    fn endpoint_key(&self) -> Option<String> {
        Some(self.name.clone())
    }
}

impl EntityKindImpl for CaCertificate {
    const KIND: EntityKind = EntityKind::CaCertificate;

    crate::entity::entity_fields!();

    fn read(r: &mut Reader<'_>, cx: &mut Cx<'_, '_>) -> Self {
        let id = cx.id(r);
        let created_at = cx.created_at(r);
        let updated_at = cx.updated_at(r);
        let cert = read_cert(r, "cert", true);
        // The digest is derived from `cert`; a given one (an exported file) is overwritten.
        let _ = r.string("cert_digest");
        let tags = cx.tags(r);
        let mut digest = String::new();
        if let Some((pem, info)) = &cert {
            if pem.matches("-----BEGIN CERTIFICATE-----").count() > 1 {
                r.entity_error("please submit only one certificate at a time");
            } else if info.not_after < cx.now() {
                r.entity_error("certificate expired, \"Not After\" time is in the past");
            } else if !info.is_ca {
                r.entity_error(
                    "certificate does not appear to be a CA because it is missing the \"CA\" basic constraint",
                );
            }
            digest = info.digest.clone();
        }
        CaCertificate {
            id,
            created_at,
            updated_at,
            cert: cert.map(|c| c.0).unwrap_or_default(),
            cert_digest: digest,
            tags,
        }
    }

    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        vec![("cert_digest", self.cert_digest.clone())]
    }
}
