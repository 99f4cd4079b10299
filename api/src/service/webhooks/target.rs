//! Where webhooks may point: `http`/`https` URLs of public hosts. Private, loopback,
//! link-local, unspecified, multicast and other non-public addresses are refused (IPv4 and
//! IPv6, IPv4-mapped included), at registration for literal addresses and `localhost`, and at
//! delivery for every address a host name resolves to, unless the operator allows them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hyper::Uri;

/// Longest accepted URL.
pub const MAX_URL: usize = 2048;

/// Whether `ip` is a public unicast address a webhook may reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || ip.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

/// A URL a webhook may be registered with, or why not (a message for the client).
pub fn check(raw: &str, allow_private: bool) -> Result<Uri, String> {
    if raw.len() > MAX_URL {
        return Err(format!("url exceeds max length of {MAX_URL}"));
    }
    let uri: Uri = raw
        .parse()
        .map_err(|_| "url must be an absolute http or https URL".to_owned())?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => {
            return Err(format!(
                "url scheme {other:?} is not allowed: use http or https"
            ))
        }
        None => return Err("url must be an absolute http or https URL".to_owned()),
    }
    let Some(authority) = uri.authority() else {
        return Err("url must name a host".to_owned());
    };
    if authority.as_str().contains('@') {
        return Err("url must not contain credentials".to_owned());
    }
    let host = authority.host();
    if host.is_empty() {
        return Err("url must name a host".to_owned());
    }
    if !allow_private {
        if let Some(ip) = literal_ip(host) {
            if !is_public(ip) {
                return Err(format!(
                    "url points at a private, loopback, link-local or otherwise non-public address ({ip}); webhooks must reach a public host"
                ));
            }
        } else {
            let lower = host.to_ascii_lowercase();
            let lower = lower.trim_end_matches('.');
            if lower == "localhost" || lower.ends_with(".localhost") {
                return Err("url points at localhost; webhooks must reach a public host".to_owned());
            }
        }
    }
    Ok(uri)
}

/// The IP address a URL host names literally (`[v6]` or dotted v4), if it does.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_private_addresses() {
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for private in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
    }

    #[test]
    fn url_rules() {
        assert!(check("https://hooks.example.com/x", false).is_ok());
        assert!(check("http://8.8.8.8:8080/x", false).is_ok());
        assert!(check("ftp://example.com/x", false).is_err());
        assert!(check("file:///etc/passwd", false).is_err());
        assert!(check("example.com/x", false).is_err());
        assert!(check("/relative", false).is_err());
        assert!(check("http://user:pw@example.com/", false).is_err());
        for private in [
            "http://127.0.0.1:9000/",
            "http://[::1]/",
            "http://localhost/",
            "http://api.localhost./",
            "http://169.254.169.254/latest",
            "http://[::ffff:192.168.0.1]/",
            "http://10.0.0.8/",
        ] {
            assert!(check(private, false).is_err(), "{private}");
            assert!(
                check(private, true).is_ok(),
                "{private} with the allow flag"
            );
        }
    }
}
