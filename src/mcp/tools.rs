//! The fourteen tools. Each parses its arguments, calls one node method and maps the result
//! to structured output plus a one-line summary; node errors become tool errors (`isError`)
//! whose text says what to do next.

use std::time::Duration;

use rmcp::handler::server::common::{schema_for_input, schema_for_output};
use rmcp::handler::server::tool::{InputResponses, RequestState};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, InputRequiredResult, JsonObject,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, tool, tool_router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::AcpMcp;
use super::forms;
use super::params::*;
use super::tasks::{self, ReplyWait};
use crate::node::error::{ErrorCode, NodeError};
use crate::node::message::MessageRow;
use crate::node::message::{SendRequest, text_part};
use crate::node::search::{SearchOrder, TextQuery};
use crate::node::task::TaskState;
use crate::node::{Delivery, MessageQuery, ReceiveFilter, TaskQuery};

type ToolResult = Result<CallToolResult, McpError>;

/// The result of a tool that may also answer with a task (tasks extension) or an input
/// request (MRTR).
type ToolResponse = Result<CallToolResponse, McpError>;

/// Input schema of an argument type (what the LLM sees).
fn input<T: schemars::JsonSchema + 'static>() -> std::sync::Arc<JsonObject> {
    schema_for_input::<T>().expect("tool argument types are objects")
}

/// Parses arguments; a mismatch is a tool error the model can correct.
fn parse<T: DeserializeOwned>(args: JsonObject) -> Result<T, Box<CallToolResult>> {
    serde_json::from_value(Value::Object(args)).map_err(|e| {
        Box::new(CallToolResult::error(vec![ContentBlock::text(format!(
            "ERR_INVALID_REQUEST: invalid arguments: {e}. Check the tool's input schema and call again."
        ))]))
    })
}

/// Structured success with a short human-readable summary.
fn ok<T: Serialize>(summary: impl Into<String>, value: &T) -> ToolResult {
    let value =
        serde_json::to_value(value).map_err(|e| McpError::internal_error(e.to_string(), None))?;
    let mut result = CallToolResult::structured(value);
    result.content = vec![ContentBlock::text(summary.into())];
    Ok(result)
}

/// A node error as a tool error, with the next step for the model (in MCP terms: the node's
/// own messages speak of REST endpoints).
fn fail(e: NodeError) -> ToolResult {
    let msg = e.message.trim_end_matches('.');
    let message = match e.code {
        ErrorCode::NotConnected => "no peer to send to. Call acp_connect with the other agent's link first (or call acp_get_link and share yours)".to_owned(),
        ErrorCode::AmbiguousPeer => "several peers are known and none was named. Pass `peer` (an id or name from acp_peers)".to_owned(),
        // The node's own hint after ';' names REST endpoints; the MCP hint replaces it.
        ErrorCode::NotFound => format!("{}. Check the id with acp_peers / acp_task_list", msg.split("; ").next().unwrap_or(msg)),
        ErrorCode::InvalidTransition => format!(
            "{msg}. Allowed: submitted → working → completed | failed | input_required (→ working again); cancelling → canceled; finished tasks never change"
        ),
        ErrorCode::QueueFull => format!("{msg}. The peer has been away a long time; check acp_peers"),
        ErrorCode::MsgTooLarge => format!("{msg}. Send less, or reference large content as a file URL"),
        _ => msg.to_owned(),
    };
    Ok(CallToolResult::error(vec![ContentBlock::text(format!(
        "{}: {message}.",
        e.code
    ))]))
}

// Both macros return into a tool's own result type: `CallToolResult`, or `CallToolResponse`
// for the tools that may also answer with a task or an input request.
macro_rules! args {
    ($args:expr) => {
        match parse($args) {
            Ok(v) => v,
            Err(r) => return Ok((*r).into()),
        }
    };
}

macro_rules! node_try {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => return fail(err).map(Into::into),
        }
    };
}

/// A received message as the tools (and a completed reply task) show it.
pub(super) fn message_view(m: &MessageRow) -> ReceivedMessage {
    let verified = m.frame.get("_ed25519_verified") == Some(&Value::Bool(true));
    let sender_did = m.frame["identity"]["public_key"]
        .as_str()
        .filter(|_| verified)
        .map(|k| format!("did:acp:{k}"));
    let parts: Vec<Value> = m
        .frame
        .get("parts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    ReceivedMessage {
        message_id: m.message_id.clone(),
        from: m.sender.clone(),
        peer_id: m.peer_id.clone(),
        role: m.role.clone(),
        text: m.text(),
        parts,
        context_id: m.context_id.clone(),
        task_id: m.task_id.clone(),
        ts: m.ts.clone(),
        verified,
        sender_did,
    }
}

