//! Raft link credentials: one CA and one Ed25519 certificate naming every CP host,
//! made once per process. Ed25519 signatures have a fixed length, so handshakes have the
//! same shape whatever the key bytes (which come from the OS and differ per process).

use std::sync::OnceLock;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, PKCS_ED25519};
use tidegate_raft::network::RaftTls;

/// The most CPs a scenario has; each is named `cp{i}`.
pub const MAX_CPS: usize = 5;

pub fn raft_tls() -> RaftTls {
    static TLS: OnceLock<RaftTls> = OnceLock::new();
    TLS.get_or_init(make).clone()
}

fn make() -> RaftTls {
    let ca_key = KeyPair::generate_for(&PKCS_ED25519).expect("ed25519 key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");
    let names: Vec<String> = (1..=MAX_CPS).map(|i| format!("cp{i}")).collect();
    let key = KeyPair::generate_for(&PKCS_ED25519).expect("ed25519 key");
    let params = CertificateParams::new(names).expect("cert params");
    let cert = params.signed_by(&key, &ca).expect("cp cert");
    RaftTls {
        cert: cert.pem(),
        key: key.serialize_pem(),
        ca: ca.pem(),
    }
}
