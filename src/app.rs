//! The application state every request handler and WebSocket task shares.

use std::sync::Arc;

use crate::auth::{OtpSender, OtpService, RateLimits, Tokens};
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::hmac_sha256;
use crate::http::error::ApiError;
use crate::http::extract::AuthUser;
use crate::keys::Secrets;
use crate::store::{Store, StoreError, User};

/// Shared state, behind an `Arc`.
pub type AppState = Arc<App>;

/// Everything a request may need.
#[derive(Debug)]
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// The server's secrets.
    pub secrets: Secrets,
    /// Access/refresh token issuing and checking.
    pub tokens: Tokens,
    /// One-time passwords.
    pub otp: OtpService,
    /// Rate limiters.
    pub limits: RateLimits,
    /// The clock (injectable for tests).
    pub clock: Arc<dyn Clock>,
    /// Connected devices and fan-out.
    pub hub: crate::realtime::Hub,
    /// Calls that ring or run.
    pub calls: crate::calls::Calls,
    /// The SFU that carries call media (None only where a test runs without media).
    pub sfu: Option<mescon_media::Sfu>,
    /// Key for avatar URL signatures.
    avatar_key: Vec<u8>,
}

/// Why the application could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The OTP sender could not be set up.
    #[error(transparent)]
    Sender(#[from] crate::auth::sender::SendError),
}

impl App {
    /// Assembles the state from its parts.
    pub fn new(
        config: Config,
        store: Store,
        secrets: Secrets,
        clock: Arc<dyn Clock>,
        sfu: Option<mescon_media::Sfu>,
    ) -> Result<App, BuildError> {
        let sender = OtpSender::from_config(&config.otp_sender)?;
        let tokens = Tokens::new(&secrets.jwt, config.access_token_ttl);
        let otp = OtpService::new(store.clone(), sender, clock.clone(), &secrets.jwt);
        let limits = RateLimits::new(&config.limits);
        let avatar_key = hmac_sha256(&secrets.jwt, b"mescon avatar url key").to_vec();
        Ok(App {
            config,
            store,
            secrets,
            tokens,
            otp,
            limits,
            clock,
            hub: Default::default(),
            calls: Default::default(),
            sfu,
            avatar_key,
        })
    }

    /// Now, by the application clock (Unix ms).
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Checks an access token and its session: a revoked session fails at once, not at token expiry.
    pub async fn authenticate(&self, token: &str) -> Result<AuthUser, ApiError> {
        let now = self.now();
        let claims = self
            .tokens
            .verify_access(token, now)
            .map_err(|_| ApiError::unauthorized("invalid or expired token"))?;
        self.authenticate_session(&claims.sid, &claims.sub).await
    }

    /// Checks that a session is still live and belongs to `user_id` (long-lived sockets re-check this).
    pub async fn authenticate_session(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> Result<AuthUser, ApiError> {
        match self.store.live_session(session_id, self.now()).await {
            Ok(session) if session.user_id == user_id => Ok(AuthUser {
                user_id: session.user_id,
                session_id: session.id,
            }),
            Ok(_) | Err(StoreError::NotFound) => Err(ApiError::unauthorized("session ended")),
            Err(e) => Err(e.into()),
        }
    }

    /// The signature that makes an avatar URL a capability: whoever was shown the profile can load
    /// the picture with a plain `<img src>`, nobody can enumerate pictures by user id.
    pub fn avatar_signature(&self, user_id: &str, version: i64) -> String {
        let mac = hmac_sha256(&self.avatar_key, format!("{user_id}:{version}").as_bytes());
        hex::encode(&mac[..12])
    }

    /// The avatar URL of a user, or None without an avatar.
    pub fn avatar_url(&self, user: &User) -> Option<String> {
        user.avatar_version.map(|v| {
            format!(
                "/api/users/{}/avatar?v={v}&sig={}",
                user.id,
                self.avatar_signature(&user.id, v)
            )
        })
    }
}
