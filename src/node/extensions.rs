//! Extensions: URI-named promises of extra behaviour an agent declares in its card
//! (`extensions: [{uri, required, params?}]`), registered at run time through
//! `POST /extensions/register` as in the reference, and persisted with the card's other
//! edits. A URI is an `http(s)` URL (a spec the extension's author publishes) or the
//! protocol's own short form `acp:ext:<name>-v<version>`. The node never fetches either: a
//! URI only names the extension.

use serde_json::{Map, Value, json};

use super::Node;
use super::error::{NodeError, NodeResult};

/// Most extensions a card carries: each one is sent to every peer with the card.
pub const MAX_EXTENSIONS: usize = 64;
/// Longest URI accepted.
pub const MAX_URI_LEN: usize = 512;
/// Largest `params` object, serialized.
pub const MAX_PARAMS_BYTES: usize = 4096;

/// Checks an extension URI: `acp:ext:<name>-v<version>` (name of lower-case letters,
/// digits, `.`, `_`, `-`; version digits, dot-separated) or an absolute `http(s)` URL.
pub fn check_uri(uri: &str) -> Result<(), String> {
    if uri.is_empty() {
        return Err("'uri' is required and must be a non-empty string".into());
    }
    if uri.len() > MAX_URI_LEN {
        return Err(format!("'uri' is longer than {MAX_URI_LEN} bytes"));
    }
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("'uri' contains spaces or control characters".into());
    }
    if let Some(rest) = uri.strip_prefix("acp:ext:") {
        let valid = rest.rsplit_once("-v").is_some_and(|(name, version)| {
            name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && name.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
                && !version.is_empty()
                && version
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        });
        if !valid {
            return Err(format!(
                "'uri' {uri:?} is not of the form acp:ext:<name>-v<version> (e.g. acp:ext:billing-v1)"
            ));
        }
        return Ok(());
    }
    match url::Url::parse(uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(format!(
            "'uri' {uri:?} must be an http(s) URL or acp:ext:<name>-v<version>"
        )),
    }
}

/// The entry a register body describes, checked (the reference's shape: `params` left out
/// when empty).
pub fn entry_from_body(body: &Value) -> NodeResult<Value> {
    let Some(obj) = body.as_object() else {
        return Err(NodeError::invalid("request body must be a JSON object"));
    };
    if let Some(bad) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "uri" | "required" | "params"))
    {
        return Err(NodeError::invalid(format!(
            "unknown field '{bad}'; an extension is {{\"uri\", \"required\"?, \"params\"?}}"
        )));
    }
    let uri = match obj.get("uri") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => {
            return Err(NodeError::invalid("'uri' is required and must be a string"));
        }
        Some(_) => return Err(NodeError::invalid("'uri' must be a string")),
    };
    check_uri(uri).map_err(NodeError::invalid)?;
    let required = match obj.get("required") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(NodeError::invalid("'required' must be true or false")),
    };
    let params = match obj.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(NodeError::invalid("'params' must be a JSON object")),
    };
    if Value::Object(params.clone()).to_string().len() > MAX_PARAMS_BYTES {
        return Err(NodeError::invalid(format!(
            "'params' is larger than {MAX_PARAMS_BYTES} bytes"
        )));
    }
    let mut entry = json!({"uri": uri, "required": required});
    if !params.is_empty() {
        entry["params"] = Value::Object(params);
    }
    Ok(entry)
}

impl Node {
    /// `GET /extensions`: the registered extensions (the card's block also lists the
    /// built-in ones).
    pub fn extensions(&self) -> Value {
        let list = self
            .inner
            .card
            .read()
            .map(|c| c.edits.extensions.clone())
            .unwrap_or_default();
        json!({"extensions": list, "count": list.len()})
    }

    /// `POST /extensions/register`: adds or replaces (same `uri`) an extension, moved to
    /// the end; persisted and sent to peers with the card.
    pub fn register_extension(&self, body: &Value) -> NodeResult<Value> {
        let entry = entry_from_body(body)?;
        let uri = entry["uri"].clone();
        self.change_card(|card| {
            let list = &mut card.edits.extensions;
            list.retain(|e| e["uri"] != uri);
            if list.len() >= MAX_EXTENSIONS {
                return Err(NodeError::invalid(format!(
                    "this card already has {MAX_EXTENSIONS} extensions, the most it takes; \
                     unregister one first"
                )));
            }
            list.push(entry);
            Ok(())
        })?;
        let list = self.extensions()["extensions"].clone();
        tracing::info!(uri = %uri, "extension registered");
        Ok(json!({"ok": true, "extensions": list}))
    }

