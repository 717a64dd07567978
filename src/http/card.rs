//! Identity of the node: AgentCard, status, link, skills and availability.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::ApiResult;
use super::extract::{JsonObject, Params};
use crate::node::Node;
use crate::node::card::ACP_VERSION;
use crate::node::error::NodeError;

/// `GET /.well-known/acp.json` and `/card`: the reference's `{"self", "peer"}` document, with
/// the card's fields also at the top level plus `protocol: "acp"` (what card-reading
/// clients such as the compat suite expect). Reference clients reading `self` are unaffected.
pub async fn get_card(State(node): State<Node>) -> Json<Value> {
    let doc = node.card_document();
    let mut top = doc.get("self").cloned().unwrap_or_else(|| json!({}));
    if let Some(obj) = top.as_object_mut() {
        obj.insert("protocol".into(), json!("acp"));
        obj.insert(
            "self".into(),
            doc.get("self").cloned().unwrap_or(Value::Null),
        );
        obj.insert(
            "peer".into(),
            doc.get("peer").cloned().unwrap_or(Value::Null),
        );
    }
    Json(top)
}

/// `PATCH /.well-known/acp.json`: availability (and description, skills, limitations).
pub async fn patch_card(
    State(node): State<Node>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let card = node.patch_card(&body)?;
    Ok(Json(json!({
        "ok": true,
        "availability": card.get("availability").cloned().unwrap_or_else(|| json!({})),
        "card": card,
    })))
}

/// `GET /status`.
pub async fn status(State(node): State<Node>) -> Json<Value> {
    Json(node.status())
}

/// `GET /link`.
pub async fn link(State(node): State<Node>) -> Json<Value> {
    let status = node.status();
    Json(json!({"link": node.link(), "session_id": status["session_id"], "token": node.token()}))
}

/// `GET /skills`: filter by `tag` or `q`, paged.
pub async fn skills(State(node): State<Node>, params: Params) -> ApiResult<Json<Value>> {
    let limit = params
        .uint("limit", "limit must be a non-negative integer")?
        .unwrap_or(50);
    let offset = params
        .uint("offset", "offset must be a non-negative integer")?
        .unwrap_or(0);
    let limit = if limit == 0 { 50 } else { limit.min(200) };
    let tag = params.str("tag");
    let q = params
        .str("q")
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty());
    let matches_text = |s: &Value, q: &str| {
        ["id", "name", "description"].iter().any(|k| {
            s.get(k)
                .and_then(Value::as_str)
                .is_some_and(|v| v.to_lowercase().contains(q))
        })
    };
    let all: Vec<Value> = node
        .skills()
        .into_iter()
        .filter(|s| {
            tag.is_none_or(|t| {
                s["tags"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == t))
            })
        })
        .filter(|s| q.as_deref().is_none_or(|q| matches_text(s, q)))
        .collect();
    let total = all.len();
    let page: Vec<Value> = all.into_iter().skip(offset).take(limit).collect();
    let has_more = offset + page.len() < total;
    Ok(Json(json!({
        "skills": page,
        "total": total,
        "has_more": has_more,
        "next_offset": if has_more { json!(offset + limit) } else { Value::Null },
    })))
}

