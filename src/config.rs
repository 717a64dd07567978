//! Node configuration: the flags of `acp-relay serve` / `acp-relay mcp`, their `ACP_*`
//! environment equivalents, and every default in one place.

use std::path::PathBuf;

use clap::Args;

/// Default peer WebSocket port (the reference's).
pub const DEFAULT_PORT: u16 = 7801;
/// Default agent name (the reference's).
pub const DEFAULT_NAME: &str = "ACP-Agent";
/// Default largest frame / message body, 1 MiB (the reference's).
pub const DEFAULT_MAX_MSG_SIZE: usize = 1024 * 1024;
/// Default per-peer offline queue limit (the reference's).
pub const DEFAULT_OFFLINE_QUEUE_LIMIT: usize = 100;
/// Default cap on connected peers: above what one person's agents need (the load benchmark
/// holds 1,000), below what would let a holder of the link exhaust memory or file handles.
pub const DEFAULT_MAX_PEERS: usize = 1024;
/// Default age past which retention removes messages: a month of history, and a laptop's
/// disk is safe from a busy pair of agents (issue 16 measured 2.7 GB in 5 minutes of load).
pub const DEFAULT_RETAIN_DAYS: u64 = 30;
/// Default most messages kept: no count limit (age and size bound the store).
pub const DEFAULT_RETAIN_MESSAGES: u64 = 0;
/// Default store size limit in MiB (database + WAL): 2 GB.
pub const DEFAULT_MAX_STORE_MB: u64 = 2048;

/// Default message frames per second one peer may send, sustained: far above what a busy
/// agent sends (a few a second), far below what the node can store (thousands a second), so
/// one peer cannot take all of its write capacity.
pub const DEFAULT_PEER_MSGS_PER_SEC: u64 = 1000;
/// Default burst of message frames: a sender keeps at most 10,000 unconfirmed messages per
/// peer, so a reconnect that re-sends its whole backlog passes at once.
pub const DEFAULT_PEER_MSGS_BURST: u64 = 10_000;
/// Default MiB of message frames per second one peer may send, sustained.
pub const DEFAULT_PEER_MB_PER_SEC: u64 = 16;
/// Default burst in MiB: sixty-four 1 MiB frames (the largest `--max-msg-size` default), or
/// a reconnect's backlog of 10,000 messages of a few KB.
pub const DEFAULT_PEER_MB_BURST: u64 = 64;
/// Default MiB of messages stored from one peer: a quarter of the default `--max-store-mb`,
/// so one peer (a leaked link) cannot push everyone else's history out of the store.
pub const DEFAULT_PEER_MAX_STORE_MB: u64 = 512;
/// Default bound of a blocking A2A `SendMessage`: long enough for an LLM's answer to a short
/// question, short enough for HTTP clients' default timeouts (httpx: none on reads but
/// proxies often cut at 60 s).
pub const DEFAULT_A2A_WAIT_SECS: u64 = 30;
/// Longest a blocking A2A `SendMessage` may be told to wait (an hour).
const MAX_A2A_WAIT_SECS: u64 = 3600;
/// Largest value of the per-peer rate flags (a trillion; more is no limit at all).
const MAX_PEER_LIMIT: u64 = 1_000_000_000_000;

