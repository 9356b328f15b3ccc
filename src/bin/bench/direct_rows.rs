//! Files of any size through upload URLs: the bytes go straight to storage, never through the
//! app. On the embedded store, a streamed `PUT` to the app's upload route against `cp` of the
//! same file; on Azurite, the official Python SDK uploading to the upload URL (a SAS) against
//! the same SDK uploading the same file to a container of its own with the account key; then
//! the handler's peak memory while it analyses the file, and how soon after the upload approval
//! the analysis is done (the bytes are pinned when the workflow starts: nothing waits for the
//! upload URL to expire).

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api::{expect, Api, AWAITING_DOWNLOAD};
use crate::data;
use crate::error::{failed, IoContext, Result};
use crate::process_rows::{
    blocking, command, mib_per_s, path_arg, settle_disk, size_label, start_child,
};
use crate::procs::Mode;
use crate::report::{Line, Report, Samples, MIB};
use crate::{app_vars, token, Context};

pub async fn direct_upload(ctx: &Context, report: &mut Report) -> Result<()> {
    let size = ctx.profile.direct_upload_bytes;
    let file = ctx.work.path().join("direct.bin");
    {
        let file = file.clone();
        blocking(move || data::write_random_file(&file, size)).await?;
    }
    let embedded = embedded(ctx, &file, size, report).await;
    let azure = match (&ctx.azurite, &ctx.python) {
        (Some(_), Some(_)) => azurite(ctx, &file, size, report).await,
        (None, _) => Ok(()),
        (Some(_), None) => {
            report.note(
                "upload URL on Azurite: skipped, no Python with azure-storage-blob (BENCH_PYTHON; scripts/bench installs one)",
            );
            Ok(())
        }
    };
    std::fs::remove_file(&file).context(|| format!("remove {}", file.display()))?;
    embedded.and(azure)
}

pub(crate) fn vars(
    ctx: &Context,
    name: &str,
    azure: Option<&str>,
) -> Result<Vec<(String, String)>> {
    // The default upload URL lifetime (15 minutes): the analysis must not wait for it.
    Ok(app_vars(&ctx.work.dir(name)?, azure, None))
}

/// `POST /api/files/uploads`: the file's id and its upload URL.
pub(crate) async fn declare(api: &Api, name: &str, size: u64) -> Result<(String, String)> {
    let response = api
        .http()
        .post(api.url("/api/files/uploads"))
        .header(CONTENT_TYPE, "application/json")
        .body(json!({"name": name, "size": size}).to_string())
        .send()
        .await?;
    let ticket = expect(response, &[StatusCode::CREATED], "declare an upload").await?;
    match (ticket["id"].as_str(), ticket["uploadUrl"].as_str()) {
        (Some(id), Some(url)) => Ok((id.to_owned(), url.to_owned())),
        _ => failed(format!(
            "an upload ticket without id or uploadUrl: {ticket}"
        )),
    }
}

