//! Questions as MCP input requests (elicitation forms) and their answers as ACP parts: the
//! question a remote agent asks when it puts a task in `input_required`, and the consent
//! question of a changed peer key. The form is a single text field unless the remote agent
//! sent a JSON Schema that an MCP form can express (an object of primitive fields), which is
//! then used as it is.

use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
    InputRequest, InputRequests,
};
use serde_json::{Value, json};

use crate::node::identity::PendingKeyChange;
use crate::node::link_key::PendingLinkKey;
use crate::node::message::text_part;

/// The field of the default form.
pub const ANSWER_FIELD: &str = "answer";

/// The field of the key consent form.
pub const ACCEPT_FIELD: &str = "accept";

/// The input request key of the key consent form.
pub const CONSENT_KEY: &str = "accept_new_key";

/// A remote agent's question, as found in the task and its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// What the agent asks, in words.
    pub text: String,
    /// A JSON Schema the agent sent for the answer, when an MCP form can express it.
    pub schema: Option<ElicitationSchema>,
}

/// The schema in a data part, if an MCP form can express it: an object whose properties
/// are strings, numbers, integers, booleans or enums (rmcp's [`ElicitationSchema`] accepts
/// exactly those), with at least one property.
pub fn form_schema(content: &Value) -> Option<ElicitationSchema> {
    if content.get("type") != Some(&json!("object")) {
        return None;
    }
    let schema: ElicitationSchema = serde_json::from_value(content.clone()).ok()?;
    (!schema.properties.is_empty()).then_some(schema)
}

/// The first data part of `parts` whose content is a form schema.
pub fn schema_in_parts(parts: &[Value]) -> Option<ElicitationSchema> {
    parts
        .iter()
        .filter(|p| p.get("type") == Some(&json!("data")))
        .filter_map(|p| p.get("content"))
        .find_map(form_schema)
}

/// The single text field asking `question`.
fn text_field_schema(question: &str) -> ElicitationSchema {
    serde_json::from_value(json!({
        "type": "object",
        "properties": {
            ANSWER_FIELD: {"type": "string", "title": "Answer", "description": question}
        },
        "required": [ANSWER_FIELD]
    }))
    .expect("a single string field is a valid form schema")
}

fn form(message: String, schema: ElicitationSchema) -> InputRequest {
    InputRequest::Elicitation(ElicitRequest::new(
        ElicitRequestParams::FormElicitationParams {
            meta: None,
            message,
            requested_schema: schema,
        },
    ))
}

/// The input requests of a task waiting for its requester: one form under `key`.
pub fn question_requests(key: &str, asker: &str, question: &Question) -> InputRequests {
    let schema = question
        .schema
        .clone()
        .unwrap_or_else(|| text_field_schema(&question.text));
    let message = format!("{asker} asks: {}", question.text);
    [(key.to_owned(), form(message, schema))].into()
}

/// What the requester's answer becomes for the remote agent: the text of a single-field
/// answer, or a readable text plus the answer as a data part; a declined or cancelled form
/// says so in words.
pub fn answer_parts(answer: &ElicitResult) -> Vec<Value> {
    match answer.action {
        ElicitationAction::Accept => {}
        ElicitationAction::Decline => {
            return vec![text_part("The requester declined to answer this question.")];
        }
        _ => {
            return vec![text_part(
                "The requester dismissed this question without answering.",
            )];
        }
    }
    let content = answer.content.clone().unwrap_or(Value::Null);
    if let Some(obj) = content.as_object()
        && obj.len() == 1
        && let Some(Value::String(text)) = obj.get(ANSWER_FIELD)
    {
        return vec![text_part(text)];
    }
    let readable = match content.as_object() {
        Some(obj) => obj
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        None => content.to_string(),
    };
    vec![
        text_part(&readable),
        json!({"type": "data", "content": content}),
    ]
}

/// The consent question for a changed peer key.
pub fn key_consent_requests(change: &PendingKeyChange) -> InputRequests {
    let was = change.pinned_did.as_deref().unwrap_or("no key");
    let now = change
        .presented_did
        .as_deref()
        .unwrap_or("no key (an unsigned card)");
    let message = format!(
        "Accept the new key of peer {}? It was {was}, now {now}. Accept only if its owner \
         confirmed, outside this conversation, that the key really changed: otherwise it may \
         be an impostor.",
        change.name
    );
    let schema: ElicitationSchema = serde_json::from_value(json!({
        "type": "object",
        "properties": {
            ACCEPT_FIELD: {
                "type": "boolean",
                "title": "Accept the new key",
                "description": format!("Trust {now} as peer {} from now on", change.name),
                "default": false
            }
        },
        "required": [ACCEPT_FIELD]
    }))
    .expect("a boolean field is a valid form schema");
    [(CONSENT_KEY.to_owned(), form(message, schema))].into()
}

