//! `acp://host:port/token` links: parsing, formatting and the token check a host does on
//! every dialling peer. A link is the whole address of a node, so its parser is strict and
//! its errors say exactly what is wrong.
//!
//! A link may also name the host's key: `acp://host:port/token?did=did:acp:…` (or a
//! did:key). A dialler holding such a link makes the host prove it holds that key. The
//! reference's parser reads the token from the path and ignores the query, so it dials such
//! a link as it dials any other.
//!
//! A node that uses relays (`--relay`) adds what a dialler needs to reach it behind a NAT
//! (levels 2 and 3, over iroh): the relay it can be reached through and the UDP addresses
//! it knows for itself: `…?did=…&relay=https://relay.example:8443/&addr=203.0.113.7:41641`.
//! The key to dial is the did, so a link with hints must name one.

use std::fmt;

/// A parsed `acp://` link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Peer WebSocket port (7801 when the link omits it, as in the reference).
    pub port: u16,
    /// The node's token (`tok_…`).
    pub token: String,
    /// The host's key as the link names it (`?did=`), normalized to its did:acp form.
    pub did: Option<String>,
    /// The relay the host can be reached through (`?relay=`, an http(s) URL).
    pub relay: Option<String>,
    /// UDP addresses the host's iroh endpoint listens on (`?addr=`, repeatable).
    pub addrs: Vec<std::net::SocketAddr>,
}

/// Most `addr=` hints a link may carry (a host knows a handful of its addresses).
pub const MAX_ADDR_HINTS: usize = 8;

/// Longest link we accept; anything longer is garbage, not an address.
const MAX_LINK_LEN: usize = 2048;

impl Link {
    /// Parses a link, rejecting other schemes, missing parts and out-of-range ports.
    pub fn parse(text: &str) -> Result<Link, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("link must be a non-empty string".into());
        }
        if text.len() > MAX_LINK_LEN {
            return Err(format!("link longer than {MAX_LINK_LEN} characters"));
        }
        if text.starts_with("acp+wss://") || text.starts_with("acp+ws://") {
            return Err(format!(
                "relay links (acp+wss://) are not supported: acp-relay never routes through a \
                 third-party relay (it reaches nodes behind NAT through relays you run: \
                 --relay, docs/nat.md); use the peer's acp:// link: {text:?}"
            ));
        }
        let rest = text.strip_prefix("acp://").ok_or_else(|| {
            format!("invalid link scheme (expected acp://host:port/token): {text:?}")
        })?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        // The query first: a relay hint may end in slashes, which belong to it, not to the
        // token's path.
        let (token, after) = path.split_once(['?', '#']).unwrap_or((path, ""));
        let token = token.trim_matches('/');
        let hints = Hints::parse(after.split('#').next().unwrap_or(""))
            .map_err(|e| format!("{e}: {text:?}"))?;
        if token.is_empty() {
            return Err(format!("link missing token: {text:?}"));
        }
        if token.contains('/')
            || !token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("link token has invalid characters: {text:?}"));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("link has an invalid host or port: {text:?}"))?;
        if host.is_empty() {
            return Err(format!("link missing host: {text:?}"));
        }
        Ok(Link {
            host,
            port,
            token: token.to_owned(),
            did: hints.did,
            relay: hints.relay,
            addrs: hints.addrs,
        })
    }

    /// A link without any query: host, port and token.
    pub fn plain(host: &str, port: u16, token: &str) -> Link {
        Link {
            host: host.to_owned(),
            port,
            token: token.to_owned(),
            did: None,
            relay: None,
            addrs: Vec::new(),
        }
    }

    /// Whether the link carries what a dialler needs for levels 2 and 3 (a key, and a relay
    /// or an address to try).
    pub fn has_route_hints(&self) -> bool {
        self.did.is_some() && (self.relay.is_some() || !self.addrs.is_empty())
    }

    /// The WebSocket URL a dialer opens.
    pub fn ws_url(&self) -> String {
        format!("ws://{}:{}/{}", bracket(&self.host), self.port, self.token)
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "acp://{}:{}/{}",
            bracket(&self.host),
            self.port,
            self.token
        )?;
        let mut sep = '?';
        let mut param = |f: &mut fmt::Formatter<'_>, k: &str, v: &str| {
            let r = write!(f, "{sep}{k}={}", percent_encode(v));
            sep = '&';
            r
        };
        if let Some(did) = &self.did {
            param(f, "did", did)?;
        }
        if let Some(relay) = &self.relay {
            param(f, "relay", relay)?;
        }
        for addr in &self.addrs {
            param(f, "addr", &addr.to_string())?;
        }
        Ok(())
    }
}

