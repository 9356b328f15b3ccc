//! `GET /api/blobs/{name}`: serves the embedded store's signed read links (the local stand-in
//! for a Blob Storage SAS URL; see `store::embedded::signed`); `PUT /api/uploads/{name}`: takes
//! a blob through an upload link, as a SAS URL with `sp=cw` does — Put Blob, or Put Block and
//! Put Block List as the Azure SDKs send large files — streamed to disk in bounded memory.
//!
//! Only container [`SERVED_CONTAINER`] is served: the container is part of each signature but
//! not of the URL, so a link minted for another container never verifies here. `HEAD` is
//! answered like `GET` without the body, a single `Range: bytes=…` gives 206, and every
//! other method gets 405, as a read-only SAS refuses writes.
//!
//! Errors are JSON `{"error":{"code","message"}}` with Blob Storage's codes where one fits
//! (`AuthenticationFailed`, `InvalidRange`), not the API's: a client holding a download link
//! should meet the same codes whether the link came from this route or from Blob Storage.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use base64::Engine as _;
use futures::StreamExt;

use crate::clock::Clock;
use crate::error::RETRY_AFTER_SECS;
use crate::store::embedded::{
    parse_block_list, ByteRangeSpec, EmbeddedStore, SignedQuery, SignedUrlError, UploadLink,
};
use crate::store::{
    BlobProperties, BodyTooLarge, BoxError, ByteStream, PutBlobOptions, StoreError,
};
use crate::telemetry::error_chain;

/// The one container whose blobs the read route serves: the files'.
pub const SERVED_CONTAINER: &str = crate::store::FILES_CONTAINER;
/// The one container the upload route writes: direct uploads'.
pub const UPLOAD_CONTAINER: &str = crate::store::UPLOADS_CONTAINER;

/// What the app does around a blob arriving through an upload link.
#[async_trait::async_trait]
pub trait UploadListener: Send + Sync + 'static {
    /// The most bytes blob `name` may hold (its declared size), if the app knows one.
    async fn max_bytes(&self, name: &str) -> Option<u64>;
    /// The blob has committed: for the app, the upload's commit (it starts the workflow).
    async fn committed(&self, name: &str);
}

#[derive(Clone)]
struct BlobsState {
    store: Arc<EmbeddedStore>,
    clock: Arc<dyn Clock>,
    listener: Option<Arc<dyn UploadListener>>,
    /// The container this route's upload links write.
    container: &'static str,
}

impl BlobsState {
    /// The upload link a request to blob `name` presents, checked against the clock's now.
    fn link<'a>(&self, name: &'a str, query: &'a SignedQuery) -> UploadLink<'a> {
        UploadLink {
            container: self.container,
            name,
            query,
            now: self.clock.now(),
        }
    }

    async fn max_bytes(&self, name: &str) -> Option<u64> {
        match &self.listener {
            Some(listener) => listener.max_bytes(name).await,
            None => None,
        }
    }

    /// Answers a committed upload, once the listener has heard of it.
    async fn committed(&self, name: &str, props: &BlobProperties) -> Response {
        if let Some(listener) = &self.listener {
            listener.committed(name).await;
        }
        created(props)
    }
}

/// The signed-link routes. `clock` decides when links expire; `listener` hears of uploads.
pub fn router(
    store: Arc<EmbeddedStore>,
    clock: Arc<dyn Clock>,
    listener: Option<Arc<dyn UploadListener>>,
) -> Router {
    Router::new()
        .route(
            "/api/blobs/{name}",
            get(serve_blob).fallback(method_not_allowed),
        )
        .route(
            "/api/blobs/{container}/{name}",
            get(serve_other_blob).fallback(method_not_allowed),
        )
        .route(
            "/api/uploads/{name}",
            put(take_upload).fallback(upload_method_not_allowed),
        )
        .with_state(BlobsState {
            store: store.clone(),
            clock: clock.clone(),
            listener,
            container: UPLOAD_CONTAINER,
        })
        // New versions' upload links: the uploader completes them through the API, so no
        // listener hears of their commits.
        .merge(
            Router::new()
                .route(
                    "/api/uploads/versions/{name}",
                    put(take_upload).fallback(upload_method_not_allowed),
                )
                .with_state(BlobsState {
                    store,
                    clock,
                    listener: None,
                    container: crate::store::VERSIONS_CONTAINER,
                }),
        )
}

