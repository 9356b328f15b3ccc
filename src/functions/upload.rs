//! `upload/`: `POST /api/files` — a raw body (named by `?name=` or `X-File-Name`, else after its
//! id) or a multipart form
//! with a file part, streamed (never held whole) into [`crate::files::Files::upload`], which owns the rest:
//! record, blob, commit, start (crate::files).

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, TryStreamExt};
use percent_encoding::percent_decode_str;

use super::{AppState, FileStatus};
use crate::domain::Refusal;
use crate::domain::{ContentType, FileName};
use crate::error::ApiError;
use crate::files::{FilesError, NewUpload};
use crate::store::{BodyTooLarge, BoxError};

/// Raised when the client's body stream breaks (disconnect, bad chunked encoding).
#[derive(Debug, thiserror::Error)]
#[error("the upload was interrupted: {0}")]
struct Interrupted(String);

/// Raised when a multipart body is malformed mid-stream.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadMultipart(String);

/// The `name` query parameter, decoded strictly: `form_urlencoded::parse` would turn bytes that
/// are not UTF-8 into U+FFFD and so store a name the client never sent.
fn query_name(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(Cow::into_owned)
    };
    for pair in raw.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key).is_ok_and(|k| k == "name") {
            return decode(value).map(Some).map_err(|_| {
                ApiError::Refused(Refusal::InvalidName(
                    "the name parameter is not UTF-8 once decoded".into(),
                ))
            });
        }
    }
    Ok(None)
}

/// `X-File-Name` as UTF-8 (`HeaderValue::to_str` takes visible ASCII only, which would refuse
/// `résumé.pdf`); control characters are left to `FileName::parse`.
fn header_name(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get("x-file-name")
        .map(|v| {
            std::str::from_utf8(v.as_bytes()).map_err(|_| {
                ApiError::Refused(Refusal::InvalidName(
                    "the X-File-Name header is not UTF-8".into(),
                ))
            })
        })
        .transpose()
}

/// `Content-Type` as visible ASCII: the blob store sends it on as an HTTP header.
fn header_content_type(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get(header::CONTENT_TYPE)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::Refused(Refusal::InvalidBody(
                    "the Content-Type header is not visible ASCII".into(),
                ))
            })
        })
        .transpose()
}

fn parse_content_type(raw: Option<&str>) -> Result<ContentType, ApiError> {
    ContentType::parse(raw).map_err(|e| ApiError::Refused(Refusal::InvalidBody(e.to_string())))
}

#[utoipa::path(
    post,
    path = "/api/files",
    operation_id = "uploadFile",
    tag = "files",
    params(
        ("name" = Option<String>, Query, description = "The display name (else X-File-Name, else a multipart part's filename, else the id); its last path component is kept"),
    ),
    request_body(
        description = "The file's bytes (raw, with Content-Type), or multipart/form-data with one file part",
        content(
            (super::schema::BinaryBody = "application/octet-stream"),
            (super::schema::MultipartUpload = "multipart/form-data")
        )
    ),
    responses(
        (status = 201, description = "Stored; its workflow started (local mode) or about to (under the host)", body = FileStatus,
            headers(("Location" = String, description = "The file's status"))),
        (status = 400, description = "InvalidName, EmptyFile, InvalidBody, InvalidMultipart, InvalidQuery, InvalidHeader", body = super::schema::ErrorBody),
        (status = 401, description = "Unauthorized: an unknown token, or none where uploads need one", body = super::schema::ErrorBody,
            headers(("WWW-Authenticate" = String))),
        (status = 403, description = "NotAnUploader", body = super::schema::ErrorBody),
        (status = 413, description = "TooLarge", body = super::schema::ErrorBody),
        (status = 503, description = "StorageUnavailable", body = super::schema::ErrorBody, headers(("Retry-After" = String))),
        (status = 507, description = "InsufficientStorage", body = super::schema::ErrorBody),
    ),
    security(("functionKey" = []), ("functionKey" = [], "bearer" = []), ("functionKey" = [], "easyAuth" = []), ())
)]
pub async fn upload(
    State(state): State<AppState>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.files.policy().max_upload_bytes;
    // Who uploads is settled before a byte is read: a refused caller costs no storage.
    let uploader = state.access.uploader(&headers)?;
    let mut upload = parse(limit, raw_query.as_deref(), &headers, body).await?;
    upload.uploader = uploader;
    let view = state.files.upload(upload).await.map_err(|e| match e {
        FilesError::Body(source) => body_error(source),
        other => other.into(),
    })?;
    let status = FileStatus::from(&view);
    let location = HeaderValue::from_str(&status.links.status).map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(status),
    )
        .into_response())
}

/// The upload a request describes: a multipart form's file part, or the raw body.
pub(super) async fn parse(
    limit: u64,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<NewUpload, ApiError> {
    let content_length = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::Refused(Refusal::InvalidBody(
                        "Content-Length is not a number".into(),
                    ))
                })?,
        ),
        None => None,
    };
    // Refuse what is known to be too big before reading a byte of it.
    if content_length.is_some_and(|len| len > limit) {
        return Err(ApiError::Refused(Refusal::TooLarge { limit }));
    }
    let declared_name = match query_name(raw_query)? {
        Some(n) => Some(n),
        None => header_name(headers)?.map(str::to_owned),
    };
    let request_type = header_content_type(headers)?;
    let is_multipart = request_type.is_some_and(|t| {
        t.trim_start()
            .get(..19)
            .is_some_and(|p| p.eq_ignore_ascii_case("multipart/form-data"))
    });

    if is_multipart {
        multipart_upload(limit, declared_name, request_type.unwrap_or(""), body).await
    } else {
        raw_upload(declared_name, request_type, content_length, body)
    }
}

