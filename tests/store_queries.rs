//! History queries on a store with more messages than `total` counts: `/messages` and
//! `/context/{id}/messages` paging (`has_more`, capped `total` with `total_exact`), ordering
//! (receive time, `server_seq` with ties by receive time), messages without a `server_seq`,
//! and `/recv` and the unread count restored at start-up.

mod common;

use acp_relay::node::store::{MessageRow, Store, WriteOp};
use common::{Lab, start_with};
use serde_json::{Value, json};

/// Messages in the generated store (more than the 1,000 that `total` counts at most).
const N: usize = 2600;
/// Inbound messages before this index are already read by `/recv`.
const UNREAD_FROM: usize = 2500;

/// The generated message `i`: even = outbound, odd = inbound; every 100th (from 3) in the
/// conversation `small`, the rest in `big`; inbound ones in `small` before 1000 carry no
/// `server_seq`; an outbound and the next inbound share a `server_seq`.
fn row(i: usize) -> MessageRow {
    let outbound = i.is_multiple_of(2);
    let context_id = if i % 100 == 3 { "small" } else { "big" };
    let server_seq = (!(i % 100 == 3 && i < 1000)).then_some((i / 2 + 1) as i64);
    let role = if i.is_multiple_of(3) { "agent" } else { "user" };
    let message_id = format!("msg_{i:06}");
    let task_id = [10, 20, 30].contains(&i).then(|| "t1".to_owned());
    let sender = if outbound { "store" } else { "remote" };
    let mut frame = json!({
        "type": "acp.message",
        "message_id": message_id,
        "ts": "2026-01-01T00:00:00.000000Z",
        "from": sender,
        "role": role,
        "parts": [{"type": "text", "content": format!("message {i}")}],
        "context_id": context_id,
    });
    if let Some(seq) = server_seq {
        frame["server_seq"] = json!(seq);
    }
    MessageRow {
        message_id,
        direction: if outbound { "outbound" } else { "inbound" },
        peer_id: Some("peer_001".into()),
        sender: Some(sender.into()),
        role: role.into(),
        task_id,
        context_id: Some(context_id.into()),
        server_seq,
        ts: "2026-01-01T00:00:00.000000Z".into(),
        received_at: 1_780_000_000.0 + i as f64 * 0.001,
        consumed: outbound || i < UNREAD_FROM,
        frame,
        local_seq: 0,
    }
}

/// A node started on a store holding the `N` generated messages.
async fn node_on_generated_store(lab: &Lab, name: &str) -> common::TestNode {
    let mut config = lab.config(name);
    // The rows are dated months back: keep them (the default retention removes messages
    // older than 30 days).
    config.retention.retain_days = 0;
    {
        let store = Store::open(&config.data_dir.join("node.db")).expect("store opens");
        for i in 0..N {
            store.write(WriteOp::InsertMessage(Box::new(row(i)), None));
        }
        store.flush().await.expect("flush");
        store.close().await;
    }
    start_with(config).await
}

fn ids(v: &Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect()
}

fn names(rows: impl IntoIterator<Item = usize>) -> Vec<String> {
    rows.into_iter().map(|i| format!("msg_{i:06}")).collect()
}

