//! Our entry in a JSON host config (`mcpServers` or VS Code's `servers`): every other key
//! and server stays as it was, in its order (serde_json's `preserve_order`), written back
//! with two-space indentation. A file that is not a JSON object (including JSONC with
//! comments) is refused, so nothing the user wrote is lost.

use serde_json::{Map, Value};

use super::edit::{Change, Edit, Entry, SERVER};

/// Parses the file, an empty (or missing: pass "") file being `{}`.
fn parse(text: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("is not a JSON object".into()),
        Err(e) => Err(format!(
            "is not valid JSON ({e}); fix it or add the entry by hand"
        )),
    }
}

/// The file's text for `root`, ending in a newline like the original did (new files do).
fn render(root: &Map<String, Value>, original: &str) -> String {
    let mut text = serde_json::to_string_pretty(root).unwrap_or_default();
    if original.trim().is_empty() || original.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn show(v: &Value) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ SERVER: v })).unwrap_or_default()
}

/// The fields of our entry; `typed` adds `"type": "stdio"` (VS Code, Claude Code).
fn fields(entry: &Entry, typed: bool) -> Vec<(&'static str, Value)> {
    let mut f = Vec::new();
    if typed {
        f.push(("type", Value::from("stdio")));
    }
    f.push(("command", Value::from(entry.command.clone())));
    f.push(("args", Value::from(entry.args.clone())));
    f
}

/// Adds or updates our entry under `key`. An entry already there keeps the keys we do not
/// set (an `env` the user added); it is "unchanged" when the ones we set are equal.
pub fn install(text: &str, key: &str, entry: &Entry, typed: bool) -> Result<Edit, String> {
    let mut root = parse(text)?;
    let servers = root
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(servers) = servers else {
        return Err(format!("has a \"{key}\" that is not an object"));
    };
    let wanted = fields(entry, typed);
    let change = match servers.get_mut(SERVER) {
        Some(Value::Object(existing)) => {
            if wanted.iter().all(|(k, v)| existing.get(*k) == Some(v)) {
                Change::Unchanged
            } else {
                let before = show(&Value::Object(existing.clone()));
                for (k, v) in wanted {
                    existing.insert(k.to_owned(), v);
                }
                Change::Updated { before }
            }
        }
        Some(other) => {
            let before = show(other);
            *other = Value::Object(wanted.into_iter().map(|(k, v)| (k.into(), v)).collect());
            Change::Updated { before }
        }
        None => {
            let obj = wanted.into_iter().map(|(k, v)| (k.into(), v)).collect();
            servers.insert(SERVER.to_owned(), Value::Object(obj));
            Change::Added
        }
    };
    let shown = show(&servers[SERVER]);
    Ok(Edit::installed(change, shown, text, || render(&root, text)))
}

/// Removes our entry (and only it) from under `key`.
pub fn uninstall(text: &str, key: &str) -> Result<Edit, String> {
    let mut root = parse(text)?;
    let removed = match root.get_mut(key) {
        None => None,
        Some(Value::Object(servers)) => servers.shift_remove(SERVER),
        Some(_) => return Err(format!("has a \"{key}\" that is not an object")),
    };
    Ok(Edit::uninstalled(removed.as_ref().map(show), text, || {
        render(&root, text)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> Entry {
        Entry {
            command: "/opt/acp-relay".into(),
            args: vec!["mcp".into(), "--name".into(), "cursor".into()],
        }
    }

    const CONFIG: &str = r#"{
  "theme": "dark",
  "mcpServers": {
    "other": {
      "command": "other-server",
      "args": ["x"]
    },
    "zeta": {"url": "http://127.0.0.1:1/mcp"}
  },
  "last": [1, 2.5, null, true]
}
"#;

    #[test]
    fn install_adds_one_entry_and_uninstall_gives_back_the_rest() {
        let before: Value = serde_json::from_str(CONFIG).unwrap();
        let edit = install(CONFIG, "mcpServers", &entry(), false).unwrap();
        assert_eq!(edit.change, Change::Added);
        let mut after: Value = serde_json::from_str(&edit.text).unwrap();
        let ours = after["mcpServers"]
            .as_object_mut()
            .unwrap()
            .shift_remove(SERVER)
            .unwrap();
        assert_eq!(ours["command"], "/opt/acp-relay");
        assert_eq!(after, before);
        let keys: Vec<_> = after.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["theme", "mcpServers", "last"], "order kept");

        let again = install(&edit.text, "mcpServers", &entry(), false).unwrap();
        assert_eq!(again.change, Change::Unchanged);
        assert_eq!(again.text, edit.text);

        let removed = uninstall(&edit.text, "mcpServers").unwrap();
        assert_eq!(removed.change, Change::Removed);
        assert_eq!(
            serde_json::from_str::<Value>(&removed.text).unwrap(),
            before
        );
        assert_eq!(
            uninstall(&removed.text, "mcpServers").unwrap().change,
            Change::Absent
        );
    }

    #[test]
    fn a_moved_binary_updates_the_entry_and_keeps_the_users_env() {
        let old = r#"{"servers": {"acp-relay": {"type": "stdio", "command": "/old", "args": [], "env": {"A": "1"}}}}"#;
        let edit = install(old, "servers", &entry(), true).unwrap();
        assert!(matches!(edit.change, Change::Updated { ref before } if before.contains("/old")));
        let v: Value = serde_json::from_str(&edit.text).unwrap();
        assert_eq!(v["servers"][SERVER]["command"], "/opt/acp-relay");
        assert_eq!(v["servers"][SERVER]["env"]["A"], "1");
        assert_eq!(v["servers"][SERVER]["type"], "stdio");
    }

    #[test]
    fn empty_files_are_created_and_bad_ones_refused() {
        let edit = install("", "mcpServers", &entry(), false).unwrap();
        assert!(edit.text.ends_with("}\n") && edit.text.contains("\n  \"mcpServers\""));
        for bad in ["{", "[]", "// c\n{}", r#"{"mcpServers": []}"#, "{\"a\":1,}"] {
            let err = install(bad, "mcpServers", &entry(), false).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
            assert!(uninstall(bad, "mcpServers").is_err(), "{bad}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z ]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z-]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn prop_any_text_is_edited_or_refused_without_panic(text in ".{0,120}") {
            if let Ok(edit) = install(&text, "mcpServers", &entry(), false) {
                prop_assert!(serde_json::from_str::<Value>(&edit.text).is_ok());
            }
            let _ = uninstall(&text, "mcpServers");
        }

        #[test]
        fn prop_install_then_uninstall_keeps_every_other_value(
            other in prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..5),
            servers in prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..4),
        ) {
            let mut root: Map<String, Value> = other.into_iter().collect();
            root.insert("mcpServers".into(), Value::Object(servers.into_iter().collect()));
            let text = serde_json::to_string_pretty(&root).unwrap();
            let edit = install(&text, "mcpServers", &entry(), false).unwrap();
            prop_assert_eq!(&edit.change, &Change::Added);
            let back = uninstall(&edit.text, "mcpServers").unwrap();
            prop_assert_eq!(back.text.trim_end(), text.as_str());
        }
    }
}
