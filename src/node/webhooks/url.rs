//! Which URLs a webhook may have. The node sends every event (message text included) to a
//! registered URL, so it takes only what it can reach safely and the user can read back:
//! `http` or `https`, a host, no user name or password (they would sit in the store and in
//! `GET /webhooks` in clear, and `https://user@host` is a classic way to disguise a host),
//! no fragment (never sent), nothing invisible. The URL is normalized (scheme and host in
//! lower case, default port dropped, `/` path), so the same receiver written two ways is one
//! webhook.

use std::net::IpAddr;

/// Longest accepted URL, in bytes: far above any real endpoint, small enough for a log line.
pub const MAX_URL_LEN: usize = 2048;

/// A checked, normalized webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: url::Url,
}

/// Where to open the TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A literal address: connect to it.
    Ip(IpAddr),
    /// A name, resolved by the system resolver at each connection.
    Name(String),
}

impl WebhookUrl {
    /// Checks `raw` (surrounding whitespace ignored). The error says what to change.
    pub fn parse(raw: &str) -> Result<WebhookUrl, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(
                "'url' is required: the http:// or https:// address to POST events to".into(),
            );
        }
        if raw.len() > MAX_URL_LEN {
            return Err(format!(
                "'url' is {} bytes long; at most {MAX_URL_LEN} are accepted",
                raw.len()
            ));
        }
        // The URL parser silently drops tabs and newlines; a URL holding any is refused
        // instead, so what is stored is what the user wrote.
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("'url' contains spaces or control characters".into());
        }
        let url = url::Url::parse(raw).map_err(|e| format!("'url' is not a valid URL ({e})"))?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(format!(
                    "only http:// and https:// webhook URLs are accepted, not {other}:"
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "a webhook URL may not carry a user name or password (user:pass@); the node \
                 signs its requests with --secret instead"
                    .into(),
            );
        }
        if url.host().is_none() {
            return Err("'url' has no host".into());
        }
        if url.fragment().is_some() {
            return Err("'url' has a #fragment, which is never sent: remove it".into());
        }
        if url.port() == Some(0) {
            return Err("'url' has port 0".into());
        }
        Ok(WebhookUrl { url })
    }

    /// The normalized URL, as stored and shown.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// Whether the connection is TLS.
    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// The TCP port (the scheme's default when the URL names none).
    pub fn port(&self) -> u16 {
        self.url
            .port_or_known_default()
            .unwrap_or(if self.is_https() { 443 } else { 80 })
    }

    /// What to connect to.
    pub fn target(&self) -> Target {
        match self.url.host() {
            Some(url::Host::Ipv4(ip)) => Target::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Target::Ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) => Target::Name(d.to_owned()),
            None => Target::Name(String::new()),
        }
    }

    /// The `Host` header: the host as written in the URL (`[::1]` for IPv6), with the port
    /// when it is not the scheme's default.
    pub fn authority(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }

    /// The request target of an HTTP/1.1 request: path and query.
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }

    /// Whether the receiver is on this machine (its traffic never crosses a network).
    pub fn is_loopback(&self) -> bool {
        match self.target() {
            Target::Ip(ip) => ip.is_loopback(),
            Target::Name(n) => n == "localhost" || n.ends_with(".localhost"),
        }
    }
}

