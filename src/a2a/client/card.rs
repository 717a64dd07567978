//! An agent's card: where it is read (only on the host the user named), which of its
//! interfaces the bridge uses, and which header carries the user's credential.
//!
//! Interface choice, first match wins: A2A 1.0 JSON-RPC, 1.0 HTTP+JSON, then (only when the
//! card offers no 1.0 interface the bridge speaks) 0.3 JSON-RPC. gRPC and 0.3 HTTP+JSON are
//! not spoken.

use std::time::Duration;

use hyper::Method;
use serde_json::Value;

use super::credentials::Credential;
use super::http::{self, Failure};
use crate::a2a::types::{self, AgentCard, ProtocolVersion, SecurityScheme};
use crate::node::error::NodeError;
use crate::node::webhooks::post::Connector;

/// How long a card may take to arrive.
const CARD_TIMEOUT: Duration = Duration::from_secs(10);

/// The path of the card under the agent's URL (A2A 0.3 and 1.0).
pub const WELL_KNOWN: &str = types::AGENT_CARD_PATH;

/// The protocol binding of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// JSON-RPC 2.0 over HTTP POST.
    JsonRpc,
    /// A2A's REST binding.
    HttpJson,
}

impl Binding {
    /// The card's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::JsonRpc => "JSONRPC",
            Binding::HttpJson => "HTTP+JSON",
        }
    }
}

/// The interface the bridge talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its URL (from the card).
    pub url: url::Url,
    /// JSON-RPC or HTTP+JSON.
    pub binding: Binding,
    /// 1.0 or 0.3.
    pub version: ProtocolVersion,
    /// The tenant the card names for it (1.0), sent with each request.
    pub tenant: Option<String>,
}

impl Interface {
    /// How `/peers/connect` describes it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "url": self.url.as_str(),
            "protocol_binding": self.binding.as_str(),
            "protocol_version": self.version.as_str(),
        })
    }
}

/// The URLs the card may be at, in order: the URL itself when it names a `.json` file, else
/// the well-known path under the URL's path and then at the host's root. Always on the host
/// the user named.
pub fn card_urls(user_url: &url::Url) -> Vec<url::Url> {
    let path = user_url.path().trim_end_matches('/');
    if path.ends_with(".json") {
        return vec![user_url.clone()];
    }
    let mut urls = Vec::new();
    let mut at = |p: String| {
        let mut u = user_url.clone();
        u.set_path(&p);
        u.set_query(None);
        u.set_fragment(None);
        if !urls.contains(&u) {
            urls.push(u);
        }
    };
    at(format!("{path}{WELL_KNOWN}"));
    at(WELL_KNOWN.to_owned());
    urls
}

/// Why a card could not be used; a connect answers it with a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardError {
    /// Nothing answered (the agent may be down).
    Unreachable(String),
    /// Something answered, but not a card the bridge can use.
    Unusable(String),
}

impl CardError {
    /// As the node's error: 400 with a reason field.
    pub fn to_node_error(&self) -> NodeError {
        let (reason, msg) = match self {
            CardError::Unreachable(m) => ("unreachable", m),
            CardError::Unusable(m) => ("unusable_card", m),
        };
        NodeError::invalid(msg.clone()).with_field("reason", serde_json::json!(reason))
    }

    /// The text of the error.
    pub fn message(&self) -> &str {
        match self {
            CardError::Unreachable(m) | CardError::Unusable(m) => m,
        }
    }
}

/// Reads the card of the agent at `user_url` and picks its interface.
pub async fn fetch(
    connector: &Connector,
    user_url: &url::Url,
    credential: Option<&Credential>,
) -> Result<(Value, AgentCard, Interface), CardError> {
    let mut last = None;
    for card_url in card_urls(user_url) {
        let mut headers = Vec::new();
        if let Some(c) = credential {
            headers.push((c.header.clone(), c.value.clone()));
        }
        let answer = match http::request(
            connector,
            Method::GET,
            &card_url,
            &headers,
            None,
            CARD_TIMEOUT,
        )
        .await
        {
            Ok(a) => a,
            Err(Failure::Unreachable(why)) => {
                return Err(CardError::Unreachable(format!(
                    "the A2A agent at {} is not reachable: {why}",
                    http::origin(user_url)
                )));
            }
            Err(Failure::BadUrl(why)) => return Err(CardError::Unusable(why)),
        };
        if answer.status == 404 {
            last = Some(CardError::Unusable(format!(
                "no agent card at {card_url} (404)"
            )));
            continue;
        }
        if !(200..300).contains(&answer.status) {
            return Err(CardError::Unusable(format!(
                "{card_url} answered HTTP {} instead of an agent card",
                answer.status
            )));
        }
        let card: Value = serde_json::from_slice(&answer.body).map_err(|e| {
            CardError::Unusable(format!(
                "{card_url} did not answer an agent card in JSON: {e}"
            ))
        })?;
        let parsed: AgentCard = serde_json::from_value(card.clone()).map_err(|e| {
            CardError::Unusable(format!(
                "{card_url} answered JSON that is not an agent card: {e}"
            ))
        })?;
        let interface = choose(&parsed).ok_or_else(|| {
            CardError::Unusable(format!(
                "the agent card at {card_url} lists no interface this node speaks (A2A 1.0 \
                 JSON-RPC or HTTP+JSON, or A2A 0.3 JSON-RPC)"
            ))
        })?;
        return Ok((card, parsed, interface));
    }
    Err(last.unwrap_or_else(|| CardError::Unusable("no agent card found".into())))
}