async fn embedded(
    ctx: &Context,
    file: &std::path::Path,
    size: u64,
    report: &mut Report,
) -> Result<()> {
    let data_dir = ctx.work.dir("direct-embedded")?;
    let app = start_child(
        ctx.handler.clone(),
        Mode::Local,
        vars(ctx, "direct-embedded", None)?,
        ctx.work.path().join("direct-embedded.log"),
    )
    .await?;
    let api = Api::new(app.base_url())?;
    let copy = ctx.work.path().join("direct-copy.bin");
    let (mut through, mut cp, mut cp_fsync) = (Samples::new(), Samples::new(), Samples::new());
    let mut peak = 0u64;
    let mut last = None;
    for run in 0..ctx.profile.direct_upload_runs {
        eprintln!(
            "bench: upload URL, embedded, run {}/{}",
            run + 1,
            ctx.profile.direct_upload_runs
        );
        settle_disk().await?;
        let started = Instant::now();
        command("cp", vec![path_arg(file), path_arg(&copy)]).await?;
        cp.push(mib_per_s(size, started.elapsed()));
        command("sync", vec![path_arg(&copy)]).await?;
        cp_fsync.push(mib_per_s(size, started.elapsed()));
        std::fs::remove_file(&copy).context(|| format!("remove {}", copy.display()))?;

        let (id, url) = declare(&api, "direct.bin", size).await?;
        last = Some(id);
        settle_disk().await?;
        app.reset_peak()?;
        let started = Instant::now();
        let response = api
            .http()
            .put(&url)
            .header("x-ms-blob-type", "BlockBlob")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(data::file_body(file).await?)
            .send()
            .await?;
        expect(
            response,
            &[StatusCode::CREATED],
            "PUT through the upload URL",
        )
        .await?;
        through.push(mib_per_s(size, started.elapsed()));
        peak = peak.max(app.memory("VmHWM")?);
    }
    // The store fsyncs before it answers 201: the fair copy is fsynced too (issue 26).
    let ratio = through.median() / cp_fsync.median();
    report.add(
        Line::new(
            format!(
                "upload URL {}, embedded (one streamed PUT)",
                size_label(size)
            ),
            through.summary(0, "MiB/s"),
        )
        .baseline(format!("cp + fsync {}", cp_fsync.summary(0, "MiB/s")))
        .ratio(ratio)
        .target("≥ 0.9× cp + fsync", ratio >= 0.9),
    );
    report.add(
        Line::new(
            format!("peak RSS of handler during upload URL {}", size_label(size)),
            format!("{:.1} MiB", peak as f64 / MIB),
        )
        .target("≤ 64 MiB", (peak as f64) <= 64.0 * MIB),
    );
    report.note(format!(
        "upload URL, embedded: against cp alone ({}, the copy left in the page cache) the upload is {:.2}×",
        cp.summary(0, "MiB/s"),
        through.median() / cp.median(),
    ));
    if let Some(id) = last {
        approval_to_analysed(&api, &id, size, "embedded", report).await?;
    }
    if ctx.python.is_some() {
        // The official SDK sends a file this large in blocks (Put Block + Put Block List): the
        // embedded store's route must take them, and its commit must start the workflow.
        let (id, url) = declare(&api, "direct.bin", size).await?;
        settle_disk().await?;
        let seconds = sdk_upload(ctx, vec!["url".into(), url, path_arg(file)]).await?;
        api.wait_for_stage(
            &id,
            crate::api::AWAITING_UPLOAD,
            Duration::from_millis(50),
            Duration::from_secs(60),
        )
        .await?;
        report.note(format!(
            "upload URL, embedded: the Python SDK (azure-storage-blob) sent {} in blocks at {:.0} MiB/s, and the file reached AwaitingUploadApproval",
            size_label(size),
            size as f64 / MIB / seconds
        ));
    }
    drop(app);
    std::fs::remove_dir_all(&data_dir).context(|| format!("remove {}", data_dir.display()))?;
    Ok(())
}

