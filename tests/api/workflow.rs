//! The product end to end: upload → upload approval → analysis → download approval → link.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::{
    analysis_through_the_queue, assert_error, spawn_app_on, spawn_app_with, Backend, Mode, Options,
    ALICE, BOB,
};
use file_approver::store::testing::Op;

const REPORT: &[u8] = b"quarterly numbers\nrevenue up\nno surprises\n";

async fn golden_path_ends_with_a_working_download_link(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::Local).await else {
        return;
    };

    let response = app.upload("q3 report.txt", REPORT, "text/plain").await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let uploaded: Value = response.json().await.unwrap();
    let id = uploaded["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/files/{id}"));
    assert_eq!(uploaded["name"], "q3 report.txt");
    assert_eq!(uploaded["size"], REPORT.len());
    assert_eq!(uploaded["stage"], "AwaitingUploadApproval");
    assert_eq!(uploaded["runtimeStatus"], "Running");
    assert_eq!(uploaded["analysis"], Value::Null);

    let response = app
        .approve(
            &id,
            "upload",
            Some(ALICE),
            Some(r#"{"approved": true, "comment": "ok"}"#),
        )
        .await;
    assert_eq!(response.status(), 202);
    let approved: Value = response.json().await.unwrap();
    assert_eq!(approved["approvals"][0]["reviewer"], "alice");
    assert_eq!(approved["approvals"][0]["comment"], "ok");

    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingDownloadApproval");
    let analysis = &status["analysis"];
    assert_eq!(analysis["sha256"], hex::encode(Sha256::digest(REPORT)));
    assert_eq!(analysis["size"], REPORT.len());
    assert_eq!(analysis["isText"], true);
    assert_eq!(analysis["lineCount"], 3);
    assert_eq!(analysis["detectedContentType"], "text/plain");
    // One time format everywhere: whole seconds in UTC.
    for time in [
        &analysis["analyzedTime"],
        &status["createdTime"],
        &status["lastUpdatedTime"],
    ] {
        let time = time.as_str().unwrap();
        assert_eq!(time.len(), 20, "{time}");
        assert!(time.ends_with('Z'), "{time}");
    }

    let response = app.approve(&id, "download", Some(BOB), None).await;
    assert_eq!(response.status(), 202);
    let done: Value = response.json().await.unwrap();
    assert_eq!(done["stage"], "Approved");
    // The workflow stays to hear a revocation: an idle wait, no timer.
    assert_eq!(done["runtimeStatus"], "Running");

    let response = app.get(&format!("/api/files/{id}/download")).await;
    assert_eq!(response.status(), 200);
    let download: Value = response.json().await.unwrap();
    assert_eq!(download["metadata"]["sha256"], analysis["sha256"]);
    assert_eq!(download["approvals"].as_array().unwrap().len(), 2);
    let url = download["downloadUrl"].as_str().unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(download["expiresAt"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let ttl = expires - app.clock_now();
    assert!(ttl <= chrono::Duration::seconds(3600) && ttl > chrono::Duration::seconds(3590));

    // The link works with a plain client and saves under the display name.
    let fetched = reqwest::get(url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    let disposition = fetched.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.contains("attachment") && disposition.contains("q3"),
        "{disposition}"
    );
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), REPORT);
}

async fn rejected_upload_ends_the_workflow_and_refuses_download(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::Local).await else {
        return;
    };
    let id = app.upload_ok("secret.txt", b"do not share").await;

    let response = app
        .approve(
            &id,
            "upload",
            Some(ALICE),
            Some(r#"{"approved": false, "comment": "PII"}"#),
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["stage"], "Rejected");
    assert_eq!(body["approvals"][0]["approved"], false);
    // A refused file's bytes are deleted (retention 0 by default), then its workflow ends;
    // its record and history stay.
    app.idle().await;
    assert_eq!(app.status(&id).await["runtimeStatus"], "Completed");
    assert!(matches!(
        app.state
            .files
            .store()
            .blob_properties(file_approver::store::FILES_CONTAINER, &id)
            .await,
        Err(file_approver::store::StoreError::NotFound)
    ));

    let error = assert_error(
        app.get(&format!("/api/files/{id}/download")).await,
        409,
        "NotApproved",
    )
    .await;
    assert_eq!(error["currentStage"], "Rejected");
    let error = assert_error(
        app.approve(&id, "download", Some(BOB), None).await,
        409,
        "WrongStage",
    )
    .await;
    assert_eq!(error["currentStage"], "Rejected");
}

async fn rejected_download_ends_the_workflow(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::Local).await else {
        return;
    };
    let id = app.upload_ok("data.csv", b"a,b\n1,2\n").await;
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    let response = app
        .approve(
            &id,
            "download",
            Some(BOB),
            Some(r#"{"approved": false, "comment": "not this one"}"#),
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["stage"], "Rejected");
    assert!(
        body["analysis"]["sha256"].is_string(),
        "the analysis stays visible"
    );
    assert_error(
        app.get(&format!("/api/files/{id}/download")).await,
        409,
        "NotApproved",
    )
    .await;
}

