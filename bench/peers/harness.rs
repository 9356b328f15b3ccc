//! What both benchmark binaries share (included by path: the two cannot be one build, as
//! duroxide's SQLite and the product's link different `libsqlite3-sys` versions): the engine
//! interface, the workflow driver, the measurements.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

pub const CLIENTS: usize = 16;
const POLL: Duration = Duration::from_millis(1);

/// Where a workflow stands, as a client reading the engine's status sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Missing,
    AwaitingUpload,
    AwaitingDownload,
    Completed,
    Failed,
}

/// What the bench asks of an engine.
pub trait Peer: Send + Sync + 'static {
    fn start(&self, id: String) -> impl std::future::Future<Output = Result<()>> + Send;
    fn raise(
        &self,
        id: String,
        event: &'static str,
    ) -> impl std::future::Future<Output = Result<()>> + Send;
    fn stage(&self, id: String) -> impl std::future::Future<Output = Result<Stage>> + Send;
    /// Until every started instance has reached its first wait. By default each is read
    /// until it waits (the last started first), for up to half an hour in all.
    fn settle(&self, ids: &[String]) -> impl std::future::Future<Output = Result<()>> + Send
    where
        Self: Sized,
    {
        async move {
            let deadline = Instant::now() + Duration::from_secs(1800);
            for id in ids.iter().rev() {
                let left = deadline.saturating_duration_since(Instant::now());
                until_stage_within(self, id, Stage::AwaitingUpload, left).await?;
            }
            Ok(())
        }
    }
}

/// The activity: SHA-256 over 4 KiB derived from the input.
pub fn hash_4k(input: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 4096];
    for (i, b) in block.iter_mut().enumerate() {
        *b = input
            .as_bytes()
            .get(i % input.len().max(1))
            .copied()
            .unwrap_or(0)
            ^ (i as u8);
    }
    let digest = Sha256::digest(block);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn until_stage<P: Peer>(peer: &P, id: &str, want: Stage) -> Result<()> {
    until_stage_within(peer, id, want, Duration::from_secs(60)).await
}

pub async fn until_stage_within<P: Peer>(
    peer: &P,
    id: &str,
    want: Stage,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let stage = peer.stage(id.to_owned()).await?;
        if stage == want {
            return Ok(());
        }
        if stage == Stage::Failed {
            return Err(format!("{id} failed").into());
        }
        if Instant::now() > deadline {
            return Err(format!("{id} stuck at {stage:?}, waiting for {want:?}").into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One workflow, start to end: the latency of each event, in milliseconds.
async fn one<P: Peer>(peer: &P, id: String) -> Result<[f64; 2]> {
    peer.start(id.clone()).await?;
    until_stage(peer, &id, Stage::AwaitingUpload).await?;
    let raised = Instant::now();
    peer.raise(id.clone(), "upload").await?;
    until_stage(peer, &id, Stage::AwaitingDownload).await?;
    let upload = raised.elapsed().as_secs_f64() * 1000.0;
    let raised = Instant::now();
    peer.raise(id.clone(), "download").await?;
    until_stage(peer, &id, Stage::Completed).await?;
    let download = raised.elapsed().as_secs_f64() * 1000.0;
    Ok([upload, download])
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub async fn throughput<P: Peer>(peer: Arc<P>, workflows: usize, tag: &str) -> Result<Value> {
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let peer = peer.clone();
        let tag = tag.to_owned();
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in (c..workflows).step_by(CLIENTS) {
                latencies.push(one(&*peer, format!("{tag}-{i:06}")).await?);
            }
            Ok::<_, Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut each: Vec<f64> = all.iter().flat_map(|l| l.iter().copied()).collect();
    each.sort_by(f64::total_cmp);
    let mut upload: Vec<f64> = all.iter().map(|l| l[0]).collect();
    upload.sort_by(f64::total_cmp);
    let mut download: Vec<f64> = all.iter().map(|l| l[1]).collect();
    download.sort_by(f64::total_cmp);
    Ok(json!({
        "workflows_per_s": workflows as f64 / seconds,
        "p50_ms": percentile(&each, 50.0),
        "p99_ms": percentile(&each, 99.0),
        "upload_p50_ms": percentile(&upload, 50.0),
        "upload_p99_ms": percentile(&upload, 99.0),
        "download_p50_ms": percentile(&download, 50.0),
        "download_p99_ms": percentile(&download, 99.0),
    }))
}

pub fn rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/self/status".into())
}

pub async fn waiting<P: Peer>(peer: Arc<P>, count: usize) -> Result<Value> {
    let ids: Vec<String> = (0..count).map(|i| format!("idle-{i:06}")).collect();
    let mut tasks = Vec::new();
    for chunk in ids.chunks(count.div_ceil(CLIENTS).max(1)) {
        let peer = peer.clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for id in chunk {
                peer.start(id).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let started = Instant::now();
    peer.settle(&ids).await?;
    let settled_s = started.elapsed().as_secs_f64();
    // At rest: nothing in flight, and time for caches and allocators to settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(json!({ "waiting": count, "rss_kib": rss_kib()?, "settled_s": settled_s }))
}

/// A child's one measurement (`throughput N` or `waiting N`), as one JSON line on stdout.
pub async fn run<P: Peer>(peer: Arc<P>, what: &str, n: usize) -> Result<Value> {
    match what {
        "throughput" => throughput(peer, n, "wf").await,
        "waiting" => waiting(peer, n).await,
        other => Err(format!("unknown measurement {other}").into()),
    }
}
