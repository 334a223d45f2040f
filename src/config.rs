//! Every setting of the server, in one place: flag, then environment variable, then default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::{Docs, Scope};

/// Where the embedded SQLite store lives when no `DATABASE_URL` is given.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/tandem.db";

/// The command line: the server's settings, or a subcommand.
#[derive(Parser, Clone, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Command {
    /// Print a token signed with the configured secret (--auth-secret / TANDEM_AUTH_SECRET).
    Token(TokenArgs),
    /// Ask the server configured by the same settings (--listen / TANDEM_LISTEN / PORT, TLS)
    /// whether it is ready: exits 0 only when /readyz answers 200 (for Docker's HEALTHCHECK).
    Healthcheck(Box<Config>),
}

/// `tandem token`: what the token allows, and for how long.
#[derive(Args, Clone, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    pub auth: AuthSettings,
    /// The document id, or '*' for every document.
    #[arg(long, value_parser = parse_docs)]
    pub doc: Docs,
    /// read, write or admin.
    #[arg(long)]
    pub scope: Scope,
    /// How long the token is valid: 30m, 1h, 7d...
    #[arg(long, default_value = "1h", value_parser = crate::auth::parse_ttl)]
    pub ttl: Duration,
    /// The person's display name (the editor's default name; shown in logs).
    #[arg(long)]
    pub name: Option<String>,
    /// The person's stable id (`sub`).
    #[arg(long)]
    pub sub: Option<String>,
}

fn parse_docs(raw: &str) -> Result<Docs, String> {
    Docs::parse(raw).ok_or_else(|| format!("{raw:?} is neither a document id nor '*'"))
}

/// The keys tokens are checked with. Neither set: open mode (no tokens needed).
#[derive(Args, Clone, Debug, Default)]
pub struct AuthSettings {
    /// HS256 secret for tokens: every request then needs a token signed with it (its UTF-8
    /// bytes are the HMAC key).
    #[arg(long, env = "TANDEM_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// PEM public key (EdDSA/Ed25519 or ES256/P-256) for tokens signed by the application,
    /// which keeps the private key. May be combined with --auth-secret.
    #[arg(long, env = "TANDEM_AUTH_PUBLIC_KEY", value_name = "FILE")]
    pub auth_public_key: Option<PathBuf>,
}

/// tandem: a collaborative text editing server for Yjs clients.
#[derive(Parser, Clone, Debug)]
#[command(version, about)]
pub struct Config {
    /// Address to listen on for HTTP and WebSocket connections. Default: 127.0.0.1:8080, or
    /// 0.0.0.0:$PORT when the PORT variable is set (the convention of hosting platforms).
    #[arg(long, env = "TANDEM_LISTEN", default_value_t = default_listen())]
    pub listen: SocketAddr,

    /// `postgres://user@host/db` for Postgres, or `sqlite://path` for an embedded SQLite file
    /// (created if missing). Default: sqlite://data/tandem.db, relative to the working directory.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Group commit window: an applied update is written to the database at most this many
    /// milliseconds after it arrived, together with every update that arrived meanwhile.
    #[arg(long, env = "TANDEM_FLUSH_MS", default_value_t = 5)]
    pub flush_ms: u64,

    /// Write a snapshot of a document (and drop the log entries it covers) after this many
    /// logged updates...
    #[arg(long, env = "TANDEM_SNAPSHOT_UPDATES", default_value_t = 1000)]
    pub snapshot_updates: u64,

    /// ...or after this many bytes of logged updates, whichever comes first.
    #[arg(long, env = "TANDEM_SNAPSHOT_BYTES", default_value_t = 1 << 20)]
    pub snapshot_bytes: u64,

    /// Unload a document from memory after it has had no connections and nothing left to
    /// write for this many milliseconds.
    #[arg(long, env = "TANDEM_IDLE_UNLOAD_MS", default_value_t = 30_000)]
    pub idle_unload_ms: u64,