async fn files_are_listed_by_stage(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::Local).await else {
        return;
    };
    let waiting = app.upload_ok("one.txt", b"1").await;
    let rejected = app.upload_ok("two.txt", b"2").await;
    app.approve(
        &rejected,
        "upload",
        Some(ALICE),
        Some(r#"{"approved": false, "comment": "not this one"}"#),
    )
    .await;

    let response = app.get("/api/files?stage=Rejected&top=100").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let ids: Vec<&str> = body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&rejected.as_str()));
    assert!(!ids.contains(&waiting.as_str()));
    assert!(body["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["stage"] == "Rejected"));
}

/// While the app itself works on a file, its status says when to look again; while a person
/// has to act, it says nothing (clients then back off on their own).
async fn the_status_gives_a_polling_hint_only_while_the_app_is_working(backend: Backend) {
    let Some(app) = spawn_app_with(Options {
        backend,
        vars: vec![analysis_through_the_queue()],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let id = app.upload_ok("a.txt", b"a").await;
    let hint = |response: &reqwest::Response| {
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let waiting = app.get(&format!("/api/files/{id}")).await;
    assert_eq!(waiting.status(), 200);
    assert_eq!(hint(&waiting), None, "AwaitingUploadApproval");
    app.approve_ok(&id, "upload", ALICE).await;
    // The analysis is queued, not run yet (nothing drains the work queue until idle()).
    let analyzing = app.get(&format!("/api/files/{id}")).await;
    assert_eq!(hint(&analyzing).as_deref(), Some("2"));
    let body: Value = analyzing.json().await.unwrap();
    assert_eq!(body["stage"], "Analyzing");
    app.idle().await;
    let analysed = app.get(&format!("/api/files/{id}")).await;
    assert_eq!(hint(&analysed), None, "AwaitingDownloadApproval");
}

/// A file up to `FILE_APPROVER_INLINE_ANALYSIS_MAX_BYTES` is analyzed inside its upload
/// approval: the approval answers in review, with the analysis, and no work message was sent.
/// A larger one is analyzed through the work queue.
async fn a_small_files_analysis_runs_inside_its_approval(backend: Backend) {
    let Some(app) = spawn_app_with(Options {
        backend,
        vars: vec![("FILE_APPROVER_INLINE_ANALYSIS_MAX_BYTES", "64".into())],
        count_requests: true,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let counter = app.requests.clone().expect("counted");
    let small = app.upload_ok("small.txt", REPORT).await;
    app.idle().await;
    counter.take();
    let approved = app.approve(&small, "upload", Some(ALICE), None).await;
    assert_eq!(approved.status(), 202);
    let body: Value = approved.json().await.unwrap();
    let counts = counter.take();
    assert_eq!(body["stage"], "AwaitingDownloadApproval", "{body}");
    assert_eq!(body["analysis"]["lineCount"], 3, "{body}");
    assert_eq!(counts.requests(Op::Enqueue), 0, "{counts}");
    assert_eq!(counts.requests(Op::DeleteMessage), 0, "{counts}");

    let large = app.upload_ok("large.txt", &[b'x'; 65]).await;
    app.approve_ok(&large, "upload", ALICE).await;
    assert_eq!(app.status(&large).await["stage"], "Analyzing");
    app.idle().await;
    assert_eq!(
        app.status(&large).await["stage"],
        "AwaitingDownloadApproval"
    );
}

crate::on_every_backend!(
    a_small_files_analysis_runs_inside_its_approval,
    the_status_gives_a_polling_hint_only_while_the_app_is_working,
    golden_path_ends_with_a_working_download_link,
    rejected_upload_ends_the_workflow_and_refuses_download,
    rejected_download_ends_the_workflow,
    files_are_listed_by_stage,
);

#[tokio::test]
async fn listing_pages_with_a_continuation_token() {
    let app = crate::helpers::spawn_app().await;
    for i in 0..5 {
        app.upload_ok(&format!("f{i}.txt"), b"x").await;
    }
    let mut seen = std::collections::HashSet::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let path = match &token {
            Some(t) => format!(
                "/api/files?top=2&continuationToken={}",
                crate::helpers::urlencode(t)
            ),
            None => "/api/files?top=2".to_owned(),
        };
        let body: Value = app.get(&path).await.json().await.unwrap();
        let files = body["files"].as_array().unwrap();
        assert!(files.len() <= 2);
        for f in files {
            assert!(
                seen.insert(f["id"].as_str().unwrap().to_owned()),
                "listed twice"
            );
        }
        token = body["continuationToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
}
