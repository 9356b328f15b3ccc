//! After approval: download links checked at every use (signature, expiry, stage, limit),
//! recorded in the file's history, redirecting to a short-lived storage link to the pinned
//! bytes; and revocation, which stops every link handed out before at once.

use file_approver::store::testing::Op;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, pass_minutes, spawn_app_with, spawn_team, Backend, Mode, Options, TestApp, ALICE,
    BOB, CAROL, UMA,
};

const CONTENT: &[u8] = b"0123456789 the approved bytes, all of them\n";

async fn app_with(
    backend: Backend,
    mode: Mode,
    vars: Vec<(&'static str, String)>,
) -> Option<TestApp> {
    spawn_team(backend, mode, vars).await
}

/// Uploads [`CONTENT`] as Uma and has Alice and Bob approve it; returns its id.
async fn approved_file(app: &TestApp) -> String {
    let id = app
        .upload_by(UMA, Mode::Local, "numbers.txt", CONTENT)
        .await;
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    app.approve_ok(&id, "download", BOB).await;
    id
}

/// The download link handed out to the holder of `token` (anonymous when `None`).
async fn link(app: &TestApp, id: &str, token: Option<&str>) -> String {
    let response = app
        .get_as(&format!("/api/files/{id}/download"), token)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["downloadUrl"].as_str().unwrap().to_owned()
}

/// A client that follows redirects, as curl -L and browsers do.
fn following() -> reqwest::Client {
    reqwest::Client::new()
}

/// Follows a link once, without following its redirect.
async fn follow_once(app: &TestApp, url: &str) -> reqwest::Response {
    app.client.get(url).send().await.unwrap()
}

async fn revoke(app: &TestApp, id: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    app.post_json_as(&format!("/api/files/{id}/revoke"), token, &body)
        .await
}

async fn a_link_is_checked_recorded_and_leads_to_the_pinned_bytes(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = approved_file(&app).await;
    let url = link(&app, &id, Some(CAROL)).await;
    assert!(
        url.starts_with(&app.url(&format!("/api/files/{id}/content?se="))),
        "an app link, not a storage link: {url}"
    );

    let first = follow_once(&app, &url).await;
    assert_eq!(first.status(), 307);
    assert_eq!(first.headers()["cache-control"], "no-store");
    let target = first.headers()["location"].to_str().unwrap().to_owned();
    assert_ne!(target, url);
    // The storage link lives minutes, not the hour of the app link.
    let fetched = following()
        .get(&url)
        .header("user-agent", "curl/8.5.0")
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    assert!(fetched.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), CONTENT);

    let status = app.status(&id).await;
    assert_eq!(status["downloads"]["count"], 2, "{status}");
    assert!(status["downloads"].get("limit").is_none());
    let steps = app.steps(&id).await;
    let downloads: Vec<&Value> = steps.iter().filter(|s| s["step"] == "downloaded").collect();
    assert_eq!(downloads.len(), 2, "{steps:?}");
    for step in &downloads {
        let outcome = step["outcome"].as_str().unwrap();
        assert!(outcome.starts_with("43 bytes (127.0.0.1"), "{outcome}");
    }
    assert!(
        downloads
            .iter()
            .any(|s| s["outcome"].as_str().unwrap().ends_with(", curl/8.5.0)")),
        "{downloads:?}"
    );
}

