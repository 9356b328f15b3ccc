//! Every bad input gets the right status and a JSON error with a stable code — never a 5xx —
//! and leaves nothing behind.

use serde_json::Value;

use crate::helpers::{
    assert_error, spawn_app, urlencode, Refused, RefusedResponse, TestApp, ALICE, BOB, MAX_UPLOAD,
};

const RANDOM_ID: &str = "3f1c9a4e-0b6d-4c1e-9a51-2f8e7d6c5b4a";

/// No record and no blob may be left by a refused upload.
async fn assert_nothing_stored(app: &TestApp) {
    let files = app
        .state
        .files
        .store()
        .query(
            file_approver::files::FILES_TABLE,
            &file_approver::store::TableQuery::partition(file_approver::files::OPEN_UPLOADS),
        )
        .await
        .expect("query records");
    assert!(
        files.entities.is_empty(),
        "records left behind: {:?}",
        files.entities
    );
    let listed: Value = app.get("/api/files").await.json().await.unwrap();
    assert_eq!(listed["files"].as_array().unwrap().len(), 0);
}

/// A browser must never read an answer (one that echoes a file's name, say) as anything but
/// its declared type: every answer, errors included, says `nosniff`.
#[tokio::test]
async fn every_answer_says_nosniff() {
    let app = spawn_app().await;
    let id = app.upload_ok("<script>.txt", b"hello").await;
    for path in [
        format!("/api/files/{id}"),
        format!("/api/files/{RANDOM_ID}"),
        "/api/files/not-a-uuid".to_owned(),
        "/api/openapi.json".to_owned(),
        "/api/files".to_owned(),
    ] {
        let response = app.get(&path).await;
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
}

#[tokio::test]
async fn malformed_file_id_is_refused() {
    let app = spawn_app().await;
    for path in [
        "/api/files/not-a-uuid",
        "/api/files/3f1c9a4e0b6d4c1e9a512f8e7d6c5b4a",
        "/api/files/%7B3f1c9a4e-0b6d-4c1e-9a51-2f8e7d6c5b4a%7D",
        "/api/files/not-a-uuid/download",
    ] {
        app.get(path).refused(400, "InvalidId").await;
    }
    app.approve("nope", "upload", Some(ALICE), None)
        .refused(400, "InvalidId")
        .await;
}

#[tokio::test]
async fn unknown_file_is_not_found_everywhere() {
    let app = spawn_app().await;
    app.get(&format!("/api/files/{RANDOM_ID}"))
        .refused(404, "NotFound")
        .await;
    app.get(&format!("/api/files/{RANDOM_ID}/download"))
        .refused(404, "NotFound")
        .await;
    app.approve(RANDOM_ID, "upload", Some(ALICE), None)
        .refused(404, "NotFound")
        .await;
}

#[tokio::test]
async fn unknown_approval_stage_is_refused() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", b"a").await;
    for stage in ["publish", "Upload", "UPLOAD", "%20"] {
        app.approve(&id, stage, Some(ALICE), None)
            .refused(400, "InvalidStage")
            .await;
    }
}

#[tokio::test]
async fn invalid_or_wrong_typed_decision_bodies_are_refused() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", b"a").await;
    for body in [
        "{",
        "not json",
        r#"{"approved": "yes"}"#,
        r#"{"approved": 1}"#,
        r#"{"aproved": false}"#,
        r#"[true]"#,
        r#"{"comment": 42}"#,
        r#"{"version": 0}"#,
        r#"{"version": -1}"#,
        r#"{"version": "1"}"#,
        r#"{"version": 1.5}"#,
        r#"{"version": null}"#,
    ] {
        app.approve(&id, "upload", Some(ALICE), Some(body))
            .refused(400, "InvalidBody")
            .await;
    }
    let huge = format!(r#"{{"comment": "{}"}}"#, "x".repeat(20_000));
    app.approve(&id, "upload", Some(ALICE), Some(&huge))
        .refused(400, "InvalidBody")
        .await;
    // None of it was recorded.
    assert_eq!(app.status(&id).await["stage"], "AwaitingUploadApproval");
}

