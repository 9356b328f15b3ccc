//! Review as a conversation: a reviewer asks for changes, the file goes back to its uploader
//! (stage `ChangesRequested`), and the uploader sends a new version, which is scanned,
//! analysed and reviewed from the upload stage again, or takes the file back. Versions are
//! numbered from 1 (the upload itself); each has its own pinned bytes, size and analysis.
//! Decisions carry the version they were made on, so decisions on earlier versions stay in the
//! history but never count towards the current version's quorum or its four-eyes rules.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::input::{BlobRef, FileInput};
use crate::domain::{Principal, Stage};
use crate::engine::{EngineError, EventGuard, HistoryEvent, InstanceStatus, RaiseEvent, Refusal};

/// The event of the uploader's turn: a new version, or the file taken back.
pub const UPLOADER_TURN_EVENT: &str = "UploaderTurn";

/// A new version, as the uploader's turn hands it to the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInput {
    /// 2 for the first new version, and so on.
    pub number: u32,
    pub size: u64,
    pub content_type: String,
    /// False when the uploader said nothing about its type (see [`FileInput`]).
    #[serde(
        default = "super::input::declared",
        skip_serializing_if = "super::input::is_declared"
    )]
    pub content_type_declared: bool,
    /// Where its bytes were written.
    pub blob: BlobRef,
    /// The snapshot its bytes were pinned to, before the workflow heard of it.
    pub pinned: String,
}

/// The uploader's answer to a change request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploaderTurnEvent {
    pub uploader: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader_id: Option<String>,
    pub time: DateTime<Utc>,
    /// The new version; `None` when the uploader took the file back instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl UploaderTurnEvent {
    pub fn principal(&self) -> Principal {
        Principal::parse(&self.uploader, self.uploader_id.as_deref())
            .unwrap_or_else(|_| Principal::anonymous())
    }
}

pub const NOT_THE_UPLOADER_TURN: &str = "NotTheUploader";

/// The event that records the uploader's turn, accepted only while the file waits in
/// `ChangesRequested` and only from its uploader (both checked inside the turn that records
/// it). Each new version's event id names its snapshot, so two versions racing cannot both be
/// taken, and the loser hears that the file moved on.
pub fn uploader_turn_event(turn: &UploaderTurnEvent) -> Result<RaiseEvent, EngineError> {
    let what = match &turn.version {
        Some(v) => format!("version:{}:{}", v.number, v.pinned),
        None => "withdraw".to_owned(),
    };
    let requester = turn.principal();
    let guard = EventGuard(Arc::new(
        move |status: &InstanceStatus, _: &[HistoryEvent]| {
            let file: FileInput = match serde_json::from_value(status.input.clone()) {
                Ok(file) => file,
                Err(_) => return Ok(()),
            };
            match &file.uploader {
                Some(uploader) if uploader.same_person(&requester) => Ok(()),
                _ => Err(Refusal {
                    code: NOT_THE_UPLOADER_TURN,
                    message: format!(
                        "only the file's uploader may answer a change request, not {requester}"
                    ),
                }),
            }
        },
    ));
    Ok(RaiseEvent {
        name: UPLOADER_TURN_EVENT.to_owned(),
        event_id: what,
        payload: serde_json::to_value(turn)
            .map_err(|e| EngineError::Corrupt(format!("an uploader's turn: {e}")))?,
        expect_custom_status: Some(super::stages::stage_status(Stage::ChangesRequested)),
        guard: Some(guard),
        stamp: None,
    })
}

impl FileInput {
    /// The file as its version `v` is reviewed: the same file, with that version's bytes.
    pub fn with_version(&self, v: &VersionInput) -> FileInput {
        FileInput {
            size: v.size,
            content_type: v.content_type.clone(),
            content_type_declared: v.content_type_declared,
            direct: None,
            blob: Some(v.blob.clone()),
            pinned: Some(v.pinned.clone()),
            version: v.number,
            ..self.clone()
        }
    }
}

/// One version as a summary tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionSummary {
    pub number: u32,
    pub size: u64,
    pub content_type: String,
    pub uploaded_time: DateTime<Utc>,
    /// Its analysis, once it ran.
    pub analysis: Option<serde_json::Value>,
    /// Where its bytes were written, and the snapshot that pinned them (none for a file
    /// started before pinning): what an earlier version's preview reads while they are kept.
    pub blob: BlobRef,
    pub pinned: Option<String>,
}

/// The new versions a history records, oldest first (version 1, the upload itself, is not
/// among them), with the event's position in the history.
pub fn new_versions(history: &[HistoryEvent]) -> Vec<(usize, UploaderTurnEvent, VersionInput)> {
    history
        .iter()
        .enumerate()
        .filter_map(|(at, event)| match &event.kind {
            crate::engine::EventKind::EventRaised { name, input, .. }
                if name == UPLOADER_TURN_EVENT =>
            {
                let turn: UploaderTurnEvent = serde_json::from_value(input.clone()).ok()?;
                let version = turn.version.clone()?;
                Some((at, turn, version))
            }
            _ => None,
        })
        .collect()
}
