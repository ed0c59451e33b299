//! Access and refresh tokens. Access tokens are short HS256 JWTs carrying the session id, checked
//! against the session on use so that a revoked session stops at once. Refresh tokens are random,
//! opaque, stored only as a SHA-256 hash, and rotated on every use.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Always "access", so no other token of ours can pass for one.
    pub typ: String,
}

/// Issues and checks tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

/// A token that does not check out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid token")]
pub struct InvalidToken;

impl Tokens {
    /// Tokens signed with `secret`, access tokens living `access_ttl`.
    pub fn new(secret: &[u8], access_ttl: Duration) -> Tokens {
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl,
        }
    }

    /// Access token lifetime in seconds (the API's `expires_in`).
    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl.as_secs()
    }

    /// A signed access token for a session.
    pub fn issue_access(
        &self,
        user_id: &str,
        session_id: &str,
        now_ms: i64,
    ) -> Result<String, InvalidToken> {
        let iat = now_ms.div_euclid(1000);
        let claims = AccessClaims {
            sub: user_id.to_string(),
            sid: session_id.to_string(),
            iat,
            exp: iat + self.access_ttl.as_secs() as i64,
            typ: "access".into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| InvalidToken)
    }

    /// Verifies signature (HS256 only: `alg` is pinned, `none` and others are refused) and expiry.
    pub fn verify_access(&self, token: &str, now_ms: i64) -> Result<AccessClaims, InvalidToken> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the injectable clock below, not the library's system clock.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .map_err(|_| InvalidToken)?;
        let claims = data.claims;
        if claims.typ != "access" || claims.exp <= now_ms.div_euclid(1000) {
            return Err(InvalidToken);
        }
        Ok(claims)
    }
}

/// A new refresh token and its hash (only the hash is stored).
pub fn new_refresh_token() -> (String, [u8; 32]) {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    let token = B64URL.encode(raw);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn access_tokens_round_trip_and_expire() {
        let t = Tokens::new(&[7u8; 32], Duration::from_secs(900));
        let token = t.issue_access("u1", "s1", NOW).expect("issue");
        let claims = t.verify_access(&token, NOW + 1000).expect("valid");
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("u1", "s1"));
        assert_eq!(t.verify_access(&token, NOW + 900_000), Err(InvalidToken));
    }

    #[test]
    fn other_keys_and_algorithms_are_refused() {
        let t = Tokens::new(&[7u8; 32], Duration::from_secs(900));
        let other = Tokens::new(&[8u8; 32], Duration::from_secs(900));
        let token = other.issue_access("u1", "s1", NOW).expect("issue");
        assert_eq!(t.verify_access(&token, NOW), Err(InvalidToken));

        // An unsigned token (`alg: none`) with valid-looking claims.
        let header = B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = B64URL.encode(format!(
            r#"{{"sub":"u1","sid":"s1","iat":0,"exp":{},"typ":"access"}}"#,
            NOW / 1000 + 60
        ));
        assert_eq!(
            t.verify_access(&format!("{header}.{body}."), NOW),
            Err(InvalidToken)
        );
        assert_eq!(t.verify_access("garbage", NOW), Err(InvalidToken));
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, ha) = new_refresh_token();
        let (b, hb) = new_refresh_token();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(hash_refresh_token(&a), ha);
        assert!(a.len() >= 43);
    }
}
