//! `sweep/`: a timer trigger (every 5 minutes under the host, without the schedule monitor: a missed
//! run changes nothing; an interval in local mode) that
//! sweeps the open uploads ([`crate::files::Files::sweep_uploads`]): it starts a committed
//! upload whose blob trigger never came and removes one that never committed. The workflows'
//! own work needs no timer: it travels on the work queue (`work/`). Answered in the host's
//! invocation envelope.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::invocation::InvocationResponse;
use super::AppState;

pub async fn invoke(State(state): State<AppState>) -> Response {
    match state.files.sweep_uploads().await {
        Ok(sweep) => {
            let mut response = InvocationResponse::new();
            response.log(format!(
                "sweep: {} uploads started, {} abandoned uploads removed, {} failures",
                sweep.started, sweep.abandoned, sweep.failures
            ));
            response.into_response()
        }
        Err(e) => {
            // Non-2xx fails the invocation; the next tick sweeps again anyway.
            tracing::warn!(error = %e, "sweep failed");
            (StatusCode::SERVICE_UNAVAILABLE, InvocationResponse::new()).into_response()
        }
    }
}
