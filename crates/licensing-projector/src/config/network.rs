//! Addresses and networks as settings list them (`LICENSING_TRUSTED_PROXIES`).

use std::net::IpAddr;

/// An address or a network, as `LICENSING_TRUSTED_PROXIES` lists them (`10.0.0.5`, `10.0.0.0/8`,
/// `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(ipnet::IpNet);

/// Why an item is not an address or a network.
#[derive(Debug, thiserror::Error)]
pub enum InvalidNetwork {
    /// Written as a network (with a slash), but not one.
    #[error("{item} is not an IP network (an address, a slash, and a prefix length that fits it)")]
    Network {
        /// The item as written.
        item: String,
        /// What the parser said.
        source: ipnet::AddrParseError,
    },
    /// Neither an address nor a network.
    #[error("{item} is not an IP address or network")]
    Address {
        /// The item as written.
        item: String,
        /// What the parser said.
        source: std::net::AddrParseError,
    },
}

impl Network {
    /// Parses one item; the error says what is wrong.
    pub fn parse(item: &str) -> Result<Self, InvalidNetwork> {
        let item = item.trim();
        if item.contains('/') {
            item.parse::<ipnet::IpNet>()
                .map(|net| Self(net.trunc()))
                .map_err(|source| InvalidNetwork::Network {
                    item: item.to_owned(),
                    source,
                })
        } else {
            item.parse::<IpAddr>()
                .map(|ip| Self(ipnet::IpNet::from(ip)))
                .map_err(|source| InvalidNetwork::Address {
                    item: item.to_owned(),
                    source,
                })
        }
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let net = Network::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            Network::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("proxy.local").is_err());
    }
}
