//! Which MCP server addresses users may register: none on this machine or on a private
//! network, unless the administrator allows them, so that a user cannot make the server
//! call into the network it runs in.
//!
//! The host is resolved when the address is checked; every address it resolves to
//! must be public.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AddressError {
    #[error("is not an http:// or https:// URL")]
    NotHttp,
    #[error("does not resolve: {0}")]
    Unresolved(String),
    #[error("resolves to {0}, a loopback, private or link-local address")]
    Private(IpAddr),
}

/// Whether an address is reachable on the public internet (not this machine, a private
/// or shared network, link-local, multicast, or reserved).
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
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (carrier-grade NAT) and benchmarking.
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local (fc00::/7) and link-local (fe80::/10).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // Documentation (2001:db8::/32).
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

/// Checks that `url` is HTTP(S) and, unless `allow_private`, that its host resolves
/// only to public addresses.
pub async fn check(url: &str, allow_private: bool) -> Result<(), AddressError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| AddressError::NotHttp)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(AddressError::NotHttp);
    }
    let host = parsed.host_str().ok_or(AddressError::NotHttp)?;
    if allow_private {
        return Ok(());
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| AddressError::Unresolved(e.to_string()))?
        .map(|address| address.ip())
        .collect();
    if addresses.is_empty() {
        return Err(AddressError::Unresolved("no addresses".into()));
    }
    match addresses.into_iter().find(|ip| !is_public(*ip)) {
        Some(private) => Err(AddressError::Private(private)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().expect("an address")), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().expect("an address")), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_must_be_http_and_public_unless_allowed() {
        assert_eq!(check("ftp://example.com/mcp", false).await, Err(AddressError::NotHttp));
        assert_eq!(check("not a url", false).await, Err(AddressError::NotHttp));
        assert!(matches!(check("http://127.0.0.1:3001/mcp", false).await, Err(AddressError::Private(_))));
        assert!(matches!(check("http://10.0.0.7/mcp", false).await, Err(AddressError::Private(_))));
        assert!(matches!(check("http://[::1]:8080/mcp", false).await, Err(AddressError::Private(_))));
        assert!(matches!(check("http://localhost:3001/mcp", false).await, Err(AddressError::Private(_))));
        assert_eq!(check("https://93.184.216.34/mcp", false).await, Ok(()));
        assert_eq!(check("http://127.0.0.1:3001/mcp", true).await, Ok(()));
    }
}
