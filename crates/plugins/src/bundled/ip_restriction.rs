//! ip-restriction: refuses clients by address. The deny list is checked first, then the
//! allow list; a client in neither passes only when there is no allow list.

use std::net::IpAddr;
use std::sync::Arc;

use tidegate_model::ipset::IpSet;
use tidegate_model::plugins::ip_restriction::IpRestrictionConfig;

use crate::context::{Ctx, Req};
use crate::phase::{Access, Exit, Plugin};
use crate::runtime::Runtime;

/// Kong's default status when `status` is unset.
const DEFAULT_STATUS: u16 = 403;

pub struct IpRestriction {
    deny: Option<IpSet>,
    allow: Option<IpSet>,
    refusal: Refusal,
}

/// What a refused client gets.
enum Refusal {
    /// `status` with `message`, or with Kong's message naming the address.
    Error {
        status: u16,
        message: Option<String>,
    },
    /// A `status` outside 400–599: `kong.response.error` throws on it, so Kong answers
    /// with its runtime-error response instead.
    Unusable,
}

pub fn build(c: &IpRestrictionConfig, _rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
    Ok(Arc::new(IpRestriction::new(c)?))
}

/// `None` for an empty list, which Kong skips.
fn matcher(list: &[String]) -> Result<Option<IpSet>, String> {
    let set = IpSet::build(list)?;
    Ok((!set.is_empty()).then_some(set))
}

// === impl IpRestriction ===

impl IpRestriction {
    fn new(c: &IpRestrictionConfig) -> Result<IpRestriction, String> {
        let refusal = match c.status {
            None => Refusal::Error {
                status: DEFAULT_STATUS,
                message: c.message.clone(),
            },
            Some(s) if s.fract() == 0.0 && (400.0..=599.0).contains(&s) => Refusal::Error {
                status: s as u16,
                message: c.message.clone(),
            },
            Some(s) => {
                tracing::warn!(
                    status = s,
                    "ip-restriction: status is not within 400-599; refused clients get a 500, as in Kong"
                );
                Refusal::Unusable
            }
        };
        Ok(IpRestriction {
            deny: matcher(c.deny.as_deref().unwrap_or_default())?,
            allow: matcher(c.allow.as_deref().unwrap_or_default())?,
            refusal,
        })
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        if self.deny.as_ref().is_some_and(|d| d.contains(ip)) {
            return false;
        }
        self.allow.as_ref().is_none_or(|a| a.contains(ip))
    }

    fn refuse(&self, ip: IpAddr) -> Exit {
        match &self.refusal {
            Refusal::Error { status, message } => Exit::error(
                *status,
                match message {
                    Some(m) => m.clone(),
                    None => format!("IP address not allowed: {ip}"),
                },
            ),
            Refusal::Unusable => Exit::error(500, "An unexpected error occurred"),
        }
    }
}

