//! Login sessions and their rotating refresh tokens.

use super::{Result, Store, StoreError, new_id};

/// A session as access-token checks see it.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Session id (carried in access tokens).
    pub id: String,
    /// Its user.
    pub user_id: String,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Rotated: the old token is spent, the new hash is live.
    Rotated {
        /// The session.
        session_id: String,
        /// Its user.
        user_id: String,
    },
    /// The token was already spent: the session is now revoked (someone holds a stolen copy).
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

impl Store {
    /// Opens a session with its first refresh token.
    pub async fn create_session(
        &self,
        user_id: &str,
        refresh_hash: &[u8],
        user_agent: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<String> {
        let id = new_id();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, expires_at, last_used_at, user_agent) VALUES ($1, $2, $3, $4, $3, $5)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .bind(user_agent)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(refresh_hash.to_vec())
        .bind(&id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Spends a refresh token and makes `new_hash` the session's next one; a spent token revokes the session.
    pub async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new_hash: &[u8],
        now: i64,
    ) -> Result<RefreshOutcome> {
        let mut tx = self.pool().begin().await?;
        // (session id, token used_at, user id, session expires_at, session revoked_at)
        type TokenRow = (String, Option<i64>, String, i64, Option<i64>);
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT s.id, r.used_at, s.user_id, s.expires_at, s.revoked_at
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1",
        )
        .bind(old_hash.to_vec())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((session_id, used_at, user_id, expires_at, revoked_at)) = row else {
            return Ok(RefreshOutcome::Invalid);
        };
        if revoked_at.is_some() || expires_at <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        // The conditional update is the arbiter: of two concurrent presentations only one spends it.
        let spent = if used_at.is_none() {
            sqlx::query(
                "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(old_hash.to_vec())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        } else {
            false
        };
        if !spent {
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(&session_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::Reused);
        }
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(new_hash.to_vec())
        .bind(&session_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&session_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated {
            session_id,
            user_id,
        })
    }

    /// The live session with this id (not revoked, not expired, user not deleted).
    pub async fn live_session(&self, id: &str, now: i64) -> Result<SessionRow> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT s.id, s.user_id FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND u.deleted_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        row.map(|(id, user_id)| SessionRow { id, user_id })
            .ok_or(StoreError::NotFound)
    }

    /// The session a refresh token belongs to, if the token is live (for logout by token).
    pub async fn session_of_refresh(&self, hash: &[u8]) -> Result<Option<SessionRow>> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT s.id, s.user_id FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
             WHERE r.token_hash = $1 AND r.used_at IS NULL AND s.revoked_at IS NULL",
        )
        .bind(hash.to_vec())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(id, user_id)| SessionRow { id, user_id }))
    }

    /// Revokes one session.
    pub async fn revoke_session(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Revokes every session of a user.
    pub async fn revoke_all_sessions(&self, user_id: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
