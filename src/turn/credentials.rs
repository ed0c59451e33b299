//! TURN REST credentials (the scheme coturn calls `use-auth-secret`): the HTTP API mints a username
//! `<expiry-unix>:<user_id>` and the password `base64(HMAC-SHA1(secret, username))`; the TURN server
//! recomputes the password from the shared secret, so no per-user state is shared between the two.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// A username/password pair for one user, valid until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestCredential {
    /// `<expiry-unix>:<user_id>`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub password: String,
    /// Unix seconds after which the TURN server refuses the username.
    pub expires_at: i64,
}

/// Mints a credential for `user_id`, valid for `ttl_secs` from `now_secs` (Unix seconds).
pub fn mint(secret: &[u8], user_id: &str, now_secs: i64, ttl_secs: i64) -> RestCredential {
    let expires_at = now_secs.saturating_add(ttl_secs);
    let username = format!("{expires_at}:{user_id}");
    let password = password_for(secret, &username);
    RestCredential {
        username,
        password,
        expires_at,
    }
}

/// The password the shared secret gives `username`.
pub fn password_for(secret: &[u8], username: &str) -> String {
    use hmac::{KeyInit, Mac};
    // HMAC accepts keys of any length, so construction cannot fail; an empty MAC would only make
    // every credential wrong, never right.
    let Ok(mut mac) = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(username.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// Why a username is refused before its password is even looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// Not `<expiry-unix>:<user_id>`.
    #[error("not a TURN REST username")]
    Malformed,
    /// The expiry has passed.
    #[error("expired")]
    Expired,
}

/// A username that parsed and has not expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedUsername<'a> {
    /// Unix seconds of expiry.
    pub expires_at: i64,
    /// The Mescon user the credential was minted for (quotas count by it).
    pub user_id: &'a str,
}

/// Parses `<expiry-unix>:<user_id>` and refuses it once `now_secs` has reached the expiry.
pub fn parse_username(username: &str, now_secs: i64) -> Result<ParsedUsername<'_>, UsernameError> {
    let parsed = parse_username_format(username)?;
    if parsed.expires_at <= now_secs {
        return Err(UsernameError::Expired);
    }
    Ok(parsed)
}

/// Parses `<expiry-unix>:<user_id>` without looking at the clock.
pub fn parse_username_format(username: &str) -> Result<ParsedUsername<'_>, UsernameError> {
    let (expiry, user_id) = username.split_once(':').ok_or(UsernameError::Malformed)?;
    let expires_at: i64 = expiry.parse().map_err(|_| UsernameError::Malformed)?;
    // A user id is an opaque token of ours; anything with control characters or a second colon
    // was not minted here.
    if user_id.is_empty()
        || user_id.len() > 128
        || user_id.contains(':')
        || user_id.chars().any(char::is_control)
    {
        return Err(UsernameError::Malformed);
    }
    Ok(ParsedUsername {
        expires_at,
        user_id,
    })
}

/// The long-term key of RFC 8489 §9.2.2, `MD5(username ":" realm ":" password)`, which keys the
/// MESSAGE-INTEGRITY of every authenticated TURN message.
pub fn long_term_key(secret: &[u8], username: &str, realm: &str) -> Vec<u8> {
    turn::auth::generate_auth_key(username, realm, &password_for(secret, username))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn password_is_base64_hmac_sha1_of_the_username() {
        // Reference value computed independently: printf '1700000000:u1' | openssl dgst -sha1
        // -hmac 0123456789abcdef0123456789abcdef -binary | base64
        assert_eq!(
            password_for(SECRET, "1700000000:u1"),
            "l7YDrEwxZw8YmiFSwdtc7Nwr/Bk="
        );
    }

    #[test]
    fn mint_then_parse_round_trips_until_expiry() {
        let c = mint(SECRET, "user-1", 1_000, 3_600);
        assert_eq!(c.username, "4600:user-1");
        assert_eq!(c.expires_at, 4_600);
        assert_eq!(c.password, password_for(SECRET, &c.username));
        let p = parse_username(&c.username, 4_599).expect("valid");
        assert_eq!(p.user_id, "user-1");
        assert_eq!(
            parse_username(&c.username, 4_600),
            Err(UsernameError::Expired)
        );
    }

    #[test]
    fn foreign_usernames_are_malformed() {
        for bad in ["alice", "abc:user", ":user", "100:", "100:a:b", "100:a\nb"] {
            assert_eq!(
                parse_username(bad, 0),
                Err(UsernameError::Malformed),
                "{bad:?}"
            );
        }
    }
}
