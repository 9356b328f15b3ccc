//! Reviewers and uploaders as people: who uploaded (a token or an Easy Auth sign-in), the
//! four-eyes rules, quorums, and the deadline a status shows. On both backends; the Easy Auth
//! flow also in custom-handler mode, where the blob trigger starts the workflow.

use base64::Engine as _;
use chrono::SubsecRound;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, spawn_app_with, Backend, Mode, Options, TestApp, ALICE, BOB, CAROL, PLAIN_BYTES,
    UMA,
};
use crate::host_protocol::{blob_trigger_payload, invoke_ok, record_binding};

fn reviewers() -> (&'static str, String) {
    (
        "FILE_APPROVER_REVIEWERS",
        format!("alice:{ALICE},bob:{BOB},carol:{CAROL}"),
    )
}

async fn app_with(
    backend: Backend,
    mode: Mode,
    vars: Vec<(&'static str, String)>,
) -> Option<TestApp> {
    let mut all = vec![reviewers()];
    all.extend(vars);
    spawn_app_with(Options {
        backend,
        mode,
        vars: all,
        ..Options::default()
    })
    .await
}

/// An upload with `headers` (a bearer token, principal headers).
async fn upload_with(app: &TestApp, name: &str, headers: &[(String, String)]) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/api/files?name={name}")))
        .header("Content-Type", "text/plain")
        .body(PLAIN_BYTES);
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    request.send().await.expect("upload")
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), format!("Bearer {token}"))]
}

async fn decide(
    app: &TestApp,
    id: &str,
    stage: &str,
    headers: &[(String, String)],
    approve: bool,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/api/files/{id}/approvals/{stage}")))
        .header("Content-Type", "application/json")
        .body(if approve {
            r#"{"approved": true}"#
        } else {
            r#"{"approved": false, "comment": "not this one"}"#
        });
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    request.send().await.expect("decision")
}

/// The platform's principal headers for a fixture of `tests/fixtures/easy-auth/`.
fn signed_in(fixture: &str) -> Vec<(String, String)> {
    let text = match fixture {
        "aad-reviewer" => include_str!("../fixtures/easy-auth/aad-reviewer.json"),
        "aad-second-reviewer" => include_str!("../fixtures/easy-auth/aad-second-reviewer.json"),
        "aad-uploader" => include_str!("../fixtures/easy-auth/aad-uploader.json"),
        "github-no-role" => include_str!("../fixtures/easy-auth/github-no-role.json"),
        "swa-reviewer" => include_str!("../fixtures/easy-auth/swa-reviewer.json"),
        other => panic!("no fixture {other}"),
    };
    let fixture: Value = serde_json::from_str(text).unwrap();
    let mut headers: Vec<(String, String)> = fixture["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    headers.push((
        "X-MS-CLIENT-PRINCIPAL".into(),
        base64::engine::general_purpose::STANDARD.encode(fixture["principal"].to_string()),
    ));
    headers
}

/// Local mode starts the workflow at once; custom-handler mode needs the blob trigger.
async fn started(app: &TestApp, mode: Mode, response: reqwest::Response) -> String {
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    if mode == Mode::CustomHandler {
        let record = record_binding(app, &id).await;
        invoke_ok(app, blob_trigger_payload(&id, PLAIN_BYTES, record)).await;
    }
    id
}

/// A known token on an upload names its uploader in the status; an unknown one is refused;
/// none at all is an anonymous upload (while no uploaders' list is set).
async fn an_upload_with_a_known_token_records_its_uploader(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = app.upload_as(ALICE).await;
    let status = app.status(&id).await;
    assert_eq!(status["uploader"]["name"], "alice");
    assert_eq!(status["rules"]["fourEyes"], true);

    assert_error(
        upload_with(&app, "x.txt", &bearer("nobody-knows-this-token")).await,
        401,
        "Unauthorized",
    )
    .await;
    let anonymous = upload_with(&app, "anon.txt", &[]).await;
    assert_eq!(anonymous.status(), 201);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["uploader"], Value::Null);
}

