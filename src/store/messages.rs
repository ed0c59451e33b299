//! 1:1 conversations and their encrypted messages.
//!
//! `seq` is assigned inside the inserting transaction by bumping the conversation's `last_seq`, so two
//! senders racing on one conversation serialize on that row and `seq` has neither duplicates nor gaps.
//! Bodies are sealed with the key ring before they reach SQL, bound to the message's identity.

use super::writer::{NewMessage, Receipt};
use super::{Result, Store, StoreError, new_id};
use crate::crypto::KeyRing;

/// A stored message, body decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Opaque id.
    pub id: String,
    /// Position in its conversation, strictly increasing from 1.
    pub seq: i64,
    /// The conversation.
    pub conversation_id: String,
    /// Who sent it.
    pub sender_id: String,
    /// Who it is for.
    pub recipient_id: String,
    /// The sender's idempotency key.
    pub client_id: String,
    /// The text.
    pub body: String,
    /// When it was stored (Unix ms).
    pub created_at: i64,
    /// When a recipient device first received it.
    pub delivered_at: Option<i64>,
    /// When the recipient read it.
    pub read_at: Option<i64>,
}

/// A conversation as the list view needs it.
#[derive(Debug, Clone)]
pub struct ConversationSummary {
    /// Conversation id.
    pub id: String,
    /// The other participant.
    pub peer_id: String,
    /// Messages to the caller not yet read.
    pub unread: i64,
    /// The newest message.
    pub last_message: Option<Message>,
    /// Time of the newest message (Unix ms).
    pub last_activity: i64,
}

type MessageRow = (
    String,
    i64,
    String,
    String,
    String,
    String,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<i64>,
);

macro_rules! message_columns {
    () => {
        "m.id, m.seq, m.conversation_id, m.sender_id, m.recipient_id, m.client_id, m.body, m.created_at, m.delivered_at, m.read_at"
    };
}

fn aad(id: &str, conversation_id: &str, sender_id: &str) -> Vec<u8> {
    format!("mescon-msg|{id}|{conversation_id}|{sender_id}").into_bytes()
}

fn open(ring: &KeyRing, row: MessageRow) -> Result<Message> {
    let (
        id,
        seq,
        conversation_id,
        sender_id,
        recipient_id,
        client_id,
        sealed,
        created_at,
        delivered_at,
        read_at,
    ) = row;
    let plain = ring.open(&sealed, &aad(&id, &conversation_id, &sender_id))?;
    Ok(Message {
        body: String::from_utf8_lossy(&plain).into_owned(),
        id,
        seq,
        conversation_id,
        sender_id,
        recipient_id,
        client_id,
        created_at,
        delivered_at,
        read_at,
    })
}

/// The pair in the order the table stores it.
fn ordered<'a>(x: &'a str, y: &'a str) -> (&'a str, &'a str) {
    if x < y { (x, y) } else { (y, x) }
}

/// What a send did.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The stored message.
    pub message: Message,
    /// False when `(sender, client_id)` was already stored: this is that earlier message.
    pub created: bool,
}

impl Store {
    /// Stores a message, or returns the one already stored under `(sender, client_id)`. Returns only
    /// after the transaction that holds it committed.
    pub async fn send_message(
        &self,
        ring: &KeyRing,
        sender: &str,
        recipient: &str,
        client_id: &str,
        body: &str,
        now: i64,
    ) -> Result<Sent> {
        let conversation_id = self.conversation_for(sender, recipient, now).await?;
        let id = new_id();
        let sealed = ring.seal(body.as_bytes(), &aad(&id, &conversation_id, sender))?;
        let new = NewMessage {
            id,
            conversation_id,
            sender: sender.to_string(),
            recipient: recipient.to_string(),
            client_id: client_id.to_string(),
            sealed,
            now,
        };
        let (id, conversation_id) = (new.id.clone(), new.conversation_id.clone());
        match self.writer.insert(new).await? {
            Some(seq) => Ok(Sent {
                message: Message {
                    id,
                    seq,
                    conversation_id,
                    sender_id: sender.to_string(),
                    recipient_id: recipient.to_string(),
                    client_id: client_id.to_string(),
                    body: body.to_string(),
                    created_at: now,
                    delivered_at: None,
                    read_at: None,
                },
                created: true,
            }),
            // Sent before (a resend after a lost ack): that earlier message is the answer.
            None => {
                let message = self
                    .message_by_client_id(ring, sender, client_id)
                    .await?
                    .ok_or(StoreError::Conflict)?;
                Ok(Sent {
                    message,
                    created: false,
                })
            }
        }
    }

