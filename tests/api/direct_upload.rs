//! Files uploaded straight to storage through an upload URL (`POST /api/files/uploads`): the
//! bytes never pass through the app; the blob's arrival starts the workflow (the embedded
//! store's commit, or `complete` where no storage event comes). The start pins the bytes (a
//! snapshot), so what is scanned, analysed and approved is what is downloaded, whatever the
//! URL writes afterwards.

use chrono::SubsecRound;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{
    assert_error, pass_minutes, spawn_app_on, Backend, Mode, TestApp, ALICE, BOB,
};

const FIRST: &[u8] = b"%PDF-1.7 the bytes first sent through the upload URL";
/// Other bytes of the same size: a replacement the size check cannot tell.
const SECOND: &[u8] = b"%PDF-1.7 other bytes, same size, sent before expiry.";

async fn declare(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/files/uploads"))
        .json(&body)
        .send()
        .await
        .expect("declare")
}

/// A file id and its upload URL.
struct Ticket {
    id: String,
    url: String,
}

/// Declares an upload that must be accepted.
async fn open_upload(app: &TestApp, body: Value) -> Ticket {
    let response = declare(app, body).await;
    assert_eq!(response.status(), 201);
    let ticket: Value = response.json().await.unwrap();
    Ticket {
        id: ticket["id"].as_str().unwrap().to_owned(),
        url: ticket["uploadUrl"].as_str().unwrap().to_owned(),
    }
}

async fn put(url: &str, bytes: &'static [u8]) -> reqwest::Response {
    reqwest::Client::new()
        .put(url)
        .header("x-ms-blob-type", "BlockBlob")
        .header("content-type", "application/pdf")
        .body(bytes)
        .send()
        .await
        .expect("the upload URL answers")
}

async fn complete(app: &TestApp, id: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/files/{id}/complete")))
        .send()
        .await
        .expect("complete")
}

