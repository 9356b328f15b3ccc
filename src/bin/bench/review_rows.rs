//! What a round of changes costs: storage requests for a workflow in which a reviewer asks for
//! changes and the uploader sends a new version, against a workflow without, on the same app
//! in the same run (counted in-process, as the `requests` row counts).

use std::collections::HashMap;
use std::path::PathBuf;

use file_approver::store::testing::RequestCounts;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::json;

use crate::api::{expect, Api, AWAITING_DOWNLOAD, AWAITING_UPLOAD};
use crate::data;
use crate::error::Result;
use crate::inproc::InProcessApp;
use crate::report::{Line, Report};
use crate::{app_vars, token, Context};

const POLL: std::time::Duration = std::time::Duration::from_millis(20);
const WAIT: std::time::Duration = std::time::Duration::from_secs(60);
const SMALL_FILE: usize = 4 * 1024;

/// Requests of the whole life, the driver's polling left out (as the `requests` row does).
fn counted(counts: &RequestCounts) -> u64 {
    counts.total() - counts.driver_looks()
}

async fn post(api: &Api, path: &str, who: &str, body: reqwest::Body, kind: &str) -> Result<()> {
    let response = api
        .http()
        .post(api.url(path))
        .header(AUTHORIZATION, format!("Bearer {who}"))
        .header(CONTENT_TYPE, kind)
        .body(body)
        .send()
        .await?;
    expect(response, &[StatusCode::CREATED, StatusCode::ACCEPTED], path)
        .await
        .map(drop)
}

/// The phases of a round of changes, in order, as [`one`] records them.
const PHASES: [&str; 5] = [
    "change request",
    "new version",
    "upload approval",
    "analysis",
    "rest of the life",
];

/// One workflow from upload to download link; with `round`, a change request at the download
/// stage and a new version first. The uploader is reviewer 2, so reviewers 0 and 1 may decide.
/// Returns the whole life's counts and, for a round, the requests counted in each of
/// [`PHASES`] (each phase waits for the engine to go idle, so a phase owns its turns).
async fn one(
    app: &InProcessApp,
    api: &Api,
    i: usize,
    round: bool,
) -> Result<(RequestCounts, Vec<u64>)> {
    let uploader = token(2);
    app.counter.take();
    let response = api
        .http()
        .post(api.url(&format!("/api/files?name=round-{i}.txt")))
        .header(AUTHORIZATION, format!("Bearer {uploader}"))
        .header(CONTENT_TYPE, "text/plain")
        .body(data::text_file(i, SMALL_FILE))
        .send()
        .await?;
    let body = expect(response, &[StatusCode::CREATED], "upload").await?;
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    app.idle().await?;
    api.wait_for_stage(&id, AWAITING_UPLOAD, POLL, WAIT).await?;
    api.approve(&id, "upload", &token(0)).await?;
    app.idle().await?;
    api.wait_for_stage(&id, AWAITING_DOWNLOAD, POLL, WAIT)
        .await?;
    let mut phases = Vec::new();
    if round {
        let mut mark = app.counter.snapshot();
        let mut phase_end = |phases: &mut Vec<u64>| {
            let now = app.counter.snapshot();
            phases.push(counted(&now.since(&mark)));
            mark = now;
        };
        let asked = json!({"decision": "requestChanges", "comment": "fix the totals"});
        let path = format!("/api/files/{id}/approvals/download");
        post(
            api,
            &path,
            &token(1),
            asked.to_string().into(),
            "application/json",
        )
        .await?;
        app.idle().await?;
        phase_end(&mut phases);
        let path = format!("/api/files/{id}/versions");
        let body = data::text_file(i + 1000, SMALL_FILE).into();
        post(api, &path, &uploader, body, "text/plain").await?;
        app.idle().await?;
        api.wait_for_stage(&id, AWAITING_UPLOAD, POLL, WAIT).await?;
        phase_end(&mut phases);
        api.approve(&id, "upload", &token(0)).await?;
        // The approval's own requests end where the analysis activity is taken from the
        // queue: the turn that schedules it runs inside the approval's request.
        phase_end(&mut phases);
        app.idle().await?;
        api.wait_for_stage(&id, AWAITING_DOWNLOAD, POLL, WAIT)
            .await?;
        phase_end(&mut phases);
    }
    api.approve(&id, "download", &token(1)).await?;
    app.idle().await?;
    api.download(&id, POLL, WAIT).await?;
    let all = app.counter.take();
    if round {
        let phased: u64 = phases.iter().sum();
        phases.push(counted(&all).saturating_sub(phased));
    }
    Ok((all, phases))
}

pub async fn change_round(ctx: &Context, report: &mut Report) -> Result<()> {
    let w = ctx.profile.request_workflows;
    for (index, (name, azure, model)) in crate::counted_stores(ctx).into_iter().enumerate() {
        let data_dir: PathBuf = ctx.work.dir(&format!("round-requests-{index}"))?;
        let vars: HashMap<String, String> = app_vars(&data_dir, azure.as_deref(), None)
            .into_iter()
            .collect();
        let app = InProcessApp::start(vars, model).await?;
        let api = Api::new(app.base.clone())?;
        app.idle().await?;
        let (mut plain, mut round) = (0u64, 0u64);
        let (mut plain_ops, mut round_ops) = (RequestCounts::default(), RequestCounts::default());
        let mut by_phase = [0u64; PHASES.len()];
        for i in 0..w {
            let (counts, _) = one(&app, &api, 2 * i, false).await?;
            plain += counted(&counts);
            plain_ops = plain_ops.plus(&counts);
            let (counts, phases) = one(&app, &api, 2 * i + 1, true).await?;
            round += counted(&counts);
            round_ops = round_ops.plus(&counts);
            for (sum, n) in by_phase.iter_mut().zip(phases) {
                *sum += n;
            }
        }
        let (plain, round) = (plain as f64 / w as f64, round as f64 / w as f64);
        let ratio = round / plain;
        report.add(
            Line::new(
                format!("storage requests, one round of changes, {name} (n={w})"),
                format!("{round:.1} per workflow"),
            )
            .baseline(format!("without changes {plain:.1}"))
            .ratio(ratio)
            .target("≤ 1.6×", ratio <= 1.6),
        );
        // Where the round's extra requests go.
        let extra: Vec<String> = round_ops
            .nonzero()
            .map(|(op, count)| {
                let before = plain_ops.requests(op) as f64 / w as f64;
                format!("{op} {before:.1}→{:.1}", count as f64 / w as f64)
            })
            .collect();
        let phases: Vec<String> = PHASES
            .iter()
            .zip(by_phase)
            .map(|(phase, n)| format!("{phase} {:.1}", n as f64 / w as f64))
            .collect();
        report.note(format!(
            "one round of changes, {name}: requests by phase: {}; by operation, without → with \
             (polling included): {}",
            phases.join(", "),
            extra.join(", ")
        ));
    }
    Ok(())
}