/// Flags shared by every command that runs a node.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Agent name shown to peers; also selects the data sub-directory.
    #[arg(long, env = "ACP_NAME", default_value = DEFAULT_NAME)]
    pub name: String,

    /// Peer WebSocket port (0 = pick a free port).
    #[arg(long, env = "ACP_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// REST/SSE (and MCP) HTTP port; default peer port + 100, or a free port when --port is 0.
    #[arg(long, env = "ACP_HTTP_PORT")]
    pub http_port: Option<u16>,

    /// Address the HTTP API binds to. Keep it on loopback unless you add a front proxy.
    #[arg(long, env = "ACP_HTTP_HOST", default_value = "127.0.0.1")]
    pub http_host: String,

    /// Address the peer WebSocket binds to.
    #[arg(long, env = "ACP_WS_HOST", default_value = "0.0.0.0")]
    pub ws_host: String,

    /// Host name or IP put into this node's acp:// link (default: the LAN address of the
    /// default route, found without sending any packet, else 127.0.0.1).
    #[arg(long, env = "ACP_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// An acp:// link to dial at start-up (and to keep redialling).
    #[arg(long, env = "ACP_JOIN")]
    pub join: Option<String>,

    /// Shared secret: sign outbound frames and verify inbound ones with HMAC-SHA256.
    #[arg(long, env = "ACP_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Allowed clock skew, in seconds, for signed frames (replay window).
    #[arg(long, env = "ACP_HMAC_WINDOW", default_value_t = 300)]
    pub hmac_window: u64,

    /// Accept frames with a wrong or missing signature (log only), like the reference.
    #[arg(long, env = "ACP_HMAC_LENIENT", default_value_t = false)]
    pub hmac_lenient: bool,

    /// The node's Ed25519 keypair file, in the Python reference's format (its --identity):
    /// loaded, or created (mode 0600) when absent. Default: identity.json in the data dir.
    #[arg(long, alias = "identity-file", env = "ACP_IDENTITY")]
    pub identity: Option<PathBuf>,

    /// Do not sign outbound frames with the node's Ed25519 key (the card stays signed).
    /// Peers then show this node's messages as unverified.
    #[arg(long, env = "ACP_NO_SIGN_FRAMES", default_value_t = false)]
    pub no_sign_frames: bool,

    /// Keep frames whose Ed25519 signature is wrong, marked `_ed25519_invalid` (the
    /// reference's warn-only behaviour), instead of refusing them.
    #[arg(long, env = "ACP_ED25519_LENIENT", default_value_t = false)]
    pub ed25519_lenient: bool,

    /// Largest accepted message / frame / HTTP body, in bytes.
    #[arg(long, env = "ACP_MAX_MSG_SIZE", default_value_t = DEFAULT_MAX_MSG_SIZE)]
    pub max_msg_size: usize,

    /// Skills advertised in the AgentCard, comma-separated.
    #[arg(long, env = "ACP_SKILLS")]
    pub skills: Option<String>,

    /// Where the node keeps its store and token (default: the platform data dir,
    /// e.g. ~/.local/share/acp-relay/<name>).
    #[arg(long, env = "ACP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Extra host names accepted in the Host header of HTTP requests (comma-separated), for
    /// a node reachable under a name (`name` or `name:port`); loopback names are always
    /// accepted. Any other Host is refused with 403 (DNS-rebinding protection).
    #[arg(long, env = "ACP_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// A web origin (`https://app.example:8443`) whose pages may call the HTTP API, with CORS
    /// answers and preflight; repeatable. Requests from any other page are refused.
    #[arg(long = "cors-origin", env = "ACP_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Bearer token every HTTP request (REST, SSE, /mcp) must carry; required when
    /// --http-host is not a loopback address. MCP over stdio does not use it.
    #[arg(long, env = "ACP_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Serve the HTTP API on a non-loopback address without --api-token (anyone who can
    /// reach the port can then read and send every message). For experts behind their own
    /// authenticating proxy.
    #[arg(long, env = "ACP_INSECURE_NO_TOKEN", default_value_t = false)]
    pub insecure_no_token: bool,

    /// A credential for A2A clients (`TOKEN`, or `NAME=TOKEN` to name the caller; at least
    /// 16 characters without spaces); repeatable. It opens the A2A routes
    /// (`/.well-known/agent-card.json`, `/a2a/…`) and nothing else. Each credential is one
    /// peer of kind `a2a` (named NAME, or `a2a-` and 8 hex digits of the token's SHA-256).
    #[arg(
        long = "a2a-token",
        env = "ACP_A2A_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub a2a_tokens: Vec<String>,

    /// Let callers on a loopback address use the A2A routes without a token (they are the
    /// peer `a2a-local`). Off by default: any local program or browser-less script could
    /// otherwise write to the inbox.
    #[arg(long, env = "ACP_A2A_OPEN_LOOPBACK", default_value_t = false)]
    pub a2a_open_loopback: bool,

    /// Seconds a blocking A2A `SendMessage` waits for the agent's answer before it returns
    /// the task still `TASK_STATE_WORKING` (the client then polls `GetTask` or subscribes).
    #[arg(long, env = "ACP_A2A_WAIT_SECS", default_value_t = DEFAULT_A2A_WAIT_SECS)]
    pub a2a_wait_secs: u64,

    /// Most peers connected at once; connections past it are refused with a log line.
    #[arg(long, env = "ACP_MAX_PEERS", default_value_t = DEFAULT_MAX_PEERS)]
    pub max_peers: usize,

    /// Announce this node on the LAN over mDNS (`_acp._tcp.local.`: its name, did, peer port
    /// and link token, so anyone on the network can connect) and list the nodes that announce
    /// themselves (`GET /discover`, `acp_peers`). Off by default: it multicasts to the whole
    /// LAN.
    #[arg(long, env = "ACP_LAN_DISCOVERY", default_value_t = false)]
    pub lan_discovery: bool,

    /// Messages kept per disconnected peer before sends to it are refused.
    #[arg(long, env = "ACP_OFFLINE_QUEUE_LIMIT", default_value_t = DEFAULT_OFFLINE_QUEUE_LIMIT)]
    pub offline_queue_limit: usize,

    /// A relay server (`acp-relay relay`) this node may use to reach peers that no direct
    /// connection reaches (behind NAT): hole punching, else relayed end-to-end encrypted
    /// traffic. `https://host:port`, with `?quic=PORT` when its QUIC port is not 7842;
    /// repeatable. Without it only direct connections are made and nothing else is
    /// contacted.
    #[arg(long = "relay", env = "ACP_RELAY", value_delimiter = ',')]
    pub relays: Vec<String>,

    /// A CA certificate (PEM) to trust for the relays, besides the public roots: for a relay
    /// with a self-signed certificate (`acp-relay relay --tls-self-signed … --tls-cert-out`).
    #[arg(long, env = "ACP_RELAY_CA")]
    pub relay_ca: Option<PathBuf>,

    /// UDP port of the QUIC endpoint used with --relay (0 = any free port).
    #[arg(long, env = "ACP_QUIC_PORT", default_value_t = 0)]
    pub quic_port: u16,
    /// Remove messages older than this many days (0 = keep them however old; default 30).
    /// Unconfirmed, queued and open-task messages are never removed. Named here, it wins over
    /// a value saved by `PATCH /retention`.
    #[arg(long, env = "ACP_RETAIN_DAYS")]
    pub retain_days: Option<u64>,

    /// Keep at most this many messages, removing the oldest (0 = no count limit, the default).
    #[arg(long, env = "ACP_RETAIN_MESSAGES")]
    pub retain_messages: Option<u64>,

    /// Keep the store (database + WAL) under this many MiB: retention removes the oldest
    /// messages past 90 % of it, and at the limit sends get 507 (0 = no limit; default 2048).
    #[arg(long, env = "ACP_MAX_STORE_MB")]
    pub max_store_mb: Option<u64>,

    /// Most message frames one peer may send per second, sustained; more are refused with
    /// `rate_limited` and the sender sends them again later (0 = no limit).
    #[arg(long, env = "ACP_PEER_MSGS_PER_SEC", default_value_t = DEFAULT_PEER_MSGS_PER_SEC)]
    pub peer_msgs_per_sec: u64,

    /// Message frames one peer may send at once above that rate (at least 1).
    #[arg(long, env = "ACP_PEER_MSGS_BURST", default_value_t = DEFAULT_PEER_MSGS_BURST)]
    pub peer_msgs_burst: u64,

    /// Most MiB of message frames one peer may send per second, sustained (0 = no limit).
    #[arg(long, env = "ACP_PEER_MB_PER_SEC", default_value_t = DEFAULT_PEER_MB_PER_SEC)]
    pub peer_mb_per_sec: u64,

    /// MiB one peer may send at once above that rate (at least 1).
    #[arg(long, env = "ACP_PEER_MB_BURST", default_value_t = DEFAULT_PEER_MB_BURST)]
    pub peer_mb_burst: u64,

    /// Most MiB of messages the store keeps from one peer; past it new messages from that
    /// peer are refused with `quota_exceeded` until retention removes older ones (0 = no
    /// limit).
    #[arg(long, env = "ACP_PEER_MAX_STORE_MB", default_value_t = DEFAULT_PEER_MAX_STORE_MB)]
    pub peer_max_store_mb: u64,
}