/// `POST /skills/query`: does this agent support a skill (under constraints)?
pub async fn query_skills(
    State(node): State<Node>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let skills = node.skills();
    let card = node.card();
    let caps = card
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let agent = json!({"name": node.name(), "acp_version": ACP_VERSION});
    let skill_id = match body.get("skill_id") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(_) => return Err(NodeError::invalid("'skill_id' must be a string").into()),
    };
    let constraints = match body.get("constraints") {
        None | Some(Value::Null) => json!({}),
        Some(c @ Value::Object(_)) => c.clone(),
        Some(_) => return Err(NodeError::invalid("'constraints' must be an object").into()),
    };
    let input_mode = constraints
        .get("input_mode")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_owned();
    if skill_id.is_empty() {
        if input_mode.is_empty() {
            return Ok(Json(
                json!({"skills": skills, "capabilities": caps, "agent": agent}),
            ));
        }
        let matched: Vec<Value> = skills
            .into_iter()
            .filter(|s| {
                s["input_modes"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x == input_mode.as_str()))
            })
            .collect();
        if matched.is_empty() {
            return Ok(Json(json!({
                "support_level": "unsupported",
                "reason": format!("No skill supports input_mode='{input_mode}'"),
                "skills": [], "capabilities": caps, "agent": agent,
            })));
        }
        return Ok(Json(
            json!({"skills": matched, "capabilities": caps, "agent": agent}),
        ));
    }
    let mut known: Vec<String> = skills
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    known.sort();
    let Some(skill) = skills.iter().find(|s| s["id"] == skill_id.as_str()) else {
        let needle = skill_id.to_lowercase();
        let similar: Vec<&str> = skills
            .iter()
            .filter(|s| {
                ["id", "name", "description"].iter().any(|k| {
                    s[k].as_str().is_some_and(|v| {
                        let v = v.to_lowercase();
                        !v.is_empty() && (v.contains(&needle) || needle.contains(&v))
                    })
                })
            })
            .filter_map(|s| s["id"].as_str())
            .collect();
        let mut reason = format!("Skill '{skill_id}' not registered on this agent");
        if !similar.is_empty() {
            reason.push_str(&format!("; similar skills found: {similar:?}"));
        }
        return Ok(Json(json!({
            "skill_id": skill_id, "support_level": "unsupported", "reason": reason,
            "constraints_applied": {}, "known_skills": known, "agent": agent,
        })));
    };
    let max = caps["max_msg_bytes"].as_u64().unwrap_or(0);
    let mut violations = Vec::new();
    if let Some(size) = constraints.get("file_size_bytes").and_then(Value::as_u64)
        && size > max
    {
        violations.push(format!("file_size_bytes {size} exceeds max {max}"));
    }
    let modes: Vec<&str> = skill["input_modes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !input_mode.is_empty() && !modes.is_empty() && !modes.contains(&input_mode.as_str()) {
        violations.push(format!(
            "input_mode='{input_mode}' not supported by skill '{skill_id}' (supports: {modes:?})"
        ));
    }
    let (level, reason, applied) = if violations.is_empty() {
        (
            "supported",
            format!("Skill '{skill_id}' is available"),
            json!({}),
        )
    } else {
        (
            "partial",
            violations.join("; "),
            json!({"max_msg_bytes": max}),
        )
    };
    Ok(Json(json!({
        "skill_id": skill_id, "support_level": level, "reason": reason,
        "constraints_applied": applied, "known_skills": known, "agent": agent,
    })))
}

/// `GET /availability`.
pub async fn availability(State(node): State<Node>) -> Json<Value> {
    let avail = node.availability();
    let mode = avail
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("persistent")
        .to_owned();
    let has_schedule = avail.get("schedule").is_some_and(|s| !s.is_null());
    Json(json!({"ok": true, "availability": avail, "mode": mode, "has_schedule": has_schedule}))
}

/// `POST /availability/heartbeat`: the agent is awake now (body: availability fields to
/// change, optional).
pub async fn heartbeat(
    State(node): State<Node>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    Ok(Json(node.heartbeat(&body)?))
}

/// `GET /extensions`: the registered extensions.
pub async fn extensions(State(node): State<Node>) -> Json<Value> {
    Json(node.extensions())
}

/// `POST /extensions/register {"uri", "required"?, "params"?}`.
pub async fn register_extension(
    State(node): State<Node>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    Ok(Json(node.register_extension(&body)?))
}

/// `POST /extensions/unregister {"uri"}`.
pub async fn unregister_extension(
    State(node): State<Node>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    Ok(Json(node.unregister_extension(&body)?))
}
