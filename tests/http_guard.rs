//! The guard around the HTTP port, tested against real nodes: what a web page (foreign Host
//! after DNS rebinding, foreign Origin, cross-site simple requests) and a caller without the
//! API token get, and that plain clients without an Origin keep working.

mod common;

use std::time::Duration;

use common::{Lab, TestNode, connect, start_with};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request with exactly the headers given (reqwest adds no Origin of its own).
async fn raw(
    node: &TestNode,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> reqwest::Response {
    let mut req = node.http.request(method, format!("{}{}", node.url, path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    req.send().await.expect("request")
}

async fn status_and_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error_code"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `node` connected to a fresh peer, which gets what `node` sends; the peer is returned.
async fn with_peer(lab: &Lab, node: &TestNode) -> TestNode {
    let peer = lab.start("peer").await;
    connect(node, &peer).await;
    peer
}

/// How many messages `node` holds (in both directions).
async fn stored(node: &TestNode) -> usize {
    let (_, m) = node.get("/messages?limit=100").await;
    m["messages"].as_array().map(Vec::len).unwrap_or(usize::MAX)
}

const LINK_BODY: &str = r#"{"link":"acp://198.51.100.7:7801/tok_attacker"}"#;

#[tokio::test]
async fn a_rebound_host_can_neither_read_nor_write() {
    let lab = Lab::new();
    let node = lab.start("victim").await;
    let peer = with_peer(&lab, &node).await;
    peer.send_text("secret", json!({})).await;
    common::eventually(10, "the secret arrives", || async {
        stored(&node).await == 1
    })
    .await;
    let port = node.server.http_addr.port();
    let evil = format!("evil.example:{port}");
    for (method, path, body) in [
        (Method::GET, "/recv", None),
        (Method::GET, "/messages", None),
        (Method::GET, "/stream", None),
        (Method::GET, "/status", None),
        (Method::POST, "/message:send", Some(r#"{"text":"x"}"#)),
        (Method::POST, "/peers/connect", Some(LINK_BODY)),
        (Method::POST, "/mcp", Some("{}")),
        (Method::GET, "/no/such/route", None),
    ] {
        let resp = raw(
            &node,
            method.clone(),
            path,
            &[("host", &evil), ("content-type", "application/json")],
            body,
        )
        .await;
        assert_eq!(
            status_and_code(resp).await,
            (403, "ERR_HOST_NOT_ALLOWED".into()),
            "{method} {path} with Host {evil}"
        );
    }
    // Every loopback name, with and without the port, is this node.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("[::1]:{port}"),
        "LOCALHOST".to_owned(),
    ] {
        let resp = raw(&node, Method::GET, "/status", &[("host", &host)], None).await;
        assert_eq!(resp.status().as_u16(), 200, "Host {host}");
    }
    // Nothing was read, sent or dialled by the refused requests.
    let (_, peers) = node.get("/peers").await;
    assert_eq!(peers["count"], 1, "{peers}");
    assert_eq!(stored(&node).await, 1);
    let (_, recv) = node.get("/recv").await;
    assert_eq!(recv["messages"].as_array().map(Vec::len), Some(1), "{recv}");
}

#[tokio::test]
async fn allowed_hosts_extend_the_list_with_or_without_a_port() {
    let lab = Lab::new();
    let mut cfg = lab.config("named");
    cfg.allowed_hosts = vec!["relay.internal".into(), "box.lan:8443".into()];
    let node = start_with(cfg).await;
    let status = |host: &'static str| {
        let node = &node;
        async move {
            raw(node, Method::GET, "/status", &[("host", host)], None)
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("relay.internal").await, 200);
    assert_eq!(status("relay.internal:1234").await, 200);
    assert_eq!(status("box.lan:8443").await, 200);
    assert_eq!(status("box.lan:9999").await, 403);
    assert_eq!(status("box.lan").await, 403);
    assert_eq!(status("other.internal").await, 403);
}

#[tokio::test]
async fn foreign_pages_are_refused_on_reads_and_writes() {
    let lab = Lab::new();
    let node = lab.start("browser-victim").await;
    let peer = with_peer(&lab, &node).await;
    peer.send_text("private", json!({})).await;
    common::eventually(10, "the message arrives", || async {
        stored(&node).await == 1
    })
    .await;
    let port = node.server.http_addr.port();
    // The exact attack: a "simple" cross-site POST that needs no preflight.
    for path in ["/peers/connect", "/connect", "/message:send", "/tasks"] {
        let resp = raw(
            &node,
            Method::POST,
            path,
            &[
                ("origin", "https://evil.example"),
                ("content-type", "text/plain"),
            ],
            Some(LINK_BODY),
        )
        .await;
        assert_eq!(
            status_and_code(resp).await,
            (403, "ERR_ORIGIN_NOT_ALLOWED".into()),
            "{path}"
        );
    }
    for (origin, why) in [
        ("https://evil.example", "foreign page"),
        ("null", "sandboxed frame or file:// page"),
        (
            &*format!("http://evil.example:{port}"),
            "right port, wrong host",
        ),
        (
            &*format!("http://127.0.0.1:{}", port + 1),
            "other local port",
        ),
        ("not an origin", "garbage"),
    ] {
        for path in ["/recv", "/stream", "/messages"] {
            let resp = raw(&node, Method::GET, path, &[("origin", origin)], None).await;
            assert_eq!(
                status_and_code(resp).await,
                (403, "ERR_ORIGIN_NOT_ALLOWED".into()),
                "{why}: GET {path}"
            );
        }
    }
    // A cross-site GET without an Origin (an <img> or <script> tag) is refused as well.
    let resp = raw(
        &node,
        Method::GET,
        "/recv",
        &[("sec-fetch-site", "cross-site")],
        None,
    )
    .await;
    assert_eq!(
        status_and_code(resp).await,
        (403, "ERR_ORIGIN_NOT_ALLOWED".into())
    );
    // The node's own pages (any of its loopback names at its port) pass.
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let resp = raw(
            &node,
            Method::GET,
            "/status",
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
            None,
        )
        .await;
        assert_eq!(resp.status().as_u16(), 200, "{origin}");
        assert!(resp.headers().get("access-control-allow-origin").is_none());
    }
    // The refused requests changed nothing: no new peer, nothing sent, the message unread.
    let (_, peers) = node.get("/peers").await;
    assert_eq!(peers["count"], 1, "{peers}");
    assert_eq!(stored(&node).await, 1);
    let (_, recv) = node.get("/recv").await;
    assert_eq!(recv["messages"].as_array().map(Vec::len), Some(1), "{recv}");
}

#[tokio::test]
async fn json_endpoints_refuse_bodies_that_are_not_json() {
    let lab = Lab::new();
    let node = lab.start("typed").await;
    let _peer = with_peer(&lab, &node).await;
    let body = r#"{"role":"user","text":"hi"}"#;
    for ct in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
    ] {
        let (status, resp) = node.post_raw("/message:send", body, ct).await;
        assert_eq!(
            (status, resp["error_code"].as_str()),
            (415, Some("ERR_UNSUPPORTED_MEDIA_TYPE")),
            "{ct}: {resp}"
        );
    }
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "application/merge-patch+json",
    ] {
        let (status, resp) = node.post_raw("/message:send", body, ct).await;
        assert_eq!(status, 200, "{ct}: {resp}");
    }
    // A body without a content type (what curl-style clients send) stays accepted.
    let resp = raw(&node, Method::POST, "/message:send", &[], Some(body)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let (status, resp) = node
        .post_raw("/card", r#"{"name":"x"}"#, "text/plain")
        .await;
    assert_eq!(status, 415, "{resp}");
    // Only the four accepted sends were stored.
    assert_eq!(stored(&node).await, 4);
}

#[tokio::test]
async fn listed_origins_get_cors_and_others_get_no_preflight() {
    let lab = Lab::new();
    let mut cfg = lab.config("cors");
    cfg.cors_origins =
        vec![acp_relay::http::origin::Origin::parse("https://app.example:8443").unwrap()];
    let node = start_with(cfg).await;
    let _peer = with_peer(&lab, &node).await;
    let preflight = |origin: &'static str| {
        let node = &node;
        async move {
            raw(
                node,
                Method::OPTIONS,
                "/message:send",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "content-type, authorization",
                    ),
                ],
                None,
            )
            .await
        }
    };
    let ok = preflight("https://app.example:8443").await;
    assert_eq!(ok.status().as_u16(), 204);
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example:8443");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let refused = preflight("https://evil.example").await;
    assert_eq!(refused.status().as_u16(), 403);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    // The real request from the listed origin is answered with CORS headers, no wildcard.
    let resp = raw(
        &node,
        Method::POST,
        "/message:send",
        &[
            ("origin", "https://app.example:8443"),
            ("content-type", "application/json"),
        ],
        Some(r#"{"role":"user","text":"from the app"}"#),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example:8443"
    );
    // Same host, other port: a different origin.
    let resp = raw(
        &node,
        Method::GET,
        "/recv",
        &[("origin", "https://app.example")],
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 403);
}

const TOKEN: &str = "test-token-0123456789abcdef";

#[tokio::test]
async fn the_api_token_guards_every_route() {
    let lab = Lab::new();
    let mut cfg = lab.config("locked");
    cfg.api_token = Some(TOKEN.into());
    let node = start_with(cfg).await;
    for (method, path) in [
        (Method::GET, "/status"),
        (Method::GET, "/recv"),
        (Method::GET, "/stream"),
        (Method::POST, "/message:send"),
        (Method::POST, "/mcp"),
        (Method::GET, "/nope"),
    ] {
        let missing = raw(&node, method.clone(), path, &[], None).await;
        let challenge = missing.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert_eq!(
            status_and_code(missing).await,
            (401, "ERR_UNAUTHORIZED".into()),
            "{method} {path} without a token"
        );
        let wrong = raw(
            &node,
            method.clone(),
            path,
            &[("authorization", "Bearer not-the-token-at-all")],
            None,
        )
        .await;
        assert!(
            wrong.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        assert_eq!(wrong.status().as_u16(), 401, "{method} {path}, wrong token");
        // A token that is right but for its last character, or a prefix of it.
        for near in [&TOKEN[..TOKEN.len() - 1], "test-token-0123456789abcdeF"] {
            let resp = raw(
                &node,
                method.clone(),
                path,
                &[("authorization", &format!("Bearer {near}"))],
                None,
            )
            .await;
            assert_eq!(resp.status().as_u16(), 401);
        }
    }
    let bearer = format!("Bearer {TOKEN}");
    let resp = raw(
        &node,
        Method::POST,
        "/skills/query",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        Some("{}"),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    // The token is never shown back.
    let status = raw(
        &node,
        Method::GET,
        "/status",
        &[("authorization", &bearer)],
        None,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(!status.contains(TOKEN), "{status}");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["agent_card"]["auth"]["schemes"], json!(["bearer"]));
    // A browser: the token once in the query string, then the cookie it was given.
    let resp = raw(
        &node,
        Method::GET,
        &format!("/status?access_token={TOKEN}"),
        &[],
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let resp = raw(&node, Method::GET, "/recv", &[("cookie", &pair)], None).await;
    assert_eq!(resp.status().as_u16(), 200);
    let resp = raw(
        &node,
        Method::GET,
        "/recv",
        &[(
            "cookie",
            &format!("{}=wrong", pair.split('=').next().unwrap()),
        )],
        None,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 401);
    // SSE with the token in the query string (what an EventSource can do).
    let sse = raw(
        &node,
        Method::GET,
        &format!("/stream?access_token={TOKEN}"),
        &[],
        None,
    )
    .await;
    assert_eq!(sse.status().as_u16(), 200);
    drop(sse);
    // An MCP client over Streamable HTTP with the token works; without it, it cannot start.
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let with = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", node.url))
            .auth_header(TOKEN),
    );
    let client = ().serve(with).await.expect("MCP with the token");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "acp_send"));
    client.cancel().await.unwrap();
    let without = StreamableHttpClientTransport::from_uri(format!("{}/mcp", node.url));
    assert!(().serve(without).await.is_err());
}

#[test]
fn a_node_reachable_from_the_network_refuses_to_start_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acp-relay"))
        .args([
            "serve",
            "--port",
            "0",
            "--http-host",
            "0.0.0.0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("ACP_API_TOKEN")
        .env_remove("ACP_INSECURE_NO_TOKEN")
        .output()
        .expect("run acp-relay");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("--api-token"), "{stderr}");
    assert!(!dir.path().join("node.db").exists(), "nothing was opened");
}

/// Writes a whole request before reading anything, as Python's urllib does, and returns the
/// status line (or the I/O error the client saw).
async fn write_all_then_read(addr: std::net::SocketAddr, head: String, body: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.split();
    let write = async {
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(body).await?;
        wr.flush().await
    };
    // The server may answer before the write ends; the client still reads only after it.
    if let Err(e) = tokio::time::timeout(Duration::from_secs(60), write)
        .await
        .expect("write in time")
    {
        return format!("write failed: {e}");
    }
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
        Ok(Err(e)) => format!("read failed: {e}"),
        Err(_) => "no answer".into(),
    }
}

#[tokio::test]
async fn a_client_that_writes_its_whole_body_first_sees_the_413() {
    let lab = Lab::new();
    let node = lab.start("big").await;
    let _peer = with_peer(&lab, &node).await;
    let addr = node.server.http_addr;
    let body = vec![b'x'; 8 * 1024 * 1024];
    let head = format!(
        "POST /message:send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let status = write_all_then_read(addr, head, &body).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    // Chunked, with no length announced.
    let mut chunked = Vec::new();
    for _ in 0..64 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunked.extend_from_slice(&[b'y'; 64 * 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned();
    let status = write_all_then_read(addr, head, &chunked).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    // A client that asks first is answered without sending the body.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /message:send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 9000000\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // Nothing was stored; the node still works.
    assert_eq!(stored(&node).await, 0);
    node.send_text("small", json!({})).await;
}
