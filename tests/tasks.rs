//! Tasks across two real nodes: created on A, worked and completed by B, seen on both
//! sides, with illegal transitions refused; cancel, continue, wait and subscribe.

mod common;

use common::{Lab, SseReader, connect, eventually};
use serde_json::json;

#[tokio::test]
async fn task_created_on_a_completed_by_b() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    connect(&a, &b).await;

    let (s, created) = a
        .post("/tasks", json!({"role": "user", "parts": [{"type": "text", "content": "summarize"}], "delegate": true, "context_id": "ctxT"}))
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "submitted");
    assert_eq!(created["task"]["id"], id);

    // B learns about it from the task.delegate frame.
    eventually(5, "task on beta", || async {
        b.get(&format!("/tasks/{id}")).await.0 == 200
    })
    .await;
    let (_, on_b) = b.get(&format!("/tasks/{id}")).await;
    assert_eq!(on_b["status"], "submitted");
    assert_eq!(on_b["context_id"], "ctxT");

    let mut watch = SseReader::open(&format!("{}/tasks/{id}:subscribe", a.url), None).await;

    let (s, r) = b
        .post(&format!("/tasks/{id}:update"), json!({"status": "working"}))
        .await;
    assert_eq!(s, 200, "{r}");
    eventually(5, "working on alpha", || async {
        a.get(&format!("/tasks/{id}")).await.1["status"] == "working"
    })
    .await;

    let artifact = json!({"parts": [{"type": "text", "content": "the summary"}]});
    let (s, r) = b
        .post(
            &format!("/tasks/{id}/update"),
            json!({"status": "completed", "artifact": artifact}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    eventually(5, "completed on alpha", || async {
        a.get(&format!("/tasks/{id}")).await.1["status"] == "completed"
    })
    .await;
    let (_, on_a) = a.get(&format!("/tasks/{id}")).await;
    assert_eq!(on_a["artifacts"][0]["parts"][0]["content"], "the summary");

    // The subscription saw working, then completed, and then ended.
    let ev = watch
        .wait_for(5, "working status", |e| e.data["state"] == "working")
        .await;
    assert_eq!(ev.event.as_deref(), Some("acp.task.status"));
    watch
        .wait_for(5, "artifact", |e| {
            e.event.as_deref() == Some("acp.task.artifact")
        })
        .await;
    watch
        .wait_for(5, "completed status", |e| e.data["state"] == "completed")
        .await;
    assert!(
        watch.next(1).await.is_none(),
        "subscription ends after the terminal status"
    );

    // Illegal transitions are refused on both sides and change nothing.
    for node in [&a, &b] {
        let (s, err) = node
            .post(&format!("/tasks/{id}:update"), json!({"status": "working"}))
            .await;
        assert_eq!(s, 409, "{err}");
        assert_eq!(err["error_code"], "ERR_INVALID_REQUEST");
        assert_eq!(err["current_status"], "completed");
        assert_eq!(
            node.get(&format!("/tasks/{id}")).await.1["status"],
            "completed"
        );
    }
    let (s, _) = b
        .post(
            &format!("/tasks/{id}:update"),
            json!({"status": "submitted"}),
        )
        .await;
    assert_eq!(s, 409);

    // Lists and filters.
    let (_, list) = a.get("/tasks?status=completed").await;
    assert_eq!(list["total"], 1);
    let (_, list) = a.get("/tasks?status=working").await;
    assert_eq!(list["total"], 0);
    let (_, list) = a.get("/tasks?context_id=ctxT&offset=0").await;
    assert_eq!(list["tasks"][0]["id"], id);
}

#[tokio::test]
async fn message_with_create_task_registers_on_the_peer() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;
    let b = lab.start("beta").await;
    connect(&a, &b).await;
    let sent = a
        .send_text("please translate", json!({"create_task": true}))
        .await;
    let id = sent["task"]["id"].as_str().unwrap().to_owned();
    assert_eq!(sent["task"]["status"], "working");
    eventually(5, "peer task", || async {
        b.get(&format!("/tasks/{id}")).await.1["status"] == "working"
    })
    .await;
    let (_, t) = b.get(&format!("/tasks/{id}")).await;
    assert_eq!(t["from_peer"], true);
    let (s, _) = b
        .post(
            &format!("/tasks/{id}:update"),
            json!({"status": "failed", "error": "cannot"}),
        )
        .await;
    assert_eq!(s, 200);
    eventually(5, "failed on alpha", || async {
        a.get(&format!("/tasks/{id}")).await.1["status"] == "failed"
    })
    .await;
}

#[tokio::test]
async fn cancel_continue_and_wait() {
    let lab = Lab::new();
    let a = lab.start("alpha").await;

    let (_, t) = a
        .post("/tasks", json!({"role": "user", "text": "long job"}))
        .await;
    let id = t["id"].as_str().unwrap().to_owned();
    let (s, r) = a.post(&format!("/tasks/{id}:cancel"), json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(r["status"], "cancelling");
    let (s, r) = a.get(&format!("/tasks/{id}:wait?timeout=5")).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["task"]["status"], "canceled");
    // Idempotent on terminal tasks.
    let (s, r) = a.post(&format!("/tasks/{id}/cancel"), json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(r["status"], "canceled");

    // input_required → continue → working.
    let (_, t) = a
        .post("/tasks", json!({"role": "user", "text": "ask me"}))
        .await;
    let id = t["id"].as_str().unwrap().to_owned();
    let (s, _) = a
        .post(
            &format!("/tasks/{id}:continue"),
            json!({"text": "too early"}),
        )
        .await;
    assert_eq!(s, 409);
    a.post(
        &format!("/tasks/{id}:update"),
        json!({"status": "input_required"}),
    )
    .await;
    let (s, r) = a
        .post(
            &format!("/tasks/{id}:continue"),
            json!({"text": "here you go"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["task"]["status"], "working");
    assert_eq!(
        r["task"]["history"][0]["parts"][0]["content"],
        "here you go"
    );

    // Wait times out with 202 on a task that does not finish.
    let (s, r) = a.get(&format!("/tasks/{id}:wait?timeout=0.2")).await;
    assert_eq!(s, 202);
    assert_eq!(r["timeout"], true);

    // Client-chosen ids are idempotent.
    let (s1, t1) = a
        .post("/tasks", json!({"task_id": "task_fixed", "text": "x"}))
        .await;
    let (s2, t2) = a
        .post("/tasks", json!({"task_id": "task_fixed", "text": "y"}))
        .await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(t1["created_at"], t2["created_at"]);

    // DELETE fails a running task.
    let (s, _) = a
        .request(reqwest::Method::DELETE, &format!("/tasks/{id}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(a.get(&format!("/tasks/{id}")).await.1["status"], "failed");
}
