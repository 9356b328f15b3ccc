//! The `FileApproval` orchestration and the `AnalyzeFile` activity.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use std::future::Future;
use std::pin::Pin;

use super::analysis::{analyze_stream, Analysis};
use super::input::{BlobRef, FileInput};
use super::notify::{self, cloud_event, EventType, Webhook, NOTIFY_ACTIVITY};
use super::scan::{self as gate, DefenderResult, BLOCK_ACTIVITY, SCAN_ACTIVITY, SCAN_RESULT_EVENT};
pub use super::stages::stage_status;
use super::versions::{self, UploaderTurnEvent, VersionSummary, UPLOADER_TURN_EVENT};
use crate::clock::Clock;
use crate::domain::{ApprovalStage, Principal, ScanReport, Stage};
use crate::engine::{
    ActivityError, Engine, EngineError, EventGuard, EventKind, EventStamp, HistoryEvent,
    InstanceStatus, OrchestrationContext, OrchestrationError, RaiseEvent, Refusal, Registry,
    RetryPolicy, Stamped, StartOutcome,
};
use crate::scan::Scanner;
use crate::store::{Storage, StoreError};

pub const ORCHESTRATION: &str = "FileApproval";
pub const ANALYZE_ACTIVITY: &str = "AnalyzeFile";
pub const DELETE_BYTES_ACTIVITY: &str = "DeleteBytes";
/// The event that takes an approved file's approval back.
pub const REVOCATION_EVENT: &str = "Revocation";

/// A reviewer takes an approval back: raised to an approved file's workflow, which waits for
/// it once the file is approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevocationEvent {
    pub reviewer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer_id: Option<String>,
    pub comment: String,
    pub revoked_time: DateTime<Utc>,
}

impl RevocationEvent {
    pub fn principal(&self) -> Principal {
        Principal::parse(&self.reviewer, self.reviewer_id.as_deref())
            .unwrap_or_else(|_| Principal::anonymous())
    }
}

/// The event that revokes a file, accepted only while it is `Approved` (checked inside the
/// turn that records it). The first revocation wins; the same reviewer saying it again raises
/// the same event id, recorded once.
pub fn revocation_event(revocation: &RevocationEvent) -> Result<RaiseEvent, EngineError> {
    Ok(RaiseEvent {
        name: REVOCATION_EVENT.to_owned(),
        event_id: format!(
            "revoke:{}",
            revocation
                .reviewer_id
                .as_deref()
                .unwrap_or(&revocation.reviewer)
        ),
        payload: serde_json::to_value(revocation)
            .map_err(|e| EngineError::Corrupt(format!("a revocation: {e}")))?,
        expect_custom_status: Some(stage_status(Stage::Approved)),
        guard: None,
        stamp: None,
    })
}

/// A reviewer's decision as raised to the instance (and as shown in FileStatus `approvals`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionEvent {
    pub stage: ApprovalStage,
    pub approved: bool,
    pub reviewer: String,
    /// The reviewer's stable id, when their sign-in gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub decided_time: DateTime<Utc>,
    /// The uploader took the file back (raised on the awaited stage's event, so that the
    /// review's wait sees it); `approved` is false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withdrawal: bool,
    /// The reviewer asked for a new version instead of deciding; `approved` is false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changes_requested: bool,
    /// The version decided on (1, the upload, for decisions made before versions).
    #[serde(default = "version_one", skip_serializing_if = "is_version_one")]
    pub version: u32,
}

fn version_one() -> u32 {
    1
}

fn is_version_one(v: &u32) -> bool {
    *v == 1
}

impl DecisionEvent {
    /// Who decided.
    pub fn principal(&self) -> Principal {
        Principal::parse(&self.reviewer, self.reviewer_id.as_deref())
            .unwrap_or_else(|_| Principal::anonymous())
    }
}

pub const SELF_APPROVAL: &str = "SelfApproval";
pub const NOT_THE_UPLOADER: &str = "NotTheUploader";
pub const SAME_REVIEWER: &str = "SameReviewer";
pub const STALE_VERSION: &str = "StaleVersion";

/// The version under review after `history`: 1, and one more for each new version.
pub fn current_version(history: &[HistoryEvent]) -> u32 {
    versions::new_versions(history)
        .last()
        .map_or(1, |(_, _, v)| v.number)
}

/// The four-eyes rules, as a guard the engine checks inside the turn that would record the
/// decision: the uploader cannot approve, and nobody approves the download who approved the
/// upload. Rejections pass (anyone may stop a file). Decided on the instance's own input and
/// history, so two processes racing see each other's committed decisions.
fn four_eyes_guard(decision: &DecisionEvent, on: OnVersion) -> EventGuard {
    let decision = decision.clone();
    EventGuard(Arc::new(
        move |status: &InstanceStatus, history: &[HistoryEvent]| {
            // A decision made on a version that is no longer the one under review.
            let current = current_version(history);
            let decision = DecisionEvent {
                version: on.resolve(history),
                ..decision.clone()
            };
            if !decision.withdrawal && decision.version != current {
                return Err(Refusal {
                    code: STALE_VERSION,
                    message: format!(
                        "version {} is no longer under review: version {current} is",
                        decision.version
                    ),
                });
            }
            // Rejections and change requests pass: anyone may stop a file or send it back.
            if !decision.approved && !decision.withdrawal {
                return Ok(());
            }
            let file: FileInput = match serde_json::from_value(status.input.clone()) {
                Ok(file) => file,
                // Not a file's instance: the rules do not apply (the engine refuses it anyway).
                Err(_) => return Ok(()),
            };
            if decision.withdrawal {
                let requester = decision.principal();
                return match &file.uploader {
                    Some(uploader) if uploader.same_person(&requester) => Ok(()),
                    _ => Err(Refusal {
                        code: NOT_THE_UPLOADER,
                        message: format!(
                            "only the file's uploader may withdraw it, not {requester}"
                        ),
                    }),
                };
            }
            // Decisions on earlier versions no longer count.
            let earlier: Vec<DecisionEvent> = decisions(history)
                .filter(|d| d.version == decision.version)
                .collect();
            match four_eyes_refusal(&file, &earlier, decision.stage, &decision.principal()) {
                Some(refusal) => Err(refusal),
                None => Ok(()),
            }
        },
    ))
}

/// Why the four-eyes rules bar `reviewer` from approving `stage` of `file`, given the decisions
/// recorded so far: they uploaded it, or (download) they approved its upload. `None` when they
/// may, or when the file's rules turn four eyes off. The one statement of the rule, for the
/// guard that enforces it and for the inbox that must not offer what it would refuse.
pub fn four_eyes_refusal(
    file: &FileInput,
    earlier: &[DecisionEvent],
    stage: ApprovalStage,
    reviewer: &Principal,
) -> Option<Refusal> {
    if !file.rules.four_eyes {
        return None;
    }
    if file
        .uploader
        .as_ref()
        .is_some_and(|u| u.same_person(reviewer))
    {
        return Some(Refusal {
            code: SELF_APPROVAL,
            message: format!("{reviewer} uploaded this file, so cannot approve it"),
        });
    }
    let approved_upload = earlier.iter().any(|d| {
        d.stage == ApprovalStage::Upload && d.approved && d.principal().same_person(reviewer)
    });
    (stage == ApprovalStage::Download && approved_upload).then(|| Refusal {
        code: SAME_REVIEWER,
        message: format!(
            "{reviewer} approved the upload, so someone else must approve the download"
        ),
    })
}

