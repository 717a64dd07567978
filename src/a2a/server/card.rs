//! `/.well-known/agent-card.json`: this node as an A2A agent. Built from the ACP card (name,
//! description, skills) on each request, with the URLs of the request's own Host, so the
//! card is right under every name the node answers to. Both versions' fields: 1.0
//! `supportedInterfaces` (JSON-RPC and HTTP+JSON at 1.0, JSON-RPC at 0.3) and the 0.3 `url`,
//! `preferredTransport`, `additionalInterfaces`, `protocolVersion`.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::A2aServer;
use crate::a2a::types::{
    AgentCapabilities, AgentCard, AgentInterface, AgentSkill, BINDING_HTTP_JSON, BINDING_JSONRPC,
    LegacyInterface, PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_1_0,
};

/// Media types the agent takes and gives: ACP text and data parts, and files.
const MODES: [&str; 3] = ["text/plain", "application/json", "application/octet-stream"];

/// `GET /.well-known/agent-card.json`.
pub async fn get(State(server): State<A2aServer>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("127.0.0.1:{}", server.node().http_port()));
    let card = build(&server, &format!("http://{host}"));
    axum::Json(card).into_response()
}

/// The card with its endpoints under `base` (`http://host:port`).
pub fn build(server: &A2aServer, base: &str) -> AgentCard {
    let node = server.node();
    let acp = node.card();
    let s = |k: &str| acp.get(k).and_then(Value::as_str).map(str::to_owned);
    let jsonrpc = format!("{base}/a2a/jsonrpc");
    let rest = format!("{base}/a2a/rest");
    let interface = |url: &str, binding: &str, version: &str| AgentInterface {
        url: url.to_owned(),
        protocol_binding: binding.to_owned(),
        tenant: None,
        protocol_version: Some(version.to_owned()),
    };
    let skills = node
        .skills()
        .iter()
        .map(|sk| {
            let list = |k: &str| -> Vec<String> {
                sk.get(k)
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let id = sk
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("skill")
                .to_owned();
            AgentSkill {
                name: sk
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(&id)
                    .to_owned(),
                description: sk
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                tags: list("tags"),
                examples: list("examples"),
                input_modes: list("input_modes"),
                output_modes: list("output_modes"),
                id,
            }
        })
        .collect();
    let secured = !node.config().a2a_tokens.is_empty() || node.config().api_token.is_some();
    let mut card = AgentCard {
        name: s("name").unwrap_or_else(|| node.name().to_owned()),
        description: s("description").unwrap_or_default(),
        supported_interfaces: vec![
            interface(&jsonrpc, BINDING_JSONRPC, PROTOCOL_VERSION_1_0),
            interface(&rest, BINDING_HTTP_JSON, PROTOCOL_VERSION_1_0),
            interface(&jsonrpc, BINDING_JSONRPC, PROTOCOL_VERSION_0_3),
        ],
        provider: None,
        version: crate::VERSION.to_owned(),
        documentation_url: None,
        capabilities: AgentCapabilities {
            streaming: Some(true),
            push_notifications: Some(true),
            extensions: Vec::new(),
            extended_agent_card: None,
            state_transition_history: None,
        },
        security_schemes: Default::default(),
        security_requirements: Vec::new(),
        security: Vec::new(),
        default_input_modes: MODES.map(str::to_owned).to_vec(),
        default_output_modes: MODES.map(str::to_owned).to_vec(),
        skills,
        signatures: Vec::new(),
        icon_url: None,
        url: Some(jsonrpc.clone()),
        preferred_transport: Some(BINDING_JSONRPC.to_owned()),
        additional_interfaces: vec![LegacyInterface {
            url: jsonrpc,
            transport: BINDING_JSONRPC.to_owned(),
        }],
        protocol_version: Some("0.3.0".to_owned()),
    };
    if secured {
        // The 0.3 form: 0.3 SDKs read only it, and the 1.0 Python SDK's card resolver turns
        // it into the 1.0 form (as does `types::SecurityScheme::from_value`).
        card.security_schemes.insert(
            "bearer".into(),
            json!({"type": "http", "scheme": "bearer", "description": "an --a2a-token of this node"}),
        );
        card.security.push(json!({"bearer": []}));
    }
    card
}
