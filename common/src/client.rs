//! Who a client is, for every per-client limit of both services: the address the request came from, seen
//! through the proxies this service trusts, grouped so that one host cannot pose as many.
//!
//! - [`TrustedProxies`] (`--trusted-proxies <CIDR,…>`): only when the connection's peer is a trusted proxy is
//!   `X-Forwarded-For` read at all, and then the client is the rightmost entry that is not itself a trusted
//!   proxy. Everything left of it was written by the client and is ignored, so a client cannot choose its own
//!   address by sending the header. Otherwise the client is the peer.
//! - [`ClientKey`]: an IPv4 address as is; an IPv6 address cut to its first `prefix` bits (/64 by default: one
//!   subscriber's whole allocation), since one host can use as many addresses of its /64 as it likes.
//! - [`ClientShares`]: how many long-lived connections (WebSockets, event streams) each client holds, against a
//!   per-client limit.
//!
//! Written here rather than taken from a crate: `axum-client-ip` reads a fixed position of the header
//! (leftmost or rightmost), which is right only with exactly one proxy hop and never checks who the peer is;
//! the walk over a trusted set is a dozen lines, and `ipnet` does the address arithmetic.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of CIDR ranges or single addresses; empty trusts nobody.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                IpNet::from_str(entry)
                    .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is neither an address nor a CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl TrustedProxies {
    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether any proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client of a request that arrived from `peer` with these headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        // Every hop appends the address it received the request from; read from the right (our side), past
        // the trusted hops, to the first address no trusted proxy is: the one the outermost proxy saw.
        let mut client = peer;
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        for entry in entries.into_iter().rev() {
            let Some(ip) = parse_entry(entry) else {
                // A trusted proxy never writes this: it came from the client. The last trusted hop is as far as
                // the chain can be believed.
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5`, `[2001:db8::1]:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = IpAddr::from_str(entry) {
        return Some(canonical(ip));
    }
    let host = match entry.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => entry.rsplit_once(':')?.0,
    };
    IpAddr::from_str(host).ok().map(canonical)
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack socket reports) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One client, for counting: an IPv4 address, or the network of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of `ip`, IPv6 addresses grouped by their first `ipv6_prefix` bits (at most 128).
    pub fn new(ip: IpAddr, ipv6_prefix: u8) -> Self {
        match canonical(ip) {
            IpAddr::V6(v6) => {
                let network = ipnet::Ipv6Net::new(v6, ipv6_prefix.min(128)).map_or(v6, |net| net.network());
                Self(IpAddr::V6(network))
            }
            v4 => Self(v4),
        }
    }

    /// The address (for IPv6, the network's first address).
    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Open long-lived connections by client, each client held to `limit`. Only clients with an open connection have
/// an entry, so the map is bounded by the connections themselves.
#[derive(Debug)]
pub struct ClientShares {
    limit: usize,
    open: Mutex<HashMap<ClientKey, usize>>,
}

/// One connection of one client; its share is given back when dropped.
#[derive(Debug)]
pub struct ClientShare {
    of: Arc<ClientShares>,
    client: ClientKey,
}

impl ClientShares {
    /// Shares of at most `limit` connections per client (at least one).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            open: Mutex::default(),
        })
    }

    /// One more connection of `client`, unless it holds its limit already.
    pub fn take(self: &Arc<Self>, client: ClientKey) -> Option<ClientShare> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientShare {
            of: self.clone(),
            client,
        })
    }
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// How a service tells its clients apart: the flags both services share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientFlags {
    /// Proxies (CIDR ranges or addresses, comma-separated) whose `X-Forwarded-For` is believed, e.g. the
    /// ingress's pod range. Only a request whose peer is one of them is read for a client address: the
    /// rightmost entry that is not itself a trusted proxy. Empty: the client is the connection's peer.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = TrustedProxies::from_str)]
    pub trusted_proxies: TrustedProxies,

    /// IPv6 clients are grouped by this prefix length for every per-client limit (one subscriber usually has a
    /// whole /64 and can use any address in it).
    #[arg(long, env = "IPV6_CLIENT_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=128))]
    pub ipv6_client_prefix: u8,
}

