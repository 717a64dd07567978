//! A2A push notifications: a caller names a URL for one of its tasks (a push-notification
//! config), and every update of that task (the task when the config comes with
//! `SendMessage`, then each artifact, each state change, the final state) is POSTed there,
//! as a `StreamResponse` item (`{"statusUpdate": …}`, `{"artifactUpdate": …}`,
//! `{"task": …}`), with the config's `token` as `X-A2A-Notification-Token` and its
//! `authentication` as `Authorization: {scheme} {credentials}`, as the official SDK does.
//!
//! Delivery is the node's webhook machinery ([`crate::node::webhooks::PushTarget`]): a
//! bounded queue and a worker per config, with timeout, retries and counters. One
//! dispatcher reads the node's events and offers each watched task's changes to its
//! configs' queues; it never waits on a receiver.
//!
//! Configs belong to the caller that owns the task (another caller gets `TaskNotFound`);
//! at most [`MAX_PER_TASK`] per task and [`MAX_PER_CALLER`] per caller. They live in
//! memory and end with the process (a client sets them again, as it would after a lost
//! stream).
//!
//! The caller chooses where the node POSTs, so the URL must be `http(s)` without user
//! info, and its host a public address: loopback, private, link-local, shared and other
//! special addresses are refused (a name is resolved and checked at each connection),
//! except a loopback URL set by a caller on this machine (loopback).

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::convert::{A2aError, artifact_from_acp, task_from_acp};
use super::{A2aCaller, A2aServer};
use crate::a2a::types::{
    A2aErrorCode, AuthenticationInfo, ListTaskPushNotificationConfigsResponse, ProtocolVersion,
    StreamResponse, TaskArtifactUpdateEvent, TaskPushNotificationConfig, TaskStatusUpdateEvent,
};
use crate::node::Node;
use crate::node::message::MAX_ID_LEN;
use crate::node::task::TaskState as AcpState;
use crate::node::webhooks::PushTarget;
use crate::node::webhooks::url::{Target, WebhookUrl, is_public};

/// Most push configs on one task.
pub const MAX_PER_TASK: usize = 10;
/// Most push configs one caller holds over all its tasks (each is a queue and a worker).
pub const MAX_PER_CALLER: usize = 100;
/// Longest `token`, and longest `scheme` plus `credentials`, in bytes.
const MAX_SECRET_LEN: usize = 4096;

/// One config and what delivers to it.
struct Config {
    shown: TaskPushNotificationConfig,
    /// The shapes its notifications take (the version of the method that set it).
    version: ProtocolVersion,
    target: PushTarget,
}

/// A task with configs, and what its receivers were last told.
struct Watched {
    peer: String,
    artifacts: usize,
    state: AcpState,
    configs: Vec<Config>,
}

/// The configs of this server's tasks.
#[derive(Default)]
pub(super) struct Registry {
    tasks: Mutex<HashMap<String, Watched>>,
    /// Whether the dispatcher runs (started with the first config).
    started: std::sync::atomic::AtomicBool,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Offers the task's changes since its receivers were last told to each of them.
    fn sync(&self, node: &Node, task_id: &str) {
        let mut tasks = self.lock();
        let Some(w) = tasks.get_mut(task_id) else {
            return;
        };
        let Ok(t) = node.task(task_id) else { return };
        let context = t.context_id.clone().unwrap_or_default();
        let mut items = Vec::new();
        while w.artifacts < t.artifacts.len() {
            items.push(StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: t.id.clone(),
                context_id: context.clone(),
                artifact: artifact_from_acp(&t.artifacts[w.artifacts], w.artifacts),
                append: false,
                last_chunk: true,
                metadata: None,
            }));
            w.artifacts += 1;
        }
        if t.status != w.state {
            w.state = t.status;
            items.push(StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
                task_id: t.id.clone(),
                context_id: context,
                status: task_from_acp(&t, Some(0)).status,
                metadata: None,
                final_: None,
            }));
        }
        for item in &items {
            for c in &w.configs {
                c.target
                    .offer("a2a.push", item.to_version(c.version).to_string());
            }
        }
    }

    fn sync_all(&self, node: &Node) {
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        for id in ids {
            self.sync(node, &id);
        }
    }
}