fn http_url(s: &str) -> Option<url::Url> {
    url::Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// The interface the bridge uses, from a card of either version.
pub fn choose(card: &AgentCard) -> Option<Interface> {
    let listed = card.interfaces();
    let pick = |binding: Binding, version: ProtocolVersion| {
        listed.iter().find_map(|i| {
            let v = ProtocolVersion::from_header(i.protocol_version.as_deref())?;
            if v != version || i.protocol_binding != binding.as_str() {
                return None;
            }
            Some(Interface {
                url: http_url(&i.url)?,
                binding,
                version,
                tenant: i.tenant.clone().filter(|t| !t.is_empty()),
            })
        })
    };
    pick(Binding::JsonRpc, ProtocolVersion::V1_0)
        .or_else(|| pick(Binding::HttpJson, ProtocolVersion::V1_0))
        .or_else(|| pick(Binding::JsonRpc, ProtocolVersion::V0_3))
}

/// A secret that can travel in a header: 1 to 4096 visible ASCII characters.
pub fn check_secret(field: &str, secret: &str) -> Result<(), NodeError> {
    if secret.is_empty() || secret.len() > 4096 || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(NodeError::invalid(format!(
            "'{field}' must be 1 to 4096 visible ASCII characters (no spaces)"
        )));
    }
    Ok(())
}

