//! The private contact book of each user.

use super::users::User;
use super::{Result, Store, StoreError, conflict_or_db, new_id};

/// One entry of a user's contact book, with the account behind the number if there is one.
#[derive(Debug, Clone)]
pub struct Contact {
    /// Opaque id.
    pub id: String,
    /// E.164 number.
    pub phone: String,
    /// The owner's name for this contact.
    pub name: String,
    /// The live account that has this number, if any.
    pub user: Option<User>,
}

type ContactRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
);

macro_rules! contact_select {
    () => {
        "SELECT c.id, c.phone, c.name, u.id, u.display_name, u.avatar_version
         FROM contacts c LEFT JOIN users u ON u.phone = c.phone AND u.deleted_at IS NULL"
    };
}

fn contact((id, phone, name, uid, display_name, avatar_version): ContactRow) -> Contact {
    let user = uid.map(|uid| User {
        id: uid,
        phone: Some(phone.clone()),
        display_name: display_name.unwrap_or_default(),
        avatar_version,
        deleted: false,
    });
    Contact {
        id,
        phone,
        name,
        user,
    }
}

impl Store {
    /// The owner's contacts sorted by name (case-insensitively).
    pub async fn contacts(&self, owner: &str) -> Result<Vec<Contact>> {
        let rows: Vec<ContactRow> = sqlx::query_as(concat!(
            contact_select!(),
            " WHERE c.owner_id = $1 ORDER BY lower(c.name), c.name, c.id"
        ))
        .bind(owner)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(contact).collect())
    }

    /// One of the owner's contacts; someone else's is [`StoreError::NotFound`].
    pub async fn contact(&self, owner: &str, id: &str) -> Result<Contact> {
        let row: Option<ContactRow> = sqlx::query_as(concat!(
            contact_select!(),
            " WHERE c.owner_id = $1 AND c.id = $2"
        ))
        .bind(owner)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(contact).ok_or(StoreError::NotFound)
    }

    /// Adds a contact; the same phone twice in one book is [`StoreError::Conflict`].
    pub async fn add_contact(
        &self,
        owner: &str,
        phone: &str,
        name: &str,
        now: i64,
    ) -> Result<Contact> {
        let id = new_id();
        sqlx::query("INSERT INTO contacts (id, owner_id, phone, name, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(owner)
            .bind(phone)
            .bind(name)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(conflict_or_db)?;
        self.contact(owner, &id).await
    }

    /// Renames and/or renumbers a contact.
    pub async fn update_contact(
        &self,
        owner: &str,
        id: &str,
        name: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Contact> {
        let done = sqlx::query(
            "UPDATE contacts SET name = COALESCE($1, name), phone = COALESCE($2, phone) WHERE owner_id = $3 AND id = $4",
        )
        .bind(name)
        .bind(phone)
        .bind(owner)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(conflict_or_db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.contact(owner, id).await
    }

    /// Deletes a contact.
    pub async fn delete_contact(&self, owner: &str, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM contacts WHERE owner_id = $1 AND id = $2")
            .bind(owner)
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