/// Checks a config's URL for `caller`: `http(s)`, no user info, and a public host unless
/// both the URL and the caller are loopback. Returns the URL and whether its connections
/// must be checked for public addresses (a host name resolves at each connection).
pub fn check_url(raw: &str, caller_is_loopback: bool) -> Result<(WebhookUrl, bool), String> {
    let url = WebhookUrl::parse(raw)?;
    if caller_is_loopback && url.is_loopback() {
        return Ok((url, false));
    }
    if url.is_loopback() {
        return Err(format!(
            "push URL {raw:?} is on the node's own machine: only a caller on that machine may name it"
        ));
    }
    if let Target::Ip(ip) = url.target()
        && !is_public(ip)
    {
        return Err(format!(
            "push URL {raw:?} is not a public address (loopback, private, link-local and other \
             special addresses are refused)"
        ));
    }
    Ok((url, true))
}

/// A config's delivery, checked.
pub(super) struct Checked {
    url: WebhookUrl,
    /// Whether only public addresses may be connected to.
    public_only: bool,
    /// The headers sent besides the node's own.
    headers: Vec<(&'static str, String)>,
}

fn header_value(what: &str, v: &str) -> Result<(), A2aError> {
    if v.len() > MAX_SECRET_LEN {
        return Err(A2aError::params(format!(
            "{what} is longer than {MAX_SECRET_LEN} bytes"
        )));
    }
    axum::http::HeaderValue::from_str(v)
        .map(|_| ())
        .map_err(|_| A2aError::params(format!("{what} is not a valid HTTP header value")))
}

impl A2aServer {
    fn push(&self) -> &Registry {
        &self.inner.push
    }

