//! The MCP front-end: one handler over the [`Node`], served on stdio (`acp-relay mcp`) and as
//! Streamable HTTP at `/mcp`. Tools live in `tools`, their argument types in `params`,
//! resources in `resources`, and the event forwarding that turns node events into MCP
//! notifications in `notify`.

// Logging notifications are deprecated by the newest MCP revision (SEP-2577) but are what
// today's hosts implement, so this module keeps using them.
#![allow(deprecated)]

mod forms;
mod notify;
pub mod params;
mod resources;
mod tasks;
mod tools;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool_handler};

use serde_json::Value;

use crate::node::Node;

/// Instructions the host shows the model: how the tools fit together.
const INSTRUCTIONS: &str = "acp-relay links you with other AI agents over the ACP protocol. \
To talk to another agent: one side calls acp_get_link and shares the link (acp://…) with the \
other, which calls acp_connect with it. Then acp_send sends messages (text, data, file URLs) and \
acp_receive reads replies — pass back its cursor each time and use wait_seconds to wait for an \
answer instead of polling. Tasks: acp_task_create hands work to the peer; the worker reports \
with acp_task_update (working → completed with a result, or failed); check with acp_task_get. \
acp_peers and acp_status show who is connected. \
A2A agents (ADK, LangGraph, …): acp_connect also takes an agent's http(s):// URL, and it is \
then a peer like any other. A message from an A2A caller comes with a task_id: answer it with \
acp_send to that peer with that task_id (this completes its task), or ask back with \
acp_task_update status input_required, the question in error.";

/// Most task handles a session gets `notifications/tasks` for.
const PUSHED_HANDLES: usize = 1000;

/// Log levels of MCP, in order.
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// One MCP session's handler (a clone of the node handle plus the session's subscriptions).
#[derive(Clone)]
pub struct AcpMcp {
    node: Node,
    tool_router: ToolRouter<AcpMcp>,
    subscriptions: Arc<Mutex<HashSet<String>>>,
    /// Minimum level for logging notifications; `None` until the client sets one.
    log_level: Arc<Mutex<Option<usize>>>,
    forwarding: Arc<std::sync::atomic::AtomicBool>,
    /// The task handles this session was given, newest last: their changes are pushed to it
    /// as `notifications/tasks` (see `notify`).
    task_handles: Arc<Mutex<Vec<crate::node::handles::TaskHandle>>>,
}

impl AcpMcp {
    /// A handler for one session.
    pub fn new(node: Node) -> AcpMcp {
        AcpMcp {
            node,
            tool_router: Self::tool_router(),
            subscriptions: Arc::default(),
            log_level: Arc::default(),
            forwarding: Arc::default(),
            task_handles: Arc::default(),
        }
    }

    /// Remembers a handle given to this session, so its changes are pushed to it (at most
    /// [`PUSHED_HANDLES`], oldest forgotten first: the client can still poll those).
    fn remember_handle(&self, handle: crate::node::handles::TaskHandle) {
        if let Ok(mut list) = self.task_handles.lock() {
            if list.len() >= PUSHED_HANDLES {
                list.remove(0);
            }
            list.push(handle);
        }
    }

    /// The node this handler serves.
    pub fn node(&self) -> &Node {
        &self.node
    }