    /// `POST /extensions/unregister {"uri"}`: removes it (`removed: 0` when it was not
    /// there, as in the reference).
    pub fn unregister_extension(&self, body: &Value) -> NodeResult<Value> {
        let Some(obj) = body.as_object() else {
            return Err(NodeError::invalid("request body must be a JSON object"));
        };
        if let Some(bad) = obj.keys().find(|k| k.as_str() != "uri") {
            return Err(NodeError::invalid(format!(
                "unknown field '{bad}'; the body is {{\"uri\"}}"
            )));
        }
        let uri = match obj.get("uri") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(NodeError::invalid("'uri' is required"));
            }
            Some(_) => return Err(NodeError::invalid("'uri' must be a string")),
        };
        let present = self
            .inner
            .card
            .read()
            .map(|c| c.edits.extensions.iter().any(|e| e["uri"] == uri.as_str()))
            .unwrap_or(false);
        if present {
            self.change_card(|card| {
                card.edits.extensions.retain(|e| e["uri"] != uri.as_str());
                Ok(())
            })?;
            tracing::info!(uri, "extension unregistered");
        }
        let list = self.extensions()["extensions"].clone();
        Ok(json!({"ok": true, "removed": usize::from(present), "extensions": list}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uris_of_both_forms_are_taken_and_others_refused() {
        for good in [
            "acp:ext:billing-v1",
            "acp:ext:hmac-v1",
            "acp:ext:multi-part_name.x-v2.10",
            "https://example.com/ext/billing",
            "http://127.0.0.1:9/spec",
        ] {
            check_uri(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "acp:ext:",
            "acp:ext:billing",
            "acp:ext:billing-v",
            "acp:ext:billing-vx",
            "acp:ext:Billing-v1",
            "acp:ext:-v1",
            "acp:ext:bill ing-v1",
            "urn:x:y",
            "ftp://example.com/x",
            "billing",
            "https://",
            "javascript:alert(1)",
        ] {
            assert!(check_uri(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn register_bodies_are_checked_and_shaped_as_the_reference() {
        let e = entry_from_body(&json!({"uri": "acp:ext:billing-v1"})).unwrap();
        assert_eq!(e, json!({"uri": "acp:ext:billing-v1", "required": false}));
        let e = entry_from_body(
            &json!({"uri": "https://x.example/e", "required": true, "params": {"tier": "pro"}}),
        )
        .unwrap();
        assert_eq!(e["params"]["tier"], "pro");
        for (bad, why) in [
            (json!({}), "required"),
            (json!({"uri": 5}), "must be a string"),
            (
                json!({"uri": "acp:ext:a-v1", "required": "yes"}),
                "true or false",
            ),
            (json!({"uri": "acp:ext:a-v1", "params": [1]}), "JSON object"),
            (json!({"uri": "acp:ext:a-v1", "extra": 1}), "unknown field"),
            (
                json!({"uri": "acp:ext:a-v1", "params": {"x": "y".repeat(5000)}}),
                "larger",
            ),
            (json!([1]), "JSON object"),
        ] {
            let err = entry_from_body(&bad).unwrap_err();
            assert!(err.message.contains(why), "{bad}: {}", err.message);
        }
    }

    proptest! {
        #![proptest_config(crate::test_support::config(256))]

        /// Any body gives an entry with a valid uri, a boolean `required` and an object or
        /// absent `params`, or an invalid-request error; never a panic.
        #[test]
        fn prop_register_bodies_give_a_clean_entry_or_a_400(
            body in prop_oneof![
                3 => crate::test_support::arb_object().prop_map(Value::Object),
                1 => crate::test_support::arb_json(),
            ],
            uri in prop_oneof![".{0,40}", "acp:ext:[a-z0-9._-]{0,10}-v[0-9.]{0,4}", "https?://[a-z.]{0,12}/[a-z]{0,5}"],
            with_uri in any::<bool>(),
        ) {
            let mut body = body;
            if with_uri && let Some(o) = body.as_object_mut() {
                o.insert("uri".into(), json!(uri));
            }
            match entry_from_body(&body) {
                Ok(e) => {
                    prop_assert!(check_uri(e["uri"].as_str().unwrap()).is_ok());
                    prop_assert!(e["required"].is_boolean());
                    prop_assert!(e.get("params").is_none_or(|p| p.as_object().is_some_and(|o| !o.is_empty())));
                }
                Err(err) => prop_assert_eq!(err.code.http_status(), 400),
            }
        }
    }
}
