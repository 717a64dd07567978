//! The card's `extensions` and `availability` blocks through their own endpoints, against
//! real nodes: register / unregister extensions (shapes, checks, the card, a peer's view,
//! a restart) and the availability heartbeat (stamps, a schedule's next time, checks).

mod common;

use common::{Lab, connect, eventually, start_with};
use serde_json::{Value, json};

fn uris(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["uri"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn extensions_register_show_in_the_card_reach_peers_and_survive_a_restart() {
    let lab = Lab::new();
    let mut ca = lab.config("alpha");
    ca.secret = Some("shared-secret".into());
    let mut cb = lab.config("beta");
    cb.secret = Some("shared-secret".into());
    let a = start_with(ca.clone()).await;
    let b = start_with(cb).await;
    connect(&a, &b).await;

    let (s, empty) = a.get("/extensions").await;
    assert_eq!(s, 200);
    assert_eq!(empty, json!({"extensions": [], "count": 0}));
    let (_, card) = a.get("/card").await;
    assert_eq!(
        uris(&card["extensions"]),
        ["acp:ext:hmac-v1"],
        "built in with --secret"
    );
    assert_eq!(card["capabilities"]["extensions"], false);

    let (s, r) = a
        .post(
            "/extensions/register",
            json!({"uri": "https://example.com/ext/billing", "required": true, "params": {"tier": "pro"}}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r,
        json!({"ok": true, "extensions": [{"uri": "https://example.com/ext/billing", "required": true, "params": {"tier": "pro"}}]})
    );
    let (s, r) = a
        .post(
            "/extensions/register",
            json!({"uri": "acp:ext:summaries-v2"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    // Registering a URI again replaces its entry (and moves it last).
    let (_, r) = a
        .post(
            "/extensions/register",
            json!({"uri": "https://example.com/ext/billing"}),
        )
        .await;
    assert_eq!(
        r["extensions"],
        json!([{"uri": "acp:ext:summaries-v2", "required": false},
               {"uri": "https://example.com/ext/billing", "required": false}])
    );
    let (_, list) = a.get("/extensions").await;
    assert_eq!(list["count"], 2);
    let (_, card) = a.get("/card").await;
    assert_eq!(
        uris(&card["extensions"]),
        [
            "acp:ext:hmac-v1",
            "acp:ext:summaries-v2",
            "https://example.com/ext/billing"
        ]
    );
    assert_eq!(card["capabilities"]["extensions"], true);
    assert_eq!(card["endpoints"]["extensions"], "/extensions");

    // The peer gets the new card without a reconnect.
    eventually(10, "beta sees alpha's extensions", || async {
        let peer = b.peer_named("alpha").await;
        peer["agent_card"]["extensions"]
            .to_string()
            .contains("acp:ext:summaries-v2")
    })
    .await;

    let (s, r) = a
        .post(
            "/extensions/unregister",
            json!({"uri": "acp:ext:summaries-v2"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["removed"], 1);
    assert_eq!(uris(&r["extensions"]), ["https://example.com/ext/billing"]);
    let (_, r) = a
        .post(
            "/extensions/unregister",
            json!({"uri": "acp:ext:summaries-v2"}),
        )
        .await;
    assert_eq!(
        r["removed"], 0,
        "unknown URI: nothing removed, not an error"
    );

    a.stop().await;
    let a = start_with(ca).await;
    let (_, list) = a.get("/extensions").await;
    assert_eq!(
        uris(&list["extensions"]),
        ["https://example.com/ext/billing"],
        "{list}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn bad_extension_bodies_are_refused_and_change_nothing() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    for (path, body, why) in [
        ("/extensions/register", json!({}), "'uri' is required"),
        (
            "/extensions/register",
            json!({"uri": 7}),
            "must be a string",
        ),
        ("/extensions/register", json!({"uri": ""}), "non-empty"),
        (
            "/extensions/register",
            json!({"uri": "billing"}),
            "http(s) URL",
        ),
        (
            "/extensions/register",
            json!({"uri": "ftp://x.example/e"}),
            "http(s) URL",
        ),
        (
            "/extensions/register",
            json!({"uri": "acp:ext:billing"}),
            "acp:ext:<name>-v<version>",
        ),
        (
            "/extensions/register",
            json!({"uri": "acp:ext:a-v1", "required": "yes"}),
            "true or false",
        ),
        (
            "/extensions/register",
            json!({"uri": "acp:ext:a-v1", "params": "x"}),
            "JSON object",
        ),
        (
            "/extensions/register",
            json!({"uri": "acp:ext:a-v1", "name": "x"}),
            "unknown field",
        ),
        ("/extensions/unregister", json!({}), "'uri' is required"),
        (
            "/extensions/unregister",
            json!({"uri": false}),
            "must be a string",
        ),
    ] {
        let (s, err) = a.post(path, body.clone()).await;
        assert_eq!(s, 400, "{path} {body}: {err}");
        assert_eq!(err["error_code"], "ERR_INVALID_REQUEST");
        assert!(
            err["error"].as_str().unwrap().contains(why),
            "{body}: {err}"
        );
    }
    let (s, err) = a
        .post_raw("/extensions/register", "[]", "application/json")
        .await;
    assert_eq!(
        (s, err["error_code"].as_str()),
        (400, Some("ERR_INVALID_REQUEST"))
    );
    let (_, list) = a.get("/extensions").await;
    assert_eq!(list["count"], 0);
    let (s, _) = a.post("/extensions", json!({})).await;
    assert_eq!(s, 405);
    a.stop().await;
}

#[tokio::test]
async fn the_heartbeat_stamps_last_active_and_a_schedule_gives_the_next_time() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let (_, avail) = a.get("/availability").await;
    assert_eq!(
        avail["availability"],
        json!({}),
        "always available until told otherwise"
    );
    assert_eq!(avail["mode"], "persistent");

    let (s, hb) = a.post("/availability/heartbeat", json!({})).await;
    assert_eq!(s, 200, "{hb}");
    assert_eq!(hb["ok"], true);
    let first = hb["last_active_at"].as_str().unwrap().to_owned();
    assert!(first.ends_with('Z'), "{first}");
    assert_eq!(hb["next_active_at"], Value::Null);
    assert_eq!(hb["availability"]["last_active_at"], first.as_str());

    let (s, hb) = a
        .post(
            "/availability/heartbeat",
            json!({"mode": "cron", "schedule": "0 */4 * * *", "timezone": "UTC"}),
        )
        .await;
    assert_eq!(s, 200, "{hb}");
    let last = hb["last_active_at"].as_str().unwrap();
    assert!(last >= first.as_str());
    let next = hb["next_active_at"].as_str().unwrap().to_owned();
    assert!(
        next.ends_with(":00:00Z") && next.as_str() > last,
        "{next} after {last}"
    );
    let hour: u32 = next[11..13].parse().unwrap();
    assert_eq!(hour % 4, 0, "{next}");

    let (_, avail) = a.get("/availability").await;
    assert_eq!(avail["mode"], "cron");
    assert_eq!(avail["has_schedule"], true);
    assert_eq!(avail["availability"]["next_active_at"], next.as_str());
    let (_, card) = a.get("/card").await;
    assert_eq!(card["availability"]["schedule"], "0 */4 * * *");
    assert_eq!(card["availability"]["last_active_at"], last);
    assert_eq!(card["capabilities"]["availability"], true);
    assert_eq!(card["capabilities"]["availability_schedule"], true);
    assert_eq!(card["endpoints"]["heartbeat"], "/availability/heartbeat");

    for (body, why) in [
        (json!({"mode": "sometimes"}), "mode must be one of"),
        (json!({"schedule": "every hour"}), "cron"),
        (json!({"schedule": "61 * * * *"}), "minute"),
        (json!({"schedule": 5}), "cron expression"),
        (
            json!({"last_active_at": "2020-01-01T00:00:00Z"}),
            "stamped by the heartbeat",
        ),
        (json!({"colour": "red"}), "unknown availability fields"),
    ] {
        let (s, err) = a.post("/availability/heartbeat", body.clone()).await;
        assert_eq!(s, 400, "{body}: {err}");
        assert_eq!(err["error_code"], "ERR_INVALID_REQUEST");
        assert!(
            err["error"].as_str().unwrap().contains(why),
            "{body}: {err}"
        );
    }
    // PATCH checks a schedule the same way.
    let (s, err) = a
        .request(
            reqwest::Method::PATCH,
            "/card",
            Some(json!({"availability": {"schedule": "* * * *"}})),
        )
        .await;
    assert_eq!(s, 400, "{err}");
    let (_, still) = a.get("/availability").await;
    assert_eq!(
        still["availability"]["schedule"], "0 */4 * * *",
        "nothing changed"
    );

    // The stamp is persisted with the card.
    let config = lab.config("alpha");
    a.stop().await;
    let a = start_with(config).await;
    let (_, avail) = a.get("/availability").await;
    assert_eq!(avail["availability"]["last_active_at"], last);
    a.stop().await;
}
