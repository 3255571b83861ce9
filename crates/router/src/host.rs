//! `split_port` from Kong's traditional router.

use std::borrow::Cow;

/// Splits an optional `:port` off a host. Returns the host without port, the host
/// with port (`default_port` added when none was given) and whether a port was given.
/// Unparseable input comes back unchanged, as in Kong.
pub(crate) fn split_port(name: &str, default_port: Option<u16>) -> (&str, Cow<'_, str>, bool) {
    let add = |h: &str| -> Cow<'_, str> {
        match default_port {
            Some(p) => Cow::Owned(format!("{h}:{p}")),
            None => Cow::Owned(h.to_string()),
        }
    };
    let only_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = name.strip_prefix('[') {
        if name.len() > 1 && name.ends_with(']') {
            return (&name[1..name.len() - 1], add(name), false);
        }
        if let Some(i) = rest.find("]:") {
            let pos = i + 1; // index of ']' in name
            if pos + 2 == name.len() {
                let with = match default_port {
                    Some(p) => Cow::Owned(format!("{name}{p}")),
                    None => Cow::Borrowed(name),
                };
                return (&name[1..pos], with, false);
            }
            if only_digits(&name[pos + 2..]) {
                return (&name[1..pos], Cow::Borrowed(name), true);
            }
        }
        return (name, add(name), false);
    }
    let Some(colon) = name.find(':') else {
        return (name, add(name), false);
    };
    if colon + 1 == name.len() {
        let h = &name[..colon];
        return (h, add(h), false);
    }
    if !only_digits(&name[colon + 1..]) {
        // A bare IPv6 address: Kong brackets it to add the port.
        return match default_port {
            Some(p) => (name, Cow::Owned(format!("[{name}]:{p}")), false),
            None => (name, Cow::Borrowed(name), false),
        };
    }
    (&name[..colon], Cow::Borrowed(name), true)
}
