//! Between ACP and A2A on the client side, over the wire types of [`crate::a2a::types`]: ACP
//! parts to A2A parts and back, an outgoing message in the form of the interface's version,
//! an A2A task state in ACP terms. Inline bytes from an agent (`raw` in 1.0, `file.bytes`
//! in 0.3) become an ACP file part whose URL is a `data:` URL: ACP has no inline bytes.

use serde_json::{Value, json};

use crate::a2a::types::{self, Part, PartContent, ProtocolVersion};
use crate::node::task::TaskState;

/// ACP parts (`{"type": "text"|"data"|"file", …}`) as A2A parts.
pub fn parts_to_a2a(parts: &[Value]) -> Vec<Part> {
    parts
        .iter()
        .filter_map(|p| {
            let str_of = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
            let content = match p.get("type").and_then(Value::as_str)? {
                "text" => PartContent::Text(str_of("content")?),
                "data" => PartContent::Data(p.get("content")?.clone()),
                "file" => PartContent::Url(str_of("url")?),
                _ => return None,
            };
            let is_file = matches!(content, PartContent::Url(_));
            Some(Part {
                content,
                metadata: None,
                filename: str_of("name").filter(|_| is_file),
                media_type: str_of("media_type").filter(|_| is_file),
            })
        })
        .collect()
}

/// A2A parts as ACP parts.
pub fn parts_to_acp(parts: &[Part]) -> Vec<Value> {
    parts
        .iter()
        .map(|p| match &p.content {
            PartContent::Text(t) => json!({"type": "text", "content": t}),
            PartContent::Data(d) => json!({"type": "data", "content": d}),
            PartContent::Url(u) | PartContent::Raw(u) => {
                let media = p
                    .media_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into());
                let url = match &p.content {
                    PartContent::Raw(b64) => format!("data:{media};base64,{b64}"),
                    _ => u.clone(),
                };
                let mut f = json!({"type": "file", "url": url, "media_type": media});
                if let Some(n) = &p.filename {
                    f["name"] = json!(n);
                }
                f
            }
        })
        .collect()
}

/// An outgoing message as the interface's version writes it.
pub fn outgoing(message: &types::Message, version: ProtocolVersion) -> Value {
    match version {
        ProtocolVersion::V1_0 => serde_json::to_value(message).unwrap_or(Value::Null),
        ProtocolVersion::V0_3 => types::v03::message(message),
    }
}

/// An A2A task state in ACP terms; `None` where the ACP task has nothing to learn
/// (`submitted`, `unspecified`). `auth_required` is shown as `input_required` (the user
/// must act); `rejected` as `failed`.
pub fn state(s: types::TaskState) -> Option<TaskState> {
    use types::TaskState as A;
    match s {
        A::Unspecified | A::Submitted => None,
        A::Working => Some(TaskState::Working),
        A::InputRequired | A::AuthRequired => Some(TaskState::InputRequired),
        A::Completed => Some(TaskState::Completed),
        A::Failed | A::Rejected => Some(TaskState::Failed),
        A::Canceled => Some(TaskState::Canceled),
    }
}

/// Whether the agent stopped working on a task for now: finished, or waiting for the user.
pub fn settled(task: &types::Task) -> bool {
    task.status.state.is_terminal() || task.status.state.is_interrupted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acp_parts_go_out_as_a2a_parts_of_both_versions_and_come_back() {
        let acp = vec![
            json!({"type": "text", "content": "hi"}),
            json!({"type": "data", "content": {"k": 1}}),
            json!({"type": "file", "url": "https://x/y.pdf", "media_type": "application/pdf", "name": "y.pdf"}),
        ];
        let parts = parts_to_a2a(&acp);
        assert_eq!(parts[0].to_v1(), json!({"text": "hi"}));
        assert_eq!(parts[0].to_v03(), json!({"kind": "text", "text": "hi"}));
        assert_eq!(parts_to_acp(&parts), acp);
        let raw = Part::from_value(json!({"raw": "AAE=", "mediaType": "image/png"})).unwrap();
        assert_eq!(parts_to_acp(&[raw])[0]["url"], "data:image/png;base64,AAE=");
    }

    #[test]
    fn a2a_states_map_onto_acp_states() {
        use types::TaskState as A;
        assert_eq!(state(A::InputRequired), Some(TaskState::InputRequired));
        assert_eq!(state(A::AuthRequired), Some(TaskState::InputRequired));
        assert_eq!(state(A::Rejected), Some(TaskState::Failed));
        assert_eq!(state(A::Submitted), None);
    }

    proptest::proptest! {
        /// Any parts a caller or an agent sends are converted without a panic, and valid
        /// ACP text and data parts come back as they went.
        #[test]
        fn any_parts_convert_without_panic(
            v in proptest::collection::vec(crate::test_support::arb_json(), 0..6),
            texts in proptest::collection::vec("\\PC{0,20}", 1..4),
        ) {
            let out = parts_to_a2a(&v);
            let _ = parts_to_acp(&out);
            for p in &v {
                if let Ok(part) = Part::from_value(p.clone()) {
                    let _ = parts_to_acp(&[part]);
                }
            }
            let acp: Vec<Value> = texts
                .iter()
                .map(|t| json!({"type": "text", "content": t}))
                .collect();
            proptest::prop_assert_eq!(parts_to_acp(&parts_to_a2a(&acp)), acp);
        }
    }
}
