//! This project's engine (`file_approver::engine`) on its embedded store (SQLite on disk), with
//! local mode's work driver running activities: the same pieces the app runs in local mode,
//! without HTTP or the file lifecycle around them.

use std::path::Path;
use std::sync::Arc;

use file_approver::clock::SystemClock;
use file_approver::engine::{
    DriverOptions, Engine, EngineOptions, OrchestrationContext, RaiseEvent, Registry, RetryPolicy,
    RuntimeStatus, WorkDriver,
};
use file_approver::store::embedded::{EmbeddedOptions, EmbeddedStore};
use file_approver::store::Storage;
use serde_json::{json, Value};

use crate::harness::{hash_4k, Peer, Result, Stage};

pub struct Ours {
    engine: Engine,
}

impl Ours {
    pub async fn open(dir: &Path) -> Result<Ours> {
        let store: Arc<dyn Storage> = Arc::new(EmbeddedStore::open(
            dir,
            EmbeddedOptions {
                signing_secret: Some(vec![7; 32]),
                ..EmbeddedOptions::default()
            },
        )?);
        let mut registry = Registry::new();
        registry
            .orchestration(
                "Peer",
                |ctx: OrchestrationContext, input: Value| async move {
                    ctx.set_custom_status(json!("awaiting-upload"));
                    let _: Value = ctx.wait_for_event("upload").await?;
                    let hash: String = ctx
                        .call_activity("Hash4k", &input, RetryPolicy::none())
                        .await?;
                    ctx.set_custom_status(json!("awaiting-download"));
                    let _: Value = ctx.wait_for_event("download").await?;
                    Ok(json!(hash))
                },
            )
            .activity("Hash4k", |input: Value| async move {
                Ok(json!(hash_4k(input.as_str().unwrap_or_default())))
            });
        let engine = Engine::new(
            store,
            Arc::new(SystemClock),
            registry,
            EngineOptions::default(),
        );
        engine.ensure_storage().await?;
        let driver = WorkDriver::new(engine.clone(), DriverOptions::default());
        tokio::spawn(driver.run());
        Ok(Ours { engine })
    }
}

impl Peer for Ours {
    async fn start(&self, id: String) -> Result<()> {
        self.engine.start("Peer", &id, json!(id)).await?;
        Ok(())
    }

    async fn raise(&self, id: String, event: &'static str) -> Result<()> {
        self.engine
            .raise_event(
                &id,
                RaiseEvent {
                    name: event.to_owned(),
                    event_id: format!("{id}-{event}"),
                    payload: Value::Null,
                    expect_custom_status: None,
                    guard: None,
                },
            )
            .await?;
        Ok(())
    }

    async fn stage(&self, id: String) -> Result<Stage> {
        let Some(status) = self.engine.status(&id, false).await? else {
            return Ok(Stage::Missing);
        };
        Ok(match status.runtime_status {
            RuntimeStatus::Completed => Stage::Completed,
            RuntimeStatus::Failed | RuntimeStatus::Terminated => Stage::Failed,
            _ if status.custom_status == json!("awaiting-download") => Stage::AwaitingDownload,
            _ if status.custom_status == json!("awaiting-upload") => Stage::AwaitingUpload,
            _ => Stage::Missing,
        })
    }

    /// A start's first turn commits the instance already waiting: nothing to settle.
    async fn settle(&self, _ids: &[String]) -> Result<()> {
        Ok(())
    }
}
