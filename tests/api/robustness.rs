//! Storage outages, approval deadlines and racing reviewers.

use file_approver::store::{Prop, TableQuery};
use serde_json::Value;

use crate::helpers::{
    assert_error, spawn_app_with, Backend, Mode, Options, OwnAzurite, TestApp, ALICE, BOB,
};

async fn app_with_faults(backend: Backend) -> Option<TestApp> {
    spawn_app_with(Options {
        backend,
        faults: true,
        ..Options::default()
    })
    .await
}

async fn storage_outage_answers_503_and_the_request_can_be_retried(backend: Backend) {
    let Some(app) = app_with_faults(backend).await else {
        return;
    };
    let id = app.upload_ok("a.txt", b"before the outage").await;
    let faults = app.faults.as_ref().unwrap();
    // Unique: on Azure, other tests share the tables.
    let outage_name = format!("during-outage-{}.txt", uuid::Uuid::new_v4());

    faults.outage();
    for response in [
        app.get(&format!("/api/files/{id}")).await,
        app.approve(&id, "upload", Some(ALICE), None).await,
        app.upload(&outage_name, b"during the outage", "text/plain")
            .await,
        app.get(&format!("/api/files/{id}/download")).await,
        app.get("/api/files").await,
    ] {
        assert!(response.headers().contains_key("retry-after"));
        let error = assert_error(response, 503, "StorageUnavailable").await;
        // A 5xx says nothing of the cause.
        assert!(
            !error["message"].as_str().unwrap().contains("outage"),
            "{error}"
        );
    }
    faults.heal();

    // Nothing was half-written, and the same approval now goes through.
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    assert_eq!(status["approvals"].as_array().unwrap().len(), 0);
    let left = app
        .state
        .files
        .store()
        .query(
            "files",
            &TableQuery {
                equals: vec![("Name".into(), Prop::Str(outage_name))],
                ..TableQuery::partition(file_approver::files::OPEN_UPLOADS)
            },
        )
        .await
        .unwrap();
    assert!(left.entities.is_empty(), "the failed upload left a record");
    app.approve_ok(&id, "upload", ALICE).await;
}

