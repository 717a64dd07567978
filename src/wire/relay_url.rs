//! Relay server addresses: the `--relay` flag (`https://relay.example:8443`, optionally
//! `?quic=PORT` for its QUIC address-discovery port) and the `relay=` hint of a link. Both
//! come from outside (a user's flag, a pasted link), so they are checked strictly.

/// The QUIC address-discovery port a relay serves unless told otherwise (iroh's default,
/// and `acp-relay relay --quic-bind`'s).
pub const DEFAULT_QUIC_PORT: u16 = 7842;

/// Longest relay URL accepted.
const MAX_LEN: usize = 512;

/// A relay this node may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySpec {
    /// The relay's URL as iroh dials it (normalized, no query).
    pub url: String,
    /// Its QUIC address-discovery port: how a node behind NAT learns its public address,
    /// which hole punching needs. Only over TLS (https); none for a plain-http relay.
    pub quic_port: Option<u16>,
}

impl RelaySpec {
    /// Parses a `--relay` value.
    pub fn parse(text: &str) -> Result<RelaySpec, String> {
        let text = text.trim();
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        let url = check(base)?;
        let mut quic_port = url.starts_with("https:").then_some(DEFAULT_QUIC_PORT);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("quic", "off")) => quic_port = None,
                Some(("quic", port)) => {
                    let port = port
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| {
                            format!("relay {text:?}: quic= takes a port (1-65535) or off")
                        })?;
                    if !url.starts_with("https:") {
                        return Err(format!(
                            "relay {text:?}: QUIC address discovery needs an https relay"
                        ));
                    }
                    quic_port = Some(port);
                }
                _ => {
                    return Err(format!(
                        "relay {text:?}: unknown parameter {pair:?} (only quic=PORT or quic=off)"
                    ));
                }
            }
        }
        Ok(RelaySpec { url, quic_port })
    }
}

/// Checks a relay URL (http or https, a host, nothing else) and returns it normalized.
pub fn check(text: &str) -> Result<String, String> {
    if text.len() > MAX_LEN {
        return Err(format!("relay URL longer than {MAX_LEN} characters"));
    }
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: a relay URL is http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?}: a relay URL names a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?}: a relay URL carries no user or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?}: a relay URL has no query or fragment"));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::config;
    use proptest::prelude::*;

    #[test]
    fn relay_flags_parse() {
        let r = RelaySpec::parse("https://relay.example:8443").unwrap();
        assert_eq!(r.url, "https://relay.example:8443/");
        assert_eq!(r.quic_port, Some(DEFAULT_QUIC_PORT));
        let r = RelaySpec::parse("https://203.0.113.10:8443/?quic=9000").unwrap();
        assert_eq!(r.url, "https://203.0.113.10:8443/");
        assert_eq!(r.quic_port, Some(9000));
        assert_eq!(
            RelaySpec::parse("https://r.example?quic=off")
                .unwrap()
                .quic_port,
            None
        );
        assert_eq!(
            RelaySpec::parse("http://127.0.0.1:3340").unwrap().quic_port,
            None
        );
        for bad in [
            "",
            "relay.example",
            "ftp://relay.example",
            "https://",
            "https://u:p@relay.example",
            "https://relay.example#x",
            "https://relay.example?quic=0",
            "https://relay.example?quic=x",
            "https://relay.example?foo=1",
            "http://relay.example?quic=7842",
        ] {
            assert!(RelaySpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Arbitrary text never panics; what is accepted is an http(s) URL that checks back
        /// to itself.
        #[test]
        fn prop_relay_url_arbitrary_text(raw in prop_oneof![
            any::<String>(),
            "(https?://)?[a-z0-9.:@/?#=&%\\[\\]-]{0,40}",
        ]) {
            if let Ok(url) = check(&raw) {
                prop_assert!(url.starts_with("http://") || url.starts_with("https://"));
                prop_assert_eq!(check(&url), Ok(url.clone()));
            }
            if let Ok(spec) = RelaySpec::parse(&raw) {
                prop_assert_eq!(check(&spec.url), Ok(spec.url.clone()));
            }
        }
    }
}
