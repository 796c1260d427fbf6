//! The client's IP address, which sign-in throttling and rate limiting key on.
//!
//! It is the socket's peer address (axum `ConnectInfo`). `X-Forwarded-For` is anyone's to write,
//! so it is believed only when the deployment says a proxy it trusts sits in front
//! (`COMMERCE_TRUST_FORWARDED_FOR`), and then only its last entry: the one that proxy appended.
//! [`set_client_ip`] works it out once per request; every user reads the [`ClientIp`] extension.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;

/// The address a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// Whether the last `X-Forwarded-For` entry names the client (a trusted proxy in front).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustForwardedFor(pub bool);

impl ClientIp {
    fn find(extensions: &Extensions, headers: &HeaderMap, trust: TrustForwardedFor) -> Self {
        if let Some(known) = extensions.get::<ClientIp>() {
            return *known;
        }
        let forwarded = trust
            .0
            .then(|| {
                headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .next_back()
                    .and_then(|last| last.trim().parse::<IpAddr>().ok())
            })
            .flatten();
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        // Requests served in-process (the demo catalog loader) have no socket: they come from
        // this machine.
        Self(
            forwarded
                .or(peer)
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        )
    }

    /// The client address of a request that went through [`set_client_ip`] (else its peer).
    pub fn of(extensions: &Extensions, headers: &HeaderMap) -> Self {
        Self::find(extensions, headers, TrustForwardedFor(false))
    }
}

/// Middleware: records the request's [`ClientIp`] for everything after it.
pub async fn set_client_ip(
    State(trust): State<TrustForwardedFor>,
    mut request: Request,
    next: Next,
) -> Response {
    let ip = ClientIp::find(request.extensions(), request.headers(), trust);
    request.extensions_mut().insert(ip);
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions, &parts.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded.parse().unwrap());
        headers
    }

    fn peer(ip: [u8; 4]) -> Extensions {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::from((ip, 4000))));
        extensions
    }

    #[test]
    fn forwarded_for_is_ignored_unless_trusted() {
        let found = ClientIp::find(
            &peer([10, 0, 0, 1]),
            &headers("1.2.3.4"),
            TrustForwardedFor(false),
        );
        assert_eq!(found.0, IpAddr::from([10, 0, 0, 1]));
    }

    #[test]
    fn a_trusted_proxy_s_entry_is_the_last_one() {
        let found = ClientIp::find(
            &peer([10, 0, 0, 1]),
            &headers("6.6.6.6, 1.2.3.4"),
            TrustForwardedFor(true),
        );
        assert_eq!(found.0, IpAddr::from([1, 2, 3, 4]));
    }
}