async fn revoking_stops_every_link_at_once(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = approved_file(&app).await;
    let earlier = link(&app, &id, None).await;
    let other = link(&app, &id, Some(CAROL)).await;
    assert_eq!(follow_once(&app, &earlier).await.status(), 307);

    let revoked = revoke(
        &app,
        &id,
        Some(CAROL),
        json!({"comment": "sent to the wrong partner"}),
    )
    .await;
    assert_eq!(revoked.status(), 202);
    let status: Value = revoked.json().await.unwrap();
    assert_eq!(status["stage"], "Revoked");

    for url in [&earlier, &other] {
        let refused = follow_once(&app, url).await;
        assert!(refused.headers().get("location").is_none());
        let error = assert_error(refused, 410, "FileRevoked").await;
        assert_eq!(error["currentStage"], "Revoked");
    }
    assert_error(
        app.get(&format!("/api/files/{id}/download")).await,
        409,
        "NotApproved",
    )
    .await;

    let steps = app.steps(&id).await;
    let revocation = steps.iter().find(|s| s["step"] == "revoked").unwrap();
    assert_eq!(revocation["actor"]["name"], "carol");
    assert_eq!(revocation["comment"], "sent to the wrong partner");
    // The workflow's own steps (links and fetches are interleaved by time, which this test's
    // clock never moves): approved, then revoked; the bytes of a revoked file follow the
    // refused files' retention (0 s here: at once).
    app.idle().await;
    let steps = app.steps(&id).await;
    let workflow: Vec<(&str, &str)> = steps
        .iter()
        .filter(|s| !matches!(s["step"].as_str(), Some("linkIssued" | "downloaded")))
        .map(|s| {
            (
                s["step"].as_str().unwrap(),
                s["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        workflow[workflow.len() - 4..],
        [
            ("finished", "Approved"),
            ("revoked", ""),
            ("bytesDeleted", ""),
            ("finished", "Revoked")
        ],
        "{workflow:?}"
    );
}

async fn revocation_needs_a_reviewer_a_reason_and_an_approved_file(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = approved_file(&app).await;
    let reason = json!({"comment": "no longer cleared"});
    assert_error(
        revoke(&app, &id, None, reason.clone()).await,
        401,
        "Unauthorized",
    )
    .await;
    assert_error(
        revoke(&app, &id, Some(UMA), reason.clone()).await,
        403,
        "NotAReviewer",
    )
    .await;
    for body in [
        json!({}),
        json!({"comment": "   "}),
        json!({"comment": null}),
    ] {
        assert_error(
            revoke(&app, &id, Some(CAROL), body).await,
            400,
            "ReasonRequired",
        )
        .await;
    }
    for body in [
        json!({"comment": "why", "also": 1}),
        json!(["why"]),
        json!({"comment": 5}),
        json!({"comment": "x".repeat(2001)}),
        json!({"comment": "bell\u{7}"}),
    ] {
        assert_error(
            revoke(&app, &id, Some(CAROL), body).await,
            400,
            "InvalidBody",
        )
        .await;
    }
    let not_json = app
        .client
        .post(app.url(&format!("/api/files/{id}/revoke")))
        .bearer_auth(CAROL)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(not_json, 400, "InvalidBody").await;
    assert_error(
        revoke(&app, "not-an-id", Some(CAROL), reason.clone()).await,
        400,
        "InvalidId",
    )
    .await;
    let missing = uuid::Uuid::new_v4().to_string();
    assert_error(
        revoke(&app, &missing, Some(CAROL), reason.clone()).await,
        404,
        "NotFound",
    )
    .await;
    // Nothing of the above touched the file.
    assert_eq!(app.status(&id).await["stage"], "Approved");

    // Four eyes do not bar a stop: the reviewer who approved the download may revoke it.
    assert_eq!(
        revoke(&app, &id, Some(BOB), reason.clone()).await.status(),
        202
    );
    // Saying it again changes nothing; somebody else finds it revoked already.
    assert_eq!(
        revoke(&app, &id, Some(BOB), reason.clone()).await.status(),
        200
    );
    let again = assert_error(
        revoke(&app, &id, Some(ALICE), reason.clone()).await,
        409,
        "WrongStage",
    )
    .await;
    assert_eq!(again["currentStage"], "Revoked");

    // Only an approved file.
    let pending = app.upload_as(UMA).await;
    let refused = assert_error(
        revoke(&app, &pending, Some(CAROL), reason).await,
        409,
        "WrongStage",
    )
    .await;
    assert_eq!(refused["currentStage"], "AwaitingUploadApproval");
}

async fn ranges_and_resumes_go_through_the_link(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = approved_file(&app).await;
    let url = link(&app, &id, None).await;
    let tail = following()
        .get(&url)
        .header("range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &CONTENT[10..]);
    let head = following().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], CONTENT.len().to_string());
    // A resume is recorded, not counted; a HEAD is neither.
    let status = app.status(&id).await;
    assert_eq!(status["downloads"]["count"], 0, "{status}");
    let steps = app.steps(&id).await;
    let resumed = steps.iter().find(|s| s["step"] == "downloaded").unwrap();
    assert!(
        resumed["outcome"]
            .as_str()
            .unwrap()
            .starts_with("resumed from byte 10"),
        "{resumed}"
    );
}

async fn the_download_limit_ends_the_links(backend: Backend) {
    let vars = vec![("FILE_APPROVER_MAX_DOWNLOADS", "2".to_owned())];
    let Some(app) = app_with(backend, Mode::Local, vars).await else {
        return;
    };
    let id = approved_file(&app).await;
    let url = link(&app, &id, None).await;
    for _ in 0..2 {
        let fetched = following().get(&url).send().await.unwrap();
        assert_eq!(fetched.bytes().await.unwrap().as_ref(), CONTENT);
    }
    let refused = follow_once(&app, &url).await;
    assert!(refused.headers().get("location").is_none());
    assert_error(refused, 410, "DownloadLimitReached").await;
    // A new link does not reset it.
    let fresh = link(&app, &id, None).await;
    assert_error(follow_once(&app, &fresh).await, 410, "DownloadLimitReached").await;
    let status = app.status(&id).await;
    assert_eq!(status["downloads"], json!({"count": 2, "limit": 2}));
}

async fn altered_foreign_or_expired_links_are_refused(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let id = approved_file(&app).await;
    let other = approved_file(&app).await;
    let url = link(&app, &id, None).await;
    let (_, query) = url.split_once('?').unwrap();

    // Another file's id under this file's signature.
    let foreign = app.url(&format!("/api/files/{other}/content?{query}"));
    assert_error(follow_once(&app, &foreign).await, 403, "LinkInvalid").await;
    // One changed character of the signature, or of the expiry.
    let last = url.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &url[..url.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    assert_error(follow_once(&app, &flipped).await, 403, "LinkInvalid").await;
    let later = url.replacen("se=", "se=9", 1);
    assert_error(follow_once(&app, &later).await, 403, "LinkInvalid").await;
    for bad in [
        "",
        "?se=1",
        "?sig=00",
        "?se=x&sig=00",
        "?se=1&sig=00&bound=2",
    ] {
        let bad = app.url(&format!("/api/files/{id}/content{bad}"));
        assert_error(follow_once(&app, &bad).await, 403, "LinkInvalid").await;
    }
    let unknown = format!("{url}&extra=1");
    assert_error(follow_once(&app, &unknown).await, 400, "InvalidQuery").await;
    let bad_id = app.url(&format!("/api/files/not-an-id/content?{query}"));
    assert_error(follow_once(&app, &bad_id).await, 400, "InvalidId").await;
    let posted = app.client.post(&url).send().await.unwrap();
    assert_error(posted, 405, "MethodNotAllowed").await;

    // The hour passes.
    pass_minutes(&app, &id, backend, 61).await;
    let expired = follow_once(&app, &url).await;
    assert!(expired.headers().get("location").is_none());
    assert_error(expired, 410, "LinkExpired").await;
}

async fn a_bound_link_works_for_its_asker_alone(backend: Backend) {
    let vars = vec![("FILE_APPROVER_BIND_DOWNLOAD_LINKS", "true".to_owned())];
    let Some(app) = app_with(backend, Mode::Local, vars).await else {
        return;
    };
    let id = approved_file(&app).await;
    let url = link(&app, &id, Some(CAROL)).await;
    assert!(url.contains("bound=1"), "{url}");
    let mine = app
        .client
        .get(&url)
        .bearer_auth(CAROL)
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 307);
    assert_error(follow_once(&app, &url).await, 403, "LinkNotYours").await;
    let theirs = app
        .client
        .get(&url)
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_error(theirs, 403, "LinkNotYours").await;
    let steps = app.steps(&id).await;
    let fetched = steps.iter().find(|s| s["step"] == "downloaded").unwrap();
    assert_eq!(fetched["actor"]["name"], "carol");
    // Somebody known to nobody gets an open link.
    let open = link(&app, &id, None).await;
    assert!(!open.contains("bound="), "{open}");
}

/// A revocation while a download is in flight lets that download finish; the next is refused.
async fn a_download_in_flight_finishes_after_a_revocation(backend: Backend) {
    let Some(app) = app_with(backend, Mode::Local, vec![]).await else {
        return;
    };
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let response = app
        .client
        .post(app.url("/api/files?name=big.bin"))
        .header("Content-Type", "application/octet-stream")
        .bearer_auth(UMA)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    app.approve_ok(&id, "download", BOB).await;
    let url = link(&app, &id, None).await;
    let mut started = following().get(&url).send().await.unwrap();
    assert_eq!(started.status(), 200);
    let mut received = started.chunk().await.unwrap().unwrap().to_vec();
    assert_eq!(
        revoke(&app, &id, Some(CAROL), json!({"comment": "stop"}))
            .await
            .status(),
        202
    );
    while let Some(chunk) = started.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
    assert!(received == big, "the download under way finished whole");
    assert_error(follow_once(&app, &url).await, 410, "FileRevoked").await;
}

/// Under the host only the redirect passes through the host: the link's answer carries no bytes,
/// and it needs no function key.
async fn under_the_host_a_link_answers_with_a_redirect_only(backend: Backend) {
    let Some(app) = app_with(backend, Mode::CustomHandler, vec![]).await else {
        return;
    };
    let id = app
        .upload_by(UMA, Mode::CustomHandler, "hosted.txt", CONTENT)
        .await;
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    app.approve_ok(&id, "download", BOB).await;
    let url = link(&app, &id, None).await;
    let answer = follow_once(&app, &url).await;
    assert_eq!(answer.status(), 307);
    assert!(answer.bytes().await.unwrap().is_empty());
    let fetched = following().get(&url).send().await.unwrap();
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), CONTENT);
}

