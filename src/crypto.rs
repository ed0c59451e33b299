//! The at-rest cipher for message bodies: AES-256-GCM under a key ring.
//!
//! A sealed value is `version (1) | kid length (1) | kid | nonce (12) | ciphertext+tag`. The key id
//! travels with the ciphertext so that rotation never makes old rows unreadable, and the caller's
//! associated data (the record's identity) is bound in, so a ciphertext copied into another row fails.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why a key ring or a sealed value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The key ring text is not `kid:base64key[,...]` with 32-byte keys and distinct ids.
    #[error("bad key ring: {0}")]
    BadKeyRing(String),
    /// The sealed value is truncated or of an unknown version.
    #[error("malformed ciphertext")]
    Malformed,
    /// The sealed value names a key id this ring does not hold.
    #[error("unknown key id `{0}`")]
    UnknownKey(String),
    /// Authentication failed: tampered data, wrong key or wrong associated data.
    #[error("ciphertext does not authenticate")]
    Unauthentic,
    /// Encryption itself failed (only for inputs beyond AES-GCM's length limit).
    #[error("encryption failed")]
    SealFailed,
}

/// One named AES-256-GCM key.
struct RingKey {
    kid: String,
    cipher: Aes256Gcm,
}

/// The message key ring: the first key encrypts, every key decrypts.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: key material never reaches a log line.
        f.debug_struct("KeyRing")
            .field("kids", &self.kids())
            .finish()
    }
}

impl KeyRing {
    /// Parses `kid:base64key[,kid:base64key...]`.
    pub fn parse(spec: &str) -> Result<KeyRing, CryptoError> {
        let mut keys: Vec<RingKey> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kid, key) = part.split_once(':').ok_or_else(|| {
                CryptoError::BadKeyRing("each entry must be kid:base64key".into())
            })?;
            validate_kid(kid)?;
            let bytes = B64
                .decode(key)
                .map_err(|_| CryptoError::BadKeyRing(format!("key `{kid}` is not base64")))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| CryptoError::BadKeyRing(format!("key `{kid}` must be 32 bytes")))?;
            if keys.iter().any(|k| k.kid == kid) {
                return Err(CryptoError::BadKeyRing(format!(
                    "key id `{kid}` appears twice"
                )));
            }
            keys.push(RingKey {
                kid: kid.to_string(),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(CryptoError::BadKeyRing("no keys".into()));
        }
        Ok(KeyRing { keys })
    }

    /// A fresh key ring spec with one random key, for first start and `mescon keys`.
    pub fn generate_spec(kid: &str) -> String {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        format!("{kid}:{}", B64.encode(key))
    }

    /// The key ids, encrypting key first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// The id of the key that encrypts new values.
    pub fn current_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// Encrypts `plaintext` under the current key, binding `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let nonce = Nonce::from(nonce);
        let ct = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::SealFailed)?;
        let mut out = Vec::with_capacity(2 + key.kid.len() + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.push(key.kid.len() as u8);
        out.extend_from_slice(key.kid.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a value sealed by any key of the ring, checking `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (kid, nonce, ct) = split(sealed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid.as_bytes() == kid)
            .ok_or_else(|| CryptoError::UnknownKey(String::from_utf8_lossy(kid).into_owned()))?;
        let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::Malformed)?;
        key.cipher
            .decrypt(&nonce, Payload { msg: ct, aad })
            .map_err(|_| CryptoError::Unauthentic)
    }
}

/// HMAC-SHA256 of `msg` under `key` (webhook signatures, OTP hashes, avatar URL signatures, derived keys).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // HMAC accepts keys of any length, so construction cannot fail; the fallback is never taken.
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The parts of a sealed value: key id, nonce, ciphertext with tag.
type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

fn split(sealed: &[u8]) -> Result<Parts<'_>, CryptoError> {
    let (&version, rest) = sealed.split_first().ok_or(CryptoError::Malformed)?;
    if version != VERSION {
        return Err(CryptoError::Malformed);
    }
    let (&kid_len, rest) = rest.split_first().ok_or(CryptoError::Malformed)?;
    let kid_len = usize::from(kid_len);
    if rest.len() < kid_len + NONCE_LEN + 16 {
        return Err(CryptoError::Malformed);
    }
    let (kid, rest) = rest.split_at(kid_len);
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    Ok((kid, nonce, ct))
}

fn validate_kid(kid: &str) -> Result<(), CryptoError> {
    let ok = (1..=32).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CryptoError::BadKeyRing(format!(
            "key id `{kid}` must be 1-32 characters of A-Z a-z 0-9 - _"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(spec: &str) -> KeyRing {
        KeyRing::parse(spec).expect("valid ring")
    }

    #[test]
    fn round_trip_with_aad() {
        let r = ring(&KeyRing::generate_spec("k1"));
        let sealed = r.seal(b"hello", b"msg:1").expect("seal");
        assert_ne!(&sealed[sealed.len() - 5..], b"hello");
        assert_eq!(r.open(&sealed, b"msg:1").expect("opens"), b"hello");
    }

    #[test]
    fn same_plaintext_seals_differently() {
        let r = ring(&KeyRing::generate_spec("k1"));
        assert_ne!(
            r.seal(b"x", b"a").expect("seal"),
            r.seal(b"x", b"a").expect("seal"),
            "nonces must be random"
        );
    }

    #[test]
    fn wrong_aad_and_tampering_fail() {
        let r = ring(&KeyRing::generate_spec("k1"));
        let sealed = r.seal(b"hello", b"msg:1").expect("seal");
        assert_eq!(r.open(&sealed, b"msg:2"), Err(CryptoError::Unauthentic));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(r.open(&t, b"msg:1").is_err(), "flipping byte {i} must fail");
        }
        assert_eq!(r.open(&sealed[..10], b"msg:1"), Err(CryptoError::Malformed));
        assert_eq!(r.open(&[], b"msg:1"), Err(CryptoError::Malformed));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = KeyRing::generate_spec("k1");
        let r1 = ring(&old);
        let sealed_old = r1.seal(b"old", b"a").expect("seal");
        let r2 = ring(&format!("{},{old}", KeyRing::generate_spec("k2")));
        assert_eq!(r2.current_kid(), "k2");
        assert_eq!(
            r2.open(&sealed_old, b"a").expect("old key still decrypts"),
            b"old"
        );
        let sealed_new = r2.seal(b"new", b"a").expect("seal");
        assert_eq!(
            r1.open(&sealed_new, b"a"),
            Err(CryptoError::UnknownKey("k2".into()))
        );
    }

    #[test]
    fn bad_rings_are_refused() {
        for spec in [
            "",
            "k1",
            "k1:notbase64!",
            "k1:c2hvcnQ=",
            "bad id:AAAA",
            &format!("{0},{0}", KeyRing::generate_spec("k")),
        ] {
            assert!(
                matches!(KeyRing::parse(spec), Err(CryptoError::BadKeyRing(_))),
                "{spec}"
            );
        }
    }
}
