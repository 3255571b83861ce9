//! Placeholder until the PEM parsing lands in this same change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType { Rsa, Ec, Ed25519 }
#[derive(Debug, Clone)]
pub struct CertInfo { pub digest: String, pub not_before: i64, pub not_after: i64, pub is_ca: bool, pub key_type: KeyType, pub public_key: Vec<u8>, pub names: Vec<String> }
#[derive(Debug, Clone)]
pub struct KeyInfo { pub key_type: KeyType, pub public_key: Vec<u8> }
pub fn parse_cert(_pem: &str) -> Result<CertInfo, String> { Err("invalid certificate: pending".into()) }
pub fn parse_key(_pem: &str) -> Result<KeyInfo, String> { Err("invalid key: pending".into()) }
pub fn key_matches(c: &CertInfo, k: &KeyInfo) -> bool { c.key_type == k.key_type && c.public_key == k.public_key }
