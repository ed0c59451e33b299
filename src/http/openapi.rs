//! The OpenAPI 3.1 document, generated from the handlers' annotations and served at `/api/openapi.json`.

use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    auth, blocks, calls, contacts, conversations, error, health, ice, me, users, views, ws,
};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Mescon API", description = "Self-hosted chat and calls. Realtime traffic uses the WebSocket at /api/ws (see README)."),
    paths(
        auth::request_otp, auth::verify, auth::refresh, auth::logout, auth::logout_all,
        me::get_me, me::patch_me, me::delete_me, me::put_avatar, me::delete_avatar,
        users::get_avatar,
        contacts::list, contacts::create, contacts::get, contacts::update, contacts::delete,
        blocks::list, blocks::block, blocks::unblock,
        conversations::list, conversations::messages, conversations::send, conversations::read,
        calls::list,
        ws::upgrade,
        ice::ice_servers,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, views::Profile)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// `GET /api/openapi.json`.
pub async fn document() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}
