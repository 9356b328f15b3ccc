//! `spawn_app()` and friends: a real server on 127.0.0.1:0 over a real store.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use file_approver::clock::ManualClock;
use file_approver::config::Settings;
use file_approver::functions::AppState;
use file_approver::startup::Application;
use file_approver::store::conformance::azure_test_connection_string;
use file_approver::store::testing::{BlobRequestModel, FaultyStore, RequestCounter};
use file_approver::store::Storage;
use serde_json::Value;
use tokio::net::TcpListener;

pub const ALICE: &str = "alice-token-0123456789";
pub const BOB: &str = "bob-token-0123456789abc";
pub const MAX_UPLOAD: u64 = 1024 * 1024;
/// A third reviewer, for the four-eyes rules (the default apps know alice and bob only).
/// An uploader who is no reviewer (for FILE_APPROVER_UPLOADERS).
pub const UMA: &str = "uma-uploader-token-0123456";
pub const CAROL: &str = "carol-token-0123456789ab";
/// What [`TestApp::upload_as`] uploads.
pub const PLAIN_BYTES: &[u8] = b"reviewed by people\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Azure,
}

/// How the app is started: local mode starts workflows itself right after an upload; custom
/// handler mode waits for the blob trigger (the tests then send its invocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    CustomHandler,
}

pub struct TestApp {
    /// Present when spawned with [`Options::faults`]: storage outages on demand.
    pub faults: Option<Arc<FaultyStore>>,
    /// Present when spawned with [`Options::count_requests`].
    pub requests: Option<RequestCounter>,
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub driver: file_approver::engine::WorkDriver,
    pub clock: ManualClock,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(Backend::Embedded, Mode::Local)
        .await
        .expect("embedded app")
}

