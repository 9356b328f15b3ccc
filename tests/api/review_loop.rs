//! Review as a conversation: a reviewer asks for changes, the uploader sends a new version, and
//! its review starts again from the upload stage; reasons are required for refusals and change
//! requests; the uploader's turn has a deadline and may end in a withdrawal; reviewers' private
//! notes reach reviewers only.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{
    assert_error, pass_minutes, spawn_app_with, spawn_team, Backend, Mode, Options, TestApp, ALICE,
    BOB, CAROL, UMA,
};

const FIRST: &[u8] = b"draft one\nnumbers for the board\n";
const SECOND: &[u8] = b"draft two\nnumbers for the board, with the totals fixed\n";

async fn app_with(
    backend: Backend,
    mode: Mode,
    vars: Vec<(&'static str, String)>,
) -> Option<TestApp> {
    spawn_team(backend, mode, vars).await
}

/// Uma uploads `bytes`. Returns the file's id.
async fn uploaded(app: &TestApp, mode: Mode, bytes: &'static [u8]) -> String {
    app.upload_by(UMA, mode, "board.txt", bytes).await
}

async fn decide(
    app: &TestApp,
    id: &str,
    stage: &str,
    token: &str,
    body: Value,
) -> reqwest::Response {
    app.post_json_as(
        &format!("/api/files/{id}/approvals/{stage}"),
        Some(token),
        &body,
    )
    .await
}

async fn new_version(
    app: &TestApp,
    id: &str,
    token: Option<&str>,
    bytes: &'static [u8],
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/api/files/{id}/versions")))
        .header("Content-Type", "text/plain")
        .body(bytes);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn changes_then_a_new_version_is_reviewed_and_downloaded(backend: Backend, mode: Mode) {
    let Some(app) = app_with(backend, mode, vec![]).await else {
        return;
    };
    let id = uploaded(&app, mode, FIRST).await;
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    let status = app
        .ask_changes(&id, "download", BOB, "the totals on page 2 are wrong")
        .await;
    assert_eq!(status["stage"], "ChangesRequested");
    assert_eq!(status["approvals"][1]["decision"], "requestChanges");
    assert_eq!(status["version"], 1);

    let sent = new_version(&app, &id, Some(UMA), SECOND).await;
    assert_eq!(sent.status(), 202);
    let status: Value = sent.json().await.unwrap();
    assert_eq!(status["version"], 2);
    assert_eq!(status["size"], SECOND.len());
    assert_eq!(
        status["approvals"],
        json!([]),
        "v1's decisions no longer count"
    );
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    let versions = status["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["sha256"], sha256(FIRST));
    assert_eq!(versions[0]["lineCount"], 2);
    assert_eq!(versions[1]["number"], 2);
    assert_eq!(versions[1]["size"], SECOND.len());
    // What changed: each version's own preview, while its bytes are kept.
    for (version, bytes) in [(1, FIRST), (2, SECOND)] {
        let shown = app
            .get_as(
                &format!("/api/files/{id}/preview?version={version}"),
                Some(ALICE),
            )
            .await;
        assert_eq!(shown.status(), 200);
        assert_eq!(shown.bytes().await.unwrap().as_ref(), bytes);
    }
    let path = format!("/api/files/{id}/preview?version=3");
    assert_error(app.get_as(&path, Some(ALICE)).await, 404, "NoPreview").await;
    let path = format!("/api/files/{id}/preview?version=0");
    assert_error(app.get_as(&path, Some(ALICE)).await, 400, "InvalidQuery").await;

    // The same people may decide again: four eyes count this version's decisions only.
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingDownloadApproval");
    assert_eq!(status["analysis"]["sha256"], sha256(SECOND));
    app.approve_ok(&id, "download", BOB).await;
    let download: Value = app
        .get(&format!("/api/files/{id}/download"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(download["metadata"]["sha256"], sha256(SECOND));
    let fetched = reqwest::get(download["downloadUrl"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), SECOND);
    // Version 1 was refused: its bytes follow the refused files' retention (0 s here).
    app.idle().await;
    let first_bytes = app
        .state
        .files
        .store()
        .blob_properties(file_approver::store::FILES_CONTAINER, &id)
        .await;
    assert!(
        matches!(first_bytes, Err(file_approver::store::StoreError::NotFound)),
        "{first_bytes:?}"
    );

    let steps = app.steps(&id).await;
    let asked = steps
        .iter()
        .find(|s| s["outcome"] == "changesRequested")
        .unwrap();
    assert_eq!(asked["actor"]["name"], "bob");
    assert_eq!(asked["comment"], "the totals on page 2 are wrong");
    let sent = steps.iter().find(|s| s["step"] == "newVersion").unwrap();
    assert_eq!(sent["actor"]["name"], "uma");
    assert_eq!(
        sent["outcome"],
        format!("version 2, {} bytes", SECOND.len())
    );
}

async fn a_new_version_is_reviewed_on_either_store(backend: Backend) {
    changes_then_a_new_version_is_reviewed_and_downloaded(backend, Mode::Local).await;
}

async fn a_new_version_is_reviewed_under_the_host(backend: Backend) {
    changes_then_a_new_version_is_reviewed_and_downloaded(backend, Mode::CustomHandler).await;
}

async fn refusals_and_change_requests_need_a_reason(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = uploaded(&app, Mode::Local, FIRST).await;
    for body in [
        json!({"approved": false}),
        json!({"approved": false, "comment": "  \n "}),
        json!({"decision": "reject"}),
        json!({"decision": "requestChanges", "comment": null}),
    ] {
        assert_error(
            decide(&app, &id, "upload", ALICE, body).await,
            400,
            "ReasonRequired",
        )
        .await;
    }
    for body in [
        json!({"decision": "maybe", "comment": "x"}),
        json!({"decision": "reject", "approved": false, "comment": "x"}),
        json!({"decision": 1}),
    ] {
        assert_error(
            decide(&app, &id, "upload", ALICE, body).await,
            400,
            "InvalidBody",
        )
        .await;
    }
    assert_eq!(app.status(&id).await["stage"], "AwaitingUploadApproval");
    let approved = decide(&app, &id, "upload", ALICE, json!({"decision": "approve"})).await;
    assert_eq!(approved.status(), 202);

    // A team that does not want reasons turns the rule off.
    let Some(app) = app_with(
        backend,
        Mode::Local,
        vec![("FILE_APPROVER_REQUIRE_REASON", "false".into())],
    )
    .await
    else {
        return;
    };
    let id = uploaded(&app, Mode::Local, FIRST).await;
    let rejected = decide(&app, &id, "upload", ALICE, json!({"approved": false})).await;
    assert_eq!(rejected.status(), 202);
}

async fn a_new_version_comes_from_the_uploader_when_asked(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = uploaded(&app, Mode::Local, FIRST).await;
    let early = assert_error(
        new_version(&app, &id, Some(UMA), SECOND).await,
        409,
        "WrongStage",
    )
    .await;
    assert_eq!(early["currentStage"], "AwaitingUploadApproval");
    app.ask_changes(&id, "upload", ALICE, "wrong quarter").await;
    assert_error(
        new_version(&app, &id, None, SECOND).await,
        401,
        "Unauthorized",
    )
    .await;
    assert_error(
        new_version(&app, &id, Some(ALICE), SECOND).await,
        403,
        "NotTheUploader",
    )
    .await;
    assert_error(
        new_version(&app, &id, Some(UMA), b"").await,
        400,
        "EmptyFile",
    )
    .await;
    assert_error(
        new_version(&app, "not-an-id", Some(UMA), SECOND).await,
        400,
        "InvalidId",
    )
    .await;
    let missing = uuid::Uuid::new_v4().to_string();
    assert_error(
        new_version(&app, &missing, Some(UMA), SECOND).await,
        404,
        "NotFound",
    )
    .await;
    let unknown = app
        .client
        .post(app.url(&format!("/api/files/{id}/versions?name=x.txt")))
        .bearer_auth(UMA)
        .body(SECOND)
        .send()
        .await
        .unwrap();
    assert_error(unknown, 400, "InvalidQuery").await;
    // None of that changed anything; the uploader's version is taken once.
    assert_eq!(app.status(&id).await["stage"], "ChangesRequested");
    assert_eq!(
        new_version(&app, &id, Some(UMA), SECOND).await.status(),
        202
    );
    let twice = assert_error(
        new_version(&app, &id, Some(UMA), SECOND).await,
        409,
        "WrongStage",
    )
    .await;
    assert_ne!(twice["currentStage"], "ChangesRequested");
}

async fn the_uploaders_turn_expires_or_ends_in_a_withdrawal(backend: Backend) {
    let vars = vec![("FILE_APPROVER_APPROVAL_TIMEOUT_SECS", "600".into())];
    let Some(app) = app_with(backend, Mode::Local, vars).await else {
        return;
    };
    let ask = |id: String| {
        let app = &app;
        async move {
            let status = app
                .ask_changes(&id, "upload", ALICE, "needs a cover page")
                .await;
            assert!(status["deadline"].is_string(), "{status}");
        }
    };
    let expiring = uploaded(&app, Mode::Local, FIRST).await;
    ask(expiring.clone()).await;
    let withdrawn = uploaded(&app, Mode::Local, FIRST).await;
    ask(withdrawn.clone()).await;

    let taken_back = app
        .client
        .post(app.url(&format!("/api/files/{withdrawn}/withdraw")))
        .bearer_auth(UMA)
        .json(&json!({"comment": "sending a different file instead"}))
        .send()
        .await
        .unwrap();
    assert_eq!(taken_back.status(), 202);
    assert_eq!(app.status(&withdrawn).await["stage"], "Withdrawn");
    let steps = app.steps(&withdrawn).await;
    let step = steps.iter().find(|s| s["step"] == "withdrawn").unwrap();
    assert_eq!(step["comment"], "sending a different file instead");

    pass_minutes(&app, &expiring, backend, 11).await;
    assert_eq!(app.status(&expiring).await["stage"], "Expired");
}

async fn decisions_on_an_earlier_version_no_longer_count(backend: Backend) {
    let vars = vec![("FILE_APPROVER_UPLOAD_QUORUM", "2".into())];
    let Some(app) = app_with(backend, Mode::Local, vars).await else {
        return;
    };
    let id = uploaded(&app, Mode::Local, FIRST).await;
    app.approve_ok(&id, "upload", ALICE).await;
    app.ask_changes(&id, "upload", BOB, "attach the appendix")
        .await;
    assert_eq!(
        new_version(&app, &id, Some(UMA), SECOND).await.status(),
        202
    );
    app.approve_ok(&id, "upload", ALICE).await;
    // Alice's approval of version 1 does not make a quorum with her approval of version 2.
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    assert_eq!(status["approvals"].as_array().unwrap().len(), 1);
    app.approve_ok(&id, "upload", CAROL).await;
    app.idle().await;
    assert_eq!(app.status(&id).await["stage"], "AwaitingDownloadApproval");
    // The history keeps every decision, on every version.
    let decided = app
        .steps(&id)
        .await
        .into_iter()
        .filter(|s| s["step"] == "decided")
        .count();
    assert_eq!(decided, 4);
}

/// A client that says which version its reviewer looked at is refused once another is under
/// review, with where the file stands; a client that says none decides on the version under
/// review when the decision is recorded, and repeating it changes nothing.
async fn a_decision_names_its_version_or_takes_the_one_under_review(backend: Backend) {
    let vars = vec![("FILE_APPROVER_UPLOAD_QUORUM", "2".into())];
    let Some(app) = app_with(backend, Mode::Local, vars).await else {
        return;
    };
    let id = uploaded(&app, Mode::Local, FIRST).await;
    app.ask_changes(&id, "upload", BOB, "attach the appendix")
        .await;
    assert_eq!(
        new_version(&app, &id, Some(UMA), SECOND).await.status(),
        202
    );

    let stale = decide(&app, &id, "upload", ALICE, json!({"version": 1})).await;
    let error = assert_error(stale, 409, "WrongStage").await;
    assert_eq!(error["currentStage"], "AwaitingUploadApproval");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("version 1 is no longer under review"),
        "{error}"
    );
    assert_eq!(app.status(&id).await["approvals"], json!([]));

    let named = decide(&app, &id, "upload", ALICE, json!({"version": 2})).await;
    assert_eq!(named.status(), 202);
    let approvals = app.status(&id).await["approvals"].clone();
    assert_eq!(approvals.as_array().unwrap().len(), 1, "{approvals}");

    // The same approval without a version is on version 2 as well: a repeat.
    let repeat = decide(&app, &id, "upload", ALICE, json!({})).await;
    assert_eq!(repeat.status(), 200);
    assert_eq!(app.status(&id).await["approvals"], approvals);

    // Carol names none: hers is on version 2, and makes the quorum.
    let unnamed = decide(&app, &id, "upload", CAROL, json!({"decision": "approve"})).await;
    assert_eq!(unnamed.status(), 202);
    app.idle().await;
    assert_eq!(app.status(&id).await["stage"], "AwaitingDownloadApproval");
}

/// Two new versions racing for one change request: exactly one is taken, the other is told the
/// file moved on; and a change request racing an approval: exactly one is recorded.
async fn racing_versions_and_decisions_have_one_winner(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = uploaded(&app, Mode::Local, FIRST).await;
    app.ask_changes(&id, "upload", ALICE, "again please").await;
    let (a, b) = tokio::join!(
        new_version(&app, &id, Some(UMA), SECOND),
        new_version(&app, &id, Some(UMA), FIRST)
    );
    let mut codes = [a.status().as_u16(), b.status().as_u16()];
    codes.sort_unstable();
    assert_eq!(codes, [202, 409]);
    let status = app.status(&id).await;
    assert_eq!(status["version"], 2);
    assert_eq!(status["versions"].as_array().unwrap().len(), 2);

    let (approve, changes) = tokio::join!(
        decide(&app, &id, "upload", BOB, json!({"decision": "approve"})),
        decide(
            &app,
            &id,
            "upload",
            CAROL,
            json!({"decision": "requestChanges", "comment": "one more thing"})
        )
    );
    let mut codes = [approve.status().as_u16(), changes.status().as_u16()];
    codes.sort_unstable();
    assert_eq!(codes, [202, 409], "exactly one decision wins");
    let decided = app.status(&id).await["approvals"].as_array().unwrap().len();
    assert_eq!(decided, 1);
}

async fn related(app: &TestApp, id: &str, token: Option<&str>, query: &str) -> reqwest::Response {
    app.get_as(&format!("/api/files/{id}/related{query}"), token)
        .await
}

/// A reviewer sees earlier files with the same bytes and how each ended ("the same bytes were
/// rejected: reason …"), paged, and the uploader's recent files; uploaders see none of it.
async fn related_files_show_the_same_bytes_and_the_uploaders_files(backend: Backend) {
    // An uploader and bytes of this test's own: on a shared Azurite the index partitions of
    // "uma" and of the usual test bytes hold other tests' files.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let uploader_token: &'static str = Box::leak(format!("una-{run}").into_boxed_str());
    let content: &'static [u8] = Box::leak(
        format!("the same bytes, run {run}\n")
            .into_bytes()
            .into_boxed_slice(),
    );
    let Some(app) = spawn_app_with(Options {
        backend,
        mode: Mode::Local,
        vars: vec![
            (
                "FILE_APPROVER_REVIEWERS",
                format!("alice:{ALICE},bob:{BOB},carol:{CAROL}"),
            ),
            (
                "FILE_APPROVER_UPLOADERS",
                format!("una-{run}:{uploader_token}"),
            ),
        ],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let uploaded =
        |bytes: &'static [u8]| app.upload_by(uploader_token, Mode::Local, "a.txt", bytes);
    // Eleven earlier files with these bytes, the last of them rejected with a reason.
    // A second apart each, so that "newest first" has an order to keep.
    let tick = || app.clock.advance(chrono::Duration::seconds(1));
    let mut earlier = Vec::new();
    for _ in 0..11 {
        tick();
        earlier.push(uploaded(content).await);
    }
    for id in &earlier {
        app.approve_ok(id, "upload", ALICE).await;
    }
    app.idle().await;
    let rejected = earlier.last().unwrap().clone();
    let refused = decide(
        &app,
        &rejected,
        "download",
        BOB,
        json!({"approved": false, "comment": "contains the old salaries"}),
    )
    .await;
    assert_eq!(refused.status(), 202);
    tick();
    let other = uploaded(SECOND).await;
    tick();
    let id = uploaded(content).await;
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;

    let first: Value = related(&app, &id, Some(BOB), "")
        .await
        .json()
        .await
        .unwrap();
    let same = first["sameBytes"].as_array().unwrap();
    assert!(!same.iter().any(|f| f["id"] == id.as_str()), "not itself");
    assert!(
        !same.iter().any(|f| f["id"] == other.as_str()),
        "other bytes"
    );
    // Newest first: the rejected one leads, with its reason.
    assert_eq!(same[0]["id"], rejected.as_str());
    assert_eq!(same[0]["stage"], "Rejected");
    assert_eq!(same[0]["reason"], "contains the old salaries");
    assert_eq!(same[0]["decidedBy"]["name"], "bob");
    let token = first["continuationToken"].as_str().expect("a second page");
    let second: Value = related(&app, &id, Some(BOB), &format!("?continuationToken={token}"))
        .await
        .json()
        .await
        .unwrap();
    let mut listed: Vec<String> = same
        .iter()
        .chain(second["sameBytes"].as_array().unwrap())
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut want = earlier.clone();
    want.sort();
    assert_eq!(listed, want, "every earlier file once, over the pages");
    assert_eq!(second["byUploader"], json!([]), "first page only");
    let by_uploader = first["byUploader"].as_array().unwrap();
    // A page of ten, the file itself left out.
    assert_eq!(by_uploader.len(), 9, "a page of the uploader's files");
    assert_eq!(by_uploader[0]["id"], other.as_str(), "newest first");

    // Reviewers only; bad tokens are refused.
    assert_error(
        related(&app, &id, Some(uploader_token), "").await,
        403,
        "NotAReviewer",
    )
    .await;
    assert_error(related(&app, &id, None, "").await, 401, "Unauthorized").await;
    assert_error(
        related(&app, &id, Some(BOB), "?continuationToken=zz").await,
        400,
        "InvalidQuery",
    )
    .await;
    // Any hex is a position: before every file, or after them all.
    for (token, listed) in [("00", 10), ("7e7e", 0), ("2f23", 10)] {
        let page: Value = related(&app, &id, Some(BOB), &format!("?continuationToken={token}"))
            .await
            .json()
            .await
            .unwrap();
        let same = page["sameBytes"].as_array().unwrap().len();
        assert!(
            same == listed || (listed == 10 && same == 9),
            "{token}: {page}"
        );
    }
    let missing = uuid::Uuid::new_v4().to_string();
    assert_error(
        related(&app, &missing, Some(BOB), "").await,
        404,
        "NotFound",
    )
    .await;
}

/// A new version too large for one request goes straight to storage through an upload URL,
/// and is taken once the uploader says it is complete.
async fn a_large_new_version_goes_through_an_upload_url(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = uploaded(&app, Mode::Local, FIRST).await;
    app.ask_changes(&id, "upload", ALICE, "the full data set, please")
        .await;
    let declare = |body: Value, token: &str| {
        app.client
            .post(app.url(&format!("/api/files/{id}/versions/uploads")))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    for body in [
        json!({}),
        json!({"size": -1}),
        json!({"size": 1, "name": "x"}),
        json!([1]),
    ] {
        assert_error(declare(body, UMA).await.unwrap(), 400, "InvalidBody").await;
    }
    assert_error(
        declare(json!({"size": 0}), UMA).await.unwrap(),
        400,
        "EmptyFile",
    )
    .await;
    assert_error(
        declare(json!({"size": 10}), ALICE).await.unwrap(),
        403,
        "NotTheUploader",
    )
    .await;
    let ticket: Value = declare(json!({"size": SECOND.len()}), UMA)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ticket["version"], 2);
    let complete = ticket["links"]["complete"].as_str().unwrap().to_owned();
    let finish = |path: String| app.client.post(app.url(&path)).bearer_auth(UMA).send();
    assert_error(
        finish(complete.clone()).await.unwrap(),
        409,
        "UploadIncomplete",
    )
    .await;
    assert_error(
        finish(format!("/api/files/{id}/versions/3/complete"))
            .await
            .unwrap(),
        409,
        "WrongStage",
    )
    .await;
    assert_error(
        finish(format!("/api/files/{id}/versions/x/complete"))
            .await
            .unwrap(),
        400,
        "InvalidStage",
    )
    .await;
    let put = reqwest::Client::new()
        .put(ticket["uploadUrl"].as_str().unwrap())
        .header("x-ms-blob-type", "BlockBlob")
        .header("content-type", "text/plain")
        .body(SECOND)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let done = finish(complete.clone()).await.unwrap();
    assert_eq!(done.status(), 202);
    let status: Value = done.json().await.unwrap();
    assert_eq!(status["version"], 2);
    assert_eq!(status["size"], SECOND.len());
    assert_eq!(status["contentType"], "text/plain");
    app.idle().await;
    assert_eq!(app.status(&id).await["stage"], "AwaitingUploadApproval");
    // Said again, once taken: the file no longer waits for it.
    assert_error(finish(complete).await.unwrap(), 409, "WrongStage").await;
}

async fn history_as(app: &TestApp, id: &str, token: Option<&str>) -> String {
    let response = app.get_as(&format!("/api/files/{id}/history"), token).await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

async fn note(app: &TestApp, id: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    app.post_json_as(&format!("/api/files/{id}/notes"), token, &body)
        .await
}

/// Reviewers' private notes reach reviewers only: the uploader, and a caller the request does
/// not show to be a reviewer, never receive them on any route; a decision's comment stays
/// visible to the uploader.
async fn private_notes_reach_reviewers_only(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    const SECRET: &str = "the author asked for this twice before";
    let id = uploaded(&app, Mode::Local, FIRST).await;
    let added = note(&app, &id, Some(ALICE), json!({"note": SECRET})).await;
    assert_eq!(added.status(), 201);
    let step: Value = added.json().await.unwrap();
    assert_eq!(step["step"], "note");
    assert_eq!(step["actor"]["name"], "alice");
    app.ask_changes(&id, "upload", BOB, "fix the totals").await;

    for reviewer in [ALICE, BOB] {
        let seen = history_as(&app, &id, Some(reviewer)).await;
        assert!(seen.contains(SECRET), "{seen}");
    }
    for outsider in [Some(UMA), None] {
        let seen = history_as(&app, &id, outsider).await;
        assert!(!seen.contains(SECRET), "{outsider:?}: {seen}");
        assert!(!seen.contains("\"note\""), "{outsider:?}: {seen}");
        assert!(
            seen.contains("fix the totals"),
            "the decision's comment: {seen}"
        );
    }
    for token in [Some(UMA), Some(ALICE), None] {
        let status = app
            .get_as(&format!("/api/files/{id}"), token)
            .await
            .text()
            .await
            .unwrap();
        assert!(!status.contains(SECRET), "{status}");
    }

    // Who may write one, and what a note is.
    assert_error(
        note(&app, &id, None, json!({"note": "x"})).await,
        401,
        "Unauthorized",
    )
    .await;
    assert_error(
        note(&app, &id, Some(UMA), json!({"note": "x"})).await,
        403,
        "NotAReviewer",
    )
    .await;
    for body in [
        json!({}),
        json!({"note": ""}),
        json!({"note": "   "}),
        json!({"note": 5}),
        json!({"note": "x", "also": 1}),
        json!(["x"]),
        json!({"note": "x".repeat(2001)}),
    ] {
        assert_error(note(&app, &id, Some(ALICE), body).await, 400, "InvalidBody").await;
    }
    let missing = uuid::Uuid::new_v4().to_string();
    assert_error(
        note(&app, &missing, Some(ALICE), json!({"note": "x"})).await,
        404,
        "NotFound",
    )
    .await;
    // At any stage, the end included.
    let withdrawn = app
        .client
        .post(app.url(&format!("/api/files/{id}/withdraw")))
        .bearer_auth(UMA)
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), 202);
    assert_eq!(
        note(
            &app,
            &id,
            Some(BOB),
            json!({"note": "withdrawn, as expected"})
        )
        .await
        .status(),
        201
    );
}

crate::on_every_backend!(
    a_new_version_is_reviewed_on_either_store,
    a_new_version_is_reviewed_under_the_host,
    refusals_and_change_requests_need_a_reason,
    a_new_version_comes_from_the_uploader_when_asked,
    the_uploaders_turn_expires_or_ends_in_a_withdrawal,
    decisions_on_an_earlier_version_no_longer_count,
    a_decision_names_its_version_or_takes_the_one_under_review,
    private_notes_reach_reviewers_only,
    racing_versions_and_decisions_have_one_winner,
    related_files_show_the_same_bytes_and_the_uploaders_files,
    a_large_new_version_goes_through_an_upload_url,
);