async fn a_file_sent_through_its_upload_url_is_reviewed_and_downloaded_as_analysed(
    backend: Backend,
) {
    let Some(app) = spawn_app_on(backend, Mode::Local).await else {
        return;
    };
    let response = declare(
        &app,
        json!({"name": "scan 2026.pdf", "size": FIRST.len(), "contentType": "application/pdf"}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let ticket: Value = response.json().await.unwrap();
    let id = ticket["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/files/{id}"));
    assert_eq!(ticket["name"], "scan 2026.pdf");
    assert_eq!(ticket["declaredSize"], FIRST.len());
    assert_eq!(ticket["upload"]["method"], "PUT");
    assert_eq!(ticket["upload"]["headers"]["x-ms-blob-type"], "BlockBlob");
    assert_eq!(
        ticket["links"]["complete"],
        format!("/api/files/{id}/complete")
    );
    let expires = chrono::DateTime::parse_from_rfc3339(ticket["expiresAt"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let ttl = expires - app.clock_now();
    assert!(ttl <= chrono::Duration::minutes(15) && ttl > chrono::Duration::minutes(14));
    let url = ticket["uploadUrl"].as_str().unwrap().to_owned();

    // Not a file until its bytes are there.
    assert_error(complete(&app, &id).await, 409, "UploadIncomplete").await;
    assert_error(app.get(&format!("/api/files/{id}")).await, 404, "NotFound").await;

    assert_eq!(put(&url, FIRST).await.status(), 201);
    let response = complete(&app, &id).await;
    assert_eq!(response.status(), 200);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    assert_eq!(status["size"], FIRST.len());
    assert_eq!(status["contentType"], "application/pdf");
    // Saying it again changes nothing.
    let again: Value = complete(&app, &id).await.json().await.unwrap();
    assert_eq!(again["stage"], "AwaitingUploadApproval");

    // The bytes were pinned when the workflow started: the URL still works, but what it
    // writes now reaches nothing that is previewed, scanned, analysed or downloaded.
    let sha256 = hex::encode(Sha256::digest(FIRST));
    assert_eq!(put(&url, SECOND).await.status(), 201, "before the approval");

    // The analysis starts as soon as the upload is approved: no wait for the URL to expire.
    app.approve_ok(&id, "upload", ALICE).await;
    assert_eq!(put(&url, SECOND).await.status(), 201, "after the approval");
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingDownloadApproval");
    assert_eq!(status["analysis"]["sha256"], sha256, "the pinned bytes");

    app.approve_ok(&id, "download", BOB).await;
    let download: Value = app
        .get(&format!("/api/files/{id}/download"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(download["metadata"]["sha256"], sha256);
    assert_eq!(
        put(&url, SECOND).await.status(),
        201,
        "after the link was handed out"
    );
    let fetched = reqwest::get(download["downloadUrl"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    let bytes = fetched.bytes().await.unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        sha256,
        "downloaded as analysed"
    );
}

async fn an_upload_of_another_size_than_declared_fails_the_file(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::Local).await else {
        return;
    };
    // Fewer bytes than declared: the file fails before anyone reviews it.
    let ticket = open_upload(&app, json!({"name": "short.pdf", "size": 1000})).await;
    let id = ticket.id.as_str();
    assert_eq!(put(ticket.url.as_str(), FIRST).await.status(), 201);
    let status: Value = complete(&app, id).await.json().await.unwrap();
    assert_eq!(status["stage"], "Failed");
    assert_eq!(status["failure"]["code"], "SizeMismatch");
    // It ends once its bytes are deleted (a refused file keeps none).
    app.idle().await;
    assert_eq!(app.status(id).await["runtimeStatus"], "Failed");
    assert_eq!(
        status["failure"]["message"],
        format!(
            "the upload holds {} bytes but 1000 were declared",
            FIRST.len()
        )
    );
    assert_error(
        app.approve(id, "upload", Some(ALICE), None).await,
        409,
        "WrongStage",
    )
    .await;

    // More bytes than declared: the embedded store refuses them before they commit; Azure
    // Storage takes them and the file fails like the short one.
    let ticket = open_upload(&app, json!({"name": "long.pdf", "size": 8})).await;
    let id = ticket.id.as_str();
    let response = put(ticket.url.as_str(), FIRST).await;
    match backend {
        Backend::Embedded => {
            assert_eq!(response.status(), 413);
            assert_error(complete(&app, id).await, 409, "UploadIncomplete").await;
        }
        Backend::Azure => {
            assert_eq!(response.status(), 201);
            let status: Value = complete(&app, id).await.json().await.unwrap();
            assert_eq!(status["stage"], "Failed");
        }
    }
}

async fn an_upload_that_never_arrives_is_swept_once_its_url_has_expired(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::Local).await else {
        return;
    };
    // Opened two hours in the past, so the sweeps below, which reach every open upload in
    // Azurite's shared tables, never find other tests' uploads old enough to settle.
    app.clock
        .set((chrono::Utc::now() - chrono::Duration::hours(2)).trunc_subsecs(6));
    let ticket = open_upload(&app, json!({"name": "never.pdf", "size": 10})).await;
    let id = ticket.id.as_str();
    // Within the URL's life and the hour after it, the upload may still come.
    app.clock.advance(chrono::Duration::minutes(70));
    app.state.files.sweep_uploads().await.unwrap();
    assert_error(complete(&app, id).await, 409, "UploadIncomplete").await;

    app.clock.advance(chrono::Duration::minutes(10));
    let report = app.state.files.sweep_uploads().await.unwrap();
    assert!(report.abandoned >= 1, "{report:?}");
    assert_error(complete(&app, id).await, 404, "NotFound").await;
}

async fn bad_upload_declarations_are_refused(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::Local).await else {
        return;
    };
    // A whole number written with a fraction part is still a whole number (JSON Schema agrees).
    assert_eq!(
        declare(&app, json!({"name": "a.pdf", "size": 10.0}))
            .await
            .status(),
        201
    );
    for (body, status, code) in [
        (json!({"size": 10}), 400, "InvalidBody"),
        (json!(["a.pdf", 10]), 400, "InvalidBody"),
        (json!({"name": "a.pdf"}), 400, "InvalidBody"),
        (json!({"name": "a.pdf", "size": -1}), 400, "InvalidBody"),
        (json!({"name": "a.pdf", "size": 10.5}), 400, "InvalidBody"),
        (json!({"name": "a.pdf", "size": -3.0}), 400, "InvalidBody"),
        (
            json!({"name": "a.pdf", "size": 10, "colour": "red"}),
            400,
            "InvalidBody",
        ),
        (json!({"name": "a.pdf", "size": 0}), 400, "EmptyFile"),
        (
            json!({"name": "a.pdf", "size": 1u64 << 41}),
            400,
            "DeclaredTooLarge",
        ),
        (
            json!({"name": "reports/../", "size": 10}),
            400,
            "InvalidName",
        ),
        (
            json!({"name": "a.pdf", "size": 10, "contentType": "not a type"}),
            400,
            "InvalidBody",
        ),
    ] {
        assert_error(declare(&app, body).await, status, code).await;
    }
    let not_json = app
        .client
        .post(app.url("/api/files/uploads"))
        .body("name=a.pdf")
        .send()
        .await
        .unwrap();
    assert_error(not_json, 400, "InvalidBody").await;
    assert_error(complete(&app, "not-an-id").await, 400, "InvalidId").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(complete(&app, &unknown).await, 404, "NotFound").await;

    // A file uploaded through the API needs no completing; asking changes nothing.
    let id = app.upload_ok("api.txt", b"through the API").await;
    let status: Value = complete(&app, &id).await.json().await.unwrap();
    assert_eq!(status["stage"], "AwaitingUploadApproval");
}

const EVENT_GRID: &str = include_str!("../fixtures/e-eventgrid-blob-created.json");
const CLOUD_EVENT: &str = include_str!("../fixtures/e-cloudevent-blob-created.json");

/// A fixture event about blob `uploads/{name}`.
fn event(fixture: &str, name: &str) -> Value {
    serde_json::from_str(&fixture.replace("FILE_ID", name)).unwrap()
}

/// The host's invocation of `start_direct_upload/` with `event` (one event, or an array for a batch).
async fn invoke_uploaded(app: &TestApp, event: Value) -> reqwest::Response {
    let body = json!({
        "Data": { "event": event },
        "Metadata": { "sys": { "MethodName": "start_direct_upload", "UtcNow": "2026-11-30T22:00:00Z", "RandGuid": "0f8fad5b-d9cb-469f-a165-70867728950e" } }
    });
    crate::host_protocol::invoke_function(app, "start_direct_upload", body.to_string()).await
}

async fn logs_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    reply["Logs"].to_string()
}

/// Under the host (custom-handler mode), Event Grid's `BlobCreated` starts the file, in either
/// schema, alone or in a batch; a repeat changes nothing. (On the embedded store the commit
/// has started it already: the event is then a repeat.)
async fn a_blob_created_event_starts_the_file_in_either_schema(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::CustomHandler).await else {
        return;
    };
    for (fixture, batch) in [(EVENT_GRID, false), (CLOUD_EVENT, true)] {
        let ticket = open_upload(&app, json!({"name": "event.pdf", "size": FIRST.len()})).await;
        let id = ticket.id.as_str();
        assert_eq!(put(ticket.url.as_str(), FIRST).await.status(), 201);
        let one = event(fixture, id);
        let payload = if batch {
            json!([one.clone()])
        } else {
            one.clone()
        };
        let logs = logs_of(invoke_uploaded(&app, payload).await).await;
        assert!(logs.contains("AwaitingUploadApproval"), "{logs}");
        assert_eq!(app.status(id).await["stage"], "AwaitingUploadApproval");
        let again = logs_of(invoke_uploaded(&app, one).await).await;
        assert!(again.contains("AwaitingUploadApproval"), "{again}");
        assert_eq!(app.status(id).await["approvals"], json!([]));
    }
}

async fn events_that_are_not_an_upload_of_ours_are_acknowledged(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::CustomHandler).await else {
        return;
    };
    let id = uuid::Uuid::new_v4().to_string();
    let mut deleted = event(EVENT_GRID, &id);
    deleted["eventType"] = json!("Microsoft.Storage.BlobDeleted");
    let mut elsewhere = event(EVENT_GRID, &id);
    elsewhere["subject"] = json!(format!("/blobServices/default/containers/files/blobs/{id}"));
    let batch = json!([
        deleted,
        elsewhere,
        event(CLOUD_EVENT, "holiday.jpg"),
        event(CLOUD_EVENT, &id),
    ]);
    let logs = logs_of(invoke_uploaded(&app, batch).await).await;
    for why in [
        "not a Microsoft.Storage.BlobCreated event",
        "not a blob of container uploads",
        "the blob's name is not a file id",
        "no upload was opened for it",
    ] {
        assert!(logs.contains(why), "{why}: {logs}");
    }
    let malformed = app
        .client
        .post(app.url("/start_direct_upload"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(logs_of(malformed).await.contains("malformed"));
    let empty = logs_of(invoke_uploaded(&app, Value::Null).await).await;
    assert!(empty.contains("without an event"), "{empty}");
}

/// A replacement of another size, sent after the start, fails nothing: it never reaches the
/// pinned bytes the review and the download read.
async fn bytes_sent_again_after_the_start_change_nothing_reviewed(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::Local).await else {
        return;
    };
    let first: &'static [u8] = b"the words the reviewer was shown";
    let ticket = open_upload(&app, json!({"name": "swap.txt", "size": first.len()})).await;
    let id = ticket.id.as_str();
    let url = ticket.url.as_str();
    assert_eq!(put(url, first).await.status(), 201);
    complete(&app, id).await;
    let longer: &'static [u8] = b"other words, sent again before the URL expired, and more";
    assert_eq!(
        put(url, longer).await.status(),
        201,
        "the URL is still valid"
    );
    let preview = app.preview(id, ALICE).await;
    assert_eq!(preview.status(), 200);
    assert_eq!(preview.bytes().await.unwrap().as_ref(), first);
    app.approve_ok(id, "upload", ALICE).await;
    app.idle().await;
    let status = app.status(id).await;
    assert_eq!(status["stage"], "AwaitingDownloadApproval", "{status}");
    assert_eq!(status["size"], first.len());
    assert_eq!(status["analysis"]["size"], first.len());
}

/// Large files go in blocks (what the Azure SDKs and AzCopy send): Put Block for each, then
/// Put Block List; the blocks become the file in the listed order, on both backends.
async fn an_upload_url_takes_a_file_in_blocks_as_the_sdks_send_it(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::Local).await else {
        return;
    };
    let parts: [&[u8]; 3] = [b"first block, ", b"second block, ", b"third."];
    let whole: Vec<u8> = parts.concat();
    let ticket = open_upload(
        &app,
        json!({"name": "blocks.txt", "size": whole.len(), "contentType": "text/plain"}),
    )
    .await;
    let id = ticket.id.as_str();
    let url = ticket.url.as_str();
    let client = reqwest::Client::new();
    let block_id = |i: usize| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("block-{i:06}"))
    };
    // Staged out of order, listed in order.
    for i in [2, 0, 1] {
        let response = client
            .put(format!(
                "{url}&comp=block&blockid={}",
                crate::helpers::urlencode(&block_id(i))
            ))
            .body(parts[i])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "Put Block {i}");
    }
    assert_error(complete(&app, id).await, 409, "UploadIncomplete").await;
    let list = format!(
        "<?xml version='1.0' encoding='utf-8'?>\n<BlockList>{}</BlockList>",
        (0..3)
            .map(|i| format!("<Latest>{}</Latest>", block_id(i)))
            .collect::<String>()
    );
    let response = client
        .put(format!("{url}&comp=blocklist"))
        .header("x-ms-blob-content-type", "text/plain")
        .body(list)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "Put Block List");
    let status: Value = complete(&app, id).await.json().await.unwrap();
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    assert_eq!(status["size"], whole.len());

    app.approve_ok(id, "upload", ALICE).await;
    pass_minutes(&app, id, backend, 17).await;
    let status = app.status(id).await;
    assert_eq!(
        status["analysis"]["sha256"],
        hex::encode(Sha256::digest(&whole))
    );
    assert_eq!(status["analysis"]["isText"], true);

    // A block list naming a block never staged commits nothing.
    let ticket = open_upload(&app, json!({"name": "gap.txt", "size": 10})).await;
    let url = ticket.url.as_str();
    let response = client
        .put(format!("{url}&comp=blocklist"))
        .body(format!(
            "<BlockList><Latest>{}</Latest></BlockList>",
            block_id(9)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_error(
        complete(&app, ticket.id.as_str()).await,
        409,
        "UploadIncomplete",
    )
    .await;
}

crate::on_every_backend!(
    a_file_sent_through_its_upload_url_is_reviewed_and_downloaded_as_analysed,
    an_upload_of_another_size_than_declared_fails_the_file,
    an_upload_that_never_arrives_is_swept_once_its_url_has_expired,
    bad_upload_declarations_are_refused,
    a_blob_created_event_starts_the_file_in_either_schema,
    events_that_are_not_an_upload_of_ours_are_acknowledged,
    an_upload_url_takes_a_file_in_blocks_as_the_sdks_send_it,
    bytes_sent_again_after_the_start_change_nothing_reviewed,
);
