//! Rows measured on the app served in-process with counted storage, on each backend:
//! concurrent approvals (against the store's own batch commits), whole workflows, storage
//! requests per workflow, and storage requests while idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

use file_approver::store::testing::{Op, RequestCounts};
use file_approver::store::{BatchOp, ETag, Entity, Storage};

use crate::api::{Api, APPROVED, AWAITING_DOWNLOAD, AWAITING_UPLOAD};
use crate::data;
use crate::error::{failed, Result};
use crate::inproc::InProcessApp;
use crate::report::{millis, Line, Report, Samples};
use crate::{token, Profile};

/// One backend's in-process app and a client for it.
pub struct Backend {
    pub name: &'static str,
    pub app: InProcessApp,
    pub api: Api,
}

/// The table the batch-commit baseline writes to (the app never reads it).
const BASELINE_TABLE: &str = "benchcommits";
const BASELINE_REPEATS: usize = 3;
const SMALL_FILE: usize = 4096;
/// Workflows left waiting for an approval while idle, so that the idle minute is not measured
/// on an empty store.
const WAITING_WHILE_IDLE: usize = 50;
const POLL: Duration = Duration::from_millis(10);
const WAIT: Duration = Duration::from_secs(120);

/// Uploads `n` small text files, `concurrency` at a time; returns their ids in order.
async fn upload_many(api: &Api, n: usize, concurrency: usize, tag: &str) -> Result<Vec<String>> {
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let name = format!("{tag}-{i}.txt");
            async move {
                api.upload(
                    &name,
                    reqwest::Body::from(data::text_file(i, SMALL_FILE)),
                    None,
                )
                .await
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await
}

async fn wait_all(
    api: &Api,
    ids: &[String],
    stage: &'static str,
    concurrency: usize,
) -> Result<()> {
    futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let api = api.clone();
            async move { api.wait_for_stage(&id, stage, POLL, WAIT).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<u32>>()
        .await
        .map(drop)
}

/// Approves every file at `stage`, `concurrency` requests in flight, each slot its own
/// reviewer. Returns each request's latency (ms) and the wall time (s).
async fn approve_all(
    api: &Api,
    ids: &[String],
    stage: &'static str,
    concurrency: usize,
) -> Result<(Samples, f64)> {
    let started = Instant::now();
    let latencies: Vec<f64> = futures::stream::iter(ids.iter().cloned().enumerate())
        .map(|(i, id)| {
            let api = api.clone();
            async move {
                let t = Instant::now();
                // Four eyes: the download's approver is not the upload's.
                let reviewer = match stage {
                    "download" => token((i + 1) % crate::REVIEWERS),
                    _ => token(i % crate::REVIEWERS),
                };
                api.approve(&id, stage, &reviewer).await?;
                Ok::<f64, crate::error::BenchError>(millis(t.elapsed()))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok((Samples::of(latencies), started.elapsed().as_secs_f64()))
}

fn state_row(partition: &str, turn: i64) -> Entity {
    Entity::new(partition, "state")
        .with("RuntimeStatus", "Running")
        .with("Stage", "AwaitingUploadApproval")
        .with("HistoryLength", turn)
        .with("CustomStatus", "x".repeat(200))
}

fn history_row(partition: &str, seq: i64) -> Entity {
    Entity::new(partition, format!("h{seq:010}"))
        .with("EventType", "EventRaised")
        .with("EventTime", "2026-01-01T00:00:00Z")
        .with("Payload", "y".repeat(200))
}

/// The storage layer's own atomic commits, shaped like an engine turn (the state row replaced
/// under If-Match plus three new history rows, one entity group transaction), one partition
/// each, `concurrency` in flight on the same store. Returns latencies (ms) and wall time (s).
async fn batch_commits(
    store: Arc<dyn Storage>,
    tag: String,
    n: usize,
    concurrency: usize,
) -> Result<(Samples, f64)> {
    store.ensure_table(BASELINE_TABLE).await?;
    let rows: Vec<(String, ETag)> = futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            let partition = format!("{tag}-{i:04}");
            async move {
                let etag = store
                    .insert_entity(BASELINE_TABLE, &state_row(&partition, 0))
                    .await?;
                Ok::<_, crate::error::BenchError>((partition, etag))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let started = Instant::now();
    let latencies: Vec<f64> = futures::stream::iter(rows)
        .map(|(partition, etag)| {
            let store = store.clone();
            async move {
                let t = Instant::now();
                let operations = vec![
                    BatchOp::Update {
                        entity: state_row(&partition, 3),
                        if_match: etag,
                    },
                    BatchOp::Insert(history_row(&partition, 1)),
                    BatchOp::Insert(history_row(&partition, 2)),
                    BatchOp::Insert(history_row(&partition, 3)),
                ];
                store.batch(BASELINE_TABLE, &partition, operations).await?;
                Ok::<f64, crate::error::BenchError>(millis(t.elapsed()))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok((Samples::of(latencies), started.elapsed().as_secs_f64()))
}

/// 16 reviewers in flight over many files, for each approval stage, against batch commits.
pub async fn approvals(backend: &Backend, profile: &Profile, report: &mut Report) -> Result<()> {
    let (n, concurrency) = (profile.approvals_files, profile.concurrency);
    let api = &backend.api;
    let mut rate = [Samples::new(), Samples::new()];
    let mut latency = [Samples::new(), Samples::new()];
    let (mut batch_rate, mut batch_latency) = (Samples::new(), Samples::new());
    // Storage requests made while the approvals were in flight (activities included).
    let mut requests = [RequestCounts::default(); 2];
    for run in 0..profile.approvals_runs {
        eprintln!(
            "bench: approvals on {}, run {}/{}",
            backend.name,
            run + 1,
            profile.approvals_runs
        );
        let ids = upload_many(api, n, concurrency, &format!("approvals{run}")).await?;
        wait_all(api, &ids, AWAITING_UPLOAD, concurrency).await?;
        backend.app.idle().await?;

        backend.app.counter.take();
        let (lat, wall) = approve_all(api, &ids, "upload", concurrency).await?;
        rate[0].push(n as f64 / wall);
        latency[0].extend(&lat);
        requests[0] = requests[0].plus(&backend.app.counter.take());
        wait_all(api, &ids, AWAITING_DOWNLOAD, concurrency).await?;
        backend.app.idle().await?;

        backend.app.counter.take();
        let (lat, wall) = approve_all(api, &ids, "download", concurrency).await?;
        rate[1].push(n as f64 / wall);
        latency[1].extend(&lat);
        requests[1] = requests[1].plus(&backend.app.counter.take());
        wait_all(api, &ids, APPROVED, concurrency).await?;
        backend.app.idle().await?;

        // A few hundred commits take a fraction of a second: repeat them for a steadier figure.
        for repeat in 0..BASELINE_REPEATS {
            let store = backend.app.store();
            let tag = format!("r{run}x{repeat}");
            let (lat, wall) = backend
                .app
                .run(batch_commits(store, tag, n, concurrency))
                .await??;
            batch_rate.push(n as f64 / wall);
            batch_latency.extend(&lat);
        }
    }
    let batch_p99 = batch_latency.percentile(99.0);
    for (i, stage) in ["upload", "download"].into_iter().enumerate() {
        let ratio = rate[i].median() / batch_rate.median();
        let p99 = latency[i].percentile(99.0);
        report.add(
            Line::new(
                format!(
                    "approvals ({stage} stage), {}, {concurrency} in flight × {n} files",
                    backend.name
                ),
                format!(
                    "{}; p50 {:.1} ms, p99 {:.1} ms",
                    rate[i].summary(0, "/s"),
                    latency[i].percentile(50.0),
                    p99
                ),
            )
            .baseline(format!(
                "batch commits {}; p99 {:.1} ms",
                batch_rate.summary(0, "/s"),
                batch_p99
            ))
            .ratio(ratio)
            .target(
                "≥ 0.4× rate; p99 ≤ 2.5× batch p99",
                ratio >= 0.4 && p99 <= 2.5 * batch_p99,
            ),
        );
        let approvals = (n * profile.approvals_runs) as f64;
        let by_op: Vec<String> = requests[i]
            .nonzero()
            .map(|(op, count)| format!("{op} {:.2}", count as f64 / approvals))
            .collect();
        report.note(format!(
            "approvals ({stage}), {}: p99 is {:.2}× the batch p99 (batch p50 {:.1} ms); \
             storage requests per approval while approvals were in flight {:.2} ({}), \
             against 1 batch per baseline commit",
            backend.name,
            p99 / batch_p99,
            batch_latency.percentile(50.0),
            requests[i].total() as f64 / approvals,
            by_op.join(", ")
        ));
    }
    Ok(())
}

/// One whole workflow as a client drives it; returns its latency in ms.
/// How often the `workflows` row's clients ask where their file stands. Every 10 ms, 32
/// clients' polls were most of what Azurite served (its one thread saturated, throughput fell
/// from 63 to 39 workflows/s between 8 and 32 clients); a client that waits for a person does
/// not poll that often (the app's `Retry-After` says 2 s).
const WORKFLOW_POLL: Duration = Duration::from_millis(100);

/// One workflow, its client asking every `poll`: its latency and how many polls it made.
async fn one_workflow(api: Api, i: usize, poll: Duration) -> Result<(f64, u32)> {
    let started = Instant::now();
    let reviewer = token(i % crate::REVIEWERS);
    // Four eyes: someone else approves the download.
    let second = token((i + 1) % crate::REVIEWERS);
    let id = api
        .upload(
            &format!("wf-{i}.txt"),
            reqwest::Body::from(data::text_file(i, SMALL_FILE)),
            None,
        )
        .await?;
    api.approve(&id, "upload", &reviewer).await?;
    let polls = api
        .wait_for_stage(&id, AWAITING_DOWNLOAD, poll, WAIT)
        .await?;
    api.approve(&id, "download", &second).await?;
    let tries = api.download(&id, poll, WAIT).await?;
    Ok((millis(started.elapsed()), polls + tries))
}

/// `n` workflows by `clients` clients asking every `poll`: workflows per second, latencies,
/// polls per workflow.
async fn run_workflows(
    api: &Api,
    n: usize,
    clients: usize,
    first: usize,
    poll: Duration,
) -> Result<(f64, Samples, f64)> {
    let started = Instant::now();
    let done: Vec<(f64, u32)> = futures::stream::iter(first..first + n)
        .map(|i| one_workflow(api.clone(), i, poll))
        .buffer_unordered(clients)
        .try_collect()
        .await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let polls = done.iter().map(|(_, p)| f64::from(*p)).sum::<f64>() / n as f64;
    Ok((
        rate,
        Samples::of(done.into_iter().map(|(l, _)| l).collect::<Vec<f64>>()),
        polls,
    ))
}

/// 4 KiB files, upload → approve → analysis → approve → download: one client alone (a
/// workflow's own round trips and its analysis, nothing to wait behind), then
/// `workflow_clients` at once, each asking every [`WORKFLOW_POLL`]. Issue 26's target: the
/// loaded p50 at most 2× the lone one.
pub async fn workflows(backend: &Backend, profile: &Profile, report: &mut Report) -> Result<()> {
    let (n, clients) = (profile.workflows, profile.workflow_clients);
    eprintln!("bench: {n} workflows on {}", backend.name);
    backend.app.idle().await?;
    // Alone, a client asking every 10 ms costs the store little and waits for nothing else:
    // about the workflow's own round trips and its analysis.
    let (_, alone, _) = run_workflows(&backend.api, (n / 8).max(8), 1, 0, POLL).await?;
    let (rate, latencies, polls) =
        run_workflows(&backend.api, n, clients, n, WORKFLOW_POLL).await?;
    let ratio = latencies.percentile(50.0) / alone.percentile(50.0);
    report.add(
        Line::new(
            format!(
                "workflows (4 KiB), {}, {clients} clients × {n}",
                backend.name
            ),
            format!(
                "{rate:.1} workflows/s; p50 {:.0} ms, p99 {:.0} ms",
                latencies.percentile(50.0),
                latencies.percentile(99.0)
            ),
        )
        .baseline(format!(
            "one client alone: p50 {:.0} ms",
            alone.percentile(50.0)
        ))
        .ratio(ratio)
        .target("p50 ≤ 2× alone", ratio <= 2.0),
    );
    // Little's law: with the store saturated, a workflow's latency is the clients over the
    // throughput, whatever each workflow's own work.
    report.note(format!(
        "workflows, {}: {polls:.1} status polls per workflow (every {} ms); {clients} clients / \
         {rate:.1} workflows/s = {:.0} ms, the p50 a saturated store gives",
        backend.name,
        WORKFLOW_POLL.as_millis(),
        1000.0 * clients as f64 / rate
    ));
    Ok(())
}

/// Storage requests of complete workflows, one at a time, by operation and by step. The
/// client's status polls are counted apart (a client may poll as often as it likes).
pub async fn storage_requests(
    backend: &Backend,
    profile: &Profile,
    report: &mut Report,
) -> Result<()> {
    let (api, app) = (&backend.api, &backend.app);
    let w = profile.request_workflows;
    let reviewer = token(0);
    // Four eyes: someone else approves the download.
    let second = token(1);
    let mut steps = [RequestCounts::default(); 4];
    let (mut poll_counts, mut polls) = (RequestCounts::default(), 0u32);
    let mut late = 0u32;
    app.idle().await?;
    for i in 0..w {
        app.counter.take();
        let id = api
            .upload(
                &format!("counted-{i}.txt"),
                reqwest::Body::from(data::text_file(i, SMALL_FILE)),
                None,
            )
            .await?;
        app.idle().await?;
        steps[0] = steps[0].plus(&app.counter.take());
        let p = api.wait_for_stage(&id, AWAITING_UPLOAD, POLL, WAIT).await?;
        (polls, late) = (polls + p, late + p.saturating_sub(1));
        poll_counts = poll_counts.plus(&app.counter.take());

        api.approve(&id, "upload", &reviewer).await?;
        app.idle().await?;
        steps[1] = steps[1].plus(&app.counter.take());
        let p = api
            .wait_for_stage(&id, AWAITING_DOWNLOAD, POLL, WAIT)
            .await?;
        (polls, late) = (polls + p, late + p.saturating_sub(1));
        poll_counts = poll_counts.plus(&app.counter.take());

        api.approve(&id, "download", &second).await?;
        app.idle().await?;
        steps[2] = steps[2].plus(&app.counter.take());
        let p = api.wait_for_stage(&id, APPROVED, POLL, WAIT).await?;
        (polls, late) = (polls + p, late + p.saturating_sub(1));
        poll_counts = poll_counts.plus(&app.counter.take());

        api.download(&id, POLL, WAIT).await?;
        steps[3] = steps[3].plus(&app.counter.take());
    }
    let total = steps
        .iter()
        .fold(RequestCounts::default(), |sum, step| sum.plus(step));
    let per = |count: u64| count as f64 / w as f64;
    // The queue counted as the host uses it: one receive per message received (an activity
    // the driver took straight from its turn was never received). The in-process driver's
    // empty receives (drain()'s among them) and its next-visible checks are its polling,
    // which under Functions is the host's, reported apart.
    let looks = total.driver_looks();
    let per_workflow = per(total.total() - looks);
    // Issue 26 counts the workflow as it stood before the content-safety gate, the gate's
    // steps apart: the snapshot that pins the bytes, and every insert but the open-upload
    // record's (the related-files row the analysis writes, the download link's audit row).
    let gate =
        total.requests(Op::SnapshotBlob) + total.requests(Op::Insert).saturating_sub(w as u64);
    let before_gate = per(total.total() - looks - gate);
    report.add(
        Line::new(
            format!("storage requests per workflow, {} (n={w})", backend.name),
            format!(
                "{per_workflow:.1} (+ {:.1} driver looks); {before_gate:.1} before the gate",
                per(looks)
            ),
        )
        .baseline("Durable Functions ~20–30 (anchor, on paper)")
        .target("≤ 12 before the gate", before_gate <= 12.0),
    );
    let by_op: Vec<String> = Op::ALL
        .into_iter()
        .filter(|op| total.requests(*op) > 0)
        .map(|op| format!("{op} {:.1}", per(total.requests(op))))
        .collect();
    let by_step: Vec<String> = [
        "upload + start",
        "approve upload + analysis",
        "approve download",
        "download link",
    ]
    .iter()
    .zip(&steps)
    .map(|(name, counts)| format!("{name} {:.1}", per(counts.total())))
    .collect();
    report.note(format!(
        "storage requests per workflow, {}: by operation {}; by step {}; each status poll \
         costs {:.1} more{}",
        backend.name,
        by_op.join(", "),
        by_step.join(", "),
        if polls > 0 {
            poll_counts.total() as f64 / f64::from(polls)
        } else {
            0.0
        },
        if late > 0 {
            format!(" ({late} polls found the workflow not yet there: some work ran after idle() returned and may be counted as polls)")
        } else {
            String::new()
        }
    ));
    Ok(())
}

/// Storage requests while nothing happens: a real minute of local mode (its work driver and its
/// sweep included), or in quick mode one sweep, which is what local mode runs each minute (the
/// driver sleeps while idle; on Azurite it also looks at the queue once a minute).
pub async fn idle(backends: &[Backend], profile: &Profile, report: &mut Report) -> Result<()> {
    for backend in backends {
        let ids = upload_many(
            &backend.api,
            WAITING_WHILE_IDLE,
            profile.concurrency,
            "idle",
        )
        .await?;
        wait_all(&backend.api, &ids, AWAITING_UPLOAD, profile.concurrency).await?;
        backend.app.idle().await?;
        settle().await;
        backend.app.counter.take();
    }
    if profile.idle_real {
        eprintln!("bench: idling 60 s");
        tokio::time::sleep(Duration::from_secs(60)).await;
    } else {
        for backend in backends {
            let files = backend.app.state.files.clone();
            let swept = backend
                .app
                .run(async move { files.sweep_uploads().await })
                .await?;
            if let Err(e) = swept {
                return failed(format!("sweep failed: {}", crate::error::chain(&e)));
            }
        }
    }
    for backend in backends {
        let counts = backend.app.counter.take();
        let window = if profile.idle_real {
            format!("60 s, {WAITING_WHILE_IDLE} workflows waiting, local mode")
        } else {
            format!("one sweep = 1 min simulated, {WAITING_WHILE_IDLE} waiting")
        };
        report.add(
            Line::new(
                format!("storage requests while idle, {} ({window})", backend.name),
                counts.to_string(),
            )
            .baseline("Durable Functions: polls queues around the clock")
            .target("≤ 2 a minute", counts.total() <= 2),
        );
    }
    Ok(())
}

/// Finished workflows written straight through the engine: started, then rejected at upload
/// (two turns each, as a real rejection; no file is needed for that path).
async fn preload_finished(app: &InProcessApp, range: std::ops::Range<usize>) -> Result<()> {
    use file_approver::domain::ApprovalStage;
    use file_approver::workflow::{
        decision_event, start_for_file, DecisionEvent, FileInput, OnVersion,
    };
    let engine = app.state.files.engine().clone();
    app.run(async move {
        futures::stream::iter(range)
            .map(|i| {
                let engine = engine.clone();
                async move {
                    let now = chrono::Utc::now();
                    let file = FileInput {
                        id: uuid::Uuid::new_v4().to_string(),
                        name: format!("history-{i}.txt"),
                        content_type: "text/plain".into(),
                        content_type_declared: true,
                        size: SMALL_FILE as u64,
                        created_time: now,
                        approval_timeout_secs: None,
                        direct: None,
                        uploader: None,
                        rules: Default::default(),
                        notify: false,
                        reminder_before_secs: None,
                        retention_secs: None,
                        scan: None,
                        pinned: None,
                        blob: None,
                        version: 1,
                    };
                    start_for_file(&engine, &file).await?;
                    let rejection = decision_event(
                        &DecisionEvent {
                            stage: ApprovalStage::Upload,
                            approved: false,
                            reviewer: "bench".into(),
                            reviewer_id: None,
                            comment: None,
                            decided_time: now,
                            withdrawal: false,
                            changes_requested: false,
                            version: 1,
                        },
                        OnVersion::Stated(1),
                    )?;
                    engine.raise_event(&file.id, rejection).await?;
                    Ok::<_, file_approver::engine::EngineError>(())
                }
            })
            .buffer_unordered(PRELOAD_CONCURRENCY)
            .try_collect::<()>()
            .await
    })
    .await??;
    Ok(())
}

const PRELOAD_CONCURRENCY: usize = 32;
/// Files left waiting for upload approval beside the history: a reviewer's live queue.
const LIVE_FILES: usize = 30;
/// Page requests per stage and size.
const PAGE_RUNS: usize = 10;

/// Cost that must not grow with history: at each size of preloaded history, the app's storage
/// requests in an idle minute and a reviewer's page of 20 (requests and latency), for the
/// history's own stage (`Rejected`) and for the live queue (`AwaitingUploadApproval`).
pub async fn history(backend: &Backend, profile: &Profile, report: &mut Report) -> Result<()> {
    let (api, app) = (&backend.api, &backend.app);
    let sizes: &[usize] = if backend.name == "embedded" {
        &profile.history_sizes
    } else {
        &profile.history_sizes_azure
    };
    let live = upload_many(api, LIVE_FILES, profile.concurrency, "live").await?;
    wait_all(api, &live, AWAITING_UPLOAD, profile.concurrency).await?;
    let mut loaded = 0;
    // (size, stage, requests per page, p50 ms) and (size, idle minute).
    let mut pages: Vec<(usize, &str, f64, f64)> = Vec::new();
    let mut idles = Vec::new();
    for &size in sizes {
        let started = Instant::now();
        preload_finished(app, loaded..size).await?;
        let rate = (size - loaded) as f64 / started.elapsed().as_secs_f64();
        loaded = size;
        app.idle().await?;
        idles.push((size, idle_minute(backend, profile).await?));
        for stage in ["Rejected", "AwaitingUploadApproval"] {
            let mut latency = Samples::new();
            app.counter.take();
            for _ in 0..PAGE_RUNS {
                let t = Instant::now();
                let page = api
                    .http()
                    .get(api.url(&format!("/api/files?stage={stage}&top=20")))
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                let page: serde_json::Value = serde_json::from_slice(&page)?;
                latency.push(millis(t.elapsed()));
                let listed = page["files"].as_array().map_or(0, Vec::len);
                if listed != 20 {
                    return failed(format!("a page of {stage} held {listed} files, not 20"));
                }
            }
            let requests = app.counter.take().total() as f64 / PAGE_RUNS as f64;
            pages.push((size, stage, requests, latency.median()));
        }
        report.note(format!(
            "history {size}, {}: preloaded at {rate:.0} finished workflows/s ({PRELOAD_CONCURRENCY} at a time, through the engine)",
            backend.name
        ));
    }
    for &(size, stage, requests, p50) in &pages {
        // Flat: within one request of the smallest history's page.
        let first = pages
            .iter()
            .find(|(_, s, _, _)| *s == stage)
            .map_or(requests, |p| p.2);
        report.add(
            Line::new(
                format!("page of 20 {stage}, {}, history {size}", backend.name),
                format!("{requests:.1} requests, p50 {p50:.1} ms"),
            )
            .baseline(format!("history {}: {first:.1} requests", sizes[0]))
            .target("same at every size (±1)", (requests - first).abs() <= 1.0),
        );
    }
    for (size, idle) in idles {
        report.add(
            Line::new(
                format!(
                    "storage requests while idle, {}, history {size}",
                    backend.name
                ),
                idle.to_string(),
            )
            .baseline("before issue 9: a scan of every state row each minute")
            .target("≤ 2 a minute", idle.total() <= 2),
        );
    }
    Ok(())
}

/// The app's own requests in an idle minute: a real one in full mode; in quick mode one sweep,
/// which is what local mode runs each minute (plus, on Azure, the driver's one receive a
/// minute, which the quick window does not reach).
async fn idle_minute(backend: &Backend, profile: &Profile) -> Result<RequestCounts> {
    let app = &backend.app;
    settle().await;
    app.counter.take();
    if profile.idle_real {
        tokio::time::sleep(Duration::from_secs(60)).await;
    } else {
        let files = app.state.files.clone();
        if let Err(e) = app.run(async move { files.sweep_uploads().await }).await? {
            return failed(format!("sweep failed: {}", crate::error::chain(&e)));
        }
    }
    Ok(app.counter.take())
}

/// Lets the work driver finish the look it takes after the last message (drain() returns once
/// nothing is left to run, a moment before the driver goes to sleep), so that an idle window
/// measures idleness.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}
