//! Rows measured on `handler` as a child process, where its memory or start-up is the point:
//! cold start, big uploads (embedded and Azurite), the analysis of a big file, and the blob
//! trigger's base64 payload.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;

use file_approver::store::azure::AzureStore;
use file_approver::store::{PutBlobOptions, Storage};

use crate::api::{expect, Api, AWAITING_DOWNLOAD};
use crate::data;
use crate::error::{failed, IoContext, Result};
use crate::procs::{self, ChildApp, Mode};
use crate::report::{millis, Line, Report, Samples, MIB};
use crate::{app_vars, token, Context};

/// Runs a blocking closure off the async workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// Runs a command to completion; fails on a non-zero exit. Returns its standard output.
pub(crate) async fn command(program: &'static str, args: Vec<String>) -> Result<String> {
    blocking(move || {
        let output = std::process::Command::new(program)
            .args(&args)
            .output()
            .context(|| format!("run {program}"))?;
        if !output.status.success() {
            return failed(format!(
                "{program} {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    })
    .await
}

pub(crate) fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Flushes dirty pages so each measurement starts without a previous one's write-back.
pub(crate) async fn settle_disk() -> Result<()> {
    command("sync", Vec::new()).await.map(drop)
}

pub(crate) fn mib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / MIB / took.as_secs_f64()
}

pub(crate) fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

pub(crate) async fn start_child(
    handler: PathBuf,
    mode: Mode,
    vars: Vec<(String, String)>,
    log: PathBuf,
) -> Result<ChildApp> {
    blocking(move || ChildApp::start(&handler, mode, &vars, &log)).await
}

/// Process start → first `GET /` 200, on each backend; and the binary's size.
pub async fn cold_start(ctx: &Context, report: &mut Report) -> Result<()> {
    let mut backends: Vec<(&str, Option<String>)> = vec![("embedded", None)];
    if let Some(azurite) = &ctx.azurite {
        backends.push(("Azurite", Some(azurite.connection_string.clone())));
    }
    for (name, azure) in backends {
        let data = ctx.work.dir(&format!("cold-{name}"))?;
        let vars = app_vars(&data, azure.as_deref(), None);
        let log = ctx.work.path().join(format!("cold-{name}.log"));
        let mut samples = Samples::new();
        for _ in 0..ctx.profile.cold_starts {
            let (handler, vars, log) = (ctx.handler.clone(), vars.clone(), log.clone());
            let took = blocking(move || procs::cold_start(&handler, &vars, &log)).await?;
            samples.push(millis(took));
        }
        report.add(
            Line::new(
                format!(
                    "cold start, {name} (spawn → GET / 200, n={})",
                    samples.len()
                ),
                samples.summary(1, "ms"),
            )
            .target("≤ 100 ms", samples.median() <= 100.0),
        );
    }
    let size = std::fs::metadata(&ctx.handler)
        .context(|| format!("stat {}", ctx.handler.display()))?
        .len();
    report.add(Line::new(
        "handler binary size (release)",
        format!("{:.1} MiB", size as f64 / MIB),
    ));
    Ok(())
}

/// What one pass of the big-file rows measured.
struct BigFile {
    upload: Samples,
    cp: Samples,
    cp_fsync: Samples,
    peak: u64,
    analysis: Samples,
    openssl: Samples,
    /// The `sha2` crate (the analyzer's hasher) over the same file, in this process.
    sha2_crate: Samples,
    sha256: String,
}

/// Uploads a big file through `POST /api/files` on the embedded store (against `cp`), then
/// has each upload analysed (against `openssl dgst -sha256`).
pub async fn upload_and_analysis(ctx: &Context, report: &mut Report) -> Result<()> {
    let size = ctx.profile.upload_bytes;
    let big = ctx.work.path().join("big.bin");
    eprintln!("bench: writing {} of test data", size_label(size));
    {
        let big = big.clone();
        blocking(move || data::write_random_file(&big, size)).await?;
    }
    let data_dir = ctx.work.dir("upload-embedded")?;
    let mut app = start_child(
        ctx.handler.clone(),
        Mode::Local,
        app_vars(&data_dir, None, Some(size)),
        ctx.work.path().join("upload-embedded.log"),
    )
    .await?;
    let api = Api::new(app.base_url())?;
    let rss_at_rest = app.memory("VmRSS")?;
    let measured = measure_big_file(ctx, &app, &api, &big)
        .await
        .map_err(|e| app.explain(e));
    drop(app);
    std::fs::remove_file(&big).context(|| format!("remove {}", big.display()))?;
    std::fs::remove_dir_all(&data_dir).context(|| format!("remove {}", data_dir.display()))?;
    let m = measured?;

    // The store fsyncs every blob before it answers 201, so the fair copy is fsynced too
    // (issue 26's target).
    let ratio = m.upload.median() / m.cp_fsync.median();
    report.add(
        Line::new(
            format!("upload {}, embedded (POST /api/files)", size_label(size)),
            m.upload.summary(0, "MiB/s"),
        )
        .baseline(format!("cp + fsync {}", m.cp_fsync.summary(0, "MiB/s")))
        .ratio(ratio)
        .target("≥ 0.9× cp + fsync", ratio >= 0.9),
    );
    report.note(format!(
        "upload, embedded: against cp alone ({}, the copy left in the page cache) the upload \
         is {:.2}×",
        m.cp.summary(0, "MiB/s"),
        m.upload.median() / m.cp.median()
    ));
    report.add(
        Line::new(
            format!("peak RSS of handler during upload {}", size_label(size)),
            format!("{:.1} MiB", m.peak as f64 / MIB),
        )
        .baseline(format!("at rest {:.1} MiB", rss_at_rest as f64 / MIB))
        .target("≤ 64 MiB", (m.peak as f64) <= 64.0 * MIB),
    );
    let ratio = m.analysis.median() / m.openssl.median();
    report.add(
        Line::new(
            format!(
                "analysis {} (approve → AwaitingDownloadApproval)",
                size_label(size)
            ),
            m.analysis.summary(0, "MiB/s"),
        )
        .baseline(format!(
            "openssl dgst -sha256 {}",
            m.openssl.summary(0, "MiB/s")
        ))
        .ratio(ratio)
        // Issue 9's floor (it was 0.8× before): the queue must not cost the analysis speed.
        .target("≥ 0.9×", ratio >= 0.9),
    );
    report.note(format!(
        "analysis: the app's sha256 matched openssl's ({}…); timing includes the approve \
         request and up to 20 ms of status polling",
        m.sha256.chars().take(12).collect::<String>()
    ));
    report.note(format!(
        "analysis: the sha2 crate alone hashes the same file at {} (read + hash in one thread), \
         {:.2}× openssl: the analysis runs at {:.2}× that library ceiling",
        m.sha2_crate.summary(0, "MiB/s"),
        m.sha2_crate.median() / m.openssl.median(),
        m.analysis.median() / m.sha2_crate.median()
    ));
    Ok(())
}

async fn measure_big_file(ctx: &Context, app: &ChildApp, api: &Api, big: &Path) -> Result<BigFile> {
    let size = ctx.profile.upload_bytes;
    let runs = ctx.profile.upload_runs;
    let (mut upload, mut cp, mut cp_fsync) = (Samples::new(), Samples::new(), Samples::new());
    let mut peak = 0u64;
    let mut ids = Vec::new();
    let copy = ctx.work.path().join("copy.bin");
    for run in 0..runs {
        eprintln!("bench: upload run {}/{runs}", run + 1);
        settle_disk().await?;
        let started = Instant::now();
        command("cp", vec![path_arg(big), path_arg(&copy)]).await?;
        let copied = started.elapsed();
        command("sync", vec![path_arg(&copy)]).await?;
        let synced = started.elapsed();
        cp.push(mib_per_s(size, copied));
        cp_fsync.push(mib_per_s(size, synced));
        std::fs::remove_file(&copy).context(|| format!("remove {}", copy.display()))?;

        settle_disk().await?;
        app.reset_peak()?;
        let started = Instant::now();
        let id = api
            .upload("big.bin", data::file_body(big).await?, Some(size))
            .await?;
        upload.push(mib_per_s(size, started.elapsed()));
        peak = peak.max(app.memory("VmHWM")?);
        ids.push(id);
    }

    // Each uploaded file waits for its upload approval: approve, and time until the analysis
    // is recorded.
    let (mut analysis, mut openssl, mut sha2_crate) =
        (Samples::new(), Samples::new(), Samples::new());
    let mut sha256 = String::new();
    for (run, id) in ids.iter().enumerate() {
        eprintln!("bench: analysis run {}/{}", run + 1, ids.len());
        settle_disk().await?;
        let started = Instant::now();
        let out = command(
            "openssl",
            vec!["dgst".into(), "-sha256".into(), path_arg(big)],
        )
        .await?;
        openssl.push(mib_per_s(size, started.elapsed()));
        sha256 = out.trim().rsplit(' ').next().unwrap_or("").to_owned();

        let started = Instant::now();
        let crate_sha256 = sha2_of_file(big.to_path_buf()).await?;
        sha2_crate.push(mib_per_s(size, started.elapsed()));
        if crate_sha256 != sha256 {
            return failed(format!(
                "the sha2 crate's {crate_sha256:?} differs from openssl's {sha256:?}"
            ));
        }

        let started = Instant::now();
        api.approve(id, "upload", &token(0)).await?;
        api.wait_for_stage(
            id,
            AWAITING_DOWNLOAD,
            Duration::from_millis(20),
            Duration::from_secs(600),
        )
        .await?;
        analysis.push(mib_per_s(size, started.elapsed()));
        let status = api.status(id).await?;
        let found = status["analysis"]["sha256"].as_str().unwrap_or("");
        if found != sha256 {
            return failed(format!(
                "the analysis' sha256 {found:?} differs from openssl's {sha256:?}"
            ));
        }
    }
    Ok(BigFile {
        upload,
        cp,
        cp_fsync,
        peak,
        analysis,
        openssl,
        sha2_crate,
        sha256,
    })
}

/// A host-shaped blob-trigger invocation carrying a big blob in base64: how much memory the
/// handler needs to skip it.
pub async fn blob_trigger(ctx: &Context, report: &mut Report) -> Result<()> {
    let raw = ctx.profile.trigger_bytes;
    let data_dir = ctx.work.dir("trigger")?;
    let app = start_child(
        ctx.handler.clone(),
        Mode::CustomHandler,
        app_vars(&data_dir, None, None),
        ctx.work.path().join("trigger.log"),
    )
    .await?;
    let api = Api::new(app.base_url())?;
    let id = api
        .upload(
            "small.txt",
            reqwest::Body::from(data::text_file(0, 4096)),
            None,
        )
        .await?;
    let (before, after) = data::trigger_envelope(&id, raw)?;
    let total = before.len() as u64 + data::base64_len(raw) + after.len() as u64;

    let mut worst = 0u64;
    for sized in [false, true] {
        app.reset_peak()?;
        let at_start = app.memory("VmHWM")?;
        let body = futures::stream::once({
            let before = Bytes::from(before.clone());
            async move { Ok::<Bytes, std::io::Error>(before) }
        })
        .chain(data::base64_stream(raw))
        .chain(futures::stream::once({
            let after = Bytes::from(after.clone());
            async move { Ok(after) }
        }));
        let mut request = api
            .http()
            .post(api.url("/orchestrator"))
            .header(CONTENT_TYPE, "application/json");
        if sized {
            request = request.header(CONTENT_LENGTH, total);
        }
        let started = Instant::now();
        let response = request
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await?;
        let reply = expect(response, &[StatusCode::OK], "orchestrator invocation").await?;
        let took = started.elapsed();
        let extra = app.memory("VmHWM")?.saturating_sub(at_start);
        worst = worst.max(extra);
        report.note(format!(
            "blob trigger ({}): extra {:.1} MiB, {:.0} ms, Logs {}",
            if sized { "Content-Length" } else { "chunked" },
            extra as f64 / MIB,
            millis(took),
            reply["Logs"]
        ));
    }
    report.add(
        Line::new(
            format!(
                "blob-trigger payload {} (extra handler RSS)",
                size_label(raw)
            ),
            format!("{:.1} MiB", worst as f64 / MIB),
        )
        .baseline(format!("payload {:.1} MiB", total as f64 / MIB))
        .ratio(worst as f64 / total as f64)
        .target("≤ 32 MiB extra", (worst as f64) <= 32.0 * MIB),
    );
    drop(app);
    std::fs::remove_dir_all(&data_dir).context(|| format!("remove {}", data_dir.display()))?;
    Ok(())
}

/// A big upload through the app into Azurite, against the same bytes sent straight to the
/// same Azurite by the storage layer (`AzureStore::put_blob`).
pub async fn azure_upload(ctx: &Context, report: &mut Report) -> Result<()> {
    let Some(azurite) = &ctx.azurite else {
        return failed("Azurite is not available (run scripts/bench, or npm ci)");
    };
    let size = ctx.profile.azure_upload_bytes;
    let runs = ctx.profile.azure_upload_runs;
    let file = ctx.work.path().join("azure.bin");
    {
        let file = file.clone();
        blocking(move || data::write_random_file(&file, size)).await?;
    }
    let data_dir = ctx.work.dir("upload-azure")?;
    let app = start_child(
        ctx.handler.clone(),
        Mode::Local,
        app_vars(&data_dir, Some(&azurite.connection_string), Some(size)),
        ctx.work.path().join("upload-azure.log"),
    )
    .await?;
    let api = Api::new(app.base_url())?;
    let direct = AzureStore::from_connection_string(&azurite.connection_string)?;
    direct.ensure_container("benchdirect").await?;
    let options = PutBlobOptions {
        content_type: "application/octet-stream".into(),
        max_bytes: None,
    };

    let (mut through_app, mut straight) = (Samples::new(), Samples::new());
    let mut peak = 0u64;
    for run in 0..runs {
        eprintln!("bench: Azurite upload run {}/{runs}", run + 1);
        // One name for every run: each write replaces the last, so Azurite's disk holds one copy.
        let started = Instant::now();
        direct
            .put_blob(
                "benchdirect",
                "run",
                data::file_stream(&file).await?,
                &options,
            )
            .await?;
        straight.push(mib_per_s(size, started.elapsed()));

        app.reset_peak()?;
        let started = Instant::now();
        api.upload("azure.bin", data::file_body(&file).await?, Some(size))
            .await?;
        through_app.push(mib_per_s(size, started.elapsed()));
        peak = peak.max(app.memory("VmHWM")?);
    }
    let ratio = through_app.median() / straight.median();
    report.add(
        Line::new(
            format!("upload {}, Azurite (POST /api/files)", size_label(size)),
            through_app.summary(0, "MiB/s"),
        )
        .baseline(format!(
            "AzureStore::put_blob {}",
            straight.summary(0, "MiB/s")
        ))
        .ratio(ratio)
        .target("≥ 0.8×", ratio >= 0.8),
    );
    report.note(format!(
        "upload, Azurite: handler peak RSS {:.1} MiB ({} MiB blocks, {} in flight)",
        peak as f64 / MIB,
        file_approver::store::azure::DEFAULT_BLOCK_SIZE >> 20,
        file_approver::store::azure::DEFAULT_BLOCKS_IN_FLIGHT
    ));
    drop(app);
    std::fs::remove_file(&file).context(|| format!("remove {}", file.display()))?;
    Ok(())
}

/// SHA-256 of a file with the `sha2` crate, read in 64 KiB blocks on a blocking thread.
async fn sha2_of_file(path: PathBuf) -> Result<String> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use sha2::Digest;
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(hex::encode(hasher.finalize()));
            }
            hasher.update(&buf[..n]);
        }
    })
    .await?
    .context(|| format!("hash {shown} with sha2"))
}

