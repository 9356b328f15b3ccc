//! The orchestration both engine suites drive (`engine_replay.rs` from hand-written histories,
//! `engine_store.rs` against real storage): the shape of the real workflow — an approval, the
//! analysis with a durable retry policy, an approval with a one-day deadline.

use chrono::Duration;
use file_approver::engine::{OrchestrationContext, OrchestrationError, RetryPolicy};
use serde_json::{json, Value};

pub const ANALYZE_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    first_interval: Duration::seconds(10),
    backoff_coefficient: 2.0,
    max_interval: Duration::minutes(1),
};

/// Where the analysis shows once it is done. (Each suite uses one of the two.)
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
pub enum AnalysisShown {
    /// In the custom status while the download waits (`{"stage", "analysis"}`); the output
    /// is then `"Approved"`.
    InStatus,
    /// In the output once the download is approved (`{"analysis"}`); the custom status is
    /// then the bare stage name.
    InOutput,
}

pub async fn approval_flow(
    ctx: OrchestrationContext,
    input: Value,
    shown: AnalysisShown,
) -> Result<Value, OrchestrationError> {
    ctx.set_custom_status(json!("AwaitingUploadApproval"));
    let upload: Value = ctx.wait_for_event("Approval").await?;
    if upload["approved"] != json!(true) {
        return Ok(json!("Rejected"));
    }
    ctx.set_custom_status(json!("Analyzing"));
    let analysis: Value = ctx.call_activity("Analyze", &input, ANALYZE_RETRY).await?;
    ctx.set_custom_status(match shown {
        AnalysisShown::InStatus => {
            json!({"stage": "AwaitingDownloadApproval", "analysis": analysis})
        }
        AnalysisShown::InOutput => json!("AwaitingDownloadApproval"),
    });
    let deadline = ctx.current_time() + Duration::days(1);
    match ctx
        .wait_for_event_until::<Value>("Approval", deadline)
        .await?
    {
        Some(d) if d["approved"] == json!(true) => Ok(match shown {
            AnalysisShown::InStatus => json!("Approved"),
            AnalysisShown::InOutput => json!({"analysis": analysis}),
        }),
        Some(_) => Ok(json!("Rejected")),
        None => Ok(json!("Expired")),
    }
}
