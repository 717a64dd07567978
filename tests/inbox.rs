//! The web inbox at `/`, in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver, W3C protocol) by a tiny client over reqwest, against two real nodes A and
//! B (B connected to A). The page on A must show what B sends, send what is typed into it,
//! follow a task B delegated as B and A change it, show attacker-controlled markup as text,
//! and work on a token-protected node after `/?access_token=`.
//!
//! Needs `chromium` and `chromium-driver`. Without them the test fails on CI (`CI=true`) and
//! is skipped (with a message) elsewhere. `ACP_INBOX_SCREENSHOT=path.png` also saves a
//! screenshot of A's page with a small conversation (how `docs/inbox.png` was made).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Lab, TestNode, connect, eventually, free_port, start_with};
use serde_json::{Value, json};

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A chromedriver process this test started, and one browser session in it.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < ready, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,860".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
        }}});
        let mut b = Browser {
            http,
            base,
            session: String::new(),
            driver,
            _profile: profile,
        };
        let v = b.call(reqwest::Method::POST, "/session", Some(caps)).await;
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b
    }

    /// One WebDriver command; panics on a WebDriver error (with its message).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = if self.session.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("WebDriver request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("WebDriver JSON");
        assert!(status.is_success(), "WebDriver {path}: {status} {v}");
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT_KEY].as_str().expect("element id").to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Polls the page until `script` (a function body returning a value) is truthy; returns
    /// how long that took.
    async fn until(&self, secs: u64, what: &str, script: &str, args: Value) -> Duration {
        let start = Instant::now();
        loop {
            let v = self.js(script, args.clone()).await;
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "page: timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn screenshot(&self) -> Vec<u8> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("PNG")
    }

    async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        self.session.clear();
    }
}

/// Ends the browser session (which closes Chromium) and stops chromedriver, also when the
/// test panics half-way: a plain blocking HTTP DELETE, since a destructor cannot await.
impl Drop for Browser {
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://").to_owned();
        if self.session.is_empty() {
            // Ended by quit(), or never started.
        } else if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            // The answer's first bytes: the session is gone by then.
            let _ = s.read(&mut [0u8; 512]);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The page's paint and load times from the browser's Performance API.
const TIMING: &str = "const n = performance.getEntriesByType('navigation')[0]; \
    const p = performance.getEntriesByType('paint').map(e => [e.name, e.startTime]); \
    const r = (name) => { const e = performance.getEntriesByName(location.origin + name)[0]; \
      return e ? Math.round(e.responseEnd) : null; }; \
    return {paint: p, request_start: n.requestStart, response_end: n.responseEnd, \
      dom_interactive: n.domInteractive, css_end: r('/inbox.css'), js_end: r('/inbox.js'), \
      dom_content_loaded: n.domContentLoadedEventEnd, load: n.loadEventEnd};";

/// The page's text of the conversations area.
const MAIN_TEXT: &str = "return document.getElementById('contexts-list').textContent";

async fn task_state(page: &Browser, task: &str, state: &str) -> Duration {
    page.until(
        10,
        &format!("task {task} shown as {state}"),
        "const t = document.querySelector(`[data-task=\"${arguments[0]}\"] .state`); \
         return t && t.textContent === arguments[1];",
        json!([task, state]),
    )
    .await
}

async fn text_shown(page: &Browser, text: &str) -> Duration {
    page.until(
        10,
        &format!("{text:?} on the page"),
        "return document.getElementById('contexts-list').textContent.includes(arguments[0])",
        json!([text]),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inbox_in_headless_chromium() {
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "the inbox test needs chromium and chromium-driver (apt-get install -y chromium chromium-driver); .ci/run installs them"
            );
        }
        println!("skipped: needs chromium and chromium-driver");
        return;
    };
    let lab = Lab::new();
    let mut a_config = lab.config("A");
    // An A2A client on this machine may call A (it shows as an A2A peer, below).
    a_config.a2a_open_loopback = true;
    let a = start_with(a_config).await;
    let b = lab.start("B").await;
    connect(&b, &a).await;
    let page = Browser::start(&chromium, &chromedriver).await;

