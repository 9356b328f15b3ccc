//! The command-line client on Azurite: `file-approver upload` of a large file (straight to
//! storage, in parallel blocks) against the official Python SDK's `upload_blob` to the same kind
//! of upload URL, with the client's peak memory; then `file-approver download` (which checks the
//! SHA-256) against `curl` followed by `sha256sum` of the same file.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::{Api, AWAITING_DOWNLOAD};
use crate::data;
use crate::direct_rows::{declare, sdk_upload, vars};
use crate::error::{failed, IoContext, Result};
use crate::process_rows::{blocking, path_arg, settle_disk, size_label, start_child};
use crate::procs::{proc_status_bytes, Mode};
use crate::report::{Line, Report, Samples, MIB};
use crate::{token, Context};

pub async fn cli(ctx: &Context, report: &mut Report) -> Result<()> {
    let (Some(azurite), Some(_)) = (&ctx.azurite, &ctx.python) else {
        report.note("command-line client: skipped, it needs Azurite and a Python with azure-storage-blob (scripts/bench installs one)");
        return Ok(());
    };
    let client = ctx.handler.with_file_name("file-approver");
    if !client.is_file() {
        return failed(format!("no client at {}", client.display()));
    }
    let size = ctx.profile.direct_upload_bytes;
    // Absolute: the client runs in the work directory.
    let work =
        std::fs::canonicalize(ctx.work.path()).context(|| "the work directory".to_owned())?;
    let file = work.join("cli.bin");
    {
        let file = file.clone();
        blocking(move || data::write_random_file(&file, size)).await?;
    }
    let app = start_child(
        ctx.handler.clone(),
        Mode::Local,
        vars(ctx, "cli-azurite", Some(&azurite.connection_string))?,
        ctx.work.path().join("cli-azurite.log"),
    )
    .await?;
    let api = Api::new(app.base_url())?;
    let cache = ctx.work.dir("cli-cache")?;
    let run_client = |args: Vec<String>| {
        let mut command = std::process::Command::new(&client);
        command
            .env("FILE_APPROVER_URL", app.base_url())
            .env("FILE_APPROVER_CACHE_DIR", &cache)
            .arg("--json")
            .args(args)
            .current_dir(ctx.work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        command
    };

    let (mut ours, mut sdk, mut peak) = (Samples::new(), Samples::new(), 0u64);
    let mut last = None;
    for run in 0..ctx.profile.direct_upload_runs {
        eprintln!(
            "bench: command-line upload, Azurite, run {}/{}",
            run + 1,
            ctx.profile.direct_upload_runs
        );
        settle_disk().await?;
        let (_, url) = declare(&api, "cli.bin", size).await?;
        let seconds = sdk_upload(ctx, vec!["url".into(), url, path_arg(&file)]).await?;
        sdk.push(size as f64 / MIB / seconds);

        settle_disk().await?;
        let command = run_client(vec!["upload".into(), path_arg(&file)]);
        let (out, took, rss) = blocking(move || measured(command)).await?;
        ours.push(size as f64 / MIB / took.as_secs_f64());
        peak = peak.max(rss);
        last = out["file"]["id"].as_str().map(str::to_owned);
    }
    let ratio = ours.median() / sdk.median();
    report.add(
        Line::new(
            format!("file-approver upload {}, Azurite", size_label(size)),
            ours.summary(0, "MiB/s"),
        )
        .baseline(format!(
            "Python SDK upload_blob to an upload URL {}",
            sdk.summary(0, "MiB/s")
        ))
        .ratio(ratio)
        .target("≥ 1.0×", ratio >= 1.0),
    );
    report.add(
        Line::new(
            format!("peak RSS of file-approver uploading {}", size_label(size)),
            format!("{:.1} MiB", peak as f64 / MIB),
        )
        .target("≤ 64 MiB", (peak as f64) <= 64.0 * MIB),
    );

    let Some(id) = last else {
        return failed("the client printed no file id");
    };
    download(ctx, &api, &id, size, &run_client, report).await?;
    drop(app);
    std::fs::remove_file(&file).context(|| format!("remove {}", file.display()))?;
    Ok(())
}

/// Both approvals of the uploaded file, then the client's verified download against curl and
/// sha256sum, alternating.
async fn download(
    ctx: &Context,
    api: &Api,
    id: &str,
    size: u64,
    run_client: &dyn Fn(Vec<String>) -> std::process::Command,
    report: &mut Report,
) -> Result<()> {
    api.approve(id, "upload", &token(0)).await?;
    api.wait_for_stage(
        id,
        AWAITING_DOWNLOAD,
        Duration::from_millis(500),
        Duration::from_secs(900),
    )
    .await?;
    api.approve(id, "download", &token(1)).await?;
    let target = std::fs::canonicalize(ctx.work.path())
        .context(|| "the work directory".to_owned())?
        .join("cli.out");
    let (mut ours, mut curl) = (Samples::new(), Samples::new());
    for run in 0..ctx.profile.direct_upload_runs {
        eprintln!(
            "bench: command-line download, Azurite, run {}/{}",
            run + 1,
            ctx.profile.direct_upload_runs
        );
        let grant = api
            .http()
            .get(api.url(&format!("/api/files/{id}/download")))
            .send()
            .await?
            .text()
            .await?;
        let grant: Value = serde_json::from_str(&grant)?;
        let Some(url) = grant["downloadUrl"].as_str().map(str::to_owned) else {
            return failed(format!("no downloadUrl: {grant}"));
        };
        settle_disk().await?;
        let started = Instant::now();
        let out = target.clone();
        blocking(move || curl_and_hash(&url, &out)).await?;
        curl.push(size as f64 / MIB / started.elapsed().as_secs_f64());
        std::fs::remove_file(&target).context(|| format!("remove {}", target.display()))?;

        settle_disk().await?;
        let command = run_client(vec![
            "download".into(),
            id.to_owned(),
            "-o".into(),
            path_arg(&target),
        ]);
        let (_, took, _) = blocking(move || measured(command)).await?;
        ours.push(size as f64 / MIB / took.as_secs_f64());
        std::fs::remove_file(&target).context(|| format!("remove {}", target.display()))?;
    }
    let ratio = ours.median() / curl.median();
    report.add(
        Line::new(
            format!(
                "file-approver download {} (SHA-256 checked), Azurite",
                size_label(size)
            ),
            ours.summary(0, "MiB/s"),
        )
        .baseline(format!("curl, then sha256sum {}", curl.summary(0, "MiB/s")))
        .ratio(ratio)
        .target("≥ 0.9×", ratio >= 0.9),
    );
    Ok(())
}

fn curl_and_hash(url: &str, out: &Path) -> Result<()> {
    let status = std::process::Command::new("curl")
        .args(["-sf", "-o"])
        .arg(out)
        .arg(url)
        .status()
        .context(|| "run curl".to_owned())?;
    if !status.success() {
        return failed(format!("curl failed: {status}"));
    }
    let status = std::process::Command::new("sha256sum")
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .context(|| "run sha256sum".to_owned())?;
    if !status.success() {
        return failed(format!("sha256sum failed: {status}"));
    }
    Ok(())
}

/// Runs the client to its end: what it printed, how long it took, and its peak RSS (read from
/// `/proc` while it runs; the last reading before it exits is the peak).
fn measured(mut command: std::process::Command) -> Result<(Value, Duration, u64)> {
    let started = Instant::now();
    let mut child = command
        .spawn()
        .context(|| "start file-approver".to_owned())?;
    let mut peak = 0;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if let Ok(hwm) = proc_status_bytes(child.id(), "VmHWM") {
            peak = peak.max(hwm);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let output = child
        .wait_with_output()
        .context(|| "wait for file-approver".to_owned())?;
    if !output.status.success() {
        return failed(format!(
            "file-approver failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        ));
    }
    let printed: Value = serde_json::from_slice(&output.stdout)?;
    Ok((printed, took, peak))
}