/// Resolved configuration of one node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Agent name.
    pub name: String,
    /// Peer WebSocket bind address and port (port 0 = any).
    pub ws_host: String,
    /// Peer WebSocket port as asked (0 = any).
    pub port: u16,
    /// HTTP bind address.
    pub http_host: String,
    /// HTTP port as asked (0 = any).
    pub http_port: u16,
    /// Host for our link, if the user set one.
    pub advertise_host: Option<String>,
    /// Link to dial at start.
    pub join: Option<String>,
    /// HMAC secret.
    pub secret: Option<String>,
    /// Replay window, seconds.
    pub hmac_window: u64,
    /// Warn-only signature mode.
    pub hmac_lenient: bool,
    /// Keypair file (`--identity`); none means `identity.json` in the data dir.
    pub identity_file: Option<PathBuf>,
    /// Whether outbound frames carry an Ed25519 signature (on unless `--no-sign-frames`).
    pub sign_frames: bool,
    /// Keep frames with a wrong Ed25519 signature, marked, instead of refusing them.
    pub ed25519_lenient: bool,
    /// Size limit for messages, frames and bodies.
    pub max_msg_size: usize,
    /// Advertised skills.
    pub skills: Vec<String>,
    /// Directory holding `node.db`.
    pub data_dir: PathBuf,
    /// Per-peer offline queue limit.
    pub offline_queue_limit: usize,
    /// What retention keeps (changeable on a running node through `PATCH /retention`).
    pub retention: crate::node::retention::Policy,
    /// The retention settings this start named (flags or environment): they win over the
    /// values a `PATCH /retention` saved; the others take the saved value, if any.
    pub retention_named: crate::node::retention::Overrides,
    /// What one peer may send in: rates and stored bytes.
    pub peer_limits: crate::node::quota::Limits,
    /// Extra Host names accepted by the HTTP port.
    pub allowed_hosts: Vec<String>,
    /// Web origins allowed to call the HTTP API, parsed (and so normalized) once here.
    pub cors_origins: Vec<crate::http::origin::Origin>,
    /// Bearer token guarding the HTTP API, if any.
    pub api_token: Option<String>,
    /// Most peers connected at once.
    pub max_peers: usize,
    /// Announce and browse over mDNS (`--lan-discovery`).
    pub lan_discovery: bool,
    /// When the ports or the data dir are taken by another instance, use free ports and a
    /// sibling data dir instead of failing (what `acp-relay mcp` wants: a second MCP host
    /// must get a working node, not a crash).
    pub instance_fallback: bool,
    /// Relays for levels 2 and 3 of NAT traversal; empty = direct connections only.
    pub relays: Vec<crate::wire::relay_url::RelaySpec>,
    /// Extra CA certificate (PEM file) trusted for the relays.
    pub relay_ca: Option<PathBuf>,
    /// UDP port of the iroh endpoint (0 = any).
    pub quic_port: u16,
    /// How push webhooks are delivered (queue, timeout, retries); not flags.
    pub webhooks: crate::node::webhooks::Settings,
    /// Credentials of A2A callers (`--a2a-token`).
    pub a2a_tokens: Vec<A2aCredential>,
    /// Loopback callers may use the A2A routes without a credential.
    pub a2a_open_loopback: bool,
    /// Bound of a blocking A2A `SendMessage` (`--a2a-wait-secs`; tests set milliseconds).
    pub a2a_wait: std::time::Duration,
}

