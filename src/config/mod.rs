//! Configuration: one [`Config`], resolved from CLI flags, `MESCON_*` environment variables, an
//! optional TOML file and defaults, in that order of precedence, and validated before anything starts.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod cli;

use cli::FileSettings;
pub use cli::{Cli, Command, KeysAction, Settings};
/// How OTP codes reach the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtpSenderConfig {
    /// Write the code to the server log at INFO (development, or an operator relaying codes by hand).
    Log,
    /// POST the code to an SMS gateway of the operator's, signed with HMAC-SHA256.
    Webhook {
        /// Where to POST.
        url: url::Url,
        /// The HMAC key for `X-Mescon-Signature`.
        secret: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The default of `MESCON_CALL_MAX_BITRATE`: room for a 720p simulcast layer and then some.
pub const DEFAULT_CALL_MAX_BITRATE: u64 = 4_000_000;

/// Rate limits and sizes; each is a setting with a safe default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// OTP requests per phone number per hour.
    pub otp_per_phone_hour: u32,
    /// OTP requests per client IP per hour.
    pub otp_per_ip_hour: u32,
    /// Verify and refresh attempts per client IP per minute.
    pub auth_per_ip_minute: u32,
    /// Largest JSON body accepted.
    pub max_json_bytes: usize,
    /// Largest avatar upload (the API fixes it at 5 MiB).
    pub max_avatar_bytes: usize,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP(S) listen address.
    pub listen: SocketAddr,
    /// Data directory (SQLite file, generated keys).
    pub data_dir: PathBuf,
    /// Database URL, `sqlite://` or `postgres://`.
    pub database_url: String,
    /// External base URL, if the operator set one.
    pub public_url: Option<url::Url>,
    /// Origins allowed to open the WebSocket besides the request's own host.
    pub allowed_origins: Vec<String>,
    /// OTP delivery.
    pub otp_sender: OtpSenderConfig,
    /// Region for numbers typed without `+`.
    pub default_region: phonenumber::country::Id,
    /// Configured JWT secret (else generated into the data dir).
    pub jwt_secret: Option<Vec<u8>>,
    /// Configured TURN secret (else generated into the data dir).
    pub turn_secret: Option<Vec<u8>>,
    /// Configured message key ring spec (else generated into the data dir).
    pub encryption_keys: Option<String>,
    /// Certificate and key for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The one UDP media address.
    pub media_udp: SocketAddr,
    /// Passive ICE-TCP address, if on.
    pub ice_tcp: Option<SocketAddr>,
    /// Addresses advertised in ICE candidates.
    pub public_ips: Vec<IpAddr>,
    /// Most video one call member receives, in bits per second.
    pub call_max_bitrate: u64,
    /// Embedded TURN server address, if on.
    pub turn_listen: Option<SocketAddr>,
    /// Path of the TURN settings file.
    pub turn_config: Option<PathBuf>,
    /// Log format.
    pub log_format: LogFormat,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Access token lifetime.
    pub access_token_ttl: Duration,
    /// Refresh token (session) lifetime.
    pub refresh_token_ttl: Duration,
    /// Rate limits and sizes.
    pub limits: Limits,
}

/// A setting that could not be used, with the name an operator would look for.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {reason}")]
pub struct ConfigError {
    /// The environment name of the setting.
    pub name: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name,
        reason: reason.into(),
    }
}

impl Config {
    /// Resolves settings (flags/env over file over defaults) and validates every value.
    pub fn resolve(cli: &Settings) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        macro_rules! pick {
            ($field:ident) => {
                cli.$field.clone().or(file.$field.clone())
            };
        }

