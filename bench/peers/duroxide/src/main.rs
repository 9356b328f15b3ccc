//! duroxide (Microsoft's Rust Durable Task framework) with its SQLite provider on disk, the
//! same workflow. `tuned`: its dispatchers poll every 5 ms instead of 100 ms (the
//! `duroxide-defaults` row). Both keep its 2 orchestration and 2 activity dispatchers: with 4
//! or 16 of each, instances failed under 16 clients with SQLite's "database is locked".

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use duroxide::providers::sqlite::SqliteProvider;
use duroxide::runtime::registry::ActivityRegistry;
use duroxide::runtime::{Runtime, RuntimeOptions};
use duroxide::{
    ActivityContext, Client, OrchestrationContext, OrchestrationRegistry, OrchestrationStatus,
};

#[path = "../../harness.rs"]
mod harness;

use harness::{hash_4k, Peer, Result, Stage};

pub struct Duroxide {
    client: Client,
    runtime: Arc<Runtime>,
}

impl Duroxide {
    pub async fn open(dir: &Path, tuned: bool) -> Result<Duroxide> {
        let db = dir.join("duroxide.db");
        std::fs::File::create(&db)?;
        let url = format!("sqlite:{}", db.display());
        let store = Arc::new(SqliteProvider::new(&url, None).await?);
        let activities = ActivityRegistry::builder()
            .register(
                "Hash4k",
                |_ctx: ActivityContext, input: String| async move { Ok(hash_4k(&input)) },
            )
            .build();
        let orchestrations = OrchestrationRegistry::builder()
            .register(
                "Peer",
                |ctx: OrchestrationContext, input: String| async move {
                    ctx.set_custom_status("awaiting-upload");
                    let _ = ctx.schedule_wait("upload").await;
                    let hash = ctx.schedule_activity("Hash4k", input).await?;
                    ctx.set_custom_status("awaiting-download");
                    let _ = ctx.schedule_wait("download").await;
                    Ok(hash)
                },
            )
            .build();
        let options = if tuned {
            RuntimeOptions {
                dispatcher_min_poll_interval: Duration::from_millis(5),
                orchestration_concurrency: 2,
                worker_concurrency: 2,
                ..RuntimeOptions::default()
            }
        } else {
            RuntimeOptions::default()
        };
        let runtime =
            Runtime::start_with_options(store.clone(), activities, orchestrations, options).await;
        Ok(Duroxide {
            client: Client::new(store),
            runtime,
        })
    }

    pub async fn shutdown(&self) {
        self.runtime.clone().shutdown(None).await;
    }
}

impl Peer for Duroxide {
    async fn start(&self, id: String) -> Result<()> {
        self.client
            .start_orchestration(&id, "Peer", id.clone())
            .await?;
        Ok(())
    }

    async fn raise(&self, id: String, event: &'static str) -> Result<()> {
        self.client.raise_event(&id, event, "{}").await?;
        Ok(())
    }

    async fn stage(&self, id: String) -> Result<Stage> {
        Ok(match self.client.get_orchestration_status(&id).await? {
            OrchestrationStatus::NotFound => Stage::Missing,
            OrchestrationStatus::Completed { .. } => Stage::Completed,
            OrchestrationStatus::Failed { details, .. } => {
                return Err(format!("{id} failed: {}", details.display_message()).into())
            }
            OrchestrationStatus::Running { custom_status, .. } => match custom_status.as_deref() {
                Some("awaiting-upload") => Stage::AwaitingUpload,
                Some("awaiting-download") => Stage::AwaitingDownload,
                _ => Stage::Missing,
            },
            #[allow(unreachable_patterns)]
            _ => Stage::Missing,
        })
    }
}

/// `child <duroxide|duroxide-defaults> <throughput|waiting> <n> <dir>`.
fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [_child, engine, what, n, dir] = args.as_slice() else {
        return Err("child <duroxide|duroxide-defaults> <throughput|waiting> <n> <dir>".into());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let peer = Arc::new(Duroxide::open(Path::new(dir), engine == "duroxide").await?);
        let result = harness::run(peer.clone(), what, n.parse()?).await?;
        peer.shutdown().await;
        println!("{result}");
        Ok(())
    })
}