/// What a link's query says besides the token.
#[derive(Default)]
struct Hints {
    did: Option<String>,
    relay: Option<String>,
    addrs: Vec<std::net::SocketAddr>,
}

impl Hints {
    /// The `did`, `relay` and `addr` parameters of a link's query (other parameters are
    /// ignored, for links of later versions), checked; the did normalized to did:acp.
    fn parse(query: &str) -> Result<Hints, String> {
        let mut hints = Hints::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !matches!(k, "did" | "relay" | "addr") {
                continue;
            }
            let v = percent_decode(v).ok_or_else(|| format!("link {k} has a bad %-escape"))?;
            match k {
                "did" => {
                    if hints.did.is_some() {
                        return Err("link names more than one did".into());
                    }
                    let key =
                        crate::wire::did::parse_did(&v).map_err(|e| format!("link did: {e}"))?;
                    hints.did = Some(crate::wire::did::did_acp(&key));
                }
                "relay" => {
                    if hints.relay.is_some() {
                        return Err("link names more than one relay".into());
                    }
                    hints.relay = Some(
                        crate::wire::relay_url::check(&v)
                            .map_err(|e| format!("link relay: {e}"))?,
                    );
                }
                _ => {
                    if hints.addrs.len() == MAX_ADDR_HINTS {
                        return Err(format!("link has more than {MAX_ADDR_HINTS} addr hints"));
                    }
                    let addr = v
                        .parse::<std::net::SocketAddr>()
                        .ok()
                        .filter(|a| a.port() != 0)
                        .ok_or_else(|| format!("link addr {v:?} is not an IP:port"))?;
                    hints.addrs.push(addr);
                }
            }
        }
        if hints.did.is_none() && (hints.relay.is_some() || !hints.addrs.is_empty()) {
            return Err("link has relay or addr hints but no did (the key to dial)".into());
        }
        Ok(hints)
    }
}

/// `%XX` encoding of a query value: everything but unreserved characters, `:` and `/`
/// (which the query may hold as they are, and which keep relay URLs and addresses
/// readable).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` decoding (a did's `:` may come escaped), none for a malformed escape.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn split_host_port(authority: &str) -> Option<(String, u16)> {
    if authority.contains('@') {
        return None;
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        // Brackets hold an IPv6 address and nothing else: any other text there would be a
        // host that the printed link and the WebSocket URL cannot carry.
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => 7801,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_owned(), parse_port(port)?)),
        Some(_) => None,
        None => Some((authority.to_owned(), 7801)),
    }
    .filter(|(h, _)| {
        h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    })
}

fn parse_port(p: &str) -> Option<u16> {
    let port: u16 = p.parse().ok()?;
    (port != 0).then_some(port)
}

