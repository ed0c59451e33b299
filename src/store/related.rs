//! Who is related to whom: the audiences of presence and typing. A user's presence goes to the users
//! in their contact book and to their conversation peers; blocks (either way) hide it.

use super::{Result, Store};

impl Store {
    /// The users allowed to see `user`'s presence: accounts in `user`'s contact book and `user`'s
    /// conversation peers, minus anyone blocked either way.
    pub async fn presence_audience(&self, user: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT r.id FROM (
                 SELECT u.id AS id FROM contacts c JOIN users u ON u.phone = c.phone AND u.deleted_at IS NULL
                 WHERE c.owner_id = $1
                 UNION
                 SELECT CASE WHEN user_a = $1 THEN user_b ELSE user_a END AS id FROM conversations
                 WHERE user_a = $1 OR user_b = $1
             ) r
             WHERE r.id <> $1 AND NOT EXISTS (
                 SELECT 1 FROM blocks b WHERE (b.blocker_id = $1 AND b.blocked_id = r.id) OR (b.blocker_id = r.id AND b.blocked_id = $1)
             )",
        )
        .bind(user)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The users whose presence `user` may see: those who keep `user` in their contact book, and
    /// `user`'s conversation peers, minus anyone blocked either way.
    pub async fn presence_sources(&self, user: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT r.id FROM (
                 SELECT c.owner_id AS id FROM contacts c JOIN users u ON u.phone = c.phone
                 WHERE u.id = $1 AND u.deleted_at IS NULL
                 UNION
                 SELECT CASE WHEN user_a = $1 THEN user_b ELSE user_a END AS id FROM conversations
                 WHERE user_a = $1 OR user_b = $1
             ) r
             JOIN users o ON o.id = r.id AND o.deleted_at IS NULL
             WHERE r.id <> $1 AND NOT EXISTS (
                 SELECT 1 FROM blocks b WHERE (b.blocker_id = $1 AND b.blocked_id = r.id) OR (b.blocker_id = r.id AND b.blocked_id = $1)
             )",
        )
        .bind(user)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Whether `from` may show `to` its typing state: they share a conversation or one keeps the
    /// other's number, and neither blocked the other.
    pub async fn may_signal(&self, from: &str, to: &str) -> Result<bool> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM users f JOIN users t ON t.id = $2 AND t.deleted_at IS NULL
             WHERE f.id = $1
               AND NOT EXISTS (SELECT 1 FROM blocks b WHERE (b.blocker_id = $1 AND b.blocked_id = $2) OR (b.blocker_id = $2 AND b.blocked_id = $1))
               AND (EXISTS (SELECT 1 FROM conversations c WHERE (c.user_a = $1 AND c.user_b = $2) OR (c.user_a = $2 AND c.user_b = $1))
                    OR EXISTS (SELECT 1 FROM contacts c WHERE c.owner_id = $1 AND c.phone = t.phone)
                    OR EXISTS (SELECT 1 FROM contacts c WHERE c.owner_id = $2 AND c.phone = f.phone))",
        )
        .bind(from)
        .bind(to)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }
}