/// One `--a2a-token`: the caller's name (its peer's name) and its bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct A2aCredential {
    /// The peer name the caller's messages come from.
    pub name: String,
    /// The bearer token.
    pub token: String,
}

impl std::fmt::Debug for A2aCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token: configs get logged.
        write!(f, "A2aCredential({:?})", self.name)
    }
}

impl A2aCredential {
    /// Reads `TOKEN` or `NAME=TOKEN`. A token is at least 16 characters without spaces; a
    /// name is 1 to 64 letters, digits, `-`, `_` or `.`. Without a name, the name is `a2a-`
    /// and 8 hex digits of the token's SHA-256, stable as long as the token is.
    pub fn parse(raw: &str) -> Result<A2aCredential, String> {
        let raw = raw.trim();
        let named = raw.split_once('=').filter(|(name, token)| {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && token.len() >= 16
        });
        let (name, token) = match named {
            Some((n, t)) => (n.to_owned(), t.to_owned()),
            None => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(raw.as_bytes());
                (format!("a2a-{}", &hex::encode(digest)[..8]), raw.to_owned())
            }
        };
        if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(
                "--a2a-token must be TOKEN or NAME=TOKEN, the token at least 16 characters without spaces (try: openssl rand -hex 32)"
                    .into(),
            );
        }
        Ok(A2aCredential { name, token })
    }
}