/// The decisions (withdrawals included) recorded in a history, oldest first.
fn decisions(history: &[HistoryEvent]) -> impl Iterator<Item = DecisionEvent> + '_ {
    history.iter().filter_map(decision_of)
}

/// The decision (or withdrawal) an event records, if it records one.
fn decision_of(event: &HistoryEvent) -> Option<DecisionEvent> {
    match &event.kind {
        EventKind::EventRaised { name, input, .. }
            if name == event_name(ApprovalStage::Upload)
                || name == event_name(ApprovalStage::Download) =>
        {
            serde_json::from_value(input.clone()).ok()
        }
        _ => None,
    }
}

/// The external event a stage's decision arrives as.
fn event_name(stage: ApprovalStage) -> &'static str {
    match stage {
        ApprovalStage::Upload => "UploadDecision",
        ApprovalStage::Download => "DownloadDecision",
    }
}

/// The key of the status index a stage is listed under. Stages are grouped by what people do
/// next, so the analysis finishing (`Analyzing` → `AwaitingDownloadApproval`, both "in review")
/// writes no index row; keys sort in the workflow's order, for listings of every file.
pub fn stage_index_key(stage: Stage) -> Option<&'static str> {
    match stage {
        Stage::Uploaded => None,
        Stage::Scanning => Some("0-scanning"),
        Stage::AwaitingUploadApproval => Some("1-awaiting-upload"),
        Stage::ChangesRequested => Some("1-changes-requested"),
        Stage::Analyzing | Stage::AwaitingDownloadApproval => Some("2-in-review"),
        Stage::Approved => Some("3-approved"),
        Stage::Rejected => Some("4-rejected"),
        Stage::Expired => Some("5-expired"),
        Stage::Failed => Some("6-failed"),
        Stage::Withdrawn => Some("7-withdrawn"),
        Stage::Blocked => Some("8-blocked"),
        Stage::Revoked => Some("9-revoked"),
    }
}

/// [`stage_index_key`] of an instance's custom status: the engine's `index_key`.
pub fn index_key(custom_status: &Value) -> Option<String> {
    let stage = stage_of(custom_status)?;
    stage_index_key(stage).map(str::to_owned)
}

/// Which version of the file a decision is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnVersion {
    /// The version the reviewer looked at, as their client said: refused (`StaleVersion`) if
    /// another is under review by the time it is recorded.
    Stated(u32),
    /// Whichever version is under review when the decision is recorded, found inside the turn
    /// that records it (no read before).
    UnderReview,
}

impl OnVersion {
    /// The version meant, against the instance's history as the recording turn sees it.
    fn resolve(self, history: &[HistoryEvent]) -> u32 {
        match self {
            OnVersion::Stated(version) => version,
            OnVersion::UnderReview => current_version(history),
        }
    }
}

/// A client's `"version"`, if it sent one.
impl From<Option<u32>> for OnVersion {
    fn from(stated: Option<u32>) -> Self {
        stated.map_or(OnVersion::UnderReview, OnVersion::Stated)
    }
}

/// The event that records `decision` on the version `on` names (its own `version` is
/// replaced), guarded by the stage it belongs to: the engine checks that expectation inside
/// the same ETag-guarded turn that records it, so two reviewers racing cannot both win and a
/// decision never lands in the wrong stage. The same reviewer repeating the same decision on
/// the same version raises the same event id, which the engine records once.
pub fn decision_event(decision: &DecisionEvent, on: OnVersion) -> Result<RaiseEvent, EngineError> {
    // What the caller knows before the turn; a decision on the version under review is
    // completed inside it, by the stamp.
    let known = on_version(decision, on.resolve(&[]))?;
    let stamp = (on == OnVersion::UnderReview).then(|| {
        let decision = decision.clone();
        EventStamp(Arc::new(
            move |_status: &InstanceStatus, history: &[HistoryEvent]| {
                on_version(&decision, current_version(history))
            },
        ))
    });
    Ok(RaiseEvent {
        name: event_name(decision.stage).to_owned(),
        event_id: known.event_id,
        payload: known.payload,
        expect_custom_status: Some(stage_status(decision.stage.awaited_in())),
        guard: Some(four_eyes_guard(decision, on)),
        stamp,
    })
}

/// `decision` on `version`: its event id and payload.
fn on_version(decision: &DecisionEvent, version: u32) -> Result<Stamped, EngineError> {
    let decision = DecisionEvent {
        version,
        ..decision.clone()
    };
    Ok(Stamped {
        event_id: decision_id(&decision),
        payload: serde_json::to_value(&decision)
            .map_err(|e| EngineError::Corrupt(format!("a decision event: {e}")))?,
    })
}

/// A decision's idempotency key: the same reviewer, verdict, stage and version.
fn decision_id(decision: &DecisionEvent) -> String {
    let verdict = if decision.withdrawal {
        "withdraw"
    } else if decision.approved {
        "approve"
    } else if decision.changes_requested {
        "changes"
    } else {
        "reject"
    };
    // Version 1 keeps the ids decisions had before versions, so a repeat still matches.
    let version = match decision.version {
        1 => String::new(),
        n => format!("v{n}:"),
    };
    // By id where the sign-in gives one: two people may share a display name.
    format!(
        "{version}{}:{}:{verdict}",
        decision.stage,
        decision
            .reviewer_id
            .as_deref()
            .unwrap_or(&decision.reviewer)
    )
}

/// The event that hands a matched Defender result to the file's workflow: recorded once per
/// result (a redelivery is a duplicate), and only while the file waits in `Scanning`.
pub fn scan_result_event(result: &DefenderResult, etag: &str) -> Result<RaiseEvent, EngineError> {
    let outcome = gate::ScanOutcome {
        report: result.report.clone(),
        etag: Some(etag.to_owned()),
        analysis: None,
    };
    Ok(RaiseEvent {
        name: SCAN_RESULT_EVENT.to_owned(),
        event_id: format!("defender:{}", result.correlation_id),
        payload: serde_json::to_value(outcome)
            .map_err(|e| EngineError::Corrupt(format!("a scan result: {e}")))?,
        expect_custom_status: Some(stage_status(Stage::Scanning)),
        guard: None,
        stamp: None,
    })
}

/// Analysis reads the whole file once; a retry helps only with a storage hiccup.
fn analysis_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        first_interval: Duration::seconds(5),
        backoff_coefficient: 2.0,
        max_interval: Duration::seconds(60),
    }
}

fn set_stage(ctx: &OrchestrationContext, stage: Stage) {
    ctx.set_custom_status(stage_status(stage));
}

/// How a stage's review ended.
enum Review {
    Approved,
    Rejected,
    Expired,
    Withdrawn,
    ChangesRequested,
}

/// How one version's review ended: the workflow's end, its approval, or a change request.
enum Reviewed {
    Ended(Value),
    Approved,
    ChangesRequested,
}

/// A stage's deadline and its reminder: waits for the stage's events until the deadline,
/// sending the reminder the configured time before it (once) while the stage still waits.
struct Waiting {
    deadline: Option<DateTime<Utc>>,
    remind_at: Option<DateTime<Utc>>,
    stage: Stage,
}

