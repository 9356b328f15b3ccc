//! The content-safety gate: the workflow's `Scanning` step, the `ScanFile` activity that reads
//! a file's bytes into the configured scanner, and the `BlockFile` activity that deletes (or
//! quarantines) a blocked file's bytes.
//!
//! The step retries a scanner that fails (unreachable, hanging, answering nonsense) with
//! durable timers, doubling from five seconds up to five minutes, until the file's scan
//! deadline; only then does the file count as unscannable, and the deployment's policy decides
//! whether that blocks it. No path passes a file on to review without a scanner's verdict or an
//! explicit unscannable reason.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

use super::analysis::{analyze_stream, Analysis};
use super::archive;
use super::input::{FileInput, ScanRules, ScanVia};
use crate::clock::Clock;
use crate::domain::{ScanReport, ScanVerdict, ScannerInfo, Stage, UnscannablePolicy};
use crate::engine::{
    ActivityError, EventKind, HistoryEvent, OrchestrationContext, OrchestrationError, RetryPolicy,
};
use crate::scan::Scanner;
use crate::store::{BlobAt, BoxError, ByteStream, Storage, StoreError, QUARANTINE_CONTAINER};

pub const SCAN_ACTIVITY: &str = "ScanFile";
pub const BLOCK_ACTIVITY: &str = "BlockFile";
/// The event that brings Microsoft Defender for Storage's verdict to a file in `Scanning`.
pub const SCAN_RESULT_EVENT: &str = "ScanResult";

/// What the scan activity returns: the report, the version of the bytes it read (the blob's
/// ETag), and the analysis of those same bytes, made in the same pass. The analysis step after
/// the upload approval hands that analysis on once it has checked that the blob still holds
/// those bytes, so a scanned file is read from storage once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanOutcome {
    pub report: ScanReport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Value>,
}

impl ScanOutcome {
    /// Whether the file stops here under `rules`.
    pub fn blocks(&self, rules: &ScanRules) -> bool {
        match self.report.verdict {
            ScanVerdict::Malicious => true,
            ScanVerdict::Unscannable => rules.unscannable == UnscannablePolicy::Block,
            ScanVerdict::Clean | ScanVerdict::NotScanned => false,
        }
    }
}

/// One attempt per activity call: the step itself waits between attempts, on durable timers,
/// so that the deadline (not an attempt count) decides when to stop.
fn one_attempt() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1,
        first_interval: Duration::seconds(5),
        backoff_coefficient: 2.0,
        max_interval: Duration::seconds(5),
    }
}

/// The pause before attempt `n + 1`: 5 s, doubling, at most 5 min.
fn pause(failures: u32) -> Duration {
    let seconds = 5i64.saturating_mul(1i64 << failures.saturating_sub(1).min(6));
    Duration::seconds(seconds.min(300))
}

/// When a scan that begins at `start` must have its verdict.
pub(super) fn deadline_of(rules: &ScanRules, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
    i64::try_from(rules.timeout_secs)
        .ok()
        .and_then(Duration::try_seconds)
        .and_then(|t| start.checked_add_signed(t))
}

/// Scans the file until a scanner gives a verdict or the deadline passes.
pub(super) async fn scan(
    ctx: &OrchestrationContext,
    rules: &ScanRules,
    file: &FileInput,
) -> Result<ScanOutcome, OrchestrationError> {
    let deadline = deadline_of(rules, ctx.current_time());
    if rules.via == ScanVia::Defender {
        return defender(ctx, rules, deadline).await;
    }
    let mut failures: u32 = 0;
    loop {
        let attempt: Result<ScanOutcome, OrchestrationError> =
            ctx.call_activity(SCAN_ACTIVITY, file, one_attempt()).await;
        let error = match attempt {
            Ok(outcome) => return Ok(outcome),
            Err(OrchestrationError::TaskFailed { message, .. }) => message,
            Err(other) => return Err(other),
        };
        failures += 1;
        let now = ctx.current_time();
        let next = now + pause(failures);
        if !ctx.is_replaying() {
            tracing::warn!(file = %ctx.instance_id(), failures, error = %error, "the scan gave no verdict; trying again");
        }
        match deadline {
            Some(deadline) if next < deadline => ctx.create_timer(next).await,
            _ => {
                return Ok(ScanOutcome {
                    report: gave_up(rules, failures, &error, now),
                    etag: None,
                    analysis: None,
                })
            }
        }
    }
}

