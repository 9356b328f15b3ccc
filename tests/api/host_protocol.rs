//! The custom-handler protocol as the Functions host speaks it: the blob trigger's invocation
//! (`POST /orchestrator`, built from the fixture payload), the timer's (`POST /sweep`), and
//! forwarded HTTP requests carrying the host's extra headers and `code` parameter.

use base64::Engine as _;
use file_approver::store::PutBlobOptions;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_on, Backend, Mode, TestApp};

const FIXTURE: &str = include_str!("../fixtures/b-blob-orchestrator.request.json");

/// The host's blob-trigger payload for file `id` whose content is `content`.
pub(crate) fn blob_trigger_payload(id: &str, content: &[u8], record: Value) -> String {
    let mut payload: Value = serde_json::from_str(FIXTURE).expect("fixture parses");
    payload["Data"]["blob"] = json!(base64::engine::general_purpose::STANDARD.encode(content));
    payload["Data"]["record"] = record;
    // Top-level strings arrive JSON-encoded twice.
    payload["Metadata"]["id"] = json!(format!("\"{id}\""));
    payload["Metadata"]["Uri"] = json!(format!(
        "\"http://127.0.0.1:10000/devstoreaccount1/files/{id}\""
    ));
    payload["Metadata"]["Properties"]["ContentLength"] = json!(content.len());
    payload["Metadata"]["sys"]["MethodName"] = json!("orchestrator");
    payload.to_string()
}

/// Posts an invocation of `function` as the host sends it: chunked (no Content-Length), with
/// the host's headers.
pub(crate) async fn invoke_function(
    app: &TestApp,
    function: &str,
    body: String,
) -> reqwest::Response {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .into_bytes()
        .chunks(512)
        .map(|c| Ok(c.to_vec()))
        .collect();
    app.client
        .post(app.url(&format!("/{function}")))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("X-Azure-Functions-HostVersion", "4.1037.0.23568")
        .header(
            "X-Azure-Functions-InvocationId",
            uuid::Uuid::new_v4().to_string(),
        )
        .header("User-Agent", "Azure-Functions-Host/4.1037.0.23568")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("the invocation")
}

async fn invoke(app: &TestApp, body: String) -> reqwest::Response {
    invoke_function(app, "orchestrator", body).await
}

pub(crate) async fn invoke_ok(app: &TestApp, body: String) -> Value {
    let response = invoke(app, body).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let reply: Value = response.json().await.expect("a JSON object, never empty");
    assert!(reply["Logs"].is_array(), "{reply}");
    reply
}

/// The table input binding's view of a record row, as the host serialises it.
pub(crate) async fn record_binding(app: &TestApp, id: &str) -> Value {
    let stored = app
        .state
        .files
        .store()
        .get_entity(
            file_approver::files::FILES_TABLE,
            file_approver::files::OPEN_UPLOADS,
            id,
        )
        .await
        .expect("record");
    let mut obj = serde_json::Map::new();
    obj.insert("odata.etag".into(), json!(stored.etag.as_str()));
    obj.insert("PartitionKey".into(), json!(stored.entity.partition_key));
    obj.insert("RowKey".into(), json!(stored.entity.row_key));
    obj.insert("Timestamp".into(), json!("2026-11-24T09:20:11.8830912Z"));
    for (k, v) in &stored.entity.props {
        let v = match v {
            file_approver::store::Prop::Str(s) => json!(s),
            file_approver::store::Prop::Int(i) => json!(i),
            file_approver::store::Prop::Float(f) => json!(f),
            file_approver::store::Prop::Bool(b) => json!(b),
        };
        obj.insert(k.clone(), v);
    }
    Value::Object(obj)
}

async fn blob_trigger_starts_the_workflow_once_however_often_it_is_delivered(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::CustomHandler).await else {
        return;
    };
    let content = b"id,amount\n1,10\n2,20\n";
    let response = app.upload("report.csv", content, "text/csv").await;
    assert_eq!(response.status(), 201);
    let uploaded: Value = response.json().await.unwrap();
    // Under the host, the workflow waits for the blob trigger.
    assert_eq!(uploaded["stage"], "Uploaded");
    assert_eq!(uploaded["runtimeStatus"], "Pending");
    let id = uploaded["id"].as_str().unwrap().to_owned();
    assert_eq!(app.status(&id).await["stage"], "Uploaded");

    let record = record_binding(&app, &id).await;
    let first = invoke_ok(&app, blob_trigger_payload(&id, content, record.clone())).await;
    assert!(first["Logs"].to_string().contains("started"), "{first}");
    let second = invoke_ok(&app, blob_trigger_payload(&id, content, record)).await;
    assert!(second["Logs"].to_string().contains("already"), "{second}");

    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    assert_eq!(status["name"], "report.csv");
    assert_eq!(status["contentType"], "text/csv");
    assert_eq!(status["size"], content.len());
    let history = app.history(&id).await;
    let started = history
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                file_approver::engine::EventKind::ExecutionStarted { .. }
            )
        })
        .count();
    assert_eq!(started, 1);
}