    // The page loads, with A's link and B as a verified, connected peer.
    page.goto(&format!("{}/", a.url)).await;
    page.until(
        10,
        "A's link",
        "return document.getElementById('link').value.startsWith('acp://')",
        json!([]),
    )
    .await;
    page.until(
        10,
        "peer B, connected and verified",
        "const p = document.getElementById('peers').textContent; \
         return p.includes('B') && p.includes('connected') && p.includes('verified') && !p.includes('not verified')",
        json!([]),
    )
    .await;
    let paint = page.js(TIMING, json!([])).await;
    println!("inbox timing, first load in a fresh browser (ms since navigation start): {paint}");
    // An A2A client sends A a message: its peer appears, live, marked as an A2A agent (it has
    // no ACP key, so no "verified" badge).
    let sent = a
        .http
        .post(format!("{}/a2a/jsonrpc", a.url))
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
            "message": {"messageId": "inbox-a2a-1", "role": "ROLE_USER", "parts": [{"text": "hello from A2A"}]},
            "configuration": {"returnImmediately": true}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    page.until(
        10,
        "the A2A caller, marked A2A",
        "const li = document.querySelector('#peers li[data-kind=\"a2a\"]'); \
         return !!li && li.textContent.includes('A2A') && !li.textContent.includes('verified')",
        json!([]),
    )
    .await;
    // The same page again, as a person reopening it (browser and connection warm).
    page.goto(&format!("{}/", a.url)).await;
    page.until(
        10,
        "A's link (again)",
        "return document.getElementById('link').value.startsWith('acp://')",
        json!([]),
    )
    .await;
    let warm = page.js(TIMING, json!([])).await;
    println!("inbox timing, reload (ms since navigation start): {warm}");
    assert!(
        warm["paint"].as_array().is_some_and(|p| !p.is_empty()),
        "the browser reported no paint: {warm}"
    );

    // A message from B appears on A's page, live.
    b.send_text(
        "Can you review the retention patch before lunch?",
        json!({"context_id": "ctx_review"}),
    )
    .await;
    let latency = text_shown(&page, "Can you review the retention patch").await;
    println!(
        "inbox: B's message shown on A's page after {} ms",
        latency.as_millis()
    );
    b.post(
        "/message:send",
        json!({"role": "user", "context_id": "ctx_review", "parts": [
            {"type": "data", "content": {"pr": 412, "files": ["src/node/retention.rs"]}},
            {"type": "file", "url": "https://example.org/pr/412.diff", "name": "412.diff"},
        ]}),
    )
    .await;
    text_shown(&page, "\"pr\": 412").await;
    let link = page
        .js(
            "const a = document.querySelector('.file a'); return a && [a.getAttribute('href'), a.textContent]",
            json!([]),
        )
        .await;
    assert_eq!(
        link,
        json!(["https://example.org/pr/412.diff", "file: 412.diff"])
    );

    // Typed into A's page, reaches B.
    page.type_into("#send-context", "ctx_review").await;
    page.type_into("#send-text", "Sure, looking at it now.")
        .await;
    page.click("#send-button").await;
    eventually(10, "B received the message typed into A's page", || async {
        let (_, v) = b.get("/messages?direction=inbound&limit=10").await;
        v["messages"].as_array().is_some_and(|l| {
            l.iter().any(|m| {
                m["parts"][0]["content"] == "Sure, looking at it now."
                    && m["context_id"] == "ctx_review"
            })
        })
    })
    .await;
    text_shown(&page, "Sure, looking at it now.").await;

