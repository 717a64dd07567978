//! The two header values the HTTP guard decides on, parsed strictly: a `Host` header
//! (`host[:port]`) and an `Origin` header (`scheme://host[:port]`). Both come from outside, so
//! anything unusual (user info, paths, empty ports, stray characters) parses as nothing and
//! the guard refuses it, rather than guessing what was meant.

use std::fmt;

/// A `Host` header value: a lowercased host name or IP literal (IPv6 without brackets) and
/// the port, if the header named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Host name or IP, lowercased; IPv6 without brackets.
    pub host: String,
    /// Port as written, if any.
    pub port: Option<u16>,
}

impl Authority {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`. `None` for anything else.
    pub fn parse(raw: &str) -> Option<Authority> {
        let raw = raw.trim();
        let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(parse_port(p.strip_prefix(':')?)?),
            };
            (v6.to_owned(), port)
        } else {
            let (host, port) = match raw.rsplit_once(':') {
                Some((h, p)) => (h, Some(parse_port(p)?)),
                None => (raw, None),
            };
            if host.contains(':') {
                return None; // an IPv6 literal must be bracketed
            }
            (host.to_owned(), port)
        };
        let host = host.to_ascii_lowercase();
        if !valid_host(&host) {
            return None;
        }
        Some(Authority { host, port })
    }
}

/// A web origin, normalized: lowercase scheme and host, and the port only when it is not the
/// scheme's default, so `https://App.example:443` and `https://app.example` are one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http`, `https`, or another scheme (a browser extension's, say).
    pub scheme: String,
    /// Host, lowercased; IPv6 without brackets.
    pub host: String,
    /// The port; for http and https the default port when none was written.
    pub port: Option<u16>,
}

impl Origin {
    /// Parses a serialized origin. `None` for `null`, wildcards, paths, user info and
    /// anything that is not `scheme://host[:port]`.
    pub fn parse(raw: &str) -> Option<Origin> {
        let (scheme, rest) = raw.split_once("://")?;
        if scheme.is_empty()
            || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        // A trailing slash is what some tools write after an origin; nothing else may follow.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let authority = Authority::parse(rest)?;
        let port = authority.port.or_else(|| default_port(&scheme));
        Some(Origin {
            scheme,
            host: authority.host,
            port,
        })
    }

    /// Whether this origin is the page the node itself would serve at `host`: same host, and
    /// the same port (a `Host` without a port means the origin's default port).
    pub fn is_same_as(&self, host: &Authority) -> bool {
        matches!(self.scheme.as_str(), "http" | "https")
            && self.host == host.host
            && self.port == host.port.or_else(|| default_port(&self.scheme))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        match self.port {
            Some(p) if Some(p) != default_port(&self.scheme) => write!(f, ":{p}"),
            _ => Ok(()),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

/// A DNS name (letters, digits, `-`, `_`, dots) or an IP literal.
fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hosts_parse_with_and_without_ports() {
        let a = |h: &str, p: Option<u16>| {
            Some(Authority {
                host: h.into(),
                port: p,
            })
        };
        assert_eq!(Authority::parse("localhost"), a("localhost", None));
        assert_eq!(
            Authority::parse("LocalHost:7901"),
            a("localhost", Some(7901))
        );
        assert_eq!(Authority::parse("127.0.0.1:1"), a("127.0.0.1", Some(1)));
        assert_eq!(Authority::parse("[::1]"), a("::1", None));
        assert_eq!(Authority::parse("[::1]:7901"), a("::1", Some(7901)));
        for bad in [
            "",
            ":80",
            "host:",
            "host:99999",
            "host:+80",
            "::1",
            "[::1",
            "[::1]x",
            "[nothex]:1",
            "user@host",
            "a b",
            "host/x",
        ] {
            assert_eq!(Authority::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn origins_normalize_and_refuse_what_is_not_an_origin() {
        let o = Origin::parse("HTTPS://App.Example:443").unwrap();
        assert_eq!(o.to_string(), "https://app.example");
        assert_eq!(
            Origin::parse("http://[::1]:7901").unwrap().to_string(),
            "http://[::1]:7901"
        );
        assert_eq!(
            Origin::parse("https://app.example/").unwrap().to_string(),
            "https://app.example"
        );
        for bad in [
            "null",
            "*",
            "https://*.example",
            "https://app.example/path",
            "https://u@app.example",
            "https://app.example?x",
            "//app.example",
            "1http://x",
            "https://",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn same_origin_means_same_host_and_port() {
        let host = Authority::parse("127.0.0.1:7901").unwrap();
        assert!(
            Origin::parse("http://127.0.0.1:7901")
                .unwrap()
                .is_same_as(&host)
        );
        assert!(
            !Origin::parse("http://127.0.0.1:7902")
                .unwrap()
                .is_same_as(&host)
        );
        assert!(
            !Origin::parse("http://localhost:7901")
                .unwrap()
                .is_same_as(&host)
        );
        assert!(
            !Origin::parse("ftp://127.0.0.1:7901")
                .unwrap()
                .is_same_as(&host)
        );
        let bare = Authority::parse("relay.example").unwrap();
        assert!(
            Origin::parse("https://relay.example")
                .unwrap()
                .is_same_as(&bare)
        );
        assert!(
            !Origin::parse("https://relay.example:8443")
                .unwrap()
                .is_same_as(&bare)
        );
    }

    proptest! {
        /// Arbitrary header text never panics, and whatever parses prints back to itself.
        #[test]
        fn arbitrary_text_never_panics_and_origins_round_trip(raw in ".{0,64}") {
            let _ = Authority::parse(&raw);
            if let Some(o) = Origin::parse(&raw) {
                prop_assert_eq!(Origin::parse(&o.to_string()), Some(o));
            }
        }

        /// Every well-formed origin parses to its parts.
        #[test]
        fn well_formed_origins_parse(
            scheme in "(http|https|chrome-extension)",
            host in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,3}",
            port in proptest::option::of(1u16..),
        ) {
            let raw = match port {
                Some(p) => format!("{scheme}://{host}:{p}"),
                None => format!("{scheme}://{host}"),
            };
            let o = Origin::parse(&raw).expect("parses");
            prop_assert_eq!(&o.host, &host);
            prop_assert_eq!(o.port, port.or_else(|| default_port(&scheme)));
        }
    }
}
