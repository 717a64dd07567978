//! The `acp-relay` command line.

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use acp_relay::Server;
use acp_relay::config::NodeArgs;

/// mimalloc instead of glibc's malloc: the send path allocates many small, short-lived JSON
/// values across threads, where glibc's malloc (with its consolidation passes) took about a
/// tenth of the node's CPU in the load benchmark's profile. Built without transparent huge
/// pages, which would add ~10 MB of RSS to every idle node.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "acp-relay",
    version = acp_relay::LONG_VERSION,
    about = "Agent-to-agent messaging for MCP hosts: an ACP relay node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a headless node: peer WebSocket, REST/SSE API, and MCP over Streamable HTTP at /mcp.
    Serve(NodeArgs),
    /// What an MCP host launches: MCP over stdio plus the same node (its REST/SSE port keeps
    /// working beside the LLM). If the ports or the data dir are taken by another instance,
    /// it uses free ports and its own data dir, and says so on stderr and in acp_status.
    Mcp(NodeArgs),
    /// Run a relay server for nodes behind NAT (`serve|mcp --relay URL` on each of them):
    /// hole punching and, where that fails, relayed end-to-end encrypted traffic. It keeps
    /// nothing.
    Relay(acp_relay::relay::RelayArgs),
    /// Add an `acp-relay` entry (this binary, `mcp --name <host>`, the host's own ports) to
    /// an MCP host's user config, keeping everything else; `--host all` for every host found.
    Install(acp_relay::install::InstallArgs),
    /// Remove the `acp-relay` entry from an MCP host's user config (only that entry).
    Uninstall(acp_relay::install::UninstallArgs),
    /// Client subcommands for a running node's REST API (`link`, `send`, `recv`, `watch`, …).
    #[command(flatten)]
    Client(acp_relay::cli::ClientCommand),
    /// `backup`, `export`, `restore`: the store as files.
    #[command(flatten)]
    Store(acp_relay::store_tools::StoreCommand),
}

/// Colour only for a person at a terminal: MCP hosts capture stderr into log files and pipes,
/// where escape codes are noise, and `NO_COLOR` (any non-empty value) turns it off anywhere.
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// `ACP_LOG`, else `RUST_LOG`, else `info`: `level` or `target=level` directives, comma
/// separated (`info,acp_relay::node::store=debug`). A target filter, not tracing's
/// `EnvFilter`: that one's span and field matchers bring a regex engine into the binary
/// (about 0.3 MB of the released size) for filters nobody sets here.
fn log_filter() -> Targets {
    ["ACP_LOG", "RUST_LOG"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .find_map(|value| value.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

fn init_logging() {
    // The filter is the only level gate: `fmt()`'s own builder would stop everything below
    // INFO before it.
    tracing_subscriber::registry()
        .with(log_filter())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colour_logs()),
        )
        .init();
}

/// SIGINT/SIGTERM listeners, registered before the node starts: a signal that arrives while
/// it starts (a host or launcher stopping it right away) is then kept and handled as a
/// graceful stop, instead of killing the process by the default action.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn register() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .ok();
            Signals { streams }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// Resolves at the first SIGINT or SIGTERM (Ctrl-C elsewhere).
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((int, term)) = self.streams.as_mut() {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> std::process::ExitCode {
    init_logging();
    let cli = Cli::parse();
    // Before the runtime and its signal handlers, so that Ctrl-C stops a long backup at once.
    if let Command::Store(command) = &cli.command {
        return command.run();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("acp-relay: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    // `acp-relay mcp` reads stdin on one of tokio's blocking threads, and a read in progress
    // holds that thread until the host writes or closes stdin. After SIGTERM/Ctrl-C the node
    // has already shut down (the store is flushed), so do not wait for it: dropping the
    // runtime would, and the process would ignore the signal until stdin closed.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// `acp-relay relay`: runs until SIGINT/SIGTERM.
async fn run_relay(
    args: &acp_relay::relay::RelayArgs,
    signals: &mut Signals,
) -> std::process::ExitCode {
    let relay = match acp_relay::relay::start(args).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("acp-relay: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_owned(), |a| a.to_string());
    eprintln!(
        "acp-relay: relay up: https {}  quic {}  http {}",
        show(relay.https_addr()),
        show(relay.quic_addr()),
        show(relay.http_addr())
    );
    signals.recv().await;
    tracing::info!("relay shutting down");
    relay.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// The command's work on the runtime; returns the process's exit code.
async fn run(cli: Cli) -> std::process::ExitCode {
    // Before the signal handlers: Ctrl-C ends a client command (`watch`) at once.
    let command = match cli.command {
        Command::Client(cmd) => return acp_relay::cli::run(cmd).await,
        other => other,
    };
    let mut signals = Signals::register();
    let (args, mcp) = match command {
        Command::Serve(args) => (args, false),
        Command::Mcp(args) => (args, true),
        Command::Relay(args) => return run_relay(&args, &mut signals).await,
        Command::Install(args) => return acp_relay::install::install(&args),
        Command::Uninstall(args) => return acp_relay::install::uninstall(&args),
        Command::Client(_) => unreachable!("handled above"),
        Command::Store(_) => unreachable!("handled before the runtime starts"),
    };
    let mut config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("acp-relay: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    config.instance_fallback = mcp;
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("acp-relay: {}", e.message);
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("acp-relay: link {}", server.node.link());
    eprintln!(
        "acp-relay: REST API {}  (MCP: {}/mcp)",
        server.base_url(),
        server.base_url()
    );
    if mcp {
        // stdout belongs to MCP; the session ends when the host closes stdin.
        let node = server.node.clone();
        tokio::select! {
            r = acp_relay::mcp::serve_stdio(node) => {
                if let Err(e) = r {
                    eprintln!("acp-relay: {e}");
                }
            }
            _ = signals.recv() => {}
        }
    } else {
        signals.recv().await;
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}