/// A Put Blob through an upload link. Like Blob Storage it wants `x-ms-blob-type: BlockBlob`
/// and answers `201 Created` with the new ETag and the content's MD5.
async fn take_upload(
    State(state): State<BlobsState>,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(Path(name)) = name else {
        return refused(SignedUrlError::Malformed(
            "the blob name is not valid UTF-8",
        ));
    };
    let raw_query = query.unwrap_or_default();
    let query = match SignedQuery::parse(&raw_query) {
        Ok(query) => query,
        Err(e) => return refused(e),
    };
    // Put Block and Put Block List, as the SDKs send large files.
    let param = |name: &str| {
        url::form_urlencoded::parse(raw_query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match param("comp").as_deref() {
        None => {}
        Some("block") => {
            let Some(block_id) = param("blockid") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "MissingRequiredQueryParameter",
                    "Put Block needs blockid",
                );
            };
            return take_block(state, name, query, block_id, body).await;
        }
        Some("blocklist") => {
            return take_block_list(state, name, query, &headers, body).await;
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidQueryParameterValue",
                "comp must be block or blocklist",
            )
        }
    }
    match headers.get("x-ms-blob-type").map(HeaderValue::to_str) {
        Some(Ok("BlockBlob")) => {}
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "MissingRequiredHeader",
                "x-ms-blob-type: BlockBlob is required",
            )
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidHeaderValue",
                "only x-ms-blob-type: BlockBlob is supported",
            )
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let options = PutBlobOptions {
        content_type,
        max_bytes: state.max_bytes(&name).await,
    };
    let written = state
        .store
        .write_signed(&state.link(&name, &query), byte_stream(body), &options)
        .await;
    match written {
        Ok(props) => state.committed(&name, &props).await,
        Err(e) => write_refused(e),
    }
}

/// Put Block: one block of the upload, staged until a block list commits it.
async fn take_block(
    state: BlobsState,
    name: String,
    query: SignedQuery,
    block_id: String,
    body: Body,
) -> Response {
    let max_bytes = state.max_bytes(&name).await;
    let staged = state
        .store
        .stage_block_signed(
            &state.link(&name, &query),
            &block_id,
            byte_stream(body),
            max_bytes,
        )
        .await;
    match staged {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => write_refused(e),
    }
}

/// The most a Put Block List body may hold (50,000 block ids of up to 88 characters).
const MAX_BLOCK_LIST_BYTES: usize = 8 * 1024 * 1024;

/// Put Block List: the listed blocks, in order, become the blob.
async fn take_block_list(
    state: BlobsState,
    name: String,
    query: SignedQuery,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let xml = match axum::body::to_bytes(body, MAX_BLOCK_LIST_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidXmlDocument",
                "the block list could not be read",
            )
        }
    };
    let block_ids = match parse_block_list(&xml) {
        Ok(ids) => ids,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidXmlDocument",
                &e.to_string(),
            )
        }
    };
    let content_type = headers
        .get("x-ms-blob-content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let options = PutBlobOptions {
        content_type,
        max_bytes: state.max_bytes(&name).await,
    };
    let committed = state
        .store
        .commit_blocks_signed(&state.link(&name, &query), &block_ids, &options)
        .await;
    match committed {
        Ok(props) => state.committed(&name, &props).await,
        Err(e) => write_refused(e),
    }
}

fn byte_stream(body: Body) -> ByteStream {
    Box::pin(
        body.into_data_stream()
            .map(|chunk| chunk.map_err(|e| Box::new(e) as BoxError)),
    )
}

/// `201 Created` with the blob's ETag and MD5, as Blob Storage answers a write.
fn created(props: &BlobProperties) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(props.etag.as_str()) {
        h.insert(header::ETAG, value);
    }
    if let Some(md5) = props.content_md5 {
        let encoded = base64::engine::general_purpose::STANDARD.encode(md5);
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            h.insert("content-md5", value);
        }
    }
    response
}