impl Waiting {
    fn new(
        ctx: &OrchestrationContext,
        notifier: &Notifier,
        file: &FileInput,
        stage: Stage,
    ) -> Self {
        let deadline = stage_deadline(ctx, file.approval_timeout_secs);
        let remind_at = match (deadline, file.reminder_before_secs) {
            (Some(deadline), Some(before)) if notifier.enabled => i64::try_from(before)
                .ok()
                .and_then(Duration::try_seconds)
                .and_then(|before| deadline.checked_sub_signed(before))
                .filter(|at| *at > ctx.current_time()),
            _ => None,
        };
        Waiting {
            deadline,
            remind_at,
            stage,
        }
    }

    /// The next event named `event`, or `None` once the deadline passed.
    async fn next<T: serde::de::DeserializeOwned>(
        &mut self,
        ctx: &OrchestrationContext,
        notifier: &mut Notifier,
        file: &FileInput,
        event: &str,
    ) -> Result<Option<T>, OrchestrationError> {
        loop {
            let until = self.remind_at.or(self.deadline);
            let raised: Option<T> = notifier
                .alongside(async {
                    match until {
                        Some(until) => ctx.wait_for_event_until(event, until).await,
                        None => ctx.wait_for_event(event).await.map(Some),
                    }
                })
                .await?;
            if raised.is_some() {
                return Ok(raised);
            }
            if self.remind_at.take().is_some() {
                notifier.send(file, EventType::Reminder, self.stage, self.deadline);
                continue;
            }
            return Ok(None);
        }
    }
}

/// The notifications a workflow has in flight. Each runs as its own retried activity beside
/// whatever the workflow waits for (`alongside`), so a slow or broken receiver never holds a
/// file up; the workflow's end waits for the ones still going (`flush`). Sequence numbers
/// make event ids stable across replays.
struct Notifier {
    ctx: OrchestrationContext,
    enabled: bool,
    /// What the scanner saw, once it has: every later event carries it.
    scan: Option<ScanReport>,
    seq: u32,
    pending: Vec<Pin<Box<dyn Future<Output = ()>>>>,
}

impl Notifier {
    fn new(ctx: &OrchestrationContext, file: &FileInput) -> Self {
        Notifier {
            ctx: ctx.clone(),
            enabled: file.notify,
            scan: None,
            seq: 0,
            pending: Vec::new(),
        }
    }

    fn send(
        &mut self,
        file: &FileInput,
        kind: EventType,
        stage: Stage,
        deadline: Option<DateTime<Utc>>,
    ) {
        if !self.enabled {
            return;
        }
        self.seq += 1;
        let event = cloud_event(
            file,
            self.seq,
            kind,
            stage,
            deadline,
            self.scan.as_ref(),
            self.ctx.current_time(),
        );
        let ctx = self.ctx.clone();
        self.pending.push(Box::pin(async move {
            let delivered: Result<Value, OrchestrationError> = ctx
                .call_activity(NOTIFY_ACTIVITY, &event, notify::retry())
                .await;
            if let Err(e) = delivered {
                if !ctx.is_replaying() {
                    tracing::warn!(file = %ctx.instance_id(), event = %event["id"], error = %e, "a notification could not be delivered; giving up on it");
                }
            }
        }));
    }

    /// Runs `work` beside whatever the workflow waits for, like a notification: the workflow's
    /// end waits for it.
    fn beside(&mut self, work: impl Future<Output = ()> + 'static) {
        self.pending.push(Box::pin(work));
    }

    /// Runs `main` while the notifications in flight make progress beside it.
    async fn alongside<T>(&mut self, main: impl Future<Output = T>) -> T {
        let mut main = std::pin::pin!(main);
        let pending = &mut self.pending;
        std::future::poll_fn(|cx| {
            pending.retain_mut(|n| n.as_mut().poll(cx).is_pending());
            main.as_mut().poll(cx)
        })
        .await
    }

    /// Waits for every notification still in flight (each ends, delivered or given up).
    async fn flush(&mut self) {
        futures::future::join_all(std::mem::take(&mut self.pending)).await;
    }
}

/// When a stage that begins now must be decided by, if the file has a timeout.
fn stage_deadline(ctx: &OrchestrationContext, timeout_secs: Option<u64>) -> Option<DateTime<Utc>> {
    // A timeout too long for the calendar is no deadline at all, rather than a panic that
    // would fail the file's workflow.
    timeout_secs
        .and_then(|secs| i64::try_from(secs).ok())
        .and_then(Duration::try_seconds)
        .and_then(|timeout| ctx.current_time().checked_add_signed(timeout))
}

/// Announces the stage, then waits for its decisions until `quorum` distinct reviewers
/// approved, one rejected, the uploader withdrew, or the deadline passed; a reminder goes out
/// the configured time before the deadline while the stage still waits.
async fn review(
    ctx: &OrchestrationContext,
    notifier: &mut Notifier,
    file: &FileInput,
    stage: ApprovalStage,
) -> Result<Review, OrchestrationError> {
    let awaiting = stage.awaited_in();
    let mut waiting = Waiting::new(ctx, notifier, file, awaiting);
    let announcement = match stage {
        ApprovalStage::Upload => EventType::AwaitingUploadApproval,
        ApprovalStage::Download => EventType::AwaitingDownloadApproval,
    };
    notifier.send(file, announcement, awaiting, waiting.deadline);
    let quorum = file.rules.quorum(stage);
    let mut approvers: Vec<Principal> = Vec::new();
    loop {
        let decision: Option<DecisionEvent> =
            waiting.next(ctx, notifier, file, event_name(stage)).await?;
        let Some(decision) = decision else {
            return Ok(Review::Expired);
        };
        if decision.withdrawal {
            return Ok(Review::Withdrawn);
        }
        if decision.changes_requested {
            return Ok(Review::ChangesRequested);
        }
        if !decision.approved {
            return Ok(Review::Rejected);
        }
        let approver = decision.principal();
        if !approvers.iter().any(|a| a.same_person(&approver)) {
            approvers.push(approver);
        }
        if approvers.len() >= quorum as usize {
            return Ok(Review::Approved);
        }
    }
}

/// The stage a custom status holds: the stage's name, or `{"stage", "failure"}` for a failed
/// file whose workflow is still cleaning up.
fn stage_of(custom_status: &Value) -> Option<Stage> {
    let name = custom_status
        .as_str()
        .or_else(|| custom_status.get("stage")?.as_str())?;
    Stage::parse(name).ok()
}

/// Ends the workflow with `stage` as both custom status and output.
fn finish(ctx: &OrchestrationContext, stage: Stage) -> Result<Value, OrchestrationError> {
    set_stage(ctx, stage);
    // Once, in the turn that gets here first, not again on each replay.
    if !ctx.is_replaying() {
        tracing::info!(file = %ctx.instance_id(), stage = %stage, "workflow finished");
    }
    Ok(json!({ "stage": stage.as_str() }))
}

async fn file_approval(
    ctx: OrchestrationContext,
    input: Value,
) -> Result<Value, OrchestrationError> {
    let file: FileInput = serde_json::from_value(input)
        .map_err(|e| OrchestrationError::failed(format!("invalid FileApproval input: {e}")))?;
    let mut notifier = Notifier::new(&ctx, &file);
    let mut blobs = vec![BlobRef {
        container: file.container().to_owned(),
        name: file.blob_name().to_owned(),
    }];
    let result = run(&ctx, &mut notifier, &file, &mut blobs).await;
    // A failure's reason is shown at once, not only when the instance completes after its
    // clean-up: it rides in the custom status beside the stage.
    if let Err(e) = &result {
        ctx.set_custom_status(json!({"stage": Stage::Failed.as_str(), "failure": e.to_string()}));
    }
    // The end is announced once the final stage is set (clients already see it); the instance
    // completes when the notifications still in flight have been delivered or given up.
    let stage = stage_of(&ctx.custom_status()).unwrap_or(Stage::Failed);
    notifier.send(&file, EventType::Finished(stage), stage, None);
    if let Some(retention) = file.retention_secs.filter(|_| refused(stage)) {
        notifier
            .alongside(delete_bytes_after(ctx.clone(), blobs, retention))
            .await;
    }
    notifier.flush().await;
    result
}

