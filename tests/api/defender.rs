//! Microsoft Defender for Storage as the scanner: its results arrive as host-shaped Event Grid
//! invocations of `scan_result/` (both Event Grid schemas), are matched to their file by blob
//! URL and ETag, and decide the file's way on; a result that never comes is handled by the
//! deadline. Defender itself cannot run here: the tests play its events as its documentation
//! shapes them (`Microsoft.Security.MalwareScanningResult`).

use serde_json::{json, Value};

use crate::helpers::{pass_minutes, spawn_app_with, Backend, Mode, Options, TestApp, ALICE, BOB};

const NOTES: &[u8] = b"quarterly numbers\nrevenue up\n";

async fn app(backend: Backend, extra: Vec<(&'static str, String)>) -> Option<TestApp> {
    let mut vars = vec![
        ("FILE_APPROVER_SCANNER", "defender".to_owned()),
        ("FILE_APPROVER_SCAN_TIMEOUT_SECS", "600".to_owned()),
    ];
    vars.extend(extra);
    spawn_app_with(Options {
        backend,
        mode: Mode::Local,
        vars,
        ..Options::default()
    })
    .await
}

/// Uploads, and returns the id and the ETag of the bytes stored (what Defender would scan).
async fn upload(app: &TestApp) -> (String, String) {
    let id = app.upload_ok("notes.txt", NOTES).await;
    app.idle().await;
    assert_eq!(app.status(&id).await["stage"], "Scanning");
    let etag = app
        .state
        .files
        .store()
        .blob_properties(file_approver::store::FILES_CONTAINER, &id)
        .await
        .unwrap()
        .etag
        .as_str()
        .trim_matches('"')
        .to_owned();
    (id, etag)
}

/// Defender's result as its Event Grid schema carries it; `cloud` gives the CloudEvents form.
fn result(id: &str, etag: &str, kind: &str, names: &[&str], cloud: bool) -> Value {
    let data = json!({
        "correlationId": format!("corr-{id}-{kind}"),
        "blobUri": format!("https://acct.blob.core.windows.net/files/{id}"),
        "eTag": etag,
        "scanFinishedTimeUtc": "2026-12-06T10:00:00.1234567Z",
        "scanResultType": kind,
        "scanResultDetails": { "malwareNamesFound": names, "sha256": "0011" }
    });
    let subject = format!("storageAccounts/acct/containers/files/blobs/{id}");
    if cloud {
        json!({
            "specversion": "1.0", "id": format!("ev-{id}"), "type": "Microsoft.Security.MalwareScanningResult",
            "source": "/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/defender",
            "subject": subject, "time": "2026-12-06T10:00:01Z", "data": data
        })
    } else {
        json!({
            "id": format!("ev-{id}"), "eventType": "Microsoft.Security.MalwareScanningResult",
            "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/defender",
            "subject": subject, "eventTime": "2026-12-06T10:00:01Z", "dataVersion": "1.0",
            "metadataVersion": "1", "data": data
        })
    }
}

/// The host's invocation of `scan_result/`; returns its `Logs`.
async fn deliver(app: &TestApp, event: Value) -> String {
    let body = json!({
        "Data": { "event": event },
        "Metadata": { "sys": { "MethodName": "scan_result", "UtcNow": "2026-12-06T10:00:02Z", "RandGuid": "0f8fad5b-d9cb-469f-a165-70867728950e" } }
    });
    let response =
        crate::host_protocol::invoke_function(app, "scan_result", body.to_string()).await;
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    app.idle().await;
    reply["Logs"].to_string()
}

async fn no_threats_found_sends_the_file_to_review(backend: Backend) {
    let Some(app) = app(backend, vec![]).await else {
        return;
    };
    let (id, etag) = upload(&app).await;
    let logs = deliver(&app, result(&id, &etag, "No threats found", &[], false)).await;
    assert!(logs.contains("clean"), "{logs}");
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval", "{status}");
    assert_eq!(status["scan"]["verdict"], "clean");
    assert_eq!(status["scan"]["scanner"]["name"], "defender");
    assert_eq!(status["scan"]["scannedTime"], "2026-12-06T10:00:00Z");
    // The analysis reads the bytes Defender scanned, and goes on.
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingDownloadApproval", "{status}");
    assert_eq!(status["analysis"]["size"], NOTES.len());
}

async fn a_malicious_result_blocks_the_file_with_the_threats_named(backend: Backend) {
    let Some(app) = app(backend, vec![]).await else {
        return;
    };
    let (id, etag) = upload(&app).await;
    deliver(
        &app,
        result(&id, &etag, "Malicious", &["EICAR-Test-File"], true),
    )
    .await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Blocked", "{status}");
    assert_eq!(status["scan"]["verdict"], "malicious");
    assert_eq!(status["scan"]["threats"][0], "EICAR-Test-File");
    let bytes = app
        .state
        .files
        .store()
        .blob_properties(file_approver::store::FILES_CONTAINER, &id)
        .await;
    assert!(bytes.is_err(), "a blocked file's bytes are kept: {bytes:?}");
}

async fn not_scanned_and_error_are_unscannable_and_follow_the_policy(backend: Backend) {
    let Some(blocking) = app(backend, vec![]).await else {
        return;
    };
    for kind in ["Not Scanned", "Error"] {
        let (id, etag) = upload(&blocking).await;
        deliver(&blocking, result(&id, &etag, kind, &[], false)).await;
        let status = blocking.status(&id).await;
        assert_eq!(status["stage"], "Blocked", "{kind}: {status}");
        assert_eq!(status["scan"]["verdict"], "unscannable");
        assert!(
            status["scan"]["reason"].as_str().unwrap().contains(kind),
            "{status}"
        );
    }
    let Some(reviewing) = app(
        backend,
        vec![("FILE_APPROVER_SCAN_UNSCANNABLE", "review".into())],
    )
    .await
    else {
        return;
    };
    let (id, etag) = upload(&reviewing).await;
    deliver(&reviewing, result(&id, &etag, "Not Scanned", &[], true)).await;
    let status = reviewing.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval", "{status}");
    assert_eq!(status["scan"]["verdict"], "unscannable");
}

async fn a_result_for_other_bytes_is_ignored_and_a_duplicate_changes_nothing(backend: Backend) {
    let Some(app) = app(backend, vec![]).await else {
        return;
    };
    let (id, etag) = upload(&app).await;
    let logs = deliver(
        &app,
        result(&id, "0x8DCFFFFFFFFFFFF", "Malicious", &["X"], false),
    )
    .await;
    assert!(logs.contains("other bytes"), "{logs}");
    assert_eq!(app.status(&id).await["stage"], "Scanning");

    let clean = result(&id, &etag, "No threats found", &[], false);
    deliver(&app, clean.clone()).await;
    let logs = deliver(&app, clean).await;
    assert!(
        logs.contains("already recorded")
            || logs.contains("no longer waiting")
            || logs.contains("not waiting"),
        "{logs}"
    );
    // A later, contradicting result for the same bytes is not the verdict either.
    let logs = deliver(&app, result(&id, &etag, "Malicious", &["Late"], true)).await;
    assert!(logs.contains("not waiting"), "{logs}");
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval", "{status}");
    assert_eq!(status["scan"]["verdict"], "clean");
    // Nor does a result about a blob of no file of this app.
    let logs = deliver(
        &app,
        result(
            "3f1c0e1e-7d5c-4b8e-9a39-0c5d2b1f6a11",
            &etag,
            "Malicious",
            &[],
            false,
        ),
    )
    .await;
    assert!(logs.contains("does not exist"), "{logs}");
    let logs = deliver(
        &app,
        json!({"eventType": "Microsoft.Storage.BlobCreated", "data": {}}),
    )
    .await;
    assert!(logs.contains("ignored an event"), "{logs}");
}

async fn a_result_that_never_comes_makes_the_file_unscannable_at_the_deadline(backend: Backend) {
    let Some(app) = app(backend, vec![]).await else {
        return;
    };
    let (id, _) = upload(&app).await;
    pass_minutes(&app, &id, backend, 5).await;
    assert_eq!(app.status(&id).await["stage"], "Scanning");
    pass_minutes(&app, &id, backend, 6).await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Blocked", "{status}");
    assert_eq!(status["scan"]["verdict"], "unscannable");
    let reason = status["scan"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("no result from Microsoft Defender for Storage within 10 min"),
        "{reason}"
    );
    // Nobody could decide it meanwhile, or now.
    let refused = app.approve(&id, "upload", Some(BOB), None).await;
    assert_eq!(refused.status(), 409);
}

crate::on_every_backend!(
    no_threats_found_sends_the_file_to_review,
    a_malicious_result_blocks_the_file_with_the_threats_named,
    not_scanned_and_error_are_unscannable_and_follow_the_policy,
    a_result_for_other_bytes_is_ignored_and_a_duplicate_changes_nothing,
    a_result_that_never_comes_makes_the_file_unscannable_at_the_deadline,
);