/// An app with a team: reviewers alice, bob and carol, and uma, who may only upload; plus
/// `vars`. `None` when the backend is unavailable here.
pub async fn spawn_team(
    backend: Backend,
    mode: Mode,
    mut vars: Vec<(&'static str, String)>,
) -> Option<TestApp> {
    vars.push((
        "FILE_APPROVER_REVIEWERS",
        format!("alice:{ALICE},bob:{BOB},carol:{CAROL}"),
    ));
    vars.push(("FILE_APPROVER_UPLOADERS", format!("uma:{UMA}")));
    spawn_app_with(Options {
        backend,
        mode,
        vars,
        ..Options::default()
    })
    .await
}

/// `None` when the backend is unavailable here (Azure without Azurite, outside CI).
pub async fn spawn_app_on(backend: Backend, mode: Mode) -> Option<TestApp> {
    spawn_app_with(Options {
        backend,
        mode,
        ..Options::default()
    })
    .await
}

/// The setting that sends every analysis through the work queue, as for a file over
/// `FILE_APPROVER_INLINE_ANALYSIS_MAX_BYTES`: for tests of the queue's path with small files.
pub fn analysis_through_the_queue() -> (&'static str, String) {
    ("FILE_APPROVER_INLINE_ANALYSIS_MAX_BYTES", "0".into())
}

/// Everything a test may vary about the app it starts.
pub struct Options {
    pub backend: Backend,
    pub mode: Mode,
    /// Extra settings, as environment variables.
    pub vars: Vec<(&'static str, String)>,
    /// Route every storage request through a [`FaultyStore`] the test can break.
    pub faults: bool,
    /// Count every storage request by operation ([`TestApp::requests`]).
    pub count_requests: bool,
    /// Azure only: these storage settings instead of the test account's connection string
    /// (a keyless account's `AzureWebJobsStorage__*`, `IDENTITY_ENDPOINT`, ...).
    pub storage_settings: Option<Vec<(&'static str, String)>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Embedded,
            mode: Mode::Local,
            vars: Vec::new(),
            faults: false,
            count_requests: false,
            storage_settings: None,
        }
    }
}

pub async fn spawn_app_with(options: Options) -> Option<TestApp> {
    let Options {
        backend,
        mode,
        vars: extra,
        faults: with_faults,
        count_requests,
        storage_settings,
    } = options;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert(
        "FILE_APPROVER_REVIEWERS".into(),
        format!("alice:{ALICE},bob:{BOB}"),
    );
    vars.insert(
        "FILE_APPROVER_MAX_UPLOAD_BYTES".into(),
        MAX_UPLOAD.to_string(),
    );
    vars.insert(
        "FILE_APPROVER_DATA_DIR".into(),
        dir.path().to_string_lossy().into_owned(),
    );
    // Tests sweep by hand: in the background the sweep would race the test, and on Azure reach
    // other tests' uploads in the shared tables.
    vars.insert("FILE_APPROVER_SWEEP_INTERVAL_SECS".into(), "0".into());
    if mode == Mode::CustomHandler {
        vars.insert("FUNCTIONS_CUSTOMHANDLER_PORT".into(), "0".into());
    }
    match backend {
        Backend::Azure => {
            match storage_settings {
                Some(settings) => vars.extend(settings.into_iter().map(|(k, v)| (k.to_owned(), v))),
                None => {
                    vars.insert("AzureWebJobsStorage".into(), azure_test_connection_string());
                }
            }
            // A work queue of its own: each app runs on its own clock.
            vars.insert(
                "FILE_APPROVER_WORK_QUEUE".into(),
                format!("work-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
            );
        }
        // Under the host the embedded store is only ever an explicit choice.
        Backend::Embedded => {
            vars.insert("FILE_APPROVER_STORAGE".into(), "embedded".into());
        }
    }
    for (name, value) in extra {
        vars.insert(name.to_owned(), value);
    }
    let settings = Settings::from_vars(&vars).expect("test settings");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let clock = ManualClock::new(Utc::now());
    let mut faults = None;
    let requests = count_requests.then(|| RequestCounter::new(BlobRequestModel::Calls));
    let counter = requests.clone();
    let app = Application::build_with_store_layer(
        settings,
        listener,
        Arc::new(clock.clone()),
        |store: Arc<dyn Storage>| -> Arc<dyn Storage> {
            let store: Arc<dyn Storage> = match &counter {
                Some(counter) => counter.wrap(store),
                None => store,
            };
            if with_faults {
                let faulty = FaultyStore::new(store);
                faults = Some(faulty.clone());
                faulty
            } else {
                store
            }
        },
    )
    .await
    .expect("app builds");
    let address = format!("http://{}", app.local_addr().expect("addr"));
    let state = app.state().clone();
    let driver = app.driver().clone();
    tokio::spawn(app.run_until_stopped());
    Some(TestApp {
        faults,
        requests,
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        state,
        driver,
        clock,
        _dir: dir,
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn upload(&self, name: &str, bytes: &[u8], content_type: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/files?name={}", urlencode(name))))
            .header("Content-Type", content_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("upload request")
    }

    /// Uploads [`PLAIN_BYTES`] as the holder of `token` (who becomes its uploader) and returns
    /// the new file's id.
    pub async fn upload_as(&self, token: &str) -> String {
        let response = self
            .client
            .post(self.url("/api/files?name=people.txt"))
            .header("Content-Type", "text/plain")
            .bearer_auth(token)
            .body(PLAIN_BYTES)
            .send()
            .await
            .expect("upload request");
        assert_eq!(response.status(), 201, "upload failed");
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    /// Uploads and returns the new file's id.
    pub async fn upload_ok(&self, name: &str, bytes: &[u8]) -> String {
        let response = self.upload(name, bytes, "text/plain").await;
        assert_eq!(response.status(), 201, "upload failed");
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    pub async fn approve(
        &self,
        id: &str,
        stage: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(&format!("/api/files/{id}/approvals/{stage}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        request.send().await.expect("approve request")
    }

    /// A decision that must be recorded (202), as the holder of `token`; on anything else the
    /// failure shows the answer.
    pub async fn approve_ok(&self, id: &str, stage: &str, token: &str) {
        let response = self.approve(id, stage, Some(token), None).await;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 202, "approving the {stage} of {id}: {body}");
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("get")
    }

    /// Uploads `bytes` as `text/plain` named `name`, as the holder of `token`, and returns the
    /// new file's id. Under the host (`mode`), the blob trigger's invocation follows, as the
    /// host would send it.
    pub async fn upload_by(
        &self,
        token: &str,
        mode: Mode,
        name: &str,
        bytes: &'static [u8],
    ) -> String {
        let response = self
            .client
            .post(self.url(&format!("/api/files?name={}", urlencode(name))))
            .header("Content-Type", "text/plain")
            .bearer_auth(token)
            .body(bytes)
            .send()
            .await
            .expect("upload request");
        assert_eq!(response.status(), 201, "uploading {name}");
        let id = response.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        if mode == Mode::CustomHandler {
            let record = crate::host_protocol::record_binding(self, &id).await;
            let trigger = crate::host_protocol::blob_trigger_payload(&id, bytes, record);
            crate::host_protocol::invoke_ok(self, trigger).await;
        }
        id
    }

    /// `GET path` as the holder of `token`, or with no identity at all.
    pub async fn get_as(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("get")
    }

    /// `POST path` with a JSON body, as the holder of `token`, or with no identity at all.
    pub async fn post_json_as(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("post")
    }

    /// A change request on `stage` by the holder of `token`, with its reason `why`, that must be
    /// recorded (202); the file's status after it.
    pub async fn ask_changes(&self, id: &str, stage: &str, token: &str, why: &str) -> Value {
        let response = self
            .client
            .post(self.url(&format!("/api/files/{id}/approvals/{stage}")))
            .bearer_auth(token)
            .json(&serde_json::json!({"decision": "requestChanges", "comment": why}))
            .send()
            .await
            .expect("change request");
        assert_eq!(response.status(), 202, "asking for changes to {id}");
        response.json().await.expect("json")
    }

    /// A file's history as the API tells it: its steps, oldest first.
    pub async fn steps(&self, id: &str) -> Vec<Value> {
        let response = self.get(&format!("/api/files/{id}/history")).await;
        assert_eq!(response.status(), 200);
        let history: Value = response.json().await.expect("json");
        history["steps"].as_array().expect("steps").clone()
    }

    /// A file's preview, asked for by the reviewer `token` names.
    pub async fn preview(&self, id: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/files/{id}/preview")))
            .bearer_auth(token)
            .send()
            .await
            .expect("preview")
    }

    pub async fn status(&self, id: &str) -> Value {
        let response = self.get(&format!("/api/files/{id}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// The file's workflow history, as the engine keeps it.
    pub async fn history(&self, id: &str) -> Vec<file_approver::engine::HistoryEvent> {
        self.state
            .files
            .engine()
            .status(id, true)
            .await
            .expect("status")
            .expect("an instance")
            .history
            .unwrap_or_default()
    }

    /// Runs the work queue until nothing visible is left (what the work function or local
    /// mode's driver would do; no sleeping).
    pub async fn idle(&self) {
        self.driver.drain().await;
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Asserts an error response: status, JSON shape and stable code. Returns the error object.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let actual = response.status().as_u16();
    if actual != status {
        let body = response.text().await.unwrap_or_default();
        panic!("expected status {status} ({code}), got {actual}: {body}");
    }
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "not JSON: {content_type}"
    );
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"].is_string(), "body: {body}");
    body["error"].clone()
}

/// `request.refused(400, "InvalidBody")`: sends a request (or awaits a response on its way) and
/// asserts it was refused with that status and code ([`assert_error`]); the error object back.
pub trait Refused {
    fn refused(self, status: u16, code: &str) -> impl std::future::Future<Output = Value>;
}

impl Refused for reqwest::RequestBuilder {
    async fn refused(self, status: u16, code: &str) -> Value {
        assert_error(
            self.send().await.expect("the request is sent"),
            status,
            code,
        )
        .await
    }
}

/// The same on a response still to come (`app.get(path).refused(…)`).
pub trait RefusedResponse {
    fn refused(self, status: u16, code: &str) -> impl std::future::Future<Output = Value>;
}

impl<F: std::future::Future<Output = reqwest::Response>> RefusedResponse for F {
    async fn refused(self, status: u16, code: &str) -> Value {
        assert_error(self.await, status, code).await
    }
}

/// One test per backend for each listed `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Embedded).await
                }
            )*
        }
        mod azure {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    azure_tests_skipped,
                    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
                )]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Azure).await
                }
            )*
        }
    };
}

impl TestApp {
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use file_approver::clock::Clock;
        self.clock.now()
    }
}