/// The header the user's secret goes in, as the card's `securitySchemes` say: a bearer
/// token always goes in `Authorization`; an API key in the header the card's API-key scheme
/// names (1.0 `apiKeySecurityScheme` or 0.3 `type: apiKey`, location `header`).
pub fn credential(
    card: &AgentCard,
    bearer_token: Option<&str>,
    api_key: Option<&str>,
) -> Result<Option<Credential>, NodeError> {
    match (bearer_token, api_key) {
        (Some(_), Some(_)) => Err(NodeError::invalid(
            "give either 'bearer_token' or 'api_key', not both",
        )),
        (None, None) => Ok(None),
        (Some(t), None) => {
            check_secret("bearer_token", t)?;
            Ok(Some(Credential {
                header: "Authorization".into(),
                value: format!("Bearer {t}"),
            }))
        }
        (None, Some(k)) => {
            check_secret("api_key", k)?;
            let header =
                card.security_schemes
                    .values()
                    .find_map(|s| match SecurityScheme::from_value(s)? {
                        SecurityScheme::ApiKey { location, name }
                            if location.eq_ignore_ascii_case("header")
                                && hyper::header::HeaderName::from_bytes(name.as_bytes())
                                    .is_ok() =>
                        {
                            Some(name)
                        }
                        _ => None,
                    });
            let header = header.ok_or_else(|| {
                NodeError::invalid(
                    "the agent's card names no API-key header (securitySchemes with an apiKey \
                     scheme in a header); give 'bearer_token' if it takes a bearer token",
                )
            })?;
            Ok(Some(Credential {
                header,
                value: k.to_owned(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn card(v: Value) -> AgentCard {
        let mut v = v;
        v["name"] = json!("a");
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn one_point_zero_json_rpc_wins_and_zero_point_three_is_the_fallback() {
        let both = card(json!({"supportedInterfaces": [
            {"url": "http://h/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
            {"url": "http://h/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
        ], "url": "http://h/old", "preferredTransport": "JSONRPC", "protocolVersion": "0.3.0"}));
        let i = choose(&both).unwrap();
        assert_eq!(
            (i.url.as_str(), i.binding, i.version),
            ("http://h/rpc", Binding::JsonRpc, ProtocolVersion::V1_0)
        );
        let rest = card(json!({"supportedInterfaces": [
            {"url": "http://h/g", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
            {"url": "http://h/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
        ]}));
        assert_eq!(choose(&rest).unwrap().binding, Binding::HttpJson);
        let old = card(json!({"url": "http://h/a2a", "protocolVersion": "0.3.0"}));
        let i = choose(&old).unwrap();
        assert_eq!(
            (i.binding, i.version),
            (Binding::JsonRpc, ProtocolVersion::V0_3)
        );
        assert_eq!(
            choose(&card(
                json!({"url": "http://h/", "preferredTransport": "GRPC"})
            )),
            None
        );
        assert_eq!(choose(&card(json!({}))), None);
        assert_eq!(choose(&card(json!({"url": "file:///etc/passwd"}))), None);
    }

    #[test]
    fn the_card_is_looked_for_on_the_named_host_only() {
        let u = url::Url::parse("http://h:8/agents/x?q=1").unwrap();
        let urls: Vec<String> = card_urls(&u).iter().map(|u| u.to_string()).collect();
        assert_eq!(
            urls,
            [
                "http://h:8/agents/x/.well-known/agent-card.json",
                "http://h:8/.well-known/agent-card.json"
            ]
        );
        let u = url::Url::parse("http://h:8/").unwrap();
        assert_eq!(card_urls(&u).len(), 1);
        let u = url::Url::parse("http://h:8/card.json").unwrap();
        assert_eq!(card_urls(&u), vec![u.clone()]);
    }

    #[test]
    fn api_keys_go_in_the_header_the_card_names() {
        let c1 = card(
            json!({"securitySchemes": {"k": {"apiKeySecurityScheme": {"location": "header", "name": "X-Key"}}}}),
        );
        let c = credential(&c1, None, Some("s")).unwrap().unwrap();
        assert_eq!((c.header.as_str(), c.value.as_str()), ("X-Key", "s"));
        let old = card(
            json!({"securitySchemes": {"k": {"type": "apiKey", "in": "header", "name": "X-Old"}}}),
        );
        assert_eq!(
            credential(&old, None, Some("s")).unwrap().unwrap().header,
            "X-Old"
        );
        assert!(credential(&card(json!({})), None, Some("s")).is_err());
        assert!(credential(&c1, Some("t"), Some("s")).is_err());
        assert!(credential(&c1, Some("a\nb"), None).is_err());
        assert!(credential(&c1, Some("tök"), None).is_err());
        assert!(credential(&c1, None, Some("a b")).is_err());
        let b = credential(&card(json!({})), Some("t"), None)
            .unwrap()
            .unwrap();
        assert_eq!(b.value, "Bearer t");
    }

    proptest::proptest! {
        /// Any card an agent serves, however odd, is read without a panic; an interface is
        /// chosen only with an http(s) URL that has a host, and an API-key header only
        /// with a valid header name.
        #[test]
        fn any_card_is_read_without_panic(
            v in crate::test_support::arb_json(),
            url in "[a-z]{1,8}://[a-z0-9.:]{0,20}/?[a-z]{0,5}",
            binding in proptest::prop_oneof![
                proptest::strategy::Just("JSONRPC".to_owned()),
                proptest::strategy::Just("HTTP+JSON".to_owned()),
                proptest::strategy::Just("GRPC".to_owned()),
                "[A-Z+]{0,8}",
            ],
            version in proptest::option::of("[0-9.]{0,4}"),
            key_name in "[ -~]{0,12}",
        ) {
            let mut shaped = json!({"name": "x", "supportedInterfaces": [
                {"url": url, "protocolBinding": binding, "protocolVersion": version},
                v.clone(),
            ], "url": url, "securitySchemes": {
                "k": {"apiKeySecurityScheme": {"location": "header", "name": key_name}},
                "j": v.clone(),
            }});
            if let Value::Object(extra) = &v {
                for (k, x) in extra {
                    shaped[k] = x.clone();
                }
            }
            for candidate in [v, shaped] {
                let Ok(card) = serde_json::from_value::<AgentCard>(candidate) else {
                    continue;
                };
                if let Some(i) = choose(&card) {
                    proptest::prop_assert!(matches!(i.url.scheme(), "http" | "https"));
                    proptest::prop_assert!(i.url.host().is_some());
                }
                if let Ok(Some(c)) = credential(&card, None, Some("k")) {
                    proptest::prop_assert!(
                        hyper::header::HeaderName::from_bytes(c.header.as_bytes()).is_ok()
                    );
                }
            }
        }
    }
}
