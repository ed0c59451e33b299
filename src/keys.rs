//! The server's secrets: the JWT signing key, the TURN REST secret and the message key ring.
//!
//! Production passes them by environment or config file. Without them, the first start generates each
//! one into the data directory (mode 0600) and says so in the log, so `cargo run` needs no setup;
//! later starts read the same files back, so sessions and messages survive restarts.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::config::{Config, parse_secret};
use crate::crypto::KeyRing;

/// The secrets in force.
pub struct Secrets {
    /// HMAC key of access tokens (and, derived from it, of OTP hashes).
    pub jwt: Vec<u8>,
    /// Shared secret of TURN REST credentials.
    pub turn: Vec<u8>,
    /// The message key ring, as its text spec (kept to print it with `mescon keys print`).
    pub ring_spec: String,
    /// The parsed message key ring.
    pub ring: KeyRing,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

/// Why the secrets could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file holds something that is not a valid key.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

const JWT_FILE: &str = "jwt.secret";
const TURN_FILE: &str = "turn.secret";
const RING_FILE: &str = "message.keys";

impl Secrets {
    /// Loads configured secrets, or reads/generates the missing ones in `<data_dir>/secrets/`.
    pub fn load(config: &Config) -> Result<Secrets, KeysError> {
        let dir = config.data_dir.join("secrets");
        let jwt = match &config.jwt_secret {
            Some(s) => s.clone(),
            None => file_secret(&dir.join(JWT_FILE))?,
        };
        let turn = match &config.turn_secret {
            Some(s) => s.clone(),
            None => file_secret(&dir.join(TURN_FILE))?,
        };
        let ring_spec = match &config.encryption_keys {
            Some(s) => s.clone(),
            None => file_text(&dir.join(RING_FILE), || KeyRing::generate_spec(&new_kid()))?,
        };
        let ring = KeyRing::parse(&ring_spec).map_err(|e| KeysError::Invalid {
            path: dir.join(RING_FILE),
            reason: e.to_string(),
        })?;
        Ok(Secrets {
            jwt,
            turn,
            ring_spec,
            ring,
        })
    }

    /// The secrets as environment lines, for moving generated keys into an operator's secret store.
    pub fn to_env_lines(&self) -> String {
        format!(
            "MESCON_JWT_SECRET={}\nMESCON_TURN_SECRET={}\nMESCON_ENCRYPTION_KEYS={}\n",
            B64.encode(&self.jwt),
            B64.encode(&self.turn),
            self.ring_spec
        )
    }

    /// A fresh, unrelated set of secrets as environment lines.
    pub fn generate_env_lines() -> String {
        format!(
            "MESCON_JWT_SECRET={}\nMESCON_TURN_SECRET={}\nMESCON_ENCRYPTION_KEYS={}\n",
            B64.encode(random_secret()),
            B64.encode(random_secret()),
            KeyRing::generate_spec(&new_kid())
        )
    }
}

/// Puts a new key in front of the generated key ring file; returns the new key id.
/// Operators who pass `MESCON_ENCRYPTION_KEYS` rotate by editing that value instead.
pub fn rotate_ring_file(config: &Config) -> Result<String, KeysError> {
    let path = config.data_dir.join("secrets").join(RING_FILE);
    let old = file_text(&path, || KeyRing::generate_spec(&new_kid()))?;
    let kid = new_kid();
    let spec = format!("{},{}", KeyRing::generate_spec(&kid), old.trim());
    KeyRing::parse(&spec).map_err(|e| KeysError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write_private(&path, &spec)?;
    Ok(kid)
}

fn new_kid() -> String {
    // Time-ordered, so a sorted ring listing reads oldest to newest.
    let secs = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut tail = [0u8; 3];
    rand::fill(&mut tail);
    format!("k{secs}{}", hex::encode(tail))
}

fn random_secret() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    key
}

fn file_secret(path: &Path) -> Result<Vec<u8>, KeysError> {
    let text = file_text(path, || B64.encode(random_secret()))?;
    parse_secret("secret file", &text).map_err(|e| KeysError::Invalid {
        path: path.to_path_buf(),
        reason: e.reason,
    })
}

/// Reads a key file, or creates it with `generate()` on first start.
fn file_text(path: &Path, generate: impl FnOnce() -> String) -> Result<String, KeysError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = generate();
            write_private(path, &text)?;
            tracing::warn!(file = %path.display(), "generated a new secret; back up the data directory or pass it by environment");
            Ok(text)
        }
        Err(source) => Err(KeysError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), KeysError> {
    let io = |source| KeysError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
    }
    // Write a sibling and rename, so a crash never leaves a half-written key behind.
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_generates_private_files_and_later_starts_reuse_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::for_tests(dir.path(), None);
        let a = Secrets::load(&config).expect("generate");
        let b = Secrets::load(&config).expect("reload");
        assert_eq!(a.jwt, b.jwt);
        assert_eq!(a.turn, b.turn);
        assert_eq!(a.ring_spec, b.ring_spec);
        assert_ne!(a.jwt, a.turn);
        #[cfg(unix)]
        for name in [JWT_FILE, TURN_FILE, RING_FILE] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secrets").join(name))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn rotation_prepends_a_key_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::for_tests(dir.path(), None);
        let before = Secrets::load(&config).expect("generate");
        let sealed = before.ring.seal(b"x", b"aad").expect("seal");
        let kid = rotate_ring_file(&config).expect("rotate");
        let after = Secrets::load(&config).expect("reload");
        assert_eq!(after.ring.current_kid(), kid);
        assert_eq!(
            after.ring.open(&sealed, b"aad").expect("old still opens"),
            b"x"
        );
    }
}
