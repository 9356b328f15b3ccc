//! The command-line client (`file-approver`) against the real app: the `handler` binary in
//! local mode as a child process, on the embedded store and on Azure Storage (Azurite via
//! `scripts/test`), driven exactly as a person or a script would run the client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use file_approver::store::conformance::azure_test_connection_string;
use serde_json::Value;
use sha2::{Digest, Sha256};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";
const UMA: &str = "uma-uploader-token-0123456";

#[derive(Debug, Clone, Copy)]
enum Backend {
    Embedded,
    Azure,
}

/// The app as a child process, and a folder of the test's own for files and journals.
struct App {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    backend: Backend,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(backend: Backend) -> App {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_handler"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env(
            "FILE_APPROVER_REVIEWERS",
            format!("alice:{ALICE},bob:{BOB}"),
        )
        .env("FILE_APPROVER_UPLOADERS", format!("uma:{UMA}"))
        .env("FILE_APPROVER_DATA_DIR", dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Backend::Azure = backend {
        // Its own work queue: other tests' apps on the same Azurite do not take its work.
        let queue = format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        command
            .env("AzureWebJobsStorage", azure_test_connection_string())
            .env("FILE_APPROVER_WORK_QUEUE", queue);
    }
    let child = command.spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the app did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    App {
        child,
        url,
        dir,
        backend,
    }
}

impl App {
    /// The client, as a person with `token` runs it, in the test's folder.
    fn cli(&self, token: Option<&str>) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_file-approver"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FILE_APPROVER_URL", &self.url)
            .env("FILE_APPROVER_CACHE_DIR", self.dir.path().join("cache"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        if let Some(token) = token {
            command.env("FILE_APPROVER_TOKEN", token);
        }
        command
    }

    fn run(&self, token: Option<&str>, args: &[&str]) -> Output {
        self.cli(token).args(args).output().unwrap()
    }

    /// Runs with `--json` and expects success: the JSON it printed.
    fn json(&self, token: Option<&str>, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(token, &all);
        assert!(
            output.status.success(),
            "{args:?}: exit {:?}\nstdout: {}\nstderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn upload(&self, path: &Path) -> String {
        let out = self.json(Some(UMA), &["upload", path.to_str().unwrap()]);
        out["file"]["id"].as_str().unwrap().to_owned()
    }

    /// Both approvals, by two reviewers (four eyes), and the analysis between them.
    fn approve_both(&self, id: &str) {
        self.json(Some(ALICE), &["approve", id, "upload"]);
        self.json(
            None,
            &[
                "wait",
                id,
                "--until",
                "AwaitingDownloadApproval",
                "--timeout",
                "60",
            ],
        );
        self.json(Some(BOB), &["approve", id, "download"]);
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Bytes that differ from block to block (a repeated pattern would hide a block sent twice or
/// out of place).
fn content(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Backend::Embedded)
                }
            )*
        }
        mod azure {
            $(
                #[test]
                #[cfg_attr(
                    azure_tests_skipped,
                    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
                )]
                fn $name() {
                    super::$name(super::Backend::Azure)
                }
            )*
        }
    };
}

on_both_stores!(
    the_golden_path_ends_in_a_verified_download,
    an_interrupted_large_upload_resumes_sending_only_what_is_missing,
    a_download_resumes_from_a_partial_file,
    a_revoked_file_can_no_longer_be_downloaded,
    changes_requested_then_a_new_version_from_the_command_line,
    approved_bytes_changed_in_storage_never_reach_the_output,
    refusals_unknown_files_and_a_server_that_is_down_have_their_exit_codes,
);

