//! One-time passwords: 6 digits from a CSPRNG, stored only as a keyed hash, valid 5 minutes, 5 tries,
//! single use, a resend cooldown, compared in constant time.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::sender::OtpSender;
use crate::clock::Clock;
use crate::crypto::hmac_sha256;
use crate::store::{Store, StoreError};

/// How long a code lives.
pub const OTP_TTL_SECS: u64 = 300;
/// How long before the same phone may ask again.
pub const RESEND_AFTER_SECS: u64 = 30;
/// Wrong tries that kill a code.
pub const MAX_ATTEMPTS: i64 = 5;

/// Why an OTP request or verification failed.
#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    /// Asked again inside the cooldown, or the code is dead after too many tries; retry after N seconds.
    #[error("try again in {0} s")]
    TooSoon(u64),
    /// Wrong, expired, used or never issued.
    #[error("wrong or expired code")]
    Wrong,
    /// The sender could not deliver the code.
    #[error(transparent)]
    Delivery(#[from] super::sender::SendError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Issues and checks codes.
pub struct OtpService {
    store: Store,
    sender: OtpSender,
    clock: Arc<dyn Clock>,
    key: Vec<u8>,
}

impl std::fmt::Debug for OtpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpService")
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

impl OtpService {
    /// A service hashing codes with a key derived from `server_secret`.
    pub fn new(
        store: Store,
        sender: OtpSender,
        clock: Arc<dyn Clock>,
        server_secret: &[u8],
    ) -> OtpService {
        // A key of its own, so an OTP hash can never be mistaken for (or help forge) a token signature.
        let key = hmac_sha256(server_secret, b"mescon otp hash key").to_vec();
        OtpService {
            store,
            sender,
            clock,
            key,
        }
    }

    fn hash(&self, phone: &str, code: &str) -> [u8; 32] {
        hmac_sha256(&self.key, format!("{phone}\n{code}").as_bytes())
    }

    /// Issues a new code for `phone` (already normalized) and delivers it.
    pub async fn request(&self, phone: &str) -> Result<(), OtpError> {
        let now = self.clock.now_ms();
        if let Some(existing) = self.store.otp(phone).await? {
            let ready_at = existing.sent_at + RESEND_AFTER_SECS as i64 * 1000;
            if now < ready_at {
                return Err(OtpError::TooSoon(secs_until(now, ready_at)));
            }
        }
        let code = format!("{:06}", rand::random_range(0..1_000_000u32));
        self.store
            .put_otp(
                phone,
                &self.hash(phone, &code),
                now,
                now + OTP_TTL_SECS as i64 * 1000,
            )
            .await?;
        if let Err(e) = self.sender.send(phone, &code, OTP_TTL_SECS).await {
            // An undelivered code must not hold the cooldown against the user.
            self.store.delete_otp(phone).await?;
            return Err(e.into());
        }
        Ok(())
    }

    /// Checks `code` for `phone`; on success the code is consumed.
    pub async fn verify(&self, phone: &str, code: &str) -> Result<(), OtpError> {
        let now = self.clock.now_ms();
        let Some(record) = self.store.otp(phone).await? else {
            return Err(OtpError::Wrong);
        };
        if record.attempts >= MAX_ATTEMPTS {
            let ready_at = record.sent_at + RESEND_AFTER_SECS as i64 * 1000;
            return Err(OtpError::TooSoon(secs_until(now, ready_at)));
        }
        if now >= record.expires_at {
            return Err(OtpError::Wrong);
        }
        let hash = self.hash(phone, code);
        if !bool::from(hash.ct_eq(record.code_hash.as_slice())) {
            self.store.otp_failed_attempt(phone).await?;
            return Err(OtpError::Wrong);
        }
        if self.store.take_otp(phone, &hash).await? {
            Ok(())
        } else {
            Err(OtpError::Wrong)
        }
    }
}

fn secs_until(now: i64, at: i64) -> u64 {
    (((at - now).max(0) + 999) / 1000).max(1) as u64
}
