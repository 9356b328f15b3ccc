//! The peer workflow on Restate: a Rust SDK service (this process, on 127.0.0.1:9080) behind a
//! `restate-server` (from npm; a separate process with its own log and storage) that this
//! process starts, registers the service with, and drives through its HTTP ingress.
//! Not like for like: every step crosses two processes and HTTP, and the server keeps its own
//! durable log; the figures say what a user of Restate would see for the same workflow.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use restate_sdk::prelude::*;

#[path = "../../harness.rs"]
mod harness;

use harness::{hash_4k, Peer, Result, Stage};

const INGRESS: &str = "http://127.0.0.1:8080";
const ADMIN: &str = "http://127.0.0.1:9070";
const SERVICE: &str = "127.0.0.1:9080";

struct PeerWorkflow;

#[restate_sdk::workflow]
impl PeerWorkflow {
    #[handler]
    async fn run(&self, ctx: WorkflowContext<'_>, id: String) -> HandlerResult<String> {
        ctx.set("stage", "awaiting-upload".to_owned());
        ctx.promise::<String>("upload").await?;
        let hash = ctx.run(|| async move { Ok(hash_4k(&id)) }).await?;
        ctx.set("stage", "awaiting-download".to_owned());
        ctx.promise::<String>("download").await?;
        ctx.set("stage", "completed".to_owned());
        Ok(hash)
    }

    #[handler]
    async fn upload(&self, ctx: SharedWorkflowContext<'_>) -> HandlerResult<()> {
        ctx.resolve_promise::<String>("upload", "ok".to_owned());
        Ok(())
    }

    #[handler]
    async fn download(&self, ctx: SharedWorkflowContext<'_>) -> HandlerResult<()> {
        ctx.resolve_promise::<String>("download", "ok".to_owned());
        Ok(())
    }

    #[handler]
    async fn stage(&self, ctx: SharedWorkflowContext<'_>) -> HandlerResult<String> {
        Ok(ctx.get::<String>("stage").await?.unwrap_or_default())
    }
}

struct Restate {
    http: reqwest::Client,
    server: std::sync::Mutex<Child>,
}

impl Restate {
    async fn open(dir: &Path) -> Result<Restate> {
        let binary = std::env::var("PEER_BENCH_RESTATE_SERVER").map_err(|_| {
            "PEER_BENCH_RESTATE_SERVER names no restate-server (scripts/bench-peers sets it)"
        })?;
        tokio::spawn(
            HttpServer::new(Endpoint::builder().bind(PeerWorkflow).build())
                .listen_and_serve(SERVICE.parse()?),
        );
        let server = Command::new(binary)
            .env("RESTATE_BASE_DIR", dir)
            .env("RESTATE_LOG_FILTER", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http
            .get(format!("{ADMIN}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if Instant::now() > deadline {
                return Err("restate-server did not answer on its admin port".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let registered = http
            .post(format!("{ADMIN}/deployments"))
            .json(&serde_json::json!({ "uri": format!("http://{SERVICE}/") }))
            .send()
            .await?;
        if !registered.status().is_success() {
            return Err(format!("registering the service: {}", registered.text().await?).into());
        }
        Ok(Restate {
            http,
            server: std::sync::Mutex::new(server),
        })
    }

    fn server_rss_kib(&self) -> Result<u64> {
        let pid = self.server.lock().map_err(|_| "poisoned")?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS for restate-server".into())
    }

    fn stop(&self) {
        if let Ok(mut server) = self.server.lock() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    async fn call(&self, path: String, body: serde_json::Value) -> Result<reqwest::Response> {
        let request = self.http.post(format!("{INGRESS}{path}"));
        // A handler without input takes no body and no content type.
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        let response = request.send().await?;
        if !response.status().is_success() {
            return Err(format!("{path}: {} {}", response.status(), response.text().await?).into());
        }
        Ok(response)
    }
}

impl Peer for Restate {
    async fn start(&self, id: String) -> Result<()> {
        self.call(
            format!("/PeerWorkflow/{id}/run/send"),
            serde_json::json!(id),
        )
        .await?;
        Ok(())
    }

    async fn raise(&self, id: String, event: &'static str) -> Result<()> {
        self.call(
            format!("/PeerWorkflow/{id}/{event}"),
            serde_json::Value::Null,
        )
        .await?;
        Ok(())
    }

    async fn stage(&self, id: String) -> Result<Stage> {
        let response = self
            .call(format!("/PeerWorkflow/{id}/stage"), serde_json::Value::Null)
            .await?;
        let stage: String = response.json().await?;
        Ok(match stage.as_str() {
            "awaiting-upload" => Stage::AwaitingUpload,
            "awaiting-download" => Stage::AwaitingDownload,
            "completed" => Stage::Completed,
            _ => Stage::Missing,
        })
    }
}

/// `child restate <throughput|waiting> <n> <dir>`: one measurement, one JSON line. For
/// `waiting`, the RSS is this process (the SDK service) plus restate-server's.
fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [_child, _engine, what, n, dir] = args.as_slice() else {
        return Err("child restate <throughput|waiting> <n> <dir>".into());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let peer = Arc::new(Restate::open(Path::new(dir)).await?);
        let result = harness::run(peer.clone(), what, n.parse()?).await;
        let server_rss = peer.server_rss_kib();
        peer.stop();
        let mut result = result?;
        if let (Some(own), Ok(server)) = (result["rss_kib"].as_u64(), server_rss) {
            result["service_rss_kib"] = own.into();
            result["server_rss_kib"] = server.into();
            result["rss_kib"] = (own + server).into();
        }
        println!("{result}");
        Ok(())
    })
}
