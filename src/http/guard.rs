//! The one guard in front of every route of the HTTP port (REST, SSE, `/mcp`, and any page
//! served later). A process on this machine is not the only thing that can reach a loopback
//! port: every web page the user opens can send requests to it, and a DNS-rebinding page can
//! even read the answers. So each request passes, in order:
//!
//! 1. **Host**: a loopback name, the bind address, or one of `--allowed-hosts`; anything else
//!    is a page that rebound its own name to this machine (403 `ERR_HOST_NOT_ALLOWED`).
//! 2. **Origin**: a request from a web page says where it comes from. The node's own origin
//!    and `--cors-origin` origins pass (the latter with CORS answers and preflight); any
//!    other page, and `Origin: null`, is refused (403 `ERR_ORIGIN_NOT_ALLOWED`). Without an
//!    Origin, `Sec-Fetch-Site: cross-site` or `same-site` (a cross-site `<img>` or `<script>`
//!    GET, which browsers send without an Origin) is refused too.
//! 3. **Token**: with `--api-token`, `Authorization: Bearer <token>`, or for a browser (an
//!    `EventSource` cannot set headers) `?access_token=<token>` once, answered with an
//!    `HttpOnly; SameSite=Strict` cookie that carries it from then on (401 otherwise; for the
//!    inbox page at `/`, an HTML page saying to open `/?access_token=…`).
//!    **A2A routes** (`/.well-known/agent-card.json`, `/a2a/…`) have their own rule: the
//!    caller holds an `--a2a-token` (a bearer token naming the caller), or the API token, or
//!    comes from a loopback address under `--a2a-open-loopback`; anyone else gets 401, also
//!    on a node without an API token. The request then carries the caller
//!    ([`crate::a2a::server::A2aCaller`]). An A2A token opens nothing but these routes.
//! 4. **Content type**: a body sent with a content type other than JSON (`text/plain` and the
//!    form types are what a page may send cross-site without a preflight) is refused with
//!    415 `ERR_UNSUPPORTED_MEDIA_TYPE`; a body without one, as curl-style clients send, passes.
//!    The streaming inlet (`POST /messages:stream`) also takes `application/x-ndjson`.
//!
//! WebSocket upgrades (`/ws/stream`, `/messages:stream`) are plain GETs to it: a page's
//! WebSocket always sends its Origin, so the same Origin check stops a foreign page.
//!
//! curl, the SDKs and agents (loopback Host, no Origin) see no difference.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::origin::{Authority, Origin};
use crate::config::Config;
use crate::node::error::{ErrorCode, NodeError};

use super::ApiError;

/// Query parameter a browser may put the API token in once (an `EventSource` or a link).
pub const TOKEN_QUERY_PARAM: &str = "access_token";

/// Request headers a listed origin's pages may send (what the REST API, SSE resumption,
/// MCP's Streamable HTTP and A2A clients use).
const CORS_ALLOW_HEADERS: &str = "authorization, content-type, accept, last-event-id, \
mcp-session-id, mcp-protocol-version, a2a-version, a2a-extensions";
/// Response headers such a page may read.
const CORS_EXPOSE_HEADERS: &str = "mcp-session-id, www-authenticate";
/// Methods the API has.
const CORS_ALLOW_METHODS: &str = "GET, POST, PATCH, DELETE, OPTIONS";

/// What the guard checks against, built once when the HTTP port is bound.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Rules>,
}

struct Rules {
    /// Hosts answered for; a `None` port means any port.
    hosts: Vec<Authority>,
    /// Origins whose pages may call the API (normalized).
    cors_origins: Vec<Origin>,
    /// SHA-256 of the API token: compared digest to digest, so the time taken says nothing
    /// about how much of a guess was right.
    token_digest: Option<[u8; 32]>,
    /// The token itself, for the cookie a browser gets after `?access_token=`.
    token: Option<String>,
    /// The port the node serves on, for recognizing its own pages under any of its names.
    http_port: u16,
    /// Cookie name, per port: cookies are not separated by port, and two nodes on one
    /// machine must not overwrite each other's.
    cookie_name: String,
    /// SHA-256 of each `--a2a-token`, with the caller name it stands for.
    a2a_tokens: Vec<(String, [u8; 32])>,
    /// `--a2a-open-loopback`.
    a2a_open_loopback: bool,
}

