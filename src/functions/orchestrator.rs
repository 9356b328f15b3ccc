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
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::invocation::{parse_invocation, Invocation, InvocationLimits, InvocationResponse};
use crate::domain::{FileId, FileName};
use crate::engine::{EngineError, StartOutcome};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::{Entity, Prop, StoreError, TableQuery};
use crate::workflow::record::{self, FileRecord, UploadState, FILES_TABLE};
use crate::workflow::{start_for_file, FileInput, FILES_CONTAINER};

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
        Some(obj) => match record_from_binding(id, &obj) {
            Some(rec) => Some(rec),
            None => {
                logs.push("record binding unreadable; reading storage".to_owned());
                record::get(state.store.as_ref(), id).await?.map(|(r, _)| r)
            }
        },
        // `"null"`: no record when the host looked; it may have been written since.
        None => record::get(state.store.as_ref(), id).await?.map(|(r, _)| r),
    };
    let mut record = match record {
        Some(rec) => rec,
        None => {
            logs.push(format!(
                "file {id}: no record; created one from the blob's properties"
            ));
            record_from_blob(state, id, invocation).await?
        }
    };
    if record.size.is_none() {
        // The trigger can outrun the upload's last step (marking the record uploaded).
        record.size = invocation
            .blob_properties()
            .and_then(|p| p.content_length)
            .or(Some(
                state
                    .store
                    .blob_properties(FILES_CONTAINER, &id.to_string())
                    .await?
                    .size,
            ));
    }
    match start_workflow(state, &record).await? {
        StartOutcome::Started(_) => logs.push(format!("file {id}: workflow started")),
        StartOutcome::AlreadyExists => logs.push(format!("file {id}: workflow already started")),
    }
    tracing::info!(file = %id, "blob trigger handled");
    Ok(logs)
}

/// Starts a file's workflow from its record: the code the blob trigger runs, and that local
/// mode runs right after an upload commits.
pub async fn start_workflow(
    state: &AppState,
    record: &FileRecord,
) -> Result<StartOutcome, ApiError> {
    let input = FileInput {
        id: record.id.to_string(),
        name: record.name.to_string(),
        content_type: record.content_type.clone(),
        size: record.size.unwrap_or(0),
        created_time: record.created_time,
        approval_timeout_secs: state.settings.approval_timeout_secs,
    };
    start_for_file(&state.engine, &input)
        .await
        .map_err(|e: EngineError| e.into())
}

/// Starts the workflow of every committed upload that has none (local mode's stand-in for the
/// blob trigger's redelivery). One query over the records, one status read per record found
/// (and a blob check for records still `Uploading`).
pub async fn start_unstarted_uploads(state: &AppState) -> Result<usize, ApiError> {
    let mut started = 0;
    let mut continuation = None;
    loop {
        let page = state
            .store
            .query(
                FILES_TABLE,
                &TableQuery {
                    top: Some(1000),
                    continuation,
                    ..TableQuery::default()
                },
            )
            .await?;
        for stored in &page.entities {
            let Ok(rec) = FileRecord::from_entity(&stored.entity) else {
                tracing::warn!(record = %stored.entity.partition_key, "unreadable file record skipped");
                continue;
            };
            if state
                .engine
                .status(&rec.id.to_string(), false)
                .await?
                .is_some()
            {
                continue;
            }
            if let Some(rec) = super::committed_upload(state, rec).await? {
                if let StartOutcome::Started(_) = start_workflow(state, &rec).await? {
                    started += 1;
                }
            }
        }
        continuation = page.continuation;
        if continuation.is_none() {
            return Ok(started);
        }
    }
}

/// The table input arrives as the entity's JSON (native types, `odata.*` annotations).
fn record_from_binding(id: FileId, obj: &Map<String, Value>) -> Option<FileRecord> {
    let mut entity = Entity::new(id.to_string(), record::RECORD_ROW);
    for (key, value) in obj {
        if key.starts_with("odata.") || key.contains("@odata") {
            continue;
        }
        let prop = match value {
            Value::String(s) => Prop::Str(s.clone()),
            Value::Bool(b) => Prop::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Prop::Int(i),
                None => Prop::Float(n.as_f64()?),
            },
            _ => continue,
        };
        entity.props.insert(key.clone(), prop);
    }
    FileRecord::from_entity(&entity).ok()
}

/// A blob that arrived without a record (dropped into the container by other means) still gets
/// a record and a workflow; its display name is its id.
async fn record_from_blob(
    state: &AppState,
    id: FileId,
    invocation: &Invocation,
) -> Result<FileRecord, ApiError> {
    let props = state
        .store
        .blob_properties(FILES_CONTAINER, &id.to_string())
        .await?;
    let created_time: DateTime<Utc> = invocation
        .blob_properties()
        .and_then(|p| p.created_on)
        .unwrap_or(props.last_modified);
    let rec = FileRecord {
        id,
        name: FileName::parse(&id.to_string()).map_err(ApiError::internal)?,
        content_type: props.content_type.clone(),
        size: Some(props.size),
        created_time,
        state: UploadState::Uploaded,
    };
    match state
        .store
        .insert_entity(FILES_TABLE, &rec.to_entity())
        .await
    {
        Ok(_) => Ok(rec),
        // Another delivery of the same trigger got there first: use its record.
        Err(StoreError::AlreadyExists) => record::get(state.store.as_ref(), id)
            .await?
            .map(|(r, _)| r)
            .ok_or_else(|| ApiError::internal("a record vanished while being created")),
        Err(e) => Err(e.into()),
    }
}

fn logs_response(logs: Vec<String>) -> InvocationResponse {
    let mut response = InvocationResponse::new();
    for line in logs {
        response.log(line);
    }
    response
}