impl ClientFlags {
    /// The key of the client of a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> ClientKey {
        ClientKey::new(
            self.trusted_proxies.client(peer, headers),
            self.ipv6_client_prefix,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in xff {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_client_is_the_peer_whatever_the_header_says() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("203.0.113.9"), &headers(&["1.1.1.1"])),
            ip("203.0.113.9")
        );
        let ingress: TrustedProxies = "10.42.0.0/16".parse().unwrap();
        assert_eq!(
            ingress.client(ip("203.0.113.9"), &headers(&["1.1.1.1"])),
            ip("203.0.113.9"),
            "a peer that is not a trusted proxy is the client"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_entry() {
        let trusted: TrustedProxies = "10.42.0.0/16, 192.168.1.1".parse().unwrap();
        let peer = ip("10.42.0.7");
        // The client wrote "6.6.6.6" itself; the ingress appended the address it saw.
        assert_eq!(
            trusted.client(peer, &headers(&["6.6.6.6, 198.51.100.4"])),
            ip("198.51.100.4")
        );
        // Two trusted hops, split over two headers.
        assert_eq!(
            trusted.client(peer, &headers(&["6.6.6.6, 198.51.100.4", "192.168.1.1"])),
            ip("198.51.100.4")
        );
        // Ports and brackets as some proxies write them.
        assert_eq!(
            trusted.client(peer, &headers(&["198.51.100.4:5555"])),
            ip("198.51.100.4")
        );
        assert_eq!(
            trusted.client(peer, &headers(&["[2001:db8::1]:5555"])),
            ip("2001:db8::1")
        );
        // Garbage left of a trusted hop stops the walk there; no header at all leaves the peer.
        assert_eq!(
            trusted.client(peer, &headers(&["junk, 192.168.1.1"])),
            ip("192.168.1.1")
        );
        assert_eq!(trusted.client(peer, &headers(&[])), peer);
        // Every entry trusted: the leftmost one is as far as it goes.
        assert_eq!(trusted.client(peer, &headers(&["10.42.9.9"])), ip("10.42.9.9"));
    }

    #[test]
    fn mapped_addresses_are_ipv4_and_ipv6_groups_by_prefix() {
        let trusted: TrustedProxies = "127.0.0.1".parse().unwrap();
        assert!(trusted.contains(ip("::ffff:127.0.0.1")));
        let a = ClientKey::new(ip("2001:db8:1:2:aaaa::1"), 64);
        let b = ClientKey::new(ip("2001:db8:1:2:bbbb::9"), 64);
        let other = ClientKey::new(ip("2001:db8:1:3::1"), 64);
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::");
        assert_ne!(ClientKey::new(ip("2001:db8:1:2:aaaa::1"), 128), b);
        assert_eq!(
            ClientKey::new(ip("::ffff:1.2.3.4"), 64),
            ClientKey::new(ip("1.2.3.4"), 64)
        );
    }

    #[test]
    fn shares_are_held_per_client_and_given_back() {
        let shares = ClientShares::new(2);
        let a = ClientKey::new(ip("192.0.2.1"), 64);
        let (first, _second) = (shares.take(a).unwrap(), shares.take(a).unwrap());
        assert!(shares.take(a).is_none());
        assert!(shares.take(ClientKey::new(ip("192.0.2.2"), 64)).is_some());
        drop(first);
        assert!(shares.take(a).is_some());
    }

    #[test]
    fn bad_lists_are_refused_with_the_entry() {
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        let error = "10.0.0.0/8, nonsense".parse::<TrustedProxies>().unwrap_err();
        assert!(error.contains("nonsense"), "{error}");
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
    }
}