#[tokio::test]
async fn missing_or_wrong_reviewer_tokens_are_unauthorized() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", b"a").await;
    app.approve(&id, "upload", None, None)
        .refused(401, "Unauthorized")
        .await;
    app.approve(&id, "upload", Some("mallory-0123456789"), None)
        .refused(401, "Unauthorized")
        .await;
    let basic = app
        .client
        .post(app.url(&format!("/api/files/{id}/approvals/upload")))
        .header("Authorization", format!("Basic {ALICE}"))
        .send()
        .await
        .unwrap();
    assert!(basic.headers().contains_key("www-authenticate"));
    assert_error(basic, 401, "Unauthorized").await;
    assert_eq!(
        app.status(&id).await["approvals"].as_array().unwrap().len(),
        0
    );
}

#[tokio::test]
async fn names_are_cut_to_their_last_component_or_refused() {
    let app = spawn_app().await;
    let response = app.upload("../../etc/passwd", b"x", "text/plain").await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "passwd");

    for bad in ["a\nb.txt", "tab\there", "dir/", "..", &"n".repeat(256)] {
        app.upload(bad, b"x", "text/plain")
            .refused(400, "InvalidName")
            .await;
    }
}

#[tokio::test]
async fn an_upload_without_a_name_is_named_after_its_id() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/files"))
        .body("content")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["name"], status["id"]);
}

#[tokio::test]
async fn the_name_may_come_from_the_x_file_name_header() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/files"))
        .header("X-File-Name", "from-header.bin")
        .body(vec![0u8, 1, 2])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "from-header.bin");
    assert_eq!(body["contentType"], "application/octet-stream");
}

