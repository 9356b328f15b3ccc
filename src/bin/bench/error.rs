//! The benchmark's one error type. A failed row is reported in the table and the others still
//! run, so errors carry enough context to be read there.

use file_approver::config::ConfigError;
use file_approver::engine::EngineError;
use file_approver::startup::StartupError;
use file_approver::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Failed(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP request failed")]
    Http(#[from] reqwest::Error),
    #[error("storage request failed")]
    Store(#[from] StoreError),
    #[error("engine call failed")]
    Engine(#[from] EngineError),
    #[error("the app did not start")]
    Startup(#[from] StartupError),
    #[error("invalid app settings")]
    Config(#[from] ConfigError),
    #[error("unexpected JSON")]
    Json(#[from] serde_json::Error),
    #[error("a benchmark task failed")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T> = std::result::Result<T, BenchError>;

pub fn failed<T>(message: impl Into<String>) -> Result<T> {
    Err(BenchError::Failed(message.into()))
}

/// Attaches what was being done to an I/O error.
pub trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| BenchError::Io {
            context: what(),
            source,
        })
    }
}

pub use file_approver::telemetry::error_chain as chain;