impl Guard {
    /// The rules of a node whose HTTP port is `http_port`.
    pub fn new(config: &Config, http_port: u16) -> Guard {
        let mut hosts: Vec<Authority> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|h| Authority {
                host: (*h).to_owned(),
                port: None,
            })
            .collect();
        let bind = config
            .http_host
            .trim_start_matches('[')
            .trim_end_matches(']');
        if !matches!(bind, "0.0.0.0" | "::") {
            hosts.push(Authority {
                host: bind.to_ascii_lowercase(),
                port: None,
            });
        }
        for raw in &config.allowed_hosts {
            match Authority::parse(raw) {
                Some(a) => hosts.push(a),
                None => {
                    tracing::warn!(host = %raw, "--allowed-hosts entry ignored: not a host name")
                }
            }
        }
        Guard {
            inner: Arc::new(Rules {
                hosts,
                cors_origins: config.cors_origins.clone(),
                token_digest: config.api_token.as_deref().map(digest),
                token: config.api_token.clone(),
                http_port,
                cookie_name: format!("acp_token_{http_port}"),
                a2a_tokens: config
                    .a2a_tokens
                    .iter()
                    .map(|c| (c.name.clone(), digest(&c.token)))
                    .collect(),
                a2a_open_loopback: config.a2a_open_loopback,
            }),
        }
    }

    fn host_allowed(&self, host: &Authority) -> bool {
        self.inner
            .hosts
            .iter()
            .any(|a| a.host == host.host && (a.port.is_none() || a.port == host.port))
    }

    /// A page of the node itself: the origin of the request's own Host, or any name the node
    /// answers for at its own port (a page loaded from `localhost` calling `127.0.0.1`).
    fn is_own(&self, origin: &Origin, host: &Authority) -> bool {
        origin.is_same_as(host)
            || (origin.scheme == "http"
                && origin.port == Some(self.inner.http_port)
                && self.host_allowed(&Authority {
                    host: origin.host.clone(),
                    port: origin.port,
                }))
    }

    fn cors_listed(&self, origin: &Origin) -> bool {
        self.inner.cors_origins.contains(origin)
    }
}

/// How the request proved it holds the token.
enum Credential {
    /// No token is configured, or a header or cookie carried it.
    Held,
    /// The query string carried it: set the cookie on the answer.
    FromQuery,
}