/// Waits for Defender for Storage's verdict, which the `scan_result` function raises once it
/// has matched it to this file's bytes. None before the deadline (Defender skips blobs over
/// its size limit, and some under load): unscannable.
async fn defender(
    ctx: &OrchestrationContext,
    rules: &ScanRules,
    deadline: Option<DateTime<Utc>>,
) -> Result<ScanOutcome, OrchestrationError> {
    let result: Option<ScanOutcome> = match deadline {
        Some(deadline) => {
            ctx.wait_for_event_until(SCAN_RESULT_EVENT, deadline)
                .await?
        }
        None => Some(ctx.wait_for_event(SCAN_RESULT_EVENT).await?),
    };
    Ok(result.unwrap_or_else(|| ScanOutcome {
        report: defender_silent(rules, ctx.current_time()),
        etag: None,
        analysis: None,
    }))
}

/// The report of a Defender scan whose result never came.
pub(super) fn defender_silent(rules: &ScanRules, at: DateTime<Utc>) -> ScanReport {
    ScanReport::unscannable(
        Some(defender_info()),
        format!(
            "no result from Microsoft Defender for Storage within {} (it does not scan blobs \
             over its size limit, and may skip some under load)",
            humane(rules.timeout_secs)
        ),
        at,
    )
}

pub(super) fn defender_info() -> ScannerInfo {
    ScannerInfo {
        name: "defender".into(),
        engine: None,
        signatures: None,
    }
}

/// The Event Grid type of Defender for Storage's malware-scanning results.
pub const DEFENDER_RESULT_TYPE: &str = "Microsoft.Security.MalwareScanningResult";

/// A Defender for Storage result, read from its event (either Event Grid schema).
#[derive(Debug, Clone, PartialEq)]
pub struct DefenderResult {
    /// The blob's URL, as Defender names it.
    pub blob_uri: String,
    /// The version of the bytes Defender scanned.
    pub etag: String,
    /// Unique per scan: the result's idempotency key.
    pub correlation_id: String,
    pub report: ScanReport,
}

/// Reads a `Microsoft.Security.MalwareScanningResult` event (`data`: `blobUri`, `eTag`,
/// `correlationId`, `scanResultType`, `scanResultDetails.malwareNamesFound`,
/// `scanFinishedTimeUtc`), in the Event Grid schema (`eventType`) or as a CloudEvent
/// (`type`). Errors say why an event is not one.
pub fn defender_result(event: &Value) -> Result<DefenderResult, &'static str> {
    let kind = event
        .get("eventType")
        .and_then(Value::as_str)
        .or_else(|| event.get("type").and_then(Value::as_str));
    if kind != Some(DEFENDER_RESULT_TYPE) {
        return Err("not a Microsoft.Security.MalwareScanningResult event");
    }
    let data = event.get("data").ok_or("an event without data")?;
    let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
    let blob_uri = text("blobUri").ok_or("a result without blobUri")?;
    let etag = text("eTag").ok_or("a result without eTag")?;
    let correlation_id = text("correlationId")
        .or_else(|| event.get("id").and_then(Value::as_str).map(str::to_owned))
        .ok_or("a result without correlationId")?;
    let at = text("scanFinishedTimeUtc")
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc));
    let threats: Vec<String> = data
        .pointer("/scanResultDetails/malwareNamesFound")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(|n| n.chars().take(200).collect())
                .take(50)
                .collect()
        })
        .unwrap_or_default();
    let result_type = text("scanResultType").ok_or("a result without scanResultType")?;
    let unscannable = |reason: String| ScanReport {
        verdict: ScanVerdict::Unscannable,
        scanner: Some(defender_info()),
        threats: Vec::new(),
        scanned_time: at,
        reason: Some(reason),
    };
    let report = match result_type.as_str() {
        "No threats found" => ScanReport {
            verdict: ScanVerdict::Clean,
            scanner: Some(defender_info()),
            threats: Vec::new(),
            scanned_time: at,
            reason: None,
        },
        "Malicious" => ScanReport {
            verdict: ScanVerdict::Malicious,
            scanner: Some(defender_info()),
            threats: if threats.is_empty() {
                vec!["(Defender named no threat)".into()]
            } else {
                threats
            },
            scanned_time: at,
            reason: None,
        },
        "Not Scanned" => unscannable(
            "Microsoft Defender for Storage did not scan it (Not Scanned: over its size limit, \
             or skipped)"
                .into(),
        ),
        "Error" => unscannable("Microsoft Defender for Storage failed to scan it (Error)".into()),
        _ => return Err("an unknown scanResultType"),
    };
    Ok(DefenderResult {
        blob_uri,
        etag,
        correlation_id,
        report,
    })
}

