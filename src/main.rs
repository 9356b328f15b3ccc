//! `handler`: File Approver's one binary. Reads settings, starts logging, serves.

use std::process::ExitCode;

use file_approver::config::{RunMode, Settings};
use file_approver::startup::Application;
use file_approver::telemetry::{self, error_chain};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            // Logging is not set up yet, and this must be readable in the host's log.
            eprintln!("error: invalid setting: {e}");
            return exit_failure();
        }
    };
    telemetry::init(matches!(settings.mode, RunMode::CustomHandler { .. }));
    if settings.reviewers.is_empty() && settings.easy_auth.is_none() {
        tracing::warn!(
            "FILE_APPROVER_REVIEWERS is unset: approvals are NOT authenticated and are recorded as reviewer \"anonymous\""
        );
    }
    tracing::info!(mode = ?settings.mode, storage = ?settings.storage, "starting");
    let local = settings.mode.is_local();
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "start-up failed");
            return exit_failure();
        }
    };
    if let Ok(addr) = app.local_addr() {
        if local {
            tracing::info!(
                "File Approver is running at http://{addr}/ — list files at http://{addr}/api/files, \
                 upload with: curl --data-binary @report.pdf 'http://{addr}/api/files?name=report.pdf'"
            );
        } else {
            tracing::info!(%addr, "listening");
        }
    }
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "server stopped");
            exit_failure()
        }
    }
}

/// Never 0 on failure: the Functions host does not restart a worker that exits with 0.
fn exit_failure() -> ExitCode {
    ExitCode::from(1)
}