/// Whether a file ended without being approved (or had its approval taken back): its bytes
/// are no longer anyone's business.
fn refused(stage: Stage) -> bool {
    matches!(
        stage,
        Stage::Rejected | Stage::Expired | Stage::Withdrawn | Stage::Failed | Stage::Revoked
    )
}

/// Deletes a refused file's bytes (every version's blob, with its snapshots) once its
/// retention has passed (a durable timer per file, so nothing ever scans for old files). Its
/// record, history and audit stay.
async fn delete_bytes_after(ctx: OrchestrationContext, blobs: Vec<BlobRef>, retention_secs: u64) {
    let at = i64::try_from(retention_secs)
        .ok()
        .and_then(Duration::try_seconds)
        .and_then(|d| ctx.current_time().checked_add_signed(d));
    match at {
        Some(at) if retention_secs > 0 => ctx.create_timer(at).await,
        Some(_) => {}
        // A retention beyond the calendar keeps the bytes.
        None => return,
    }
    for blob in blobs {
        // `id` is the blob's name: the upload's own is the file id.
        let target = json!({"container": blob.container, "id": blob.name});
        let deleted: Result<Value, OrchestrationError> = ctx
            .call_activity(DELETE_BYTES_ACTIVITY, &target, analysis_retry())
            .await;
        if let Err(e) = deleted {
            if !ctx.is_replaying() {
                tracing::warn!(file = %ctx.instance_id(), error = %e, "could not delete a refused file's bytes");
            }
        }
    }
}

/// The file's whole review: each version through the gate until one is approved or the file
/// ends; a change request hands the turn to the uploader, whose new version starts over.
/// `blobs` collects every blob the versions were written to, for the clean-up at the end.
async fn run(
    ctx: &OrchestrationContext,
    notifier: &mut Notifier,
    first: &FileInput,
    blobs: &mut Vec<BlobRef>,
) -> Result<Value, OrchestrationError> {
    let mut file = first.clone();
    loop {
        match review_version(ctx, notifier, &file).await? {
            Reviewed::Ended(value) => return Ok(value),
            Reviewed::Approved => return approved(ctx, notifier, &file, blobs).await,
            Reviewed::ChangesRequested => {}
        }
        set_stage(ctx, Stage::ChangesRequested);
        let mut waiting = Waiting::new(ctx, notifier, &file, Stage::ChangesRequested);
        notifier.send(
            &file,
            EventType::ChangesRequested,
            Stage::ChangesRequested,
            waiting.deadline,
        );
        let turn: Option<UploaderTurnEvent> = waiting
            .next(ctx, notifier, &file, UPLOADER_TURN_EVENT)
            .await?;
        let Some(turn) = turn else {
            return finish(ctx, Stage::Expired);
        };
        let Some(version) = turn.version else {
            return finish(ctx, Stage::Withdrawn);
        };
        file = file.with_version(&version);
        blobs.push(version.blob);
        // Where the new version goes next.
        let next = match file.scan {
            Some(_) => Stage::Scanning,
            None => Stage::AwaitingUploadApproval,
        };
        notifier.send(&file, EventType::NewVersion, next, None);
    }
}

/// One version's way through the gate: its scan, the upload review, the analysis and the
/// download review.
async fn review_version(
    ctx: &OrchestrationContext,
    notifier: &mut Notifier,
    file: &FileInput,
) -> Result<Reviewed, OrchestrationError> {
    if let Some(direct) = file.direct {
        if direct.declared_size != file.size {
            set_stage(ctx, Stage::Failed);
            return Err(OrchestrationError::failed(format!(
                "{SIZE_MISMATCH}: the upload holds {} bytes but {} were declared",
                file.size, direct.declared_size
            )));
        }
    }

    let scanned = match &file.scan {
        Some(rules) => {
            set_stage(ctx, Stage::Scanning);
            let outcome = notifier.alongside(gate::scan(ctx, rules, file)).await?;
            notifier.scan = Some(outcome.report.clone());
            if outcome.blocks(rules) {
                if !ctx.is_replaying() {
                    tracing::warn!(file = %ctx.instance_id(), verdict = %outcome.report.verdict, threats = ?outcome.report.threats, "file blocked by the scan");
                }
                notifier.alongside(gate::block(ctx, rules, file)).await;
                return finish(ctx, Stage::Blocked).map(Reviewed::Ended);
            }
            Some(outcome)
        }
        None => None,
    };

    set_stage(ctx, Stage::AwaitingUploadApproval);
    match review(ctx, notifier, file, ApprovalStage::Upload).await? {
        Review::Expired => return finish(ctx, Stage::Expired).map(Reviewed::Ended),
        Review::Rejected => return finish(ctx, Stage::Rejected).map(Reviewed::Ended),
        Review::Withdrawn => return finish(ctx, Stage::Withdrawn).map(Reviewed::Ended),
        Review::ChangesRequested => return Ok(Reviewed::ChangesRequested),
        Review::Approved => {}
    }

    set_stage(ctx, Stage::Analyzing);
    // A file started before pinning reads the blob itself, which its upload URL could replace
    // until it expired: its analysis still waits for that.
    if let (Some(direct), None) = (file.direct, &file.pinned) {
        if direct.sealed_time > ctx.current_time() {
            notifier
                .alongside(ctx.create_timer(direct.sealed_time))
                .await;
        }
    }
    let input = AnalyzeInput {
        file: file.clone(),
        scanned_etag: scanned.as_ref().and_then(|s| s.etag.clone()),
        scanned_analysis: scanned.and_then(|s| s.analysis),
    };
    let analysis: Result<Value, OrchestrationError> = notifier
        .alongside(ctx.call_activity(ANALYZE_ACTIVITY, &input, analysis_retry()))
        .await;
    let analysis = match analysis {
        Ok(analysis) => analysis,
        Err(OrchestrationError::TaskFailed { message, .. })
            if message.starts_with(REPLACED_AFTER_SCAN) =>
        {
            set_stage(ctx, Stage::Failed);
            return Err(OrchestrationError::failed(message));
        }
        Err(e) => {
            set_stage(ctx, Stage::Failed);
            if !ctx.is_replaying() {
                tracing::warn!(file = %ctx.instance_id(), error = %e, "workflow failed: the analysis kept failing");
            }
            return Err(OrchestrationError::failed(format!(
                "{ANALYSIS_FAILED}: analysis failed: {e}"
            )));
        }
    };
    // The upload URL allowed the bytes to be replaced until it expired: what was analysed must
    // still be what was declared.
    if let Some(direct) = file.direct {
        let analysed = analysis.get("size").and_then(Value::as_u64);
        if analysed != Some(direct.declared_size) {
            set_stage(ctx, Stage::Failed);
            return Err(OrchestrationError::failed(format!(
                "{SIZE_MISMATCH}: the upload was replaced before its URL expired: it holds {} bytes but {} were declared",
                analysed.map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string()),
                direct.declared_size
            )));
        }
    }

    set_stage(ctx, Stage::AwaitingDownloadApproval);
    match review(ctx, notifier, file, ApprovalStage::Download).await? {
        Review::Expired => finish(ctx, Stage::Expired).map(Reviewed::Ended),
        Review::Rejected => finish(ctx, Stage::Rejected).map(Reviewed::Ended),
        Review::Withdrawn => finish(ctx, Stage::Withdrawn).map(Reviewed::Ended),
        Review::ChangesRequested => Ok(Reviewed::ChangesRequested),
        Review::Approved => Ok(Reviewed::Approved),
    }
}