/// The first part with a filename; other form fields (a text `comment`, say) are skipped.
async fn multipart_upload(
    limit: u64,
    declared_name: Option<String>,
    request_type: &str,
    body: Body,
) -> Result<NewUpload, ApiError> {
    let boundary = multer::parse_boundary(request_type)
        .map_err(|e| ApiError::Refused(Refusal::InvalidMultipart(e.to_string())))?;
    // The multipart framing adds a little to the file part; the blob write enforces the
    // exact limit on the file's own bytes.
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(limit.saturating_add(64 * 1024)));
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let field = loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.file_name().is_some() => break field,
            Ok(Some(_)) => continue,
            Ok(None) => {
                return Err(ApiError::Refused(Refusal::InvalidMultipart(
                    "the form has no file part (a part with a filename)".into(),
                )))
            }
            Err(e) => return Err(multipart_error(e, limit)),
        }
    };
    let raw_name = match declared_name {
        Some(n) => n,
        None => field.file_name().unwrap_or_default().to_owned(),
    };
    let name = Some(
        FileName::parse(&raw_name)
            .map_err(|e| ApiError::Refused(Refusal::InvalidName(e.to_string())))?,
    );
    // The part's own header, as given: multer drops a type it cannot parse, which would
    // store such a file as octet-stream where a raw upload with that type is refused.
    let part_type = match field.headers().get(header::CONTENT_TYPE) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::Refused(Refusal::InvalidBody(
                "the file part's Content-Type is not valid text".into(),
            ))
        })?),
    };
    let content_type = parse_content_type(part_type)?;
    Ok(NewUpload {
        name,
        content_type,
        body: Box::pin(file_part_then_rest(field, multipart, limit)),
        uploader: None,
    })
}

/// The file part's bytes, then the rest of the form read through and dropped: the request is
/// the whole form, so one that turns out malformed after the file part fails the upload
/// (nothing is committed) as it would before it.
fn file_part_then_rest(
    field: multer::Field<'static>,
    multipart: multer::Multipart<'static>,
    limit: u64,
) -> impl Stream<Item = Result<axum::body::Bytes, BoxError>> + Send + 'static {
    let fail = move |e: multer::Error| -> BoxError {
        match e {
            multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
                Box::new(BodyTooLarge { limit })
            }
            multer::Error::StreamReadFailed(inner) => Box::new(Interrupted(inner.to_string())),
            other => Box::new(BadMultipart(other.to_string())),
        }
    };
    // The state is the form being read; `None` once it failed.
    futures::stream::unfold(Some((field, multipart)), move |reading| async move {
        let (mut field, mut multipart) = reading?;
        match field.chunk().await {
            Ok(Some(bytes)) => Some((Ok(bytes), Some((field, multipart)))),
            Ok(None) => {
                drop(field);
                let rest = async {
                    while let Some(mut other) = multipart.next_field().await? {
                        while other.chunk().await?.is_some() {}
                    }
                    Ok::<(), multer::Error>(())
                };
                rest.await.err().map(|e| (Err(fail(e)), None))
            }
            Err(e) => Some((Err(fail(e)), None)),
        }
    })
}

fn raw_upload(
    declared_name: Option<String>,
    request_type: Option<&str>,
    content_length: Option<u64>,
    body: Body,
) -> Result<NewUpload, ApiError> {
    // No name at all is taken: the file is named after its id (what `curl --data-binary @f`
    // sends); a name that is given must be a good one.
    let name = declared_name
        .map(|raw| {
            FileName::parse(&raw)
                .map_err(|e| ApiError::Refused(Refusal::InvalidName(e.to_string())))
        })
        .transpose()?;
    if content_length == Some(0) {
        return Err(ApiError::Refused(Refusal::EmptyFile));
    }
    // The request's own type is the file's, except curl's default (not declared).
    let content_type = ContentType::of_raw_body(request_type)
        .map_err(|e| ApiError::Refused(Refusal::InvalidBody(e.to_string())))?;
    let stream = body
        .into_data_stream()
        .map_err(|e| -> BoxError { Box::new(Interrupted(e.to_string())) });
    Ok(NewUpload {
        name,
        content_type,
        body: Box::pin(stream),
        uploader: None,
    })
}

fn multipart_error(e: multer::Error, limit: u64) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            ApiError::Refused(Refusal::TooLarge { limit })
        }
        other => ApiError::Refused(Refusal::InvalidMultipart(other.to_string())),
    }
}

/// The upload's own stream failed: say how, in the words of the stream that failed.
pub(super) fn body_error(source: BoxError) -> ApiError {
    match source.downcast_ref::<BadMultipart>() {
        Some(m) => ApiError::Refused(Refusal::InvalidMultipart(m.to_string())),
        None => ApiError::Refused(Refusal::InvalidBody(source.to_string())),
    }
}