/// What a file's history says of its scan.
pub(super) struct ScanRead {
    /// The scan's report; `None` while it runs.
    pub report: Option<ScanReport>,
    /// When the scan step ended (the upload stage's start).
    pub finished: Option<DateTime<Utc>>,
}

/// Reads the scan from a file's history: the scan activity's report, Defender's raised result,
/// or — for a step that ended without a verdict — the report the workflow decided on, rebuilt
/// from the same events (the last failed attempt's turn, or Defender's deadline timer).
pub(super) fn read_scan<'h>(
    file: &FileInput,
    stage: Stage,
    history: impl Iterator<Item = &'h HistoryEvent>,
) -> ScanRead {
    let Some(rules) = file.scan else {
        return ScanRead {
            report: Some(ScanReport::not_scanned()),
            finished: None,
        };
    };
    let mut history = history.peekable();
    // A Defender scan's deadline timer: it fires without a result when none came.
    let deadline = history
        .peek()
        .and_then(|first| deadline_of(&rules, first.timestamp))
        .filter(|_| rules.via == ScanVia::Defender);
    let (mut scans, mut failures) = (Vec::new(), 0u32);
    let mut last_error: Option<(String, DateTime<Utc>)> = None;
    let mut timed_out = None;
    let mut read = ScanRead {
        report: None,
        finished: None,
    };
    for event in history {
        let at = event.timestamp;
        match &event.kind {
            // Only the first result is the verdict: a later one came after the step ended.
            EventKind::EventRaised { name, input, .. }
                if name == SCAN_RESULT_EVENT && read.report.is_none() =>
            {
                read.report = report_of(input);
                read.finished = Some(at);
            }
            EventKind::TimerFired { fire_at, .. }
                if deadline == Some(*fire_at) && timed_out.is_none() =>
            {
                timed_out = Some(at);
                read.finished.get_or_insert(at);
            }
            EventKind::TaskScheduled { name, .. } if name == SCAN_ACTIVITY => {
                scans.push(event.event_id);
            }
            EventKind::TaskCompleted {
                task_scheduled_id,
                result,
            } if scans.contains(task_scheduled_id) => {
                read.report = report_of(result);
                read.finished = Some(at);
            }
            EventKind::TaskFailed {
                task_scheduled_id,
                reason,
            } if scans.contains(task_scheduled_id) => {
                failures += 1;
                last_error = Some((reason.clone(), at));
                read.finished = Some(at);
            }
            _ => {}
        }
    }
    let over = !matches!(stage, Stage::Uploaded | Stage::Scanning);
    if read.report.is_none() && over {
        read.report = match rules.via {
            ScanVia::Defender => timed_out.map(|at| defender_silent(&rules, at)),
            ScanVia::App => last_error.map(|(error, at)| gave_up(&rules, failures, &error, at)),
        };
    }
    read
}

