//! `--node`: which node's REST API the client talks to. Plain `http://` only: the API is
//! meant for loopback and the LAN (a remote node sits behind the user's own tunnel or proxy).

use super::error::CliError;

/// The default: the local node `acp-relay serve` starts.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:7901";

/// A parsed `--node` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUrl {
    /// Host to connect to (an IPv6 address without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `Host` header value (`127.0.0.1:7901`, `[::1]:7901`).
    pub authority: String,
    /// Path prefix without a trailing slash (`""` normally; a proxy may mount the API lower).
    pub prefix: String,
    /// As the user should see it in messages.
    pub shown: String,
}

impl NodeUrl {
    /// Parses `http://host[:port][/prefix]`, `host:port` or a bare port (`7902`).
    pub fn parse(raw: &str) -> Result<NodeUrl, CliError> {
        let raw = raw.trim();
        let bad = |why: &str| {
            CliError::usage(format!(
                "--node {raw:?} {why} (expected e.g. {DEFAULT_NODE})"
            ))
        };
        let full = if raw.chars().all(|c| c.is_ascii_digit()) && !raw.is_empty() {
            format!("http://127.0.0.1:{raw}")
        } else if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("http://{raw}")
        };
        let url = url::Url::parse(&full).map_err(|e| bad(&format!("is not a URL: {e}")))?;
        match url.scheme() {
            "http" => {}
            "https" => return Err(bad("uses https; the client speaks plain http only")),
            other => return Err(bad(&format!("has scheme {other}:"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("carries credentials; use --token"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("has a query or fragment"));
        }
        let (host, bracketed) = match url.host() {
            Some(url::Host::Ipv6(a)) => (a.to_string(), format!("[{a}]")),
            Some(url::Host::Ipv4(a)) => (a.to_string(), a.to_string()),
            Some(url::Host::Domain(d)) if !d.is_empty() => (d.to_owned(), d.to_owned()),
            _ => return Err(bad("has no host")),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let prefix = url.path().trim_end_matches('/').to_owned();
        let authority = format!("{bracketed}:{port}");
        Ok(NodeUrl {
            shown: format!("http://{authority}{prefix}"),
            host,
            port,
            authority,
            prefix,
        })
    }

    /// A node on this machine: only then is the token file of a local data dir sent to it
    /// (a remote node must not learn the local node's token).
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms_people_type() {
        let u = NodeUrl::parse("http://127.0.0.1:7901").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("127.0.0.1", 7901, "")
        );
        assert_eq!(u.shown, "http://127.0.0.1:7901");
        assert_eq!(NodeUrl::parse("7902").unwrap().port, 7902);
        let u = NodeUrl::parse("localhost:7903/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 7903));
        assert!(u.is_loopback());
        let u = NodeUrl::parse("http://[::1]:7901/acp").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority.as_str()),
            ("::1", "[::1]:7901")
        );
        assert_eq!(u.prefix, "/acp");
        assert!(u.is_loopback());
        assert!(
            !NodeUrl::parse("http://192.0.2.7:7901")
                .unwrap()
                .is_loopback()
        );
        assert_eq!(NodeUrl::parse("http://box.lan").unwrap().port, 80);
    }

    #[test]
    fn refusals_are_one_line() {
        for bad in [
            "https://127.0.0.1:7901",
            "ftp://x",
            "http://u:p@127.0.0.1:1",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:1/?q",
            "",
            "http://",
        ] {
            let e = NodeUrl::parse(bad).unwrap_err();
            assert!(
                e.message.contains("--node") && !e.message.contains('\n'),
                "{bad}: {e:?}"
            );
            assert_eq!(e.exit, super::super::error::EXIT_USAGE);
        }
    }

    proptest! {
        #[test]
        fn prop_parse_never_panics_and_round_trips(raw in ".{0,80}") {
            if let Ok(u) = NodeUrl::parse(&raw) {
                let again = NodeUrl::parse(&u.shown).unwrap();
                prop_assert_eq!(again, u);
            }
        }
    }
}