/// Approved is final for the review, but the workflow stays to hear a revocation: an idle
/// wait, no timer, nothing polled. The approval is announced at once.
async fn approved(
    ctx: &OrchestrationContext,
    notifier: &mut Notifier,
    file: &FileInput,
    blobs: &[BlobRef],
) -> Result<Value, OrchestrationError> {
    finish(ctx, Stage::Approved)?;
    notifier.send(
        file,
        EventType::Finished(Stage::Approved),
        Stage::Approved,
        None,
    );
    // Earlier versions' bytes were refused: they follow the refused files' retention.
    let earlier: Vec<BlobRef> = blobs
        .iter()
        .filter(|b| b.container != file.container() || b.name != file.blob_name())
        .cloned()
        .collect();
    if let (Some(retention), false) = (file.retention_secs, earlier.is_empty()) {
        notifier.beside(delete_bytes_after(ctx.clone(), earlier, retention));
    }
    let _: RevocationEvent = notifier
        .alongside(ctx.wait_for_event(REVOCATION_EVENT))
        .await?;
    finish(ctx, Stage::Revoked)
}

/// The analysis activity's input: the file, and the version of its bytes the scan read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnalyzeInput {
    #[serde(flatten)]
    file: FileInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scanned_etag: Option<String>,
    /// The analysis the scan's pass made of those bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scanned_analysis: Option<Value>,
}

/// Reads the file from storage and analyzes it: one streaming pass, bounded memory. A scanned
/// file was analysed in the scan's own pass: its analysis is handed on once the blob's version
/// shows it still holds those bytes (one properties request, no second read). Bytes that
/// changed since the scan (an upload URL used again before it expired) are refused: what is
/// approved must be what was scanned.
async fn analyze_file(
    store: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    input: Value,
) -> Result<Value, ActivityError> {
    let AnalyzeInput {
        file,
        scanned_etag,
        scanned_analysis,
    } = serde_json::from_value(input)
        .map_err(|e| ActivityError::new(format!("invalid AnalyzeFile input: {e}")))?;
    // Pinned bytes are a snapshot, which nothing can replace: only a file started before
    // pinning reads a blob that its upload URL may have changed since the scan.
    let scanned_etag = scanned_etag.filter(|_| file.pinned.is_none());
    if let (Some(analysis), true) = (&scanned_analysis, file.pinned.is_some()) {
        tracing::info!(file = %file.id, "analysis taken from the scan's pass");
        return Ok(analysis.clone());
    }
    if let (Some(scanned), Some(analysis)) = (&scanned_etag, scanned_analysis) {
        let properties = store
            .properties_at(file.bytes())
            .await
            .map_err(|e| match e {
                StoreError::NotFound => ActivityError::new(format!("file {} has no blob", file.id)),
                other => ActivityError::new(format!("reading file {}: {other}", file.id)),
            })?;
        if properties.etag.as_str() != scanned {
            return Err(ActivityError::new(format!(
                "{REPLACED_AFTER_SCAN}: the upload was replaced after it was scanned, before its URL expired"
            )));
        }
        tracing::info!(file = %file.id, "analysis taken from the scan's pass");
        return Ok(analysis);
    }
    let blob = store
        .read_blob(file.bytes(), None)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ActivityError::new(format!("file {} has no blob", file.id)),
            other => ActivityError::new(format!("reading file {}: {other}", file.id)),
        })?;
    if let Some(scanned) = scanned_etag {
        if blob.properties.etag.as_str() != scanned {
            return Err(ActivityError::new(format!(
                "{REPLACED_AFTER_SCAN}: the upload was replaced after it was scanned, before its URL expired"
            )));
        }
    }
    let mut analysis: Analysis =
        analyze_stream(blob.body, file.declared_content_type(), clock.now())
            .await
            .map_err(|e| {
                tracing::warn!(file = %file.id, error = %e, "analysis attempt failed");
                ActivityError::new(format!("analyzing file {}: {e}", file.id))
            })?;
    gate::with_archive_facts(store.as_ref(), &file, &mut analysis).await?;
    super::related::record_hash(store.as_ref(), &file, &analysis.sha256)
        .await
        .map_err(|e| ActivityError::new(format!("indexing file {}: {e}", file.id)))?;
    tracing::info!(
        file = %file.id,
        size = analysis.size,
        sha256 = %analysis.sha256,
        detected_type = %analysis.detected_content_type,
        "analysis finished"
    );
    serde_json::to_value(analysis).map_err(|e| ActivityError::new(e.to_string()))
}

/// Every orchestration and activity of File Approver.
pub fn registry(
    store: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    webhook: Option<Webhook>,
    scanner: Option<Scanner>,
    inline_analysis_max_bytes: u64,
) -> Registry {
    let mut registry = Registry::new();
    registry.orchestration(ORCHESTRATION, file_approval);
    let analysing = store.clone();
    let analysis_clock = clock.clone();
    registry.activity(ANALYZE_ACTIVITY, move |input| {
        analyze_file(analysing.clone(), analysis_clock.clone(), input)
    });
    // A small file's analysis runs inside the approval's turn: the approval answers a few
    // milliseconds later, already in review, and the workflow saves the work message's trip
    // (its send, receive and delete) and a turn of its own.
    registry.run_inline_when(ANALYZE_ACTIVITY, move |input| {
        input["size"]
            .as_u64()
            .is_some_and(|size| size <= inline_analysis_max_bytes)
    });
    let scanning = store.clone();
    registry.activity(SCAN_ACTIVITY, move |input| {
        gate::scan_file(scanning.clone(), scanner.clone(), clock.clone(), input)
    });
    let blocking = store.clone();
    registry.activity(BLOCK_ACTIVITY, move |input| {
        gate::block_file(blocking.clone(), input)
    });
    // One pooled client for every delivery; each attempt has the webhook's own timeout.
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let deleting = store;
    registry.activity(DELETE_BYTES_ACTIVITY, move |input| {
        let store = deleting.clone();
        async move {
            let container = input["container"].as_str().unwrap_or_default().to_owned();
            let id = input["id"].as_str().unwrap_or_default().to_owned();
            store
                .delete_blob(&container, &id)
                .await
                .map_err(|e| ActivityError::new(format!("deleting file {id}'s bytes: {e}")))?;
            tracing::info!(file = %id, "a refused file's bytes were deleted");
            Ok(json!({"deleted": true}))
        }
    });
    let webhook = Arc::new(webhook);
    registry.activity(NOTIFY_ACTIVITY, move |input| {
        let http = http.clone();
        let webhook = webhook.clone();
        async move { notify::deliver(&http, webhook.as_ref().as_ref(), input).await }
    });
    registry
}

/// Starts the workflow of an uploaded file. Idempotent: the blob trigger delivers at least once.
pub async fn start_for_file(
    engine: &Engine,
    file: &FileInput,
) -> Result<StartOutcome, EngineError> {
    let input = serde_json::to_value(file)
        .map_err(|e| EngineError::Corrupt(format!("FileApproval input: {e}")))?;
    engine.start(ORCHESTRATION, &file.id, input).await
}

