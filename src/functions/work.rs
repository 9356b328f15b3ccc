//! `work/`: the queue trigger on the engine's work queue. Each invocation carries one work
//! message (an activity to run, a timer to fire) and runs it inside the invocation, so the work
//! is done while the host keeps the instance alive — nothing runs after a response has gone.
//!
//! 2xx tells the host the message is finished (it deletes it); non-2xx makes it show again after
//! `extensions.queues.visibilityTimeout`, up to `maxDequeueCount` receptions, then
//! `workflow-work-poison` (host.json). The text arrives as `Data.item`, JSON-encoded once more
//! like every top-level string (protocol §2.3), and unencoded otherwise: host.json sets
//! `messageEncoding` to `none`, as the app writes plain JSON.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::invocation::{decoded, parse_invocation, InvocationLimits, InvocationResponse};
use super::AppState;
use crate::engine::{Executed, HeldBy};

/// The binding name in `work/function.json`.
const ITEM_BINDING: &str = "item";

pub async fn invoke(State(state): State<AppState>, body: Body) -> Response {
    let invocation =
        match parse_invocation(body.into_data_stream(), &[], &InvocationLimits::default()).await {
            Ok(invocation) => invocation,
            Err(e) => {
                // The same bytes would fail again: finish the message, saying why.
                tracing::error!(error = %e, "work: malformed invocation ignored");
                return logs(format!("work: ignored a malformed invocation: {e}"));
            }
        };
    let Some(text) = invocation.data.get(ITEM_BINDING).and_then(message_text) else {
        tracing::error!("work: an invocation without a message text ignored");
        return logs("work: ignored an invocation without a message text".into());
    };
    // When the message was sent: how long its turn has had to commit.
    let inserted = invocation
        .metadata_str("InsertionTime")
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    match state.files.run_work(&text, inserted, HeldBy::Host).await {
        Ok(Executed::Done) => logs("work: done".into()),
        Ok(Executed::Dropped(reason)) => logs(format!("work: nothing to do ({reason})")),
        Err(e) => {
            // The host lets the message show again and counts the attempt.
            tracing::warn!(error = %e, "work failed; the host will retry it");
            (StatusCode::SERVICE_UNAVAILABLE, InvocationResponse::new()).into_response()
        }
    }
}

/// The message text from `Data.item`: a string encoded once more (what the host sends), or, to
/// be lenient with other encodings of the same JSON, the object itself.
fn message_text(item: &Value) -> Option<String> {
    match decoded(item) {
        Value::String(text) => Some(text),
        object @ Value::Object(_) => Some(object.to_string()),
        _ => None,
    }
}

fn logs(line: String) -> Response {
    let mut response = InvocationResponse::new();
    response.log(line);
    response.into_response()
}
