//! The web inbox at `/`: a person's view of the node (link, peers, conversations, tasks, live
//! events, send and task forms, search) for the developer overseeing their agents. The page is
//! three static files embedded in the binary (`assets/inbox/`), so it needs no network, no CDN
//! and no build step; all data comes from the REST/SSE API, same-origin, under the same guard.
//!
//! Messages are written by peers, so they are attacker-controlled: the script only ever puts
//! them into the page with `textContent`, and every answer here carries a Content Security
//! Policy that allows scripts from this origin only, so markup smuggled into a message cannot
//! run even if it ever reached the DOM as HTML.

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::node::Node;

/// The page's stylesheet, as a file (`/inbox.css`) and inlined into the page: a render-blocking
/// request less before the first paint.
const CSS: &str = include_str!("../../assets/inbox/inbox.css");

/// The `<link>` in `index.html` that serving replaces with the inlined stylesheet.
const STYLESHEET_LINK: &str = r#"<link rel="stylesheet" href="/inbox.css">"#;

/// What the page may load and run: its own script and stylesheet (the inlined one by its
/// hash), fetches and the event stream to this origin; nothing else inline, no plugins, no
/// framing, no form posts elsewhere.
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes()));
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'sha256-{hash}'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'; form-action 'self'"
    )
});

/// One embedded file with its content type and an ETag derived from its bytes, so a browser
/// revalidates cheaply and a new binary's page is never served from a stale cache.
struct Asset {
    body: Cow<'static, str>,
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(body: impl Into<Cow<'static, str>>, content_type: &'static str) -> Asset {
        let body = body.into();
        let digest = Sha256::digest(body.as_bytes());
        Asset {
            body,
            content_type,
            etag: format!("\"{}\"", hex::encode(&digest[..12])),
        }
    }
}

static PAGE: LazyLock<Asset> = LazyLock::new(|| {
    let html = include_str!("../../assets/inbox/index.html");
    Asset::new(
        html.replacen(STYLESHEET_LINK, &format!("<style>{CSS}</style>"), 1),
        "text/html; charset=utf-8",
    )
});
static STYLE: LazyLock<Asset> = LazyLock::new(|| Asset::new(CSS, "text/css; charset=utf-8"));
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("../../assets/inbox/inbox.js"),
        "text/javascript; charset=utf-8",
    )
});

/// The inbox's routes: the page and its two assets (merged into [`super::router`], so the
/// guard in [`super::protect`] covers them).
pub fn routes() -> Router<Node> {
    Router::new()
        .route("/", get(page))
        .route("/inbox.css", get(style))
        .route("/inbox.js", get(script))
}

async fn page(headers: HeaderMap) -> Response {
    serve(&PAGE, &headers)
}

async fn style(headers: HeaderMap) -> Response {
    serve(&STYLE, &headers)
}

async fn script(headers: HeaderMap) -> Response {
    serve(&SCRIPT, &headers)
}

/// The headers every inbox answer carries (also the 401 page's).
fn security_headers(h: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&CSP) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The first URL may carry ?access_token=: never hand it to a linked site.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn serve(asset: &Asset, req: &HeaderMap) -> Response {
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == asset.etag)
        });
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.clone().into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&asset.etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate every time (a 304 costs nothing on loopback), so an upgraded node serves
    // its own page at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(h);
    resp
}

/// What a browser gets at `/` from a node with `--api-token` when it holds no token: a
/// page (no data) saying how to open the inbox, instead of the API's JSON 401.
pub fn unauthorized_page(wrong: bool) -> Response {
    let reason = if wrong {
        "The API token in this request is wrong."
    } else {
        "This node was started with an API token (--api-token or ACP_API_TOKEN)."
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>acp-relay inbox: token needed</title></head><body><main>\
<h1>acp-relay inbox: token needed</h1><p>{reason}</p>\
<p>Open the inbox once with the token in the address, for example \
<code>http://127.0.0.1:7901/?access_token=YOUR_TOKEN</code> (use this node's own address). \
The node then keeps it in an HttpOnly cookie for this browser, and the address is cleaned.</p>\
</main></body></html>"
    );
    let mut resp = (StatusCode::UNAUTHORIZED, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(h);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_per_asset_and_match_revalidation() {
        assert_ne!(PAGE.etag, SCRIPT.etag);
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("W/{}, \"x\"", SCRIPT.etag)).unwrap(),
        );
        assert_eq!(serve(&SCRIPT, &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve(&PAGE, &h).status(), StatusCode::OK);
        let resp = serve(&PAGE, &HeaderMap::new());
        assert_eq!(
            resp.headers()[header::CONTENT_SECURITY_POLICY],
            CSP.as_str()
        );
        // The stylesheet is inlined, and allowed by its hash only.
        assert!(PAGE.body.contains("<style>") && !PAGE.body.contains(STYLESHEET_LINK));
        assert!(CSP.contains("style-src 'self' 'sha256-"));
        assert!(
            resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_if_none_match_is_safe(
            noise in ".{0,80}",
            tags in "[ ,W/a-z0-9\"]{0,30}",
            include: bool,
        ) {
            // Arbitrary text never panics; anything but this file's own tag is a 200.
            if let Ok(v) = HeaderValue::from_str(&noise) {
                let mut h = HeaderMap::new();
                h.insert(header::IF_NONE_MATCH, v);
                let _ = serve(&STYLE, &h);
            }
            let raw = if include { format!("{tags}, W/{}", STYLE.etag) } else { tags.clone() };
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&raw).unwrap());
            let fresh = serve(&STYLE, &h).status() == StatusCode::NOT_MODIFIED;
            proptest::prop_assert_eq!(fresh, include || tags.contains(STYLE.etag.as_str()));
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_remote_asset() {
        // The CSP forbids inline script; the page must not need it, nor any other host.
        assert!(!PAGE.body.contains("<script>"));
        assert!(!PAGE.body.contains("http://") && !PAGE.body.contains("https://"));
        assert!(!SCRIPT.body.contains("innerHTML"));
    }
}