/// What a client sees of an instance, read back from its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub file: FileInput,
    pub stage: Stage,
    /// The decisions on the version under review (withdrawals and earlier versions' decisions
    /// left out; the history keeps them).
    pub approvals: Vec<DecisionEvent>,
    pub analysis: Option<Value>,
    /// What the scanner saw; `None` while the scan is still running.
    pub scan: Option<ScanReport>,
    /// Why the file failed, when it did.
    pub failure: Option<Failure>,
    /// When the stage now awaiting decisions expires, if it has a deadline.
    pub deadline: Option<DateTime<Utc>>,
    /// Every version, oldest first: the upload, then each new version after a change request.
    pub versions: Vec<VersionSummary>,
}

/// The failure codes the workflow ends with; each failure's text starts with its code.
const SIZE_MISMATCH: &str = "SizeMismatch";
const ANALYSIS_FAILED: &str = "AnalysisFailed";
const REPLACED_AFTER_SCAN: &str = "ReplacedAfterScan";

/// Why a file failed, as clients see it: a stable code, and a message safe to show. An
/// analysis failure's own text (a storage error, say) stays in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    fn from_text(text: &str) -> Self {
        match text.split_once(": ") {
            Some((SIZE_MISMATCH, message)) => Failure {
                code: SIZE_MISMATCH,
                message: message.to_owned(),
            },
            Some((REPLACED_AFTER_SCAN, message)) => Failure {
                code: REPLACED_AFTER_SCAN,
                message: message.to_owned(),
            },
            Some((ANALYSIS_FAILED, _)) => Failure {
                code: ANALYSIS_FAILED,
                message: "the analysis kept failing (3 attempts); the log has the details".into(),
            },
            _ => Failure {
                code: "InternalError",
                message: "the workflow failed; the log has the details".into(),
            },
        }
    }
}

/// One step of a file's life, as its history tells it (`GET /api/files/{id}/history`).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `uploaded`, `scanStarted`, `scanAttemptFailed`, `scanned` (its verdict the outcome),
    /// `bytesRemoved` (a blocked file's), `decided` (`approved`, `rejected` or
    /// `changesRequested`), `newVersion`, `withdrawn`, `analysisStarted`,
    /// `analysisAttemptFailed`, `analyzed`, `finished`, `revoked`, `bytesDeleted`, `terminated`
    /// (and `linkIssued` and `downloaded`, added by the application layer).
    pub step: &'static str,
    pub time: DateTime<Utc>,
    pub actor: Option<Principal>,
    pub stage: Option<ApprovalStage>,
    /// `approved`/`rejected` for a decision; the final stage for `finished`; a failure code.
    pub outcome: Option<String>,
    pub comment: Option<String>,
}

impl Step {
    fn at(step: &'static str, time: DateTime<Utc>) -> Self {
        Step {
            step,
            time,
            actor: None,
            stage: None,
            outcome: None,
            comment: None,
        }
    }
}

/// The scan's part of a timeline: the activities it scheduled, followed through history.
#[derive(Default)]
struct ScanSteps {
    scans: Vec<i64>,
    blocks: Vec<i64>,
}

impl ScanSteps {
    /// `Some` when `event` belongs to the scan (with the step it shows, if any).
    fn step(&mut self, event: &HistoryEvent) -> Option<Option<Step>> {
        let at = event.timestamp;
        Some(match &event.kind {
            EventKind::TaskScheduled { name, .. } if name == SCAN_ACTIVITY => {
                self.scans.push(event.event_id);
                // Retries after a failure schedule it again; one step says the scan began.
                (self.scans.len() == 1).then(|| Step::at("scanStarted", at))
            }
            EventKind::TaskScheduled { name, .. } if name == BLOCK_ACTIVITY => {
                self.blocks.push(event.event_id);
                None
            }
            // Defender's result, raised to the workflow.
            EventKind::EventRaised { name, input, .. } if name == SCAN_RESULT_EVENT => Some(Step {
                outcome: gate::report_of(input).map(|r| r.verdict.as_str().to_owned()),
                ..Step::at("scanned", at)
            }),
            // The reason (an unreachable scanner, say) stays in the log.
            EventKind::TaskFailed {
                task_scheduled_id, ..
            } if self.scans.contains(task_scheduled_id) => Some(Step::at("scanAttemptFailed", at)),
            EventKind::TaskCompleted {
                task_scheduled_id,
                result,
            } if self.scans.contains(task_scheduled_id) => Some(Step {
                outcome: gate::report_of(result).map(|r| r.verdict.as_str().to_owned()),
                ..Step::at("scanned", at)
            }),
            EventKind::TaskCompleted {
                task_scheduled_id, ..
            } if self.blocks.contains(task_scheduled_id) => Some(Step::at("bytesRemoved", at)),
            _ => return None,
        })
    }
}

/// Where a timeline shows a file's approval. An approved workflow stays to hear a revocation,
/// so its approval is not the instance's end: the step goes where the download's quorum was
/// reached.
struct ApprovalMark {
    approved: bool,
    /// The approved version: decisions on others never approved the file.
    version: u32,
    quorum: usize,
    approvers: Vec<Principal>,
    shown: bool,
}

impl ApprovalMark {
    fn new(summary: &Summary) -> Self {
        ApprovalMark {
            approved: matches!(summary.stage, Stage::Approved | Stage::Revoked),
            version: summary.file.version,
            quorum: summary.file.rules.quorum(ApprovalStage::Download) as usize,
            approvers: Vec::new(),
            shown: false,
        }
    }

    /// Whether decision `d` completed the approval (true once, at that decision).
    fn reached_by(&mut self, d: &DecisionEvent) -> bool {
        if !self.approved
            || self.shown
            || d.stage != ApprovalStage::Download
            || d.version != self.version
        {
            return false;
        }
        if !d.approved || d.withdrawal {
            return false;
        }
        let who = d.principal();
        if !self.approvers.iter().any(|a| a.same_person(&who)) {
            self.approvers.push(who);
        }
        self.shown = self.approvers.len() >= self.quorum;
        self.shown
    }
}

/// The step an event raised by a person shows, besides decisions: the uploader's turn (a new
/// version, or the file taken back) and a revocation.
fn raised_step(name: &str, input: &Value) -> Option<Step> {
    if name == UPLOADER_TURN_EVENT {
        let turn: UploaderTurnEvent = serde_json::from_value(input.clone()).ok()?;
        let step = if turn.version.is_some() {
            "newVersion"
        } else {
            "withdrawn"
        };
        return Some(Step {
            actor: Some(turn.principal()),
            outcome: turn
                .version
                .as_ref()
                .map(|v| format!("version {}, {} bytes", v.number, v.size)),
            comment: turn.comment.clone(),
            ..Step::at(step, turn.time)
        });
    }
    if name == REVOCATION_EVENT {
        let r: RevocationEvent = serde_json::from_value(input.clone()).ok()?;
        return Some(Step {
            actor: Some(r.principal()),
            comment: Some(r.comment.clone()),
            ..Step::at("revoked", r.revoked_time)
        });
    }
    None
}