/// The middleware: applies the checks above, answers preflights, adds CORS headers for listed
/// origins.
pub async fn check(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = match host_of(&req) {
        Some(h) if guard.host_allowed(&h) => h,
        Some(h) => {
            tracing::warn!(host = %h.host, "HTTP request refused: Host not allowed (DNS rebinding?)");
            return refuse(
                ErrorCode::HostNotAllowed,
                format!(
                    "Host {:?} is not served here; use localhost or 127.0.0.1, or start the node with --allowed-hosts {}",
                    h.host, h.host
                ),
                None,
            );
        }
        None => {
            return refuse(
                ErrorCode::HostNotAllowed,
                "missing or malformed Host header",
                None,
            );
        }
    };
    let cors = match headers.get(header::ORIGIN) {
        None => {
            if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
                && matches!(site, "cross-site" | "same-site")
            {
                return refuse(
                    ErrorCode::OriginNotAllowed,
                    "requests from other web sites are refused",
                    None,
                );
            }
            None
        }
        Some(raw) => match raw.to_str().ok().and_then(Origin::parse) {
            Some(o) if guard.is_own(&o, &host) => None,
            Some(o) if guard.cors_listed(&o) => Some(o),
            _ => {
                let shown = String::from_utf8_lossy(raw.as_bytes()).into_owned();
                tracing::warn!(origin = %shown, "HTTP request refused: Origin not allowed");
                return refuse(
                    ErrorCode::OriginNotAllowed,
                    format!(
                        "web pages from {shown:?} may not call this node; allow one with --cors-origin"
                    ),
                    None,
                );
            }
        },
    };
    if req.method() == Method::OPTIONS && headers.contains_key("access-control-request-method") {
        // A preflight carries no credentials; the real request that follows is checked.
        let mut resp = axum::http::StatusCode::NO_CONTENT.into_response();
        if let Some(o) = &cors {
            add_cors(resp.headers_mut(), o);
            let h = resp.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(CORS_ALLOW_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(CORS_ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        return resp;
    }
    let a2a_route = crate::a2a::server::is_a2a_path(req.uri().path());
    let mut caller = None;
    let credential = match if a2a_route {
        a2a_credential(&guard, &req).map(|c| {
            caller = Some(c);
            Credential::Held
        })
    } else {
        credential(&guard, &req)
    } {
        Ok(c) => c,
        Err(wrong) if a2a_route => {
            let mut resp = refuse(
                ErrorCode::Unauthorized,
                if wrong {
                    "wrong A2A credential"
                } else {
                    "the A2A routes need a credential: send Authorization: Bearer <token> (a token the node was started with by --a2a-token / ACP_A2A_TOKENS)"
                },
                cors.as_ref(),
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="acp-relay-a2a""#),
            );
            return resp;
        }
        Err(wrong) => {
            if req.method() == Method::GET && req.uri().path() == "/" {
                // A person opening the inbox: a page saying how, not the API's JSON.
                return super::inbox::unauthorized_page(wrong);
            }
            let mut resp = refuse(
                ErrorCode::Unauthorized,
                if wrong {
                    "wrong API token"
                } else {
                    "this node needs its API token: send Authorization: Bearer <token> (the --api-token / ACP_API_TOKEN it was started with)"
                },
                cors.as_ref(),
            );
            let challenge = if wrong {
                r#"Bearer realm="acp-relay", error="invalid_token""#
            } else {
                r#"Bearer realm="acp-relay""#
            };
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            return resp;
        }
    };
    if has_body_method(req.method())
        && let Some(ct) = headers.get(header::CONTENT_TYPE)
        && !is_json(ct)
        && !(req.uri().path() == super::inlet::PATH && is_ndjson(ct))
    {
        let shown = String::from_utf8_lossy(ct.as_bytes()).into_owned();
        let message = if req.uri().path() == super::inlet::PATH {
            format!(
                "request body must be JSON or NDJSON, got Content-Type {shown:?}: send Content-Type: application/x-ndjson"
            )
        } else {
            format!(
                "request body must be JSON, got Content-Type {shown:?}: send Content-Type: application/json (curl: --json '{{…}}')"
            )
        };
        return refuse(ErrorCode::UnsupportedMediaType, message, cors.as_ref());
    }
    if let Some(c) = caller {
        req.extensions_mut().insert(c);
    }
    let mut resp = next.run(req).await;
    if let Some(o) = &cors {
        add_cors(resp.headers_mut(), o);
    }
    if let (Credential::FromQuery, Some(token)) = (credential, &guard.inner.token) {
        let cookie = format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Strict",
            guard.inner.cookie_name
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// The request's `Host` (HTTP/1.1) or authority (HTTP/2).
fn host_of(req: &Request) -> Option<Authority> {
    match req.headers().get(header::HOST) {
        Some(v) => Authority::parse(v.to_str().ok()?),
        None => {
            let a = req.uri().authority()?;
            Authority::parse(a.as_str())
        }
    }
}

/// `Ok` when the request holds the token (or none is needed); `Err(true)` when it offered a
/// wrong one, `Err(false)` when it offered none.
fn credential(guard: &Guard, req: &Request) -> Result<Credential, bool> {
    let Some(expected) = &guard.inner.token_digest else {
        return Ok(Credential::Held);
    };
    let matches = |offered: &str| constant_time_eq(&digest(offered), expected);
    let mut offered = false;
    if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
        offered = true;
        let value = auth.to_str().unwrap_or("");
        if let Some((scheme, token)) = value.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
            && matches(token.trim())
        {
            return Ok(Credential::Held);
        }
    }
    for cookies in req.headers().get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for pair in cookies.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name == guard.inner.cookie_name
            {
                offered = true;
                if matches(value) {
                    return Ok(Credential::Held);
                }
            }
        }
    }
    for pair in req.uri().query().unwrap_or("").split('&') {
        if let Some((name, value)) = pair.split_once('=')
            && name == TOKEN_QUERY_PARAM
        {
            offered = true;
            if matches(&percent_decode(value)) {
                return Ok(Credential::FromQuery);
            }
        }
    }
    Err(offered)
}

/// Who an A2A request comes from: an `--a2a-token` holder (by its name), the API token's
/// holder or a loopback caller under `--a2a-open-loopback` (both the local caller). `Err`
/// as for [`credential`]: `true` when a wrong token was offered.
fn a2a_credential(guard: &Guard, req: &Request) -> Result<crate::a2a::server::A2aCaller, bool> {
    use crate::a2a::server::A2aCaller;
    let loopback = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|ci| ci.0.ip().to_canonical().is_loopback());
    let bearer = req.headers().get(header::AUTHORIZATION).map(|auth| {
        auth.to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| digest(token.trim()))
    });
    if let Some(Some(offered)) = &bearer {
        // Every entry is compared, whichever matches.
        let mut found = None;
        for (name, d) in &guard.inner.a2a_tokens {
            if constant_time_eq(offered, d) && found.is_none() {
                found = Some(name.clone());
            }
        }
        if let Some(name) = found {
            return Ok(A2aCaller { name, loopback });
        }
    }
    if guard.inner.token_digest.is_some() {
        // The API token's holder may do anything, A2A included.
        match credential(guard, req) {
            Ok(_) => return Ok(A2aCaller::local(loopback)),
            Err(true) => return Err(true),
            Err(false) => {}
        }
    }
    if bearer.is_some() {
        return Err(true);
    }
    if guard.inner.a2a_open_loopback && loopback {
        return Ok(A2aCaller::local(true));
    }
    Err(false)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal digests, looking at every byte whatever the first difference.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lenient `%XX` decoding for the token parameter (a token with odd bytes simply won't match).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn has_body_method(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH)
}

/// `application/x-ndjson` (with or without parameters): the streaming inlet's bodies. Like
/// JSON it is not a type a page may send cross-site without asking first.
fn is_ndjson(ct: &HeaderValue) -> bool {
    ct.to_str().is_ok_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-ndjson")
    })
}

