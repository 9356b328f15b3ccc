//! What an upload says about its type. curl's `--data-binary` sends
//! `application/x-www-form-urlencoded` unless told otherwise: on a raw upload that says how the
//! request was made, not what the file is, so it counts as not declared, like no `Content-Type`
//! at all. A file whose type was not declared cannot mismatch its contents; one declared as
//! `application/octet-stream` ("unknown binary") still does when it is text.

use serde_json::Value;

use crate::helpers::{spawn_app_on, Backend, Mode, TestApp, ALICE, BOB};

const CSV: &[u8] = b"quarter,revenue\nQ1,12\nQ2,15\n";

/// Uploads [`CSV`] with `content_type` (none: no header at all), starts its workflow as the
/// mode does, approves the upload and returns the analysed file's status.
async fn analysed(app: &TestApp, mode: Mode, content_type: Option<&str>) -> Value {
    let mut request = app
        .client
        .post(app.url("/api/files?name=totals.csv"))
        .body(CSV.to_vec());
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 201, "upload with {content_type:?}");
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    if mode == Mode::CustomHandler {
        let record = crate::host_protocol::record_binding(app, &id).await;
        let trigger = crate::host_protocol::blob_trigger_payload(&id, CSV, record);
        crate::host_protocol::invoke_ok(app, trigger).await;
    }
    app.idle().await;
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    app.status(&id).await
}

async fn curls_default_type_is_not_a_declaration(backend: Backend, mode: Mode) {
    let Some(app) = spawn_app_on(backend, mode).await else {
        return;
    };
    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        None,
    ] {
        let status = analysed(&app, mode, content_type).await;
        assert_eq!(status["stage"], "AwaitingDownloadApproval");
        assert_eq!(status["contentType"], "application/octet-stream");
        assert_eq!(status["contentTypeDeclared"], false, "{content_type:?}");
        assert_eq!(status["analysis"]["detectedContentType"], "text/plain");
        assert_eq!(
            status["analysis"]["contentTypeMatches"], true,
            "nothing declared, nothing to contradict: {content_type:?}"
        );
    }
    // A type that is declared is checked, "unknown binary" included.
    for (declared, matches) in [("text/csv", true), ("application/octet-stream", false)] {
        let status = analysed(&app, mode, Some(declared)).await;
        assert_eq!(status["contentType"], declared);
        assert!(status.get("contentTypeDeclared").is_none());
        assert_eq!(
            status["analysis"]["contentTypeMatches"], matches,
            "{declared}"
        );
    }
    // The bytes are served as what they were stored as (followed as curl -L does; under the
    // host the link's redirect is all the app answers, tested in after_approval.rs).
    if mode == Mode::CustomHandler {
        return;
    }
    let status = analysed(&app, mode, None).await;
    let id = status["id"].as_str().unwrap();
    app.approve_ok(id, "download", BOB).await;
    app.idle().await;
    let grant: Value = app
        .get(&format!("/api/files/{id}/download"))
        .await
        .json()
        .await
        .unwrap();
    let fetched = reqwest::Client::new()
        .get(grant["downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(
        fetched.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), CSV);
}

async fn undeclared_types_on_either_store(backend: Backend) {
    curls_default_type_is_not_a_declaration(backend, Mode::Local).await;
}

async fn undeclared_types_under_the_host(backend: Backend) {
    curls_default_type_is_not_a_declaration(backend, Mode::CustomHandler).await;
}

crate::on_every_backend!(
    undeclared_types_on_either_store,
    undeclared_types_under_the_host,
);