impl NodeArgs {
    /// Applies defaults and derived values.
    pub fn resolve(self) -> Result<Config, String> {
        let peer_limits = peer_limits(&self)?;
        if self.name.trim().is_empty() || self.name.len() > 128 {
            return Err("--name must be 1 to 128 characters".into());
        }
        if self.max_msg_size < 1024 {
            return Err("--max-msg-size must be at least 1024 bytes".into());
        }
        let http_port = match self.http_port {
            Some(p) => p,
            None if self.port == 0 => 0,
            None => self
                .port
                .checked_add(100)
                .ok_or("--port too high to derive --http-port; set --http-port")?,
        };
        let data_dir = match self.data_dir {
            Some(dir) => dir,
            None => default_data_dir(&self.name).ok_or("no platform data dir: set --data-dir")?,
        };
        let api_token = self.api_token.filter(|t| !t.is_empty());
        if let Some(token) = &api_token
            && (token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(
                "--api-token must be at least 16 characters without spaces (try: openssl rand -hex 32)"
                    .into(),
            );
        }
        if api_token.is_none() && !self.insecure_no_token && !is_loopback_host(&self.http_host) {
            return Err(format!(
                "--http-host {} is reachable from other machines: set --api-token (or ACP_API_TOKEN), or --insecure-no-token to serve without one",
                self.http_host
            ));
        }
        let mut cors_origins = Vec::new();
        for raw in self.cors_origins.iter().filter(|o| !o.trim().is_empty()) {
            match crate::http::origin::Origin::parse(raw.trim()) {
                Some(o) => cors_origins.push(o),
                None => {
                    return Err(format!(
                        "--cors-origin {raw:?} is not an origin like https://app.example:8443 (no path, no wildcard)"
                    ));
                }
            }
        }
        let mut a2a_tokens: Vec<A2aCredential> = Vec::new();
        for raw in self.a2a_tokens.iter().filter(|t| !t.trim().is_empty()) {
            let cred = A2aCredential::parse(raw)?;
            if a2a_tokens.iter().any(|c| c.name == cred.name) {
                return Err(format!(
                    "--a2a-token: the name {:?} is given twice (one name per credential)",
                    cred.name
                ));
            }
            if api_token.as_deref() == Some(cred.token.as_str()) {
                return Err(
                    "--a2a-token must differ from --api-token (an A2A credential opens the A2A routes only)"
                        .into(),
                );
            }
            a2a_tokens.push(cred);
        }
        if self.a2a_wait_secs > MAX_A2A_WAIT_SECS {
            return Err(format!(
                "--a2a-wait-secs must be at most {MAX_A2A_WAIT_SECS}"
            ));
        }
        if self.max_peers == 0 {
            return Err("--max-peers must be at least 1".into());
        }
        let skills = self
            .skills
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Config {
            name: self.name,
            ws_host: self.ws_host,
            port: self.port,
            http_host: self.http_host,
            http_port,
            advertise_host: self.advertise_host,
            join: self.join,
            secret: self.secret.filter(|s| !s.is_empty()),
            hmac_window: self.hmac_window,
            hmac_lenient: self.hmac_lenient,
            identity_file: self.identity,
            sign_frames: !self.no_sign_frames,
            ed25519_lenient: self.ed25519_lenient,
            max_msg_size: self.max_msg_size,
            skills,
            data_dir,
            offline_queue_limit: self.offline_queue_limit.max(1),
            retention: crate::node::retention::Policy {
                retain_days: self.retain_days.unwrap_or(DEFAULT_RETAIN_DAYS),
                retain_messages: self.retain_messages.unwrap_or(DEFAULT_RETAIN_MESSAGES),
                max_store_mb: self.max_store_mb.unwrap_or(DEFAULT_MAX_STORE_MB),
            },
            retention_named: crate::node::retention::Overrides {
                retain_days: self.retain_days,
                retain_messages: self.retain_messages,
                max_store_mb: self.max_store_mb,
            },
            peer_limits,
            allowed_hosts: self
                .allowed_hosts
                .into_iter()
                .filter(|h| !h.trim().is_empty())
                .collect(),
            cors_origins,
            api_token,
            max_peers: self.max_peers,
            lan_discovery: self.lan_discovery,
            instance_fallback: false,
            relays: self
                .relays
                .iter()
                .filter(|r| !r.trim().is_empty())
                .map(|r| {
                    crate::wire::relay_url::RelaySpec::parse(r).map_err(|e| format!("--relay: {e}"))
                })
                .collect::<Result<_, _>>()?,
            relay_ca: self.relay_ca,
            quic_port: self.quic_port,
            webhooks: crate::node::webhooks::Settings::default(),
            a2a_tokens,
            a2a_open_loopback: self.a2a_open_loopback,
            a2a_wait: std::time::Duration::from_secs(self.a2a_wait_secs),
        })
    }
}