    // A task B delegates to A, then changes from both sides, followed on A's page.
    let (status, t) = b
        .post(
            "/tasks",
            json!({"task_id": "task_inbox_1", "context_id": "ctx_review", "delegate": true,
                   "parts": [{"type": "text", "content": "Summarise the review"}]}),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let shown = task_state(&page, "task_inbox_1", "submitted").await;
    println!("inbox: delegated task shown after {} ms", shown.as_millis());
    let (status, _) = a
        .post("/tasks/task_inbox_1:update", json!({"status": "working"}))
        .await;
    assert_eq!(status, 200);
    task_state(&page, "task_inbox_1", "working").await;
    // A's page completes it with an artifact, B sees that.
    page.js(
        "document.getElementById('state-task_inbox_1').value = 'completed'",
        json!([]),
    )
    .await;
    page.type_into("#art-task_inbox_1", "Two nits, otherwise fine.")
        .await;
    page.click("#upd-task_inbox_1").await;
    task_state(&page, "task_inbox_1", "completed").await;
    text_shown(&page, "Two nits, otherwise fine.").await;
    eventually(10, "B sees the task completed by A's page", || async {
        let (_, v) = b.get("/tasks/task_inbox_1").await;
        v["status"] == "completed"
            && v["artifacts"][0]["parts"][0]["content"] == "Two nits, otherwise fine."
    })
    .await;
    // A second task, canceled by B (the requester): A's page follows.
    b.post(
        "/tasks",
        json!({"task_id": "task_inbox_2", "context_id": "ctx_review", "delegate": true,
               "parts": [{"type": "text", "content": "Run the soak test"}]}),
    )
    .await;
    task_state(&page, "task_inbox_2", "submitted").await;
    let (status, _) = b.post("/tasks/task_inbox_2:cancel", json!({})).await;
    assert_eq!(status, 200);
    task_state(&page, "task_inbox_2", "canceled").await;

    // A task created in A's page, delegated to B; then canceled with its button on A's page.
    page.type_into("#task-text", "Draft the release notes")
        .await;
    page.click("#task-button").await;
    let find = || async {
        let (_, v) = b.get("/tasks?limit=20").await;
        v["tasks"].as_array().and_then(|l| {
            l.iter()
                .find(|t| t["payload"]["parts"][0]["content"] == "Draft the release notes")
                .cloned()
        })
    };
    eventually(10, "B got the task created in A's page", || async {
        find().await.is_some()
    })
    .await;
    let t = find().await.unwrap();
    assert_eq!(t["context_id"], "ctx_review", "{t}");
    assert_eq!(t["from_peer"], true, "{t}");
    let task_id = t["id"].as_str().unwrap().to_owned();
    task_state(&page, &task_id, "submitted").await;
    page.click(&format!("#cancel-{task_id}")).await;
    task_state(&page, &task_id, "canceled").await;
    eventually(10, "B sees the task canceled from A's page", || async {
        let (_, v) = b.get(&format!("/tasks/{task_id}")).await;
        v["status"] == "canceled"
    })
    .await;

    if let Ok(path) = std::env::var("ACP_INBOX_SCREENSHOT") {
        page.js(
            "document.activeElement.blur(); window.scrollTo(0, 0)",
            json!([]),
        )
        .await;
        std::fs::write(&path, page.screenshot().await).expect("write screenshot");
        println!("inbox: screenshot written to {path}");
    }

    // Search: the box calls the node's full-text search (/messages?q=: a prefix and an
    // exclusion here) and shows its matches like messages.
    page.type_into("#search", "RETENT* -unrelated").await;
    page.click("#search-form button[type=submit]").await;
    page.until(
        10,
        "search results",
        "const r = document.getElementById('results'); \
         return !r.hidden && r.textContent.includes('review the retention patch') \
           && !r.textContent.includes('looking at it now')",
        json!([]),
    )
    .await;

    // Connect by pasting a link: a third node, D, becomes A's connected peer.
    let d = lab.start("D").await;
    page.type_into("#connect-link", &d.link()).await;
    page.click("#connect-form button[type=submit]").await;
    page.until(
        10,
        "D listed as connected on A's page",
        "return [...document.querySelectorAll('#peers li')].some(li => \
           li.querySelector('strong').textContent === 'D' && li.textContent.includes('connected'))",
        json!([]),
    )
    .await;
    assert_eq!(a.peer_named("D").await["connected"], true);
    d.stop().await;

    // Markup from a peer is shown as text and never runs.
    let payload = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>";
    b.send_text(payload, json!({"context_id": "ctx_xss"})).await;
    text_shown(&page, payload).await;
    let injected = page
        .js(
            "return [window.__pwned === undefined, \
             document.querySelectorAll('#contexts-list img, #contexts-list script').length]",
            json!([]),
        )
        .await;
    assert_eq!(injected, json!([true, 0]), "peer markup became elements");
    let text = page.js(MAIN_TEXT, json!([])).await;
    assert!(text.as_str().unwrap().contains("<script>"));
    // And should markup ever reach the DOM as HTML, the CSP keeps its inline script from
    // running: the image fails to load, its onerror handler is blocked.
    page.js(
        "document.body.insertAdjacentHTML('beforeend', '<img id=\"csp-probe\" src=\"/no-such-image\" onerror=\"window.__csp=1\">')",
        json!([]),
    )
    .await;
    page.until(
        10,
        "the probe image to fail",
        "const i = document.getElementById('csp-probe'); return i.complete && i.naturalWidth === 0",
        json!([]),
    )
    .await;
    let ran = page
        .js("return window.__csp === undefined", json!([]))
        .await;
    assert_eq!(ran, true, "an inline handler ran despite the CSP");

    // The page itself carries the CSP and an ETag; a revalidation is a 304.
    let resp = reqwest::get(format!("{}/", a.url)).await.unwrap();
    let h = resp.headers().clone();
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'")
    );
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let etag = h["etag"].to_str().unwrap().to_owned();
    let again = reqwest::Client::new()
        .get(format!("{}/", a.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    for (path, ct) in [("/inbox.js", "text/javascript"), ("/inbox.css", "text/css")] {
        let r = reqwest::get(format!("{}{path}", a.url)).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ct)
        );
    }