    /// The conversation of a pair, created on first use.
    async fn conversation_for(&self, x: &str, y: &str, now: i64) -> Result<String> {
        let (a, b) = ordered(x, y);
        let key = (a.to_string(), b.to_string());
        if let Some(id) = self.conversations.get(&key) {
            return Ok(id.clone());
        }
        sqlx::query(
            "INSERT INTO conversations (id, user_a, user_b, last_seq, last_activity, created_at)
             VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT (user_a, user_b) DO NOTHING",
        )
        .bind(new_id())
        .bind(a)
        .bind(b)
        .bind(now)
        .execute(self.pool())
        .await?;
        let id = self
            .conversation_between(a, b)
            .await?
            .ok_or(StoreError::NotFound)?;
        if self.conversations.len() > 100_000 {
            self.conversations.clear();
        }
        self.conversations.insert(key, id.clone());
        Ok(id)
    }

    async fn message_by_client_id(
        &self,
        ring: &KeyRing,
        sender: &str,
        client_id: &str,
    ) -> Result<Option<Message>> {
        let row: Option<MessageRow> = sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.sender_id = $1 AND m.client_id = $2"
        ))
        .bind(sender)
        .bind(client_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| open(ring, r)).transpose()
    }

    /// The id of the conversation between two users, if they ever talked.
    pub async fn conversation_between(&self, x: &str, y: &str) -> Result<Option<String>> {
        let (a, b) = ordered(x, y);
        let row: Option<(String,)> =
            sqlx::query_as("SELECT id FROM conversations WHERE user_a = $1 AND user_b = $2")
                .bind(a)
                .bind(b)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|r| r.0))
    }

    /// A page of a conversation in `seq` order: the newest `limit` before `before_seq`, or the oldest
    /// `limit` after `after_seq`, or the newest `limit` overall.
    pub async fn messages_page(
        &self,
        ring: &KeyRing,
        conversation_id: &str,
        before_seq: Option<i64>,
        after_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let rows: Vec<MessageRow> = match (before_seq, after_seq) {
            (_, Some(after)) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages m WHERE m.conversation_id = $1 AND m.seq > $2 AND m.seq < $3 ORDER BY m.seq ASC LIMIT $4"
                ))
                .bind(conversation_id)
                .bind(after)
                .bind(before_seq.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
            (before, None) => {
                let mut rows: Vec<MessageRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages m WHERE m.conversation_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"
                ))
                .bind(conversation_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(self.pool())
                .await?;
                rows.reverse();
                rows
            }
        };
        rows.into_iter().map(|r| open(ring, r)).collect()
    }

    /// Every conversation of a user: (conversation id, peer id, last seq).
    pub async fn conversations_of(&self, user: &str) -> Result<Vec<(String, String, i64)>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT id, user_a, user_b, last_seq FROM conversations WHERE user_a = $1 OR user_b = $1",
        )
        .bind(user)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, a, b, last)| (id, if a == user { b } else { a }, last))
            .collect())
    }

    /// The conversation list of a user, most recent activity first.
    pub async fn conversation_list(
        &self,
        ring: &KeyRing,
        user: &str,
    ) -> Result<Vec<ConversationSummary>> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT c.id, c.user_a, c.user_b, c.last_activity,
                    (SELECT COUNT(*) FROM messages u WHERE u.conversation_id = c.id AND u.recipient_id = $1 AND u.read_at IS NULL)
             FROM conversations c WHERE c.user_a = $1 OR c.user_b = $1 ORDER BY c.last_activity DESC, c.id",
        )
        .bind(user)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, a, b, last_activity, unread) in rows {
            let last_message = self.messages_page(ring, &id, None, None, 1).await?.pop();
            out.push(ConversationSummary {
                peer_id: if a == user { b } else { a },
                id,
                unread,
                last_message,
                last_activity,
            });
        }
        Ok(out)
    }

    /// Marks the recipient's messages up to `up_to_seq` delivered; returns the highest seq newly marked.
    pub async fn mark_delivered(
        &self,
        recipient: &str,
        conversation_id: &str,
        up_to_seq: i64,
        now: i64,
    ) -> Result<Option<i64>> {
        self.writer
            .mark(
                Receipt::Delivered,
                recipient,
                conversation_id,
                up_to_seq,
                now,
            )
            .await
    }

    /// Marks the recipient's messages up to `up_to_seq` read (and delivered); returns the highest seq newly marked.
    pub async fn mark_read(
        &self,
        recipient: &str,
        conversation_id: &str,
        up_to_seq: i64,
        now: i64,
    ) -> Result<Option<i64>> {
        self.writer
            .mark(Receipt::Read, recipient, conversation_id, up_to_seq, now)
            .await
    }

    /// Records when a user was last online.
    pub async fn set_last_seen(&self, user: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE users SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(user)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// When a user was last online.
    pub async fn last_seen(&self, user: &str) -> Result<Option<i64>> {
        let row: Option<(Option<i64>,)> =
            sqlx::query_as("SELECT last_seen_at FROM users WHERE id = $1")
                .bind(user)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.and_then(|r| r.0))
    }
}