    /// Largest WebSocket message accepted from a client, in bytes. Bigger ones close the
    /// connection with 1009 (message too big).
    #[arg(long, env = "TANDEM_MAX_MESSAGE_BYTES", default_value_t = 8 << 20)]
    pub max_message_bytes: usize,

    /// Sustained WebSocket messages per second read from one connection (bursts of five
    /// seconds' worth). A client that sends faster is slowed down: the server reads its
    /// socket no faster than this, so TCP holds the sender back. 0 = no limit.
    #[arg(long, env = "TANDEM_MAX_MESSAGES_PER_SEC", default_value_t = 1000)]
    pub max_messages_per_sec: u32,

    /// Most y-websocket messages in one WebSocket message (the stock client sends one); more
    /// closes the connection with 1008.
    #[arg(long, env = "TANDEM_MAX_MESSAGES_PER_FRAME", default_value_t = 16)]
    pub max_messages_per_frame: usize,

    /// A WebSocket frame (or fragmented message) once started must be complete within this
    /// many milliseconds, or the connection is closed with 1008.
    #[arg(long, env = "TANDEM_FRAME_TIMEOUT_MS", default_value_t = 30_000)]
    pub frame_timeout_ms: u64,

    /// Largest encoded state of a document, in bytes: an update that would take it past this
    /// is refused and its connection closed with 1009.
    #[arg(long, env = "TANDEM_MAX_DOC_BYTES", default_value_t = 64 << 20)]
    pub max_doc_bytes: u64,

    /// Most bytes of applied updates one document holds while the database does not take
    /// them (failing or too slow); past it new updates are refused and their connection
    /// closed with 1013 "storage unavailable". Clients keep refused edits and send them again
    /// when they reconnect, so nothing is lost.
    #[arg(long, env = "TANDEM_MAX_PENDING_BYTES", default_value_t = 64 << 20)]
    pub max_pending_bytes: u64,

    /// Most TCP connections at once (REST and WebSocket alike, half-open ones too); past it
    /// new ones get 503. 0: what the process's descriptor limit allows, less a reserve.
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Most TCP connections from one client address (503 past it). 0 = no cap.
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// Most WebSocket connections to one document (503 past it).
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS_PER_DOC", default_value_t = 10_000)]
    pub max_connections_per_doc: usize,

    /// New connections per second from one client address, with bursts of five seconds'
    /// worth (429 past it). 0 = no limit.
    #[arg(long, env = "TANDEM_CONNECT_RATE_PER_IP", default_value_t = 0)]
    pub connect_rate_per_ip: u32,

    /// Take the client's address from `Forwarded` / `X-Forwarded-For` (set it only behind a
    /// proxy that sets them).
    #[arg(long, env = "TANDEM_TRUST_PROXY_HEADERS")]
    pub trust_proxy_headers: bool,

    /// A request head must arrive within this many milliseconds of the connection opening
    /// (or of the previous response), or the connection is closed.
    #[arg(long, env = "TANDEM_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// An idle keep-alive connection is closed after this many milliseconds.
    #[arg(long, env = "TANDEM_KEEPALIVE_TIMEOUT_MS", default_value_t = 5_000)]
    pub keepalive_timeout_ms: u64,

    /// Largest request head (request line and headers), in bytes; larger gets 431.
    #[arg(long, env = "TANDEM_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// A REST request must be answered within this many milliseconds (a slow body gets 408).
    #[arg(long, env = "TANDEM_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// PEM certificate chain: serve https and wss (with --tls-key). Reloaded on SIGHUP and
    /// when the file changes.
    #[arg(long, env = "TANDEM_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "TANDEM_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Messages queued for one connection before it counts as too slow and is closed with
    /// 1013 (it reconnects and resyncs, losing nothing).
    #[arg(long, env = "TANDEM_CLIENT_QUEUE", default_value_t = 512)]
    pub client_queue: usize,

    /// Awareness states (cursors, names) not renewed for this many milliseconds are removed.
    /// Clients renew theirs every 15 s.
    #[arg(long, env = "TANDEM_AWARENESS_TIMEOUT_MS", default_value_t = 30_000)]
    pub awareness_timeout_ms: u64,

