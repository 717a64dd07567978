//! Strategies and settings shared by the property tests. This file uses only `proptest` and
//! `serde_json`, so the integration tests include it too (`#[path]` in tests/properties.rs)
//! and every parser is fed the same shapes of JSON.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Map, Value};

/// A config running `default_cases` cases, or `PROPTEST_CASES` when it is set: proptest only
/// reads that variable for its default config, and `with_cases` would override it, so CI stays
/// bounded while `PROPTEST_CASES=10000 cargo test prop` still runs a long search.
pub fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig::with_cases(cases)
}

/// Field names the parsers look at, so generated objects reach past the first check.
pub const KEYS: &[&str] = &[
    "type",
    "parts",
    "role",
    "text",
    "content",
    "url",
    "media_type",
    "name",
    "message_id",
    "id",
    "task_id",
    "context_id",
    "peer_id",
    "peer",
    "sync",
    "timeout",
    "create_task",
    "payload",
    "delegate",
    "status",
    "state",
    "artifact",
    "error",
    "message",
    "link",
    "skill_id",
    "constraints",
    "input_mode",
    "file_size_bytes",
    "description",
    "skills",
    "limitations",
    "availability",
    "mode",
    "interval_seconds",
    "schedule",
    "timezone",
    "card",
    "correlation_id",
    "from",
    "ts",
    "sig",
    "data",
    "files",
    "reply_to",
    "cursor",
    "limit",
    "result_text",
    "result_data",
    "uri",
    "required",
    "params",
];

/// String values with a meaning somewhere (roles, part types, states, frame types).
pub const WORDS: &[&str] = &[
    "",
    "user",
    "agent",
    "system",
    "text",
    "file",
    "data",
    "submitted",
    "working",
    "input_required",
    "cancelling",
    "completed",
    "failed",
    "canceled",
    "cancelled",
    "acp.message",
    "acp.reply",
    "acp.agent_card",
    "task.updated",
    "task.delegate",
    "error",
    "persistent",
    "heartbeat",
    "cron",
    "manual",
    "https://example.invalid/f.pdf",
    "acp://",
    "acp+wss://relay.invalid/tok_a",
    "tok_0123456789abcdef",
    "0",
    "-1",
    "1e400",
    "NaN",
    "\u{0}",
    "\u{feff}",
    "é😀",
];

/// A JSON string: a meaningful word or arbitrary text (any Unicode, control characters too).
pub fn arb_string() -> BoxedStrategy<String> {
    prop_oneof![
        proptest::sample::select(WORDS).prop_map(str::to_owned),
        ".{0,24}",
        any::<String>(),
    ]
    .boxed()
}

/// An object key: mostly a field the parsers read, sometimes anything.
pub fn arb_key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
    .boxed()
}

/// A JSON leaf: null, booleans, integers at the edges, finite floats, strings.
pub fn arb_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![Just(0i64), Just(-1), Just(1), Just(30), Just(3601)].prop_map(Value::from),
        any::<f64>().prop_filter_map("finite, and read back exactly", |f| {
            // serde_json without `float_roundtrip` may read a float back one ULP off;
            // comparisons after a round trip need floats that come back unchanged.
            let n = serde_json::Number::from_f64(f)?;
            let back: f64 = serde_json::from_str(&n.to_string()).ok()?;
            (back == f).then_some(Value::Number(n))
        }),
        arb_string().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value, at most 4 levels deep and about 64 nodes, objects keyed by [`arb_key`].
pub fn arb_json() -> BoxedStrategy<Value> {
    arb_leaf()
        .prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec((arb_key(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A JSON object whose values are [`arb_json`]: what a request body or tool call carries.
pub fn arb_object() -> BoxedStrategy<Map<String, Value>> {
    proptest::collection::vec((arb_key(), arb_json()), 0..10)
        .prop_map(|kv| kv.into_iter().collect())
        .boxed()
}

/// A part the validator accepts: text, file or data, sometimes with extra fields.
pub fn valid_part() -> BoxedStrategy<Value> {
    let extra = proptest::collection::vec(("x_[a-z]{1,6}", arb_leaf()), 0..3);
    prop_oneof![
        (any::<String>(), extra.clone()).prop_map(|(s, x)| part("text", "content", s.into(), x)),
        ("[a-z]{1,8}://[!-~]{1,30}", extra.clone()).prop_map(|(u, x)| part(
            "file",
            "url",
            u.into(),
            x
        )),
        (arb_json(), extra).prop_map(|(v, x)| part("data", "content", v, x)),
    ]
    .boxed()
}

fn part(kind: &str, key: &str, value: Value, extra: Vec<(String, Value)>) -> Value {
    let mut obj: Map<String, Value> = extra.into_iter().collect();
    obj.insert("type".into(), kind.into());
    obj.insert(key.into(), value);
    Value::Object(obj)
}
