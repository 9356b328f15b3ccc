//! `orchestrator/`: the blob trigger on `files/{id}` (with the file's record as a table input)
//! that starts the file's `FileApproval` workflow.
//!
//! The host sends the whole blob base64-encoded in `Data.blob`; it is skipped while the body
//! streams in, never decoded or held (the analysis activity reads the file from storage). The
//! host delivers at least once, and starting is idempotent, so a repeat is harmless. Failures
//! worth a retry (storage unavailable) answer non-2xx so the host retries; everything else
//! answers 200 with `Logs` saying what happened.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::invocation::{parse_invocation, Invocation, InvocationLimits, InvocationResponse};
use super::AppState;
use crate::domain::FileId;
use crate::error::ApiError;
use crate::files::{FileRecord, TriggerFacts};

/// The binding names in `orchestrator/function.json`.
const BLOB_BINDING: &str = "blob";
const RECORD_BINDING: &str = "record";

pub async fn invoke(State(state): State<AppState>, body: Body) -> Response {
    let invocation = match parse_invocation(
        body.into_data_stream(),
        &[BLOB_BINDING],
        &InvocationLimits::default(),
    )
    .await
    {
        Ok(inv) => inv,
        Err(e) => {
            // A retry would fail the same way, so answer 2xx (a non-2xx makes the host retry
            // and then poison the message) and say why in the host's log and ours.
            tracing::error!(error = %e, "orchestrator: malformed invocation ignored");
            return logs_response(vec![format!(
                "orchestrator: ignored a malformed invocation (InvalidBody): {e}"
            )])
            .into_response();
        }
    };
    match handle(&state, &invocation).await {
        Ok(logs) => logs_response(logs).into_response(),
        Err(e) => {
            // A non-2xx answer makes the host retry (and drops Logs), so log here.
            tracing::warn!(error = %e, "orchestrator invocation failed; the host will retry");
            let status = match e {
                ApiError::StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, InvocationResponse::new()).into_response()
        }
    }
}

async fn handle(state: &AppState, invocation: &Invocation) -> Result<Vec<String>, ApiError> {
    let Some(raw_id) = invocation.metadata_str("id") else {
        return Ok(vec![
            "orchestrator: ignored an invocation without a blob name".into(),
        ]);
    };
    let Ok(id) = FileId::parse(&raw_id) else {
        // Not ours: something else wrote into the container under a non-UUID name.
        tracing::warn!(blob = %raw_id.chars().take(100).collect::<String>(), "blob is not named by a file id; ignored");
        return Ok(vec![format!(
            "orchestrator: ignored blob {:?}: its name is not a file id",
            raw_id.chars().take(100).collect::<String>()
        )]);
    };

    let mut logs = Vec::new();
    let record = match invocation.data_object(RECORD_BINDING) {
        Some(obj) => {
            let record = FileRecord::from_binding(id, &obj);
            if record.is_none() {
                logs.push("record binding unreadable; reading storage".to_owned());
            }
            record
        }
        // `"null"`: no record when the host looked; it may have been written since.
        None => None,
    };
    let properties = invocation.blob_properties();
    let facts = TriggerFacts {
        record,
        blob_size: properties.as_ref().and_then(|p| p.content_length),
        blob_created: properties.as_ref().and_then(|p| p.created_on),
        blob_etag: None,
    };
    let started = state.files.start(id, facts).await?;
    if started.record_created {
        logs.push(format!(
            "file {id}: no record; created one from the blob's properties"
        ));
    }
    logs.push(if started.newly {
        format!("file {id}: workflow started")
    } else {
        format!("file {id}: workflow already started")
    });
    tracing::info!(file = %id, "blob trigger handled");
    Ok(logs)
}

fn logs_response(logs: Vec<String>) -> InvocationResponse {
    let mut response = InvocationResponse::new();
    for line in logs {
        response.log(line);
    }
    response
}