        let listen = parse_addr(
            "MESCON_LISTEN",
            &pick!(listen).unwrap_or("0.0.0.0:8000".into()),
        )?;
        let data_dir = pick!(data_dir).unwrap_or_else(|| PathBuf::from("./data"));
        let database_url = pick!(database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("mescon.db").display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres:")
            || database_url.starts_with("postgresql:"))
        {
            return Err(bad(
                "DATABASE_URL",
                "must start with sqlite:// or postgres://",
            ));
        }
        let public_url = match pick!(public_url).filter(|s| !s.is_empty()) {
            Some(s) => {
                let url =
                    url::Url::parse(&s).map_err(|e| bad("MESCON_PUBLIC_URL", e.to_string()))?;
                if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                    return Err(bad(
                        "MESCON_PUBLIC_URL",
                        "must be an http(s) URL with a host",
                    ));
                }
                Some(url)
            }
            None => None,
        };
        let allowed_origins = split_list(&pick!(allowed_origins).unwrap_or_default());

        let otp_sender = match pick!(otp_sender).as_deref().unwrap_or("log") {
            "log" => OtpSenderConfig::Log,
            "webhook" => {
                let url = pick!(otp_webhook_url).ok_or_else(|| {
                    bad(
                        "MESCON_OTP_WEBHOOK_URL",
                        "required when MESCON_OTP_SENDER=webhook",
                    )
                })?;
                let url = url::Url::parse(&url)
                    .map_err(|e| bad("MESCON_OTP_WEBHOOK_URL", e.to_string()))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(bad("MESCON_OTP_WEBHOOK_URL", "must be an http(s) URL"));
                }
                let secret = pick!(otp_webhook_secret)
                    .filter(|s| s.len() >= 16)
                    .ok_or_else(|| {
                        bad(
                            "MESCON_OTP_WEBHOOK_SECRET",
                            "required with the webhook sender, at least 16 characters",
                        )
                    })?;
                OtpSenderConfig::Webhook { url, secret }
            }
            other => {
                return Err(bad(
                    "MESCON_OTP_SENDER",
                    format!("`{other}` is not one of: log, webhook"),
                ));
            }
        };

        let region = pick!(default_region).unwrap_or_else(|| "US".into());
        let default_region = region
            .to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .map_err(|_| {
                bad(
                    "MESCON_DEFAULT_REGION",
                    format!("`{region}` is not an ISO 3166 region code"),
                )
            })?;

        let jwt_secret = pick!(jwt_secret)
            .map(|s| parse_secret("MESCON_JWT_SECRET", &s))
            .transpose()?;
        let turn_secret = pick!(turn_secret)
            .map(|s| parse_secret("MESCON_TURN_SECRET", &s))
            .transpose()?;
        let encryption_keys = pick!(encryption_keys);
        if let Some(spec) = &encryption_keys {
            crate::crypto::KeyRing::parse(spec)
                .map_err(|e| bad("MESCON_ENCRYPTION_KEYS", e.to_string()))?;
        }

        let tls = match (pick!(tls_cert), pick!(tls_key)) {
            (Some(cert), Some(key)) => {
                for (name, path) in [("MESCON_TLS_CERT", &cert), ("MESCON_TLS_KEY", &key)] {
                    if !path.is_file() {
                        return Err(bad(
                            name,
                            format!("{} is not a readable file", path.display()),
                        ));
                    }
                }
                Some((cert, key))
            }
            (None, None) => None,
            _ => {
                return Err(bad(
                    "MESCON_TLS_CERT",
                    "MESCON_TLS_CERT and MESCON_TLS_KEY go together",
                ));
            }
        };

        let media_udp = parse_addr(
            "MESCON_MEDIA_UDP",
            &pick!(media_udp).unwrap_or("0.0.0.0:7882".into()),
        )?;
        let ice_tcp = optional_addr("MESCON_ICE_TCP", pick!(ice_tcp), "0.0.0.0:7881")?;
        let turn_listen = optional_addr("MESCON_TURN_LISTEN", pick!(turn_listen), "0.0.0.0:3478")?;
        let public_ips = parse_ips("MESCON_PUBLIC_IP", &pick!(public_ip).unwrap_or_default())?;
        let turn_config = pick!(turn_config);
        if let Some(path) = &turn_config
            && !path.is_file()
        {
            return Err(bad(
                "MESCON_TURN_CONFIG",
                format!("{} is not a readable file", path.display()),
            ));
        }
        let log_format = match pick!(log_format).as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(
                    "MESCON_LOG_FORMAT",
                    format!("`{other}` is not one of: text, json"),
                ));
            }
        };
        let trusted_proxies = parse_ips(
            "MESCON_TRUSTED_PROXIES",
            &pick!(trusted_proxies).unwrap_or_default(),
        )?;

        let ttl = pick!(access_token_ttl).unwrap_or(900);
        if !(30..=900).contains(&ttl) {
            return Err(bad(
                "MESCON_ACCESS_TOKEN_TTL",
                "must be between 30 and 900 seconds",
            ));
        }
        let days = pick!(refresh_token_days).unwrap_or(30);
        if !(1..=365).contains(&days) {
            return Err(bad(
                "MESCON_REFRESH_TOKEN_DAYS",
                "must be between 1 and 365",
            ));
        }
        let call_max_bitrate = pick!(call_max_bitrate).unwrap_or(DEFAULT_CALL_MAX_BITRATE);
        if !(100_000..=100_000_000).contains(&call_max_bitrate) {
            return Err(bad(
                "MESCON_CALL_MAX_BITRATE",
                "must be between 100000 and 100000000 bits per second",
            ));
        }
        let limits = Limits {
            otp_per_phone_hour: positive(
                "MESCON_OTP_PER_PHONE_HOUR",
                pick!(otp_per_phone_hour).unwrap_or(6),
            )?,
            otp_per_ip_hour: positive(
                "MESCON_OTP_PER_IP_HOUR",
                pick!(otp_per_ip_hour).unwrap_or(30),
            )?,
            auth_per_ip_minute: positive(
                "MESCON_AUTH_PER_IP_MINUTE",
                pick!(auth_per_ip_minute).unwrap_or(30),
            )?,
            max_json_bytes: match pick!(max_json_bytes).unwrap_or(64 * 1024) {
                n @ 1024..=1_048_576 => n,
                _ => {
                    return Err(bad(
                        "MESCON_MAX_JSON_BYTES",
                        "must be between 1024 and 1048576",
                    ));
                }
            },
            max_avatar_bytes: 5 * 1024 * 1024,
        };

        Ok(Config {
            listen,
            data_dir,
            database_url,
            public_url,
            allowed_origins,
            otp_sender,
            default_region,
            jwt_secret,
            turn_secret,
            encryption_keys,
            tls,
            media_udp,
            ice_tcp,
            public_ips,
            call_max_bitrate,
            turn_listen,
            turn_config,
            log_format,
            trusted_proxies,
            access_token_ttl: Duration::from_secs(ttl),
            refresh_token_ttl: Duration::from_secs(days * 86_400),
            limits,
        })
    }

    /// A configuration for tests and embedding: loopback everywhere, media/TURN off, the given data dir.
    pub fn for_tests(data_dir: &Path, database_url: Option<String>) -> Config {
        let settings = Settings {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.to_path_buf()),
            database_url,
            media_udp: Some("127.0.0.1:0".into()),
            ice_tcp: Some(String::new()),
            turn_listen: Some(String::new()),
            ..Settings::default()
        };
        // The values above are all valid, so resolution cannot fail; a failure is a bug in this function.
        Config::resolve(&settings).expect("test configuration is valid")
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(
            "MESCON_CONFIG",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    toml::from_str(&text).map_err(|e| bad("MESCON_CONFIG", format!("{}: {e}", path.display())))
}

