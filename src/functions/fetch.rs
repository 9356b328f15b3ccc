//! `fetch/`: `GET /api/files/{id}/content?se=…&sig=…` — a download link followed
//! ([`crate::files::Files::follow_link`]). Anonymous, like a SAS: the link's own signature is
//! its authority, so a client holding no function key can use it. Each use is checked (stage,
//! expiry, limit) and recorded, then answered with a redirect to a storage link valid for a
//! few minutes: under the Functions host only the redirect passes through the host, never the
//! bytes, so there is no 100 MiB limit; `Range` requests follow the redirect as they are.
//! Refusals are JSON with a code and never a redirect.

use std::net::SocketAddr;

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{parse_id, AppState};
use crate::error::ApiError;
use crate::files::LinkUse;

#[utoipa::path(
    get,
    path = "/api/files/{id}/content",
    operation_id = "fetch",
    tag = "download",
    params(
        ("id" = uuid::Uuid, Path, description = "The file id"),
        ("se" = i64, Query, description = "The link's expiry (Unix seconds), as handed out"),
        ("sig" = String, Query, description = "The link's signature, as handed out"),
        ("bound" = Option<String>, Query, description = "1 when the link works for the person who asked for it alone"),
    ),
    responses(
        (status = 307, description = "To a read-only storage link valid for 5 minutes (send Range again there to resume)",
            headers(("Location" = String), ("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "InvalidId, InvalidQuery", body = super::schema::ErrorBody),
        (status = 403, description = "LinkInvalid (malformed, altered, another file's), LinkNotYours", body = super::schema::ErrorBody),
        (status = 404, description = "NotFound", body = super::schema::ErrorBody),
        (status = 410, description = "LinkExpired, FileRevoked (with currentStage), DownloadLimitReached", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
    ),
    security(())
)]
pub async fn fetch(
    State(state): State<AppState>,
    method: Method,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Response, ApiError> {
    let id = parse_id(path)?;
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // Behind App Service the platform names the client first in X-Forwarded-For.
    let client = text(header::HeaderName::from_static("x-forwarded-for"))
        .and_then(|all| all.split(',').next().map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .or_else(|| peer.map(|Extension(ConnectInfo(addr))| addr.ip().to_string()));
    let used = LinkUse {
        query: query.unwrap_or_default(),
        caller: state.access.caller(&headers),
        client,
        user_agent: text(header::USER_AGENT),
        range_start: text(header::RANGE).as_deref().and_then(range_start),
        head: method == Method::HEAD,
    };
    let followed = state.files.follow_link(id, &used).await?;
    Ok((
        StatusCode::TEMPORARY_REDIRECT,
        [
            (header::LOCATION, followed.url),
            // The storage link is a credential for minutes: no cache keeps it, no page it
            // leads to learns where it came from.
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
    )
        .into_response())
}

/// The first byte a `Range: bytes=a-…` header asks for; `None` for a suffix range or one that
/// cannot be read (those count as whole downloads).
fn range_start(range: &str) -> Option<u64> {
    let spec = range.trim().strip_prefix("bytes=")?;
    let (first, _) = spec.split(',').next()?.split_once('-')?;
    first.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::range_start;

    #[test]
    fn a_resume_is_told_by_its_first_byte() {
        assert_eq!(range_start("bytes=1000-"), Some(1000));
        assert_eq!(range_start("bytes=0-99"), Some(0));
        assert_eq!(range_start("bytes=-500"), None);
        assert_eq!(range_start("items=1-2"), None);
    }
}