    /// Starts the dispatcher once: it reads the node's events and syncs each watched task
    /// an event names (all of them when it fell behind), until the node stops.
    fn start_push_dispatcher(&self) {
        use std::sync::atomic::Ordering;
        if self.push().started.swap(true, Ordering::SeqCst) {
            return;
        }
        let server = self.clone();
        let mut events = self.node().events().subscribe();
        let shutdown = self.node().shutdown_token();
        self.node().background().spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = events.recv() => next,
                };
                let node = server.node();
                match next {
                    Ok(ev) => {
                        if let Some(id) = ev.body.get("task_id").and_then(Value::as_str) {
                            server.push().sync(node, id);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => server.push().sync_all(node),
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }

    /// Checks what a config asks of the node (URL, headers): the part of
    /// [`A2aServer::create_push_config`] that does not need the task, so that a
    /// `SendMessage` with a bad config is refused before its message goes in.
    pub(super) fn check_push_config(
        &self,
        caller: &A2aCaller,
        cfg: &TaskPushNotificationConfig,
    ) -> Result<Checked, A2aError> {
        if cfg.id.len() > MAX_ID_LEN || cfg.id.chars().any(char::is_control) {
            return Err(A2aError::params(format!(
                "the config id must be at most {MAX_ID_LEN} characters, without control characters"
            )));
        }
        let (url, public_only) = check_url(&cfg.url, caller.loopback)
            .map_err(|e| A2aError::params(format!("invalid push notification URL: {e}")))?;
        let mut headers = Vec::new();
        if !cfg.token.is_empty() {
            header_value("token", &cfg.token)?;
            headers.push(("x-a2a-notification-token", cfg.token.clone()));
        }
        if let Some(AuthenticationInfo {
            scheme,
            credentials,
        }) = &cfg.authentication
            && !scheme.is_empty()
            && !credentials.is_empty()
        {
            let value = format!("{scheme} {credentials}");
            header_value("authentication", &value)?;
            headers.push(("authorization", value));
        }
        Ok(Checked {
            url,
            public_only,
            headers,
        })
    }

    /// Whether the caller may add one more config (checked again when it is added): a
    /// `SendMessage` whose config would be over the bound is refused before its message
    /// goes in.
    pub(super) fn push_room(&self, caller: &A2aCaller) -> Result<(), A2aError> {
        let peer = self.peer_for(caller);
        let held: usize = self
            .push()
            .lock()
            .values()
            .filter(|w| w.peer == peer)
            .map(|w| w.configs.len())
            .sum();
        if held >= MAX_PER_CALLER {
            return Err(too_many_for_caller());
        }
        Ok(())
    }

    /// `CreateTaskPushNotificationConfig` (0.3 `tasks/pushNotificationConfig/set`): adds
    /// or replaces (same id) a config of the caller's task. With `announce`, the task as
    /// it is now is its first notification (a config given with `SendMessage`).
    pub fn create_push_config(
        &self,
        caller: &A2aCaller,
        mut cfg: TaskPushNotificationConfig,
        version: ProtocolVersion,
        announce: bool,
    ) -> Result<TaskPushNotificationConfig, A2aError> {
        let peer = self.peer_for(caller);
        let task = self.own_task(&peer, &cfg.task_id)?;
        if cfg.id.is_empty() {
            cfg.id = cfg.task_id.clone();
        }
        let Checked {
            url,
            public_only,
            headers,
        } = self.check_push_config(caller, &cfg)?;
        cfg.tenant = None;
        let mut tasks = self.push().lock();
        let held: usize = tasks
            .values()
            .filter(|w| w.peer == peer)
            .map(|w| w.configs.len())
            .sum();
        let on_task = tasks.get(&task.id).map_or(0, |w| w.configs.len());
        let replaces = tasks
            .get(&task.id)
            .is_some_and(|w| w.configs.iter().any(|c| c.shown.id == cfg.id));
        if !replaces && on_task >= MAX_PER_TASK {
            return Err(A2aError::params(format!(
                "task {:?} already has {MAX_PER_TASK} push notification configs, the most it takes",
                task.id
            )));
        }
        if !replaces && held >= MAX_PER_CALLER {
            return Err(too_many_for_caller());
        }
        let target = self.node().push_target(url, headers, public_only);
        if announce {
            target.offer(
                "a2a.push",
                StreamResponse::Task(task_from_acp(&task, None))
                    .to_version(version)
                    .to_string(),
            );
        }
        let w = tasks.entry(task.id.clone()).or_insert_with(|| Watched {
            peer: peer.clone(),
            artifacts: task.artifacts.len(),
            state: task.status,
            configs: Vec::new(),
        });
        if let Some(old) = w.configs.iter().position(|c| c.shown.id == cfg.id) {
            w.configs.remove(old).target.stop();
        }
        w.configs.push(Config {
            shown: cfg.clone(),
            version,
            target,
        });
        drop(tasks);
        self.start_push_dispatcher();
        // Anything that changed since the task was read goes out now.
        self.push().sync(self.node(), &task.id);
        Ok(cfg)
    }

    /// `GetTaskPushNotificationConfig`.
    pub fn get_push_config(
        &self,
        caller: &A2aCaller,
        task_id: &str,
        id: &str,
    ) -> Result<TaskPushNotificationConfig, A2aError> {
        let peer = self.peer_for(caller);
        let task = self.own_task(&peer, task_id)?;
        let id = if id.is_empty() { task_id } else { id };
        self.push()
            .lock()
            .get(&task.id)
            .and_then(|w| w.configs.iter().find(|c| c.shown.id == id))
            .map(|c| c.shown.clone())
            .ok_or_else(|| config_not_found(task_id, id))
    }

    /// `ListTaskPushNotificationConfigs`: all of the task's configs, in one page.
    pub fn list_push_configs(
        &self,
        caller: &A2aCaller,
        task_id: &str,
    ) -> Result<ListTaskPushNotificationConfigsResponse, A2aError> {
        let peer = self.peer_for(caller);
        let task = self.own_task(&peer, task_id)?;
        let configs = self
            .push()
            .lock()
            .get(&task.id)
            .map(|w| w.configs.iter().map(|c| c.shown.clone()).collect())
            .unwrap_or_default();
        Ok(ListTaskPushNotificationConfigsResponse {
            configs,
            next_page_token: String::new(),
        })
    }

    /// `DeleteTaskPushNotificationConfig`: stops delivering to it (what is queued is
    /// dropped). Deleting a config that is not there succeeds (a retried delete is not an
    /// error), as the SDK's stores do.
    pub fn delete_push_config(
        &self,
        caller: &A2aCaller,
        task_id: &str,
        id: &str,
    ) -> Result<(), A2aError> {
        let peer = self.peer_for(caller);
        let task = self.own_task(&peer, task_id)?;
        let mut tasks = self.push().lock();
        if let Some(w) = tasks.get_mut(&task.id) {
            if let Some(i) = w.configs.iter().position(|c| c.shown.id == id) {
                w.configs.remove(i).target.stop();
            }
            if w.configs.is_empty() {
                tasks.remove(&task.id);
            }
        }
        Ok(())
    }
}

fn too_many_for_caller() -> A2aError {
    A2aError::params(format!(
        "this caller already has {MAX_PER_CALLER} push notification configs, the most it \
         takes; delete some first"
    ))
}

fn config_not_found(task_id: &str, id: &str) -> A2aError {
    A2aError::new(
        A2aErrorCode::TaskNotFound,
        format!("task {task_id:?} has no push notification config {id:?}"),
    )
}

/// 0.3 shapes: `{taskId, pushNotificationConfig: {id, url, token, authentication:
/// {schemes, credentials}}}`, to and from the 1.0 config.
pub mod v03 {
    use super::*;

    /// A 0.3 `PushNotificationConfig` (inside `MessageSendConfiguration` or a
    /// `TaskPushNotificationConfig`) as a 1.0 config of `task_id`.
    pub fn config_from(task_id: &str, v: &Value) -> Result<TaskPushNotificationConfig, A2aError> {
        let bad = |m: &str| A2aError::params(format!("invalid pushNotificationConfig: {m}"));
        let o = v.as_object().ok_or_else(|| bad("not an object"))?;
        let s = |k: &str| -> Result<String, A2aError> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(bad(&format!("{k} must be a string"))),
            }
        };
        let authentication = match o.get("authentication") {
            None | Some(Value::Null) => None,
            Some(a) => {
                let schemes = a
                    .get("schemes")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("authentication.schemes must be an array"))?;
                Some(AuthenticationInfo {
                    scheme: schemes
                        .first()
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    credentials: a
                        .get("credentials")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                })
            }
        };
        Ok(TaskPushNotificationConfig {
            tenant: None,
            id: s("id")?,
            task_id: task_id.to_owned(),
            url: s("url")?,
            token: s("token")?,
            authentication,
        })
    }