/// What the consent form shows as the new key (`requestState`: an answer counts only for
/// the key that was shown).
fn key_shown(change: &crate::node::identity::PendingKeyChange) -> &str {
    change.presented_did.as_deref().unwrap_or("none")
}

/// The consent question for a changed key, as an MRTR input request.
fn consent_request(change: &crate::node::identity::PendingKeyChange) -> CallToolResponse {
    InputRequiredResult::new(
        Some(forms::key_consent_requests(change)),
        Some(key_shown(change).to_owned()),
    )
    .into()
}

/// The question for a host that did not prove the key its link names, as an MRTR input
/// request (`requestState`: the answer counts only for what was shown).
fn link_key_request(pending: &crate::node::link_key::PendingLinkKey) -> CallToolResponse {
    InputRequiredResult::new(
        Some(forms::link_key_consent_requests(pending)),
        Some(pending.shown()),
    )
    .into()
}

fn task_summary(task: &Value) -> String {
    format!(
        "task {} is {}",
        task["id"].as_str().unwrap_or("?"),
        task["status"].as_str().unwrap_or("?")
    )
}

fn as_object(v: Value) -> JsonResult {
    match v {
        Value::Object(value) => JsonResult { value },
        other => JsonResult {
            value: [("value".to_owned(), other)].into_iter().collect(),
        },
    }
}