    // A token-protected node: no data without the token, the page works after ?access_token=.
    let mut cfg = lab.config("C");
    cfg.api_token = Some("inbox-test-token-0123".into());
    let c: TestNode = start_with(cfg).await;
    page.goto(&format!("{}/", c.url)).await;
    let body = page.js("return document.body.textContent", json!([])).await;
    // A baseline for the paint times above: this browser's first paint of that 700-byte
    // page without any subresource.
    let floor = page.js(TIMING, json!([])).await;
    println!("inbox timing, the token page (no CSS, no script) for comparison: {floor}");
    let body = body.as_str().unwrap();
    assert!(body.contains("access_token"), "{body}");
    assert!(
        !body.contains("acp://"),
        "data shown without the token: {body}"
    );
    page.goto(&format!("{}/?access_token=inbox-test-token-0123", c.url))
        .await;
    page.until(
        10,
        "C's link after ?access_token=",
        "return document.getElementById('link').value.startsWith('acp://')",
        json!([]),
    )
    .await;
    let shown_url = page.js("return location.search", json!([])).await;
    assert_eq!(shown_url, "", "the token stays in the address bar");
    page.until(
        10,
        "C's live stream",
        "return document.getElementById('live-state').textContent === 'live'",
        json!([]),
    )
    .await;

    page.quit().await;
    c.stop().await;
    a.stop().await;
    b.stop().await;
}

/// Without a browser: what the inbox's routes answer to a token-less, a wrong-token and a
/// token-holding client, and to methods it does not have.
#[tokio::test]
async fn inbox_routes_under_the_guard() {
    let lab = Lab::new();
    let mut cfg = lab.config("T");
    cfg.api_token = Some("inbox-test-token-4567".into());
    let t = start_with(cfg).await;
    let http = reqwest::Client::new();
    for (auth, wrong) in [(None, false), (Some("Bearer nope"), true)] {
        let mut req = http.get(format!("{}/", t.url));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(resp.headers().contains_key("content-security-policy"));
        let body = resp.text().await.unwrap();
        assert!(body.contains("/?access_token="), "{body}");
        assert_eq!(body.contains("wrong"), wrong, "{body}");
        assert!(
            !body.contains(&t.link()) && !body.contains("tok_"),
            "{body}"
        );
    }
    // The assets and the API stay JSON 401 without the token.
    let (status, v) = t.get("/inbox.js").await;
    assert_eq!(status, 401);
    assert_eq!(v["error_code"], "ERR_UNAUTHORIZED");
    // With the token: the page, and the cookie that carries it from then on.
    let resp = http
        .get(format!("{}/?access_token=inbox-test-token-4567", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let page = resp.text().await.unwrap();
    assert!(page.contains("<script src=\"/inbox.js\" defer></script>"));
    let pair = cookie.split(';').next().unwrap().to_owned();
    let resp = http
        .get(format!("{}/inbox.css", t.url))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Methods the page does not have are the API's JSON 405; a cross-site page is refused.
    let resp = http
        .post(format!("{}/", t.url))
        .bearer_auth("inbox-test-token-4567")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error_code"], "ERR_METHOD_NOT_ALLOWED");
    let resp = http
        .get(format!("{}/", t.url))
        .bearer_auth("inbox-test-token-4567")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    t.stop().await;
}
