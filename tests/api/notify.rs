//! Notifications: a loopback receiver plays the webhook (an Event Grid topic, a chat hook),
//! accepting, failing first, or hanging, and the tests check what it got: CloudEvents 1.0
//! JSON, signed, each event at least once under one id, and files that never wait for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use crate::helpers::{
    pass_minutes, spawn_app_with, Backend, Mode, Options, TestApp, ALICE, BOB, CAROL, PLAIN_BYTES,
};
use crate::host_protocol::{blob_trigger_payload, invoke_ok, record_binding};

const SECRET: &str = "webhook-secret-0123456789";

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Behaviour {
    Accept,
    /// 503 for the first `n` requests, then 200.
    FailFirst(usize),
    /// Never answers.
    Hang,
}

#[derive(Clone)]
struct Receiver {
    behaviour: Behaviour,
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes, bool)>>>,
}

impl Receiver {
    /// Serves on a loopback port; returns its URL.
    async fn start(behaviour: Behaviour) -> (Receiver, String) {
        let receiver = Receiver {
            behaviour,
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (receiver, url)
    }

    /// Every request, with whether it was accepted.
    fn requests(&self) -> Vec<(HeaderMap, Bytes, bool)> {
        self.seen.lock().unwrap().clone()
    }

    /// The events accepted, by id, oldest first.
    fn accepted(&self) -> Vec<Value> {
        let mut events: Vec<Value> = self
            .requests()
            .into_iter()
            .filter(|(_, _, ok)| *ok)
            .map(|(_, body, _)| serde_json::from_slice(&body).unwrap())
            .collect();
        events.sort_by_key(|e| {
            let id = e["id"].as_str().unwrap();
            id.rsplit(':').next().unwrap().parse::<u32>().unwrap()
        });
        events
    }

    fn types(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = receiver.seen.lock().unwrap().len();
    let accept = match receiver.behaviour {
        Behaviour::Accept => true,
        Behaviour::FailFirst(k) => n >= k,
        Behaviour::Hang => {
            receiver.seen.lock().unwrap().push((headers, body, false));
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::OK;
        }
    };
    receiver.seen.lock().unwrap().push((headers, body, accept));
    if accept {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn app_with_webhook(
    backend: Backend,
    url: &str,
    extra: Vec<(&'static str, String)>,
) -> Option<TestApp> {
    let mut vars = vec![
        (
            "FILE_APPROVER_REVIEWERS",
            format!("alice:{ALICE},bob:{BOB},carol:{CAROL}"),
        ),
        ("FILE_APPROVER_WEBHOOK_URL", url.to_owned()),
        ("FILE_APPROVER_WEBHOOK_SECRET", SECRET.to_owned()),
        ("FILE_APPROVER_WEBHOOK_TIMEOUT_MS", "300".to_owned()),
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

fn hmac_hex(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A file that needs people, and its end, each reach the webhook as a signed CloudEvent; the
/// approved event names the uploader, so it can be routed to them.
async fn people_are_told_when_a_file_needs_them_and_when_it_ends(backend: Backend) {
    let (receiver, url) = Receiver::start(Behaviour::Accept).await;
    let Some(app) = app_with_webhook(backend, &url, vec![]).await else {
        return;
    };
    let id = app.upload_as(ALICE).await;
    app.idle().await;
    assert_eq!(receiver.types(), ["FileApprover.AwaitingUploadApproval"]);
    app.approve_ok(&id, "upload", BOB).await;
    app.idle().await;
    app.approve_ok(&id, "download", CAROL).await;
    app.idle().await;
    assert_eq!(
        receiver.types(),
        [
            "FileApprover.AwaitingUploadApproval",
            "FileApprover.AwaitingDownloadApproval",
            "FileApprover.Approved"
        ]
    );
    for (headers, body, _) in receiver.requests() {
        assert_eq!(headers["x-signature-256"], hmac_hex(&body).as_str());
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/cloudevents+json"));
        let event: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "/file-approver");
        assert_eq!(event["subject"], format!("files/{id}"));
        assert_eq!(event["datacontenttype"], "application/json");
        assert!(event["time"].is_string());
        assert_eq!(event["data"]["id"], id.as_str());
    }
    let approved = &receiver.accepted()[2];
    assert_eq!(approved["data"]["stage"], "Approved");
    assert_eq!(approved["data"]["uploader"]["name"], "alice");
    // An approved file's workflow stays to hear a revocation, which is announced too.
    assert_eq!(app.status(&id).await["runtimeStatus"], "Running");
    let revoked = app
        .client
        .post(app.url(&format!("/api/files/{id}/revoke")))
        .bearer_auth(BOB)
        .json(&serde_json::json!({"comment": "released by mistake"}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 202);
    app.idle().await;
    assert_eq!(receiver.types().last().unwrap(), "FileApprover.Revoked");
    let event = receiver.accepted().last().unwrap().clone();
    assert_eq!(event["data"]["stage"], "Revoked");
    let status = app.status(&id).await;
    assert_eq!(status["runtimeStatus"], "Completed");
}

/// A change request and the new version that answers it reach the webhook too; the uploader's
/// turn has its deadline in the event.
async fn a_change_request_and_a_new_version_are_announced(backend: Backend) {
    let (receiver, url) = Receiver::start(Behaviour::Accept).await;
    let extra = vec![("FILE_APPROVER_APPROVAL_TIMEOUT_SECS", "3600".to_owned())];
    let Some(app) = app_with_webhook(backend, &url, extra).await else {
        return;
    };
    let id = app.upload_as(ALICE).await;
    app.ask_changes(&id, "upload", BOB, "sign it").await;
    let sent = app
        .client
        .post(app.url(&format!("/api/files/{id}/versions")))
        .bearer_auth(ALICE)
        .body("signed this time")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    app.idle().await;
    assert_eq!(
        receiver.types(),
        [
            "FileApprover.AwaitingUploadApproval",
            "FileApprover.ChangesRequested",
            "FileApprover.NewVersion",
            "FileApprover.AwaitingUploadApproval"
        ]
    );
    let events = receiver.accepted();
    assert_eq!(events[1]["data"]["stage"], "ChangesRequested");
    assert!(events[1]["data"]["deadline"].is_string(), "{}", events[1]);
    assert_eq!(events[2]["data"]["stage"], "AwaitingUploadApproval");
    assert_eq!(events[2]["data"]["size"], "signed this time".len());
}

/// A receiver that fails at first gets every event once it recovers, each under the id it
/// first had; the file went on meanwhile without waiting.
async fn a_receiver_that_fails_first_gets_each_event_under_one_id(backend: Backend) {
    let (receiver, url) = Receiver::start(Behaviour::FailFirst(3)).await;
    let Some(app) = app_with_webhook(backend, &url, vec![]).await else {
        return;
    };
    let id = app.upload_as(ALICE).await;
    app.idle().await;
    // The receiver refuses, and the review goes on regardless.
    app.approve_ok(&id, "upload", BOB).await;
    app.idle().await;
    assert_eq!(app.status(&id).await["stage"], "AwaitingDownloadApproval");
    assert!(receiver.accepted().is_empty(), "{:?}", receiver.types());
    // Retries come 30 s, then a minute, then two... apart.
    for _ in 0..6 {
        pass_minutes(&app, &id, backend, 5).await;
    }
    assert_eq!(
        receiver.types(),
        [
            "FileApprover.AwaitingUploadApproval",
            "FileApprover.AwaitingDownloadApproval"
        ]
    );
    let ids_tried: std::collections::BTreeSet<String> = receiver
        .requests()
        .iter()
        .map(|(_, body, _)| {
            let e: Value = serde_json::from_slice(body).unwrap();
            e["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids_tried.len(), 2, "retries keep the event's id");
    let accepted_ids: Vec<String> = receiver
        .accepted()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(accepted_ids.len(), 2, "each accepted once");
}

/// A receiver that never answers costs each attempt its timeout, inside the work queue: the
/// file is approved and downloadable while the notifications keep retrying.
async fn a_receiver_that_hangs_never_holds_a_file_up(backend: Backend) {
    let (receiver, url) = Receiver::start(Behaviour::Hang).await;
    let Some(app) = app_with_webhook(backend, &url, vec![]).await else {
        return;
    };
    let id = app.upload_as(ALICE).await;
    app.approve_ok(&id, "upload", BOB).await;
    app.idle().await;
    app.approve_ok(&id, "download", CAROL).await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Approved");
    assert_eq!(
        app.get(&format!("/api/files/{id}/download")).await.status(),
        200
    );
    app.idle().await;
    assert!(!receiver.requests().is_empty());
    // Still delivering the end (retries for hours), never failed for it.
    assert_eq!(app.status(&id).await["runtimeStatus"], "Running");
}

/// With an approval timeout, a reminder goes out the configured time before the deadline
/// while the stage still waits, then the expiry.
async fn a_reminder_goes_out_before_the_deadline(backend: Backend) {
    let (receiver, url) = Receiver::start(Behaviour::Accept).await;
    let Some(app) = app_with_webhook(
        backend,
        &url,
        vec![
            ("FILE_APPROVER_APPROVAL_TIMEOUT_SECS", "3600".into()),
            ("FILE_APPROVER_REMINDER_BEFORE_SECS", "600".into()),
        ],
    )
    .await
    else {
        return;
    };
    let id = app.upload_as(ALICE).await;
    app.idle().await;
    pass_minutes(&app, &id, backend, 45).await;
    assert_eq!(receiver.types(), ["FileApprover.AwaitingUploadApproval"]);
    pass_minutes(&app, &id, backend, 6).await;
    assert_eq!(
        receiver.types(),
        [
            "FileApprover.AwaitingUploadApproval",
            "FileApprover.Reminder"
        ]
    );
    let reminder = &receiver.accepted()[1];
    assert_eq!(reminder["data"]["stage"], "AwaitingUploadApproval");
    assert!(reminder["data"]["deadline"].is_string());
    // An approval now still counts; without one the file expires and people are told.
    pass_minutes(&app, &id, backend, 10).await;
    assert_eq!(app.status(&id).await["stage"], "Expired");
    assert_eq!(receiver.types().last().unwrap(), "FileApprover.Expired");
}

/// Under the host (custom-handler mode: the blob trigger starts the workflow, the work queue
/// runs its activities) the same story holds: the webhook hears each step, the uploader can
/// withdraw, and the history tells it all.
async fn under_the_host_people_are_told_and_the_history_is_kept(backend: Backend) {
    let (receiver, url) = Receiver::start(Behaviour::Accept).await;
    let mut vars = vec![
        (
            "FILE_APPROVER_REVIEWERS",
            format!("alice:{ALICE},bob:{BOB},carol:{CAROL}"),
        ),
        ("FILE_APPROVER_WEBHOOK_URL", url.clone()),
        ("FILE_APPROVER_WEBHOOK_SECRET", SECRET.to_owned()),
    ];
    vars.push(("FILE_APPROVER_WEBHOOK_TIMEOUT_MS", "300".to_owned()));
    let Some(app) = spawn_app_with(Options {
        backend,
        mode: Mode::CustomHandler,
        vars,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let id = app.upload_as(ALICE).await;
    assert_eq!(app.status(&id).await["stage"], "Uploaded");
    let record = record_binding(&app, &id).await;
    invoke_ok(&app, blob_trigger_payload(&id, PLAIN_BYTES, record)).await;
    app.idle().await;
    assert_eq!(app.status(&id).await["uploader"]["name"], "alice");
    app.approve_ok(&id, "upload", BOB).await;
    app.idle().await;
    let withdrawn = app
        .client
        .post(app.url(&format!("/api/files/{id}/withdraw")))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), 202);
    app.idle().await;
    assert_eq!(
        receiver.types(),
        [
            "FileApprover.AwaitingUploadApproval",
            "FileApprover.AwaitingDownloadApproval",
            "FileApprover.Withdrawn"
        ]
    );
    let history: Value = app
        .get(&format!("/api/files/{id}/history"))
        .await
        .json()
        .await
        .unwrap();
    let steps: Vec<&str> = history["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "uploaded",
            "decided",
            "analysisStarted",
            "analyzed",
            "withdrawn",
            "bytesDeleted",
            "finished"
        ]
    );
}

crate::on_every_backend!(
    people_are_told_when_a_file_needs_them_and_when_it_ends,
    a_change_request_and_a_new_version_are_announced,
    a_receiver_that_fails_first_gets_each_event_under_one_id,
    a_receiver_that_hangs_never_holds_a_file_up,
    a_reminder_goes_out_before_the_deadline,
    under_the_host_people_are_told_and_the_history_is_kept,
);

/// With a scanner, every event after the scan carries what it saw, and a blocked file ends
/// with `FileApprover.Blocked` naming the threat.
async fn events_carry_the_scan_and_a_blocked_file_is_announced(backend: Backend) {
    use file_approver::scan::testing::{ClamdOptions, PrivateClamd, EICAR, EICAR_SIGNATURE};
    let dir = tempfile::tempdir().unwrap();
    let bin = PrivateClamd::bin().expect("FILE_APPROVER_TEST_CLAMD names the clamd to start");
    let clamd = PrivateClamd::start(&bin, dir.path(), &ClamdOptions::default())
        .await
        .expect("a private clamd starts");
    let (receiver, url) = Receiver::start(Behaviour::Accept).await;
    let Some(app) = app_with_webhook(
        backend,
        &url,
        vec![("FILE_APPROVER_CLAMD", clamd.setting())],
    )
    .await
    else {
        return;
    };
    let clean = app.upload_ok("notes.txt", PLAIN_BYTES).await;
    let infected = app
        .upload("eicar.com", EICAR, "application/octet-stream")
        .await;
    assert_eq!(infected.status(), 201);
    app.idle().await;
    let events = receiver.accepted();
    let of = |id: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["data"]["id"] == id)
            .cloned()
            .collect()
    };
    let clean_events = of(&clean);
    assert_eq!(clean_events.len(), 1, "{clean_events:?}");
    assert_eq!(
        clean_events[0]["type"],
        "FileApprover.AwaitingUploadApproval"
    );
    assert_eq!(clean_events[0]["data"]["scan"]["verdict"], "clean");
    let blocked: Vec<Value> = events
        .iter()
        .filter(|e| e["type"] == "FileApprover.Blocked")
        .cloned()
        .collect();
    assert_eq!(blocked.len(), 1, "{events:?}");
    assert_eq!(blocked[0]["data"]["stage"], "Blocked");
    assert_eq!(blocked[0]["data"]["scan"]["verdict"], "malicious");
    assert_eq!(blocked[0]["data"]["scan"]["threats"][0], EICAR_SIGNATURE);
}

mod scanned {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        clamd_tests_skipped,
        ignore = "needs clamd: FILE_APPROVER_TEST_CLAMD is unset (scripts/test sets it)"
    )]
    async fn events_carry_the_scan_and_a_blocked_file_is_announced_on_the_embedded_store() {
        super::events_carry_the_scan_and_a_blocked_file_is_announced(super::Backend::Embedded)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        any(azure_tests_skipped, clamd_tests_skipped),
        ignore = "needs Azurite and clamd (scripts/test starts both)"
    )]
    async fn events_carry_the_scan_and_a_blocked_file_is_announced_on_azure() {
        super::events_carry_the_scan_and_a_blocked_file_is_announced(super::Backend::Azure).await;
    }
}
