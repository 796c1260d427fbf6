//! Where a webhook may send: `http` or `https` URLs whose host resolves to public addresses
//! only, unless private ones are allowed (`COMMERCE_WEBHOOK_ALLOW_PRIVATE`: tests, local
//! development). The check runs when a webhook is created and again at every delivery, inside
//! the client's own name resolution ([`GuardedResolver`]), so a name that resolved to a public
//! address at creation and to an internal one later (DNS rebinding) is refused at the
//! connection it would have been used for.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// The longest a host name may take to resolve.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest URL accepted.
pub const MAX_URL_LENGTH: usize = 2048;

/// Why a URL is refused, in words for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Parses `url` and checks its form: absolute, `http`/`https`, a host, no credentials, no
/// fragment. Whether its host is public is for [`check_host`].
pub fn parse(url: &str) -> Result<Url, Refused> {
    if url.len() > MAX_URL_LENGTH {
        return Err(Refused(format!(
            "url must be at most {MAX_URL_LENGTH} characters"
        )));
    }
    let parsed = Url::parse(url).map_err(|error| Refused(format!("url is not a URL: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Refused("url must be http or https".into()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Refused("url must name a host".into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Refused("url must not carry credentials".into()));
    }
    if parsed.fragment().is_some() {
        return Err(Refused("url must not have a fragment".into()));
    }
    Ok(parsed)
}

/// Resolves the URL's host and refuses it when any address it resolves to is not public (and
/// private ones are not allowed), or when it does not resolve at all.
pub async fn check_host(url: &Url, allow_private: bool) -> Result<(), Refused> {
    let host = url
        .host_str()
        .ok_or_else(|| Refused("url must name a host".into()))?;
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses = resolve(host, port).await?;
    if allow_private {
        return Ok(());
    }
    // The address itself is not named: it would tell a caller what an internal name is.
    if addresses.iter().any(|a| !is_public(a.ip())) {
        return Err(Refused(
            "url resolves to a loopback, private or reserved address".into(),
        ));
    }
    Ok(())
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
    // An IPv6 literal comes bracketed from the URL.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let unresolved = || Refused(format!("url's host `{host}` does not resolve"));
    let addresses: Vec<SocketAddr> =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| unresolved())?
            .map_err(|_| unresolved())?
            .collect();
    if addresses.is_empty() {
        return Err(Refused(format!("url's host `{host}` does not resolve")));
    }
    Ok(addresses)
}

/// Whether an address is on the public internet: not loopback, private, link-local, shared
/// (CGNAT), unspecified, broadcast, multicast, documentation or otherwise reserved.
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
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let first = segments[0];
    // Forms that carry an IPv4 address inside are as public as that address.
    if segments[..6].iter().all(|s| *s == 0) {
        // IPv4-compatible (::a.b.c.d); `::` and `::1` are caught below as well.
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return !ip.is_loopback()
            && !ip.is_unspecified()
            && is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    if first == 0x2002 {
        // 6to4: 2002:a.b.c.d::/48.
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside some networks)
        || first == 0x2001 && segments[1] == 0x0000 // Teredo, which tunnels to IPv4 inside
        || first == 0x2001 && segments[1] == 0x0db8 // documentation
        || first == 0x0064 && segments[1] == 0xff9b) // NAT64, which reaches IPv4 inside
}

/// The delivery client's name resolution: resolves as the system does, then refuses the name
/// when an address is not public (unless private ones are allowed), so that the address
/// checked is the address connected to.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addresses = resolve(name.as_str(), 0).await?;
            if !allow_private {
                if let Some(address) = addresses.iter().find(|a| !is_public(a.ip())) {
                    return Err(Box::new(Refused(format!(
                        "{} resolves to {}, a loopback, private or reserved address",
                        name.as_str(),
                        address.ip()
                    )))
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// A URL whose host is an IP literal never goes through name resolution: checked here, at
/// every delivery.
pub fn check_literal(url: &Url, allow_private: bool) -> Result<(), Refused> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(Refused(format!(
            "url is {ip}, a loopback, private or reserved address"
        )))
    }
}

/// The resolver, shared.
pub fn resolver(allow_private: bool) -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver { allow_private })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_with_a_host_are_accepted() {
        assert!(parse("https://example.com/hook").is_ok());
        assert!(parse("http://example.com:8080/hook?x=1").is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "example.com/hook",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "gopher://x",
        ] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::a9fe:a9fe",
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
            "fec0::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} counted as public");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "2002:5db8:d822::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} counted as internal");
        }
    }

    #[tokio::test]
    async fn loopback_hosts_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://localhost:9/x",
            "http://[::1]:9/x",
        ] {
            let url = parse(url).unwrap();
            assert!(check_host(&url, false).await.is_err(), "{url} was accepted");
            assert!(check_literal(&url, false).is_err() || url.host_str() == Some("localhost"));
            assert!(check_host(&url, true).await.is_ok(), "{url} was refused");
        }
    }
}
