//! `recover/`: a timer trigger (every minute under the host; an interval in local mode) that
//! runs the periodic duty ([`crate::files::Files::housekeeping`]): finishing activity work a
//! dead process left behind, firing due timers, settling open uploads. Answered in the host's
//! invocation envelope.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::invocation::InvocationResponse;
use super::AppState;

pub async fn invoke(State(state): State<AppState>) -> Response {
    match state.files.housekeeping().await {
        Ok(done) => {
            let mut response = InvocationResponse::new();
            let (recovery, sweep) = (&done.recovery, &done.sweep);
            response.log(format!(
                "recover: {} pending, {} timers fired, {} activities restarted, {} uploads started, {} abandoned uploads removed, {} failures",
                recovery.pending_instances,
                recovery.timers_fired,
                recovery.activities_restarted,
                sweep.started,
                sweep.abandoned,
                recovery.failures + sweep.failures
            ));
            response.into_response()
        }
        Err(e) => {
            // Non-2xx fails the invocation; the next tick runs the duty again anyway.
            tracing::warn!(error = %e, "housekeeping failed");
            (StatusCode::SERVICE_UNAVAILABLE, InvocationResponse::new()).into_response()
        }
    }
}