impl Plugin for IpRestriction {
    fn access<'a>(&'a self, cx: &'a mut Ctx<'_>, _req: &'a mut Req) -> Access<'a> {
        // A client on an IPv4-mapped IPv6 address (a dual-stack listener) is matched
        // and named by its IPv4 address, as nginx on an IPv4 listener sees it.
        let ip = cx.client_ip.to_canonical();
        if self.allowed(ip) {
            Access::CONTINUE
        } else {
            Access::exit(self.refuse(ip))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bundled::testing::{self, error_message as message};
    use crate::consumers::Consumers;
    use crate::phase::Flow;

    fn plugin(config: serde_json::Value) -> IpRestriction {
        IpRestriction::new(&testing::typed_config!(
            IpRestriction,
            "ip-restriction",
            config
        ))
        .expect("builds")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_then_allow_over_v4_and_v6() {
        let cases: &[(serde_json::Value, &[(&str, bool)])] = &[
            (
                json!({"deny": ["127.0.0.1", "127.0.0.2"]}),
                &[("127.0.0.1", false), ("127.0.0.3", true), ("::1", true)],
            ),
            (
                json!({"allow": ["127.0.0.2"]}),
                &[("127.0.0.1", false), ("127.0.0.2", true)],
            ),
            (
                json!({"deny": ["127.0.0.0/24"]}),
                &[("127.0.0.255", false), ("127.0.1.0", true)],
            ),
            // Host bits in a range are ignored, as ipmatcher masks them.
            (
                json!({"allow": ["10.1.2.3/8"]}),
                &[("10.200.0.1", true), ("11.0.0.1", false)],
            ),
            (
                json!({"allow": ["0.0.0.0/0"]}),
                &[("1.2.3.4", true), ("::1", false)],
            ),
            // Deny wins over allow, for a single address and for a range.
            (
                json!({"allow": ["127.0.0.1"], "deny": ["127.0.0.1"]}),
                &[("127.0.0.1", false)],
            ),
            (
                json!({"allow": ["127.0.0.0/24"], "deny": ["127.0.0.1"]}),
                &[
                    ("127.0.0.1", false),
                    ("127.0.0.2", true),
                    ("127.0.1.1", false),
                ],
            ),
            (
                json!({"deny": ["2001:db8::/32", "::1"]}),
                &[
                    ("2001:db8:ffff::1", false),
                    ("2001:db9::1", true),
                    ("::1", false),
                    ("::2", true),
                    ("127.0.0.1", true),
                ],
            ),
            (
                json!({"allow": ["fe80::/10", "192.168.0.0/16"]}),
                &[
                    ("fe80::1", true),
                    ("febf::1", true),
                    ("fec0::1", false),
                    ("192.168.44.1", true),
                    ("::ffff:192.168.1.1", false),
                ],
            ),
            (
                json!({"allow": ["::/0"]}),
                &[("::", true), ("ffff::1", true)],
            ),
            (
                json!({"allow": ["2001:db8::1/128"]}),
                &[("2001:db8::1", true), ("2001:db8::2", false)],
            ),
        ];
        for (config, checks) in cases {
            let p = plugin(config.clone());
            for (addr, expected) in *checks {
                assert_eq!(p.allowed(ip(addr)), *expected, "{config} with {addr}");
            }
        }
    }

    fn run(p: &IpRestriction, client: &str) -> Option<Exit> {
        let consumers = Consumers::default();
        let mut cx = testing::cx_from(&consumers, ip(client));
        let mut req = testing::req(http::Method::GET, "/", None, &[], testing::buffered(""));
        match testing::access_now(p, &mut cx, &mut req, "ip-restriction") {
            Flow::Continue => None,
            Flow::Exit(e) => Some(e),
        }
    }

    #[test]
    fn refusals_carry_kongs_status_and_message() {
        let p = plugin(json!({"deny": ["127.0.0.1", "::1"]}));
        let e = run(&p, "127.0.0.1").expect("refused");
        assert_eq!(e.status, 403);
        assert_eq!(message(&e), "IP address not allowed: 127.0.0.1");
        let e = run(&p, "::1").expect("refused");
        assert_eq!(message(&e), "IP address not allowed: ::1");
        // A mapped address is named and matched as IPv4.
        let e = run(&p, "::ffff:127.0.0.1").expect("refused");
        assert_eq!(message(&e), "IP address not allowed: 127.0.0.1");
        assert!(run(&p, "127.0.0.2").is_none());

        let p = plugin(json!({"deny": ["127.0.0.0/24"], "status": 401, "message": "Forbidden"}));
        let e = run(&p, "127.0.0.9").expect("refused");
        assert_eq!(e.status, 401);
        assert_eq!(message(&e), "Forbidden");

        let p = plugin(json!({"deny": ["127.0.0.1"], "status": 302}));
        let e = run(&p, "127.0.0.1").expect("refused");
        assert_eq!(e.status, 500);
        assert_eq!(message(&e), "An unexpected error occurred");
    }
}