/// A file's steps from its instance's history (loaded with it), oldest first.
pub fn timeline(status: &InstanceStatus) -> Result<Vec<Step>, EngineError> {
    let summary = summarize(status)?;
    let mut steps = vec![Step {
        actor: summary.file.uploader.clone(),
        ..Step::at("uploaded", summary.file.created_time)
    }];
    let mut analyze_ids = Vec::new();
    let mut delete_ids = Vec::new();
    let mut scan = ScanSteps::default();
    let mut approval = ApprovalMark::new(&summary);
    for event in status.history.iter().flatten() {
        if let Some(d) = decision_of(event) {
            let reached = approval.reached_by(&d);
            let (step, outcome) = match (d.withdrawal, d.approved, d.changes_requested) {
                (true, _, _) => ("withdrawn", None),
                (false, true, _) => ("decided", Some("approved")),
                (false, false, true) => ("decided", Some("changesRequested")),
                (false, false, false) => ("decided", Some("rejected")),
            };
            steps.push(Step {
                actor: Some(d.principal()),
                stage: Some(d.stage),
                outcome: outcome.map(str::to_owned),
                comment: d.comment.clone(),
                ..Step::at(step, d.decided_time)
            });
            if reached {
                steps.push(Step {
                    outcome: Some(Stage::Approved.as_str().to_owned()),
                    ..Step::at("finished", event.timestamp)
                });
            }
            continue;
        }
        if let Some(step) = scan.step(event) {
            steps.extend(step);
            continue;
        }
        match &event.kind {
            EventKind::EventRaised { name, input, .. } => {
                steps.extend(raised_step(name, input));
            }
            EventKind::TaskScheduled { name, .. } if name == ANALYZE_ACTIVITY => {
                analyze_ids.push(event.event_id);
                steps.push(Step::at("analysisStarted", event.timestamp));
            }
            EventKind::TaskScheduled { name, .. } if name == DELETE_BYTES_ACTIVITY => {
                delete_ids.push(event.event_id);
            }
            EventKind::TaskCompleted {
                task_scheduled_id, ..
            } if delete_ids.contains(task_scheduled_id) => {
                steps.push(Step::at("bytesDeleted", event.timestamp));
            }
            EventKind::TaskFailed {
                task_scheduled_id, ..
            } if analyze_ids.contains(task_scheduled_id) => {
                // The reason (a storage error, say) stays in the log.
                steps.push(Step::at("analysisAttemptFailed", event.timestamp));
            }
            EventKind::TaskCompleted {
                task_scheduled_id, ..
            } if analyze_ids.contains(task_scheduled_id) => {
                steps.push(Step::at("analyzed", event.timestamp));
            }
            // Shown already, for a file approved before workflows stayed for revocations.
            EventKind::ExecutionCompleted { .. }
                if approval.shown && summary.stage == Stage::Approved => {}
            EventKind::ExecutionCompleted { .. } => {
                let outcome = match &summary.failure {
                    Some(failure) => format!("{}: {}", summary.stage, failure.code),
                    None => summary.stage.as_str().to_owned(),
                };
                steps.push(Step {
                    outcome: Some(outcome),
                    ..Step::at("finished", event.timestamp)
                });
            }
            EventKind::ExecutionTerminated { reason } => {
                steps.push(Step {
                    outcome: Some(reason.clone()),
                    ..Step::at("terminated", event.timestamp)
                });
            }
            _ => {}
        }
    }
    Ok(steps)
}

/// The analysis the events record, if one completed, with the time of the turn that took it.
fn analysis_in(events: &[HistoryEvent]) -> (Option<Value>, Option<DateTime<Utc>>) {
    let mut analyze_ids = Vec::new();
    let mut found = (None, None);
    for event in events {
        match &event.kind {
            EventKind::TaskScheduled { name, .. } if name == ANALYZE_ACTIVITY => {
                analyze_ids.push(event.event_id);
            }
            EventKind::TaskCompleted {
                task_scheduled_id,
                result,
            } if analyze_ids.contains(task_scheduled_id) => {
                found = (Some(result.clone()), Some(event.timestamp));
            }
            _ => {}
        }
    }
    found
}

