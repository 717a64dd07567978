//! A running node with its two listeners: what `acp-relay serve`, `acp-relay mcp`, the tests
//! and the benchmarks start. Binding happens before `start` returns, so the chosen ports are
//! known (and logged) immediately.

use std::net::SocketAddr;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::node::Node;
use crate::node::error::{NodeError, NodeResult};
use crate::{http, wire};

/// A started node: its handle, its bound addresses, and the tasks serving it.
pub struct Server {
    /// The node.
    pub node: Node,
    /// Where the REST/SSE API listens.
    pub http_addr: SocketAddr,
    /// Where the peer WebSocket listens.
    pub ws_addr: SocketAddr,
    http_task: JoinHandle<()>,
    ws_task: JoinHandle<()>,
}

impl Server {
    /// Opens the store, binds both ports (0 = any free port), starts serving and redials the
    /// peers this node dialled before.
    pub async fn start(config: Config) -> NodeResult<Server> {
        wire::quic::install_tls_provider();
        let node = Node::open(config)?;
        let bind_err = |what: &str, host: &str, port: u16, e: std::io::Error| {
            NodeError::internal(format!(
                "cannot listen for {what} on {host}:{port}: {e} (another acp-relay running? pick another port, or 0 for any)"
            ))
        };
        let cfg = node.config().clone();
        if let Err(e) = http::token_file::publish(&cfg.data_dir, cfg.api_token.as_deref()) {
            tracing::warn!(
                "cannot write the API token file in {} ({e}); the CLI then needs --token",
                cfg.data_dir.display()
            );
        }
        let fallback = cfg.instance_fallback;
        // A node that moved before takes the ports it moved to first, so its link stays.
        let remembered = fallback
            .then(|| crate::ports::load(&cfg.data_dir, cfg.port, cfg.http_port))
            .flatten();
        let ws_ports = [remembered.map(|r| r.port), Some(cfg.port)];
        let http_ports = [remembered.map(|r| r.http_port), Some(cfg.http_port)];
        let ws_listener = bind_first(&ws_ports, fallback, "peer", |p| wire::peer::bind(&node, p))
            .await
            .map_err(|e| bind_err("peers", &cfg.ws_host, cfg.port, e))?;
        let http_listener = bind_first(&http_ports, fallback, "HTTP", |p| http::bind(&node, p))
            .await
            .map_err(|e| bind_err("HTTP", &cfg.http_host, cfg.http_port, e))?;
        let ws_addr = ws_listener
            .local_addr()
            .map_err(|e| NodeError::internal(e.to_string()))?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|e| NodeError::internal(e.to_string()))?;
        if fallback {
            crate::ports::store(
                &cfg.data_dir,
                cfg.port,
                cfg.http_port,
                ws_addr.port(),
                http_addr.port(),
            );
        }
        let quic = wire::quic::bind(&node).await.map_err(NodeError::internal)?;
        let dial_quic = quic.clone();
        node.set_dialer(Box::new(move |node, peer| {
            wire::peer::spawn_dialer(node, peer, dial_quic.clone())
        }));
        if let Some(quic) = quic {
            node.background()
                .spawn(quic.clone().publish_hints(node.clone()));
            node.background().spawn(quic.serve(node.clone()));
        }
        let ws_task = tokio::spawn(wire::peer::serve(node.clone(), ws_listener));
        // The front-ends of the HTTP port (REST, MCP, A2A) side by side, none knowing the
        // others, under the one guard.
        let app = http::protect(
            http::router(node.clone())
                .merge(crate::mcp::router(node.clone()))
                .merge(crate::a2a::server::router(node.clone())),
            &node,
        );
        let n = node.clone();
        let http_task = tokio::spawn(async move {
            if let Err(e) = http::serve(n, http_listener, app).await {
                tracing::error!("HTTP server stopped: {e}");
            }
        });
        node.start_saved_dials()?;
        node.start_retention();
        node.start_webhooks();
        if cfg.lan_discovery {
            // A machine without multicast still runs the node; /discover then says so.
            match crate::lan::Discovery::start(&node) {
                Ok(discovery) => node.set_lan_discovery(discovery),
                Err(e) => tracing::warn!("LAN discovery not started: {e}"),
            }
        }
        if let Err(e) = http::address_file::publish(&cfg.data_dir, http_addr) {
            tracing::warn!(
                "cannot write the address file in {} ({e}); the CLI then needs --node",
                cfg.data_dir.display()
            );
        }
        tracing::info!(
            name = node.name(),
            peer_port = ws_addr.port(),
            http = %http_addr,
            link = %node.link(),
            data_dir = %node.config().data_dir.display(),
            "acp-relay node ready"
        );
        Ok(Server {
            node,
            http_addr,
            ws_addr,
            http_task,
            ws_task,
        })
    }

    /// Base URL of the REST API (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Graceful stop: stop accepting, close peer connections politely, flush the store.
    pub async fn shutdown(self) {
        http::address_file::withdraw(&self.node.config().data_dir, self.http_addr);
        self.node.shutdown().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.http_task).await;
        let _ = self.ws_task.await;
    }
}

/// Binds the first of `ports` that is free: the remembered port (when there is one), then
/// the asked one; with `fallback`, a free port when both are taken. Without `fallback` only
/// the asked port is tried and its error returned.
async fn bind_first<F, Fut>(
    ports: &[Option<u16>; 2],
    fallback: bool,
    what: &str,
    bind: F,
) -> std::io::Result<tokio::net::TcpListener>
where
    F: Fn(u16) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<tokio::net::TcpListener>>,
{
    let [remembered, asked] = *ports;
    let asked = asked.unwrap_or(0);
    if let Some(port) = remembered.filter(|_| fallback) {
        match bind(port).await {
            Ok(l) => return Ok(l),
            Err(e) => tracing::warn!(
                port,
                "remembered {what} port not free ({e}); trying {asked}"
            ),
        }
    }
    match bind(asked).await {
        Err(e) if fallback && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(
                port = asked,
                "{what} port in use; using a free port instead"
            );
            bind(0).await
        }
        other => other,
    }
}
