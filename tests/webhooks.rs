//! Push webhooks against real nodes: a loopback HTTP server in the test receives what the
//! node POSTs. Two nodes exchange messages and a task and the webhook gets every event, in
//! the `/stream` shape and order, signed with `--secret`; registrations survive a restart;
//! a dead and a hanging receiver neither slow sends nor go uncounted; bad URLs and bodies
//! are refused with 4xx. Also `GET /peer/{id}`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::{Lab, SseReader, TestNode, connect, eventually, free_port, start_with};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "webhook-test-secret";

/// What one POST brought.
#[derive(Debug, Clone)]
struct Delivery {
    event: String,
    delivery: String,
    signature: Option<String>,
    body: Vec<u8>,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Answer(u16),
    /// Takes the request and never answers.
    Hang,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
    mode: Arc<Mutex<Mode>>,
}

impl Receiver {
    /// A loopback HTTP server on a free port, answering `mode`.
    async fn start(mode: Mode) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let rx = Receiver {
            url,
            got: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(take))
            .with_state(rx.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        rx
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    fn bodies(&self) -> Vec<Value> {
        self.deliveries().iter().map(Delivery::json).collect()
    }
}

async fn take(
    State(rx): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    rx.got.lock().unwrap().push(Delivery {
        event: header("x-acp-event").unwrap_or_default(),
        delivery: header("x-acp-delivery").unwrap_or_default(),
        signature: header("x-acp-signature"),
        body: body.to_vec(),
    });
    let mode = *rx.mode.lock().unwrap();
    match mode {
        Mode::Answer(code) => StatusCode::from_u16(code).unwrap(),
        Mode::Hang => std::future::pending().await,
    }
}

/// What a receiver computes to check a delivery: `sha256=` + hex HMAC-SHA256 of the body.
fn expected_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn register(node: &TestNode, url: &str) -> Value {
    let (status, body) = node.post("/webhooks/register", json!({"url": url})).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn has(bodies: &[Value], pred: impl Fn(&Value) -> bool) -> bool {
    bodies.iter().any(pred)
}

#[tokio::test]
async fn a_signed_webhook_gets_every_event_of_messages_and_a_task_in_stream_shape() {
    let lab = Lab::new();
    let mut ca = lab.config("alpha");
    ca.secret = Some(SECRET.into());
    let mut cb = lab.config("beta");
    cb.secret = Some(SECRET.into());
    let a = start_with(ca).await;
    let b = start_with(cb).await;
    let rx = Receiver::start(Mode::Answer(204)).await;

    let reg = register(&a, &rx.url).await;
    assert_eq!(reg["ok"], true);
    assert_eq!(reg["registered"], rx.url.as_str());
    assert_eq!(reg["total"], 1);
    assert_eq!(reg["created"], true);
    // Idempotent: the same URL (written differently) is the same webhook.
    let again = register(&a, &rx.url.replace("http://", "HTTP://")).await;
    assert_eq!(again["total"], 1, "{again}");
    assert_eq!(again["created"], false);

    connect(&a, &b).await;
    a.send_text("hello beta", json!({"context_id": "ctx-hook"}))
        .await;
    b.send_text("hello alpha", json!({"context_id": "ctx-hook"}))
        .await;
    let (s, created) = a
        .post(
            "/tasks",
            json!({"role": "user", "parts": [{"type": "text", "content": "summarize"}], "delegate": true}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    eventually(10, "task on beta", || async {
        b.get(&format!("/tasks/{id}")).await.0 == 200
    })
    .await;
    let (s, r) = b
        .post(
            &format!("/tasks/{id}:update"),
            json!({"status": "completed", "artifact": {"parts": [{"type": "text", "content": "done"}]}}),
        )
        .await;
    assert_eq!(s, 200, "{r}");

    eventually(10, "all four kinds of event at the webhook", || async {
        let got = rx.bodies();
        has(&got, |e| e["type"] == "peer" && e["event"] == "connected")
            && has(&got, |e| {
                e["type"] == "message"
                    && e["direction"] == "outbound"
                    && e["parts"][0]["content"] == "hello beta"
            })
            && has(&got, |e| {
                e["type"] == "message"
                    && e["direction"] == "inbound"
                    && e["parts"][0]["content"] == "hello alpha"
            })
            && has(&got, |e| {
                e["type"] == "artifact" && e["task_id"] == id.as_str()
            })
            && has(&got, |e| {
                e["type"] == "status" && e["task_id"] == id.as_str() && e["state"] == "completed"
            })
    })
    .await;

    // Every delivery is signed over its exact body, names its event and has its own id;
    // the events arrive in seq order, each exactly as /stream replays it.
    let got = rx.deliveries();
    let mut replay = SseReader::open(&format!("{}/stream?since=0", a.url), None).await;
    let mut last_seq = 0;
    let mut ids = std::collections::HashSet::new();
    for d in &got {
        assert_eq!(
            d.signature.as_deref(),
            Some(expected_signature(&d.body).as_str())
        );
        let body = d.json();
        assert_eq!(d.event, body["type"].as_str().unwrap());
        assert!(d.delivery.starts_with("dlv_"), "{}", d.delivery);
        assert!(ids.insert(d.delivery.clone()), "delivery ids are unique");
        let seq = body["seq"].as_u64().unwrap();
        assert!(seq > last_seq, "in order: {seq} after {last_seq}");
        last_seq = seq;
        let same = replay
            .wait_for(10, "the same event on /stream", |e| e.id == Some(seq))
            .await;
        assert_eq!(same.data, body, "the webhook body is the /stream event");
    }

    // (The receiver records a request before answering it; the node counts it after.)
    eventually(10, "every delivery counted", || async {
        a.get("/webhooks").await.1["webhooks"][0]["delivered"].as_u64() >= Some(got.len() as u64)
    })
    .await;
    let (_, list) = a.get("/webhooks").await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["signed"], true);
    let hook = &list["webhooks"][0];
    assert_eq!(hook["url"], rx.url.as_str());
    assert_eq!(hook["failed"], 0);
    assert_eq!(hook["dropped"], 0);
    let (_, status) = a.get("/status").await;
    assert_eq!(status["webhooks"]["count"], 1, "{}", status["webhooks"]);
    let (_, card) = a.get("/card").await;
    assert_eq!(card["capabilities"]["push_notifications"], true);

    // Deregistered: nothing more arrives.
    let (s, gone) = a.post("/webhooks/deregister", json!({"url": rx.url})).await;
    assert_eq!(s, 200, "{gone}");
    assert_eq!(gone["remaining"], 0);
    assert_eq!(gone["removed"], true);
    // Nothing emitted after it arrives (a request already on its way may still land).
    a.send_text("after deregister", json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !has(&rx.bodies(), |e| e["parts"][0]["content"]
            == "after deregister"),
        "no delivery after deregister"
    );
    let (s, again) = a.post("/webhooks/deregister", json!({"url": rx.url})).await;
    assert_eq!((s, &again["removed"]), (200, &json!(false)), "{again}");

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn registered_webhooks_survive_a_restart_and_keep_delivering() {
    let lab = Lab::new();
    let rx = Receiver::start(Mode::Answer(200)).await;
    let other = Receiver::start(Mode::Answer(200)).await;
    let a = lab.start("alpha").await;
    register(&a, &rx.url).await;
    register(&a, &other.url).await;
    let (_, d) = a
        .post("/webhooks/deregister", json!({"url": other.url}))
        .await;
    assert_eq!(d["remaining"], 1);
    let (_, before) = a.get("/webhooks").await;
    let dir = a.stop().await;

    let a = start_with(lab.config("alpha")).await;
    assert_eq!(a.dir, dir);
    let (_, after) = a.get("/webhooks").await;
    assert_eq!(after["count"], 1, "{after}");
    assert_eq!(after["webhooks"][0]["url"], rx.url.as_str());
    assert_eq!(
        after["webhooks"][0]["registered_at"],
        before["webhooks"][0]["registered_at"]
    );
    // Counters are per run.
    assert_eq!(after["webhooks"][0]["delivered"], 0);

    let (s, _) = patch_card(&a, json!({"description": "after the restart"})).await;
    assert_eq!(s, 200);
    eventually(10, "the card event after the restart", || async {
        has(&rx.bodies(), |e| e["type"] == "card")
    })
    .await;
    assert!(
        other.deliveries().is_empty(),
        "the deregistered one stays gone"
    );
    a.stop().await;
}

async fn patch_card(node: &TestNode, body: Value) -> (u16, Value) {
    node.request(reqwest::Method::PATCH, "/card", Some(body))
        .await
}

/// Sends `n` messages from `from` (to its one peer) and returns how long they took.
async fn timed_sends(from: &TestNode, n: usize, tag: &str) -> Duration {
    let started = Instant::now();
    for i in 0..n {
        from.send_text(&format!("{tag} {i}"), json!({})).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_dead_and_a_hanging_webhook_neither_slow_sends_nor_go_uncounted() {
    const SENDS: usize = 200;
    let lab = Lab::new();
    let mut ca = lab.config("alpha");
    // A long timeout: a send that waited for the hanging receiver would wait a minute.
    ca.webhooks = acp_relay::node::webhooks::Settings {
        queue: 8,
        queue_bytes: 64 * 1024 * 1024,
        timeout: Duration::from_secs(60),
        retries: 1,
        backoff: Duration::from_millis(20),
    };
    let a = start_with(ca).await;
    let b = lab.start("beta").await;
    connect(&a, &b).await;

    // Baseline in the same run: the same sends with no webhook (after a warm-up).
    timed_sends(&a, 50, "warm-up").await;
    let baseline = timed_sends(&a, SENDS, "baseline").await;

    let hanging = Receiver::start(Mode::Hang).await;
    let dead = format!("http://127.0.0.1:{}/gone", free_port());
    register(&a, &hanging.url).await;
    register(&a, &dead).await;
    let with_bad = timed_sends(&a, SENDS, "hooked").await;
    // A healthy receiver beside them: it gets its events while the others fail.
    let healthy = Receiver::start(Mode::Answer(200)).await;
    register(&a, &healthy.url).await;
    let with_all = timed_sends(&a, SENDS, "hooked").await;
    eprintln!(
        "{SENDS} sends: {baseline:?} without webhooks; {with_bad:?} with a hanging and a dead \
         one (ratio {:.2}); {with_all:?} with a healthy one too (ratio {:.2}; its deliveries \
         share the test's one runtime thread)",
        with_bad.as_secs_f64() / baseline.as_secs_f64(),
        with_all.as_secs_f64() / baseline.as_secs_f64(),
    );
    // Generous: what matters is that no send waited on a receiver (one would wait 60 s).
    assert!(
        with_bad + with_all < Duration::from_secs(50),
        "sends took {with_bad:?} and {with_all:?}"
    );
    eventually(20, "beta has every message", || async {
        b.get("/status").await.1["messages_received"].as_u64() >= Some(3 * SENDS as u64 + 50)
    })
    .await;

    eventually(20, "every event counted at every webhook", || async {
        let (_, list) = a.get("/webhooks").await;
        let by_url = |u: &str| {
            list["webhooks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["url"] == u)
                .cloned()
                .unwrap()
        };
        let (h, d, ok) = (by_url(&hanging.url), by_url(&dead), by_url(&healthy.url));
        let n = |v: &Value, k: &str| v[k].as_u64().unwrap();
        // The hanging receiver holds one event; the rest waits in its queue or is dropped.
        n(&h, "dropped") > 0
            && n(&h, "delivered") == 0
            && n(&d, "failed") > 0
            && n(&d, "delivered") == 0
            && n(&d, "failed") + n(&d, "dropped") >= 2 * SENDS as u64
            && n(&d, "queued") == 0
            && d["last_error"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("connect"))
            && n(&ok, "delivered") > 0
            && n(&ok, "failed") == 0
            && n(&ok, "queued") == 0
    })
    .await;
    // The healthy receiver still gets what comes next.
    a.send_text("after the burst", json!({})).await;
    eventually(10, "the healthy receiver gets the next message", || async {
        has(&healthy.bodies(), |e| {
            e["parts"][0]["content"] == "after the burst"
        })
    })
    .await;
    eventually(10, "the hanging receiver holds one request", || async {
        hanging.deliveries().len() == 1
    })
    .await;
    let (_, status) = a.get("/status").await;
    let totals = &status["webhooks"];
    assert_eq!(totals["count"], 3);
    assert!(totals["dropped"].as_u64().unwrap() > 0, "{totals}");
    assert!(totals["failed"].as_u64().unwrap() > 0, "{totals}");

    // The node stops at once although a request is held open.
    let stopping = Instant::now();
    a.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(30));
    b.stop().await;
}

#[tokio::test]
async fn retries_reach_a_receiver_that_recovers_and_refusals_are_not_retried() {
    let lab = Lab::new();
    let mut ca = lab.config("alpha");
    ca.webhooks = acp_relay::node::webhooks::Settings {
        queue: 64,
        queue_bytes: 64 * 1024 * 1024,
        timeout: Duration::from_secs(10),
        retries: 3,
        backoff: Duration::from_millis(50),
    };
    let a = start_with(ca).await;
    let rx = Receiver::start(Mode::Answer(503)).await;
    register(&a, &rx.url).await;
    let (s, _) = patch_card(&a, json!({"description": "one"})).await;
    assert_eq!(s, 200);
    eventually(10, "a retry", || async { rx.deliveries().len() >= 2 }).await;
    *rx.mode.lock().unwrap() = Mode::Answer(200);
    eventually(10, "delivered after retries", || async {
        a.get("/webhooks").await.1["webhooks"][0]["delivered"] == 1
    })
    .await;
    let got = rx.deliveries();
    assert!(
        got.windows(2).all(|w| w[0].delivery == w[1].delivery),
        "a retry repeats the delivery id: {got:?}"
    );
    let (_, list) = a.get("/webhooks").await;
    assert!(list["webhooks"][0]["retries"].as_u64().unwrap() >= 1);
    assert!(
        list["webhooks"][0]["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("503")
    );

    // A 4xx is the receiver's answer: counted as failed at once, not retried.
    *rx.mode.lock().unwrap() = Mode::Answer(410);
    let before = rx.deliveries().len();
    let (s, _) = patch_card(&a, json!({"description": "two"})).await;
    assert_eq!(s, 200);
    eventually(10, "failed once", || async {
        a.get("/webhooks").await.1["webhooks"][0]["failed"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.deliveries().len(), before + 1, "no retry after a 410");
    a.stop().await;
}

#[tokio::test]
async fn bad_webhook_urls_and_bodies_are_refused_and_the_number_is_capped() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    for (body, why) in [
        (json!({}), "'url' is required"),
        (json!({"url": ""}), "'url' is required"),
        (json!({"url": null}), "'url' is required"),
        (json!({"url": 42}), "must be a string"),
        (json!({"url": ["http://127.0.0.1:9/"]}), "must be a string"),
        (json!({"url": "ftp://127.0.0.1/x"}), "only http"),
        (json!({"url": "file:///etc/passwd"}), "only http"),
        (json!({"url": "ws://127.0.0.1:9/"}), "only http"),
        (
            json!({"url": "http://user:pw@127.0.0.1:9/"}),
            "user name or password",
        ),
        (
            json!({"url": "https://token@example.com/"}),
            "user name or password",
        ),
        (json!({"url": "http://127.0.0.1:9/#x"}), "fragment"),
        (json!({"url": "not a url"}), "spaces"),
        (json!({"url": "//127.0.0.1:9/"}), "not a valid URL"),
        (
            json!({"url": format!("http://127.0.0.1:9/{}", "a".repeat(3000))}),
            "at most",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "secret": "x"}),
            "unknown field 'secret'",
        ),
    ] {
        let (s, err) = a.post("/webhooks/register", body.clone()).await;
        assert_eq!(s, 400, "{body}: {err}");
        assert_eq!(err["error_code"], "ERR_INVALID_REQUEST", "{err}");
        assert!(
            err["error"].as_str().unwrap().contains(why),
            "{body}: {err}"
        );
    }
    for (body, ct, code) in [
        ("[1,2]", "application/json", 400),
        ("{\"url\":", "application/json", 400),
        (
            "url=http://127.0.0.1:9/",
            "application/x-www-form-urlencoded",
            415,
        ),
    ] {
        let (s, err) = a.post_raw("/webhooks/register", body, ct).await;
        assert_eq!(s, code, "{body}: {err}");
        assert!(err["error_code"].as_str().is_some(), "{err}");
    }
    let (s, err) = a
        .post("/webhooks/deregister", json!({"url": "gopher://x/"}))
        .await;
    assert_eq!(
        (s, err["error_code"].as_str()),
        (400, Some("ERR_INVALID_REQUEST"))
    );
    let (_, list) = a.get("/webhooks").await;
    assert_eq!(list["count"], 0, "nothing refused was registered: {list}");

    let cap = acp_relay::node::webhooks::MAX_WEBHOOKS;
    for i in 0..cap {
        register(&a, &format!("http://127.0.0.1:9/hook{i}")).await;
    }
    let (s, err) = a
        .post(
            "/webhooks/register",
            json!({"url": "http://127.0.0.1:9/one-more"}),
        )
        .await;
    assert_eq!(s, 400, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("deregister one first"),
        "{err}"
    );
    // The same URL again is still fine at the cap (nothing new).
    let again = register(&a, "http://127.0.0.1:9/hook0").await;
    assert_eq!(again["total"], cap);
    a.stop().await;
}

#[tokio::test]
async fn peer_singular_path_answers_as_peers() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    let id = connect(&a, &b).await;
    let (s1, one) = a.get(&format!("/peers/{id}")).await;
    let (s2, same) = a.get(&format!("/peer/{id}")).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(one["id"], same["id"]);
    assert_eq!(one["agent_name"], same["agent_name"]);
    let (_, by_name) = a.get("/peer/beta").await;
    assert_eq!(by_name["id"], id.as_str());
    let (s, err) = a.get("/peer/peer_999").await;
    assert_eq!(
        (s, err["error_code"].as_str()),
        (404, Some("ERR_NOT_FOUND"))
    );
    // `/peer/verify` keeps its own meaning.
    let (s, verify) = a.get("/peer/verify").await;
    assert_eq!(s, 200, "{verify}");
    assert!(verify.get("limits").is_none(), "not a peer entry: {verify}");
    a.stop().await;
    b.stop().await;
}
