//! Blocking: a blocked user cannot message or call the blocker, and presence is hidden both ways.

use super::users::{User, UserRow, user_columns};
use super::{Result, Store, StoreError};

impl Store {
    /// The live users `blocker` has blocked.
    pub async fn blocked_users(&self, blocker: &str) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!("u."),
            " FROM blocks b JOIN users u ON u.id = b.blocked_id
             WHERE b.blocker_id = $1 AND u.deleted_at IS NULL ORDER BY b.created_at"
        ))
        .bind(blocker)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    /// Blocks a live user (idempotent).
    pub async fn block(&self, blocker: &str, blocked: &str, now: i64) -> Result<()> {
        if blocker == blocked {
            return Err(StoreError::NotFound);
        }
        self.user(blocked).await?;
        sqlx::query("INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(blocker)
            .bind(blocked)
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Unblocks (idempotent).
    pub async fn unblock(&self, blocker: &str, blocked: &str) -> Result<()> {
        sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2")
            .bind(blocker)
            .bind(blocked)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Whether `to` is a live user `sender` may write to: None when no such user, else
    /// `(to_blocked_sender, sender_blocked_to)`. One query on the hot send path.
    pub async fn reachability(&self, sender: &str, to: &str) -> Result<Option<(bool, bool)>> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $2 AND blocked_id = $1) THEN 1 ELSE 0 END AS BIGINT),
                    CAST(CASE WHEN EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2) THEN 1 ELSE 0 END AS BIGINT)
             FROM users WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(sender)
        .bind(to)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(theirs, mine)| (theirs == 1, mine == 1)))
    }
}
