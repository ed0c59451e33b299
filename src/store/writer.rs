//! The chat writer: one task that commits message inserts and receipt updates in batches.
//!
//! Under load many senders arrive at once. Committing each alone costs a commit (and on SQLite, a turn
//! at the single write lock) per message; here whatever is waiting is committed in one transaction.
//! A job never fails its batch by conflicting: a resent `client_id` is an `ON CONFLICT DO NOTHING`
//! that hands its seq back. Callers are answered only after the batch committed: nothing is
//! acknowledged before it is durable.

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::{Result, StoreError};

/// Jobs waiting for the writer; senders wait when it is full (backpressure, not loss).
const QUEUE: usize = 4096;
/// Most jobs in one transaction.
const MAX_BATCH: usize = 256;

/// A message insert, fully prepared (sealed) by the caller.
#[derive(Debug)]
pub(crate) struct NewMessage {
    pub id: String,
    pub conversation_id: String,
    pub sender: String,
    pub recipient: String,
    pub client_id: String,
    pub sealed: Vec<u8>,
    pub now: i64,
}

/// Which receipt a mark records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receipt {
    Delivered,
    Read,
}

#[derive(Debug)]
enum Job {
    /// Answers the assigned seq, or None when `(sender, client_id)` already exists.
    Insert(NewMessage, oneshot::Sender<Result<Option<i64>>>),
    /// Answers the highest seq newly marked, if any.
    Mark {
        receipt: Receipt,
        recipient: String,
        conversation_id: String,
        up_to_seq: i64,
        now: i64,
        reply: oneshot::Sender<Result<Option<i64>>>,
    },
}

/// The handle to the writer task.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer on `pool`; it stops when every handle is gone.
    pub(crate) fn spawn(pool: AnyPool) -> Writer {
        let (jobs, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, rx));
        Writer { jobs }
    }

    async fn submit<T>(&self, job: Job, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        let gone = || StoreError::Db(sqlx::Error::PoolClosed);
        self.jobs.send(job).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Inserts a message; its seq, or None when the client id was used before.
    pub(crate) async fn insert(&self, m: NewMessage) -> Result<Option<i64>> {
        let (tx, rx) = oneshot::channel();
        self.submit(Job::Insert(m, tx), rx).await
    }

    /// Marks a recipient's messages up to a seq; the highest seq newly marked.
    pub(crate) async fn mark(
        &self,
        receipt: Receipt,
        recipient: &str,
        conversation_id: &str,
        up_to_seq: i64,
        now: i64,
    ) -> Result<Option<i64>> {
        let (reply, rx) = oneshot::channel();
        let job = Job::Mark {
            receipt,
            recipient: recipient.to_string(),
            conversation_id: conversation_id.to_string(),
            up_to_seq,
            now,
            reply,
        };
        self.submit(job, rx).await
    }
}

async fn run(pool: AnyPool, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        metrics::histogram!("chat_write_batch_size").record(batch.len() as f64);
        match commit(&pool, &batch).await {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    answer(job, Ok(result));
                }
            }
            Err(e) => {
                tracing::error!(cause = %e, jobs = batch.len(), "chat write batch failed; nothing of it was committed");
                let text = e.to_string();
                for job in batch.drain(..) {
                    answer(
                        job,
                        Err(StoreError::Db(sqlx::Error::Protocol(text.clone()))),
                    );
                }
            }
        }
    }
}

fn answer(job: Job, result: Result<Option<i64>>) {
    // A caller that gave up (its request was cancelled) no longer listens; the write stands regardless.
    let _ = match job {
        Job::Insert(_, reply) | Job::Mark { reply, .. } => reply.send(result),
    };
}

async fn mark(
    conn: &mut sqlx::AnyConnection,
    receipt: Receipt,
    recipient: &str,
    conversation_id: &str,
    up_to_seq: i64,
    now: i64,
) -> Result<Option<i64>> {
    let sql = match receipt {
        Receipt::Read => {
            "UPDATE messages SET read_at = $1, delivered_at = COALESCE(delivered_at, $1)
             WHERE conversation_id = $2 AND recipient_id = $3 AND seq <= $4 AND read_at IS NULL RETURNING seq"
        }
        Receipt::Delivered => {
            "UPDATE messages SET delivered_at = $1
             WHERE conversation_id = $2 AND recipient_id = $3 AND seq <= $4 AND delivered_at IS NULL RETURNING seq"
        }
    };
    let rows: Vec<(i64,)> = sqlx::query_as(sql)
        .bind(now)
        .bind(conversation_id)
        .bind(recipient)
        .bind(up_to_seq)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.0).max())
}

async fn commit(pool: &AnyPool, batch: &[Job]) -> Result<Vec<Option<i64>>> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let result = match job {
            Job::Insert(m, _) => insert(&mut tx, m).await?,
            Job::Mark {
                receipt,
                recipient,
                conversation_id,
                up_to_seq,
                now,
                ..
            } => {
                mark(
                    &mut tx,
                    *receipt,
                    recipient,
                    conversation_id,
                    *up_to_seq,
                    *now,
                )
                .await?
            }
        };
        results.push(result);
    }
    tx.commit().await?;
    Ok(results)
}

/// Takes the conversation's next seq and inserts; a duplicate `(sender, client_id)` gives the seq back.
/// Holding the conversation row (PostgreSQL) or the write lock (SQLite) for the rest of the transaction
/// makes the give-back safe: nobody else can take a seq in between.
async fn insert(conn: &mut sqlx::AnyConnection, m: &NewMessage) -> Result<Option<i64>> {
    let (seq,): (i64,) = sqlx::query_as(
        "UPDATE conversations SET last_seq = last_seq + 1, last_activity = $2 WHERE id = $1 RETURNING last_seq",
    )
    .bind(&m.conversation_id)
    .bind(m.now)
    .fetch_one(&mut *conn)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO messages (id, conversation_id, seq, sender_id, recipient_id, client_id, body, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (sender_id, client_id) DO NOTHING",
    )
    .bind(&m.id)
    .bind(&m.conversation_id)
    .bind(seq)
    .bind(&m.sender)
    .bind(&m.recipient)
    .bind(&m.client_id)
    .bind(m.sealed.as_slice())
    .bind(m.now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Some(seq));
    }
    sqlx::query("UPDATE conversations SET last_seq = last_seq - 1 WHERE id = $1")
        .bind(&m.conversation_id)
        .execute(&mut *conn)
        .await?;
    Ok(None)
}
