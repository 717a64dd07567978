//! The CLI client: `acp-relay link`, `connect`, `send`, `recv`, `watch`, `peers`, `status`,
//! `tasks` and `task …`, subcommands of the one binary that talk to a running node's REST
//! API, so a person needs neither curl nor a JSON parser. Output is for a person (aligned
//! columns, local times, colour on a terminal) unless `--json`, which prints the API's
//! answer as is for scripts. Every failure is one line on stderr and a non-zero exit
//! ([`error`] lists the codes).
//!
//! Files: [`client`] (HTTP on hyper's client connection), [`node_url`] (`--node`),
//! [`locate`] (which node: `--node`, `--name`, the default),
//! [`token`] (where the API token comes from), [`sse`] (the event stream for `watch`),
//! [`format`] (what a person sees), [`commands`] (one function per subcommand).

pub mod client;
pub mod commands;
pub mod error;
pub mod format;
pub mod locate;
pub mod node_url;
pub mod sse;
pub mod token;

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Options every client subcommand takes: which node, which token, which output.
#[derive(Debug, Clone, Args)]
pub struct NodeOpts {
    /// The node's REST API: `http://host:port` (a bare port means 127.0.0.1). Default: the
    /// node named by --name, else the local node on 127.0.0.1:7901.
    #[arg(long, env = "ACP_NODE")]
    pub node: Option<String>,

    /// The local node to talk to, by the name it was started with (`serve --name`, or the
    /// host name `acp-relay install` gave it: claude-code, cursor, …).
    #[arg(long, env = "ACP_NAME")]
    pub name: Option<String>,

    /// The node's API token (for a node started with --api-token). Default: ACP_API_TOKEN,
    /// then --token-file, then the api_token file in the local node's data dir.
    #[arg(long, env = "ACP_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Read the API token from this file (its first line).
    #[arg(long, env = "ACP_API_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// The local node's data dir, where it keeps its address file and (when started with
    /// --api-token) its token file. Default: the data dir `serve` uses for --name.
    #[arg(long, env = "ACP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Print the API's JSON answer as is (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// The client subcommands (flattened into the binary's command list).
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Print this node's acp:// link, to give to the other agent.
    Link {
        #[command(flatten)]
        opts: NodeOpts,
    },
    /// Connect to another agent by its link (and wait until the connection is up).
    Connect {
        /// The other agent's acp:// link.
        link: String,
        /// A display name for the peer (default: its agent name).
        #[arg(long)]
        peer_name: Option<String>,
        /// Seconds to wait for the connection (0: return at once).
        #[arg(long, default_value_t = 10.0)]
        wait: f64,
        #[command(flatten)]
        opts: NodeOpts,
    },
    /// Send a message: text, JSON data and file links.
    Send {
        /// The text (optional when --data or --file is given).
        text: Option<String>,
        /// The peer: id, display name or agent name (default: the only peer).
        #[arg(long)]
        peer: Option<String>,
        /// The conversation (context id).
        #[arg(long)]
        context: Option<String>,
        /// A JSON data part (repeatable).
        #[arg(long)]
        data: Vec<String>,
        /// A file part, by URL (repeatable).
        #[arg(long)]
        file: Vec<String>,
        /// The task this message belongs to.
        #[arg(long)]
        task: Option<String>,
        /// The sender's role.
        #[arg(long, default_value = "user", value_parser = ["user", "agent"])]
        role: String,
        #[command(flatten)]
        opts: NodeOpts,
    },
    /// Print unread messages (and mark them read).
    Recv {
        /// Seconds to wait for a message when none is unread (the node caps it at 60).
        #[arg(long, default_value_t = 0.0)]
        wait: f64,
        /// At most this many messages.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        opts: NodeOpts,
    },
    /// Print live events (messages, tasks, peers), one line each, until Ctrl-C.
    Watch {
        /// Start after this event seq (0: everything retained), instead of from now.
        #[arg(long)]
        since: Option<u64>,
        #[command(flatten)]
        opts: NodeOpts,
    },
    /// List the peers and their connection state.
    Peers {
        #[command(flatten)]
        opts: NodeOpts,
    },
    /// Show the node's state and counters.
    Status {
        #[command(flatten)]
        opts: NodeOpts,
    },
    /// List tasks, newest first.
    Tasks {
        /// Only tasks in this state.
        #[arg(long)]
        status: Option<String>,
        /// Only tasks shared with this peer.
        #[arg(long)]
        peer: Option<String>,
        /// Only tasks of this conversation.
        #[arg(long)]
        context: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        opts: NodeOpts,
    },
    /// Read, create, update or cancel one task.
    Task {
        #[command(subcommand)]
        action: TaskAction,
    },
}

