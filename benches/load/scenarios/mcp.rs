//! MCP tool-call latency (`acp_send` on B, `acp_receive` on A) over Streamable HTTP with the
//! rmcp client.

use std::time::Instant;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

use crate::Res;
use crate::generator::{Lat, hist, ns};

pub struct Mcp {
    pub send: Lat,
    pub receive: Lat,
    pub received: u64,
}

pub async fn mcp_latency(b_url: &str, a_url: &str, samples: usize) -> Res<Mcp> {
    let connect = |url: &str, node: &'static str| {
        let transport = StreamableHttpClientTransport::from_uri(format!("{url}/mcp"));
        async move {
            ().serve(transport)
                .await
                .map_err(|e| format!("MCP initialize on {node}: {e}"))
        }
    };
    let b = connect(b_url, "B").await?;
    let a = connect(a_url, "A").await?;
    let ctx = format!("mcp-bench-{}", std::process::id());
    let call = |peer: &rmcp::Peer<rmcp::RoleClient>, tool: &'static str, args: Value| {
        let peer = peer.clone();
        async move {
            let args = args.as_object().cloned().unwrap_or_default();
            let r = peer
                .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
                .await
                .map_err(|e| format!("{tool}: {e}"))?;
            if r.is_error == Some(true) {
                return Err(format!("{tool} failed: {:?}", r.content));
            }
            Ok::<Value, String>(r.structured_content.unwrap_or(Value::Null))
        }
    };
    let mut cursor = "0".to_owned();
    let (mut send_h, mut recv_h) = (hist(), hist());
    let mut received = 0;
    let warm = 20;
    for i in 0..samples + warm {
        let t0 = Instant::now();
        call(
            b.peer(),
            "acp_send",
            json!({"text": format!("mcp {i}"), "context_id": ctx}),
        )
        .await?;
        let sent = t0.elapsed();
        let t1 = Instant::now();
        let r = call(
            a.peer(),
            "acp_receive",
            json!({"cursor": cursor, "context_id": ctx, "wait_seconds": 5, "limit": 10}),
        )
        .await?;
        let got = t1.elapsed();
        if let Some(c) = r["cursor"].as_str() {
            cursor = c.to_owned();
        }
        let n = r["messages"].as_array().map_or(0, Vec::len) as u64;
        if i >= warm {
            let _ = send_h.record(ns(sent).max(1));
            let _ = recv_h.record(ns(got).max(1));
            received += n;
        }
    }
    let _ = a.cancel().await;
    let _ = b.cancel().await;
    Ok(Mcp {
        send: Lat::of(&send_h),
        receive: Lat::of(&recv_h),
        received,
    })
}