/// Runs `scripts/bench_sdk_upload.py` and returns the seconds the SDK's upload took.
pub(crate) async fn sdk_upload(ctx: &Context, args: Vec<String>) -> Result<f64> {
    let Some(python) = &ctx.python else {
        return failed("no Python");
    };
    let mut all = vec!["scripts/bench_sdk_upload.py".to_owned()];
    all.extend(args);
    let python = python.clone();
    let out = blocking(move || {
        let output = std::process::Command::new(&python)
            .args(&all)
            .output()
            .context(|| format!("run {}", python.display()))?;
        if !output.status.success() {
            return failed(format!(
                "the SDK upload failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    })
    .await?;
    let answer: Value = serde_json::from_str(out.trim())?;
    match answer["seconds"].as_f64() {
        Some(s) => Ok(s),
        None => failed(format!("the SDK script answered {answer}")),
    }
}

async fn azurite(
    ctx: &Context,
    file: &std::path::Path,
    size: u64,
    report: &mut Report,
) -> Result<()> {
    let Some(azurite) = &ctx.azurite else {
        return Ok(());
    };
    let cs = azurite.connection_string.clone();
    let app = start_child(
        ctx.handler.clone(),
        Mode::Local,
        vars(ctx, "direct-azurite", Some(&cs))?,
        ctx.work.path().join("direct-azurite.log"),
    )
    .await?;
    let api = Api::new(app.base_url())?;
    let (mut through, mut own) = (Samples::new(), Samples::new());
    let mut last = None;
    for run in 0..ctx.profile.direct_upload_runs {
        eprintln!(
            "bench: upload URL, Azurite, run {}/{}",
            run + 1,
            ctx.profile.direct_upload_runs
        );
        settle_disk().await?;
        let seconds = sdk_upload(
            ctx,
            vec![
                "connection".into(),
                cs.clone(),
                "benchsdk".into(),
                path_arg(file),
            ],
        )
        .await?;
        own.push(size as f64 / MIB / seconds);

        let (id, url) = declare(&api, "direct.bin", size).await?;
        settle_disk().await?;
        let seconds = sdk_upload(ctx, vec!["url".into(), url, path_arg(file)]).await?;
        through.push(size as f64 / MIB / seconds);
        let response = api
            .http()
            .post(api.url(&format!("/api/files/{id}/complete")))
            .send()
            .await?;
        expect(response, &[StatusCode::OK], "complete").await?;
        last = Some(id);
    }
    let ratio = through.median() / own.median();
    report.add(
        Line::new(
            format!(
                "upload URL {}, Azurite, Python SDK (azure-storage-blob)",
                size_label(size)
            ),
            through.summary(0, "MiB/s"),
        )
        .baseline(format!(
            "same SDK, own container {}",
            own.summary(0, "MiB/s")
        ))
        .ratio(ratio)
        .target("≥ 0.9×", ratio >= 0.9),
    );

    // The analysis of the last one, with its upload URL still valid for minutes.
    let Some(id) = last else {
        return Ok(());
    };
    app.reset_peak()?;
    approval_to_analysed(&api, &id, size, "Azurite", report).await?;
    let peak = app.memory("VmHWM")?;
    report.add(
        Line::new(
            format!(
                "peak RSS of handler during the analysis of {} (upload URL, Azurite)",
                size_label(size)
            ),
            format!("{:.1} MiB", peak as f64 / MIB),
        )
        .target("≤ 64 MiB", (peak as f64) <= 64.0 * MIB),
    );
    drop(app);
    Ok(())
}

/// Approves the upload of file `id` (once it awaits it) and times how long until it awaits the
/// download approval, against the analysis's own time as the history tells it (whole seconds).
/// Nothing may wait for the upload URL to expire: the target is the analysis + 5 s.
async fn approval_to_analysed(
    api: &Api,
    id: &str,
    size: u64,
    store: &str,
    report: &mut Report,
) -> Result<()> {
    let poll = Duration::from_millis(50);
    api.wait_for_stage(
        id,
        crate::api::AWAITING_UPLOAD,
        poll,
        Duration::from_secs(60),
    )
    .await?;
    api.approve(id, "upload", &token(0)).await?;
    let started = Instant::now();
    api.wait_for_stage(id, AWAITING_DOWNLOAD, poll, Duration::from_secs(1200))
        .await?;
    let total = started.elapsed().as_secs_f64();
    let analysis = analysis_seconds(api, id).await?;
    report.add(
        Line::new(
            format!(
                "upload URL {}, {store}: upload approval → AwaitingDownloadApproval",
                size_label(size)
            ),
            format!("{total:.1} s"),
        )
        .baseline(format!("the analysis itself {analysis:.0} s (history)"))
        .target("≤ analysis + 5 s", total <= analysis + 5.0),
    );
    Ok(())
}

/// From `analysisStarted` to `analyzed` in file `id`'s history, in seconds (the history's
/// times are whole seconds).
async fn analysis_seconds(api: &Api, id: &str) -> Result<f64> {
    let response = api
        .http()
        .get(api.url(&format!("/api/files/{id}/history")))
        .send()
        .await?;
    let history = expect(response, &[StatusCode::OK], "history").await?;
    let time_of = |step: &str| {
        history["steps"]
            .as_array()
            .and_then(|steps| steps.iter().rev().find(|s| s["step"] == step))
            .and_then(|s| s["time"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    match (time_of("analysisStarted"), time_of("analyzed")) {
        (Some(start), Some(end)) => Ok((end - start).num_milliseconds() as f64 / 1000.0),
        _ => failed(format!("file {id}'s history has no analysis: {history}")),
    }
}