fn the_golden_path_ends_in_a_verified_download(backend: Backend) {
    let app = start(backend);
    let report = b"quarterly numbers\nrevenue up\n";
    let path = app.file("report.txt", report);
    let id = app.upload(&path);

    let status = app.json(None, &["status", &id]);
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    assert_eq!(status["uploader"]["name"], "uma");
    // The server tells each caller what they may do; the words say it too.
    let words = app.run(Some(UMA), &["status", &id]);
    let words = String::from_utf8(words.stdout).unwrap();
    assert!(words.contains("  you may   withdraw\n"), "{words}");
    assert!(
        words.contains("  not you   approveUpload: uma may upload but not review"),
        "{words}"
    );
    let inbox = app.json(Some(ALICE), &["inbox"]);
    assert!(
        inbox["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == id.as_str()),
        "{inbox}"
    );
    app.approve_both(&id);
    let approved = app.json(None, &["wait", &id, "--timeout", "60"]);
    assert_eq!(approved["stage"], "Approved");

    let done = app.json(None, &["download", &id, "-o", "fetched.txt"]);
    assert_eq!(done["sha256"], sha256(report));
    assert_eq!(
        std::fs::read(app.dir.path().join("fetched.txt")).unwrap(),
        report
    );

    let history = app.json(None, &["history", &id]);
    let steps: Vec<&str> = history["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(steps.starts_with(&["uploaded", "decided"]), "{steps:?}");
    assert!(steps.contains(&"linkIssued"), "{steps:?}");

    // For people: the status in words, the scan's verdict among them.
    let words = app.run(None, &["status", &id]);
    assert!(words.status.success());
    let words = String::from_utf8(words.stdout).unwrap();
    assert!(
        words.contains("scan      notScanned (no scanner is configured)"),
        "{words}"
    );
    // The id alone from an upload, words from a download.
    let second = app.file("second.txt", b"more");
    let printed = app.run(Some(UMA), &["upload", second.to_str().unwrap()]);
    assert!(printed.status.success());
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(uuid::Uuid::parse_str(printed.trim()).is_ok(), "{printed}");
    // A rejection carries its reason into the history.
    let rejected = app.json(
        Some(ALICE),
        &[
            "reject",
            printed.trim(),
            "upload",
            "--comment",
            "wrong quarter",
        ],
    );
    assert_eq!(rejected["stage"], "Rejected");
    let history = app.json(None, &["history", printed.trim()]);
    assert!(history.to_string().contains("wrong quarter"), "{history}");
    let words = app.run(None, &["download", &id, "-o", "fetched/"]);
    assert!(String::from_utf8_lossy(&words.stdout).contains("verified"));
    assert_eq!(
        std::fs::read(app.dir.path().join("fetched/report.txt")).unwrap(),
        report
    );
}

fn an_interrupted_large_upload_resumes_sending_only_what_is_missing(backend: Backend) {
    let app = start(backend);
    let bytes = content(200 * 1024 * 1024 + 12_345);
    let path = app.file("large.bin", &bytes);
    let journals = app.dir.path().join("cache").join("uploads");

    // The first run is killed (SIGKILL: no chance to tidy up) once some blocks are stored.
    let mut first = app
        .cli(Some(UMA))
        .args(["--json", "upload", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stored = std::fs::read_dir(&journals)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|text| serde_json::from_str::<Value>(&text).ok())
            .map(|journal| journal["done"].as_array().map_or(0, Vec::len))
            .max()
            .unwrap_or(0);
        if stored >= 2 {
            break;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "the upload finished before it could be interrupted"
        );
        assert!(Instant::now() < deadline, "no block was stored");
        std::thread::sleep(Duration::from_millis(2));
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let out = app.json(Some(UMA), &["upload", path.to_str().unwrap()]);
    let sent = out["upload"]["bytesSent"].as_u64().unwrap();
    assert_eq!(out["upload"]["route"], "direct");
    assert!(
        out["upload"]["blocksResumed"].as_u64().unwrap() >= 2,
        "{out}"
    );
    assert!(sent < bytes.len() as u64, "sent {sent} of {}", bytes.len());
    let id = out["file"]["id"].as_str().unwrap().to_owned();
    assert_eq!(out["file"]["size"], bytes.len());

    // What arrived is the file, whole and in order.
    assert_eq!(stored_blob_sha256(&app, "uploads", &id), sha256(&bytes));
    // The journal is gone once the upload is complete.
    let left = std::fs::read_dir(&journals).unwrap().count();
    assert_eq!(left, 0);
}

fn changes_requested_then_a_new_version_from_the_command_line(backend: Backend) {
    let app = start(backend);
    let id = app.upload(&app.file("plan.txt", b"plan, first draft\n"));
    let asked = app.json(
        Some(ALICE),
        &[
            "request-changes",
            &id,
            "upload",
            "--comment",
            "add the timeline",
        ],
    );
    assert_eq!(asked["stage"], "ChangesRequested");
    let second = app.file("plan-2.txt", b"plan, second draft, with the timeline\n");
    let sent = app.json(
        Some(UMA),
        &[
            "new-version",
            &id,
            second.to_str().unwrap(),
            "--type",
            "text/plain",
        ],
    );
    assert_eq!(sent["version"], 2);
    assert_eq!(sent["contentType"], "text/plain");
    // Once the version is in, another is refused, in JSON, with the API's code.
    let output = app.run(
        Some(ALICE),
        &["--json", "new-version", &id, second.to_str().unwrap()],
    );
    assert!(!output.status.success());
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["code"], "WrongStage");

    // A decision on the version the reviewer saw, once another is under review, is refused.
    let stale = app.run(
        Some(ALICE),
        &["--json", "approve", &id, "upload", "--of-version", "1"],
    );
    assert!(!stale.status.success());
    let error: Value = serde_json::from_slice(&stale.stdout).unwrap();
    assert_eq!(error["error"]["code"], "WrongStage", "{error}");
    let approved = app.json(
        Some(ALICE),
        &["approve", &id, "upload", "--of-version", "2"],
    );
    assert_eq!(approved["version"], 2);
    assert_eq!(approved["approvals"].as_array().unwrap().len(), 1);
}

fn a_revoked_file_can_no_longer_be_downloaded(backend: Backend) {
    let app = start(backend);
    let id = app.upload(&app.file("memo.txt", b"for the board only\n"));
    app.approve_both(&id);
    app.json(None, &["download", &id, "-o", "memo.out"]);
    let refused = app.run(Some(ALICE), &["--json", "revoke", &id]);
    assert!(
        !refused.status.success(),
        "a reason is required: {refused:?}"
    );
    let revoked = app.json(
        Some(ALICE),
        &["revoke", &id, "--comment", "sent before the board met"],
    );
    assert_eq!(revoked["stage"], "Revoked");
    let output = app.run(None, &["--json", "download", &id, "-o", "again.out"]);
    assert!(!output.status.success());
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["code"], "NotApproved");
    assert!(!app.dir.path().join("again.out").exists());
}

fn a_download_resumes_from_a_partial_file(backend: Backend) {
    let app = start(backend);
    let bytes = content(3 * 1024 * 1024 + 7);
    let id = app.upload(&app.file("data.bin", &bytes));
    app.approve_both(&id);
    // An earlier run stopped a third of the way in.
    let third = bytes.len() / 3;
    app.file("data.out.part", &bytes[..third]);
    let done = app.json(None, &["download", &id, "-o", "data.out"]);
    assert_eq!(done["bytesResumed"], third);
    assert_eq!(done["bytesReceived"], bytes.len() - third);
    assert!(std::fs::read(app.dir.path().join("data.out")).unwrap() == bytes);
    assert!(!app.dir.path().join("data.out.part").exists());
}

fn approved_bytes_changed_in_storage_never_reach_the_output(backend: Backend) {
    let app = start(backend);
    let bytes = content(64 * 1024);
    let id = app.upload(&app.file("ledger.bin", &bytes));
    app.approve_both(&id);
    // Somebody with access to the storage changes the approved bytes afterwards.
    let mut changed = bytes.clone();
    changed[1000] ^= 0xff;
    match app.backend {
        Backend::Embedded => {
            // In place, on disk: the pinned snapshot shares the file's inode.
            let blob = app.dir.path().join("data/blobs/files").join(&id);
            std::fs::write(&blob, &changed).unwrap();
        }
        Backend::Azure => {
            // Through the service the blob can be replaced, but never its snapshot: the
            // download still gives the approved bytes.
            overwrite_azure_blob(&id, changed.clone());
            let done = app.json(None, &["download", &id, "-o", "ledger.kept"]);
            assert_eq!(done["bytesReceived"], bytes.len());
            assert!(std::fs::read(app.dir.path().join("ledger.kept")).unwrap() == bytes);
            // A snapshot is immutable: the test can only corrupt it in Azurite's own files.
            return;
        }
    }
    let output = app.run(None, &["--json", "download", &id, "-o", "ledger.out"]);
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    let error: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["code"], "IntegrityCheckFailed");
    assert!(!app.dir.path().join("ledger.out").exists());
    assert!(!app.dir.path().join("ledger.out.part").exists());
}

