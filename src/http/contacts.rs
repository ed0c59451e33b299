//! `/api/contacts`: the caller's private address book.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, AuthUser};
use super::views::{Profile, valid_name, valid_phone};
use crate::app::{App, AppState};
use crate::realtime::presence;
use crate::store::{Contact, StoreError};

/// A contact: `{"id","phone","name","user"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactView {
    /// Opaque id.
    pub id: String,
    /// E.164 number.
    pub phone: String,
    /// The name the owner gave it.
    pub name: String,
    /// The account with this number, null when the number has none.
    pub user: Option<Profile>,
}

impl ContactView {
    fn of(app: &App, c: &Contact) -> ContactView {
        ContactView {
            id: c.id.clone(),
            phone: c.phone.clone(),
            name: c.name.clone(),
            user: c.user.as_ref().map(|u| Profile::of(app, u)),
        }
    }
}

/// `POST /api/contacts` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewContact {
    /// Phone number in any common form.
    pub phone: String,
    /// Name, 1–64 characters.
    pub name: String,
}

/// `PATCH /api/contacts/{id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ContactPatch {
    /// New name.
    pub name: Option<String>,
    /// New phone number.
    pub phone: Option<String>,
}

/// The caller's contacts, sorted by name.
#[utoipa::path(get, path = "/api/contacts", tag = "contacts", security(("bearer" = [])),
    responses((status = 200, body = [ContactView]), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<axum::Json<Vec<ContactView>>> {
    let contacts = app.store.contacts(&user.user_id).await?;
    Ok(axum::Json(
        contacts.iter().map(|c| ContactView::of(&app, c)).collect(),
    ))
}

/// Adds a contact; the same number twice is `409`.
#[utoipa::path(post, path = "/api/contacts", tag = "contacts", security(("bearer" = [])), request_body = NewContact,
    responses((status = 201, body = ContactView), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    user: AuthUser,
    ApiJson(new): ApiJson<NewContact>,
) -> ApiResult<Response> {
    let name = valid_name(&new.name, "name")?;
    let phone = valid_phone(&app, &new.phone)?;
    let contact = app
        .store
        .add_contact(&user.user_id, &phone, &name, app.now())
        .await
        .map_err(conflict("this number is already in your contacts"))?;
    if let Some(other) = &contact.user {
        presence::introduce(&app, &user.user_id, &other.id).await;
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(ContactView::of(&app, &contact)),
    )
        .into_response())
}

/// One contact.
#[utoipa::path(get, path = "/api/contacts/{id}", tag = "contacts", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = ContactView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ContactView>> {
    let contact = app.store.contact(&user.user_id, &id).await?;
    Ok(axum::Json(ContactView::of(&app, &contact)))
}

/// Renames or renumbers a contact.
#[utoipa::path(patch, path = "/api/contacts/{id}", tag = "contacts", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = ContactPatch,
    responses((status = 200, body = ContactView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(app): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<ContactPatch>,
) -> ApiResult<axum::Json<ContactView>> {
    let name = patch
        .name
        .as_deref()
        .map(|n| valid_name(n, "name"))
        .transpose()?;
    let phone = patch
        .phone
        .as_deref()
        .map(|p| valid_phone(&app, p))
        .transpose()?;
    let contact = app
        .store
        .update_contact(&user.user_id, &id, name.as_deref(), phone.as_deref())
        .await
        .map_err(conflict("this number is already in your contacts"))?;
    if let (Some(other), Some(_)) = (&contact.user, &phone) {
        presence::introduce(&app, &user.user_id, &other.id).await;
    }
    Ok(axum::Json(ContactView::of(&app, &contact)))
}

/// Deletes a contact.
#[utoipa::path(delete, path = "/api/contacts/{id}", tag = "contacts", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(app): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    app.store.delete_contact(&user.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn conflict(message: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |e| match e {
        StoreError::Conflict => ApiError::conflict(message),
        other => other.into(),
    }
}
