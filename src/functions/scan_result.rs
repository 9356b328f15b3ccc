//! `scan_result/`: an `eventGridTrigger` for Microsoft Defender for Storage's
//! `Microsoft.Security.MalwareScanningResult` events (with `FILE_APPROVER_SCANNER=defender`):
//! each result is matched to its file by the blob's URL and to its bytes by the blob's ETag,
//! and handed to the file's workflow, which waits in `Scanning` for it.
//!
//! Events come in the Event Grid schema (`eventType`) or as CloudEvents 1.0 (`type`), one per
//! invocation or as a batch. A result outside the contract — another event type, a blob of no
//! file of this app, a file not waiting for one, a result for other bytes (the blob replaced
//! since) — is logged and acknowledged (a retry would change nothing); a redelivery is a
//! no-op. A failure worth retrying (storage unavailable) answers non-2xx: Event Grid retries.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;

use super::invocation::{
    event_summary, events_of, logged, parse_invocation, retry_later, InvocationLimits,
};
use super::AppState;
use crate::files::{FilesError, ScanResultOutcome};
use crate::workflow::defender_result;

/// The binding name in `scan_result/function.json`.
const EVENT_BINDING: &str = "event";

pub async fn invoke(State(state): State<AppState>, body: Body) -> Response {
    let invocation =
        match parse_invocation(body.into_data_stream(), &[], &InvocationLimits::default()).await {
            Ok(invocation) => invocation,
            Err(e) => {
                tracing::error!(error = %e, "scan_result: malformed invocation ignored");
                return logged(vec![format!(
                    "scan_result: ignored a malformed invocation: {e}"
                )]);
            }
        };
    let Some(events) = events_of(&invocation, EVENT_BINDING) else {
        tracing::error!("scan_result: an invocation without an event ignored");
        return logged(vec![
            "scan_result: ignored an invocation without an event".into()
        ]);
    };
    let mut lines = Vec::with_capacity(events.len());
    let mut retry: Option<FilesError> = None;
    for event in &events {
        let result = match defender_result(event) {
            Ok(result) => result,
            Err(why) => {
                tracing::warn!(event = %event_summary(event), why, "scan_result: event ignored");
                lines.push(format!("scan_result: ignored an event: {why}"));
                continue;
            }
        };
        match state.files.record_scan_result(&result).await {
            Ok(ScanResultOutcome::Recorded(id)) => {
                lines.push(format!("file {id}: {}", result.report.verdict));
            }
            Ok(ScanResultOutcome::Duplicate(id)) => {
                lines.push(format!("file {id}: a result already recorded"));
            }
            Ok(ScanResultOutcome::Ignored(why)) => {
                tracing::warn!(blob = %result.blob_uri, etag = %result.etag, why, "scan_result: result ignored");
                lines.push(format!("scan_result: ignored a result: {why}"));
            }
            Err(e) => {
                tracing::warn!(blob = %result.blob_uri, error = %e, "scan_result: could not record the result; Event Grid will retry");
                retry = Some(e);
            }
        }
    }
    match retry {
        None => logged(lines),
        Some(e) => retry_later(&e),
    }
}