/// The report of a scan step that reached its deadline without a verdict: what the workflow
/// decides on, and what `summarize` shows (rebuilt from the same history).
pub(super) fn gave_up(
    rules: &ScanRules,
    failures: u32,
    last_error: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> ScanReport {
    let last: String = last_error.chars().take(300).collect();
    ScanReport::unscannable(
        None,
        format!(
            "no verdict within {}: the scanner failed {failures} time{} (last: {last})",
            humane(rules.timeout_secs),
            if failures == 1 { "" } else { "s" }
        ),
        at,
    )
}

fn humane(seconds: u64) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Deletes a blocked file's bytes, or moves them to quarantine; retried a few times, and a
/// failure is logged, not fatal: a blocked file is never offered for download either way.
pub(super) async fn block(ctx: &OrchestrationContext, rules: &ScanRules, file: &FileInput) {
    let target = json!({
        "container": file.container(),
        "id": file.id,
        "snapshot": file.pinned,
        "quarantine": rules.quarantine,
    });
    let retry = RetryPolicy {
        max_attempts: 5,
        first_interval: Duration::seconds(5),
        backoff_coefficient: 2.0,
        max_interval: Duration::seconds(60),
    };
    let done: Result<Value, OrchestrationError> =
        ctx.call_activity(BLOCK_ACTIVITY, &target, retry).await;
    if let Err(e) = done {
        if !ctx.is_replaying() {
            tracing::error!(file = %ctx.instance_id(), error = %e, "could not remove a blocked file's bytes");
        }
    }
}

/// How many chunks each reader of the shared pass may fall behind the other.
const TEE_DEPTH: usize = 4;

/// The scan activity: one pass over the blob, each chunk to the scanner and to the analysis at
/// once (the slower of the two sets the pace; memory stays at a few chunks).
pub(super) async fn scan_file(
    store: Arc<dyn Storage>,
    scanner: Option<Scanner>,
    clock: Arc<dyn Clock>,
    input: Value,
) -> Result<Value, ActivityError> {
    let file: FileInput = serde_json::from_value(input)
        .map_err(|e| ActivityError::new(format!("invalid ScanFile input: {e}")))?;
    let Some(scanner) = scanner else {
        // The setting was removed while the file waited: no verdict can come from here.
        return Err(ActivityError::new("no scanner is configured"));
    };
    let blob = store
        .read_blob(file.bytes(), None)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ActivityError::new(format!("file {} has no blob", file.id)),
            other => ActivityError::new(format!("reading file {}: {other}", file.id)),
        })?;
    let etag = blob.properties.etag.as_str().to_owned();
    let now = clock.now();
    let (to_scanner, for_scanner) = mpsc::channel::<Result<Bytes, String>>(TEE_DEPTH);
    let (to_analysis, for_analysis) = mpsc::channel::<Result<Bytes, BoxError>>(TEE_DEPTH);
    let pump = pump(blob.body, to_scanner, to_analysis);
    let scanning = scanner.scan(for_scanner, now);
    let analysing = analyze_stream(Box::pin(for_analysis), file.declared_content_type(), now);
    let ((), scanned, analysed) = futures::join!(pump, scanning, analysing);
    let report = scanned.map_err(|e| {
        tracing::warn!(file = %file.id, scanner = scanner.name(), error = %e, "scan attempt failed");
        ActivityError::new(e.to_string())
    })?;
    let mut analysis = analysed.map_err(|e| {
        tracing::warn!(file = %file.id, error = %e, "the analysis beside the scan failed");
        ActivityError::new(format!("analyzing file {}: {e}", file.id))
    })?;
    with_archive_facts(store.as_ref(), &file, &mut analysis).await?;
    super::related::record_hash(store.as_ref(), &file, &analysis.sha256)
        .await
        .map_err(|e| ActivityError::new(format!("indexing file {}: {e}", file.id)))?;
    tracing::info!(
        file = %file.id,
        verdict = %report.verdict,
        threats = ?report.threats,
        reason = report.reason.as_deref().unwrap_or(""),
        "scan finished"
    );
    let analysis = serde_json::to_value(analysis).map_err(|e| ActivityError::new(e.to_string()))?;
    serde_json::to_value(ScanOutcome {
        report,
        etag: Some(etag),
        analysis: Some(analysis),
    })
    .map_err(|e| ActivityError::new(e.to_string()))
}

/// Adds what a zip's directory lists to its analysis (the file's end, read by range).
pub(super) async fn with_archive_facts(
    store: &dyn Storage,
    file: &FileInput,
    analysis: &mut Analysis,
) -> Result<(), ActivityError> {
    analysis.archive = archive::facts_for(
        store,
        file.bytes(),
        analysis.size,
        &analysis.detected_content_type,
    )
    .await
    .map_err(|e| {
        ActivityError::new(format!("reading file {}'s archive directory: {e}", file.id))
    })?;
    Ok(())
}

/// Reads `body` once, handing every chunk to both readers. A reader that stops (clamd closes
/// the stream once it passes its size limit) is no longer fed; the other still is. A read
/// error goes to both.
async fn pump(
    mut body: ByteStream,
    mut to_scanner: mpsc::Sender<Result<Bytes, String>>,
    mut to_analysis: mpsc::Sender<Result<Bytes, BoxError>>,
) {
    let mut scanner_open = true;
    let mut analysis_open = true;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => {
                if scanner_open {
                    scanner_open = to_scanner.send(Ok(bytes.clone())).await.is_ok();
                }
                if analysis_open {
                    analysis_open = to_analysis.send(Ok(bytes)).await.is_ok();
                }
                if !scanner_open && !analysis_open {
                    return;
                }
            }
            Err(e) => {
                let text = e.to_string();
                let _ = to_scanner.send(Err(text)).await;
                let _ = to_analysis.send(Err(e)).await;
                return;
            }
        }
    }
}