impl Config {
    /// A config for tests and embedding: loopback everywhere, free ports, the given data dir.
    pub fn ephemeral(name: &str, data_dir: PathBuf) -> Config {
        Config {
            name: name.to_owned(),
            ws_host: "127.0.0.1".into(),
            port: 0,
            http_host: "127.0.0.1".into(),
            http_port: 0,
            advertise_host: Some("127.0.0.1".into()),
            join: None,
            secret: None,
            hmac_window: 300,
            hmac_lenient: false,
            identity_file: None,
            sign_frames: true,
            ed25519_lenient: false,
            max_msg_size: DEFAULT_MAX_MSG_SIZE,
            skills: Vec::new(),
            data_dir,
            offline_queue_limit: DEFAULT_OFFLINE_QUEUE_LIMIT,
            retention: crate::node::retention::Policy::default(),
            retention_named: Default::default(),
            peer_limits: crate::node::quota::Limits::default(),
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            api_token: None,
            max_peers: DEFAULT_MAX_PEERS,
            lan_discovery: false,
            instance_fallback: false,
            relays: Vec::new(),
            relay_ca: None,
            quic_port: 0,
            webhooks: crate::node::webhooks::Settings::default(),
            a2a_tokens: Vec::new(),
            a2a_open_loopback: false,
            a2a_wait: std::time::Duration::from_secs(DEFAULT_A2A_WAIT_SECS),
        }
    }
}

/// The per-peer limits of the flags, checked: a rate needs a burst of at least 1, and no
/// value may pass [`MAX_PEER_LIMIT`] (a typo of many digits is refused, not taken as a
/// limit that never applies).
fn peer_limits(args: &NodeArgs) -> Result<crate::node::quota::Limits, String> {
    use crate::node::quota::MIB;
    for (flag, value) in [
        ("--peer-msgs-per-sec", args.peer_msgs_per_sec),
        ("--peer-msgs-burst", args.peer_msgs_burst),
        ("--peer-mb-per-sec", args.peer_mb_per_sec),
        ("--peer-mb-burst", args.peer_mb_burst),
        ("--peer-max-store-mb", args.peer_max_store_mb),
    ] {
        if value > MAX_PEER_LIMIT {
            return Err(format!(
                "{flag} {value} is too large: at most {MAX_PEER_LIMIT} (0 = no limit)"
            ));
        }
    }
    if args.peer_msgs_per_sec > 0 && args.peer_msgs_burst == 0 {
        return Err(
            "--peer-msgs-burst must be at least 1 while --peer-msgs-per-sec limits the rate \
             (or set --peer-msgs-per-sec 0 for no limit)"
                .into(),
        );
    }
    if args.peer_mb_per_sec > 0 && args.peer_mb_burst == 0 {
        return Err(
            "--peer-mb-burst must be at least 1 while --peer-mb-per-sec limits the rate \
             (or set --peer-mb-per-sec 0 for no limit)"
                .into(),
        );
    }
    let max_store_bytes = args.peer_max_store_mb.saturating_mul(MIB);
    if max_store_bytes > 0 && max_store_bytes < args.max_msg_size as u64 {
        return Err(format!(
            "--peer-max-store-mb {} is below --max-msg-size ({} bytes): a message that large \
             from a peer could never be stored; raise it (or 0 for no limit)",
            args.peer_max_store_mb, args.max_msg_size
        ));
    }
    Ok(crate::node::quota::Limits {
        msgs_per_sec: args.peer_msgs_per_sec,
        msgs_burst: args.peer_msgs_burst,
        bytes_per_sec: args.peer_mb_per_sec.saturating_mul(MIB),
        bytes_burst: args.peer_mb_burst.saturating_mul(MIB),
        max_store_bytes,
    })
}

