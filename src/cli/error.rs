//! What a client command failed with: one line for the person, an exit code for scripts.

/// The node answered with an error (`error_code` and message printed).
pub const EXIT_NODE_ERROR: u8 = 1;
/// The command line was wrong (bad `--data` JSON, bad `--node`, missing argument).
pub const EXIT_USAGE: u8 = 2;
/// No node answered at `--node` (refused, timed out, or not acp-relay).
pub const EXIT_UNREACHABLE: u8 = 3;
/// The node wants an API token and got none, or a wrong one.
pub const EXIT_UNAUTHORIZED: u8 = 4;

/// A failed client command.
#[derive(Debug, Clone)]
pub struct CliError {
    /// The process exit code.
    pub exit: u8,
    /// One line, without the `acp-relay: ` prefix.
    pub message: String,
}

impl CliError {
    /// A mistake on the command line.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            exit: EXIT_USAGE,
            message: one_line(message.into()),
        }
    }

    /// No node to talk to.
    pub fn unreachable(message: impl Into<String>) -> CliError {
        CliError {
            exit: EXIT_UNREACHABLE,
            message: one_line(message.into()),
        }
    }

    /// The node refused the request (or answered something unusable).
    pub fn node(message: impl Into<String>) -> CliError {
        CliError {
            exit: EXIT_NODE_ERROR,
            message: one_line(message.into()),
        }
    }
}

/// Folds a message onto one line, so every failure is exactly one line on stderr.
fn one_line(s: String) -> String {
    if s.contains(['\n', '\r']) {
        s.split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s
    }
}