/// The consent question for a host that did not prove the key its link names: connect
/// without that key? Same field and key as the key change question (`accept_new_key`), so
/// a client answers both the same way.
pub fn link_key_consent_requests(pending: &PendingLinkKey) -> InputRequests {
    let r = &pending.refusal;
    let did_what = if r.unproven {
        "presented that key but did not prove it holds it (it may be replaying that node's card)"
            .to_owned()
    } else {
        match &r.presented_did {
            Some(other) => format!("presented another key, {other}"),
            None => "presented no key at all (an unsigned card, as the Python reference does)"
                .to_owned(),
        }
    };
    let message = format!(
        "The link of peer {} names the key {}, but the host at it {did_what}. Connect anyway, \
         without that key? Only if its owner confirmed, outside this conversation, that this \
         host is theirs: otherwise it may be an impostor.",
        pending.name, r.named_did
    );
    let schema: ElicitationSchema = serde_json::from_value(json!({
        "type": "object",
        "properties": {
            ACCEPT_FIELD: {
                "type": "boolean",
                "title": "Connect without the link's key",
                "description": format!("Dial peer {} without checking for {}", pending.name, r.named_did),
                "default": false
            }
        },
        "required": [ACCEPT_FIELD]
    }))
    .expect("a boolean field is a valid form schema");
    [(CONSENT_KEY.to_owned(), form(message, schema))].into()
}

/// Whether a consent answer accepts the key.
pub fn accepts_key(answer: &Value) -> bool {
    serde_json::from_value::<ElicitResult>(answer.clone()).is_ok_and(|r| {
        r.action == ElicitationAction::Accept
            && r.content.as_ref().and_then(|c| c.get(ACCEPT_FIELD)) == Some(&Value::Bool(true))
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{arb_json, config};

    #[test]
    fn a_schema_with_primitive_fields_is_a_form_and_others_are_not() {
        let ok = json!({"type": "object", "properties": {
            "date": {"type": "string", "format": "date"},
            "urgent": {"type": "boolean"},
            "size": {"type": "integer", "minimum": 1}
        }, "required": ["date"]});
        let schema = form_schema(&ok).expect("expressible");
        assert_eq!(schema.properties.len(), 3);
        for bad in [
            json!({"type": "object", "properties": {"nested": {"type": "object"}}}),
            json!({"type": "object", "properties": {}}),
            json!({"type": "array", "items": {"type": "string"}}),
            json!({"rows": 3}),
            json!("text"),
        ] {
            assert!(form_schema(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn answers_become_text_or_text_and_data() {
        let one =
            ElicitResult::new(ElicitationAction::Accept).with_content(json!({"answer": "Kiel"}));
        assert_eq!(answer_parts(&one), vec![text_part("Kiel")]);
        let many = ElicitResult::new(ElicitationAction::Accept)
            .with_content(json!({"date": "2026-12-24", "urgent": true}));
        let parts = answer_parts(&many);
        assert_eq!(parts[0]["content"], "date: 2026-12-24\nurgent: true");
        assert_eq!(parts[1]["content"]["urgent"], true);
        let no = ElicitResult::new(ElicitationAction::Decline);
        assert!(
            answer_parts(&no)[0]["content"]
                .as_str()
                .unwrap()
                .contains("declined")
        );
    }

    #[test]
    fn only_an_accepted_true_accepts_a_key() {
        assert!(accepts_key(
            &json!({"action": "accept", "content": {"accept": true}})
        ));
        assert!(!accepts_key(
            &json!({"action": "accept", "content": {"accept": false}})
        ));
        assert!(!accepts_key(
            &json!({"action": "decline", "content": {"accept": true}})
        ));
        assert!(!accepts_key(&json!({"action": "accept"})));
        assert!(!accepts_key(&json!("yes")));
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Whatever a remote agent puts in a data part, and whatever a client answers, the
        /// form and answer builders never panic.
        #[test]
        fn prop_forms_never_panic_on_remote_or_client_json(content in arb_json(), answer in arb_json()) {
            let _ = form_schema(&content);
            let _ = schema_in_parts(&[json!({"type": "data", "content": content.clone()})]);
            let _ = accepts_key(&answer);
            if let Ok(r) = serde_json::from_value::<ElicitResult>(answer) {
                let _ = answer_parts(&r);
            }
        }
    }
}