async fn blob_trigger_with_a_null_record_reads_it_from_storage(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::CustomHandler).await else {
        return;
    };
    let id = {
        let response = app.upload("notes.txt", b"hello", "text/plain").await;
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    };
    invoke_ok(&app, blob_trigger_payload(&id, b"hello", json!("null"))).await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    assert_eq!(status["name"], "notes.txt");
}

async fn a_blob_without_any_record_gets_one_and_a_workflow(backend: Backend) {
    let Some(app) = spawn_app_on(backend, Mode::CustomHandler).await else {
        return;
    };
    let id = uuid::Uuid::new_v4().to_string();
    let content = b"dropped straight into the container".to_vec();
    let stream = futures::stream::iter(vec![Ok::<_, file_approver::store::BoxError>(
        bytes::Bytes::from(content.clone()),
    )]);
    app.state
        .files
        .store()
        .put_blob(
            "files",
            &id,
            Box::pin(stream),
            &PutBlobOptions {
                content_type: "text/plain".into(),
                max_bytes: None,
            },
        )
        .await
        .unwrap();
    let reply = invoke_ok(&app, blob_trigger_payload(&id, &content, json!("null"))).await;
    assert!(reply["Logs"].to_string().contains("no record"), "{reply}");
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    assert_eq!(status["size"], content.len());
    assert_eq!(status["name"], id);
}

crate::on_every_backend!(
    blob_trigger_starts_the_workflow_once_however_often_it_is_delivered,
    blob_trigger_with_a_null_record_reads_it_from_storage,
    a_blob_without_any_record_gets_one_and_a_workflow,
);

#[tokio::test]
async fn a_blob_not_named_by_a_file_id_is_ignored_with_a_log() {
    let app = spawn_app_on(Backend::Embedded, Mode::CustomHandler)
        .await
        .unwrap();
    let reply = invoke_ok(
        &app,
        blob_trigger_payload("report-2025-03.csv", b"x", json!("null")),
    )
    .await;
    assert!(reply["Logs"].to_string().contains("ignored"), "{reply}");
}

/// A retry could not help, so the host gets a 2xx (never a retry and a poison message) and the
/// reason in `Logs`.
#[tokio::test]
async fn a_malformed_invocation_is_answered_2xx_with_the_reason_in_logs() {
    let app = spawn_app_on(Backend::Embedded, Mode::CustomHandler)
        .await
        .unwrap();
    for body in [
        "",
        "{",
        "[]",
        r#"{"Metadata": {}}"#,
        r#"{"Data": {"blob": 5"#,
    ] {
        let reply = invoke_ok(&app, body.to_owned()).await;
        assert!(
            reply["Logs"][0].as_str().unwrap().contains("InvalidBody"),
            "{reply}"
        );
    }
}

#[tokio::test]
async fn the_timer_invocation_sweeps_the_open_uploads() {
    let app = spawn_app_on(Backend::Embedded, Mode::CustomHandler)
        .await
        .unwrap();
    let timer = include_str!("../fixtures/c-timer.request.json");
    let response = app
        .client
        .post(app.url("/sweep"))
        .header("Content-Type", "application/json")
        .body(timer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    assert!(
        reply["Logs"][0].as_str().unwrap().starts_with("sweep"),
        "{reply}"
    );
}

#[tokio::test]
async fn forwarded_requests_with_host_headers_and_function_key_are_served() {
    let app = spawn_app_on(Backend::Embedded, Mode::CustomHandler)
        .await
        .unwrap();
    let response = app
        .client
        .post(app.url("/api/files?name=fwd.txt&code=the-function-key"))
        .header("Host", "myapp.azurewebsites.net")
        .header("x-functions-key", "the-function-key")
        .header("X-Forwarded-Proto", "https")
        .header("X-Azure-Functions-HostVersion", "4.1037.0.23568")
        .header(
            "X-Azure-Functions-InvocationId",
            "3f0c5f0e-6c8f-4f0b-9a4e-5f3b2a9d7c11",
        )
        .header("Content-Type", "text/plain")
        .body("forwarded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = app
        .get(&format!("/api/files/{id}?code=the-function-key"))
        .await;
    assert_eq!(listed.status(), 200);
}