#[tokio::test]
async fn empty_upload_is_refused_and_leaves_nothing() {
    let app = spawn_app().await;
    app.upload("empty.txt", b"", "text/plain")
        .refused(400, "EmptyFile")
        .await;
    // The same without Content-Length (chunked, zero chunks).
    let stream = futures::stream::iter(Vec::<Result<Vec<u8>, std::io::Error>>::new());
    app.client
        .post(app.url("/api/files?name=empty.txt"))
        .body(reqwest::Body::wrap_stream(stream))
        .refused(400, "EmptyFile")
        .await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn oversized_upload_is_refused_from_content_length() {
    let app = spawn_app().await;
    let body = vec![b'x'; MAX_UPLOAD as usize + 1];
    app.upload("big.bin", &body, "application/octet-stream")
        .refused(413, "TooLarge")
        .await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn oversized_chunked_upload_is_refused_while_streaming_and_leaves_nothing() {
    let app = spawn_app().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'x'; 64 * 1024])).collect(); // 1.25 MiB > 1 MiB
    app.client
        .post(app.url("/api/files?name=big.bin"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .refused(413, "TooLarge")
        .await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn an_interrupted_upload_commits_nothing() {
    use tower::ServiceExt;

    let app = spawn_app().await;
    // The body breaks after 1000 bytes, as when the client goes away. Served in-process, so
    // the handler's answer (and its clean-up before it) is awaited rather than raced.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(vec![b'x'; 1000]),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    let request = axum::http::Request::post("/api/files?name=cut.bin")
        .header("Content-Type", "application/octet-stream")
        .body(axum::body::Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let response = file_approver::startup::app(app.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "InvalidBody");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{body}"
    );
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn multipart_upload_takes_the_name_and_type_of_its_file_part() {
    let app = spawn_app().await;
    let form = reqwest::multipart::Form::new()
        .text("comment", "ignored")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"%PDF-1.4 fake".to_vec())
                .file_name("C:\\docs\\report.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    let response = app
        .client
        .post(app.url("/api/files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "report.pdf");
    assert_eq!(body["contentType"], "application/pdf");
    assert_eq!(body["size"], 13);
}

#[tokio::test]
async fn broken_multipart_is_refused_and_leaves_nothing() {
    let app = spawn_app().await;
    let cases: Vec<(&str, &[u8])> = vec![
        // No boundary parameter at all.
        ("multipart/form-data", b"--x\r\n\r\nhello\r\n--x--\r\n"),
        // A boundary that never appears.
        ("multipart/form-data; boundary=zzz", b"no parts here at all"),
        // A form without a file part.
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhi\r\n--b--\r\n",
        ),
        // A file part that is never terminated.
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nabc",
        ),
        // A good file part, then a part whose header holds a control character (found by
        // Schemathesis): the form is the request, and it is malformed.
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nabc\r\n--b\r\nContent-Disposition: form-data; name=\"x\x0fy\"\r\n\r\n\r\n--b--\r\n",
        ),
        // A good file part and a form that never ends.
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nabc\r\n--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi",
        ),
    ];
    for (content_type, body) in cases {
        app.client
            .post(app.url("/api/files"))
            .header("Content-Type", content_type)
            .body(body.to_vec())
            .refused(400, "InvalidMultipart")
            .await;
    }
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_malformed_content_type_is_refused() {
    let app = spawn_app().await;
    app.upload("a.txt", b"a", "garbage")
        .refused(400, "InvalidBody")
        .await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn download_approval_before_upload_approval_is_refused() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", b"a").await;
    let error = app
        .approve(&id, "download", Some(BOB), None)
        .refused(409, "WrongStage")
        .await;
    assert_eq!(error["currentStage"], "AwaitingUploadApproval");
}

#[tokio::test]
async fn repeating_the_same_decision_is_ok_and_recorded_once() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", b"a").await;
    app.approve_ok(&id, "upload", ALICE).await;
    let again = app.approve(&id, "upload", Some(ALICE), None).await;
    assert_eq!(again.status(), 200);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["approvals"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_contradictory_decision_is_refused() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", b"a").await;
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    let error = app
        .approve(
            &id,
            "upload",
            Some(ALICE),
            Some(r#"{"approved": false, "comment": "not this one"}"#),
        )
        .refused(409, "WrongStage")
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("already decided"),
        "{error}"
    );
    // Another reviewer deciding a decided stage is refused too.
    app.approve(&id, "upload", Some(BOB), None)
        .refused(409, "WrongStage")
        .await;
}

#[tokio::test]
async fn download_before_approval_is_refused() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", b"a").await;
    let error = app
        .get(&format!("/api/files/{id}/download"))
        .refused(409, "NotApproved")
        .await;
    assert_eq!(error["currentStage"], "AwaitingUploadApproval");
    app.approve(&id, "upload", Some(ALICE), None).await;
    app.idle().await;
    let error = app
        .get(&format!("/api/files/{id}/download"))
        .refused(409, "NotApproved")
        .await;
    assert_eq!(error["currentStage"], "AwaitingDownloadApproval");
}

#[tokio::test]
async fn unsupported_methods_are_refused_with_405() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", b"a").await;
    for (method, path) in [
        (reqwest::Method::DELETE, format!("/api/files/{id}")),
        (reqwest::Method::PUT, "/api/files".to_owned()),
        (
            reqwest::Method::GET,
            format!("/api/files/{id}/approvals/upload"),
        ),
        (reqwest::Method::POST, format!("/api/files/{id}/download")),
        (reqwest::Method::PATCH, format!("/api/files/{id}")),
    ] {
        app.client
            .request(method, app.url(&path))
            .refused(405, "MethodNotAllowed")
            .await;
    }
}

#[tokio::test]
async fn unknown_routes_are_json_404s() {
    let app = spawn_app().await;
    app.get("/api/nothing-here").refused(404, "NotFound").await;
    app.get("/api/files/a/b/c/d").refused(404, "NotFound").await;
}

