//! Telling people: a CloudEvents 1.0 event POSTed to `FILE_APPROVER_WEBHOOK_URL` when a file
//! needs someone (awaiting upload or download approval, a reminder before a deadline) and when
//! it ends (approved, rejected, expired, failed, withdrawn, blocked by the malware scan). Once
//! a file is scanned, every event carries the scan's report (`data.scan`).
//!
//! Delivery is the durable activity [`NOTIFY_ACTIVITY`], retried with backoff for hours. The
//! workflow never waits on it: a notification runs beside the review (see `Notifier` in
//! `file_approval`), and only the workflow's very end waits for what is still in flight, after
//! the final stage is already set. A receiver that is down or hangs therefore never blocks,
//! slows or fails a file; each event is delivered at least once, under one id that stays the
//! same across retries (receivers de-duplicate on it).
//!
//! Each request carries `X-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` keyed with
//! `FILE_APPROVER_WEBHOOK_SECRET`, so receivers can tell it came from this app.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

pub use crate::config::Webhook;

use super::input::FileInput;
use crate::domain::{ScanReport, Stage};
use crate::engine::{ActivityError, RetryPolicy};

pub const NOTIFY_ACTIVITY: &str = "Notify";
pub const SIGNATURE_HEADER: &str = "X-Signature-256";

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    AwaitingUploadApproval,
    AwaitingDownloadApproval,
    /// A stage's deadline is near and it still awaits decisions.
    Reminder,
    /// A reviewer asked for changes: the uploader's turn.
    ChangesRequested,
    /// The uploader sent a new version; its review starts again.
    NewVersion,
    /// The file ended; its stage says how.
    Finished(Stage),
}

impl EventType {
    pub fn name(self) -> &'static str {
        match self {
            EventType::AwaitingUploadApproval => "FileApprover.AwaitingUploadApproval",
            EventType::AwaitingDownloadApproval => "FileApprover.AwaitingDownloadApproval",
            EventType::Reminder => "FileApprover.Reminder",
            EventType::ChangesRequested => "FileApprover.ChangesRequested",
            EventType::NewVersion => "FileApprover.NewVersion",
            EventType::Finished(Stage::Approved) => "FileApprover.Approved",
            EventType::Finished(Stage::Rejected) => "FileApprover.Rejected",
            EventType::Finished(Stage::Expired) => "FileApprover.Expired",
            EventType::Finished(Stage::Withdrawn) => "FileApprover.Withdrawn",
            EventType::Finished(Stage::Blocked) => "FileApprover.Blocked",
            EventType::Finished(Stage::Revoked) => "FileApprover.Revoked",
            EventType::Finished(_) => "FileApprover.Failed",
        }
    }
}

/// The event for `file`, in CloudEvents 1.0 structured JSON. `seq` numbers the file's events
/// in the order the workflow sends them, which makes the id stable across replays and retries.
pub fn cloud_event(
    file: &FileInput,
    seq: u32,
    kind: EventType,
    stage: Stage,
    deadline: Option<DateTime<Utc>>,
    scan: Option<&ScanReport>,
    time: DateTime<Utc>,
) -> Value {
    let mut data = json!({
        "id": file.id,
        "name": file.name,
        "contentType": file.content_type,
        "size": file.size,
        "stage": stage.as_str(),
        "uploader": file.uploader.as_ref().map(|u| json!({"name": u.as_str(), "id": u.id()})),
        "links": {
            "status": format!("/api/files/{}", file.id),
            "history": format!("/api/files/{}/history", file.id),
        },
    });
    if let Some(scan) = scan {
        data["scan"] = json!(scan);
    }
    if let Some(deadline) = deadline {
        data["deadline"] = json!(deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    json!({
        "specversion": "1.0",
        "id": format!("{}:{seq}", file.id),
        "source": "/file-approver",
        "type": kind.name(),
        "subject": format!("files/{}", file.id),
        "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "datacontenttype": "application/json",
        "data": data,
    })
}

/// Retries for hours: 30 s, then doubling up to an hour between attempts, 12 attempts
/// (about six and a half hours in all).
pub fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 12,
        first_interval: Duration::seconds(30),
        backoff_coefficient: 2.0,
        max_interval: Duration::hours(1),
    }
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; the error arm cannot happen.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One delivery attempt: the event as the raw body, signed. 2xx is delivered; anything else
/// (an error status, no answer within the timeout, no connection) fails the attempt, which
/// the workflow retries. Without a webhook configured the event is dropped (the setting was
/// removed after the workflow started).
pub async fn deliver(
    http: &reqwest::Client,
    webhook: Option<&Webhook>,
    event: Value,
) -> Result<Value, ActivityError> {
    let Some(webhook) = webhook else {
        return Ok(json!({"delivered": false, "reason": "no webhook configured"}));
    };
    let body = serde_json::to_vec(&event).map_err(|e| ActivityError::new(e.to_string()))?;
    let id = event["id"].as_str().unwrap_or_default().to_owned();
    let response = http
        .post(webhook.url.clone())
        .header(
            "Content-Type",
            "application/cloudevents+json; charset=utf-8",
        )
        .header(SIGNATURE_HEADER, signature(&webhook.secret, &body))
        .timeout(webhook.timeout)
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => {
            tracing::info!(event = %id, status = r.status().as_u16(), "notification delivered");
            Ok(json!({"delivered": true, "status": r.status().as_u16()}))
        }
        Ok(r) => {
            tracing::warn!(event = %id, status = r.status().as_u16(), "the webhook refused a notification; it will be retried");
            Err(ActivityError::new(format!(
                "the webhook answered HTTP {}",
                r.status().as_u16()
            )))
        }
        Err(e) => {
            let why = if e.is_timeout() {
                "did not answer in time"
            } else {
                "could not be reached"
            };
            tracing::warn!(event = %id, error = %e, "the webhook {why}; the notification will be retried");
            Err(ActivityError::new(format!("the webhook {why}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_of_the_raw_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn every_end_has_its_event_type() {
        assert_eq!(
            EventType::Finished(Stage::Approved).name(),
            "FileApprover.Approved"
        );
        assert_eq!(
            EventType::Finished(Stage::Failed).name(),
            "FileApprover.Failed"
        );
        assert_eq!(
            EventType::Finished(Stage::Withdrawn).name(),
            "FileApprover.Withdrawn"
        );
    }
}
