//! Our entry in Codex's `config.toml` (`[mcp_servers.acp-relay]`), edited with `toml_edit`
//! so the user's comments, key order and formatting survive; only our table changes. A file
//! that is not valid TOML is refused.

use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value};

use super::edit::{Change, Edit, Entry, SERVER};

/// The table holding Codex's servers.
const KEY: &str = "mcp_servers";

fn parse(text: &str) -> Result<DocumentMut, String> {
    text.parse::<DocumentMut>().map_err(|e| {
        let first = e.to_string();
        let first = first.lines().next().unwrap_or("").trim().to_owned();
        format!("is not valid TOML ({first}); fix it or add the entry by hand")
    })
}

fn args_array(args: &[String]) -> Array {
    args.iter().map(String::as_str).collect()
}

/// Our entry as a TOML snippet (what `--dry-run` shows).
fn show(entry: &dyn TableLike) -> String {
    let mut doc = DocumentMut::new();
    let mut servers = Table::new();
    servers.set_implicit(true);
    let mut ours = Table::new();
    for (k, item) in entry.iter() {
        ours.insert(k, item.clone());
    }
    servers.insert(SERVER, Item::Table(ours));
    doc.insert(KEY, Item::Table(servers));
    doc.to_string().trim().to_owned()
}

fn matches(existing: &dyn TableLike, entry: &Entry) -> bool {
    let command = existing.get("command").and_then(Item::as_str);
    let args: Option<Vec<&str>> = existing
        .get("args")
        .and_then(Item::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let args_len = existing
        .get("args")
        .and_then(Item::as_array)
        .map(Array::len);
    command == Some(entry.command.as_str())
        && args_len == Some(entry.args.len())
        && args.is_some_and(|a| a.iter().zip(&entry.args).all(|(x, y)| x == y))
}

/// Adds or updates `[mcp_servers.acp-relay]`; an entry already there keeps the keys we do
/// not set (`env`, `startup_timeout_sec`…).
pub fn install(text: &str, entry: &Entry) -> Result<Edit, String> {
    let mut doc = parse(text)?;
    if doc.get(KEY).is_none() {
        let mut servers = Table::new();
        servers.set_implicit(true);
        doc.insert(KEY, Item::Table(servers));
    }
    // Under `mcp_servers = { … }` only an inline table can go.
    let inline = !matches!(doc.get(KEY), Some(Item::Table(_)));
    let servers = doc
        .get_mut(KEY)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| format!("has a \"{KEY}\" that is not a table"))?;
    let change = match servers.get_mut(SERVER) {
        Some(item) => match item.as_table_like_mut() {
            Some(existing) if matches(existing, entry) => Change::Unchanged,
            Some(existing) => {
                let before = show(existing);
                existing.insert("command", toml_edit::value(entry.command.as_str()));
                existing.insert("args", toml_edit::value(args_array(&entry.args)));
                Change::Updated { before }
            }
            None => return Err(format!("has a \"{KEY}.{SERVER}\" that is not a table")),
        },
        None => {
            let mut ours = Table::new();
            ours.insert("command", toml_edit::value(entry.command.as_str()));
            ours.insert("args", toml_edit::value(args_array(&entry.args)));
            let item = if inline {
                Item::Value(Value::InlineTable(ours.into_inline_table()))
            } else {
                Item::Table(ours)
            };
            servers.insert(SERVER, item);
            Change::Added
        }
    };
    let shown = show(
        servers
            .get(SERVER)
            .and_then(Item::as_table_like)
            .ok_or("lost its entry")?,
    );
    Ok(Edit::installed(change, shown, text, || doc.to_string()))
}

/// Removes `[mcp_servers.acp-relay]` (and only it).
pub fn uninstall(text: &str) -> Result<Edit, String> {
    let mut doc = parse(text)?;
    let removed = match doc.get_mut(KEY) {
        None => None,
        Some(item) => item
            .as_table_like_mut()
            .ok_or_else(|| format!("has a \"{KEY}\" that is not a table"))?
            .remove(SERVER),
    };
    let removed = removed.map(|item| item.as_table_like().map(show).unwrap_or_default());
    Ok(Edit::uninstalled(removed, text, || doc.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> Entry {
        Entry {
            command: "/opt/acp-relay".into(),
            args: vec!["mcp".into(), "--name".into(), "codex".into()],
        }
    }

    const CONFIG: &str = r#"# my codex settings
model = "o3"  # the model

[mcp_servers.other]
# keep this one
command = "other"
args = ["a", "b"]

[profiles.fast]
model = "mini"
"#;

    #[test]
    fn install_keeps_comments_and_uninstall_gives_the_file_back() {
        let edit = install(CONFIG, &entry()).unwrap();
        assert_eq!(edit.change, Change::Added);
        assert!(edit.text.starts_with(CONFIG.lines().next().unwrap()));
        for line in CONFIG.lines() {
            assert!(edit.text.contains(line), "lost {line:?} in\n{}", edit.text);
        }
        assert!(
            edit.text.contains("[mcp_servers.acp-relay]"),
            "{}",
            edit.text
        );
        assert!(edit.entry.contains("command = \"/opt/acp-relay\""));
        let again = install(&edit.text, &entry()).unwrap();
        assert_eq!(again.change, Change::Unchanged);
        let back = uninstall(&edit.text).unwrap();
        assert_eq!(back.change, Change::Removed);
        assert_eq!(back.text, CONFIG);
        assert_eq!(uninstall(&back.text).unwrap().change, Change::Absent);
    }

    #[test]
    fn new_files_inline_tables_and_updates() {
        let edit = install("", &entry()).unwrap();
        assert!(
            edit.text.starts_with("[mcp_servers.acp-relay]"),
            "{}",
            edit.text
        );
        let inline = "mcp_servers = { other = { command = \"o\" } }\n";
        let edit = install(inline, &entry()).unwrap();
        let doc: DocumentMut = edit.text.parse().unwrap();
        assert_eq!(doc[KEY][SERVER]["command"].as_str(), Some("/opt/acp-relay"));
        assert_eq!(doc[KEY]["other"]["command"].as_str(), Some("o"));
        let old = "[mcp_servers.acp-relay]\ncommand = \"/old\"\nargs = []\nenv = { A = \"1\" }\n";
        let edit = install(old, &entry()).unwrap();
        assert!(matches!(edit.change, Change::Updated { ref before } if before.contains("/old")));
        let doc: DocumentMut = edit.text.parse().unwrap();
        assert_eq!(doc[KEY][SERVER]["env"]["A"].as_str(), Some("1"));
        assert_eq!(doc[KEY][SERVER]["args"].as_array().map(Array::len), Some(3));
    }

    #[test]
    fn bad_files_are_refused_in_one_line() {
        for bad in [
            "[mcp_servers",
            "mcp_servers = 3",
            "a = = b",
            "[mcp_servers]\nacp-relay = 1",
        ] {
            let err = install(bad, &entry()).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(uninstall("[mcp_servers").is_err());
        assert!(uninstall("mcp_servers = 3").is_err());
    }

    proptest! {
        #[test]
        fn prop_any_text_is_edited_or_refused_without_panic(text in "[a-z_=\\[\\]\"{}#., \n0-9-]{0,120}") {
            if let Ok(edit) = install(&text, &entry()) {
                prop_assert!(edit.text.parse::<DocumentMut>().is_ok(), "{}", edit.text);
                if let Ok(back) = uninstall(&edit.text) {
                    prop_assert!(back.text.parse::<DocumentMut>().is_ok());
                }
            }
        }
    }
}
