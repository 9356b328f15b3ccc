//! Who the caller is (`GET /api/me`), their own uploads (`uploadedBy=me`), and what a file's
//! status tells each caller they may do (`allowedActions`) and why the rest of what the stage
//! offers is withheld (`withheldActions`). At every stage of a file's life, for
//! every person, each withheld action is tried and must be refused with the code it named, and
//! the allowed lists are the ones the rules give.

use serde_json::{json, Value};

use crate::helpers::{
    assert_error, spawn_app_with, spawn_team, Backend, Mode, Options, TestApp, ALICE, BOB, CAROL,
    UMA,
};

const BYTES: &[u8] = b"quarterly totals\n";

/// The actions `token`'s holder is offered on file `id`, and those withheld with their codes.
async fn offered(
    app: &TestApp,
    id: &str,
    token: Option<&str>,
) -> (Vec<String>, Vec<(String, String)>) {
    let response = app.get_as(&format!("/api/files/{id}"), token).await;
    assert_eq!(response.status(), 200);
    let status: Value = response.json().await.unwrap();
    let allowed = status["allowedActions"]
        .as_array()
        .expect("allowedActions in a file's status")
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let withheld = status["withheldActions"]
        .as_array()
        .expect("withheldActions in a file's status")
        .iter()
        .map(|w| {
            assert!(
                !w["message"].as_str().unwrap().is_empty(),
                "a withheld action says why"
            );
            (
                w["action"].as_str().unwrap().to_owned(),
                w["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (allowed, withheld)
}

/// Takes `action` on file `id` as `token`'s holder, as a client would.
async fn take(
    app: &TestApp,
    id: &str,
    stage: &str,
    action: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let (path, body) = match action {
        "approveUpload" => (
            "approvals/upload".to_owned(),
            json!({"decision": "approve"}),
        ),
        "approveDownload" => (
            "approvals/download".to_owned(),
            json!({"decision": "approve"}),
        ),
        "reject" => (
            format!("approvals/{stage}"),
            json!({"decision": "reject", "comment": "not this"}),
        ),
        "requestChanges" => (
            format!("approvals/{stage}"),
            json!({"decision": "requestChanges", "comment": "fix it"}),
        ),
        "withdraw" => ("withdraw".to_owned(), json!({})),
        "revoke" => ("revoke".to_owned(), json!({"comment": "leaked"})),
        "addNote" => ("notes".to_owned(), json!({"note": "seen"})),
        "sendNewVersion" => {
            let mut request = app
                .client
                .post(app.url(&format!("/api/files/{id}/versions")))
                .header("Content-Type", "text/plain")
                .body(BYTES);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            return request.send().await.unwrap();
        }
        "download" => {
            return app
                .get_as(&format!("/api/files/{id}/download"), token)
                .await
        }
        other => panic!("no request for action {other}"),
    };
    app.post_json_as(&format!("/api/files/{id}/{path}"), token, &body)
        .await
}

/// Asserts what `token`'s holder is offered, then tries every withheld action and checks the
/// API refuses it with the code the status named (a repeat approval, `AlreadyDecided`, is
/// answered 200 with nothing changed).
async fn expect_offer(
    app: &TestApp,
    id: &str,
    stage: &str,
    token: Option<&str>,
    allowed: &[&str],
    withheld: &[(&str, &str)],
) {
    let (got_allowed, got_withheld) = offered(app, id, token).await;
    let mut got_allowed = got_allowed;
    got_allowed.sort();
    let mut want_allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
    want_allowed.sort();
    assert_eq!(got_allowed, want_allowed, "allowed to {token:?} at {stage}");
    let mut got = got_withheld.clone();
    got.sort();
    let mut want: Vec<(String, String)> = withheld
        .iter()
        .map(|(a, c)| (a.to_string(), c.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want, "withheld from {token:?} at {stage}");
    for (action, code) in got_withheld {
        let response = take(app, id, stage, &action, token).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if code == "AlreadyDecided" {
            assert_eq!(status, 200, "{action} repeated changes nothing");
            continue;
        }
        assert!(
            status >= 400,
            "{action} by {token:?} was withheld but accepted"
        );
        assert_eq!(
            body["error"]["code"], code,
            "{action} by {token:?}: the refusal names the withheld code"
        );
    }
}

const NOT_A_REVIEWER: &str = "NotAReviewer";
const NOT_THE_UPLOADER: &str = "NotTheUploader";
const UNAUTHORIZED: &str = "Unauthorized";

async fn each_person_is_offered_what_the_api_accepts(backend: Backend) {
    let Some(app) = spawn_team(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = app.upload_by(UMA, Mode::Local, "totals.txt", BYTES).await;
    app.idle().await;
    let reviewing = ["approveUpload", "reject", "requestChanges", "addNote"];
    expect_offer(
        &app,
        &id,
        "upload",
        Some(UMA),
        &["withdraw"],
        &reviewing.map(|a| (a, NOT_A_REVIEWER)),
    )
    .await;
    expect_offer(
        &app,
        &id,
        "upload",
        Some(ALICE),
        &reviewing,
        &[("withdraw", NOT_THE_UPLOADER)],
    )
    .await;
    let mut nobody: Vec<(&str, &str)> = reviewing.map(|a| (a, UNAUTHORIZED)).to_vec();
    nobody.push(("withdraw", UNAUTHORIZED));
    expect_offer(&app, &id, "upload", None, &[], &nobody).await;

    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    // Four eyes: the upload's approver may still stop the file, not approve its download.
    expect_offer(
        &app,
        &id,
        "download",
        Some(ALICE),
        &["reject", "requestChanges", "addNote"],
        &[
            ("approveDownload", "SameReviewer"),
            ("withdraw", NOT_THE_UPLOADER),
        ],
    )
    .await;
    expect_offer(
        &app,
        &id,
        "download",
        Some(BOB),
        &["approveDownload", "reject", "requestChanges", "addNote"],
        &[("withdraw", NOT_THE_UPLOADER)],
    )
    .await;

    app.ask_changes(&id, "download", BOB, "the totals are wrong")
        .await;
    expect_offer(
        &app,
        &id,
        "changes",
        Some(UMA),
        &["withdraw", "sendNewVersion"],
        &[("addNote", NOT_A_REVIEWER)],
    )
    .await;
    expect_offer(
        &app,
        &id,
        "changes",
        Some(CAROL),
        &["addNote"],
        &[
            ("withdraw", NOT_THE_UPLOADER),
            ("sendNewVersion", NOT_THE_UPLOADER),
        ],
    )
    .await;

    let sent = take(&app, &id, "changes", "sendNewVersion", Some(UMA)).await;
    assert_eq!(sent.status(), 202);
    app.idle().await;
    // Version 2 starts over: alice, who approved version 1's upload, may approve again.
    expect_offer(
        &app,
        &id,
        "upload",
        Some(ALICE),
        &reviewing,
        &[("withdraw", NOT_THE_UPLOADER)],
    )
    .await;
    app.approve_ok(&id, "upload", CAROL).await;
    app.idle().await;
    app.approve_ok(&id, "download", ALICE).await;
    app.idle().await;
    expect_offer(
        &app,
        &id,
        "approved",
        Some(BOB),
        &["revoke", "download", "addNote"],
        &[],
    )
    .await;
    expect_offer(
        &app,
        &id,
        "approved",
        Some(UMA),
        &["download"],
        &[("revoke", NOT_A_REVIEWER), ("addNote", NOT_A_REVIEWER)],
    )
    .await;
}

async fn an_uploader_who_reviews_may_stop_but_not_approve_their_file(backend: Backend) {
    let Some(app) = spawn_team(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = app.upload_by(ALICE, Mode::Local, "own.txt", BYTES).await;
    app.idle().await;
    expect_offer(
        &app,
        &id,
        "upload",
        Some(ALICE),
        &["reject", "requestChanges", "addNote", "withdraw"],
        &[("approveUpload", "SelfApproval")],
    )
    .await;
}

async fn a_quorum_member_who_approved_waits_for_the_others(backend: Backend) {
    let Some(app) = spawn_team(
        backend,
        Mode::Local,
        vec![("FILE_APPROVER_UPLOAD_QUORUM", "2".into())],
    )
    .await
    else {
        return;
    };
    let id = app.upload_by(UMA, Mode::Local, "quorum.txt", BYTES).await;
    app.idle().await;
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(
        status["stage"], "AwaitingUploadApproval",
        "one of two approvals"
    );
    expect_offer(
        &app,
        &id,
        "upload",
        Some(ALICE),
        &["reject", "requestChanges", "addNote"],
        &[
            ("approveUpload", "AlreadyDecided"),
            ("withdraw", NOT_THE_UPLOADER),
        ],
    )
    .await;
    let (allowed, _) = offered(&app, &id, Some(BOB)).await;
    assert!(allowed.contains(&"approveUpload".to_owned()));
}

async fn me(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    app.get_as("/api/me", token).await
}

async fn the_caller_learns_who_they_are_and_what_they_may_do(backend: Backend) {
    let Some(app) = spawn_team(backend, Mode::Local, vec![]).await else {
        return;
    };
    let alice: Value = me(&app, Some(ALICE)).await.json().await.unwrap();
    assert_eq!(
        alice,
        json!({"name": "alice", "reviewer": true, "uploader": true, "revoker": true})
    );
    let uma: Value = me(&app, Some(UMA)).await.json().await.unwrap();
    assert_eq!(
        uma,
        json!({"name": "uma", "reviewer": false, "uploader": true, "revoker": false})
    );
    assert_error(me(&app, None).await, 401, "Unauthorized").await;
    assert_error(
        me(&app, Some("nobody-knows-this-token")).await,
        401,
        "Unauthorized",
    )
    .await;
    // Where nothing is authenticated, everyone is anonymous and may do everything.
    let Some(open) = spawn_app_with(Options {
        backend,
        vars: vec![("FILE_APPROVER_REVIEWERS", String::new())],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let anyone: Value = me(&open, None).await.json().await.unwrap();
    assert_eq!(
        anyone,
        json!({"name": null, "reviewer": true, "uploader": true, "revoker": true})
    );
}

async fn uploads_list(app: &TestApp, token: Option<&str>, query: &str) -> reqwest::Response {
    app.get_as(&format!("/api/files?uploadedBy=me{query}"), token)
        .await
}

async fn an_uploader_lists_her_own_files_newest_first(backend: Backend) {
    // An uploader of this test's own: on Azure the tables are shared with the other tests.
    let name = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let token = format!("{name}-token-0123456789");
    let Some(app) = spawn_app_with(Options {
        backend,
        vars: vec![("FILE_APPROVER_UPLOADERS", format!("{name}:{token}"))],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let uma = token.as_str();
    let mut mine = Vec::new();
    for i in 0..3 {
        mine.push(
            app.upload_by(uma, Mode::Local, &format!("mine-{i}.txt"), BYTES)
                .await,
        );
        app.clock.advance(chrono::Duration::seconds(1));
    }
    let theirs = app.upload_by(BOB, Mode::Local, "bob.txt", BYTES).await;
    app.idle().await;
    app.ask_changes(&mine[0], "upload", ALICE, "wrong quarter")
        .await;

    // Two pages of two: newest first, hers only, whatever the stage.
    let first: Value = uploads_list(&app, Some(uma), "&top=2")
        .await
        .json()
        .await
        .unwrap();
    let ids = |page: &Value| -> Vec<String> {
        page["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first), vec![mine[2].clone(), mine[1].clone()]);
    let token = first["continuationToken"].as_str().expect("a second page");
    let second: Value = uploads_list(
        &app,
        Some(uma),
        &format!("&top=2&continuationToken={token}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(ids(&second), vec![mine[0].clone()]);
    assert_eq!(second["files"][0]["stage"], "ChangesRequested");
    assert!(!ids(&first).contains(&theirs) && !ids(&second).contains(&theirs));

    assert_error(uploads_list(&app, None, "").await, 401, "Unauthorized").await;
    // Narrowed by stage: the one sent back for changes.
    let asked: Value = uploads_list(&app, Some(uma), "&stage=ChangesRequested")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&asked), vec![mine[0].clone()]);
    // Her own files she may decide: she is no reviewer.
    assert_error(
        uploads_list(&app, Some(uma), "&awaiting=me").await,
        403,
        "NotAReviewer",
    )
    .await;
    let wrong = app.get_as("/api/files?uploadedBy=alice", Some(uma)).await;
    assert_error(wrong, 400, "InvalidQuery").await;
}

crate::on_every_backend!(
    the_caller_learns_who_they_are_and_what_they_may_do,
    an_uploader_lists_her_own_files_newest_first,
    each_person_is_offered_what_the_api_accepts,
    an_uploader_who_reviews_may_stop_but_not_approve_their_file,
    a_quorum_member_who_approved_waits_for_the_others,
);