/// Compares the path a dialer asked for with this node's token, in constant time.
pub fn token_matches(path: &str, token: &str) -> bool {
    let asked = path.trim_matches('/');
    let asked = asked.split('?').next().unwrap_or("");
    asked.len() == token.len()
        && asked
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::config;
    use proptest::prelude::*;

    #[test]
    fn parses_and_formats() {
        let link = Link::parse("acp://127.0.0.1:7801/tok_0123456789abcdef").unwrap();
        assert_eq!(link.host, "127.0.0.1");
        assert_eq!(link.port, 7801);
        assert_eq!(link.token, "tok_0123456789abcdef");
        assert_eq!(
            link.to_string(),
            "acp://127.0.0.1:7801/tok_0123456789abcdef"
        );
        assert_eq!(link.ws_url(), "ws://127.0.0.1:7801/tok_0123456789abcdef");
        let v6 = Link::parse("acp://[::1]:9000/tok_a").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "acp://[::1]:9000/tok_a");
        assert_eq!(Link::parse("acp://example.org/tok_a").unwrap().port, 7801);
    }

    #[test]
    fn rejects_bad_links() {
        for bad in [
            "",
            "http://1.2.3.4:7801/tok_a",
            "acp://1.2.3.4:7801/",
            "acp://1.2.3.4:99999/tok_a",
            "acp://1.2.3.4:0/tok_a",
            "acp://:7801/tok_a",
            "acp://user@host:7801/tok_a",
            "acp://host:7801/tok a",
            "acp://[%]/a",
            "acp://[ho st]:1/tok",
            "acp://[1.2.3.4]:1/tok",
            "acp+wss://relay.example/acp/tok_a",
            "acp://ho st:1/tok",
        ] {
            assert!(Link::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    const DID: &str = "did:acp:A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg";

    #[test]
    fn a_link_may_name_the_hosts_key() {
        let text = format!("acp://127.0.0.1:7801/tok_a?did={DID}");
        let link = Link::parse(&text).unwrap();
        assert_eq!(link.token, "tok_a");
        assert_eq!(link.did.as_deref(), Some(DID));
        assert_eq!(link.to_string(), text);
        assert_eq!(link.ws_url(), "ws://127.0.0.1:7801/tok_a");
        // did:key and an escaped colon name the same key; other parameters are ignored.
        let same = Link::parse(
            "acp://127.0.0.1:7801/tok_a?x=1&did=did%3Akey%3Az6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd#frag",
        )
        .unwrap();
        assert_eq!(same, link);
        for bad in [
            "acp://h:1/tok?did=did:acp:AAAA",
            "acp://h:1/tok?did=",
            "acp://h:1/tok?did=did:web:example.org",
            "acp://h:1/tok?did=%zz",
            &format!("acp://h:1/tok?did={DID}&did={DID}"),
        ] {
            assert!(Link::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_link_may_carry_route_hints() {
        let text = format!(
            "acp://100.64.1.2:7801/tok_a?did={DID}&relay=https://relay.example:8443/&addr=203.0.113.7:41641&addr=[2001:db8::1]:41641"
        );
        let link = Link::parse(&text).unwrap();
        assert_eq!(link.relay.as_deref(), Some("https://relay.example:8443/"));
        assert_eq!(
            link.addrs,
            vec![
                "203.0.113.7:41641".parse().unwrap(),
                "[2001:db8::1]:41641".parse().unwrap()
            ]
        );
        assert!(link.has_route_hints());
        // Printed with the brackets escaped, and parsed back to the same link.
        let printed = link.to_string();
        assert!(
            printed.contains("&addr=%5B2001:db8::1%5D:41641"),
            "{printed}"
        );
        assert_eq!(Link::parse(&printed), Ok(link.clone()));
        // The WebSocket URL (level 1, and what the reference dials) ignores the hints.
        assert_eq!(link.ws_url(), "ws://100.64.1.2:7801/tok_a");
        // A relay URL ending in slashes keeps them (found by the property test below).
        let slashes = format!("acp://h:1/tok_a?did={DID}&relay=http://a//");
        assert_eq!(
            Link::parse(&slashes).unwrap().relay.as_deref(),
            Some("http://a//")
        );
        assert_eq!(Link::parse(&slashes).unwrap().token, "tok_a");
        // An escaped relay URL is the same relay.
        let escaped = format!(
            "acp://100.64.1.2:7801/tok_a?did={DID}&relay=https%3A%2F%2Frelay.example%3A8443%2F"
        );
        assert_eq!(
            Link::parse(&escaped).unwrap().relay.as_deref(),
            Some("https://relay.example:8443/")
        );
        for bad in [
            "acp://h:1/tok?relay=https://r.example/".to_owned(),
            "acp://h:1/tok?addr=1.2.3.4:5".to_owned(),
            format!("acp://h:1/tok?did={DID}&relay=ftp://r.example/"),
            format!("acp://h:1/tok?did={DID}&relay=https://r.example/&relay=https://s.example/"),
            format!("acp://h:1/tok?did={DID}&addr=1.2.3.4"),
            format!("acp://h:1/tok?did={DID}&addr=1.2.3.4:0"),
            format!("acp://h:1/tok?did={DID}&addr=example.org:5"),
            format!(
                "acp://h:1/tok?did={DID}{}",
                "&addr=1.2.3.4:5".repeat(MAX_ADDR_HINTS + 1)
            ),
        ] {
            assert!(Link::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_check_is_exact() {
        assert!(token_matches("/tok_abc", "tok_abc"));
        assert!(token_matches("tok_abc/", "tok_abc"));
        assert!(!token_matches("/tok_abd", "tok_abc"));
        assert!(!token_matches("/tok_ab", "tok_abc"));
        assert!(!token_matches("/", "tok_abc"));
    }

    /// Text shaped like a link (scheme, brackets, colons, slashes, query) or anything at all.
    fn arb_link_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "(acp://|acp+ws://|ACP://| acp://)?[\\[\\]:/@?#a-z0-9._ %-]{0,40}",
            "acp://\\[[0-9a-fA-F:. %a-z]{0,20}\\](:[0-9+-]{0,6})?/[a-zA-Z0-9_?#/-]{0,20}",
        ]
    }

    /// A host a link may name: a DNS name, an IPv4 address or an IPv6 address.
    fn arb_host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]([a-z0-9_-]{0,20}[a-z0-9])?(\\.[a-z0-9-]{1,10}){0,3}",
            any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
            any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
        ]
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Arbitrary text never panics; whatever parses is a usable address that prints back
        /// to itself, and its WebSocket URL is the same address.
        #[test]
        fn prop_link_arbitrary_text_round_trips(raw in arb_link_text()) {
            if let Ok(link) = Link::parse(&raw) {
                prop_assert!(!link.host.is_empty() && link.port != 0 && !link.token.is_empty());
                let printed = link.to_string();
                prop_assert_eq!(Link::parse(&printed), Ok(link.clone()), "printed {}", printed);
                prop_assert_eq!(
                    link.ws_url(),
                    format!(
                        "ws://{}",
                        printed.strip_prefix("acp://").unwrap_or_default().split('?').next().unwrap_or_default()
                    )
                );
            }
        }

        /// Every well-formed link parses to its parts, with or without a port, and prints back.
        #[test]
        fn prop_link_valid_links_round_trip(
            host in arb_host(),
            port in proptest::option::of(1u16..),
            token in "[A-Za-z0-9_-]{1,40}",
            query in proptest::option::of("[?#][a-z=&]{0,10}"),
        ) {
            let shown = if host.contains(':') { format!("[{host}]") } else { host.clone() };
            let authority = match port {
                Some(p) => format!("{shown}:{p}"),
                None => shown.clone(),
            };
            let raw = format!("acp://{authority}/{token}{}", query.unwrap_or_default());
            let link = Link::parse(&raw).map_err(TestCaseError::fail)?;
            let port = port.unwrap_or(7801);
            prop_assert_eq!(link.ws_url(), format!("ws://{shown}:{port}/{token}"));
            let want = Link::plain(&host, port, &token);
            prop_assert_eq!(&link, &want);
            prop_assert_eq!(Link::parse(&link.to_string()), Ok(want));
        }

        /// A link with a `?did=` (any key, any form, among other parameters) parses to that
        /// key and prints back to itself; garbage after `did=` never panics.
        #[test]
        fn prop_link_with_did(
            seed in any::<[u8; 32]>(),
            as_key in any::<bool>(),
            before in proptest::option::of("[a-z]{1,5}=[a-z0-9]{0,5}"),
            garbage in any::<String>(),
        ) {
            let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            let did = if as_key { crate::wire::did::did_key(&key) } else { crate::wire::did::did_acp(&key) };
            let query = match before { Some(b) => format!("{b}&did={did}"), None => format!("did={did}") };
            let link = Link::parse(&format!("acp://127.0.0.1:9/tok_x?{query}")).map_err(TestCaseError::fail)?;
            let acp = crate::wire::did::did_acp(&key);
            prop_assert_eq!(link.did.as_deref(), Some(acp.as_str()));
            prop_assert_eq!(Link::parse(&link.to_string()), Ok(link.clone()));
            let _ = Link::parse(&format!("acp://127.0.0.1:9/tok_x?did={garbage}"));
        }

        /// Any relay URL and addresses ride in a link and come back out the same; garbage in
        /// their place never panics.
        #[test]
        fn prop_link_route_hints_round_trip(
            seed in any::<[u8; 32]>(),
            relay in proptest::option::of(("(http|https)", "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5})?", proptest::option::of(1u16..), "(/[a-z0-9_-]{0,8}){0,2}")),
            addrs in proptest::collection::vec(any::<std::net::SocketAddr>(), 0..=MAX_ADDR_HINTS),
            garbage in any::<String>(),
        ) {
            let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            let relay = relay.map(|(scheme, host, port, path)| {
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                crate::wire::relay_url::check(&format!("{scheme}://{host}{port}{path}")).unwrap()
            });
            // What a link can say of an address: no IPv6 flow label or zone (link-local
            // addresses, the only ones with zones, are never put into links).
            let addrs: Vec<_> = addrs
                .into_iter()
                .filter(|a| a.port() != 0)
                .map(|a| std::net::SocketAddr::new(a.ip(), a.port()))
                .collect();
            let link = Link {
                did: Some(crate::wire::did::did_acp(&key)),
                relay,
                addrs,
                ..Link::plain("100.64.0.1", 7801, "tok_x")
            };
            let printed = link.to_string();
            prop_assert_eq!(Link::parse(&printed), Ok(link.clone()), "printed {}", printed);
            let did = crate::wire::did::did_acp(&key);
            for k in ["relay", "addr"] {
                let _ = Link::parse(&format!("acp://h:1/tok?did={did}&{k}={garbage}"));
            }
        }

        /// The token check never panics, accepts the token's own path (any slashes, any
        /// query) and nothing whose token part differs.
        #[test]
        fn prop_link_token_matches_exactly(
            path in any::<String>(),
            token in "[A-Za-z0-9_-]{0,40}",
            query in proptest::option::of("\\?.{0,10}"),
        ) {
            let asked = path.trim_matches('/').split('?').next().unwrap_or("");
            prop_assert_eq!(token_matches(&path, &token), asked == token);
            let own = format!("/{token}{}", query.unwrap_or_default());
            prop_assert!(token_matches(&own, &token));
        }
    }
}