/// How a refused or failed write through an upload link answers.
fn write_refused(e: SignedUrlError) -> Response {
    match e {
        SignedUrlError::Store(StoreError::Body(e)) if e.is::<BodyTooLarge>() => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestBodyTooLarge",
            "the body is larger than the upload declared",
        ),
        SignedUrlError::Store(StoreError::Body(e)) => {
            tracing::info!(error = %error_chain(&*e), "an upload through a link broke off");
            error(
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                "the body broke off before its end; nothing was stored",
            )
        }
        SignedUrlError::Store(StoreError::Invalid(message)) => {
            error(StatusCode::BAD_REQUEST, "InvalidInput", &message)
        }
        e => refused(e),
    }
}

async fn upload_method_not_allowed() -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "upload links are write-only: use PUT",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("PUT"));
    response
}

async fn serve_blob(
    State(state): State<BlobsState>,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    // No genuine link has an undecodable name, so this is a forged link, not a bad request.
    let Ok(Path(name)) = name else {
        return refused(SignedUrlError::Malformed(
            "the blob name is not valid UTF-8",
        ));
    };
    serve(state, SERVED_CONTAINER, name, query, headers).await
}

/// A download link to a file uploaded through an upload URL (container `uploads`) or to a
/// new version (container `versions`).
async fn serve_other_blob(
    State(state): State<BlobsState>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Ok(Path((container, name))) = path else {
        return refused(SignedUrlError::Malformed(
            "the blob name is not valid UTF-8",
        ));
    };
    // Only the containers whose blobs are files' bytes: direct uploads and new versions.
    let container = match container.as_str() {
        UPLOAD_CONTAINER => UPLOAD_CONTAINER,
        crate::store::VERSIONS_CONTAINER => crate::store::VERSIONS_CONTAINER,
        _ => return refused(SignedUrlError::BadSignature),
    };
    serve(state, container, name, query, headers).await
}

async fn serve(
    state: BlobsState,
    container: &'static str,
    name: String,
    query: Option<String>,
    headers: HeaderMap,
) -> Response {
    let query = match SignedQuery::parse(query.as_deref().unwrap_or("")) {
        Ok(query) => query,
        Err(e) => return refused(e),
    };
    let range = headers.get(header::RANGE).and_then(parse_range);
    let now = state.clock.now();
    match state
        .store
        .open_signed(container, &name, &query, now, range)
        .await
    {
        Ok(signed) => {
            let props = &signed.read.properties;
            let mut response = Response::new(Body::from_stream(signed.read.body));
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&props.content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            // The disposition is ASCII by construction (the name is percent-encoded), but a
            // link's rscd is only as printable as what was signed.
            if let Ok(value) = HeaderValue::from_str(&signed.content_disposition) {
                h.insert(header::CONTENT_DISPOSITION, value);
            }
            if let Ok(value) = HeaderValue::from_str(props.etag.as_str()) {
                h.insert(header::ETAG, value);
            }
            if let Ok(value) = HeaderValue::from_str(
                &props
                    .last_modified
                    .format("%a, %d %b %Y %H:%M:%S GMT")
                    .to_string(),
            ) {
                h.insert(header::LAST_MODIFIED, value);
            }
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            // The content is the uploader's, with the uploader's declared type: never let a
            // browser sniff it into something executable.
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            // Served on the app's own origin: an uploaded HTML or SVG file must never run as
            // the app, even in a browser that ignores the attachment.
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
            let length = match &signed.range {
                Some(range) => {
                    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                    let content_range =
                        format!("bytes {}-{}/{}", range.start, range.end - 1, props.size);
                    if let Ok(value) = HeaderValue::from_str(&content_range) {
                        response.headers_mut().insert(header::CONTENT_RANGE, value);
                    }
                    range.end - range.start
                }
                None => props.size,
            };
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            response
        }
        Err(e) => refused(e),
    }
}

/// One `bytes=` range. Several ranges, other units or garbage: the header is ignored and the
/// whole blob served, as RFC 9110 allows.
fn parse_range(value: &HeaderValue) -> Option<ByteRangeSpec> {
    let spec = value.to_str().ok()?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        (false, false) => Some(ByteRangeSpec::FromTo(
            first.parse().ok()?,
            last.parse().ok()?,
        )),
        (false, true) => Some(ByteRangeSpec::From(first.parse().ok()?)),
        (true, false) => Some(ByteRangeSpec::Suffix(last.parse().ok()?)),
        (true, true) => None,
    }
}

async fn method_not_allowed() -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "signed blob links are read-only: use GET or HEAD",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

