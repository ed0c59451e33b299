//! What the operator can say: the command line (clap, with `MESCON_*` environment fallbacks) and the
//! same settings as keys of the optional TOML file. Resolution and validation live in the parent module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// The command line of the `mescon` binary.
#[derive(Debug, Parser)]
#[command(
    name = "mescon",
    version,
    about = "Self-hosted chat and calls with a built-in SFU"
)]
pub struct Cli {
    /// What to do; without a subcommand, `serve`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub settings: Settings,
}

/// The subcommands of `mescon`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Inspect or create the server's secrets.
    Keys {
        /// What to do with the keys.
        #[command(subcommand)]
        action: KeysAction,
    },
}

/// The `mescon keys` actions.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Print the secrets in force as environment lines (to move generated keys into a secret store).
    Print,
    /// Print a fresh set of secrets as environment lines, touching nothing.
    Generate,
    /// Add a new message key in front of the generated key ring: new messages use it, old ones stay readable.
    Rotate,
}

/// Every setting, as given on the command line or in the environment. `None` means "not given here",
/// so that the TOML file and then the default can supply it.
#[derive(Debug, Args, Default, Clone)]
pub struct Settings {
    /// Optional TOML file with any of the settings below (keys in snake_case, e.g. `media_udp`).
    #[arg(long, env = "MESCON_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// HTTP(S) listen address.
    #[arg(long, env = "MESCON_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Directory for the SQLite file and generated keys.
    #[arg(long, env = "MESCON_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL: `sqlite://...` or `postgres://...`.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// External base URL; its origin is allowed for WebSockets.
    #[arg(long, env = "MESCON_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Extra origins allowed to open the WebSocket (comma separated).
    #[arg(long, env = "MESCON_ALLOWED_ORIGINS", global = true)]
    pub allowed_origins: Option<String>,
    /// How one-time passwords are delivered: `log` or `webhook`.
    #[arg(long, env = "MESCON_OTP_SENDER", global = true)]
    pub otp_sender: Option<String>,
    /// Where the `webhook` sender posts codes.
    #[arg(long, env = "MESCON_OTP_WEBHOOK_URL", global = true)]
    pub otp_webhook_url: Option<String>,
    /// HMAC-SHA256 secret that signs webhook bodies.
    #[arg(
        long,
        env = "MESCON_OTP_WEBHOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub otp_webhook_secret: Option<String>,
    /// Region (ISO 3166 alpha-2) for numbers typed without `+`.
    #[arg(long, env = "MESCON_DEFAULT_REGION", global = true)]
    pub default_region: Option<String>,
    /// JWT signing secret, base64, at least 32 bytes.
    #[arg(long, env = "MESCON_JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// TURN REST shared secret, base64, at least 32 bytes.
    #[arg(
        long,
        env = "MESCON_TURN_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,
    /// Message key ring `kid:base64key[,kid:base64key...]`; the first one encrypts.
    #[arg(
        long,
        env = "MESCON_ENCRYPTION_KEYS",
        global = true,
        hide_env_values = true
    )]
    pub encryption_keys: Option<String>,
    /// PEM certificate chain; with `tls_key`, serve HTTPS.
    #[arg(long, env = "MESCON_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    #[arg(long, env = "MESCON_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// The one UDP address for all WebRTC media.
    #[arg(long, env = "MESCON_MEDIA_UDP", global = true)]
    pub media_udp: Option<String>,
    /// Passive ICE-TCP address (empty = off).
    #[arg(long, env = "MESCON_ICE_TCP", global = true)]
    pub ice_tcp: Option<String>,
    /// Address(es) advertised in ICE candidates, comma separated (VPS behind 1:1 NAT).
    #[arg(long, env = "MESCON_PUBLIC_IP", global = true)]
    pub public_ip: Option<String>,
    /// Most video one call member receives, bits per second; the SFU picks simulcast layers
    /// within it.
    #[arg(long, env = "MESCON_CALL_MAX_BITRATE", global = true)]
    pub call_max_bitrate: Option<u64>,
    /// Embedded TURN server address, UDP and TCP (empty = off).
    #[arg(long, env = "MESCON_TURN_LISTEN", global = true)]
    pub turn_listen: Option<String>,
    /// Path to a turn.conf with the rest of the TURN settings.
    #[arg(long, env = "MESCON_TURN_CONFIG", global = true)]
    pub turn_config: Option<PathBuf>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "MESCON_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    /// Proxies (IPs, comma separated) whose `X-Forwarded-For` names the real client.
    #[arg(long, env = "MESCON_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,
    /// Lifetime of access tokens in seconds (at most 900).
    #[arg(long, env = "MESCON_ACCESS_TOKEN_TTL", global = true)]
    pub access_token_ttl: Option<u64>,
    /// Lifetime of refresh tokens (sessions) in days.
    #[arg(long, env = "MESCON_REFRESH_TOKEN_DAYS", global = true)]
    pub refresh_token_days: Option<u64>,
    /// OTP requests allowed per phone number per hour.
    #[arg(long, env = "MESCON_OTP_PER_PHONE_HOUR", global = true)]
    pub otp_per_phone_hour: Option<u32>,
    /// OTP requests allowed per client IP per hour.
    #[arg(long, env = "MESCON_OTP_PER_IP_HOUR", global = true)]
    pub otp_per_ip_hour: Option<u32>,
    /// Login attempts (verify/refresh) allowed per client IP per minute.
    #[arg(long, env = "MESCON_AUTH_PER_IP_MINUTE", global = true)]
    pub auth_per_ip_minute: Option<u32>,
    /// Largest JSON request body in bytes.
    #[arg(long, env = "MESCON_MAX_JSON_BYTES", global = true)]
    pub max_json_bytes: Option<usize>,
}

/// The same settings as they may appear in the TOML file. Unknown keys are an error, so that a typo
/// does not silently fall back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSettings {
    pub(super) listen: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) database_url: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) allowed_origins: Option<String>,
    pub(super) otp_sender: Option<String>,
    pub(super) otp_webhook_url: Option<String>,
    pub(super) otp_webhook_secret: Option<String>,
    pub(super) default_region: Option<String>,
    pub(super) jwt_secret: Option<String>,
    pub(super) turn_secret: Option<String>,
    pub(super) encryption_keys: Option<String>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) media_udp: Option<String>,
    pub(super) ice_tcp: Option<String>,
    pub(super) public_ip: Option<String>,
    pub(super) call_max_bitrate: Option<u64>,
    pub(super) turn_listen: Option<String>,
    pub(super) turn_config: Option<PathBuf>,
    pub(super) log_format: Option<String>,
    pub(super) trusted_proxies: Option<String>,
    pub(super) access_token_ttl: Option<u64>,
    pub(super) refresh_token_days: Option<u64>,
    pub(super) otp_per_phone_hour: Option<u32>,
    pub(super) otp_per_ip_hour: Option<u32>,
    pub(super) auth_per_ip_minute: Option<u32>,
    pub(super) max_json_bytes: Option<usize>,
}
