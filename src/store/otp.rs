//! One-time password records: at most one live code per phone number, stored only as a keyed hash.

use super::{Result, Store};

/// The live code of a phone number.
#[derive(Debug, Clone)]
pub struct OtpRecord {
    /// HMAC of phone and code.
    pub code_hash: Vec<u8>,
    /// Expiry (Unix ms).
    pub expires_at: i64,
    /// Wrong tries so far.
    pub attempts: i64,
    /// When it was sent (Unix ms), for the resend cooldown.
    pub sent_at: i64,
}

impl Store {
    /// Replaces the phone's code with a new one.
    pub async fn put_otp(
        &self,
        phone: &str,
        code_hash: &[u8],
        sent_at: i64,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO otp_codes (phone, code_hash, expires_at, attempts, sent_at) VALUES ($1, $2, $3, 0, $4)
             ON CONFLICT (phone) DO UPDATE SET code_hash = excluded.code_hash, expires_at = excluded.expires_at,
             attempts = 0, sent_at = excluded.sent_at",
        )
        .bind(phone)
        .bind(code_hash.to_vec())
        .bind(expires_at)
        .bind(sent_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The phone's live code, if one was issued.
    pub async fn otp(&self, phone: &str) -> Result<Option<OtpRecord>> {
        let row: Option<(Vec<u8>, i64, i64, i64)> = sqlx::query_as(
            "SELECT code_hash, expires_at, attempts, sent_at FROM otp_codes WHERE phone = $1",
        )
        .bind(phone)
        .fetch_optional(self.pool())
        .await?;
        Ok(
            row.map(|(code_hash, expires_at, attempts, sent_at)| OtpRecord {
                code_hash,
                expires_at,
                attempts,
                sent_at,
            }),
        )
    }

    /// Counts a wrong try atomically and returns the new count (0 if the code is gone).
    pub async fn otp_failed_attempt(&self, phone: &str) -> Result<i64> {
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE otp_codes SET attempts = attempts + 1 WHERE phone = $1 RETURNING attempts",
        )
        .bind(phone)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.0).unwrap_or(0))
    }

    /// Consumes the code if it is still the one that was checked: only one of two concurrent
    /// verifications of the same code can win.
    pub async fn take_otp(&self, phone: &str, code_hash: &[u8]) -> Result<bool> {
        let done = sqlx::query("DELETE FROM otp_codes WHERE phone = $1 AND code_hash = $2")
            .bind(phone)
            .bind(code_hash.to_vec())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets the phone's code (delivery failed).
    pub async fn delete_otp(&self, phone: &str) -> Result<()> {
        sqlx::query("DELETE FROM otp_codes WHERE phone = $1")
            .bind(phone)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