fn refused(e: SignedUrlError) -> Response {
    match e {
        SignedUrlError::Malformed(_) | SignedUrlError::BadSignature => error(
            StatusCode::FORBIDDEN,
            "AuthenticationFailed",
            "the link's signature is missing or does not match this blob",
        ),
        SignedUrlError::Expired(at) => error(
            StatusCode::FORBIDDEN,
            "AuthenticationFailed",
            &format!("the link expired at {}", at.to_rfc3339()),
        ),
        SignedUrlError::RangeNotSatisfiable { size } => {
            let mut response = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "the requested range is past the end of the blob",
            );
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
        SignedUrlError::Store(StoreError::NotFound) => {
            error(StatusCode::NOT_FOUND, "NotFound", "the blob does not exist")
        }
        SignedUrlError::Store(e @ StoreError::Unavailable(_)) => {
            tracing::warn!(error = %error_chain(&e), "storage unavailable serving a signed link");
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "StorageUnavailable",
                "storage is unavailable; try again shortly",
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
            response
        }
        SignedUrlError::Store(e) => {
            tracing::error!(error = %error_chain(&e), "failed to serve a signed link");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "internal error",
            )
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    //! The route over a real store in a temporary directory, called in-process.

    use axum::body::Body;
    use axum::http::{Method, Request};
    use bytes::Bytes;
    use chrono::{Duration, Utc};
    use futures::StreamExt;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::embedded::EmbeddedOptions;
    use crate::store::{PutBlobOptions, SignedUrlRequest, Storage};

    struct Served {
        _dir: tempfile::TempDir,
        store: Arc<EmbeddedStore>,
        clock: ManualClock,
        app: Router,
    }

    const CONTENT: &[u8] = b"0123456789";

    async fn served() -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = EmbeddedOptions {
            public_base_url: "http://files.test".into(),
            signing_secret: Some(vec![9; 32]),
            ..EmbeddedOptions::default()
        };
        let store = Arc::new(EmbeddedStore::open(dir.path(), options).expect("open"));
        store
            .ensure_container(SERVED_CONTAINER)
            .await
            .expect("container");
        store.ensure_container("other").await.expect("container");
        for container in [SERVED_CONTAINER, "other"] {
            let body = futures::stream::iter([Ok(Bytes::from_static(CONTENT))]).boxed();
            let options = PutBlobOptions {
                content_type: "text/plain".into(),
                max_bytes: None,
            };
            store
                .put_blob(container, "blob", body, &options)
                .await
                .expect("put");
        }
        let clock = ManualClock::new(Utc::now());
        let app = router(Arc::clone(&store), Arc::new(clock.clone()), None);
        Served {
            _dir: dir,
            store,
            clock,
            app,
        }
    }

    impl Served {
        /// The path and query of a link, as the route receives them.
        async fn link(&self, container: &str, name: &str) -> String {
            let url = self
                .store
                .signed_read_url(&SignedUrlRequest {
                    snapshot: None,
                    container,
                    name,
                    expires_at: self.clock.now() + Duration::hours(1),
                    download_name: "notes.txt",
                })
                .await
                .expect("url");
            url.trim_start_matches("http://files.test").to_owned()
        }

        async fn call(&self, method: Method, uri: &str, range: Option<&str>) -> Response {
            let mut request = Request::builder().method(method).uri(uri);
            if let Some(range) = range {
                request = request.header(header::RANGE, range);
            }
            self.app
                .clone()
                .oneshot(request.body(Body::empty()).expect("request"))
                .await
                .expect("infallible")
        }
    }

    async fn body(response: Response) -> Bytes {
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
    }

    async fn error_code(response: Response) -> (String, String) {
        let json: serde_json::Value =
            serde_json::from_slice(&body(response).await).expect("a JSON error");
        (
            json["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            json["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_valid_link_streams_the_blob_with_its_headers() {
        let s = served().await;
        let response = s
            .call(Method::GET, &s.link(SERVED_CONTAINER, "blob").await, None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header_of(&response, header::CONTENT_TYPE), "text/plain");
        assert_eq!(header_of(&response, header::CONTENT_LENGTH), "10");
        assert_eq!(
            header_of(&response, header::CONTENT_DISPOSITION),
            "attachment; filename=\"notes.txt\"; filename*=UTF-8''notes.txt"
        );
        assert_eq!(
            header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        assert_eq!(
            header_of(&response, header::CONTENT_SECURITY_POLICY),
            "sandbox"
        );
        assert_eq!(body(response).await.as_ref(), CONTENT);
    }

    #[tokio::test]
    async fn head_answers_the_headers_without_the_body() {
        let s = served().await;
        let response = s
            .call(Method::HEAD, &s.link(SERVED_CONTAINER, "blob").await, None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header_of(&response, header::CONTENT_LENGTH), "10");
        assert!(body(response).await.is_empty());
    }

    #[tokio::test]
    async fn a_single_range_is_served_as_partial_content() {
        let s = served().await;
        let link = s.link(SERVED_CONTAINER, "blob").await;
        let response = s.call(Method::GET, &link, Some("bytes=2-5")).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(header_of(&response, header::CONTENT_RANGE), "bytes 2-5/10");
        assert_eq!(header_of(&response, header::CONTENT_LENGTH), "4");
        assert_eq!(body(response).await.as_ref(), b"2345");

        let response = s.call(Method::GET, &link, Some("bytes=-3")).await;
        assert_eq!(body(response).await.as_ref(), b"789");

        let response = s.call(Method::GET, &link, Some("bytes=10-")).await;
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header_of(&response, header::CONTENT_RANGE), "bytes */10");
    }

    #[tokio::test]
    async fn writes_are_method_not_allowed() {
        let s = served().await;
        let link = s.link(SERVED_CONTAINER, "blob").await;
        for method in [Method::PUT, Method::POST, Method::DELETE, Method::PATCH] {
            let response = s.call(method.clone(), &link, None).await;
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method}"
            );
            assert_eq!(header_of(&response, header::ALLOW), "GET, HEAD");
            assert_eq!(error_code(response).await.0, "MethodNotAllowed");
        }
    }

    #[tokio::test]
    async fn tampered_missing_or_foreign_links_are_refused() {
        let s = served().await;
        let link = s.link(SERVED_CONTAINER, "blob").await;
        let (path, query) = link.split_once('?').expect("a query");
        let last = query.chars().last().expect("a signature");
        let flipped = if last == '0' { '1' } else { '0' };
        let tampered = format!("{}{flipped}", &link[..link.len() - 1]);
        let cases = [
            tampered,
            path.to_owned(),
            format!("{path}?sig=00"),
            s.link("other", "blob").await,
            format!("/api/blobs/other-name?{query}"),
        ];
        for uri in cases {
            let response = s.call(Method::GET, &uri, None).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{uri}");
            assert_eq!(
                error_code(response).await.0,
                "AuthenticationFailed",
                "{uri}"
            );
        }
    }

    #[tokio::test]
    async fn a_link_is_refused_once_the_clock_passes_its_expiry() {
        let s = served().await;
        let link = s.link(SERVED_CONTAINER, "blob").await;
        s.clock.advance(Duration::minutes(59));
        assert_eq!(
            s.call(Method::GET, &link, None).await.status(),
            StatusCode::OK
        );
        s.clock.advance(Duration::minutes(1));
        let response = s.call(Method::GET, &link, None).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let (code, message) = error_code(response).await;
        assert_eq!(code, "AuthenticationFailed");
        assert!(message.contains("expired"), "{message}");
    }

    #[tokio::test]
    async fn a_valid_link_to_a_missing_blob_is_not_found() {
        let s = served().await;
        let link = s.link(SERVED_CONTAINER, "never-written").await;
        let response = s.call(Method::GET, &link, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_code(response).await.0, "NotFound");
    }

    fn range(s: &'static str) -> Option<ByteRangeSpec> {
        parse_range(&HeaderValue::from_static(s))
    }

    #[test]
    fn single_byte_ranges_are_understood_and_others_ignored() {
        assert_eq!(range("bytes=0-99"), Some(ByteRangeSpec::FromTo(0, 99)));
        assert_eq!(range("bytes=100-"), Some(ByteRangeSpec::From(100)));
        assert_eq!(range("bytes=-5"), Some(ByteRangeSpec::Suffix(5)));
        assert_eq!(range("bytes=0-1,4-5"), None);
        assert_eq!(range("items=0-1"), None);
        assert_eq!(range("bytes=a-b"), None);
        assert_eq!(range("bytes=-"), None);
    }
}