/// `acp-relay task …`.
#[derive(Debug, Subcommand)]
pub enum TaskAction {
    /// Show one task.
    Get {
        /// The task id.
        id: String,
        #[command(flatten)]
        opts: NodeOpts,
    },
    /// Create a task (and with --delegate, hand it to a peer).
    Create {
        /// What the task asks for.
        text: Option<String>,
        /// A JSON data part (repeatable).
        #[arg(long)]
        data: Vec<String>,
        /// The task id (default: a new task_… id).
        #[arg(long)]
        id: Option<String>,
        /// The conversation (context id).
        #[arg(long)]
        context: Option<String>,
        /// The peer the task is shared with.
        #[arg(long)]
        peer: Option<String>,
        /// Send it to the peer (--peer, else the only one) as a delegated task.
        #[arg(long)]
        delegate: bool,
        #[command(flatten)]
        opts: NodeOpts,
    },
    /// Change a task's state, add a result or an error.
    Update {
        /// The task id.
        id: String,
        /// The new state (submitted, working, input_required, completed, failed, canceled).
        #[arg(long)]
        status: Option<String>,
        /// A text result to attach as an artifact.
        #[arg(long)]
        artifact: Option<String>,
        /// A JSON result to attach as an artifact (repeatable).
        #[arg(long)]
        artifact_data: Vec<String>,
        /// The error of a failed task.
        #[arg(long)]
        error: Option<String>,
        #[command(flatten)]
        opts: NodeOpts,
    },
    /// Cancel a task.
    Cancel {
        /// The task id.
        id: String,
        #[command(flatten)]
        opts: NodeOpts,
    },
}

impl ClientCommand {
    fn opts(&self) -> &NodeOpts {
        match self {
            ClientCommand::Link { opts }
            | ClientCommand::Connect { opts, .. }
            | ClientCommand::Send { opts, .. }
            | ClientCommand::Recv { opts, .. }
            | ClientCommand::Watch { opts, .. }
            | ClientCommand::Peers { opts }
            | ClientCommand::Status { opts }
            | ClientCommand::Tasks { opts, .. } => opts,
            ClientCommand::Task { action } => match action {
                TaskAction::Get { opts, .. }
                | TaskAction::Create { opts, .. }
                | TaskAction::Update { opts, .. }
                | TaskAction::Cancel { opts, .. } => opts,
            },
        }
    }
}

/// Runs a client subcommand; the exit code is 0 on success, else [`error`]'s.
pub async fn run(cmd: ClientCommand) -> std::process::ExitCode {
    match commands::run(&cmd, cmd.opts()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("acp-relay: {}", e.message);
            std::process::ExitCode::from(e.exit)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Subcommand;

    /// clap checks a command's definition only when it is parsed: this finds clashes such as
    /// two arguments named the same (a flattened option and a subcommand's own) in a test
    /// instead of in a user's shell.
    #[test]
    fn the_command_definitions_are_consistent() {
        super::ClientCommand::augment_subcommands(clap::Command::new("acp-relay")).debug_assert();
    }
}