fn stored_blob_sha256(app: &App, container: &str, id: &str) -> String {
    match app.backend {
        Backend::Embedded => sha256(
            &std::fs::read(app.dir.path().join("data/blobs").join(container).join(id)).unwrap(),
        ),
        Backend::Azure => {
            use file_approver::store::azure::AzureStore;
            use file_approver::store::Storage;
            use futures::TryStreamExt;
            let store =
                AzureStore::from_connection_string(&azure_test_connection_string()).unwrap();
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let read = store.get_blob(container, id, None).await.unwrap();
                let mut hasher = Sha256::new();
                let mut body = read.body;
                while let Some(chunk) = body.try_next().await.unwrap() {
                    hasher.update(&chunk);
                }
                hex::encode(hasher.finalize())
            })
        }
    }
}

fn overwrite_azure_blob(id: &str, bytes: Vec<u8>) {
    use file_approver::store::azure::AzureStore;
    use file_approver::store::{PutBlobOptions, Storage};
    let store = AzureStore::from_connection_string(&azure_test_connection_string()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let body = futures::stream::iter([Ok::<_, file_approver::store::BoxError>(
            bytes::Bytes::from(bytes),
        )]);
        store
            .put_blob(
                "files",
                id,
                Box::pin(body),
                &PutBlobOptions {
                    content_type: "application/octet-stream".into(),
                    max_bytes: None,
                },
            )
            .await
            .unwrap();
    });
}