    #[command(flatten)]
    pub auth: AuthSettings,

    /// Origins (scheme://host[:port]) whose pages may use the API and open sockets, comma
    /// separated, or '*' for any. Default: only the origin the request's own Host names.
    #[arg(long, env = "TANDEM_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// The address people reach this server at (e.g. https://docs.example.com), for share
    /// links. Default: http:// and the request's Host.
    #[arg(long, env = "TANDEM_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// How long shutdown (SIGTERM, SIGINT) may take, as a duration (8s, 1500ms): requests in
    /// flight finish, every document writes what it holds, sockets are closed with 1001.
    /// Under Docker's 10 s stop grace. Documents not saved by then are logged and the exit
    /// code is 1.
    #[arg(long, env = "TANDEM_SHUTDOWN_TIMEOUT", default_value = "8s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Keep a version of a document when editing pauses this long (a duration: 1m, 30s).
    /// 0 turns automatic versions off (versions on request and restores still work).
    #[arg(long, env = "TANDEM_VERSION_AFTER_IDLE", default_value = "1m", value_parser = humantime::parse_duration)]
    pub version_after_idle: Duration,

    /// While editing goes on without such a pause, keep a version at least this often.
    /// 0: only at pauses.
    #[arg(long, env = "TANDEM_VERSION_EVERY", default_value = "10m", value_parser = humantime::parse_duration)]
    pub version_every: Duration,

    /// Keep every version this long...
    #[arg(long, env = "TANDEM_VERSION_KEEP_ALL", default_value = "7d", value_parser = humantime::parse_duration)]
    pub version_keep_all: Duration,

    /// ...then the last of each hour until this age, then the last of each day. Labelled
    /// versions are kept until deleted.
    #[arg(long, env = "TANDEM_VERSION_KEEP_HOURLY", default_value = "30d", value_parser = humantime::parse_duration)]
    pub version_keep_hourly: Duration,

    /// Redis (`redis://host:6379`) to run several instances behind a load balancer: each
    /// fans out what its clients send to the others through it. Needs Postgres.
    #[arg(long, env = "TANDEM_REDIS_URL")]
    pub redis_url: Option<String>,

    /// How long to keep trying to reach the database at start (with backoff), in
    /// milliseconds, before giving up.
    #[arg(long, env = "TANDEM_DATABASE_WAIT_MS", default_value_t = 30_000)]
    pub database_wait_ms: u64,

    /// Log lines as `text` (for people) or `json` (one object per line, for log shippers).
    #[arg(long, env = "TANDEM_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "TANDEM_LOG", default_value = "tandem=info")]
    pub log: String,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// 127.0.0.1:8080, or 0.0.0.0:$PORT when PORT is set (and TANDEM_LISTEN is not).
fn default_listen() -> SocketAddr {
    match std::env::var("PORT").ok().and_then(|port| port.trim().parse::<u16>().ok()) {
        Some(port) => SocketAddr::from(([0, 0, 0, 0], port)),
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
    }
}

impl Config {
    /// The defaults, as if no flag or variable were given (for tests and embedding).
    pub fn defaults() -> Self {
        Self::parse_from(["tandem"])
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_ms)
    }

    pub fn idle_unload(&self) -> Duration {
        Duration::from_millis(self.idle_unload_ms)
    }

    pub fn awareness_timeout(&self) -> Duration {
        Duration::from_millis(self.awareness_timeout_ms)
    }

    /// When versions are kept, and for how long.
    pub fn version_settings(&self) -> crate::doc::VersionSettings {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        crate::doc::VersionSettings {
            after_idle: nonzero(self.version_after_idle),
            every: nonzero(self.version_every),
            retention: crate::store::Retention {
                keep_all: self.version_keep_all,
                keep_hourly: self.version_keep_hourly.max(self.version_keep_all),
            },
        }
    }

    pub fn frame_timeout(&self) -> Duration {
        Duration::from_millis(self.frame_timeout_ms)
    }
}
