//! `upload/`: `POST /api/files` — streams the body into blob `files/{id}` and records the file.
//!
//! Order matters (API.md, "Upload"): the record is written first (state `Uploading`), so a blob
//! trigger always finds it; then the body streams into the blob in blocks, committed only once
//! the whole body arrived within the size limit; then the record is marked `Uploaded`. The blob's
//! commit is the upload's commit: a failed, oversized or abandoned upload commits no blob, so no
//! workflow ever starts for it, and its record is removed (one left by a crash stays `Uploading`
//! and blobless, which no client ever sees). Once the blob is committed the answer is 201, even
//! if marking the record fails: readers and recovery take an `Uploading` record whose blob exists
//! for an uploaded file.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, TryStreamExt};
use percent_encoding::percent_decode_str;

use super::{orchestrator, FileStatus, FileView};
use crate::domain::{FileId, FileName};
use crate::engine::StartOutcome;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::{BodyTooLarge, BoxError, ByteStream, PutBlobOptions, StoreError};
use crate::workflow::record::{self, FileRecord, UploadState, FILES_TABLE};
use crate::workflow::FILES_CONTAINER;

const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Raised by [`NonEmpty`] when a body ends without a single byte.
#[derive(Debug, thiserror::Error)]
#[error("the body is empty")]
struct EmptyBody;

/// Raised when the client's body stream breaks (disconnect, bad chunked encoding).
#[derive(Debug, thiserror::Error)]
#[error("the upload was interrupted: {0}")]
struct Interrupted(String);

/// Raised when a multipart body is malformed mid-stream.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadMultipart(String);

/// Fails the stream at its end if it carried no bytes, so that an empty upload is refused
/// before anything is committed instead of being committed and deleted again.
struct NonEmpty {
    inner: ByteStream,
    seen: bool,
}

impl Stream for NonEmpty {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if !chunk.is_empty() {
                    self.seen = true;
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) if !self.seen => {
                self.seen = true; // report once
                Poll::Ready(Some(Err(Box::new(EmptyBody))))
            }
            other => other,
        }
    }
}

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
                ApiError::InvalidName("the name parameter is not UTF-8 once decoded".into())
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
            std::str::from_utf8(v.as_bytes())
                .map_err(|_| ApiError::InvalidName("the X-File-Name header is not UTF-8".into()))
        })
        .transpose()
}

/// `Content-Type` as visible ASCII: the blob store sends it on as an HTTP header.
fn header_content_type(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get(header::CONTENT_TYPE)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::InvalidBody("the Content-Type header is not visible ASCII".into())
            })
        })
        .transpose()
}

/// A declared content type is kept as given, but must at least look like `type/subtype`.
fn parse_content_type(raw: Option<&str>) -> Result<String, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(DEFAULT_CONTENT_TYPE.to_owned());
    };
    let essence = raw.split(';').next().unwrap_or("").trim();
    let valid = raw.len() <= 255
        && !raw.chars().any(char::is_control)
        && essence
            .split_once('/')
            .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty() && !s.contains('/'));
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::InvalidBody(format!(
            "{:?} is not a content type (type/subtype)",
            raw.chars().take(64).collect::<String>()
        )))
    }
}