fn refusals_unknown_files_and_a_server_that_is_down_have_their_exit_codes(backend: Backend) {
    let app = start(backend);
    let id = app.upload(&app.file("a.txt", b"a"));
    let code = |output: Output| output.status.code();

    // Refused: a wrong token (401), the uploader deciding (403), the wrong stage (409).
    assert_eq!(
        code(app.run(Some("wrong-token-000000000"), &["approve", &id, "upload"])),
        Some(3)
    );
    assert_eq!(
        code(app.run(Some(UMA), &["approve", &id, "upload"])),
        Some(3)
    );
    assert_eq!(
        code(app.run(Some(ALICE), &["approve", &id, "download"])),
        Some(3)
    );
    let refused = app.run(Some(ALICE), &["--json", "approve", &id, "download"]);
    let error: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(error["error"]["code"], "WrongStage");
    // Not found, and not an id at all.
    let unknown = "3f1c9a4e-0b6d-4c1e-9a51-2f8e7d6c5b4a";
    assert_eq!(code(app.run(None, &["status", unknown])), Some(4));
    assert_eq!(code(app.run(None, &["status", "not-an-id"])), Some(3));
    // Not approved yet.
    assert_eq!(code(app.run(None, &["download", &id])), Some(5));
    // A wait that runs out.
    assert_eq!(
        code(app.run(
            None,
            &["wait", &id, "--until", "Approved", "--timeout", "1"]
        )),
        Some(8)
    );
    // Nothing listening: a network failure, said in words, without a stack trace.
    let down = app
        .cli(None)
        .env(
            "FILE_APPROVER_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .args(["status", &id])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.starts_with("file-approver: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // A command line that is wrong.
    assert_eq!(code(app.run(None, &["approve", &id, "sideways"])), Some(2));
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let output = Command::new(env!("CARGO_BIN_EXE_file-approver"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for word in [
        "upload",
        "status",
        "wait",
        "inbox",
        "approve",
        "reject",
        "history",
        "download",
        "completions",
        "Exit codes",
        "FILE_APPROVER_URL",
        "FILE_APPROVER_TOKEN",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
    let bash = Command::new(env!("CARGO_BIN_EXE_file-approver"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bash.stdout).contains("file-approver"));
}