/// With `FILE_APPROVER_UPLOADERS` set, uploads need a token: an uploader's or a reviewer's.
async fn an_uploaders_list_makes_uploads_need_a_token(backend: Backend) {
    let Some(app) = app_with(
        backend,
        Mode::Local,
        vec![("FILE_APPROVER_UPLOADERS", format!("uma:{UMA}"))],
    )
    .await
    else {
        return;
    };
    assert_error(
        upload_with(&app, "anon.txt", &[]).await,
        401,
        "Unauthorized",
    )
    .await;
    let id = app.upload_as(UMA).await;
    assert_eq!(app.status(&id).await["uploader"]["name"], "uma");
    // An uploader is known (not 401) but is not a reviewer.
    assert_error(
        app.approve(&id, "upload", Some(UMA), None).await,
        403,
        "NotAReviewer",
    )
    .await;
}

/// Four eyes: the uploader cannot approve (rejecting is allowed), and the upload's approver
/// cannot approve the download.
async fn nobody_approves_their_own_upload_or_both_stages(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = app.upload_as(ALICE).await;
    let refused = assert_error(
        app.approve(&id, "upload", Some(ALICE), None).await,
        403,
        "SelfApproval",
    )
    .await;
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("alice uploaded"));
    assert_eq!(app.status(&id).await["approvals"], Value::Array(vec![]));

    app.approve_ok(&id, "upload", BOB).await;
    app.idle().await;
    assert_eq!(app.status(&id).await["stage"], "AwaitingDownloadApproval");
    assert_error(
        app.approve(&id, "download", Some(BOB), None).await,
        403,
        "SameReviewer",
    )
    .await;
    assert_error(
        app.approve(&id, "download", Some(ALICE), None).await,
        403,
        "SelfApproval",
    )
    .await;
    let done = app.approve(&id, "download", Some(CAROL), None).await;
    assert_eq!(done.status(), 202);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["stage"], "Approved");

    // The uploader may still stop their own file.
    let id = app.upload_as(ALICE).await;
    let rejected = decide(&app, &id, "upload", &bearer(ALICE), false).await;
    assert_eq!(rejected.status(), 202);
    assert_eq!(app.status(&id).await["stage"], "Rejected");
}

/// A team of one turns the rule off: the same person uploads and approves both stages.
async fn four_eyes_can_be_turned_off_for_a_single_reviewer_team(backend: Backend) {
    let Some(app) = app_with(
        backend,
        Mode::Local,
        vec![("FILE_APPROVER_FOUR_EYES", "false".into())],
    )
    .await
    else {
        return;
    };
    let id = app.upload_as(ALICE).await;
    assert_eq!(app.status(&id).await["rules"]["fourEyes"], false);
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    app.approve_ok(&id, "download", ALICE).await;
    assert_eq!(app.status(&id).await["stage"], "Approved");
}

/// A quorum of two: one approval leaves the stage waiting, the same reviewer again changes
/// nothing, a second reviewer completes it; a rejection at any point ends the workflow.
async fn a_quorum_needs_distinct_approvals_and_any_rejection_ends_it(backend: Backend) {
    let Some(app) = app_with(
        backend,
        Mode::Local,
        vec![("FILE_APPROVER_UPLOAD_QUORUM", "2".into())],
    )
    .await
    else {
        return;
    };
    let id = app.upload_ok("quorum.txt", b"two pairs of eyes").await;
    assert_eq!(app.status(&id).await["rules"]["uploadQuorum"], 2);
    let first = app.approve(&id, "upload", Some(ALICE), None).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["stage"], "AwaitingUploadApproval");
    assert_eq!(first["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.approve(&id, "upload", Some(ALICE), None).await.status(),
        200
    );
    let second = app.approve(&id, "upload", Some(BOB), None).await;
    assert_eq!(second.status(), 202);
    let second: Value = second.json().await.unwrap();
    // A small file's analysis runs inside the approval that completes the quorum.
    assert_eq!(second["stage"], "AwaitingDownloadApproval");

    let id = app.upload_ok("quorum.txt", b"one says no").await;
    app.approve_ok(&id, "upload", ALICE).await;
    let rejected = decide(&app, &id, "upload", &bearer(BOB), false).await;
    assert_eq!(rejected.status(), 202);
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Rejected");
    assert_eq!(status["approvals"].as_array().unwrap().len(), 2);
}