    fn subscribed(&self, uri: &str) -> bool {
        self.subscriptions
            .lock()
            .map(|s| s.contains(uri))
            .unwrap_or(false)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for AcpMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .enable_logging()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new("acp-relay", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS.to_owned())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = self.tool_router.list_all();
        if !tasks::client_wants_tasks(&context) {
            // A client without the tasks extension sees the tools exactly as before it.
            for tool in &mut tools {
                hide_task_arguments(tool);
            }
        }
        let cache_hints = context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        Ok(ListToolsResult {
            result_type: Some(ResultType::COMPLETE),
            tools,
            meta: None,
            next_cursor: None,
            ttl_ms: cache_hints.then_some(0),
            cache_scope: cache_hints.then_some(CacheScope::Public),
        })
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        tasks::get(&self.node, &request.task_id).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        tasks::update(&self.node, request).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        tasks::cancel(&self.node, &request.task_id).await
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        notify::start_forwarding(self.clone(), context.peer);
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let wanted = serde_json::to_value(request.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let idx = LEVELS.iter().position(|l| *l == wanted).ok_or_else(|| {
            McpError::invalid_params(format!("unknown log level '{wanted}'"), None)
        })?;
        if let Ok(mut level) = self.log_level.lock() {
            *level = Some(idx);
        }
        Ok(())
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(resources::list(&self.node))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        resources::read(&self.node, &request.uri)
            .await
            .map(Into::into)
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // subscriptions/listen (2026-07-28): resource list changes and updates of resources
        // this node has; tool and prompt lists never change.
        let mut accepted = SubscriptionFilter::new();
        accepted.resources_list_changed = requested.resources_list_changed;
        accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
            uris.iter()
                .filter(|u| resources::is_known(&self.node, u))
                .cloned()
                .collect()
        });
        Some(accepted)
    }

    async fn listen(&self, context: rmcp::service::SubscriptionContext) -> Result<(), McpError> {
        notify::listen(&self.node, context).await;
        Ok(())
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if !resources::is_known(&self.node, &request.uri) {
            return Err(McpError::resource_not_found(
                format!("unknown resource '{}'", request.uri),
                None,
            ));
        }
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.insert(request.uri);
        }
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.remove(&request.uri);
        }
        Ok(())
    }
}

/// Arguments that only mean something to a client with the tasks extension.
const TASK_ARGUMENTS: [(&str, &str); 1] = [("acp_send", "wait_for_reply")];

/// Removes the task-only arguments from a tool's input schema.
fn hide_task_arguments(tool: &mut Tool) {
    for (name, field) in TASK_ARGUMENTS {
        if tool.name != name {
            continue;
        }
        let mut schema = (*tool.input_schema).clone();
        if let Some(Value::Object(props)) = schema.get_mut("properties") {
            props.shift_remove(field);
        }
        tool.input_schema = Arc::new(schema);
    }
}

/// Serves MCP on stdin/stdout until the client closes stdin or the node shuts down.
pub async fn serve_stdio(node: Node) -> Result<(), String> {
    use rmcp::ServiceExt;
    let shutdown = node.shutdown_token();
    let service = AcpMcp::new(node)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP stdio session failed to start: {e}"))?;
    let cancel = service.cancellation_token();
    tokio::select! {
        r = service.waiting() => { r.map_err(|e| format!("MCP stdio session ended with an error: {e}"))?; }
        _ = shutdown.cancelled() => { cancel.cancel(); }
    }
    Ok(())
}

/// The Streamable HTTP service mounted at `/mcp`: one handler per session over the shared node.
pub fn http_service(
    node: Node,
) -> rmcp::transport::streamable_http_server::StreamableHttpService<
    AcpMcp,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    // Host and Origin (which the MCP transport spec requires servers to check) are checked for
    // every route of the port by `http::guard`, which the server puts around this service;
    // rmcp's own copy of the checks is off so the two cannot disagree.
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(node.shutdown_token().child_token())
        .with_max_request_body_bytes(node.config().max_msg_size + 64 * 1024)
        .disable_allowed_hosts()
        .disable_allowed_origins();
    let factory_node = node.clone();
    StreamableHttpService::new(
        move || Ok(AcpMcp::new(factory_node.clone())),
        Default::default(),
        config,
    )
}

/// The `/mcp` routes: the Streamable HTTP service, with one fix-up — a session DELETE is
/// answered 204 instead of rmcp's 202, which the Python SDK logs as a failed termination.
pub fn router(node: Node) -> axum::Router {
    async fn delete_is_no_content(
        req: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        let is_delete = req.method() == axum::http::Method::DELETE;
        let mut resp = next.run(req).await;
        if is_delete && resp.status() == axum::http::StatusCode::ACCEPTED {
            *resp.status_mut() = axum::http::StatusCode::NO_CONTENT;
        }
        resp
    }
    axum::Router::new()
        .route_service("/mcp", http_service(node))
        .layer(axum::middleware::from_fn(delete_is_no_content))
}

/// The URL an MCP client on this machine should use (loopback when bound to a wildcard).
pub fn local_url(node: &Node) -> String {
    let host = match node.config().http_host.as_str() {
        "0.0.0.0" | "::" => "127.0.0.1",
        h => h,
    };
    format!("http://{host}:{}/mcp", node.http_port())
}