#[tokio::test]
async fn paging_totals_and_order_on_a_large_store() {
    let lab = Lab::new();
    let node = node_on_generated_store(&lab, "big").await;

    // Newest first; more than the cap match: total is a lower bound and says so.
    let (status, page) = node.get("/messages?limit=10").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), names((N - 10..N).rev()));
    assert_eq!(page["total"], 1000);
    assert_eq!(page["total_exact"], false);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["next_offset"], 10);

    // Past the cap the count grows with the offset, never below what the pages showed.
    let (_, page) = node.get("/messages?limit=5&offset=2000").await;
    assert_eq!(ids(&page), names((N - 2005..N - 2000).rev()));
    assert_eq!(page["total"], 2600, "{page}");
    assert_eq!(page["total_exact"], true);
    let (_, page) = node.get("/messages?limit=5&offset=1500").await;
    assert_eq!(page["total"], 2500, "{page}");
    assert_eq!(page["total_exact"], false);

    // The last page: exactly `limit` rows left means no more.
    let (_, page) = node.get("/messages?limit=5&offset=2595").await;
    assert_eq!(ids(&page), names((0..5).rev()));
    assert_eq!(page["has_more"], false);
    assert_eq!(page["next_offset"], 2600);
    let (_, page) = node.get("/messages?limit=5&offset=2600").await;
    assert!(ids(&page).is_empty());
    assert_eq!(page["has_more"], false);
    assert_eq!(page["next_offset"], 2600);

    // Few matches: an exact total.
    let (_, page) = node.get("/messages?task_id=t1&sort=asc").await;
    assert_eq!(ids(&page), names([10, 20, 30]));
    assert_eq!(page["total"], 3);
    assert_eq!(page["total_exact"], true);
    assert_eq!(page["has_more"], false);

    // Filters no index serves still page correctly.
    let agent_inbound: Vec<usize> = (0..N)
        .filter(|i| i % 2 == 1 && i.is_multiple_of(3))
        .collect();
    let (_, page) = node
        .get("/messages?role=agent&direction=inbound&limit=100")
        .await;
    assert_eq!(
        ids(&page),
        names(agent_inbound.iter().rev().take(100).copied())
    );
    assert_eq!(page["total"], agent_inbound.len().min(1000));
    assert_eq!(page["total_exact"], agent_inbound.len() < 1000);

    // A conversation in receive order, both ways.
    let big: Vec<usize> = (0..N).filter(|i| i % 100 != 3).collect();
    let (_, page) = node
        .get("/messages?context_id=big&sort=asc&limit=7&offset=3")
        .await;
    assert_eq!(ids(&page), names(big[3..10].iter().copied()));
    assert_eq!(page["has_more"], true);
    let (_, page) = node.get("/messages?context_id=small&limit=100").await;
    assert_eq!(ids(&page), names((3..N).step_by(100).rev()));
    assert_eq!(page["total"], 26);
    assert_eq!(page["has_more"], false);

    // /context: server_seq order, ties by receive time; messages without a server_seq count
    // as 0, so since_seq (≥ 0) never returns them.
    let mut by_seq: Vec<usize> = big.clone();
    by_seq.sort_by_key(|&i| (row(i).server_seq.unwrap(), i));
    let (_, page) = node.get("/context/big/messages?limit=9").await;
    assert_eq!(ids(&page), names(by_seq[..9].iter().copied()));
    assert_eq!(page["count"], 9);
    assert_eq!(page["total"], 1000);
    assert_eq!(page["total_exact"], false);
    assert_eq!(page["has_more"], true);
    let (_, page) = node.get("/context/big/messages?limit=9&sort=desc").await;
    assert_eq!(ids(&page), names(by_seq.iter().rev().take(9).copied()));
    // Paging with since_seq: the tail of the conversation.
    let since = row(by_seq[by_seq.len() - 12]).server_seq.unwrap();
    let tail: Vec<usize> = by_seq
        .iter()
        .copied()
        .filter(|&i| row(i).server_seq.unwrap() > since)
        .collect();
    let (_, page) = node
        .get(&format!(
            "/context/big/messages?since_seq={since}&limit=200"
        ))
        .await;
    assert_eq!(ids(&page), names(tail.iter().copied()));
    assert_eq!(page["total"], tail.len());
    assert_eq!(page["total_exact"], true);
    assert_eq!(page["has_more"], false);
    let (_, page) = node
        .get(&format!(
            "/context/big/messages?since_seq={since}&limit={}",
            tail.len()
        ))
        .await;
    assert_eq!(page["has_more"], false, "exactly limit left: {page}");
    let (_, page) = node
        .get(&format!(
            "/context/big/messages?since_seq={since}&limit={}",
            tail.len() - 1
        ))
        .await;
    assert_eq!(page["has_more"], true);
    let with_seq: Vec<usize> = (3..N).step_by(100).filter(|&i| i >= 1000).collect();
    let (_, page) = node.get("/context/small/messages").await;
    assert_eq!(ids(&page), names(with_seq.iter().copied()));
    assert_eq!(page["total"], with_seq.len());

    // Start-up counted the unread inbound messages; /recv hands them out oldest first.
    let unread: Vec<usize> = (UNREAD_FROM..N).filter(|i| i % 2 == 1).collect();
    let (_, got) = node.get("/recv?limit=1000").await;
    assert_eq!(got["count"], unread.len(), "{got}");
    let got_ids: Vec<String> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got_ids, names(unread));
    assert_eq!(got["remaining"], 0);

    // /history: the newest inbound messages, oldest first.
    let (_, hist) = node.get("/history?limit=3").await;
    let hist_ids: Vec<&str> = hist["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(hist_ids, ["msg_002595", "msg_002597", "msg_002599"]);
    assert_eq!(hist["total"], N / 2);
    node.stop().await;
}

