//! Addresses and networks as settings list them (`LICENSING_TRUSTED_PROXIES`).

use std::net::IpAddr;

/// An address or a network, as `LICENSING_TRUSTED_PROXIES` lists them (`10.0.0.5`, `10.0.0.0/8`,
/// `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(ipnet::IpNet);

impl Network {
    /// Parses one item; the error says what is wrong.
    pub fn parse(item: &str) -> Result<Self, String> {
        let item = item.trim();
        if item.contains('/') {
            item.parse::<ipnet::IpNet>()
                .map(|net| Self(net.trunc()))
                .map_err(|_| {
                    format!(
                        "{item} is not an IP network (an address, a slash, and a prefix length that fits it)"
                    )
                })
        } else {
            item.parse::<IpAddr>()
                .map(|ip| Self(ipnet::IpNet::from(ip)))
                .map_err(|_| format!("{item} is not an IP address or network"))
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
