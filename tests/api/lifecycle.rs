//! What failed and unstarted uploads leave behind, and how the sweep of open uploads settles it
//! without scanning a table that grows with history.
//!
//! On Azure the tests share their tables, and the sweep reaches every open upload in them; so
//! these tests first set their clock two hours back and make their uploads then: the sweep they
//! run sees their own markers as old and every other test's (made at the real time) as new.

use chrono::{Duration, SubsecRound, Utc};
use file_approver::files::{FILES_TABLE, OPEN_UPLOADS};
use file_approver::store::testing::Op;
use file_approver::store::TableQuery;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app_with, Backend, Mode, Options, TestApp, ALICE};

async fn app(backend: Backend, mode: Mode) -> TestApp {
    spawn_app_with(Options {
        backend,
        mode,
        faults: true,
        ..Options::default()
    })
    .await
    .unwrap()
}

/// The file ids of the open-upload records made at exactly `since` (one partition read; each
/// test's times are its own, to the microsecond).
async fn open_uploads(app: &TestApp, since: chrono::DateTime<Utc>) -> Vec<String> {
    let page = app
        .state
        .files
        .store()
        .query(
            FILES_TABLE,
            &TableQuery {
                top: Some(1000),
                ..TableQuery::partition(OPEN_UPLOADS)
            },
        )
        .await
        .unwrap();
    page.entities
        .iter()
        .filter_map(|e| {
            let record = file_approver::files::FileRecord::from_entity(&e.entity).ok()?;
            (record.created_time == since).then(|| record.id.to_string())
        })
        .collect()
}

async fn record_exists(app: &TestApp, id: &str) -> bool {
    app.state
        .files
        .store()
        .get_entity(FILES_TABLE, OPEN_UPLOADS, id)
        .await
        .is_ok()
}

/// An upload whose blob never committed and whose clean-up failed too (as after a crash)
/// leaves its record; an hour later the sweep removes it, and the file never existed for
/// clients. A younger one is left alone: it may still be streaming in.
async fn an_upload_that_never_committed_is_swept_with_its_record(backend: Backend) {
    let app = app(backend, Mode::CustomHandler).await;
    let faults = app.faults.as_ref().unwrap();
    let two_hours_ago = (Utc::now() - Duration::hours(2)).trunc_subsecs(6);

    app.clock.set(two_hours_ago);
    faults.fail_next(Op::PutBlob, 1);
    faults.fail_next(Op::Delete, 1);
    assert_error(
        app.upload("crashed.txt", b"never committed", "text/plain")
            .await,
        503,
        "StorageUnavailable",
    )
    .await;
    let abandoned = open_uploads(&app, two_hours_ago).await;
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    let abandoned = abandoned[0].clone();
    assert!(record_exists(&app, &abandoned).await);
    assert_error(
        app.get(&format!("/api/files/{abandoned}")).await,
        404,
        "NotFound",
    )
    .await;

    let younger = two_hours_ago + Duration::minutes(30);
    app.clock.set(younger);
    faults.fail_next(Op::PutBlob, 1);
    faults.fail_next(Op::Delete, 1);
    app.upload("streaming.txt", b"still arriving", "text/plain")
        .await;
    let in_flight = open_uploads(&app, younger).await;
    assert_eq!(in_flight.len(), 1);

    app.clock.set(two_hours_ago + Duration::minutes(61));
    let done = app.state.files.sweep_uploads().await.unwrap();
    assert!(done.abandoned >= 1, "{done:?}");
    assert!(open_uploads(&app, two_hours_ago).await.is_empty());
    assert!(!record_exists(&app, &abandoned).await);
    assert_eq!(open_uploads(&app, younger).await, in_flight);
    assert!(record_exists(&app, &in_flight[0]).await);
}

/// Under the host the blob trigger starts a file's workflow. When it never comes (a lost
/// delivery, a start that kept failing), the timer's sweep starts it once the trigger's minute
/// of grace is over — found through the open-uploads partition, not a scan.
async fn a_committed_upload_whose_trigger_never_came_is_started_by_the_sweep(backend: Backend) {
    let app = app(backend, Mode::CustomHandler).await;
    let two_hours_ago = (Utc::now() - Duration::hours(2)).trunc_subsecs(6);
    app.clock.set(two_hours_ago);
    let response = app.upload("waiting.txt", b"no trigger", "text/plain").await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["stage"], "Uploaded");
    let id = body["id"].as_str().unwrap().to_owned();

    // Within the grace the trigger is expected: the sweep leaves the file alone.
    app.clock.set(two_hours_ago + Duration::seconds(30));
    app.state.files.sweep_uploads().await.unwrap();
    assert_eq!(app.status(&id).await["stage"], "Uploaded");

    app.clock.set(two_hours_ago + Duration::minutes(2));
    let timer = include_str!("../fixtures/c-timer.request.json");
    let reply: Value = app
        .client
        .post(app.url("/sweep"))
        .header("Content-Type", "application/json")
        .body(timer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let log = reply["Logs"][0].as_str().unwrap();
    assert!(log.contains("uploads started"), "{log}");
    assert_eq!(app.status(&id).await["stage"], "AwaitingUploadApproval");
    assert!(open_uploads(&app, two_hours_ago).await.is_empty());
    app.approve_ok(&id, "upload", ALICE).await;
}

crate::on_every_backend!(
    an_upload_that_never_committed_is_swept_with_its_record,
    a_committed_upload_whose_trigger_never_came_is_started_by_the_sweep,
);
