//! Value parsers the schema shares: addresses, networks, lowercased names.

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// A listener address, with a message that says what is expected.
pub(super) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            r#"{s:?} is not IP:port; a listener binds an IP address, e.g. "127.0.0.1:8080", "0.0.0.0:443" or "[::]:443""#
        ))
    })
}

/// The admin API's address, with a message that says what is expected.
pub(super) fn opt_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            r#"{s:?} is not IP:port; the admin API binds an IP address, e.g. "127.0.0.1:9090""#
        ))
    })
}

/// CIDR blocks, with bare addresses taken as single hosts.
pub(super) fn nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        r#"{s:?} is not an IP address or CIDR block such as "10.0.0.0/8""#
                    ))
                })
        })
        .collect()
}

pub(super) fn lowercase_host<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|h| h.to_ascii_lowercase()))
}

pub(super) fn lowercase_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    Ok(names.into_iter().map(|n| n.to_ascii_lowercase()).collect())
}

pub(super) fn some_lowercase_names<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    lowercase_names(d).map(Some)
}