/// `GET /messages?q=`: full-text search over the same store, with the filters, orders and
/// paging of `/messages`, and refusals that say what to change.
#[tokio::test]
async fn full_text_search_with_filters_orders_and_paging() {
    let lab = Lab::new();
    let node = node_on_generated_store(&lab, "search").await;

    // Every message matches a common word: newest first, the total capped like /messages.
    let (status, page) = node.get("/messages?q=MESSAGE&limit=3").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), names([N - 1, N - 2, N - 3]));
    assert_eq!(page["total"], 1000);
    assert_eq!(page["total_exact"], false);
    assert_eq!(page["has_more"], true);
    let (_, page) = node.get("/messages?q=message&limit=3&offset=3").await;
    assert_eq!(ids(&page), names([N - 4, N - 5, N - 6]));

    // A phrase, OR, a prefix and an exclusion.
    let (_, page) = node.get("/messages?q=%22message%201234%22").await;
    assert_eq!(ids(&page), names([1234]));
    assert_eq!(page["total"], 1);
    assert_eq!(page["total_exact"], true);
    let (_, page) = node.get("/messages?q=42%20OR%201234").await;
    assert_eq!(ids(&page), names([1234, 42]));
    let (_, page) = node.get("/messages?q=42%20OR%201234&order=oldest").await;
    assert_eq!(ids(&page), names([42, 1234]));
    let (_, page) = node.get("/messages?q=42%20OR%201234&sort=asc").await;
    assert_eq!(ids(&page), names([42, 1234]), "sort=asc means oldest first");
    let (_, page) = node.get("/messages?q=259*&limit=100").await;
    assert_eq!(
        ids(&page),
        names((2590..2600).rev())
            .into_iter()
            .chain(names([259]))
            .collect::<Vec<_>>()
    );
    let (_, page) = node.get("/messages?q=259*%20-2599&limit=1").await;
    assert_eq!(ids(&page), names([2598]));

    // Combined with the filters of /messages.
    let (_, page) = node
        .get("/messages?q=message&context_id=small&limit=2")
        .await;
    assert_eq!(ids(&page), names([2503, 2403]));
    // (`small` and `t1` hold few messages: those are read filter first, each asked of the
    // index; `big` is read index first. Both plans give the same orders, paging and totals.)
    let (_, page) = node
        .get("/messages?q=message&context_id=small&order=oldest&limit=2&offset=1")
        .await;
    assert_eq!(ids(&page), names([103, 203]));
    assert_eq!(
        (page["total"].as_u64(), page["total_exact"].as_bool()),
        (Some(26), Some(true))
    );
    assert_eq!(
        (page["has_more"].as_bool(), page["next_offset"].as_u64()),
        (Some(true), Some(3))
    );
    let (_, page) = node
        .get("/messages?q=message&context_id=small&limit=5&offset=24")
        .await;
    assert_eq!(ids(&page), names([103, 3]));
    assert_eq!(page["has_more"], false);
    let (_, page) = node
        .get("/messages?q=message%20-2503&context_id=small&limit=1")
        .await;
    assert_eq!(ids(&page), names([2403]));
    let (_, page) = node.get("/messages?q=250*&context_id=small").await;
    assert_eq!(ids(&page), names([2503]));
    let (_, page) = node
        .get("/messages?q=1403%20OR%20message&context_id=small&order=rank&limit=2")
        .await;
    assert_eq!(
        ids(&page),
        names([1403, 2503]),
        "both words first, then newest"
    );
    let (_, page) = node
        .get("/messages?q=1404%20OR%20message&context_id=big&order=rank&limit=2")
        .await;
    assert_eq!(
        ids(&page),
        names([1404, N - 1]),
        "the same on the index-first plan"
    );
    let (_, page) = node.get("/messages?q=message&task_id=t1").await;
    assert_eq!(ids(&page), names([30, 20, 10]));
    let (_, page) = node
        .get("/messages?q=message&direction=inbound&role=agent&limit=2")
        .await;
    assert_eq!(ids(&page), names([2595, 2589]));
    let (_, page) = node.get("/messages?q=nothing_like_this").await;
    assert!(ids(&page).is_empty());
    assert_eq!(page["total"], 0);

    // Ranked: a message with both words before those with one.
    let (status, page) = node
        .get("/messages?q=1234%20OR%20message&order=rank&limit=1")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), names([1234]));

    // Refusals: 400 with a code and a reason, never a 5xx.
    for (query, says) in [
        ("q=%20%20", "no word"),
        ("q=%22open", "not closed"),
        ("q=-only", "only excluded"),
        ("q=a%20OR", "between two terms"),
        ("q=x&order=best", "order must be"),
        ("order=rank", "needs a search"),
    ] {
        let (status, body) = node.get(&format!("/messages?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error_code"], "ERR_INVALID_REQUEST", "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
    let long = "w".repeat(1001);
    let (status, _) = node.get(&format!("/messages?q={long}")).await;
    assert_eq!(status, 400);
}
