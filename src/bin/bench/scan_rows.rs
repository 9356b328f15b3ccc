//! The content-safety gate's rows: a big file scanned by clamd through the app (one read feeding
//! the scanner and the analysis) against clamd scanning the same file alone (`clamdscan
//! --stream`), the handler's memory meanwhile, and storage requests per workflow with the
//! scanner on. clamd is Debian's, started here offline with a one-line signature database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use file_approver::scan::testing::{ClamdOptions, PrivateClamd};

use crate::api::{Api, AWAITING_UPLOAD};
use crate::data;
use crate::error::{failed, IoContext, Result};
use crate::inproc::InProcessApp;
use crate::inproc_rows::{self, Backend};
use crate::process_rows::{
    blocking, command, mib_per_s, path_arg, settle_disk, size_label, start_child,
};
use crate::procs::Mode;
use crate::report::{Line, Report, Samples, MIB};
use crate::{app_vars, Context};

/// A private clamd that takes files of `size` whole, and scans them whole.
async fn clamd(ctx: &Context, size: u64) -> Result<Option<PrivateClamd>> {
    let Some(bin) = PrivateClamd::bin_or_installed() else {
        return Ok(None);
    };
    let limit = format!("{}M", (size >> 20) + 16);
    let options = ClamdOptions {
        stream_max_length: limit.clone(),
        alert_encrypted: true,
        max_scan: Some(limit),
    };
    let dir = ctx.work.dir("clamd")?;
    let clamd = PrivateClamd::start(&bin, &dir, &options)
        .await
        .context(|| format!("start {}", bin.display()))?;
    Ok(Some(clamd))
}

/// The scan of a big file: the app (upload's 201 → AwaitingUploadApproval, the scan step with
/// the analysis beside it) against `clamdscan --stream` of the same file, alternating.
pub async fn scan(ctx: &Context, report: &mut Report) -> Result<()> {
    let size = ctx.profile.upload_bytes;
    let Some(clamd) = clamd(ctx, size).await? else {
        report
            .note("scan: no clamd here (apt-get install clamav-daemon): the scan rows are skipped");
        return Ok(());
    };
    let big = ctx.work.path().join("scan.bin");
    {
        let big = big.clone();
        blocking(move || data::write_random_file(&big, size)).await?;
    }
    let data_dir = ctx.work.dir("scan-embedded")?;
    let mut vars = app_vars(&data_dir, None, Some(size));
    vars.push(("FILE_APPROVER_CLAMD".to_owned(), clamd.setting()));
    let mut app = start_child(
        ctx.handler.clone(),
        Mode::Local,
        vars,
        ctx.work.path().join("scan-embedded.log"),
    )
    .await?;
    let api = Api::new(app.base_url())?;
    let (mut through_app, mut alone) = (Samples::new(), Samples::new());
    let mut peak = 0u64;
    let runs = ctx.profile.upload_runs;
    let conf = path_arg(clamd.conf());
    for run in 0..runs {
        eprintln!("bench: scan run {}/{runs}", run + 1);
        settle_disk().await?;
        let started = Instant::now();
        let out = command(
            "clamdscan",
            vec![
                format!("--config-file={conf}"),
                "--stream".into(),
                "--no-summary".into(),
                path_arg(&big),
            ],
        )
        .await?;
        alone.push(mib_per_s(size, started.elapsed()));
        if !out.trim_end().ends_with("OK") {
            return failed(format!("clamdscan did not say OK: {out}"));
        }

        settle_disk().await?;
        let id = api
            .upload("scan.bin", data::file_body(&big).await?, Some(size))
            .await?;
        app.reset_peak()?;
        let started = Instant::now();
        api.wait_for_stage(
            &id,
            AWAITING_UPLOAD,
            Duration::from_millis(20),
            Duration::from_secs(900),
        )
        .await
        .map_err(|e| app.explain(e))?;
        through_app.push(mib_per_s(size, started.elapsed()));
        peak = peak.max(app.memory("VmHWM")?);
        let status = api.status(&id).await?;
        if status["scan"]["verdict"] != "clean" {
            return failed(format!("the app's scan was not clean: {}", status["scan"]));
        }
    }
    drop(app);
    std::fs::remove_file(&big).ok();
    std::fs::remove_dir_all(&data_dir).ok();

    // Time taken, as a multiple of clamd's own: the inverse of the throughput ratio.
    let times = alone.median() / through_app.median();
    report.add(
        Line::new(
            format!(
                "scan {} by clamd, embedded (upload 201 → AwaitingUploadApproval, analysis beside it)",
                size_label(size)
            ),
            through_app.summary(0, "MiB/s"),
        )
        .baseline(format!("clamdscan --stream {}", alone.summary(0, "MiB/s")))
        .ratio(through_app.median() / alone.median())
        .target("≤ 1.1× clamd's time", times <= 1.1),
    );
    report.add(
        Line::new(
            format!(
                "peak RSS of handler during the scan of {}",
                size_label(size)
            ),
            format!("{:.1} MiB", peak as f64 / MIB),
        )
        .target("≤ 64 MiB", (peak as f64) <= 64.0 * MIB),
    );
    report.note(format!(
        "scan: the app takes {times:.2}× clamd's own time for the same file; the blob is read \
         once, for the scanner and the analysis together (tests/api/scanning.rs counts it)"
    ));
    Ok(())
}

/// Storage requests per workflow with clamd scanning, on each store the run has.
pub async fn requests(ctx: &Context, report: &mut Report) -> Result<()> {
    let Some(clamd) = clamd(ctx, 64 << 20).await? else {
        report.note("scan: no clamd here: storage requests with a scanner are not counted");
        return Ok(());
    };
    for (index, (store, azure, model)) in crate::counted_stores(ctx).into_iter().enumerate() {
        let name = match store {
            "embedded" => "embedded, clamd scanning",
            _ => "Azurite, clamd scanning",
        };
        let data: PathBuf = ctx.work.dir(&format!("scan-requests-{index}"))?;
        let mut vars: HashMap<String, String> = app_vars(&data, azure.as_deref(), None)
            .into_iter()
            .collect();
        vars.insert("FILE_APPROVER_CLAMD".into(), clamd.setting());
        let app = InProcessApp::start(vars, model).await?;
        let api = Api::new(app.base.clone())?;
        let backend = Backend { name, app, api };
        inproc_rows::storage_requests(&backend, &ctx.profile, report).await?;
    }
    Ok(())
}
