//! Sets of addresses and CIDR ranges, as Kong's `ip_or_cidr` lists describe them:
//! ip-restriction's allow and deny lists, and the proxy's `trusted_ips`.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::typedefs::parse_cidr;

/// Addresses and CIDR ranges, grouped by prefix length, so that a lookup costs one hash
/// probe per distinct length (what lua-resty-ipmatcher does), whatever the list's size.
#[derive(Debug, Default, Clone)]
pub struct IpSet {
    v4: Vec<(u32, HashSet<u32>)>,
    v6: Vec<(u32, HashSet<u128>)>,
}

impl IpSet {
    /// Every entry must be an address or `addr/len`; the first that is not is named in
    /// Kong's words.
    pub fn build<S: AsRef<str>>(list: &[S]) -> Result<IpSet, String> {
        let mut m = IpSet::default();
        for entry in list {
            let entry = entry.as_ref();
            let (ip, len) =
                parse_cidr(entry).ok_or_else(|| format!("invalid ip or cidr range: '{entry}'"))?;
            let len = u32::from(len);
            match ip {
                IpAddr::V4(a) => insert(&mut m.v4, len, u32::from(a) & mask32(len)),
                IpAddr::V6(a) => insert(&mut m.v6, len, u128::from(a) & mask128(len)),
            }
        }
        Ok(m)
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .any(|(len, nets)| nets.contains(&(a & mask32(*len))))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .any(|(len, nets)| nets.contains(&(a & mask128(*len))))
            }
        }
    }
}

fn insert<T: std::hash::Hash + Eq>(groups: &mut Vec<(u32, HashSet<T>)>, len: u32, net: T) {
    match groups.iter_mut().find(|(l, _)| *l == len) {
        Some((_, nets)) => {
            nets.insert(net);
        }
        None => groups.push((len, HashSet::from([net]))),
    }
}

fn mask32(len: u32) -> u32 {
    u32::MAX.checked_shl(32 - len).unwrap_or(0)
}

fn mask128(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_ranges_of_both_families() {
        let set = IpSet::build(&["10.0.0.0/8", "192.168.1.7", "::1", "2001:db8::/32"]).unwrap();
        for (addr, inside) in [
            ("10.255.0.1", true),
            ("11.0.0.1", false),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
            ("::1", true),
            ("::2", false),
            ("2001:db8:ffff::1", true),
            ("2001:db9::1", false),
        ] {
            assert_eq!(set.contains(ip(addr)), inside, "{addr}");
        }
        let all = IpSet::build(&["0.0.0.0/0", "::/0"]).unwrap();
        assert!(all.contains(ip("1.2.3.4")) && all.contains(ip("fe80::1")));
        assert!(IpSet::build::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn masks() {
        assert_eq!(mask32(0), 0);
        assert_eq!(mask32(8), 0xff00_0000);
        assert_eq!(mask32(32), u32::MAX);
        assert_eq!(mask128(0), 0);
        assert_eq!(mask128(128), u128::MAX);
        assert_eq!(mask128(1), 1 << 127);
    }

    #[test]
    fn a_bad_entry_is_named() {
        assert_eq!(
            IpSet::build(&["10.0.0.0/33"]).unwrap_err(),
            "invalid ip or cidr range: '10.0.0.0/33'"
        );
    }
}