    /// A config in 0.3's `TaskPushNotificationConfig` shape.
    pub fn config_to(c: &TaskPushNotificationConfig) -> Value {
        let mut inner = json!({"id": c.id, "url": c.url});
        if !c.token.is_empty() {
            inner["token"] = json!(c.token);
        }
        if let Some(a) = &c.authentication {
            inner["authentication"] = json!({"schemes": [a.scheme], "credentials": a.credentials});
        }
        json!({"taskId": c.task_id, "pushNotificationConfig": inner})
    }

    /// Params of `tasks/pushNotificationConfig/set`.
    pub fn set_params(p: &Value) -> Result<TaskPushNotificationConfig, A2aError> {
        let task_id = p
            .get("taskId")
            .and_then(Value::as_str)
            .ok_or_else(|| A2aError::params("taskId is required"))?;
        let inner = p
            .get("pushNotificationConfig")
            .ok_or_else(|| A2aError::params("pushNotificationConfig is required"))?;
        config_from(task_id, inner)
    }

    /// Params of `tasks/pushNotificationConfig/get|list|delete`: the task id and the
    /// config id (empty when not given).
    pub fn id_params(p: &Value) -> Result<(String, String), A2aError> {
        let task_id = p
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| A2aError::params("id (the task id) is required"))?;
        let config = match p.get("pushNotificationConfigId") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => {
                return Err(A2aError::params(
                    "pushNotificationConfigId must be a string",
                ));
            }
        };
        Ok((task_id.to_owned(), config.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::test_support::config(256))]

        /// Any 0.3 params give a config or an invalid-params error, never a panic.
        #[test]
        fn prop_v03_params_give_a_config_or_invalid_params(p in crate::test_support::arb_json()) {
            for r in [v03::set_params(&p).map(|_| ()), v03::id_params(&p).map(|_| ()),
                      v03::config_from("t", &p).map(|_| ())] {
                if let Err(e) = r {
                    prop_assert_eq!(e.code, A2aErrorCode::InvalidParams);
                }
            }
        }

        /// A URL is taken only as http(s) without user info, and for a remote caller only
        /// when it names no non-public address; never a panic.
        #[test]
        fn prop_accepted_push_urls_are_http_and_public_for_remote_callers(
            raw in prop_oneof![
                ".{0,60}",
                "(https?|ftp)://([a-z]{1,4}@)?(localhost|[a-z]{1,8}\\.com|[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|\\[[0-9a-f:.]{2,20}\\])(:[0-9]{1,5})?/[a-z]{0,5}",
            ],
            loopback in any::<bool>(),
        ) {
            if let Ok((url, public_only)) = check_url(&raw, loopback) {
                prop_assert!(url.as_str().starts_with("http://") || url.as_str().starts_with("https://"));
                prop_assert!(!url.authority().contains('@'));
                if !public_only {
                    prop_assert!(loopback && url.is_loopback());
                } else {
                    prop_assert!(!url.is_loopback());
                    if let Target::Ip(ip) = url.target() {
                        prop_assert!(is_public(ip), "{}", ip);
                    }
                }
            }
        }
    }

    #[test]
    fn only_public_hosts_unless_both_ends_are_loopback() {
        assert!(check_url("https://example.com/hook", false).unwrap().1);
        assert!(check_url("http://203.0.113.9/", false).is_err());
        for bad in [
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://[::1]/",
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "ftp://example.com/",
            "http://user:pw@example.com/",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        // A caller on this machine may name a receiver on this machine, and nothing else
        // that is not public.
        assert!(!check_url("http://127.0.0.1:8080/", true).unwrap().1);
        assert!(check_url("http://10.0.0.1/", true).is_err());
        assert!(check_url("http://169.254.169.254/", true).is_err());
        assert!(check_url("https://example.com/", true).unwrap().1);
    }

    #[test]
    fn v03_configs_convert_both_ways() {
        let p = json!({"taskId": "t", "pushNotificationConfig": {"id": "c", "url": "https://x.example/",
            "token": "tok", "authentication": {"schemes": ["Bearer"], "credentials": "cr"}}});
        let c = v03::set_params(&p).unwrap();
        assert_eq!((c.task_id.as_str(), c.id.as_str()), ("t", "c"));
        assert_eq!(c.authentication.as_ref().unwrap().scheme, "Bearer");
        assert_eq!(v03::config_to(&c), p);
        assert!(v03::set_params(&json!({"taskId": "t"})).is_err());
        assert!(
            v03::set_params(&json!({"taskId": "t", "pushNotificationConfig": {"url": 3}})).is_err()
        );
        assert_eq!(
            v03::id_params(&json!({"id": "t"})).unwrap(),
            ("t".to_owned(), String::new())
        );
    }
}