/// Derives stage, decisions and analysis from an instance status loaded with its history.
/// `file` is the version under review (the upload, or the latest new version); `approvals`
/// are the decisions on it; `versions` every version, oldest first.
pub fn summarize(status: &InstanceStatus) -> Result<Summary, EngineError> {
    let first: FileInput = serde_json::from_value(status.input.clone())
        .map_err(|e| EngineError::Corrupt(format!("instance {} input: {e}", status.instance_id)))?;
    // Before the first turn wrote a custom status the file is waiting to be picked up.
    let stage = stage_of(&status.custom_status).unwrap_or(Stage::Uploaded);
    let all: &[HistoryEvent] = status.history.as_deref().unwrap_or(&[]);
    let new = versions::new_versions(all);
    // Each version's events run from its arrival to the next one's.
    let mut bounds: Vec<usize> = vec![0];
    bounds.extend(new.iter().map(|(at, _, _)| at + 1));
    bounds.push(all.len());
    let mut versions = vec![VersionSummary {
        number: 1,
        size: first.size,
        content_type: first.content_type.clone(),
        uploaded_time: first.created_time,
        analysis: analysis_in(&all[bounds[0]..bounds[1]]).0,
        blob: BlobRef {
            container: first.container().to_owned(),
            name: first.blob_name().to_owned(),
        },
        pinned: first.pinned.clone(),
    }];
    for (i, (_, turn, v)) in new.iter().enumerate() {
        versions.push(VersionSummary {
            number: v.number,
            size: v.size,
            content_type: v.content_type.clone(),
            uploaded_time: turn.time,
            analysis: analysis_in(&all[bounds[i + 1]..bounds[i + 2]]).0,
            blob: v.blob.clone(),
            pinned: Some(v.pinned.clone()),
        });
    }
    let (file, from) = match new.last() {
        Some((at, _, v)) => (first.with_version(v), at + 1),
        None => (first, 0),
    };
    let current = &all[from..];
    let approvals: Vec<DecisionEvent> = decisions(all)
        .filter(|d| !d.withdrawal && d.version == file.version)
        .collect();
    let (analysis, download_started) = analysis_in(current);
    // A stage's deadline is its timeout from the turn that began it (what `Waiting` computes):
    // the version's arrival (the first turn, or its event) or its scan's end for the upload
    // stage, the turn that took the analysis's result for the download stage, the change
    // request's turn for the uploader's.
    let arrived = match from {
        0 => all.first().map(|e| e.timestamp),
        at => all.get(at - 1).map(|e| e.timestamp),
    };
    let gate::ScanRead {
        report: scan,
        finished: upload_started,
    } = gate::read_scan(&file, stage, current.iter());
    let changes_requested = current
        .iter()
        .rev()
        .find(|e| decision_of(e).is_some_and(|d| d.changes_requested))
        .map(|e| e.timestamp);
    let stage_started = match stage {
        Stage::AwaitingUploadApproval => upload_started.or(arrived),
        Stage::AwaitingDownloadApproval => download_started,
        Stage::ChangesRequested => changes_requested,
        _ => None,
    };
    let deadline = stage_started.and_then(|start| {
        let timeout = Duration::try_seconds(i64::try_from(file.approval_timeout_secs?).ok()?)?;
        start.checked_add_signed(timeout)
    });
    Ok(Summary {
        file,
        stage,
        approvals,
        analysis,
        scan,
        failure: status
            .failure
            .as_deref()
            .or_else(|| status.custom_status.get("failure")?.as_str())
            .map(Failure::from_text),
        deadline,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use crate::workflow::ApprovalRules;

    use super::*;
    use crate::engine::{replay, RuntimeStatus, TurnResult};

    const FILE_ID: &str = "3f1c0e1e-7d5c-4b8e-9a39-0c5d2b1f6a11";

    /// The workflow's first turn for a file uploaded with this approval timeout.
    fn first_turn(approval_timeout_secs: Option<u64>) -> TurnResult {
        let mut registry = Registry::new();
        registry.orchestration(ORCHESTRATION, file_approval);
        let orchestration = registry.get_orchestration(ORCHESTRATION).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
        let file = FileInput {
            approval_timeout_secs,
            ..test_file(now, None)
        };
        let started = EventKind::ExecutionStarted {
            name: ORCHESTRATION.into(),
            input: serde_json::to_value(file).unwrap(),
        };
        replay(orchestration, FILE_ID, &[], vec![started], now)
    }

    #[test]
    fn failures_show_a_stable_code_and_never_a_storage_error() {
        let mismatch =
            Failure::from_text("SizeMismatch: the upload holds 3 bytes but 4 were declared");
        assert_eq!(mismatch.code, "SizeMismatch");
        assert_eq!(
            mismatch.message,
            "the upload holds 3 bytes but 4 were declared"
        );
        let analysis = Failure::from_text(
            "AnalysisFailed: analysis failed: reading file x: https://acct.blob.core.windows.net/… 503",
        );
        assert_eq!(analysis.code, "AnalysisFailed");
        assert!(!analysis.message.contains("acct"), "{}", analysis.message);
        assert_eq!(
            Failure::from_text("invalid FileApproval input: …").code,
            "InternalError"
        );
    }

    /// A 3-byte file uploaded at `now`, scanned under `scan`.
    fn test_file(now: DateTime<Utc>, scan: Option<crate::workflow::ScanRules>) -> FileInput {
        FileInput {
            id: FILE_ID.into(),
            name: "report.txt".into(),
            content_type: "text/plain".into(),
            content_type_declared: true,
            size: 3,
            created_time: now,
            approval_timeout_secs: None,
            direct: None,
            uploader: None,
            rules: ApprovalRules::default(),
            notify: false,
            reminder_before_secs: None,
            retention_secs: None,
            scan,
            pinned: None,
            blob: None,
            version: 1,
        }
    }

    fn scanned_file(rules: crate::workflow::ScanRules) -> Value {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
        serde_json::to_value(test_file(now, Some(rules))).unwrap()
    }

    /// The scheduled activity of `name` among `events`.
    fn scheduled(events: &[HistoryEvent], name: &str) -> i64 {
        events
            .iter()
            .find(|e| matches!(&e.kind, EventKind::TaskScheduled { name: n, .. } if n == name))
            .map(|e| e.event_id)
            .unwrap_or_else(|| panic!("no {name} scheduled in {events:?}"))
    }

    /// A scanner that fails until the deadline: the file waits in `Scanning` on a timer, then
    /// is unscannable and (by default) blocked, and `summarize` tells the same reason.
    #[test]
    fn a_scan_that_keeps_failing_blocks_the_file_at_its_deadline() {
        let mut registry = Registry::new();
        registry.orchestration(ORCHESTRATION, file_approval);
        let orchestration = registry.get_orchestration(ORCHESTRATION).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
        let rules = crate::workflow::ScanRules {
            via: crate::workflow::ScanVia::App,
            timeout_secs: 60,
            unscannable: crate::domain::UnscannablePolicy::Block,
            quarantine: false,
        };
        let input = scanned_file(rules);
        let mut history: Vec<HistoryEvent> = Vec::new();
        let turn = |history: &mut Vec<HistoryEvent>, inbound: Vec<EventKind>, at| {
            let result = replay(orchestration, FILE_ID, history, inbound, at);
            history.extend(result.new_events.clone());
            result
        };
        let first = turn(
            &mut history,
            vec![EventKind::ExecutionStarted {
                name: ORCHESTRATION.into(),
                input: input.clone(),
            }],
            t0,
        );
        assert_eq!(first.custom_status, json!("Scanning"));
        let scan = scheduled(&history, SCAN_ACTIVITY);

        // The first failure, well inside the deadline: a timer five seconds on.
        let second = turn(
            &mut history,
            vec![EventKind::TaskFailed {
                task_scheduled_id: scan,
                reason: "cannot reach clamd at tcp://127.0.0.1:3310: refused".into(),
            }],
            t0 + Duration::seconds(1),
        );
        assert_eq!(second.custom_status, json!("Scanning"));
        assert_eq!(second.open_timers.len(), 1);
        let timer = second.open_timers[0];

        // It fires; the second attempt fails past the deadline: no verdict, blocked.
        turn(
            &mut history,
            vec![EventKind::TimerFired {
                timer_id: timer.timer_id,
                fire_at: timer.fire_at,
            }],
            timer.fire_at,
        );
        let retried = history
            .iter()
            .rev()
            .find(|e| matches!(&e.kind, EventKind::TaskScheduled { name, .. } if name == SCAN_ACTIVITY))
            .map(|e| e.event_id)
            .unwrap();
        assert_ne!(retried, scan);
        let late = t0 + Duration::seconds(61);
        turn(
            &mut history,
            vec![EventKind::TaskFailed {
                task_scheduled_id: retried,
                reason: "cannot reach clamd at tcp://127.0.0.1:3310: refused".into(),
            }],
            late,
        );
        let block = scheduled(&history, BLOCK_ACTIVITY);
        let last = turn(
            &mut history,
            vec![EventKind::TaskCompleted {
                task_scheduled_id: block,
                result: json!({"removed": true, "quarantined": false}),
            }],
            late,
        );
        assert_eq!(last.runtime_status, RuntimeStatus::Completed);
        assert_eq!(last.custom_status, json!("Blocked"));

        let status = InstanceStatus {
            instance_id: FILE_ID.into(),
            name: ORCHESTRATION.into(),
            runtime_status: last.runtime_status,
            custom_status: last.custom_status.clone(),
            input,
            output: last.output.clone(),
            failure: None,
            created_time: t0,
            last_updated_time: late,
            history: Some(history),
        };
        let summary = summarize(&status).unwrap();
        assert_eq!(summary.stage, Stage::Blocked);
        let report = summary.scan.unwrap();
        assert_eq!(report.verdict, crate::domain::ScanVerdict::Unscannable);
        let reason = report.reason.unwrap();
        assert!(
            reason.starts_with("no verdict within 1 min: the scanner failed 2 times"),
            "{reason}"
        );
        assert!(reason.contains("cannot reach clamd"), "{reason}");
        let steps: Vec<&str> = timeline(&status).unwrap().iter().map(|s| s.step).collect();
        assert_eq!(
            steps,
            [
                "uploaded",
                "scanStarted",
                "scanAttemptFailed",
                "scanAttemptFailed",
                "bytesRemoved",
                "finished"
            ]
        );
    }

    #[test]
    fn an_approval_timeout_sets_a_deadline_timer() {
        let turn = first_turn(Some(3600));
        assert_eq!(turn.runtime_status, RuntimeStatus::Running);
        assert_eq!(turn.open_timers.len(), 1);
    }

    #[test]
    fn an_approval_timeout_beyond_the_calendar_waits_without_a_deadline() {
        let turn = first_turn(Some(u64::MAX));
        assert_eq!(turn.runtime_status, RuntimeStatus::Running, "{turn:?}");
        assert!(turn.open_timers.is_empty());
    }
}