#[tokio::test]
async fn bad_listing_queries_are_refused() {
    let app = spawn_app().await;
    app.get("/api/files?stage=Done")
        .refused(400, "InvalidStage")
        .await;
    for query in [
        "top=0",
        "top=-3",
        "top=101",
        "top=ten",
        "continuationToken=",
    ] {
        app.get(&format!("/api/files?{query}"))
            .refused(400, "InvalidQuery")
            .await;
    }
    app.get(&format!(
        "/api/files?continuationToken={}",
        urlencode("garbage!")
    ))
    .refused(400, "InvalidQuery")
    .await;
}

#[tokio::test]
async fn the_readiness_probe_answers_at_once() {
    let app = spawn_app().await;
    assert_eq!(app.get("/").await.status(), 200);
}

#[tokio::test]
async fn a_utf8_name_in_the_x_file_name_header_is_kept() {
    let app = spawn_app().await;
    let name = "résumé.pdf";
    let response = app
        .client
        .post(app.url("/api/files"))
        .header(
            "X-File-Name",
            reqwest::header::HeaderValue::from_bytes(name.as_bytes()).unwrap(),
        )
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], name);
}

#[tokio::test]
async fn a_name_that_is_not_utf8_once_decoded_is_refused() {
    let app = spawn_app().await;
    for query in ["name=%FF.txt", "name=a%C3"] {
        app.client
            .post(app.url(&format!("/api/files?{query}")))
            .body("x")
            .refused(400, "InvalidName")
            .await;
    }
    app.client
        .post(app.url("/api/files"))
        .header(
            "X-File-Name",
            reqwest::header::HeaderValue::from_bytes(b"\xff.txt").unwrap(),
        )
        .body("x")
        .refused(400, "InvalidName")
        .await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn an_undecodable_content_type_is_an_invalid_body_not_an_invalid_name() {
    let app = spawn_app().await;
    app.client
        .post(app.url("/api/files?name=a.txt"))
        .header(
            "Content-Type",
            reqwest::header::HeaderValue::from_bytes(b"text/plain\xff").unwrap(),
        )
        .body("x")
        .refused(400, "InvalidBody")
        .await;
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn a_decision_body_over_16_kib_is_refused_even_when_it_is_valid_json() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", b"a").await;
    let padded = format!(r#"{{"approved": false}}{}"#, " ".repeat(17 * 1024));
    let error = app
        .approve(&id, "upload", Some(ALICE), Some(&padded))
        .refused(400, "InvalidBody")
        .await;
    assert!(
        error["message"].as_str().unwrap().contains("16384"),
        "{error}"
    );
    assert_eq!(app.status(&id).await["stage"], "AwaitingUploadApproval");
}

#[tokio::test]
async fn a_multipart_file_part_with_a_malformed_type_is_refused_like_a_raw_upload() {
    let app = spawn_app().await;
    let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: garbage\r\n\r\nabc\r\n--b--\r\n";
    let response = app
        .client
        .post(app.url("/api/files"))
        .header("Content-Type", "multipart/form-data; boundary=b")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "InvalidBody").await;
    assert_nothing_stored(&app).await;
}

/// A display name that reads as something it is not — a right-to-left override turning
/// `invoice\u{202E}gpj.exe` into "invoiceexe.jpg", zero-width or byte-order characters, a line
/// separator, a directional isolate, nothing but spaces — is refused the same way whether it
/// comes in the query, the `X-File-Name` header or a multipart part, and leaves nothing behind.
#[tokio::test]
async fn a_name_that_disguises_itself_is_refused_however_it_arrives() {
    let app = spawn_app().await;
    for name in [
        "invoice\u{202E}gpj.exe",
        "re\u{200B}port.pdf",
        "\u{FEFF}notes.txt",
        "line\u{2028}break.txt",
        "iso\u{2066}late\u{2069}.txt",
        "   ",
    ] {
        let by_query = app.upload(name, b"x", "text/plain").await;
        assert_error(by_query, 400, "InvalidName").await;

        app.client
            .post(app.url("/api/files"))
            .header(
                "X-File-Name",
                reqwest::header::HeaderValue::from_bytes(name.as_bytes()).unwrap(),
            )
            .body("x")
            .refused(400, "InvalidName")
            .await;

        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name(name.to_owned()),
        );
        app.client
            .post(app.url("/api/files"))
            .multipart(form)
            .refused(400, "InvalidName")
            .await;
    }
    assert_nothing_stored(&app).await;
}