pub async fn upload(
    State(state): State<AppState>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.settings.max_upload_bytes;
    let content_length = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApiError::InvalidBody("Content-Length is not a number".into()))?,
        ),
        None => None,
    };
    // Refuse what is known to be too big before reading a byte of it.
    if content_length.is_some_and(|len| len > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let declared_name = match query_name(raw_query.as_deref())? {
        Some(n) => Some(n),
        None => header_name(&headers)?.map(str::to_owned),
    };
    let request_type = header_content_type(&headers)?;
    let is_multipart = request_type.is_some_and(|t| {
        t.trim_start()
            .get(..19)
            .is_some_and(|p| p.eq_ignore_ascii_case("multipart/form-data"))
    });

    let (name, content_type, stream): (FileName, String, ByteStream) = if is_multipart {
        let boundary = multer::parse_boundary(request_type.unwrap_or(""))
            .map_err(|e| ApiError::InvalidMultipart(e.to_string()))?;
        // The multipart framing adds a little to the file part; the blob write enforces the
        // exact limit on the file's own bytes.
        let constraints = multer::Constraints::new()
            .size_limit(multer::SizeLimit::new().whole_stream(limit.saturating_add(64 * 1024)));
        let mut multipart =
            multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
        let field = loop {
            match multipart.next_field().await {
                Ok(Some(field)) if field.file_name().is_some() => break field,
                // Other form fields (a text `comment`, say) are skipped, not stored.
                Ok(Some(_)) => continue,
                Ok(None) => {
                    return Err(ApiError::InvalidMultipart(
                        "the form has no file part (a part with a filename)".into(),
                    ))
                }
                Err(e) => return Err(multipart_error(e, limit)),
            }
        };
        let raw_name = match declared_name {
            Some(n) => n,
            None => field.file_name().unwrap_or_default().to_owned(),
        };
        let name = FileName::parse(&raw_name).map_err(|e| ApiError::InvalidName(e.to_string()))?;
        // The part's own header, as given: multer drops a type it cannot parse, which would
        // store such a file as octet-stream where a raw upload with that type is refused.
        let part_type = match field.headers().get(header::CONTENT_TYPE) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                ApiError::InvalidBody("the file part's Content-Type is not valid text".into())
            })?),
        };
        let content_type = parse_content_type(part_type)?;
        let stream = field.map_err(move |e| -> BoxError {
            match e {
                multer::Error::StreamSizeExceeded { .. }
                | multer::Error::FieldSizeExceeded { .. } => Box::new(BodyTooLarge { limit }),
                multer::Error::StreamReadFailed(inner) => Box::new(Interrupted(inner.to_string())),
                other => Box::new(BadMultipart(other.to_string())),
            }
        });
        // Keep the multipart reader alive for as long as its field streams.
        let stream = KeepAlive {
            inner: Box::pin(stream),
            _owner: multipart,
        };
        (name, content_type, Box::pin(stream))
    } else {
        let raw_name = declared_name.ok_or(ApiError::MissingName)?;
        let name = FileName::parse(&raw_name).map_err(|e| ApiError::InvalidName(e.to_string()))?;
        if content_length == Some(0) {
            return Err(ApiError::EmptyFile);
        }
        let content_type = parse_content_type(request_type)?;
        let stream = body
            .into_data_stream()
            .map_err(|e| -> BoxError { Box::new(Interrupted(e.to_string())) });
        (name, content_type, Box::pin(stream))
    };

    let id = FileId::new();
    let mut rec = FileRecord {
        id,
        name,
        content_type,
        size: None,
        created_time: state.clock.now(),
        state: UploadState::Uploading,
    };
    let etag = state
        .store
        .insert_entity(FILES_TABLE, &rec.to_entity())
        .await?;

    let put = state
        .store
        .put_blob(
            FILES_CONTAINER,
            &id.to_string(),
            Box::pin(NonEmpty {
                inner: stream,
                seen: false,
            }),
            &PutBlobOptions {
                content_type: rec.content_type.clone(),
                max_bytes: Some(limit),
            },
        )
        .await;
    let props = match put {
        Ok(props) => props,
        Err(e) => {
            // No blob was committed, so nothing will ever start a workflow for this record.
            if let Err(cleanup) = state
                .store
                .delete_entity(
                    FILES_TABLE,
                    &id.to_string(),
                    record::RECORD_ROW,
                    Some(&etag),
                )
                .await
            {
                tracing::warn!(file = %id, error = %cleanup, "could not remove the record of a failed upload");
            }
            return Err(put_error(e, limit));
        }
    };

    rec.size = Some(props.size);
    rec.state = UploadState::Uploaded;
    tracing::info!(file = %id, name = %rec.name, size = props.size, "upload committed");

    let view = if state.settings.mode.is_local() {
        // Local mode stands in for the blob trigger with the very same start-up code.
        match orchestrator::start_workflow(&state, &rec).await {
            Ok(StartOutcome::Started(status)) => FileView::from_instance(&status)?,
            // Only a second delivery finds it started, and every upload has a fresh id.
            Ok(StartOutcome::AlreadyExists) => FileView::Uploaded(rec),
            Err(e) => {
                // The file is safely stored: answer 201 (a retry would upload it twice) and
                // let the next recovery pass start its workflow, as a redelivered trigger would.
                tracing::warn!(file = %id, error = %e, "workflow not started yet; recovery will start it");
                state
                    .unstarted_uploads
                    .store(true, std::sync::atomic::Ordering::Release);
                FileView::Uploaded(rec)
            }
        }
    } else {
        FileView::Uploaded(rec)
    };
    let location =
        HeaderValue::from_str(&format!("/api/files/{id}")).map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(FileStatus::from(&view)),
    )
        .into_response())
}

fn multipart_error(e: multer::Error, limit: u64) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            ApiError::TooLarge { limit }
        }
        other => ApiError::InvalidMultipart(other.to_string()),
    }
}

fn put_error(e: StoreError, limit: u64) -> ApiError {
    match e {
        StoreError::Body(source) => {
            if source.downcast_ref::<BodyTooLarge>().is_some() {
                ApiError::TooLarge { limit }
            } else if source.downcast_ref::<EmptyBody>().is_some() {
                ApiError::EmptyFile
            } else if let Some(m) = source.downcast_ref::<BadMultipart>() {
                ApiError::InvalidMultipart(m.to_string())
            } else {
                ApiError::InvalidBody(source.to_string())
            }
        }
        other => other.into(),
    }
}

/// A field stream that owns the multipart reader it came from.
struct KeepAlive<S> {
    inner: Pin<Box<S>>,
    _owner: multer::Multipart<'static>,
}

impl<S: Stream> Stream for KeepAlive<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