fn parse_addr(name: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.trim().parse().map_err(|_| {
        bad(
            name,
            format!("`{value}` is not an address like 0.0.0.0:8000"),
        )
    })
}

/// An address setting where an empty value switches the feature off.
fn optional_addr(
    name: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    // clap treats an empty environment variable as absent, so look at the raw environment too:
    // `MESCON_ICE_TCP=` must mean "off", not "default".
    let value = value.or_else(|| std::env::var(name).ok());
    match value {
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => parse_addr(name, &v).map(Some),
        None => parse_addr(name, default).map(Some),
    }
}

fn parse_ips(name: &'static str, value: &str) -> Result<Vec<IpAddr>, ConfigError> {
    split_list(value)
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| bad(name, format!("`{s}` is not an IP address")))
        })
        .collect()
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn positive(name: &'static str, value: u32) -> Result<u32, ConfigError> {
    if value == 0 {
        Err(bad(name, "must be at least 1"))
    } else {
        Ok(value)
    }
}

/// Decodes a base64 secret and insists on at least 32 bytes of it.
pub fn parse_secret(name: &'static str, value: &str) -> Result<Vec<u8>, ConfigError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| bad(name, "must be base64"))?;
    if bytes.len() < 32 {
        return Err(bad(name, "must decode to at least 32 bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_api_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Settings {
            data_dir: Some(dir.path().to_path_buf()),
            ice_tcp: None,
            ..Settings::default()
        };
        let config = Config::resolve(&settings).expect("defaults are valid");
        assert_eq!(
            config.listen,
            "0.0.0.0:8000".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(
            config.media_udp,
            "0.0.0.0:7882".parse::<SocketAddr>().expect("addr")
        );
        assert!(config.database_url.starts_with("sqlite://"));
        assert_eq!(config.otp_sender, OtpSenderConfig::Log);
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.call_max_bitrate, 4_000_000);
        assert_eq!(
            config.call_max_bitrate,
            mescon_media::Limits::default().max_subscriber_bitrate,
            "the SFU's own default"
        );
    }

    #[test]
    fn file_is_below_flags_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mescon.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nmedia_udp = \"127.0.0.1:9001\"\n",
        )
        .expect("write");
        let settings = Settings {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:9100".into()),
            ..Settings::default()
        };
        let config = Config::resolve(&settings).expect("valid");
        assert_eq!(config.listen.port(), 9100, "the flag beats the file");
        assert_eq!(config.media_udp.port(), 9001, "the file beats the default");

        std::fs::write(&path, "lisen = \"127.0.0.1:9000\"\n").expect("write");
        let err = Config::resolve(&settings).expect_err("typo must be refused");
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases: Vec<(Settings, &str)> = vec![
            (
                Settings {
                    listen: Some("nonsense".into()),
                    ..Default::default()
                },
                "MESCON_LISTEN",
            ),
            (
                Settings {
                    otp_sender: Some("sms".into()),
                    ..Default::default()
                },
                "MESCON_OTP_SENDER",
            ),
            (
                Settings {
                    otp_sender: Some("webhook".into()),
                    ..Default::default()
                },
                "MESCON_OTP_WEBHOOK_URL",
            ),
            (
                Settings {
                    jwt_secret: Some("c2hvcnQ=".into()),
                    ..Default::default()
                },
                "MESCON_JWT_SECRET",
            ),
            (
                Settings {
                    default_region: Some("XX".into()),
                    ..Default::default()
                },
                "MESCON_DEFAULT_REGION",
            ),
            (
                Settings {
                    encryption_keys: Some("k1:short".into()),
                    ..Default::default()
                },
                "MESCON_ENCRYPTION_KEYS",
            ),
            (
                Settings {
                    log_format: Some("xml".into()),
                    ..Default::default()
                },
                "MESCON_LOG_FORMAT",
            ),
            (
                Settings {
                    access_token_ttl: Some(3600),
                    ..Default::default()
                },
                "MESCON_ACCESS_TOKEN_TTL",
            ),
            (
                Settings {
                    call_max_bitrate: Some(1000),
                    ..Default::default()
                },
                "MESCON_CALL_MAX_BITRATE",
            ),
            (
                Settings {
                    tls_cert: Some("/nonexistent.pem".into()),
                    ..Default::default()
                },
                "MESCON_TLS_CERT",
            ),
        ];
        for (settings, name) in cases {
            let err = Config::resolve(&settings).expect_err(name);
            assert_eq!(err.name, name, "{err}");
        }
    }

    #[test]
    fn empty_address_switches_a_listener_off() {
        let settings = Settings {
            ice_tcp: Some(String::new()),
            turn_listen: Some(" ".into()),
            ..Settings::default()
        };
        let config = Config::resolve(&settings).expect("valid");
        assert_eq!(config.ice_tcp, None);
        assert_eq!(config.turn_listen, None);
    }
}