/// Whether an address is on the public internet: not loopback, private (RFC 1918, IPv6
/// unique-local), link-local (cloud metadata at 169.254.169.254), shared (100.64.0.0/10),
/// documentation, benchmarking, multicast, broadcast, unspecified or reserved. IPv4-mapped
/// IPv6 addresses are judged as the IPv4 address they carry. What a remote A2A caller may
/// make the node POST to (as the official SDK's `validate_push_notification_url`).
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn http_and_https_urls_are_taken_and_normalized() {
        let u = WebhookUrl::parse("  HTTP://Example.COM:80/hook?x=1 ").unwrap();
        assert_eq!(u.as_str(), "http://example.com/hook?x=1");
        assert_eq!(u.authority(), "example.com");
        assert_eq!(u.path_and_query(), "/hook?x=1");
        assert_eq!(u.port(), 80);
        assert!(!u.is_https());
        let u = WebhookUrl::parse("https://[::1]:8443").unwrap();
        assert_eq!(u.as_str(), "https://[::1]:8443/");
        assert_eq!(u.authority(), "[::1]:8443");
        assert_eq!(u.target(), Target::Ip("::1".parse().unwrap()));
        assert!(u.is_https() && u.is_loopback());
        assert_eq!(WebhookUrl::parse("https://h.example").unwrap().port(), 443);
        assert!(
            WebhookUrl::parse("http://localhost:9/")
                .unwrap()
                .is_loopback()
        );
        assert!(
            !WebhookUrl::parse("http://192.0.2.1/")
                .unwrap()
                .is_loopback()
        );
    }

    #[test]
    fn other_schemes_userinfo_fragments_and_junk_are_refused() {
        for (bad, why) in [
            ("", "required"),
            ("   ", "required"),
            ("ftp://example.com/x", "only http"),
            ("file:///etc/passwd", "only http"),
            ("javascript:alert(1)", "only http"),
            ("ws://127.0.0.1:9/", "only http"),
            ("http://user@127.0.0.1:9/", "user name or password"),
            ("http://user:pw@127.0.0.1:9/", "user name or password"),
            ("http://:pw@127.0.0.1:9/", "user name or password"),
            ("http://127.0.0.1:9/#top", "fragment"),
            ("http://127.0.0.1:0/", "port 0"),
            ("http://127.0.0.1:99999/", "not a valid URL"),
            ("http://exa mple.com/", "spaces"),
            ("http://example.com/\nX-Injected: 1", "control"),
            ("127.0.0.1:9", "not a valid URL"),
            ("localhost:9", "only http"),
            ("/relative/path", "not a valid URL"),
            ("http://", "not a valid URL"),
        ] {
            let err = WebhookUrl::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let long = format!("http://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(WebhookUrl::parse(&long).unwrap_err().contains("at most"));
    }

    proptest! {
        #![proptest_config(crate::test_support::config(256))]

        /// Any text is either refused with a message or gives an http(s) URL without
        /// userinfo or fragment that parses back to itself; never a panic.
        #[test]
        fn prop_any_text_is_a_clean_http_url_or_refused(raw in prop_oneof![
            ".{0,80}",
            "(https?|ftp|ws|HTTP|file)://[a-zA-Z0-9@:.\\[\\]%/#?=&_ -]{0,40}",
        ]) {
            match WebhookUrl::parse(&raw) {
                Ok(u) => {
                    prop_assert!(u.as_str().starts_with("http://") || u.as_str().starts_with("https://"));
                    prop_assert!(!u.as_str().contains('#'));
                    prop_assert!(u.url.username().is_empty() && u.url.password().is_none());
                    prop_assert!(u.as_str().len() <= MAX_URL_LEN + 8);
                    let again = WebhookUrl::parse(u.as_str()).unwrap();
                    prop_assert_eq!(again, u.clone());
                    prop_assert!(u.port() != 0);
                    prop_assert!(!u.authority().is_empty());
                    prop_assert!(u.path_and_query().starts_with('/'));
                }
                Err(e) => prop_assert!(!e.is_empty() && !e.contains('\n')),
            }
        }

        /// A well-formed URL is taken with its host, port and path kept; with userinfo it
        /// is refused, whatever the rest.
        #[test]
        fn prop_built_urls_keep_their_parts_and_userinfo_is_refused(
            https in any::<bool>(),
            host in prop_oneof![
                // Not `x` first: `xn--…` is a punycode label, refused when not valid.
                "[a-wyz][a-z0-9-]{0,20}(\\.[a-z]{2,6}){0,2}",
                any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
                any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
            ],
            port in 1u16..,
            path in "(/[a-zA-Z0-9_.~-]{0,12}){0,4}",
            user in "[a-z]{1,8}",
        ) {
            let scheme = if https { "https" } else { "http" };
            let raw = format!("{scheme}://{host}:{port}{path}");
            let u = WebhookUrl::parse(&raw).map_err(|e| TestCaseError::fail(format!("{raw}: {e}")))?;
            prop_assert_eq!(u.is_https(), https);
            prop_assert_eq!(u.port(), port);
            let default = if https { 443 } else { 80 };
            prop_assert_eq!(u.authority().ends_with(&format!(":{port}")), port != default);
            let with_user = format!("{scheme}://{user}@{host}:{port}{path}");
            prop_assert!(WebhookUrl::parse(&with_user).unwrap_err().contains("user name"));
            let with_pass = format!("{scheme}://{user}:x@{host}:{port}{path}");
            prop_assert!(WebhookUrl::parse(&with_pass).is_err());
        }
    }
}
