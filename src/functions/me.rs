//! `me/`: `GET /api/me` — who the caller is and what they may do in general, so a client can
//! greet them by name and offer only the parts of the app that are theirs (an uploader who
//! does not review has no inbox to show).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;

use super::AppState;
use crate::domain::Refusal;
use crate::error::ApiError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// The caller's name (a token's holder, or the signed-in person); `null` where nothing is
    /// authenticated and everyone is anonymous.
    pub name: Option<String>,
    /// The signed-in person's object id, under App Service Authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// May decide (approve, reject, ask for changes) and add notes.
    pub reviewer: bool,
    /// May upload.
    pub uploader: bool,
    /// May revoke an approval.
    pub revoker: bool,
}

#[utoipa::path(
    get,
    path = "/api/me",
    operation_id = "getMe",
    tag = "files",
    responses(
        (status = 200, description = "Who the caller is, and what they may do in general (a file's own `allowedActions` say what they may do to it now)", body = Me),
        (status = 400, description = "InvalidHeader, InvalidQuery", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized: the deployment knows people and the request names nobody it knows", body = super::schema::ErrorBody, headers(("WWW-Authenticate" = String))),
    ),
    security(("functionKey" = []), ("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ())
)]
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Me>, ApiError> {
    // Under App Service Authentication an unreadable principal header is refused (400), not
    // taken for nobody; elsewhere those headers mean nothing and are ignored.
    if state.access.easy_auth.is_some() {
        crate::functions::auth::signed_in(&headers)?;
    }
    let rights = state.access.rights(&headers);
    let uploader = state.access.uploader(&headers);
    let person = rights.person.clone();
    if person.is_none() && state.access.decisions_are_authenticated() {
        return Err(ApiError::Refused(Refusal::Unauthorized(
            "the request names nobody this app knows: sign in, or send Authorization: Bearer <token>"
                .into(),
        )));
    }
    Ok(Json(Me {
        name: person
            .as_ref()
            .filter(|p| !p.is_anonymous())
            .map(|p| p.to_string()),
        id: person.as_ref().and_then(|p| p.id()).map(str::to_owned),
        reviewer: rights.reviewer.is_some(),
        uploader: uploader.is_ok(),
        revoker: rights.revoker,
    }))
}