/// With an approval timeout, the status shows when the awaiting stage expires: an hour from
/// the upload, then an hour from the analysis's end; none once nothing awaits a decision.
async fn the_status_shows_the_deadline_of_the_awaiting_stage(backend: Backend) {
    let Some(app) = app_with(
        backend,
        Mode::Local,
        vec![("FILE_APPROVER_APPROVAL_TIMEOUT_SECS", "3600".into())],
    )
    .await
    else {
        return;
    };
    let uploaded_at = chrono::Utc::now().trunc_subsecs(0);
    app.clock.set(uploaded_at);
    let id = app.upload_ok("deadline.txt", b"tick tock").await;
    let status = app.status(&id).await;
    let deadline = |status: &Value| {
        chrono::DateTime::parse_from_rfc3339(status["deadline"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    assert_eq!(deadline(&status), uploaded_at + chrono::Duration::hours(1));

    let analysed_at = uploaded_at + chrono::Duration::minutes(10);
    app.clock.set(analysed_at);
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingDownloadApproval");
    assert_eq!(deadline(&status), analysed_at + chrono::Duration::hours(1));

    app.approve_ok(&id, "download", BOB).await;
    assert!(app.status(&id).await.get("deadline").is_none());
}

/// Under Easy Auth the platform's principal decides who someone is: the reviewer role lets
/// them decide, its absence is a 403, no sign-in a 401, a broken header a 400; the uploader
/// is recorded with the identity provider's id, and four eyes goes by that id.
async fn easy_auth_sign_ins_decide_by_app_role(backend: Backend, mode: Mode) {
    let Some(app) = app_with(
        backend,
        mode,
        vec![("FILE_APPROVER_EASY_AUTH", "true".into())],
    )
    .await
    else {
        return;
    };
    let response = upload_with(&app, "signed.txt", &signed_in("aad-uploader")).await;
    let id = started(&app, mode, response).await;
    let status = app.status(&id).await;
    assert_eq!(status["uploader"]["name"], "uma@contoso.com");
    assert_eq!(
        status["uploader"]["id"],
        "c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f"
    );

    assert_error(
        decide(&app, &id, "upload", &[], true).await,
        401,
        "Unauthorized",
    )
    .await;
    assert_error(
        decide(&app, &id, "upload", &signed_in("github-no-role"), true).await,
        403,
        "NotAReviewer",
    )
    .await;
    assert_error(
        decide(
            &app,
            &id,
            "upload",
            &[("X-MS-CLIENT-PRINCIPAL".into(), "not base64!".into())],
            true,
        )
        .await,
        400,
        "InvalidHeader",
    )
    .await;
    let approved = decide(&app, &id, "upload", &signed_in("aad-reviewer"), true).await;
    assert_eq!(approved.status(), 202);
    let approved: Value = approved.json().await.unwrap();
    assert_eq!(approved["approvals"][0]["reviewer"], "dana@contoso.com");
    assert_eq!(
        approved["approvals"][0]["reviewerId"],
        "8f0c5d1e-2b7a-4e3c-9d61-5a4b3c2d1e0f"
    );
    app.idle().await;
    assert_error(
        decide(&app, &id, "download", &signed_in("aad-reviewer"), true).await,
        403,
        "SameReviewer",
    )
    .await;
    // Static Web Apps' shape works as well.
    let done = decide(&app, &id, "download", &signed_in("swa-reviewer"), true).await;
    assert_eq!(done.status(), 202);
    assert_eq!(
        app.status(&id).await["approvals"][1]["reviewer"],
        "sam@contoso.com"
    );

    // Erin uploads and holds the reviewer role: she still cannot approve her own file,
    // and that goes by her id, whatever name her sign-in shows.
    let response = upload_with(&app, "own.txt", &signed_in("aad-second-reviewer")).await;
    let own = started(&app, mode, response).await;
    let mut renamed = signed_in("aad-second-reviewer");
    for (k, v) in renamed.iter_mut() {
        if k == "X-MS-CLIENT-PRINCIPAL-NAME" {
            *v = "erin.new-name@contoso.com".into();
        }
    }
    assert_error(
        decide(&app, &own, "upload", &renamed, true).await,
        403,
        "SelfApproval",
    )
    .await;
}

async fn easy_auth_in_local_mode(backend: Backend) {
    easy_auth_sign_ins_decide_by_app_role(backend, Mode::Local).await;
}

async fn easy_auth_under_the_host(backend: Backend) {
    easy_auth_sign_ins_decide_by_app_role(backend, Mode::CustomHandler).await;
}

/// An uploader role, when set, is needed to upload.
async fn an_uploader_role_is_needed_to_upload_when_set(backend: Backend) {
    let Some(app) = app_with(
        backend,
        Mode::Local,
        vec![
            ("FILE_APPROVER_EASY_AUTH", "true".into()),
            ("FILE_APPROVER_UPLOADER_ROLE", "Uploader".into()),
        ],
    )
    .await
    else {
        return;
    };
    assert_error(
        upload_with(&app, "x.txt", &signed_in("aad-reviewer")).await,
        403,
        "NotAnUploader",
    )
    .await;
    assert_error(upload_with(&app, "x.txt", &[]).await, 401, "Unauthorized").await;
    assert_eq!(
        upload_with(&app, "x.txt", &signed_in("aad-uploader"))
            .await
            .status(),
        201
    );
}

/// Without `FILE_APPROVER_EASY_AUTH` anyone could send the principal headers, so they are not
/// looked at: a decision carrying only them is unauthenticated.
async fn principal_headers_are_ignored_unless_easy_auth_is_on(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = app.upload_ok("forged.txt", b"who are you").await;
    assert_error(
        decide(&app, &id, "upload", &signed_in("aad-reviewer"), true).await,
        401,
        "Unauthorized",
    )
    .await;
    let response = upload_with(&app, "forged.txt", &signed_in("aad-uploader")).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["uploader"], Value::Null);
}

async fn withdraw(
    app: &TestApp,
    id: &str,
    headers: &[(String, String)],
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/api/files/{id}/withdraw")))
        .header("Content-Type", "application/json")
        .body(body);
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    request.send().await.expect("withdrawal")
}

async fn history(app: &TestApp, id: &str) -> Vec<Value> {
    let response = app.get(&format!("/api/files/{id}/history")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], id);
    body["steps"].as_array().unwrap().clone()
}

/// The history tells every step, oldest first, with who, when and what came of it: the
/// upload, each decision with its comment, the analysis, the end, and each download link
/// with who asked for it.
async fn the_history_tells_every_step_with_actor_time_and_outcome(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = app.upload_as(ALICE).await;
    let approved = app
        .approve(
            &id,
            "upload",
            Some(BOB),
            Some(r#"{"approved": true, "comment": "looks fine"}"#),
        )
        .await;
    assert_eq!(approved.status(), 202);
    app.idle().await;
    app.approve_ok(&id, "download", CAROL).await;
    for _ in 0..2 {
        let link = app
            .client
            .get(app.url(&format!("/api/files/{id}/download")))
            .bearer_auth(CAROL)
            .send()
            .await
            .unwrap();
        assert_eq!(link.status(), 200);
    }
    let steps = history(&app, &id).await;
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "uploaded",
            "decided",
            "analysisStarted",
            "analyzed",
            "decided",
            "finished",
            "linkIssued",
            "linkIssued"
        ],
        "{steps:?}"
    );
    assert_eq!(steps[0]["actor"]["name"], "alice");
    assert_eq!(steps[1]["actor"]["name"], "bob");
    assert_eq!(steps[1]["stage"], "upload");
    assert_eq!(steps[1]["outcome"], "approved");
    assert_eq!(steps[1]["comment"], "looks fine");
    assert_eq!(steps[4]["actor"]["name"], "carol");
    assert_eq!(steps[5]["outcome"], "Approved");
    assert_eq!(steps[6]["actor"]["name"], "carol");
    let times: Vec<&str> = steps.iter().map(|s| s["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "newest last");

    assert_error(
        app.get("/api/files/00000000-0000-4000-8000-000000000000/history")
            .await,
        404,
        "NotFound",
    )
    .await;
}

/// The uploader may take a file back while it awaits a decision, at either stage: it ends
/// `Withdrawn`, says so in its history, and takes no more decisions. Nobody else may, and not
/// while it is being analysed.
async fn the_uploader_withdraws_a_file_awaiting_a_decision(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = app.upload_as(ALICE).await;
    assert_error(
        withdraw(&app, &id, &bearer(BOB), "").await,
        403,
        "NotTheUploader",
    )
    .await;
    assert_error(withdraw(&app, &id, &[], "").await, 401, "Unauthorized").await;
    assert_error(
        withdraw(&app, &id, &bearer(ALICE), "{\"comment\": \"a\\u0001b\"}").await,
        400,
        "InvalidBody",
    )
    .await;
    // Bytes that are not text are a bad body, not an empty one (found by Schemathesis).
    assert_error(
        withdraw(&app, &id, &bearer(ALICE), &b"\xff"[..]).await,
        400,
        "InvalidBody",
    )
    .await;
    // A struct written as an array is not a withdrawal (serde would take it; found by
    // Schemathesis).
    assert_error(
        withdraw(&app, &id, &bearer(ALICE), "[]").await,
        400,
        "InvalidBody",
    )
    .await;
    let done = withdraw(&app, &id, &bearer(ALICE), r#"{"comment": "wrong file"}"#).await;
    assert_eq!(done.status(), 202);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["stage"], "Withdrawn");
    assert_eq!(done["approvals"], Value::Array(vec![]));
    let refused = assert_error(
        app.approve(&id, "upload", Some(BOB), None).await,
        409,
        "WrongStage",
    )
    .await;
    assert_eq!(refused["currentStage"], "Withdrawn");
    assert_error(
        withdraw(&app, &id, &bearer(ALICE), "").await,
        409,
        "WrongStage",
    )
    .await;
    app.idle().await;
    let steps = history(&app, &id).await;
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["uploaded", "withdrawn", "bytesDeleted", "finished"]);
    assert_eq!(steps[1]["actor"]["name"], "alice");
    assert_eq!(steps[1]["comment"], "wrong file");
    assert_eq!(steps[3]["outcome"], "Withdrawn");

    // Not once its review is over: an approved file is no longer the uploader's to take back.
    let approved = app.upload_as(ALICE).await;
    app.approve_ok(&approved, "upload", BOB).await;
    app.idle().await;
    app.approve_ok(&approved, "download", CAROL).await;
    let refused = assert_error(
        withdraw(&app, &approved, &bearer(ALICE), "").await,
        409,
        "WrongStage",
    )
    .await;
    assert_eq!(refused["currentStage"], "Approved");

    // At the download stage too.
    let id = app.upload_as(ALICE).await;
    app.approve_ok(&id, "upload", BOB).await;
    app.idle().await;
    let done = withdraw(&app, &id, &bearer(ALICE), "").await;
    assert_eq!(done.status(), 202);
    assert_eq!(app.status(&id).await["stage"], "Withdrawn");

    // An anonymous upload has nobody who may withdraw it.
    let id = app.upload_ok("anon.txt", b"nobody's").await;
    assert_error(
        withdraw(&app, &id, &bearer(ALICE), "").await,
        403,
        "NotTheUploader",
    )
    .await;
}

/// A refused file's bytes are kept for the retention, then deleted by a durable timer of its
/// own; the file's status and history stay. Approved files keep theirs.
async fn a_refused_files_bytes_go_after_the_retention(backend: Backend) {
    let Some(app) = app_with(
        backend,
        Mode::Local,
        vec![("FILE_APPROVER_RETENTION_SECS", "3600".into())],
    )
    .await
    else {
        return;
    };
    let exists = |id: String| {
        let store = app.state.files.store().clone();
        async move {
            store
                .blob_properties(file_approver::store::FILES_CONTAINER, &id)
                .await
                .is_ok()
        }
    };
    let id = app.upload_as(ALICE).await;
    let rejected = decide(&app, &id, "upload", &bearer(BOB), false).await;
    assert_eq!(rejected.status(), 202);
    app.idle().await;
    assert!(exists(id.clone()).await, "kept during the retention");
    assert_eq!(app.status(&id).await["runtimeStatus"], "Running");
    crate::helpers::pass_minutes(&app, &id, backend, 61).await;
    assert!(!exists(id.clone()).await, "deleted after it");
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Rejected");
    assert_eq!(status["runtimeStatus"], "Completed");
    let steps = history(&app, &id).await;
    assert!(
        steps.iter().any(|s| s["step"] == "bytesDeleted"),
        "{steps:?}"
    );
}

/// A reviewer's inbox (`GET /api/files?awaiting=me`) holds what they may decide now: not what
/// they uploaded, not what they decided, not a download whose upload they approved; upload
/// approvals first, then download approvals, oldest first; it pages.
async fn a_reviewers_inbox_holds_what_they_may_decide_now(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let inbox = |token: &'static str, query: String| {
        let app = &app;
        async move {
            let response = app
                .client
                .get(app.url(&format!("/api/files?awaiting=me{query}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            body
        }
    };
    let ids = |body: &Value| -> Vec<String> {
        body["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let t0 = chrono::Utc::now().trunc_subsecs(0) - chrono::Duration::hours(1);
    app.clock.set(t0);
    // Alice uploads one; bob uploads another; a third goes through its upload approval by bob.
    let alices = app.upload_as(ALICE).await;
    app.clock.set(t0 + chrono::Duration::minutes(1));
    let bobs = app.upload_as(BOB).await;
    app.clock.set(t0 + chrono::Duration::minutes(2));
    let reviewed = app.upload_as(CAROL).await;
    app.approve_ok(&reviewed, "upload", BOB).await;
    app.idle().await;

    // Only this test's files: Azurite's tables are shared with other tests.
    let mine = |all: Vec<String>| -> Vec<String> {
        all.into_iter()
            .filter(|id| [&alices, &bobs, &reviewed].contains(&id))
            .collect()
    };
    // Every page of an inbox (narrowed by `filter`): other tests' files share Azurite's tables
    // and may fill the first pages.
    let every_page = |token: &'static str, filter: &'static str| async move {
        let mut all = Vec::new();
        let mut query = filter.to_owned();
        loop {
            let body = inbox(token, query.clone()).await;
            all.extend(ids(&body));
            match body["continuationToken"].as_str() {
                Some(next) => {
                    query = format!(
                        "{filter}&top=1&continuationToken={}",
                        crate::helpers::urlencode(next)
                    )
                }
                None => return all,
            }
        }
    };
    let everything = |token: &'static str| every_page(token, "");
    // Alice: bob's upload (oldest first among uploads), then carol's file for download.
    assert_eq!(
        mine(everything(ALICE).await),
        [bobs.clone(), reviewed.clone()]
    );
    // Bob: alice's upload only (his own is out; he approved the third's upload).
    assert_eq!(mine(everything(BOB).await), vec![alices.clone()]);
    // Carol: alice's and bob's uploads; the third is hers.
    assert_eq!(
        mine(everything(CAROL).await),
        [alices.clone(), bobs.clone()]
    );
    // An inbox narrowed to a stage.
    let downloads = every_page(ALICE, "&stage=AwaitingDownloadApproval").await;
    assert_eq!(mine(downloads), vec![reviewed.clone()]);
    let approved = every_page(ALICE, "&stage=Approved").await;
    assert!(mine(approved).is_empty());
    // Once carol decides, it leaves her inbox.
    app.approve_ok(&alices, "upload", CAROL).await;
    app.idle().await;
    assert_eq!(mine(everything(CAROL).await), vec![bobs.clone()]);

    assert_error(app.get("/api/files?awaiting=me").await, 401, "Unauthorized").await;
    for (bad, code) in [
        ("awaiting=you", "InvalidQuery"),
        ("awaiting=me&stage=Nothing", "InvalidStage"),
    ] {
        let response = app
            .client
            .get(app.url(&format!("/api/files?{bad}")))
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap();
        assert_error(response, 400, code).await;
    }
}

/// Two handler instances on one storage account, as under the host: decisions racing through
/// both are each judged against what the other committed (the rules run inside the engine's
/// ETag-guarded turn). Azure only: the embedded store belongs to one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn four_eyes_and_quorums_hold_across_two_instances_racing() {
    const DAVE: &str = "dave-token-0123456789abc";
    let queue = format!("work-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let vars = || {
        vec![
            (
                "FILE_APPROVER_REVIEWERS",
                format!("alice:{ALICE},bob:{BOB},carol:{CAROL},dave:{DAVE}"),
            ),
            ("FILE_APPROVER_UPLOAD_QUORUM", "2".to_owned()),
            ("FILE_APPROVER_DOWNLOAD_QUORUM", "2".to_owned()),
            ("FILE_APPROVER_WORK_QUEUE", queue.clone()),
        ]
    };
    let start = || async {
        spawn_app_with(Options {
            backend: Backend::Azure,
            mode: Mode::Local,
            vars: vars(),
            ..Options::default()
        })
        .await
        .expect("an app on Azure storage")
    };
    let (a, b) = (start().await, start().await);
    for _ in 0..3 {
        let id = a.upload_as(CAROL).await;
        // Two approvals at once, one through each instance: both count.
        let (alice, bob) = tokio::join!(
            a.approve(&id, "upload", Some(ALICE), None),
            b.approve(&id, "upload", Some(BOB), None)
        );
        assert_eq!((alice.status().as_u16(), bob.status().as_u16()), (202, 202));
        a.idle().await;
        b.idle().await;
        assert_eq!(b.status(&id).await["stage"], "AwaitingDownloadApproval");
        // The upload's approver and the uploader race a fresh reviewer: only the fresh one
        // counts, whichever instance each goes through.
        let (again, own, dave) = tokio::join!(
            b.approve(&id, "download", Some(ALICE), None),
            a.approve(&id, "download", Some(CAROL), None),
            b.approve(&id, "download", Some(DAVE), None)
        );
        assert_error(again, 403, "SameReviewer").await;
        assert_error(own, 403, "SelfApproval").await;
        assert_eq!(dave.status(), 202);
        let status = a.status(&id).await;
        assert_eq!(status["stage"], "AwaitingDownloadApproval", "{status}");
        assert_eq!(status["approvals"].as_array().unwrap().len(), 3);
    }
}

/// `fixture`'s principal with one more app role.
fn signed_in_with_role(fixture: &str, role: &str) -> Vec<(String, String)> {
    let mut headers = signed_in(fixture);
    let encoded = headers
        .iter_mut()
        .find(|(k, _)| k == "X-MS-CLIENT-PRINCIPAL")
        .unwrap();
    let mut principal: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(&encoded.1)
            .unwrap(),
    )
    .unwrap();
    principal["claims"]
        .as_array_mut()
        .unwrap()
        .push(json!({"typ": "roles", "val": role}));
    encoded.1 = base64::engine::general_purpose::STANDARD.encode(principal.to_string());
    headers
}

/// Under Easy Auth a deployment may keep revocation to a role of its own; reviewers without it
/// are refused, and the refusal changes nothing.
async fn revoking_may_need_a_role_of_its_own(backend: Backend) {
    let Some(app) = app_with(
        backend,
        Mode::Local,
        vec![
            ("FILE_APPROVER_EASY_AUTH", "true".into()),
            ("FILE_APPROVER_REVOKER_ROLE", "Revoker".into()),
        ],
    )
    .await
    else {
        return;
    };
    let response = upload_with(&app, "signed.txt", &signed_in("aad-uploader")).await;
    let id = started(&app, Mode::Local, response).await;
    assert_eq!(
        decide(&app, &id, "upload", &signed_in("aad-reviewer"), true)
            .await
            .status(),
        202
    );
    app.idle().await;
    assert_eq!(
        decide(
            &app,
            &id,
            "download",
            &signed_in("aad-second-reviewer"),
            true
        )
        .await
        .status(),
        202
    );
    let revoke = |headers: Vec<(String, String)>| {
        let mut request = app
            .client
            .post(app.url(&format!("/api/files/{id}/revoke")))
            .json(&json!({"comment": "the contract was cancelled"}));
        for (k, v) in headers {
            request = request.header(k.as_str(), v.as_str());
        }
        request.send()
    };
    let refused = assert_error(
        revoke(signed_in("aad-reviewer")).await.unwrap(),
        403,
        "NotAReviewer",
    )
    .await;
    assert!(refused["message"].as_str().unwrap().contains("Revoker"));
    assert_eq!(app.status(&id).await["stage"], "Approved");
    let done = revoke(signed_in_with_role("aad-reviewer", "Revoker"))
        .await
        .unwrap();
    assert_eq!(done.status(), 202);
    let steps = history(&app, &id).await;
    let revoked = steps.iter().find(|s| s["step"] == "revoked").unwrap();
    assert_eq!(revoked["actor"]["name"], "dana@contoso.com");
    assert_eq!(revoked["comment"], "the contract was cancelled");
}

crate::on_every_backend!(
    revoking_may_need_a_role_of_its_own,
    an_upload_with_a_known_token_records_its_uploader,
    an_uploaders_list_makes_uploads_need_a_token,
    nobody_approves_their_own_upload_or_both_stages,
    four_eyes_can_be_turned_off_for_a_single_reviewer_team,
    a_quorum_needs_distinct_approvals_and_any_rejection_ends_it,
    the_status_shows_the_deadline_of_the_awaiting_stage,
    easy_auth_in_local_mode,
    easy_auth_under_the_host,
    an_uploader_role_is_needed_to_upload_when_set,
    principal_headers_are_ignored_unless_easy_auth_is_on,
    the_history_tells_every_step_with_actor_time_and_outcome,
    the_uploader_withdraws_a_file_awaiting_a_decision,
    a_refused_files_bytes_go_after_the_retention,
    a_reviewers_inbox_holds_what_they_may_decide_now,
);
