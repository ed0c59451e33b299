//! Users, profiles and avatars.

use super::{Result, Store, StoreError, new_id};

/// A user as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Opaque id.
    pub id: String,
    /// E.164 number (None once deleted).
    pub phone: Option<String>,
    /// Display name ("" until set).
    pub display_name: String,
    /// Bumped on each avatar upload; None without an avatar.
    pub avatar_version: Option<i64>,
    /// Set when the account was deleted.
    pub deleted: bool,
}

/// A stored avatar image.
#[derive(Debug, Clone)]
pub struct Avatar {
    /// `image/png`, `image/jpeg` or `image/webp`.
    pub content_type: String,
    /// The re-encoded image bytes.
    pub data: Vec<u8>,
    /// When it was stored (Unix ms).
    pub updated_at: i64,
}

pub(crate) type UserRow = (String, Option<String>, String, Option<i64>, Option<i64>);

/// The columns of [`User`], in `UserRow` order, as a literal for `concat!`.
macro_rules! user_columns {
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "phone, ",
            $p,
            "display_name, ",
            $p,
            "avatar_version, ",
            $p,
            "deleted_at"
        )
    };
}
pub(crate) use user_columns;

impl From<UserRow> for User {
    fn from((id, phone, display_name, avatar_version, deleted_at): UserRow) -> User {
        User {
            id,
            phone,
            display_name,
            avatar_version,
            deleted: deleted_at.is_some(),
        }
    }
}

impl Store {
    /// The live (not deleted) user with this id.
    pub async fn user(&self, id: &str) -> Result<User> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(""),
            " FROM users WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(User::from).ok_or(StoreError::NotFound)
    }

    /// Any user with this id, deleted or not (message senders stay resolvable after deletion).
    pub async fn user_any(&self, id: &str) -> Result<User> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(""),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(User::from).ok_or(StoreError::NotFound)
    }

    /// The live user with this phone number, if any.
    pub async fn user_by_phone(&self, phone: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(""),
            " FROM users WHERE phone = $1 AND deleted_at IS NULL"
        ))
        .bind(phone)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(User::from))
    }

    /// The user with this phone number, created on first login.
    pub async fn user_for_login(&self, phone: &str, now: i64) -> Result<User> {
        // Insert-if-absent then read: two concurrent first logins of one number end with one user.
        sqlx::query("INSERT INTO users (id, phone, display_name, created_at) VALUES ($1, $2, '', $3) ON CONFLICT (phone) DO NOTHING")
            .bind(new_id())
            .bind(phone)
            .bind(now)
            .execute(self.pool())
            .await?;
        self.user_by_phone(phone).await?.ok_or(StoreError::NotFound)
    }

    /// Sets the display name.
    pub async fn set_display_name(&self, id: &str, name: &str) -> Result<User> {
        let done =
            sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(name)
                .bind(id)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.user(id).await
    }

    /// Stores a (re-encoded) avatar and bumps the user's avatar version.
    pub async fn set_avatar(
        &self,
        id: &str,
        content_type: &str,
        data: &[u8],
        now: i64,
    ) -> Result<User> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE users SET avatar_version = $1 WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO avatars (user_id, content_type, data, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE SET content_type = excluded.content_type, data = excluded.data, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(content_type)
        .bind(data.to_vec())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.user(id).await
    }

    /// Removes the avatar.
    pub async fn delete_avatar(&self, id: &str) -> Result<User> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM avatars WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE users SET avatar_version = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.user(id).await
    }

    /// The avatar of a live user.
    pub async fn avatar(&self, id: &str) -> Result<Avatar> {
        let row: Option<(String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT a.content_type, a.data, a.updated_at FROM avatars a JOIN users u ON u.id = a.user_id
             WHERE a.user_id = $1 AND u.deleted_at IS NULL",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let (content_type, data, updated_at) = row.ok_or(StoreError::NotFound)?;
        Ok(Avatar {
            content_type,
            data,
            updated_at,
        })
    }

    /// Deletes an account: profile, avatar, contacts, blocks and sessions go; the row stays as a
    /// tombstone so the user's messages remain readable by their peers, and the number is freed.
    pub async fn delete_user(&self, id: &str, now: i64) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE users SET phone = NULL, display_name = '', avatar_version = NULL, deleted_at = $1
             WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        for sql in [
            "DELETE FROM avatars WHERE user_id = $1",
            "DELETE FROM contacts WHERE owner_id = $1",
            "DELETE FROM blocks WHERE blocker_id = $1 OR blocked_id = $1",
            "DELETE FROM sessions WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
