//! Identity between real nodes and hand-driven peers: a stable did across restarts, signed
//! cards and frames verified between two nodes, tampered cards and frames refused, a key
//! pinned on first contact and a key change refused until the user accepts it, and a link
//! naming the host's key refusing an impostor that holds the right token.

mod common;

use std::time::Duration;

use acp_relay::wire::identity::Identity;
use common::{Lab, SseReader, TestNode, connect, eventually, free_port};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A card as a peer signs it.
fn signed_card(id: &Identity, name: &str) -> Value {
    let mut card = json!({"name": name, "capabilities": {}, "identity": id.card_block(&[])});
    id.sign_card(&mut card);
    card
}

async fn next_frame(ws: &mut Ws, secs: u64) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                return None;
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Dials `node` as a hand-driven peer presenting `card`; returns the socket and the host's
/// first frame.
async fn dial_as(node: &TestNode, card: &Value) -> (Ws, Value) {
    let url = format!(
        "ws://127.0.0.1:{}/{}",
        node.server.ws_addr.port(),
        node.server.node.token()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("dial");
    ws.send(Message::text(
        json!({"type": "acp.agent_card", "message_id": "card_1", "card": card}).to_string(),
    ))
    .await
    .unwrap();
    let first = next_frame(&mut ws, 10)
        .await
        .expect("the host's first frame");
    (ws, first)
}

/// Dials `node` presenting `card` and returns the code of the refusal that follows the
/// host's card (the host sends its card first, then reads ours).
async fn refusal(node: &TestNode, card: &Value) -> Value {
    let (mut ws, first) = dial_as(node, card).await;
    assert_eq!(first["type"], "acp.agent_card", "{first}");
    let frame = next_frame(&mut ws, 10).await.expect("a refusal");
    assert_eq!(frame["type"], "error", "{frame}");
    frame["code"].clone()
}

fn message(id: &str, text: &str) -> Value {
    json!({"type": "acp.message", "message_id": id, "role": "user", "from": "fake",
           "parts": [{"type": "text", "content": text}]})
}

fn signed(id: &Identity, mut frame: Value) -> String {
    id.sign_frame(frame.as_object_mut().unwrap());
    frame.to_string()
}

async fn inbound(node: &TestNode) -> Vec<Value> {
    let (_, list) = node.get("/messages?direction=inbound&limit=100").await;
    list["messages"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn the_did_is_stable_across_restarts_and_published() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    let (_, status) = a.get("/status").await;
    let did = status["did"].as_str().unwrap().to_owned();
    assert!(did.starts_with("did:acp:"), "{status}");
    assert!(a.link().ends_with(&format!("?did={did}")), "{}", a.link());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(a.dir.join("identity.json")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    // The card is signed and verifies; the DID document and the JWK Set name the same key.
    let (_, card) = a.get("/.well-known/acp.json").await;
    assert_eq!(card["self"]["identity"]["did"], did);
    assert_eq!(card["self"]["capabilities"]["card_sig"], true);
    let (s, check) = a.post("/verify/card", card["self"].clone()).await;
    assert_eq!((s, check["valid"].clone()), (200, json!(true)), "{check}");
    let (_, me) = a.get("/verify/card").await;
    assert_eq!(me["self_verification"]["valid"], true);
    let (_, doc) = a.get("/.well-known/did.json").await;
    assert_eq!(doc["alsoKnownAs"][0], did);
    assert!(doc["id"].as_str().unwrap().starts_with("did:key:z6Mk"));
    let (_, jwks) = a.get("/.well-known/jwks.json").await;
    assert_eq!(
        format!("did:acp:{}", jwks["keys"][0]["x"].as_str().unwrap()),
        did
    );
    // Nothing served contains the private key.
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(a.dir.join("identity.json")).unwrap())
            .unwrap();
    let secret = file["private_key"].as_str().unwrap().to_owned();
    for path in [
        "/status",
        "/.well-known/acp.json",
        "/.well-known/did.json",
        "/.well-known/jwks.json",
    ] {
        let (_, body) = a.get(path).await;
        assert!(!body.to_string().contains(&secret), "{path} leaks the key");
    }
    let dir = a.stop().await;
    let a = common::start_with(Config::ephemeral("a", dir)).await;
    let (_, status) = a.get("/status").await;
    assert_eq!(status["did"], did, "same did after a restart");
}

use acp_relay::Config;

#[tokio::test]
async fn two_nodes_verify_each_others_cards_and_frames() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    let b = lab.start("b").await;
    let (_, sa) = a.get("/status").await;
    let (_, sb) = b.get("/status").await;
    connect(&a, &b).await;
    a.send_text("hello b", json!({})).await;
    b.send_text("hello a", json!({})).await;
    for (node, other) in [(&a, &sb), (&b, &sa)] {
        eventually(10, "a message arrives", || async {
            !inbound(node).await.is_empty()
        })
        .await;
        let msgs = inbound(node).await;
        let m = &msgs[0];
        assert_eq!(m["raw"]["_ed25519_verified"], true, "{m}");
        let peer = &node.get("/peers").await.1["peers"][0];
        assert_eq!(peer["verified"], true, "{peer}");
        assert_eq!(peer["did"], other["did"]);
        let (_, pv) = node.get("/peer/verify").await;
        assert_eq!(pv["verified"], true, "{pv}");
    }
    // The dialler made the host prove its key (its link names it).
    let host = &a.get("/peers").await.1["peers"][0];
    assert_eq!(host["identity"]["proven"], true, "{host}");
}

#[tokio::test]
async fn tampered_cards_and_frames_are_refused() {
    let lab = Lab::new();
    let host = lab.start("host").await;
    let me = Identity::generate();

    // A card changed after signing fails verification, and is refused at connect.
    let mut card = signed_card(&me, "mallory");
    card["name"] = json!("alice");
    let (s, check) = host.post("/verify/card", card.clone()).await;
    assert_eq!((s, check["valid"].clone()), (200, json!(false)), "{check}");
    assert_eq!(refusal(&host, &card).await, "invalid_card_signature");
    assert!(host.peer_named("alice").await.is_null());

    // An honest card gets in; signed frames are verified, tampered ones refused.
    let (mut ws, first) = dial_as(&host, &signed_card(&me, "alice")).await;
    assert_eq!(first["type"], "acp.agent_card");
    ws.send(Message::text(signed(&me, message("m1", "signed"))))
        .await
        .unwrap();
    let tampered = signed(&me, message("m2", "original")).replace("original", "changed");
    ws.send(Message::text(tampered)).await.unwrap();
    let stranger = Identity::generate();
    ws.send(Message::text(signed(&stranger, message("m3", "other key"))))
        .await
        .unwrap();
    let mut forged = message("m4", "unsigned, claims a mark");
    forged["_ed25519_verified"] = json!(true);
    ws.send(Message::text(forged.to_string())).await.unwrap();
    eventually(10, "m1 and m4 stored", || async {
        inbound(&host).await.len() == 2
    })
    .await;
    // Refusals are counted before the later frames are read.
    let (_, status) = host.get("/status").await;
    assert_eq!(status["frames_rejected"], 2, "{status}");
    let msgs = inbound(&host).await;
    let by_id = |id: &str| {
        msgs.iter()
            .find(|m| m["message_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id("m1")["raw"]["_ed25519_verified"], true);
    assert!(
        by_id("m4")["raw"].get("_ed25519_verified").is_none(),
        "a forged mark is dropped"
    );
}

#[tokio::test]
async fn a_pinned_key_change_is_refused_until_the_user_accepts_it() {
    let lab = Lab::new();
    let host = lab.start("host").await;
    let mut sse = SseReader::open(&format!("{}/stream", host.url), None).await;
    let k1 = Identity::generate();
    let k2 = Identity::generate();
    let (mut ws, _) = dial_as(&host, &signed_card(&k1, "alice")).await;
    ws.close(None).await.unwrap();
    eventually(10, "alice pinned and gone", || async {
        let p = host.peer_named("alice").await;
        p["identity"]["pinned_did"] == k1.did_acp() && p["connected"] == false
    })
    .await;

    // Another key under the same name: refused, shown, logged, announced.
    assert_eq!(
        refusal(&host, &signed_card(&k2, "alice")).await,
        "key_mismatch"
    );
    let p = host.peer_named("alice").await;
    assert_eq!(
        p["identity"]["key_change"]["presented_did"],
        k2.did_acp(),
        "{p}"
    );
    assert!(
        p["last_error"].as_str().unwrap().contains("accept-key"),
        "{p}"
    );
    sse.wait_for(10, "key_mismatch event", |e| {
        e.data["event"] == "key_mismatch"
    })
    .await;
    // An unsigned card does not get around the pin either.
    assert_eq!(
        refusal(&host, &json!({"name": "alice"})).await,
        "key_mismatch"
    );
    assert_eq!(
        refusal(&host, &signed_card(&k2, "alice")).await,
        "key_mismatch"
    );

    // Accepting names the key checked: a wrong one is refused, the right one pins it.
    let id = p["id"].as_str().unwrap().to_owned();
    let (s, e) = host
        .post(
            &format!("/peers/{id}/accept-key"),
            json!({"did": k1.did_acp()}),
        )
        .await;
    assert_eq!(
        (s, e["error_code"].clone()),
        (409, json!("ERR_KEY_MISMATCH")),
        "{e}"
    );
    let (s, e) = host
        .post(
            &format!("/peers/{id}/accept-key"),
            json!({"jwk": {"kty": "OKP"}}),
        )
        .await;
    assert_eq!(
        (s, e["error_code"].clone()),
        (400, json!("ERR_INVALID_REQUEST")),
        "{e}"
    );
    let (s, ok) = host
        .post(
            &format!("/peers/{id}/accept-key"),
            json!({"did": k2.did_key()}),
        )
        .await;
    assert_eq!(s, 200, "{ok}");
    assert_eq!(ok["pinned_did"], k2.did_acp());
    let (mut ws, first) = dial_as(&host, &signed_card(&k2, "alice")).await;
    assert_eq!(first["type"], "acp.agent_card", "{first}");
    ws.send(Message::text(signed(&k2, message("after", "hi"))))
        .await
        .unwrap();
    eventually(10, "stored, verified", || async {
        inbound(&host)
            .await
            .iter()
            .any(|m| m["message_id"] == "after" && m["raw"]["_ed25519_verified"] == true)
    })
    .await;
    let (s, _) = host
        .post(&format!("/peers/{id}/accept-key"), json!({}))
        .await;
    assert_eq!(s, 400, "nothing left to accept");
}

#[tokio::test]
async fn a_dialler_refuses_a_host_whose_key_changed_and_redials_once_accepted() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    let port = free_port();
    let mut cfg = lab.config("b");
    cfg.port = port;
    let b = common::start_with(cfg.clone()).await;
    // A link without the key: the key is pinned on first contact.
    let bare = b.link().split('?').next().unwrap().to_owned();
    let (s, r) = a.post("/peers/connect", json!({"link": bare})).await;
    assert_eq!(s, 200, "{r}");
    eventually(10, "pinned", || async {
        a.get("/peers").await.1["peers"][0]["verified"] == true
    })
    .await;
    // B comes back with another identity (same token, same port).
    b.stop().await;
    cfg.identity_file = Some(lab.root.path().join("b-new-identity.json"));
    let b = common::start_with(cfg).await;
    let new_did = b.get("/status").await.1["did"].clone();
    eventually(40, "refused for the key change", || async {
        let p = &a.get("/peers").await.1["peers"][0];
        p["identity"]["key_change"]["presented_did"] == new_did && p["connected"] == false
    })
    .await;
    // Accepted through connect (what acp_connect's accept_new_key does).
    let (s, r) = a
        .post(
            "/peers/connect",
            json!({"link": bare, "accept_new_key": true}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    eventually(20, "connected and verified with the new key", || async {
        let p = &a.get("/peers").await.1["peers"][0];
        p["verified"] == true && p["did"] == new_did
    })
    .await;
}

/// A host that holds the right token but not the key: it replays the real node's card.
async fn impostor(card: Value) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let card = card.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let frame = json!({"type": "acp.agent_card", "message_id": "card_x", "card": card});
                let _ = ws.send(Message::text(frame.to_string())).await;
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    port
}

#[tokio::test]
async fn a_link_with_the_key_refuses_an_impostor_holding_the_token() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    let b = lab.start("b").await;
    let (_, card) = b.get("/.well-known/acp.json").await;
    let did = b.get("/status").await.1["did"].as_str().unwrap().to_owned();
    let port = impostor(card["self"].clone()).await;
    let link = format!("acp://127.0.0.1:{port}/{}?did={did}", b.server.node.token());
    let (s, r) = a.post("/peers/connect", json!({"link": link})).await;
    assert_eq!(s, 200, "{r}");
    eventually(30, "refused: no proof", || async {
        let p = &a.get("/peers").await.1["peers"][0];
        p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("did not prove"))
    })
    .await;
    assert_eq!(a.get("/peers").await.1["peers"][0]["connected"], false);
    assert_eq!(a.get("/peers").await.1["active"], 0);
    let error = a.get("/peers").await.1["peers"][0]["last_error"].clone();
    assert!(
        error.as_str().unwrap().contains("accept_new_key"),
        "names the way to connect anyway: {error}"
    );
    // Waiving the link's key does not waive the proof a card that claims to answer
    // challenges owes: the replayed card is still refused.
    let (s, r) = a
        .post(
            "/peers/connect",
            json!({"link": link, "accept_new_key": true}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    eventually(
        30,
        "still refused: no proof, and nothing left to waive",
        || async {
            let p = &a.get("/peers").await.1["peers"][0];
            p["identity"]["link_key_waived"] == true
                && p["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("did not prove") && !e.contains("accept_new_key"))
        },
    )
    .await;
    assert_eq!(a.get("/peers").await.1["active"], 0);

    // An impostor with a card of its own is refused as not the key the link names.
    let other = Identity::generate();
    let port = impostor(signed_card(&other, "b")).await;
    let link = format!("acp://127.0.0.1:{port}/{}?did={did}", b.server.node.token());
    a.post("/peers/connect", json!({"link": link})).await;
    eventually(30, "refused: another key", || async {
        let (_, peers) = a.get("/peers").await;
        peers["peers"].as_array().unwrap().iter().any(|p| {
            p["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("not the one its link names"))
        })
    })
    .await;
}

#[tokio::test]
async fn delegation_entries_and_bad_identity_input() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    let (s, r) = a
        .post(
            "/identity/delegate",
            json!({"delegator_did": "did:web:example.org", "scope": ["send"], "expires_at": 4102444800u64}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let entry = r["entry"].clone();
    assert_eq!(entry["expires_at"], json!(4102444800.0));
    let (_, v) = a
        .post("/identity/delegation/verify", json!({"entry": entry}))
        .await;
    assert_eq!(v["valid"], true, "{v}");
    let mut bad = entry.clone();
    bad["scope"] = json!(["everything"]);
    let (_, v) = a
        .post("/identity/delegation/verify", json!({"entry": bad}))
        .await;
    assert_eq!(v["valid"], false, "{v}");
    let (_, chain) = a.get("/identity/delegation").await;
    assert_eq!(chain["chain"]["count"], 1);
    let (_, card) = a.get("/.well-known/acp.json").await;
    assert_eq!(card["self"]["capabilities"]["delegation_chain"], true);
    assert_eq!(
        card["self"]["identity"]["delegation"][0]["sig"],
        entry["sig"]
    );

    for (path, body) in [
        ("/identity/delegate", json!({"delegator_did": "alice"})),
        ("/identity/delegate", json!({"delegator_did": 7})),
        (
            "/identity/delegate",
            json!({"delegator_did": "did:web:x", "scope": [1]}),
        ),
        (
            "/identity/delegate",
            json!({"delegator_did": "did:web:x", "expires_at": "soon"}),
        ),
        ("/identity/delegation/verify", json!({})),
        ("/identity/delegation/verify", json!({"entry": {"sig": 5}})),
        (
            "/identity/delegation/verify",
            json!({"entry": {"delegatee_did": "did:acp:AAAA", "delegator_did": "did:x:y", "scope": [], "expires_at": 1, "sig": "AAAA"}}),
        ),
        ("/verify/card", json!({"x": 1})),
        (
            "/verify/card",
            json!({"name": "x", "identity": {"public_key": "not-a-key", "card_sig": "AAAA"}}),
        ),
        (
            "/verify/card",
            json!({"name": "x", "identity": {"public_key": 5}}),
        ),
        ("/verify/card", json!({"name": "x", "identity": "ed25519"})),
    ] {
        let (s, e) = a.post(path, body.clone()).await;
        assert_eq!(s, 400, "{path} {body}: {e}");
        assert_eq!(e["error_code"], "ERR_INVALID_REQUEST", "{e}");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (s, e) = a
        .post_raw("/verify/card", "{\"name\": ", "application/json")
        .await;
    assert_eq!(s, 400, "{e}");
    let (s, _) = a.get("/peer/verify").await;
    assert_eq!(s, 404);
    let (s, e) = a.post("/peers/nobody/accept-key", json!({})).await;
    assert_eq!(s, 404, "{e}");
    let (s, e) = a
        .post(
            "/peers/connect",
            json!({"link": "acp://127.0.0.1:9/tok_a?did=did:acp:AAAA"}),
        )
        .await;
    assert_eq!(s, 400, "{e}");
}