async fn an_approval_not_given_in_time_expires_the_file(backend: Backend) {
    let Some(app) = spawn_app_with(Options {
        backend,
        vars: vec![("FILE_APPROVER_APPROVAL_TIMEOUT_SECS", "60".into())],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let id = app.upload_ok("late.txt", b"nobody looked").await;
    // The deadline is a timer message on the work queue, hidden until it is due.
    app.clock.advance(chrono::Duration::seconds(30));
    app.idle().await;
    assert_eq!(app.status(&id).await["stage"], "AwaitingUploadApproval");

    app.clock.advance(chrono::Duration::seconds(31));
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Expired");
    assert_eq!(status["runtimeStatus"], "Completed");

    let error = assert_error(
        app.get(&format!("/api/files/{id}/download")).await,
        409,
        "NotApproved",
    )
    .await;
    assert_eq!(error["currentStage"], "Expired");
    let error = assert_error(
        app.approve(&id, "upload", Some(ALICE), None).await,
        409,
        "WrongStage",
    )
    .await;
    assert_eq!(error["currentStage"], "Expired");
}

async fn racing_contradictory_decisions_have_exactly_one_winner(backend: Backend) {
    let Some(app) = spawn_app_with(Options {
        backend,
        mode: Mode::Local,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    for _ in 0..5 {
        let id = app.upload_ok("contested.txt", b"approve me, or not").await;
        let (approve, reject) = tokio::join!(
            app.approve(&id, "upload", Some(ALICE), None),
            app.approve(
                &id,
                "upload",
                Some(BOB),
                Some(r#"{"approved": false, "comment": "not this one"}"#)
            ),
        );
        let codes = [approve.status().as_u16(), reject.status().as_u16()];
        assert!(
            codes == [202, 409] || codes == [409, 202],
            "both or neither won: {codes:?}"
        );
        app.idle().await;
        let status = app.status(&id).await;
        let approvals = status["approvals"].as_array().unwrap();
        assert_eq!(approvals.len(), 1, "{status}");
        let alice_won = codes[0] == 202;
        assert_eq!(
            approvals[0]["reviewer"],
            if alice_won { "alice" } else { "bob" }
        );
        let expected = if alice_won {
            "AwaitingDownloadApproval"
        } else {
            "Rejected"
        };
        assert_eq!(status["stage"], expected);
    }
}

/// Local mode has no blob trigger to deliver again: an upload whose workflow could not start
/// is answered 201 (it is stored; a retry would store it twice), and the next sweep
/// starts its workflow. Embedded only: the sweep starts every unstarted upload it finds, and on
/// Azurite the tests share their tables, so it would reach other tests' files.
#[tokio::test]
async fn an_upload_whose_workflow_could_not_start_is_started_by_the_sweep() {
    let app = app_with_faults(Backend::Embedded).await.unwrap();
    let faults = app.faults.as_ref().unwrap();
    // The first turn's commit (the `workflows` table) fails.
    faults.fail_next_on(file_approver::store::testing::Op::Batch, "workflows", 1);
    let response = app.upload("stored.txt", b"kept safe", "text/plain").await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["stage"], "Uploaded");
    let id = body["id"].as_str().unwrap().to_owned();
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Uploaded");
    // The blob's commit is the upload's commit: its size is the stored blob's.
    assert_eq!(status["size"], 9);

    app.state.files.sweep_uploads().await.unwrap();
    assert_eq!(app.status(&id).await["stage"], "AwaitingUploadApproval");
    app.approve_ok(&id, "upload", ALICE).await;
}

/// A storage service that stops answering (Azurite frozen with SIGSTOP; the embedded store
/// behind a layer that never answers) costs each request its storage budget, then a 503 with
/// `Retry-After`; once storage is back, the client's retry of an approval whose outcome was
/// unknown is recorded once.
async fn a_storage_service_that_stops_answering_costs_a_request_its_budget_not_a_minute(
    backend: Backend,
) {
    const BUDGET_MS: u64 = 1000;
    let own = match backend {
        Backend::Azure => Some(OwnAzurite::start().await),
        Backend::Embedded => None,
    };
    let azurite = own.as_ref().map(|own| &own.azurite);
    let mut vars = vec![("FILE_APPROVER_STORAGE_BUDGET_MS", BUDGET_MS.to_string())];
    if let Some(azurite) = azurite {
        vars.push(("AzureWebJobsStorage", azurite.connection_string.clone()));
    }
    let app = spawn_app_with(Options {
        backend,
        vars,
        faults: backend == Backend::Embedded,
        ..Options::default()
    })
    .await
    .unwrap();
    let id = app
        .upload_ok("before.txt", b"stored before the stall")
        .await;

    match azurite {
        Some(azurite) => azurite.freeze().unwrap(),
        None => app.faults.as_ref().unwrap().freeze(),
    }
    let requests = [
        (
            "status",
            app.client.get(app.url(&format!("/api/files/{id}"))),
        ),
        (
            "approve",
            app.client
                .post(app.url(&format!("/api/files/{id}/approvals/upload")))
                .bearer_auth(ALICE),
        ),
        (
            "upload",
            app.client
                .post(app.url("/api/files?name=during.txt"))
                .body("during the stall"),
        ),
        (
            "download",
            app.client
                .get(app.url(&format!("/api/files/{id}/download"))),
        ),
        ("listing", app.client.get(app.url("/api/files"))),
    ];
    for (what, request) in requests {
        let started = std::time::Instant::now();
        let response = request.send().await.unwrap();
        let took = started.elapsed();
        // Printed for the record: `scripts/test --test api stops_answering -- --nocapture`.
        println!(
            "{backend:?}: {what} answered {} after {took:?}",
            response.status()
        );
        assert!(response.headers().contains_key("retry-after"), "{what}");
        assert_error(response, 503, "StorageUnavailable").await;
        assert!(
            took < std::time::Duration::from_millis(BUDGET_MS * 5 / 2),
            "{what} took {took:?} with a budget of {BUDGET_MS} ms"
        );
    }

    match azurite {
        Some(azurite) => azurite.thaw().unwrap(),
        None => app.faults.as_ref().unwrap().heal(),
    }
    // The stalled approval may have landed or not: its retry settles it, once.
    let retried = app.approve(&id, "upload", Some(ALICE), None).await.status();
    assert!(retried == 202 || retried == 200, "retry answered {retried}");
    // Whichever approval committed sent its analysis to the work queue before committing.
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["approvals"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status["stage"], "AwaitingDownloadApproval", "{status}");
}

/// A client that opens a connection and trickles its headers (or sends none) is dropped once
/// the header-read timeout passes; a normal request on the same server is unaffected.
#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app_with(Options {
        vars: vec![("FILE_APPROVER_HEADER_TIMEOUT_MS", "300".into())],
        ..Options::default()
    })
    .await
    .unwrap();
    let address = app.address.trim_start_matches("http://").to_owned();
    for partial in [&b""[..], b"GET /api/files HTTP/1.1\r\nHost: x\r\n"] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(partial).await.unwrap();
        let started = std::time::Instant::now();
        let mut reply = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut reply),
        )
        .await;
        assert!(read.is_ok(), "the connection was still open after 5 s");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
            "{reply}"
        );
    }
    assert_eq!(app.get("/api/files").await.status(), 200);
}

/// A full disk is not a retry-later: 507 with a stable code and no `Retry-After`, for an
/// upload and a decision alike, and nothing half-written once space is back.
async fn a_full_disk_answers_507_insufficient_storage(backend: Backend) {
    let Some(app) = app_with_faults(backend).await else {
        return;
    };
    let id = app
        .upload_ok("before.txt", b"stored before the disk filled")
        .await;
    let faults = app.faults.as_ref().unwrap();
    faults.fill_disk();
    for response in [
        app.upload("full.txt", b"no room", "text/plain").await,
        app.approve(&id, "upload", Some(ALICE), None).await,
    ] {
        assert!(!response.headers().contains_key("retry-after"));
        let error = assert_error(response, 507, "InsufficientStorage").await;
        assert!(
            error["message"].as_str().unwrap().contains("full"),
            "{error}"
        );
    }
    faults.heal();
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    assert_eq!(status["approvals"].as_array().unwrap().len(), 0);
}

/// Embedded only: a deadline is a message hidden on the work queue until it is due, and only
/// the embedded queue's time follows the test's clock (Azure's is the service's own; the
/// conformance suite checks that delayed messages stay hidden there).
#[tokio::test]
async fn an_approval_not_given_in_time_expires_the_file_on_the_embedded_store() {
    an_approval_not_given_in_time_expires_the_file(Backend::Embedded).await;
}

crate::on_every_backend!(
    a_full_disk_answers_507_insufficient_storage,
    storage_outage_answers_503_and_the_request_can_be_retried,
    racing_contradictory_decisions_have_exactly_one_winner,
    a_storage_service_that_stops_answering_costs_a_request_its_budget_not_a_minute,
);
