//! The JSON shapes shared by several resources, and the input rules they share.

use serde::Serialize;

use super::error::ApiError;
use crate::app::App;
use crate::store::User;

/// A user's public profile: `{"id","phone","display_name","avatar_url"}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Profile {
    /// Opaque user id.
    pub id: String,
    /// E.164 number; null for a deleted account.
    pub phone: Option<String>,
    /// Display name ("" until set).
    pub display_name: String,
    /// URL of the picture, null when none.
    pub avatar_url: Option<String>,
    /// True for a deleted account (its messages stay readable).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl Profile {
    /// The profile view of a stored user.
    pub fn of(app: &App, user: &User) -> Profile {
        Profile {
            id: user.id.clone(),
            phone: user.phone.clone(),
            display_name: user.display_name.clone(),
            avatar_url: app.avatar_url(user),
            deleted: user.deleted,
        }
    }
}

/// A display or contact name: trimmed, 1–64 characters, no control characters.
pub fn valid_name(input: &str, what: &str) -> Result<String, ApiError> {
    let name = input.trim();
    let len = name.chars().count();
    if len == 0 || len > 64 {
        return Err(ApiError::invalid(format!("{what} must be 1-64 characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(name.to_string())
}

/// A phone number normalized to E.164, or `422`.
pub fn valid_phone(app: &App, input: &str) -> Result<String, ApiError> {
    crate::phone::normalize(input, app.config.default_region)
        .map_err(|e| ApiError::invalid(format!("phone: {e}")))
}

/// A message as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// Opaque id.
    pub id: String,
    /// Position in the conversation, strictly increasing.
    pub seq: i64,
    /// The conversation.
    pub conversation_id: String,
    /// Sender's user id.
    pub sender_id: String,
    /// Recipient's user id.
    pub recipient_id: String,
    /// The sender's idempotency key.
    pub client_id: String,
    /// The text.
    pub body: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, when a recipient device received it.
    pub delivered_at: Option<String>,
    /// RFC 3339, when the recipient read it.
    pub read_at: Option<String>,
}

impl From<&crate::store::Message> for MessageView {
    fn from(m: &crate::store::Message) -> MessageView {
        use crate::clock::rfc3339;
        MessageView {
            id: m.id.clone(),
            seq: m.seq,
            conversation_id: m.conversation_id.clone(),
            sender_id: m.sender_id.clone(),
            recipient_id: m.recipient_id.clone(),
            client_id: m.client_id.clone(),
            body: m.body.clone(),
            created_at: rfc3339(m.created_at),
            delivered_at: m.delivered_at.map(rfc3339),
            read_at: m.read_at.map(rfc3339),
        }
    }
}
