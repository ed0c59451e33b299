//! Call history rows.

use super::{Result, Store};

/// One call as history shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Call id.
    pub id: String,
    /// Who called.
    pub caller_id: String,
    /// Who was called.
    pub callee_id: String,
    /// `audio` or `video`.
    pub kind: String,
    /// `ringing`, `active`, or final: `missed`, `declined`, `answered`, `cancelled`, `failed`.
    pub status: String,
    /// When it was placed (Unix ms).
    pub started_at: i64,
    /// When it was answered.
    pub answered_at: Option<i64>,
    /// When it ended.
    pub ended_at: Option<i64>,
}

type CallRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

impl From<CallRow> for CallRecord {
    fn from(
        (id, caller_id, callee_id, kind, status, started_at, answered_at, ended_at): CallRow,
    ) -> Self {
        CallRecord {
            id,
            caller_id,
            callee_id,
            kind,
            status,
            started_at,
            answered_at,
            ended_at,
        }
    }
}

impl Store {
    /// Records a placed call.
    pub async fn insert_call(
        &self,
        id: &str,
        caller: &str,
        callee: &str,
        kind: &str,
        status: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO calls (id, caller_id, callee_id, kind, status, started_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(caller)
        .bind(callee)
        .bind(kind)
        .bind(status)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records that the call was answered.
    pub async fn answer_call(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE calls SET status = 'active', answered_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records the end of a call with its final status and reason.
    pub async fn end_call(&self, id: &str, status: &str, reason: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE calls SET status = $1, end_reason = $2, ended_at = $3 WHERE id = $4 AND ended_at IS NULL")
            .bind(status)
            .bind(reason)
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Calls left ringing or active by a previous run of the server (a crash) are over: close them.
    pub async fn close_orphaned_calls(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE calls SET status = CASE WHEN status = 'active' THEN 'answered' ELSE 'missed' END,
             end_reason = 'failed', ended_at = $1 WHERE ended_at IS NULL",
        )
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// A user's calls, newest first.
    pub async fn calls_of(&self, user: &str, limit: i64) -> Result<Vec<CallRecord>> {
        let rows: Vec<CallRow> = sqlx::query_as(
            "SELECT id, caller_id, callee_id, kind, status, started_at, answered_at, ended_at FROM calls
             WHERE caller_id = $1 OR callee_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(user)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(CallRecord::from).collect())
    }
}