/// Whether an HTTP bind address only accepts connections from this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The data dir a node named `name` uses without `--data-dir`: one place, so the CLI client
/// finds the token file of the node `serve` started under the same `ACP_NAME`.
pub fn default_data_dir(name: &str) -> Option<PathBuf> {
    Some(data_root()?.join(data_dir_name(name)))
}

/// The directory holding every named node's default data dir (`~/.local/share/acp-relay`
/// on Linux), where the CLI looks for the nodes running on this machine.
pub fn data_root() -> Option<PathBuf> {
    Some(
        dirs::data_dir()
            .or_else(|| dirs::home_dir().map(|h| h.join(".local/share")))?
            .join("acp-relay"),
    )
}

/// The directory name a node named `name` gets under [`data_root`]: the name kept usable as
/// a directory name.
pub fn data_dir_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use proptest::prelude::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: NodeArgs,
    }

    fn resolve(flags: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["acp-relay", "--data-dir", "/nonexistent/acp-test"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .args
            .resolve()
    }

    #[test]
    fn a2a_credentials_are_named_or_hashed_and_checked() {
        let named = A2aCredential::parse("alice=0123456789abcdef0").unwrap();
        assert_eq!(
            (named.name.as_str(), named.token.as_str()),
            ("alice", "0123456789abcdef0")
        );
        let bare = A2aCredential::parse("0123456789abcdef0").unwrap();
        assert!(
            bare.name.starts_with("a2a-") && bare.name.len() == 12,
            "{}",
            bare.name
        );
        assert_eq!(bare.token, "0123456789abcdef0");
        // A token with '=' (base64 padding) is a bare token, not a name.
        let padded = A2aCredential::parse("c2VjcmV0LXRva2VuLXZhbHVl==").unwrap();
        assert_eq!(padded.token, "c2VjcmV0LXRva2VuLXZhbHVl==");
        for bad in ["short", "alice=short", "has space in it 0123456789", ""] {
            assert!(A2aCredential::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{named:?}").contains("0123456789abcdef0"));
    }

    #[test]
    fn an_exposed_http_port_needs_a_token_or_an_explicit_opt_out() {
        let err = resolve(&["--http-host", "0.0.0.0"]).unwrap_err();
        assert!(err.contains("--api-token") && !err.contains('\n'), "{err}");
        assert!(resolve(&["--http-host", "192.0.2.10"]).is_err());
        assert!(resolve(&["--http-host", "::"]).is_err());
        let cfg = resolve(&["--http-host", "0.0.0.0", "--api-token", "0123456789abcdef"]).unwrap();
        assert_eq!(cfg.api_token.as_deref(), Some("0123456789abcdef"));
        assert!(resolve(&["--http-host", "0.0.0.0", "--insecure-no-token"]).is_ok());
        for loopback in ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"] {
            assert!(resolve(&["--http-host", loopback]).is_ok(), "{loopback}");
        }
    }

    #[test]
    fn weak_tokens_and_bad_origins_are_refused_at_start() {
        assert!(resolve(&["--api-token", "short"]).is_err());
        assert!(resolve(&["--api-token", "has a space in it!!"]).is_err());
        let err = resolve(&["--cors-origin", "https://*.example"]).unwrap_err();
        assert!(err.contains("--cors-origin"), "{err}");
        assert!(resolve(&["--cors-origin", "https://app.example/path"]).is_err());
        let cfg = resolve(&[
            "--cors-origin",
            "HTTPS://App.Example:443",
            "--cors-origin",
            "http://localhost:5173",
        ])
        .unwrap();
        let shown: Vec<String> = cfg.cors_origins.iter().map(|o| o.to_string()).collect();
        assert_eq!(shown, ["https://app.example", "http://localhost:5173"]);
        assert!(resolve(&["--max-peers", "0"]).is_err());
    }

    #[test]
    fn retention_flags_say_which_settings_the_start_named() {
        let cfg = resolve(&[]).unwrap();
        assert_eq!(cfg.retention, crate::node::retention::Policy::default());
        assert_eq!(cfg.retention_named, Default::default());
        let cfg = resolve(&["--retain-days", "0", "--max-store-mb", "64"]).unwrap();
        assert_eq!(cfg.retention.retain_days, 0);
        assert_eq!(cfg.retention.max_store_mb, 64);
        assert_eq!(cfg.retention.retain_messages, DEFAULT_RETAIN_MESSAGES);
        assert_eq!(cfg.retention_named.retain_days, Some(0));
        assert_eq!(cfg.retention_named.max_store_mb, Some(64));
        assert_eq!(cfg.retention_named.retain_messages, None);
    }

    #[test]
    fn per_peer_limits_have_defaults_and_bad_values_are_refused() {
        let cfg = resolve(&[]).unwrap();
        assert_eq!(cfg.peer_limits, crate::node::quota::Limits::default());
        assert_eq!(cfg.peer_limits.msgs_per_sec, DEFAULT_PEER_MSGS_PER_SEC);
        let cfg = resolve(&["--peer-mb-per-sec", "2", "--peer-max-store-mb", "0"]).unwrap();
        assert_eq!(cfg.peer_limits.bytes_per_sec, 2 << 20);
        assert_eq!(cfg.peer_limits.max_store_bytes, 0);
        let err = resolve(&["--peer-msgs-burst", "0"]).unwrap_err();
        assert!(
            err.contains("--peer-msgs-burst must be at least 1"),
            "{err}"
        );
        assert!(resolve(&["--peer-msgs-burst", "0", "--peer-msgs-per-sec", "0"]).is_ok());
        let err = resolve(&["--peer-mb-burst", "0"]).unwrap_err();
        assert!(err.contains("--peer-mb-burst"), "{err}");
        let err = resolve(&["--peer-max-store-mb", "99999999999999"]).unwrap_err();
        assert!(err.contains("too large"), "{err}");
        let err = resolve(&["--peer-max-store-mb", "1", "--max-msg-size", "2000000"]).unwrap_err();
        assert!(err.contains("below --max-msg-size"), "{err}");
        let err = resolve(&["--peer-msgs-per-sec=-5"]).unwrap_err();
        assert!(err.contains("--peer-msgs-per-sec"), "{err}");
        let err = resolve(&["--peer-mb-per-sec", "lots"]).unwrap_err();
        assert!(err.contains("invalid value"), "{err}");
    }

    proptest! {
        #![proptest_config(crate::test_support::config(64))]
        /// Any values of the five limit flags (numbers or not) give limits that say what the
        /// flags said, or an error naming a `--peer-` flag; never a panic.
        #[test]
        fn prop_any_limit_flags_are_limits_or_a_named_error(
            values in proptest::collection::vec(
                prop_oneof![
                    any::<u64>().prop_map(|v| v.to_string()),
                    (0u64..5000).prop_map(|v| v.to_string()),
                    "[-a-z0-9. ]{0,8}",
                ],
                5,
            )
        ) {
            let flags = [
                "--peer-msgs-per-sec",
                "--peer-msgs-burst",
                "--peer-mb-per-sec",
                "--peer-mb-burst",
                "--peer-max-store-mb",
            ];
            let args: Vec<String> = flags
                .iter()
                .zip(&values)
                .map(|(f, v)| format!("{f}={v}"))
                .collect();
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            match resolve(&refs) {
                Ok(cfg) => {
                    let l = cfg.peer_limits;
                    prop_assert_eq!(l.msgs_per_sec.to_string(), values[0].trim());
                    prop_assert_eq!(l.msgs_burst.to_string(), values[1].trim());
                    prop_assert_eq!(l.bytes_per_sec, values[2].trim().parse::<u64>().unwrap() << 20);
                    prop_assert!(l.msgs_per_sec == 0 || l.msgs_burst > 0);
                    prop_assert!(l.bytes_per_sec == 0 || l.bytes_burst > 0);
                }
                Err(e) => prop_assert!(e.contains("--peer-"), "{}", e),
            }
        }
    }
}
