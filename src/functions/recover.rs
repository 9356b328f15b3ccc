//! `recover/`: a timer trigger (every minute under the host; an interval in local mode) that
//! runs the engine's recovery duty — finishing activity work a dead process left behind and
//! firing due timers. Answered in the host's invocation envelope.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::invocation::InvocationResponse;
use crate::startup::AppState;

pub async fn invoke(State(state): State<AppState>) -> Response {
    match state.engine.recover().await {
        Ok(report) => {
            let mut response = InvocationResponse::new();
            response.log(format!(
                "recover: {} pending, {} timers fired, {} activities restarted, {} failures",
                report.pending_instances,
                report.timers_fired,
                report.activities_restarted,
                report.failures
            ));
            response.into_response()
        }
        Err(e) => {
            // Non-2xx fails the invocation; the next tick runs the duty again anyway.
            tracing::warn!(error = %e, "recovery duty failed");
            (StatusCode::SERVICE_UNAVAILABLE, InvocationResponse::new()).into_response()
        }
    }
}