/// A work queue of the row's own, so that no other row's work reaches its processes.
fn takeover_queue(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The environment of one of a takeover row's processes (local mode sweeps nothing: only the
/// killed work is measured).
fn takeover_vars(
    ctx: &Context,
    connection_string: &str,
    queue: &str,
    name: &str,
    size: u64,
) -> Result<Vec<(String, String)>> {
    let mut vars = app_vars(&ctx.work.dir(name)?, Some(connection_string), Some(size));
    vars.push(("FILE_APPROVER_WORK_QUEUE".into(), queue.to_owned()));
    vars.push(("FILE_APPROVER_SWEEP_INTERVAL_SECS".into(), "0".into()));
    Ok(vars)
}

/// A process killed mid-analysis, on Azurite (two processes share its queue; the embedded store
/// belongs to one process): time from the kill to the analysis finished by another process.
/// The mechanism (README, "How work survives a crash"): the local driver holds a received
/// message hidden for 60 s and renews that every 20 s while the work runs; once the renewals
/// stop, the message shows again within 60 s, and the other process's driver, which cannot ask
/// Azure when a hidden message will show, looks at least once a minute.
pub async fn takeover(ctx: &Context, report: &mut Report) -> Result<()> {
    let Some(azurite) = &ctx.azurite else {
        return failed("Azurite is not available (run scripts/bench, or npm ci)");
    };
    // Big enough that the analysis is still running when the process is killed.
    let size = ctx.profile.takeover_bytes;
    let file = ctx.work.path().join("takeover.bin");
    {
        let file = file.clone();
        blocking(move || data::write_random_file(&file, size)).await?;
    }
    let queue = takeover_queue("takeover");
    let vars = |name: &str| takeover_vars(ctx, &azurite.connection_string, &queue, name, size);
    let first = start_child(
        ctx.handler.clone(),
        Mode::Local,
        vars("takeover-a")?,
        ctx.work.path().join("takeover-a.log"),
    )
    .await?;
    let api = Api::new(first.base_url())?;
    let id = api
        .upload("takeover.bin", data::file_body(&file).await?, Some(size))
        .await?;
    api.wait_for_stage(
        &id,
        crate::api::AWAITING_UPLOAD,
        Duration::from_millis(20),
        Duration::from_secs(60),
    )
    .await?;
    api.approve(&id, "upload", &token(0)).await?;
    // The first process's driver has the message and is reading the file.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stage = api.status(&id).await?["stage"].clone();
    if stage != "Analyzing" {
        return failed(format!(
            "the analysis of {} finished before the kill (stage {stage}): use a larger file",
            size_label(size)
        ));
    }
    drop(first); // SIGKILL
    let killed = Instant::now();
    let second = start_child(
        ctx.handler.clone(),
        Mode::Local,
        vars("takeover-b")?,
        ctx.work.path().join("takeover-b.log"),
    )
    .await?;
    let api = Api::new(second.base_url())?;
    api.wait_for_stage(
        &id,
        AWAITING_DOWNLOAD,
        Duration::from_millis(250),
        Duration::from_secs(300),
    )
    .await?;
    let took = killed.elapsed();
    report.add(
        Line::new(
            format!(
                "killed analysis → finished by another process, Azurite ({})",
                size_label(size)
            ),
            format!("{:.0} s", took.as_secs_f64()),
        )
        .baseline("before issue 9: ≥ 5 min (the activity lease)")
        .target("≤ 2 min", took <= Duration::from_secs(120)),
    );
    drop(second);
    let result = takeover_under_host(ctx, &file, size, report).await;
    std::fs::remove_file(&file).context(|| format!("remove {}", file.display()))?;
    result
}

/// The same kill under the Functions host, whose part the benchmark plays as the queues
/// extension does: it receives the work message hidden for 10 minutes (`QueueListener`'s fixed
/// visibility), invokes `/work` with it, and, on an idle queue, looks every 10 s (host.json's
/// `maxPollingInterval`). The instance is killed once its analysis has run long enough to hold
/// a standby copy of the message; another instance gets the copy when it shows.
async fn takeover_under_host(
    ctx: &Context,
    file: &Path,
    size: u64,
    report: &mut Report,
) -> Result<()> {
    /// The host's reception of a work message, and its idle polling.
    const HOST_HIDES: Duration = Duration::from_secs(600);
    const HOST_POLLS: Duration = Duration::from_secs(10);
    let Some(azurite) = &ctx.azurite else {
        return failed("Azurite is not available (run scripts/bench, or npm ci)");
    };
    let queue = takeover_queue("hosttakeover");
    let vars = |name: &str| takeover_vars(ctx, &azurite.connection_string, &queue, name, size);
    let store = AzureStore::from_connection_string(&azurite.connection_string)?;
    let first = start_child(
        ctx.handler.clone(),
        Mode::CustomHandler,
        vars("host-takeover-a")?,
        ctx.work.path().join("host-takeover-a.log"),
    )
    .await?;
    let api = Api::new(first.base_url())?;
    let id = api
        .upload("takeover.bin", data::file_body(file).await?, Some(size))
        .await?;
    // The blob trigger's invocation; the handler skips the blob, so none is sent.
    let (before, after) = data::trigger_envelope(&id, size)?;
    let response = api
        .http()
        .post(api.url("/orchestrator"))
        .header(CONTENT_TYPE, "application/json")
        .body(format!("{before}{after}"))
        .send()
        .await?;
    expect(response, &[StatusCode::OK], "orchestrator invocation").await?;
    api.approve(&id, "upload", &token(0)).await?;
    let message = loop {
        let mut got = store.dequeue(&queue, 1, HOST_HIDES).await?;
        if let Some(message) = got.pop() {
            break message;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The invocation runs until the kill; its answer never comes.
    let invocation = tokio::spawn({
        let request = api
            .http()
            .post(api.url("/work"))
            .header(CONTENT_TYPE, "application/json")
            .body(data::work_invocation(&message));
        async move { request.send().await }
    });
    // Just past the 2 s after which a running activity holds a standby copy.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let stage = api.status(&id).await?["stage"].clone();
    if stage != "Analyzing" {
        return failed(format!(
            "the analysis of {} finished before the kill (stage {stage}): use a larger file",
            size_label(size)
        ));
    }
    drop(first); // SIGKILL
    invocation.abort();
    let killed = Instant::now();
    let second = start_child(
        ctx.handler.clone(),
        Mode::CustomHandler,
        vars("host-takeover-b")?,
        ctx.work.path().join("host-takeover-b.log"),
    )
    .await?;
    let api = Api::new(second.base_url())?;
    let deadline = killed + Duration::from_secs(900);
    let shown = loop {
        let mut got = store.dequeue(&queue, 1, HOST_HIDES).await?;
        if let Some(message) = got.pop() {
            break message;
        }
        if Instant::now() > deadline {
            return failed("no work message showed within 15 minutes of the kill");
        }
        tokio::time::sleep(HOST_POLLS).await;
    };
    let shown_after = killed.elapsed();
    let response = api
        .http()
        .post(api.url("/work"))
        .header(CONTENT_TYPE, "application/json")
        .body(data::work_invocation(&shown))
        .send()
        .await?;
    expect(response, &[StatusCode::OK], "work invocation").await?;
    store.delete_message(&queue, &shown.receipt).await?;
    let stage = api.status(&id).await?["stage"].clone();
    if stage != AWAITING_DOWNLOAD {
        return failed(format!(
            "after the takeover the file is {stage}, not {AWAITING_DOWNLOAD}"
        ));
    }
    let took = killed.elapsed();
    report.note(format!(
        "killed analysis under the host: the standby copy showed {:.0} s after the kill (the host's own message stays hidden for 10 min); the second instance's analysis took {:.0} s",
        shown_after.as_secs_f64(),
        (took - shown_after).as_secs_f64()
    ));
    report.add(
        Line::new(
            format!(
                "killed analysis → finished by another instance, host played, Azurite ({})",
                size_label(size)
            ),
            format!("{:.0} s", took.as_secs_f64()),
        )
        .baseline("the host's redelivery alone: 10 min (fixed visibility)")
        .target("≤ 2 min", took <= Duration::from_secs(120)),
    );
    drop(second);
    Ok(())
}