/// The block activity: the bytes go to quarantine (a streamed copy, then a delete) or away.
pub(super) async fn block_file(
    store: Arc<dyn Storage>,
    input: Value,
) -> Result<Value, ActivityError> {
    let container = input["container"].as_str().unwrap_or_default().to_owned();
    let id = input["id"].as_str().unwrap_or_default().to_owned();
    let snapshot = input["snapshot"].as_str();
    let quarantine = input["quarantine"].as_bool().unwrap_or(false);
    if quarantine {
        // What was scanned goes to quarantine: the pinned bytes, not what the blob holds now.
        let scanned = BlobAt {
            container: &container,
            name: &id,
            snapshot,
        };
        match store.read_blob(scanned, None).await {
            Ok(blob) => {
                let options = crate::store::PutBlobOptions {
                    content_type: blob.properties.content_type.clone(),
                    max_bytes: None,
                };
                store
                    .put_blob(QUARANTINE_CONTAINER, &id, blob.body, &options)
                    .await
                    .map_err(|e| ActivityError::new(format!("quarantining file {id}: {e}")))?;
            }
            // Already moved by an earlier attempt whose answer was lost.
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(ActivityError::new(format!("reading file {id}: {e}"))),
        }
    }
    store
        .delete_blob(&container, &id)
        .await
        .map_err(|e| ActivityError::new(format!("deleting file {id}'s bytes: {e}")))?;
    tracing::warn!(file = %id, quarantined = quarantine, "a blocked file's bytes were removed");
    Ok(json!({ "removed": true, "quarantined": quarantine }))
}

/// The report a completed scan activity recorded.
pub(super) fn report_of(outcome: &Value) -> Option<ScanReport> {
    serde_json::from_value::<ScanOutcome>(outcome.clone())
        .ok()
        .map(|o| o.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_five_seconds_to_five_minutes() {
        let pauses: Vec<i64> = (1..=9).map(|n| pause(n).num_seconds()).collect();
        assert_eq!(pauses, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn malware_always_blocks_and_the_unscannable_follow_the_policy() {
        let rules = |unscannable| ScanRules {
            via: ScanVia::App,
            timeout_secs: 60,
            unscannable,
            quarantine: false,
        };
        let outcome = |verdict| ScanOutcome {
            report: ScanReport {
                verdict,
                ..ScanReport::not_scanned()
            },
            etag: None,
            analysis: None,
        };
        let block = rules(UnscannablePolicy::Block);
        let review = rules(UnscannablePolicy::Review);
        assert!(outcome(ScanVerdict::Malicious).blocks(&review));
        assert!(outcome(ScanVerdict::Unscannable).blocks(&block));
        assert!(!outcome(ScanVerdict::Unscannable).blocks(&review));
        assert!(!outcome(ScanVerdict::Clean).blocks(&block));
    }

    fn event(result_type: &str, names: &[&str]) -> Value {
        serde_json::json!({
            "id": "e1",
            "eventType": DEFENDER_RESULT_TYPE,
            "data": {
                "correlationId": "c-1",
                "blobUri": "https://acct.blob.core.windows.net/files/3f1c0e1e-7d5c-4b8e-9a39-0c5d2b1f6a11",
                "eTag": "0x8DC1234567890AB",
                "scanFinishedTimeUtc": "2026-12-06T10:00:00.1234567Z",
                "scanResultType": result_type,
                "scanResultDetails": { "malwareNamesFound": names, "sha256": "ab" }
            }
        })
    }

    #[test]
    fn defender_results_map_to_verdicts() {
        let clean = defender_result(&event("No threats found", &[])).unwrap();
        assert_eq!(clean.report.verdict, ScanVerdict::Clean);
        assert_eq!(clean.report.scanner.unwrap().name, "defender");
        assert_eq!(clean.etag, "0x8DC1234567890AB");
        let bad = defender_result(&event("Malicious", &["EICAR-Test-File"])).unwrap();
        assert_eq!(bad.report.verdict, ScanVerdict::Malicious);
        assert_eq!(bad.report.threats, vec!["EICAR-Test-File".to_owned()]);
        for kind in ["Not Scanned", "Error"] {
            let r = defender_result(&event(kind, &[])).unwrap();
            assert_eq!(r.report.verdict, ScanVerdict::Unscannable, "{kind}");
            assert!(r.report.reason.unwrap().contains(kind), "{kind}");
        }
        assert!(defender_result(&event("Maybe", &[])).is_err());
        let mut cloud = event("No threats found", &[]);
        let kind = cloud.as_object_mut().unwrap().remove("eventType").unwrap();
        cloud["type"] = kind;
        assert!(defender_result(&cloud).is_ok());
        assert!(defender_result(
            &serde_json::json!({"eventType": "Microsoft.Storage.BlobCreated"})
        )
        .is_err());
    }
}