/// What following a link costs storage, before the redirect: the file's stage (one read),
/// the download counter (one read) and the fetch recorded with its count (one batch). The
/// storage link is signed locally; the key that signs app links was read when the link was
/// minted.
async fn following_a_link_costs_three_storage_requests(backend: Backend) {
    let Some(app) = spawn_app_with(Options {
        backend,
        mode: Mode::Local,
        vars: vec![
            (
                "FILE_APPROVER_REVIEWERS",
                format!("alice:{ALICE},bob:{BOB},carol:{CAROL}"),
            ),
            ("FILE_APPROVER_UPLOADERS", format!("uma:{UMA}")),
        ],
        count_requests: true,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let id = approved_file(&app).await;
    let url = link(&app, &id, None).await;
    app.idle().await;
    let counter = app.requests.clone().expect("counted");
    counter.take();
    assert_eq!(follow_once(&app, &url).await.status(), 307);
    let counts = counter.take();
    // The local work driver may look at its queue meanwhile: that is not the link's cost.
    assert_eq!(counts.total() - counts.driver_looks(), 3, "{counts}");
    for op in [Op::Query, Op::GetEntity, Op::Batch] {
        assert_eq!(counts.requests(op), 1, "{op}: {counts}");
    }
}

crate::on_every_backend!(
    a_link_is_checked_recorded_and_leads_to_the_pinned_bytes,
    revoking_stops_every_link_at_once,
    revocation_needs_a_reviewer_a_reason_and_an_approved_file,
    ranges_and_resumes_go_through_the_link,
    the_download_limit_ends_the_links,
    altered_foreign_or_expired_links_are_refused,
    a_bound_link_works_for_its_asker_alone,
    a_download_in_flight_finishes_after_a_revocation,
    under_the_host_a_link_answers_with_a_redirect_only,
    following_a_link_costs_three_storage_requests,
);
