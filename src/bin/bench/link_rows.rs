//! Download links checked at every use: a big file fetched through the app's link (the check,
//! the audit, the 307, then the storage link) against the same storage link fetched bare, on
//! Azurite, alternating; time to the first byte and throughput.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;

use crate::api::{expect, Api, AWAITING_DOWNLOAD};
use crate::data;
use crate::error::{failed, IoContext, Result};
use crate::process_rows::{blocking, settle_disk, size_label, start_child};
use crate::procs::Mode;
use crate::report::{Line, Report, Samples, MIB};
use crate::{app_vars, token, Context};

/// One fetch: seconds to the response's headers (after any redirect) and to its last byte.
struct Fetch {
    first_byte: f64,
    whole: f64,
}

async fn fetch(client: &reqwest::Client, url: &str, size: u64) -> Result<Fetch> {
    let started = Instant::now();
    let response = client.get(url).send().await?;
    if response.status() != StatusCode::OK {
        return failed(format!("fetching {url} answered {}", response.status()));
    }
    let first_byte = started.elapsed().as_secs_f64();
    let mut body = response.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        received += chunk?.len() as u64;
    }
    if received != size {
        return failed(format!("fetched {received} bytes of {size}"));
    }
    Ok(Fetch {
        first_byte,
        whole: started.elapsed().as_secs_f64(),
    })
}

pub async fn links(ctx: &Context, report: &mut Report) -> Result<()> {
    let Some(azurite) = &ctx.azurite else {
        return Ok(());
    };
    let size = ctx.profile.link_bytes;
    let file = ctx.work.path().join("link.bin");
    {
        let file = file.clone();
        blocking(move || data::write_random_file(&file, size)).await?;
    }
    let data_dir = ctx.work.dir("links-azurite")?;
    let cs = azurite.connection_string.clone();
    let app = start_child(
        ctx.handler.clone(),
        Mode::Local,
        app_vars(&data_dir, Some(&cs), Some(size)),
        ctx.work.path().join("links-azurite.log"),
    )
    .await?;
    let api = Api::new(app.base_url())?;
    let id = api
        .upload("link.bin", data::file_body(&file).await?, Some(size))
        .await?;
    let poll = Duration::from_millis(100);
    api.wait_for_stage(
        &id,
        crate::api::AWAITING_UPLOAD,
        poll,
        Duration::from_secs(120),
    )
    .await?;
    api.approve(&id, "upload", &token(0)).await?;
    api.wait_for_stage(&id, AWAITING_DOWNLOAD, poll, Duration::from_secs(1200))
        .await?;
    api.approve(&id, "download", &token(1)).await?;
    let response = api
        .http()
        .get(api.url(&format!("/api/files/{id}/download")))
        .send()
        .await?;
    let grant = expect(response, &[StatusCode::OK], "download").await?;
    let Some(link) = grant["downloadUrl"].as_str().map(str::to_owned) else {
        return failed(format!("download answered without a downloadUrl: {grant}"));
    };
    // The bare storage link: where the app's link leads (a 5-minute SAS for the snapshot).
    let answer = api.http().get(&link).send().await?;
    let Some(bare) = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return failed(format!(
            "the link answered {} without a Location",
            answer.status()
        ));
    };
    let following = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
        .build()?;
    let (mut app_first, mut bare_first) = (Samples::new(), Samples::new());
    let (mut app_rate, mut bare_rate) = (Samples::new(), Samples::new());
    let runs = ctx.profile.link_runs;
    for run in 0..runs {
        eprintln!("bench: download link run {}/{runs}", run + 1);
        settle_disk().await?;
        let through = fetch(&following, &link, size).await?;
        app_first.push(through.first_byte * 1000.0);
        app_rate.push(size as f64 / MIB / through.whole);
        settle_disk().await?;
        let direct = fetch(&following, &bare, size).await?;
        bare_first.push(direct.first_byte * 1000.0);
        bare_rate.push(size as f64 / MIB / direct.whole);
    }
    let ratio = app_rate.median() / bare_rate.median();
    report.add(
        Line::new(
            format!(
                "download {} through the app's link, Azurite",
                size_label(size)
            ),
            app_rate.summary(0, "MiB/s"),
        )
        .baseline(format!("the bare SAS {}", bare_rate.summary(0, "MiB/s")))
        .ratio(ratio)
        .target("≥ 0.95×", ratio >= 0.95),
    );
    report.add(
        Line::new(
            "time to first byte through the app's link (check, audit, 307, SAS)",
            app_first.summary(1, "ms"),
        )
        .baseline(format!("the bare SAS {}", bare_first.summary(1, "ms"))),
    );
    drop(app);
    std::fs::remove_file(&file).context(|| format!("remove {}", file.display()))?;
    std::fs::remove_dir_all(&data_dir).context(|| format!("remove {}", data_dir.display()))?;
    Ok(())
}