/// A query parameter a route does not take is refused (a typo would otherwise be ignored),
/// except the host's `code`, which carries the function key on every route.
#[tokio::test]
async fn unknown_query_parameters_are_refused_except_the_function_key() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", b"a").await;
    for path in [
        format!("/api/files/{id}?verbose=1"),
        "/api/files?stgae=Approved".to_owned(),
        format!("/api/files/{id}/history?all=true"),
        format!("/api/files/{id}/download?inline=1"),
    ] {
        let error = app.get(&path).refused(400, "InvalidQuery").await;
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("unknown query parameter"),
            "{error}"
        );
    }
    app.client
        .post(app.url("/api/files?name=b.txt&overwrite=yes"))
        .body("b")
        .refused(400, "InvalidQuery")
        .await;
    app.client
        .post(app.url(&format!("/api/files/{id}/approvals/upload?force=1")))
        .bearer_auth(crate::helpers::ALICE)
        .refused(400, "InvalidQuery")
        .await;
    // The function key is every route's.
    assert_eq!(
        app.get(&format!("/api/files/{id}?code=abc")).await.status(),
        200
    );
    assert_eq!(
        app.get("/api/files?stage=AwaitingUploadApproval&code=abc")
            .await
            .status(),
        200
    );
}

/// Every JSON body, success or error, ends with a newline.
#[tokio::test]
async fn every_json_body_ends_with_a_newline() {
    let app = spawn_app().await;
    let upload = app.upload("n.txt", b"n", "text/plain").await;
    let body = upload.bytes().await.unwrap();
    assert_eq!(body.last(), Some(&b'\n'));
    let id = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        format!("/api/files/{id}"),
        "/api/files".to_owned(),
        format!("/api/files/{id}/history"),
        format!("/api/files/{id}/download"),
        "/api/nothing-here".to_owned(),
    ] {
        let response = app.get(&path).await;
        let length = response
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
        let body = response.bytes().await.unwrap();
        assert_eq!(body.last(), Some(&b'\n'), "{path}");
        if let Some(length) = length {
            assert_eq!(
                length,
                body.len(),
                "{path}: Content-Length counts the newline"
            );
        }
    }
}

/// A 405 says which methods the route takes.
#[tokio::test]
async fn a_405_names_the_allowed_methods() {
    let app = spawn_app().await;
    let id = app.upload_ok("a.txt", b"a").await;
    for (method, path, allowed) in [
        (reqwest::Method::DELETE, format!("/api/files/{id}"), "GET"),
        (reqwest::Method::PUT, "/api/files".to_owned(), "GET,POST"),
        (
            reqwest::Method::GET,
            format!("/api/files/{id}/approvals/upload"),
            "POST",
        ),
        (
            reqwest::Method::GET,
            format!("/api/files/{id}/withdraw"),
            "POST",
        ),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        let allow = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().replace(' ', ""))
            .unwrap_or_default();
        let mut got: Vec<&str> = allow
            .split(',')
            .filter(|m| !m.is_empty() && *m != "HEAD")
            .collect();
        got.sort_unstable();
        assert_eq!(got.join(","), allowed, "{method} {path}");
        assert_error(response, 405, "MethodNotAllowed").await;
    }
}

/// The OpenAPI document is served, the same as `docs/openapi.json`.
#[tokio::test]
async fn the_openapi_document_is_served() {
    let app = spawn_app().await;
    let response = app.get("/api/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let served = response.text().await.unwrap();
    assert_eq!(served, file_approver::functions::openapi::document());
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["info"]["title"], "File Approver");
}
