//! What the installer puts into a config file and what an edit did, shared by the JSON and
//! TOML editors so the command reports both the same way.

/// The server key of our entry in every host's config: the one entry `install` writes and
/// the only one `uninstall` removes.
pub const SERVER: &str = "acp-relay";

/// Our entry: how a host starts this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What the host runs: the binary's absolute path, or `uvx` / `npx` (`launcher.rs`).
    pub command: String,
    /// The launcher's own arguments (`acp-relay`, `-y acp-relay`), then `mcp --name …
    /// --port … --http-port …`.
    pub args: Vec<String>,
}

/// What an edit changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// There was no entry; there is one now.
    Added,
    /// There was a different entry (shown here, as it read); it is ours now.
    Updated {
        /// The old entry's text.
        before: String,
    },
    /// The entry was already there as it should be: nothing to write.
    Unchanged,
    /// The entry was removed.
    Removed,
    /// There was no entry to remove: nothing to write.
    Absent,
}

/// The outcome of an edit on a file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// What changed.
    pub change: Change,
    /// The new text of the file (the old text when nothing changed).
    pub text: String,
    /// Our entry as it reads in the file after install (or before uninstall): what
    /// `--dry-run` and the report show.
    pub entry: String,
}

impl Edit {
    /// The outcome of an install: the file's new text is rendered only when the entry
    /// changed, so an unchanged file keeps its text byte for byte.
    pub fn installed(
        change: Change,
        entry: String,
        old_text: &str,
        render: impl FnOnce() -> String,
    ) -> Edit {
        let text = if change == Change::Unchanged {
            old_text.to_owned()
        } else {
            render()
        };
        Edit {
            change,
            text,
            entry,
        }
    }

    /// The outcome of an uninstall: our entry as it read (`None`: there was none, and the
    /// file keeps its text), the file's text without it.
    pub fn uninstalled(
        removed: Option<String>,
        old_text: &str,
        render: impl FnOnce() -> String,
    ) -> Edit {
        match removed {
            Some(entry) => Edit {
                change: Change::Removed,
                text: render(),
                entry,
            },
            None => Edit {
                change: Change::Absent,
                text: old_text.to_owned(),
                entry: String::new(),
            },
        }
    }

    /// Whether the file must be written.
    pub fn writes(&self) -> bool {
        !matches!(self.change, Change::Unchanged | Change::Absent)
    }
}
