//! The NATS servers the engine connects to. `NATS_URL` names one server, or several separated
//! by commas (the servers of a cluster, `nats://10.0.0.1:4222,nats://10.0.0.2:4222`): the client
//! connects to any of them, and when its server goes away it fails over to another, those listed
//! and those the cluster tells it of.

use std::fmt;

use anyhow::Context;
use async_nats::{ServerAddr, ToServerAddrs};

/// The servers of `NATS_URL`, checked. Displayed without the credentials an address may carry,
/// so that logs and the readiness report can name them.
#[derive(Clone, Debug)]
pub struct NatsServers(Vec<ServerAddr>);

impl NatsServers {
    /// Parses `NATS_URL`: addresses separated by commas (spaces around them ignored), each as
    /// the client takes it (`nats://host:port`, `tls://…`, or `host:port`). An error never
    /// repeats the address: it may carry a password.
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let entries: Vec<&str> = list.split(',').map(str::trim).collect();
        let count = entries.len();
        let servers = entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let which = if count == 1 {
                    "NATS_URL".to_owned()
                } else {
                    format!("NATS_URL, server {} of {count},", index + 1)
                };
                anyhow::ensure!(
                    !entry.is_empty(),
                    "{which} is empty (several servers are separated by single commas)"
                );
                entry
                    .parse::<ServerAddr>()
                    // The parser's own message names the fault (a port, a scheme), not the text.
                    .map_err(|error| anyhow::anyhow!("{error}"))
                    .with_context(|| format!("{which} is not a NATS server address"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self(servers))
    }
}

/// `nats://host:port,nats://host:port`: the servers without user, password or token.
impl fmt::Display for NatsServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, server) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            let host = server.host();
            if host.contains(':') {
                write!(f, "{}://[{host}]:{}", server.scheme(), server.port())?;
            } else {
                write!(f, "{}://{host}:{}", server.scheme(), server.port())?;
            }
        }
        Ok(())
    }
}

/// So that `connect` takes the whole list, as its server pool.
impl ToServerAddrs for NatsServers {
    type Iter = std::vec::IntoIter<ServerAddr>;

    fn to_server_addrs(&self) -> std::io::Result<Self::Iter> {
        Ok(self.0.clone().into_iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_or_a_comma_separated_list() {
        let one = NatsServers::parse("nats://127.0.0.1:4222").unwrap();
        assert_eq!(one.to_string(), "nats://127.0.0.1:4222");
        let three =
            NatsServers::parse("nats://127.0.0.1:4301, nats://127.0.0.1:4302,127.0.0.1:4303")
                .unwrap();
        assert_eq!(
            three.to_string(),
            "nats://127.0.0.1:4301,nats://127.0.0.1:4302,nats://127.0.0.1:4303"
        );
    }

    #[test]
    fn a_malformed_list_says_which_server_and_never_repeats_it() {
        for (list, expected) in [
            ("", "NATS_URL is empty"),
            ("nats://a:4222,,nats://b:4222", "server 2 of 3, is empty"),
            ("nats://a:4222,", "server 2 of 2, is empty"),
            (
                "nats://a:4222,nats://u:Pa55word@b:99999",
                "server 2 of 2, is not a NATS server address",
            ),
            (
                "nats://a:4222,http://u:Pa55word@b:4222",
                "server 2 of 2, is not a NATS server address",
            ),
        ] {
            let error = format!("{:#}", NatsServers::parse(list).unwrap_err());
            assert!(error.contains(expected), "{list}: {error}");
            assert!(!error.contains("Pa55word"), "{list}: {error}");
        }
    }

    #[test]
    fn displayed_without_credentials() {
        let servers =
            NatsServers::parse("nats://user:Pa55word@10.0.0.1:4222,nats://s3cr3t-token@[::1]:4223")
                .unwrap();
        let shown = servers.to_string();
        assert_eq!(shown, "nats://10.0.0.1:4222,nats://[::1]:4223");
    }
}