/// An Azurite of this test's own (`store::testing::PrivateAzurite`), so the test can freeze it
/// without stalling every other test; its data lives in a temporary directory.
pub struct OwnAzurite {
    pub azurite: file_approver::store::testing::PrivateAzurite,
    _dir: tempfile::TempDir,
}

impl OwnAzurite {
    pub async fn start() -> OwnAzurite {
        use file_approver::store::testing::PrivateAzurite;
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = PrivateAzurite::bin_in(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
        let path = dir.path().to_owned();
        let azurite = tokio::task::spawn_blocking(move || PrivateAzurite::start(&bin, &path))
            .await
            .expect("the start task")
            .expect("Azurite starts (scripts/test installs it)");
        OwnAzurite { azurite, _dir: dir }
    }
}

/// Lets the test's clock pass `minutes` and runs what came due. The embedded queue follows the
/// test's clock; Azure's keeps the service's time, so there the instance's timers are delivered
/// by hand, as the queue would once they are due (the engine fires only what is due by the
/// test's clock).
pub async fn pass_minutes(app: &TestApp, id: &str, backend: Backend, minutes: i64) {
    app.clock.advance(chrono::Duration::minutes(minutes));
    if backend == Backend::Azure {
        let engine = app.state.files.engine();
        let status = engine.status(id, true).await.unwrap().unwrap();
        for event in status.history.unwrap_or_default() {
            if let file_approver::engine::EventKind::TimerCreated { fire_at } = event.kind {
                let message = file_approver::engine::WorkMessage::Timer {
                    instance: id.to_owned(),
                    timer: event.event_id,
                    fire_at,
                };
                app.state
                    .files
                    .store()
                    .enqueue(engine.work_queue(), &message.to_text(), Default::default())
                    .await
                    .unwrap();
            }
        }
    }
    app.idle().await;
}