/// `application/json` and any `…+json` type, with or without parameters.
fn is_json(ct: &HeaderValue) -> bool {
    let Ok(ct) = ct.to_str() else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

fn add_cors(h: &mut HeaderMap, origin: &Origin) {
    if let Ok(v) = HeaderValue::from_str(&origin.to_string()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(CORS_EXPOSE_HEADERS),
    );
    h.append(header::VARY, HeaderValue::from_static("origin"));
}

fn refuse(code: ErrorCode, message: impl Into<String>, cors: Option<&Origin>) -> Response {
    let mut resp = ApiError(NodeError::new(code, message)).into_response();
    if let Some(o) = cors {
        add_cors(resp.headers_mut(), o);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            "application/vnd.api+json",
        ] {
            assert!(is_json(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/+json",
            "text/json",
            "json",
            "",
        ] {
            assert!(!is_json(&HeaderValue::from_static(bad)), "{bad}");
        }
        for ok in [
            "application/x-ndjson",
            "Application/X-NDJSON; charset=utf-8",
        ] {
            assert!(is_ndjson(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "application/ndjson",
            "text/plain",
            "application/json",
            "application/x-ndjsonx",
        ] {
            assert!(!is_ndjson(&HeaderValue::from_static(bad)), "{bad}");
        }
    }

    #[test]
    fn digests_compare_equal_only_when_equal() {
        assert!(constant_time_eq(&digest("a-token"), &digest("a-token")));
        assert!(!constant_time_eq(&digest("a-token"), &digest("a-tokeN")));
        assert_eq!(percent_decode("a%2Bb%zz%"), "a+b%zz%");
    }

    proptest! {
        #[test]
        fn arbitrary_content_types_and_tokens_never_panic(raw in ".{0,80}", bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(v) = HeaderValue::from_str(&raw) {
                let _ = is_json(&v);
            }
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                let _ = is_json(&v);
            }
            let _ = percent_decode(&raw);
        }
    }
}
