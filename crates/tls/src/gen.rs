//! `tidegate hybrid gen_cert`: a `shared`-mode pair, as Kong's `kong hybrid gen_cert`
//! makes (EC P-384, CN `kong_clustering`, three years by default).

use rcgen::{date_time_ymd, CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::SHARED_SERVER_NAME;

pub struct GeneratedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed certificate valid from `now_unix` (the day before, against clock skew
/// between nodes) for `days` days.
pub fn gen_cert(now_unix: i64, days: u32) -> Result<GeneratedCert, String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .map_err(|e| format!("cannot generate an EC P-384 key: {e}"))?;
    let mut params =
        CertificateParams::new(vec![SHARED_SERVER_NAME.to_string()]).map_err(|e| e.to_string())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, SHARED_SERVER_NAME);
    params.distinguished_name = dn;
    let day = now_unix.div_euclid(86_400);
    let (y, m, d) = civil_from_days(day - 1);
    params.not_before = date_time_ymd(y, m, d);
    let (y, m, d) = civil_from_days(day + i64::from(days));
    params.not_after = date_time_ymd(y, m, d);
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign the certificate: {e}"))?;
    Ok(GeneratedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        // 2026-11-26
        assert_eq!(civil_from_days(20_783), (2026, 11, 26));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
