//! `start_direct_upload/`: an `eventGridTrigger` for the storage account's `Microsoft.Storage.BlobCreated`
//! events in container `uploads`: a file sent through its upload URL has arrived, so its
//! workflow starts — through the same call as `complete` and the embedded store's commit. The
//! event carries no content (unlike the blob trigger, which would load gigabytes into the host).
//!
//! Events come in the Event Grid schema (`eventType`) or as CloudEvents 1.0 (`type`), one per
//! invocation or as a batch. One outside the contract — another event type, a blob outside
//! `uploads`, a name that is not a file id, an upload this app never opened — is logged and
//! acknowledged (a retry would change nothing); a repeat is a no-op. A failure worth retrying
//! (storage unavailable, a blob not readable yet) answers non-2xx: Event Grid retries (for 24
//! hours by default, the whole batch) and then dead-letters.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::invocation::{
    event_summary, events_of, logged as logs, parse_invocation, retry_later, InvocationLimits,
};
use super::AppState;
use crate::domain::{FileId, Refusal};
use crate::files::FilesError;

/// The binding name in `uploaded/function.json`.
const EVENT_BINDING: &str = "event";
const BLOB_CREATED: &str = "Microsoft.Storage.BlobCreated";
/// The subject of every blob of container `uploads`, up to the blob's name.
const UPLOADS_SUBJECT: &str = "/blobServices/default/containers/uploads/blobs/";

pub async fn invoke(State(state): State<AppState>, body: Body) -> Response {
    let invocation =
        match parse_invocation(body.into_data_stream(), &[], &InvocationLimits::default()).await {
            Ok(invocation) => invocation,
            Err(e) => {
                tracing::error!(error = %e, "uploaded: malformed invocation ignored");
                return logs(vec![format!(
                    "uploaded: ignored a malformed invocation: {e}"
                )]);
            }
        };
    let events = match events_of(&invocation, EVENT_BINDING) {
        Some(events) => events,
        None => {
            tracing::error!("uploaded: an invocation without an event ignored");
            return logs(vec![
                "uploaded: ignored an invocation without an event".into()
            ]);
        }
    };
    let mut lines = Vec::with_capacity(events.len());
    let mut retry = None;
    for event in &events {
        let id = match blob_created(event) {
            Ok(found) => found,
            Err(why) => {
                tracing::warn!(event = %event_summary(event), why, "uploaded: event ignored");
                lines.push(format!("uploaded: ignored an event: {why}"));
                continue;
            }
        };
        match state.files.complete(id).await {
            Ok(view) => lines.push(format!("file {id}: {}", view.stage())),
            // No upload URL was opened for it, or it has gone: not ours to start.
            Err(FilesError::Refused(Refusal::NotFound(_))) => {
                tracing::warn!(file = %id, "uploaded: a blob no upload was opened for; ignored");
                lines.push(format!(
                    "uploaded: ignored file {id}: no upload was opened for it"
                ));
            }
            Err(e) => {
                tracing::warn!(file = %id, error = %e, "uploaded: could not start the file; Event Grid will retry");
                retry = Some(e);
            }
        }
    }
    match retry {
        None => logs(lines),
        Some(e) => retry_later(&e),
    }
}

/// The file a `BlobCreated` event of container `uploads` is about, or why the event is not
/// one. (The size it reports is not trusted: the start reads the blob's own.)
fn blob_created(event: &Value) -> Result<FileId, &'static str> {
    // Event Grid schema, then CloudEvents 1.0.
    let kind = event
        .get("eventType")
        .or_else(|| event.get("type"))
        .and_then(Value::as_str);
    if kind != Some(BLOB_CREATED) {
        return Err("not a Microsoft.Storage.BlobCreated event");
    }
    let name = event
        .get("subject")
        .and_then(Value::as_str)
        .and_then(|s| s.strip_prefix(UPLOADS_SUBJECT))
        .ok_or("not a blob of container uploads")?;
    FileId::parse(name).map_err(|_| "the blob's name is not a file id")
}