#[tool_router(vis = "pub(crate)")]
impl AcpMcp {
    #[tool(
        description = "Get this agent's ACP link (acp://host:port/tok_…). Share it with another agent so it can call acp_connect; returns the link, this agent's name and the local REST URL.",
        input_schema = rmcp::handler::server::common::schema_for_empty_input(),
        output_schema = schema_for_output::<LinkResult>(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn acp_get_link(&self) -> ToolResult {
        let r = LinkResult {
            link: self.node.link(),
            agent_name: self.node.name().to_owned(),
            http_url: format!(
                "http://{}:{}",
                self.node.config().http_host,
                self.node.http_port()
            ),
        };
        ok(
            format!("Your link: {} — share it with the other agent.", r.link),
            &r,
        )
    }

    #[tool(
        description = "Connect to another agent using the acp:// link it shared. Tries a direct connection first, then (when both nodes use a relay) a hole punched through their NATs, then the relay; says which one worked, or why none did. Waits up to 5 s (20 s for a link with relay hints); the node keeps retrying in the background if the agent is not reachable yet. Returns the peer id to use with acp_send. The link may also be the http(s):// URL of an A2A agent (its base URL or agent card URL, with bearer_token or api_key if its card asks for one): it then becomes a peer like any other.",
        input_schema = input::<ConnectArgs>(),
        output_schema = schema_for_output::<ConnectResult>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = true)
    )]
    async fn acp_connect(
        &self,
        context: RequestContext<RoleServer>,
        InputResponses(responses): InputResponses,
        RequestState(shown): RequestState,
        Parameters(args): Parameters<JsonObject>,
    ) -> ToolResponse {
        let args: ConnectArgs = args!(args);
        if crate::a2a::client::is_agent_url(&args.link) {
            return self.connect_a2a(args).await;
        }
        // A client that takes input requests is asked about a changed key (a form) instead
        // of being told which argument accepts it; the call goes on with its answer.
        let asks =
            tasks::client_takes_input_requests(&context) && args.accept_new_key != Some(true);
        if asks {
            let answer = responses.as_ref().and_then(|r| r.get(forms::CONSENT_KEY));
            match (self.node.pending_key_change(&args.link), answer) {
                (Some(change), Some(answer)) if shown.as_deref() == Some(key_shown(&change)) => {
                    if !forms::accepts_key(answer) {
                        return fail(NodeError::new(
                            ErrorCode::KeyMismatch,
                            format!(
                                "the new key of peer {} was not accepted: its connection stays refused",
                                change.name
                            ),
                        ))
                        .map(Into::into);
                    }
                    let expected = change.presented_did.clone().map(Value::String);
                    let r = node_try!(
                        self.node
                            .accept_peer_key(&change.peer_id, expected.as_ref())
                    );
                    if crate::wire::link::Link::parse(&args.link).is_err() {
                        // A peer that dialled us (named by id or name): it comes back itself.
                        let summary = format!(
                            "Accepted the new key of {}: {}.",
                            change.peer_id,
                            r["pinned_did"].as_str().unwrap_or("no key")
                        );
                        return ok(summary, &as_object(r)).map(Into::into);
                    }
                }
                // Nothing asked yet, or the peer presented yet another key since the form
                // was shown: ask (again), about the key there is now.
                (Some(change), _) => return Ok(consent_request(&change)),
                (None, _) => {}
            }
            match (self.node.pending_link_key(&args.link), answer) {
                (Some(pending), Some(answer)) if shown.as_deref() == Some(&pending.shown()) => {
                    if !forms::accepts_key(answer) {
                        return fail(NodeError::new(
                            ErrorCode::KeyMismatch,
                            format!(
                                "connecting to {} without the key its link names was not accepted: \
                                 the host stays refused",
                                pending.name
                            ),
                        ))
                        .map(Into::into);
                    }
                    node_try!(self.node.waive_link_key(&pending.peer_id));
                }
                (Some(pending), _) => return Ok(link_key_request(&pending)),
                (None, _) => {}
            }
        }
        if args.accept_new_key == Some(true) {
            if crate::wire::link::Link::parse(&args.link).is_ok() {
                node_try!(self.node.accept_key_of_link(&args.link));
            } else {
                // A peer that dialled us has no link: accept by id or name.
                let r = node_try!(self.node.accept_peer_key(&args.link, None));
                let id = r["peer_id"].as_str().unwrap_or_default().to_owned();
                let summary = format!(
                    "Accepted the new key of {id}: {}.",
                    r["pinned_did"].as_str().unwrap_or("no key")
                );
                return ok(summary, &as_object(r)).map(Into::into);
            }
        }
        let r = node_try!(self.node.connect(&args.link, args.name.as_deref()));
        let peer_id = r["peer_id"].as_str().unwrap_or_default().to_owned();
        // Levels 2 and 3 take a few more round trips (the relay, then punching).
        let hinted = crate::wire::link::Link::parse(&args.link)
            .map(|l| l.has_route_hints())
            .unwrap_or(false);
        let wait = if hinted { 20 } else { 5 };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        while !self.node.peer_is_connected(&peer_id) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if asks && !self.node.peer_is_connected(&peer_id) {
            if let Some(change) = self.node.pending_key_change(&peer_id) {
                return Ok(consent_request(&change));
            }
            if let Some(pending) = self.node.pending_link_key(&args.link) {
                return Ok(link_key_request(&pending));
            }
        }
        let peer = node_try!(self.node.peer(&peer_id));
        let result = ConnectResult {
            peer_id: peer_id.clone(),
            name: peer["name"].as_str().unwrap_or(&peer_id).to_owned(),
            connected: peer["connected"] == true,
            link: r["connecting_to"].as_str().unwrap_or_default().to_owned(),
            last_error: peer["last_error"].as_str().map(str::to_owned),
            did: peer["did"].as_str().map(str::to_owned),
            verified: peer["verified"] == true,
            connection_type: peer["connection_type"].as_str().map(str::to_owned),
        };
        let summary = if result.connected {
            let how = match result.connection_type.as_deref() {
                Some("dcutr_direct") => {
                    " through a hole punched in both NATs (direct, peer to peer)"
                }
                Some("relay") => {
                    " through the relay (end-to-end encrypted; no direct path was found)"
                }
                _ => " directly",
            };
            format!(
                "Connected to {} ({}){how}, {}.",
                result.name,
                result.peer_id,
                match (&result.did, result.verified) {
                    (Some(d), true) => format!("verified as {d}"),
                    _ => "identity NOT verified".to_owned(),
                }
            )
        } else {
            format!(
                "Not connected yet to {} ({}); the node keeps retrying.{}",
                result.link,
                result.peer_id,
                result
                    .last_error
                    .as_deref()
                    .map(|e| format!(" Last error: {e}"))
                    .unwrap_or_default()
            )
        };
        ok(summary, &result).map(Into::into)
    }

    #[tool(
        description = "Send a message to a connected agent: text, optional structured data and file URLs. Without `peer` it goes to the only connected peer. Use reply_to with a received message_id to answer it. Returns the message_id and whether it was delivered or queued (the peer is offline; it is delivered when the peer is back).",
        input_schema = input::<SendArgs>(),
        output_schema = schema_for_output::<SendResult>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true)
    )]
    async fn acp_send(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<JsonObject>,
    ) -> ToolResponse {
        let args: SendArgs = args!(args);
        // Only a client that takes tasks can wait for the reply; others are sent as before.
        let wait_for_reply =
            args.wait_for_reply == Some(true) && tasks::client_wants_tasks(&context);
        let mut parts = Vec::new();
        if let Some(t) = args.text.as_deref().filter(|t| !t.is_empty()) {
            parts.push(text_part(t));
        }
        if let Some(d) = args.data {
            parts.push(json!({"type": "data", "content": d}));
        }
        for f in args.files.unwrap_or_default() {
            let mut part = json!({"type": "file", "url": f.url, "media_type": f.media_type.unwrap_or_else(|| "application/octet-stream".into())});
            if let Some(n) = f.name {
                part["name"] = json!(n);
            }
            parts.push(part);
        }
        if parts.is_empty() {
            return fail(NodeError::invalid(
                "nothing to send: give `text`, `data` or `files`",
            ))
            .map(Into::into);
        }
        let role = args.role.unwrap_or_else(|| "user".into());
        if role != "user" && role != "agent" {
            return fail(NodeError::invalid("role must be 'user' or 'agent'")).map(Into::into);
        }
        let (mut peer, mut context_id, mut task_id) = (args.peer, args.context_id, args.task_id);
        if let Some(original) = &args.reply_to {
            let found = node_try!(self.node.inbound_message(original).await);
            let Some(m) = found else {
                return fail(NodeError::not_found(format!(
                    "no received message with id '{original}' to reply to"
                )))
                .map(Into::into);
            };
            peer = peer.or(m.peer_id);
            context_id = context_id.or(m.context_id);
            task_id = task_id.or(m.task_id);
        }
        if wait_for_reply && context_id.is_none() {
            // The reply is recognised by its conversation.
            context_id = Some(crate::node::ids::make_id("ctx"));
        }
        let since = crate::node::ids::now_unix();
        let req = SendRequest {
            message_id: args.message_id,
            role,
            parts,
            task_id,
            context_id: context_id.clone(),
            peer_id: peer,
            sync: false,
            timeout: 30.0,
            create_task: false,
        };
        let out = node_try!(self.node.send(req).await);
        if wait_for_reply
            && out.delivery != Delivery::Duplicate
            && let Some(context_id) = context_id.clone()
        {
            let wait = ReplyWait {
                peer_id: out.peer_id.clone(),
                context_id,
                message_id: out.message_id.clone(),
                since,
            };
            let (created, handle) = node_try!(tasks::for_reply(&self.node, wait).await);
            self.remember_handle(handle);
            return Ok(created.into());
        }
        let delivery = match out.delivery {
            Delivery::Sent => "delivered",
            Delivery::Queued => "queued_offline",
            Delivery::Duplicate => "duplicate",
        };
        let summary = match out.delivery {
            Delivery::Sent => format!("Delivered {} to {}.", out.message_id, out.peer_id),
            Delivery::Queued => format!(
                "{} is offline: {} queued, delivered when it is back.",
                out.peer_id, out.message_id
            ),
            Delivery::Duplicate => format!("{} was already sent; not sent again.", out.message_id),
        };
        ok(
            summary,
            &SendResult {
                message_id: out.message_id,
                server_seq: out.server_seq,
                peer_id: (!out.peer_id.is_empty()).then_some(out.peer_id),
                delivery: delivery.into(),
                context_id,
            },
        )
        .map(Into::into)
    }

    #[tool(
        description = "Read messages other agents sent you, oldest first. Pass back the returned `cursor` next time so nothing is missed or shown twice. Set wait_seconds (up to 60) to wait for a reply instead of polling. Optional filters: peer, context_id, task_id.",
        input_schema = input::<ReceiveArgs>(),
        output_schema = schema_for_output::<ReceiveResult>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true)
    )]
    async fn acp_receive(&self, Parameters(args): Parameters<JsonObject>) -> ToolResult {
        let args: ReceiveArgs = args!(args);
        let cursor = match args.cursor {
            None => None,
            Some(CursorArg::Number(n)) if n >= 0 => Some(n),
            Some(CursorArg::Text(c)) if c.trim().is_empty() => None,
            Some(CursorArg::Text(c)) => match c.trim().parse::<i64>() {
                Ok(n) if n >= 0 => Some(n),
                _ => {
                    return fail(NodeError::invalid(format!(
                        "invalid cursor '{c}': pass the cursor from the previous acp_receive"
                    )));
                }
            },
            Some(CursorArg::Number(n)) => {
                return fail(NodeError::invalid(format!(
                    "invalid cursor {n}: pass the cursor from the previous acp_receive"
                )));
            }
        };
        let wait = args.wait_seconds.unwrap_or(0.0);
        if !(0.0..=60.0).contains(&wait) {
            return fail(NodeError::invalid("wait_seconds must be between 0 and 60"));
        }
        let limit = args.limit.unwrap_or(20).clamp(1, 100) as usize;
        let filter = ReceiveFilter {
            peer: args.peer,
            context_id: args.context_id,
            task_id: args.task_id,
        };
        let (rows, next, has_more) = node_try!(
            self.node
                .receive_wait(cursor, &filter, limit, Duration::from_secs_f64(wait))
                .await
        );
        let messages: Vec<ReceivedMessage> = rows.iter().map(message_view).collect();
        let summary = match messages.len() {
            0 => "No new messages.".to_owned(),
            n => {
                let lines: Vec<String> = messages
                    .iter()
                    .map(|m| {
                        format!(
                            "[{}] {}{}: {}",
                            m.message_id,
                            m.from.as_deref().unwrap_or("?"),
                            if m.verified {
                                " (verified)"
                            } else {
                                " (unverified)"
                            },
                            m.text
                        )
                    })
                    .collect();
                format!("{n} message(s):\n{}", lines.join("\n"))
            }
        };
        ok(
            summary,
            &ReceiveResult {
                messages,
                cursor: next.to_string(),
                has_more,
            },
        )
    }

    #[tool(
        description = "Search all stored messages (sent and received, read or not) by their text, e.g. to find what another agent said earlier about a topic. `query` takes words (all must appear), \"exact phrases\", prefix*, OR, and -excluded words. Newest first unless order is `oldest` or `rank` (best match). Combine with peer, context_id, task_id or direction. Does not move the acp_receive cursor.",
        input_schema = input::<SearchArgs>(),
        output_schema = schema_for_output::<SearchResult>(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn acp_search(&self, Parameters(args): Parameters<JsonObject>) -> ToolResult {
        let args: SearchArgs = args!(args);
        let text = node_try!(TextQuery::parse(&args.query).map_err(NodeError::invalid));
        let order =
            match args.order.as_deref() {
                None => SearchOrder::default(),
                Some(o) => node_try!(SearchOrder::parse(o).ok_or_else(|| NodeError::invalid(
                    format!("invalid order '{o}': use newest, oldest or rank")
                ))),
            };
        if let Some(d) = args.direction.as_deref()
            && d != "inbound"
            && d != "outbound"
        {
            return fail(NodeError::invalid(format!(
                "invalid direction '{d}': use inbound or outbound, or omit it for both"
            )));
        }
        let page = node_try!(
            self.node
                .message_page(MessageQuery {
                    limit: args.limit.unwrap_or(10).clamp(1, 50) as usize,
                    offset: args.offset.unwrap_or(0) as usize,
                    peer_id: args.peer,
                    direction: args.direction,
                    context_id: args.context_id,
                    task_id: args.task_id,
                    ascending: order == SearchOrder::Oldest,
                    text: Some(text),
                    order,
                    ..Default::default()
                })
                .await
        );
        let messages: Vec<FoundMessage> = page
            .rows
            .iter()
            .map(|m| FoundMessage {
                direction: m.direction.to_owned(),
                message: message_view(m),
            })
            .collect();
        let summary = if messages.is_empty() {
            format!("No stored message matches {}.", args.query)
        } else {
            let lines: Vec<String> = messages
                .iter()
                .map(|m| {
                    let who = match m.direction.as_str() {
                        "outbound" => "you".to_owned(),
                        _ => m.message.from.clone().unwrap_or_else(|| "?".into()),
                    };
                    format!(
                        "[{}] {} {} ({}): {}",
                        m.message.message_id,
                        m.message.ts,
                        who,
                        m.message.context_id.as_deref().unwrap_or("no context"),
                        m.message.text
                    )
                })
                .collect();
            let more = if page.has_more {
                format!(
                    "\nMore matches: call again with offset {}.",
                    page.next_offset
                )
            } else {
                String::new()
            };
            let total = if page.total_exact {
                page.total.to_string()
            } else {
                format!("{}+", page.total)
            };
            format!("{total} match(es):\n{}{more}", lines.join("\n"))
        };
        ok(
            summary,
            &SearchResult {
                messages,
                total: page.total,
                total_exact: page.total_exact,
                next_offset: page.next_offset,
                has_more: page.has_more,
            },
        )
    }

    #[tool(
        description = "List the agents this node knows: id, name, whether connected, its did and whether its identity is verified (a key change refused for safety shows under identity.key_change), message counts, offline-queue depth and last connection error. When the node runs with LAN discovery, also the agents announcing themselves on the local network (lan_peers), each with a link to pass to acp_connect.",
        input_schema = rmcp::handler::server::common::schema_for_empty_input(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn acp_peers(&self) -> ToolResult {
        let mut peers = self.node.peers();
        // Full AgentCards are long; the model needs who the peer is and what it offers.
        for p in peers["peers"].as_array_mut().into_iter().flatten() {
            let card = p["agent_card"].take();
            if card.is_object() {
                let skills: Vec<Value> = card["skills"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| s["id"].clone())
                    .collect();
                p["agent_card"] = json!({"name": card["name"], "description": card["description"], "skills": skills});
            }
        }
        let lines: Vec<String> = peers["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let who = match (p["did"].as_str(), p["verified"] == true) {
                    _ if p["kind"] == "a2a" && p["dialed"] == true => {
                        format!("an A2A agent at {}", p["link"].as_str().unwrap_or("?"))
                    }
                    (Some(d), true) => format!("verified {d}"),
                    (Some(d), false) => format!("pinned {d}, not verified now"),
                    (None, _) => "identity unknown".to_owned(),
                };
                let warn = if p["identity"]["key_change"].is_object() {
                    " — KEY CHANGED, connection refused; accept only if the user confirms (acp_connect with accept_new_key)"
                } else {
                    ""
                };
                let state = match p["connection_type"].as_str() {
                    Some(kind) => format!("connected ({kind})"),
                    None => "not connected".to_owned(),
                };
                format!("{} ({}): {state}, {}{warn}", p["name"].as_str().unwrap_or("?"), p["id"].as_str().unwrap_or("?"), who)
            })
            .collect();
        let mut summary = format!(
            "{} peer(s), {} connected.{}{}",
            peers["count"],
            peers["active"],
            if lines.is_empty() { "" } else { "\n" },
            lines.join("\n")
        );
        // Only with --lan-discovery: without it the result stays exactly as it was.
        if let Some(lan) = self.node.lan_peers() {
            summary.push_str(&format!(
                "\nOn the local network (mDNS): {} agent(s){}",
                lan.len(),
                if lan.is_empty() {
                    "."
                } else {
                    "; acp_connect with a link to talk to one:"
                }
            ));
            for p in &lan {
                summary.push_str(&format!("\n{} at {}: {}", p.name, p.ip, p.link));
            }
            peers["lan_peers"] = json!(lan);
        }
        ok(summary, &as_object(peers))
    }

    #[tool(
        description = "Status of this agent's node: name, its did (who it is to others), link, ports, connected peers, unread messages, counters.",
        input_schema = rmcp::handler::server::common::schema_for_empty_input(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn acp_status(&self) -> ToolResult {
        let mut status = self.node.status();
        status["unread_rest_inbox"] = json!(self.node.unread());
        status["unread"] = json!(node_try!(self.node.receive_backlog().await));
        status["mcp_url"] = json!(super::local_url(&self.node));
        if let Some(obj) = status.as_object_mut() {
            obj.remove("agent_card");
            obj.remove("peer_card");
        }
        let mut summary = format!(
            "{} ({}) — {} peer(s) connected, {} unread; link {}.",
            self.node.name(),
            self.node.identity().did_acp(),
            status["peer_count"],
            status["unread"],
            self.node.link()
        );
        if let Err(full) = self.node.store().capacity().check() {
            summary.push(' ');
            summary.push_str(&full.message);
        }
        ok(summary, &as_object(status))
    }

    #[tool(
        description = "Create a task and hand it to a connected agent (delegate, the default): it arrives there as a message carrying the task_id, and the agent reports progress with acp_task_update. Returns the task; wait for its result with acp_task_get and wait_seconds.",
        input_schema = input::<TaskCreateArgs>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true)
    )]
    async fn acp_task_create(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(args): Parameters<JsonObject>,
    ) -> ToolResponse {
        let args: TaskCreateArgs = args!(args);
        let mut parts = vec![text_part(&args.text)];
        if let Some(d) = args.data {
            parts.push(json!({"type": "data", "content": d}));
        }
        let delegate = args.delegate.unwrap_or(true);
        // Decide the worker first, so a task that cannot be handed to anyone is not created.
        let peer = match delegate {
            true => Some(node_try!(self.node.target_peer(args.peer.as_deref()))),
            false => args.peer,
        };
        let body = json!({
            "payload": {"role": "user", "parts": parts},
            "task_id": args.task_id,
            "context_id": args.context_id,
            "peer_id": peer,
        });
        let (task, is_new) = node_try!(self.node.create_task(&body).await);
        if delegate && is_new {
            // Sent as a message with the task id: the peer's agent sees it in acp_receive, and
            // both acp-relay and the reference register the task on receipt.
            let req = SendRequest {
                message_id: None,
                role: "user".into(),
                parts,
                task_id: Some(task.id.clone()),
                context_id: task.context_id.clone(),
                peer_id: task.peer_id.clone(),
                sync: false,
                timeout: 30.0,
                create_task: false,
            };
            if let Err(e) = self.node.send(req).await {
                let _ = self
                    .node
                    .update_task(&task.id, &json!({"status": "failed", "error": format!("not delivered: {}", e.message)}))
                    .await;
                return fail(e).map(Into::into);
            }
        }
        let task = node_try!(self.node.task(&task.id));
        if tasks::client_wants_tasks(&context) {
            // The handle is committed before it is answered.
            let (created, handle) = node_try!(tasks::for_acp_task(&self.node, &task).await);
            self.remember_handle(handle);
            return Ok(created.into());
        }
        let task = serde_json::to_value(task).unwrap_or_default();
        let verb = if is_new { "Created" } else { "Already exists:" };
        ok(format!("{verb} {}.", task_summary(&task)), &as_object(task)).map(Into::into)
    }

    #[tool(
        description = "Update a task you are working on: set its status (working, input_required, completed, failed) and attach a result. The agent that created the task is notified. Finished tasks cannot change.",
        input_schema = input::<TaskUpdateArgs>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true)
    )]
    async fn acp_task_update(&self, Parameters(args): Parameters<JsonObject>) -> ToolResult {
        let args: TaskUpdateArgs = args!(args);
        let mut body = json!({"status": args.status});
        let mut parts = Vec::new();
        if let Some(t) = args.result_text {
            parts.push(text_part(&t));
        }
        if let Some(d) = args.result_data {
            parts.push(json!({"type": "data", "content": d}));
        }
        if !parts.is_empty() {
            body["artifact"] = json!({"parts": parts});
        }
        if let Some(e) = args.error {
            body["error"] = json!(e);
        }
        let task = node_try!(self.node.update_task(&args.task_id, &body).await);
        let task = serde_json::to_value(task).unwrap_or_default();
        ok(
            format!("Updated: {}.", task_summary(&task)),
            &as_object(task),
        )
    }

    #[tool(
        description = "Cancel a task (it moves to cancelling, then canceled; the peer is told). Cancelling a finished task changes nothing.",
        input_schema = input::<TaskIdArgs>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true)
    )]
    async fn acp_task_cancel(&self, Parameters(args): Parameters<JsonObject>) -> ToolResult {
        let args: TaskIdArgs = args!(args);
        let r = node_try!(self.node.cancel_task(&args.task_id).await);
        ok(
            format!(
                "Task {} is {}.",
                args.task_id,
                r["status"].as_str().unwrap_or("?")
            ),
            &as_object(r),
        )
    }

    #[tool(
        description = "Get one task: status, payload, result artifacts, history. With wait_seconds it waits (up to 120 s) for the task to finish first — the way to wait for a delegated task's result.",
        input_schema = input::<TaskGetArgs>(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn acp_task_get(&self, Parameters(args): Parameters<JsonObject>) -> ToolResult {
        let args: TaskGetArgs = args!(args);
        let wait = args.wait_seconds.unwrap_or(0.0);
        if !(0.0..=120.0).contains(&wait) {
            return fail(NodeError::invalid("wait_seconds must be between 0 and 120"));
        }
        let task = if wait > 0.0 {
            node_try!(
                self.node
                    .wait_task(&args.task_id, Duration::from_secs_f64(wait))
                    .await
            )
            .0
        } else {
            node_try!(self.node.task(&args.task_id))
        };
        let task = serde_json::to_value(task).unwrap_or_default();
        ok(task_summary(&task), &as_object(task))
    }

    #[tool(
        description = "List tasks, newest first, optionally filtered by status, peer or context_id; page with next_cursor.",
        input_schema = input::<TaskListArgs>(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn acp_task_list(&self, Parameters(args): Parameters<JsonObject>) -> ToolResult {
        let args: TaskListArgs = args!(args);
        let status = match args.status.as_deref() {
            None | Some("") => None,
            Some(s) => match TaskState::parse(s) {
                Some(st) => Some(st),
                None => return fail(NodeError::invalid(format!("unknown status '{s}'"))),
            },
        };
        let q = TaskQuery {
            status,
            peer_id: args.peer,
            context_id: args.context_id,
            cursor: args.cursor,
            limit: args.limit.map(|l| l as usize),
            ..TaskQuery::default()
        };
        let list = node_try!(self.node.list_tasks(&q));
        ok(
            format!("{} task(s) (of {}).", list["count"], list["total"]),
            &as_object(list),
        )
    }

    #[tool(
        description = "Get this agent's card (name, description, skills, capabilities, signed identity) and the connected peer's card, with this agent's did and each peer's verified did.",
        input_schema = rmcp::handler::server::common::schema_for_empty_input(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn acp_card_get(&self) -> ToolResult {
        let doc = self.node.card_document();
        ok(
            format!(
                "Card of {} ({}).",
                self.node.name(),
                self.node.identity().did_acp()
            ),
            &as_object(doc),
        )
    }

    #[tool(
        description = "Change what this agent advertises to peers: description, skills, limitations, availability. Returns the new card.",
        input_schema = input::<CardUpdateArgs>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn acp_card_update(&self, Parameters(args): Parameters<JsonObject>) -> ToolResult {
        let args: CardUpdateArgs = args!(args);
        let mut patch = serde_json::Map::new();
        if let Some(d) = args.description {
            patch.insert("description".into(), json!(d));
        }
        if let Some(s) = args.skills {
            patch.insert("skills".into(), json!(s));
        }
        if let Some(l) = args.limitations {
            patch.insert("limitations".into(), json!(l));
        }
        if let Some(a) = args.availability {
            patch.insert("availability".into(), Value::Object(a));
        }
        let card = node_try!(self.node.patch_card(&Value::Object(patch)));
        ok("Card updated.", &as_object(card))
    }
}

impl AcpMcp {
    /// `acp_connect` with an A2A agent's URL: the node reads its card and bridges it as a
    /// peer; waits up to 5 s for the bridge to attach, as for a link.
    async fn connect_a2a(&self, args: ConnectArgs) -> ToolResponse {
        let req = crate::a2a::client::ConnectRequest {
            url: args.link,
            name: args.name,
            bearer_token: args.bearer_token,
            api_key: args.api_key,
        };
        let r = node_try!(crate::a2a::client::connect(&self.node, req).await);
        let peer_id = r["peer_id"].as_str().unwrap_or_default().to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.node.peer_is_connected(&peer_id) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let peer = node_try!(self.node.peer(&peer_id));
        let result = ConnectResult {
            peer_id: peer_id.clone(),
            name: peer["name"].as_str().unwrap_or(&peer_id).to_owned(),
            connected: peer["connected"] == true,
            link: r["url"].as_str().unwrap_or_default().to_owned(),
            last_error: peer["last_error"].as_str().map(str::to_owned),
            did: None,
            verified: false,
            connection_type: peer["connection_type"].as_str().map(str::to_owned),
        };
        let how = format!(
            "A2A {} over {}",
            r["interface"]["protocol_version"].as_str().unwrap_or("?"),
            r["interface"]["protocol_binding"].as_str().unwrap_or("?")
        );
        let summary = if result.connected {
            format!(
                "Connected to the A2A agent {} ({}), {how}. Use acp_send with peer {} to talk to it.",
                result.name, result.peer_id, result.peer_id
            )
        } else {
            format!(
                "Added the A2A agent {} ({}), {how}, but it is not reachable yet{}; messages \
                 sent to it wait and go out when it is.",
                result.name,
                result.peer_id,
                result
                    .last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )
        };
        ok(summary, &result).map(Into::into)
    }
}
