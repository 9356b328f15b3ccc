//! The content-safety gate against a real clamd (Debian's, started by each test on a free port
//! with a one-line signature database), on both stores: infected files are blocked before
//! anyone sees them, clean ones go on to review with the scanner's verdict, what cannot be
//! scanned follows the deployment's policy, and a scanner that goes away holds files in
//! `Scanning` instead of letting them through.

use std::io::Write as _;

use base64::Engine as _;
use file_approver::scan::testing::{ClamdOptions, FakeClamd, PrivateClamd, EICAR, EICAR_SIGNATURE};
use file_approver::store::testing::Op;
use serde_json::Value;
use sha2::Digest as _;

use crate::helpers::{
    assert_error, pass_minutes, spawn_app_with, Backend, Mode, Options, TestApp, ALICE,
};

const CLEAN_TEXT: &[u8] = b"quarterly numbers\nrevenue up\nno surprises\n";
/// A 1x1 PNG.
const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// A clamd of the test's own. These tests are ignored unless `FILE_APPROVER_TEST_CLAMD` names
/// one (or under `CI`, where a missing clamd fails them).
async fn clamd(dir: &tempfile::TempDir, options: ClamdOptions) -> PrivateClamd {
    let bin = PrivateClamd::bin().expect("FILE_APPROVER_TEST_CLAMD names the clamd to start");
    PrivateClamd::start(&bin, dir.path(), &options)
        .await
        .expect("a private clamd starts")
}

/// An app scanning with a clamd of its own, and what must outlive the test's use of them.
struct Scanned {
    app: TestApp,
    clamd: PrivateClamd,
    _dir: tempfile::TempDir,
}

async fn scanned_app(backend: Backend, options: ClamdOptions) -> Option<Scanned> {
    scanned_app_with(backend, options, Vec::new()).await
}

/// [`scanned_app`] with more settings.
async fn scanned_app_with(
    backend: Backend,
    options: ClamdOptions,
    mut vars: Vec<(&'static str, String)>,
) -> Option<Scanned> {
    let dir = tempfile::tempdir().unwrap();
    let clamd = clamd(&dir, options).await;
    vars.push(("FILE_APPROVER_CLAMD", clamd.setting()));
    let app = app(backend, vars).await?;
    Some(Scanned {
        app,
        clamd,
        _dir: dir,
    })
}

async fn app(backend: Backend, vars: Vec<(&'static str, String)>) -> Option<TestApp> {
    spawn_app_with(Options {
        backend,
        mode: Mode::Local,
        vars,
        ..Options::default()
    })
    .await
}

fn zip_of(name: &str, bytes: &[u8], password: Option<&str>) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let options = match password {
            Some(password) => options.with_aes_encryption(zip::AesMode::Aes256, password),
            None => options,
        };
        zip.start_file(name, options).expect("a zip entry");
        zip.write_all(bytes).expect("zip bytes");
        zip.finish().expect("a zip");
    }
    out.into_inner()
}

async fn upload(app: &TestApp, name: &str, bytes: &[u8], content_type: &str) -> String {
    let response = app.upload(name, bytes, content_type).await;
    assert_eq!(response.status(), 201, "uploading {name}");
    let body: Value = response.json().await.expect("json");
    body["id"].as_str().expect("id").to_owned()
}

async fn preview(app: &TestApp, id: &str) -> reqwest::Response {
    app.preview(id, ALICE).await
}

fn steps(history: &Value) -> Vec<String> {
    history["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn an_infected_file_is_blocked_before_anyone_sees_it(backend: Backend) {
    // Bound, not `..`: the clamd and its directory must live as long as the test.
    let Some(Scanned {
        app,
        clamd: _clamd,
        _dir,
    }) = scanned_app(backend, ClamdOptions::default()).await
    else {
        return;
    };
    let id = upload(&app, "eicar.com", EICAR, "application/octet-stream").await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Blocked", "{status}");
    assert_eq!(status["runtimeStatus"], "Completed");
    let scan = &status["scan"];
    assert_eq!(scan["verdict"], "malicious");
    assert_eq!(scan["threats"][0], EICAR_SIGNATURE);
    assert_eq!(scan["scanner"]["name"], "clamav");
    assert!(scan["scanner"]["engine"].is_string(), "{scan}");
    assert!(scan["scannedTime"].is_string(), "{scan}");

    // No preview, no decision, no download, no inbox.
    assert_error(preview(&app, &id).await, 409, "WrongStage").await;
    assert_error(
        app.approve(&id, "upload", Some(ALICE), None).await,
        409,
        "WrongStage",
    )
    .await;
    assert_error(
        app.get(&format!("/api/files/{id}/download")).await,
        409,
        "NotApproved",
    )
    .await;
    let inbox: Value = app
        .client
        .get(app.url("/api/files?awaiting=me"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !inbox.to_string().contains(&id),
        "a blocked file is in an inbox: {inbox}"
    );
    // Its bytes are gone, and its history says what was found.
    let bytes = app
        .state
        .files
        .store()
        .blob_properties(file_approver::store::FILES_CONTAINER, &id)
        .await;
    assert!(
        matches!(bytes, Err(file_approver::store::StoreError::NotFound)),
        "{bytes:?}"
    );
    let history: Value = app
        .get(&format!("/api/files/{id}/history"))
        .await
        .json()
        .await
        .unwrap();
    let steps = steps(&history);
    for step in ["scanStarted", "scanned", "bytesRemoved", "finished"] {
        assert!(
            steps.contains(&step.to_owned()),
            "{step} missing: {steps:?}"
        );
    }
}

async fn eicar_inside_a_zip_is_blocked_too(backend: Backend) {
    // Bound, not `..`: the clamd and its directory must live as long as the test.
    let Some(Scanned {
        app,
        clamd: _clamd,
        _dir,
    }) = scanned_app(backend, ClamdOptions::default()).await
    else {
        return;
    };
    let id = upload(
        &app,
        "bundle.zip",
        &zip_of("eicar.com", EICAR, None),
        "application/zip",
    )
    .await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Blocked", "{status}");
    assert_eq!(status["scan"]["threats"][0], EICAR_SIGNATURE);
}

async fn clean_files_go_on_to_review_with_the_scanners_verdict(backend: Backend) {
    // Bound, not `..`: the clamd and its directory must live as long as the test.
    let Some(Scanned {
        app,
        clamd: _clamd,
        _dir,
    }) = scanned_app(backend, ClamdOptions::default()).await
    else {
        return;
    };
    let png = base64::engine::general_purpose::STANDARD
        .decode(PNG_BASE64)
        .unwrap();
    for (name, bytes, content_type) in [
        ("notes.txt", CLEAN_TEXT, "text/plain"),
        ("dot.png", png.as_slice(), "image/png"),
    ] {
        let id = upload(&app, name, bytes, content_type).await;
        app.idle().await;
        let status = app.status(&id).await;
        assert_eq!(
            status["stage"], "AwaitingUploadApproval",
            "{name}: {status}"
        );
        assert_eq!(status["scan"]["verdict"], "clean", "{name}: {status}");
        assert_eq!(status["scan"]["threats"], serde_json::json!([]));
        let shown = preview(&app, &id).await;
        assert_eq!(shown.status(), 200, "{name}");
        // And the rest of the workflow is as before.
        app.approve_ok(&id, "upload", ALICE).await;
        app.idle().await;
        assert_eq!(app.status(&id).await["stage"], "AwaitingDownloadApproval");
    }
}

async fn an_encrypted_archive_is_unscannable_and_blocked_by_default(backend: Backend) {
    // Bound, not `..`: the clamd and its directory must live as long as the test.
    let Some(Scanned {
        app,
        clamd: _clamd,
        _dir,
    }) = scanned_app(backend, ClamdOptions::default()).await
    else {
        return;
    };
    let archive = zip_of("secret.txt", CLEAN_TEXT, Some("hunter2"));
    let id = upload(&app, "secret.zip", &archive, "application/zip").await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Blocked", "{status}");
    assert_eq!(status["scan"]["verdict"], "unscannable");
    assert!(
        status["scan"]["reason"]
            .as_str()
            .unwrap()
            .contains("encrypted"),
        "{status}"
    );
    assert_eq!(status["scan"]["threats"], serde_json::json!([]));
}

async fn with_the_review_policy_an_unscannable_file_goes_to_review_with_its_reason(
    backend: Backend,
) {
    let Some(Scanned {
        app,
        clamd: _clamd,
        _dir,
    }) = scanned_app_with(
        backend,
        ClamdOptions::default(),
        vec![("FILE_APPROVER_SCAN_UNSCANNABLE", "review".into())],
    )
    .await
    else {
        return;
    };
    let archive = zip_of("secret.txt", CLEAN_TEXT, Some("hunter2"));
    let id = upload(&app, "secret.zip", &archive, "application/zip").await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval", "{status}");
    assert_eq!(status["scan"]["verdict"], "unscannable");
    assert!(status["scan"]["reason"]
        .as_str()
        .unwrap()
        .contains("encrypted"));
}

async fn a_file_over_the_scanners_stream_limit_is_unscannable(backend: Backend) {
    let options = ClamdOptions {
        stream_max_length: "1K".into(),
        ..ClamdOptions::default()
    };
    let Some(Scanned {
        app,
        clamd: _clamd,
        _dir,
    }) = scanned_app(backend, options).await
    else {
        return;
    };
    let big = vec![b'a'; 64 * 1024];
    let id = upload(&app, "big.txt", &big, "text/plain").await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Blocked", "{status}");
    assert_eq!(status["scan"]["verdict"], "unscannable");
    assert!(
        status["scan"]["reason"]
            .as_str()
            .unwrap()
            .contains("larger"),
        "{status}"
    );
}

async fn files_wait_in_scanning_while_clamd_is_down_and_go_on_when_it_returns(backend: Backend) {
    let Some(Scanned {
        app,
        mut clamd,
        _dir,
    }) = scanned_app(backend, ClamdOptions::default()).await
    else {
        return;
    };
    clamd.stop().await;
    let clean = upload(&app, "notes.txt", CLEAN_TEXT, "text/plain").await;
    let infected = upload(&app, "eicar.com", EICAR, "application/octet-stream").await;
    app.idle().await;
    for minutes in [1, 2, 4] {
        for id in [&clean, &infected] {
            pass_minutes(&app, id, backend, minutes).await;
            let status = app.status(id).await;
            assert_eq!(status["stage"], "Scanning", "{status}");
            assert_eq!(status["scan"], Value::Null, "{status}");
            // Nobody sees bytes no scanner has seen.
            assert_error(preview(&app, id).await, 409, "WrongStage").await;
        }
    }
    let history: Value = app
        .get(&format!("/api/files/{clean}/history"))
        .await
        .json()
        .await
        .unwrap();
    assert!(steps(&history).contains(&"scanAttemptFailed".to_owned()));

    clamd.resume().await.expect("clamd comes back");
    for _ in 0..3 {
        for id in [&clean, &infected] {
            pass_minutes(&app, id, backend, 5).await;
        }
    }
    let clean = app.status(&clean).await;
    assert_eq!(clean["stage"], "AwaitingUploadApproval", "{clean}");
    assert_eq!(clean["scan"]["verdict"], "clean");
    let infected = app.status(&infected).await;
    assert_eq!(infected["stage"], "Blocked", "{infected}");
}

async fn a_scanner_answering_garbage_never_lets_a_file_through(backend: Backend) {
    let Some(fake) = FakeClamd::start(Some(b"HELLO THERE\0")).await.ok() else {
        return;
    };
    let Some(app) = app(
        backend,
        vec![
            ("FILE_APPROVER_CLAMD", fake.setting()),
            ("FILE_APPROVER_SCAN_TIMEOUT_SECS", "600".into()),
        ],
    )
    .await
    else {
        return;
    };
    let id = upload(&app, "notes.txt", CLEAN_TEXT, "text/plain").await;
    app.idle().await;
    assert_eq!(app.status(&id).await["stage"], "Scanning");
    // Past the ten-minute deadline the file is unscannable, and the default policy blocks it.
    for _ in 0..4 {
        pass_minutes(&app, &id, backend, 5).await;
    }
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Blocked", "{status}");
    assert_eq!(status["scan"]["verdict"], "unscannable");
    let reason = status["scan"]["reason"].as_str().unwrap();
    assert!(reason.contains("no verdict within 10 min"), "{reason}");
    assert!(reason.contains("not a scan result"), "{reason}");
}

/// The scan and the analysis share one read of the bytes: a scanned file's blob is read once
/// on its way to the download stage, and its analysis is there after the upload approval as
/// before.
async fn a_scanned_file_is_read_from_storage_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let clamd = clamd(&dir, ClamdOptions::default()).await;
    let Some(app) = spawn_app_with(Options {
        backend,
        mode: Mode::Local,
        vars: vec![("FILE_APPROVER_CLAMD", clamd.setting())],
        count_requests: true,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let counter = app.requests.clone().expect("counted");
    let id = upload(&app, "notes.txt", CLEAN_TEXT, "text/plain").await;
    app.idle().await;
    assert_eq!(app.status(&id).await["analysis"], Value::Null);
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingDownloadApproval", "{status}");
    assert_eq!(status["analysis"]["size"], CLEAN_TEXT.len());
    assert_eq!(status["analysis"]["lineCount"], 3);
    let reads = counter.snapshot().calls(Op::GetBlob);
    assert_eq!(reads, 1, "the blob was read {reads} times");
    // Its bytes were pinned: nothing asks again whether they are still the ones scanned.
    let looks = counter.snapshot().calls(Op::BlobProperties);
    assert_eq!(looks, 0, "the blob's properties were read {looks} times");
}

/// A file sent through an upload URL may be replaced until the URL expires, but its workflow
/// pinned the bytes when it started: an infected file written afterwards, while the scan may
/// still be running, is never what is scanned, reviewed or analysed.
async fn an_infected_file_written_after_the_start_never_reaches_the_review(backend: Backend) {
    // Bound, not `..`: the clamd and its directory must live as long as the test.
    let Some(Scanned {
        app,
        clamd: _clamd,
        _dir,
    }) = scanned_app(backend, ClamdOptions::default()).await
    else {
        return;
    };
    const FIRST: &[u8] = b"clean words, first version\n";
    let declared = app
        .client
        .post(app.url("/api/files/uploads"))
        .bearer_auth(ALICE)
        .json(&serde_json::json!({"name": "notes.txt", "size": FIRST.len()}))
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 201);
    let ticket: Value = declared.json().await.unwrap();
    let url = ticket["uploadUrl"].as_str().unwrap().to_owned();
    let id = ticket["id"].as_str().unwrap().to_owned();
    let put = |bytes: &'static [u8]| {
        let url = url.clone();
        async move {
            let answer = reqwest::Client::new()
                .put(url)
                .header("x-ms-blob-type", "BlockBlob")
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 201);
        }
    };
    put(FIRST).await;
    let completed = app
        .client
        .post(app.url(&format!("/api/files/{id}/complete")))
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status(), 200);
    put(EICAR).await;
    app.idle().await;
    assert_eq!(app.status(&id).await["scan"]["verdict"], "clean");
    app.approve_ok(&id, "upload", crate::helpers::BOB).await;
    put(EICAR).await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingDownloadApproval", "{status}");
    assert_eq!(
        status["analysis"]["sha256"],
        hex::encode(sha2::Sha256::digest(FIRST))
    );
}

/// A new version is scanned like an upload: one that carries malware is blocked before anyone
/// sees it, whatever its first version was.
async fn an_infected_new_version_is_blocked_too(backend: Backend) {
    let Some(Scanned {
        app,
        clamd: _clamd,
        _dir,
    }) = scanned_app(backend, ClamdOptions::default()).await
    else {
        return;
    };
    let id = app
        .upload_by(ALICE, Mode::Local, "notes.txt", CLEAN_TEXT)
        .await;
    app.idle().await;
    assert_eq!(app.status(&id).await["scan"]["verdict"], "clean");
    app.ask_changes(&id, "upload", crate::helpers::BOB, "add the totals")
        .await;
    let sent = app
        .client
        .post(app.url(&format!("/api/files/{id}/versions")))
        .bearer_auth(ALICE)
        .body(EICAR)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "Blocked", "{status}");
    assert_eq!(status["version"], 2);
    assert_eq!(status["scan"]["threats"][0], EICAR_SIGNATURE);
    assert_error(preview(&app, &id).await, 409, "WrongStage").await;
}

/// A zip's entries, its encrypted ones and its nested archives are in the analysis, read
/// from its central directory (scanned or not).
async fn an_archives_contents_are_listed_for_reviewers(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let clamd = clamd(&dir, ClamdOptions::default()).await;
    for vars in [vec![], vec![("FILE_APPROVER_CLAMD", clamd.setting())]] {
        let scanning = !vars.is_empty();
        let Some(app) = app(
            backend,
            vars.into_iter()
                .chain([("FILE_APPROVER_SCAN_UNSCANNABLE", "review".to_owned())])
                .collect(),
        )
        .await
        else {
            return;
        };
        let mut out = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut out);
            let plain = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            zip.start_file("report.txt", plain).unwrap();
            zip.write_all(CLEAN_TEXT).unwrap();
            zip.start_file("inner.zip", plain).unwrap();
            zip.write_all(&zip_of("a.txt", b"a", None)).unwrap();
            zip.start_file(
                "secret.txt",
                plain.with_aes_encryption(zip::AesMode::Aes256, "hunter2"),
            )
            .unwrap();
            zip.write_all(b"classified").unwrap();
            zip.finish().unwrap();
        }
        let id = upload(&app, "bundle.zip", &out.into_inner(), "application/zip").await;
        app.idle().await;
        app.approve_ok(&id, "upload", ALICE).await;
        app.idle().await;
        let status = app.status(&id).await;
        assert_eq!(status["stage"], "AwaitingDownloadApproval", "{status}");
        let archive = &status["analysis"]["archive"];
        assert_eq!(archive["format"], "zip", "scanning={scanning}: {status}");
        assert_eq!(archive["entryCount"], 3);
        assert_eq!(archive["entries"][0]["name"], "report.txt");
        assert_eq!(archive["entries"][0]["size"], CLEAN_TEXT.len());
        assert_eq!(archive["encryptedEntries"], 1);
        assert_eq!(archive["entries"][2]["encrypted"], true);
        assert_eq!(archive["nestedArchives"], 1);
        assert_eq!(archive["highCompressionRatio"], false);
    }
}

/// Under the Functions host the blob trigger starts the workflow, and the scan runs as queued
/// work like any activity.
async fn under_the_host_the_scan_runs_as_queued_work(backend: Backend) {
    use crate::host_protocol::{blob_trigger_payload, invoke_ok, record_binding};
    let dir = tempfile::tempdir().unwrap();
    let clamd = clamd(&dir, ClamdOptions::default()).await;
    let Some(app) = spawn_app_with(Options {
        backend,
        mode: Mode::CustomHandler,
        vars: vec![("FILE_APPROVER_CLAMD", clamd.setting())],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    for (name, bytes, verdict, stage) in [
        ("notes.txt", CLEAN_TEXT, "clean", "AwaitingUploadApproval"),
        ("eicar.com", EICAR, "malicious", "Blocked"),
    ] {
        let id = upload(&app, name, bytes, "application/octet-stream").await;
        assert_eq!(app.status(&id).await["stage"], "Uploaded");
        let record = record_binding(&app, &id).await;
        invoke_ok(&app, blob_trigger_payload(&id, bytes, record)).await;
        app.idle().await;
        let status = app.status(&id).await;
        assert_eq!(status["stage"], stage, "{name}: {status}");
        assert_eq!(status["scan"]["verdict"], verdict, "{name}");
    }
}

/// With clamd's `AlertEncrypted` off, an encrypted archive passes clamd as clean: the
/// deployment's choice, shown as clamd's verdict, with the archive's facts telling reviewers
/// what is encrypted.
async fn without_clamds_encryption_alert_an_encrypted_archive_passes_as_clean(backend: Backend) {
    let options = ClamdOptions {
        alert_encrypted: false,
        ..ClamdOptions::default()
    };
    let Some(Scanned {
        app,
        clamd: _clamd,
        _dir,
    }) = scanned_app(backend, options).await
    else {
        return;
    };
    let archive = zip_of("secret.txt", CLEAN_TEXT, Some("hunter2"));
    let id = upload(&app, "secret.zip", &archive, "application/zip").await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval", "{status}");
    assert_eq!(status["scan"]["verdict"], "clean");
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(
        status["analysis"]["archive"]["encryptedEntries"], 1,
        "{status}"
    );
}

async fn without_a_scanner_files_are_marked_not_scanned(backend: Backend) {
    let Some(app) = app(backend, Vec::new()).await else {
        return;
    };
    let id = upload(&app, "notes.txt", CLEAN_TEXT, "text/plain").await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    assert_eq!(
        status["scan"],
        serde_json::json!({"verdict": "notScanned", "threats": []})
    );
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                #[cfg_attr(clamd_tests_skipped, ignore = "needs clamd: FILE_APPROVER_TEST_CLAMD is unset (scripts/test sets it)")]
                async fn $name() {
                    super::$name(super::Backend::Embedded).await;
                }
            )*
        }
        mod azure {
            $(
                #[tokio::test]
                #[cfg_attr(any(azure_tests_skipped, clamd_tests_skipped), ignore = "needs Azurite and clamd (scripts/test starts both)")]
                async fn $name() {
                    super::$name(super::Backend::Azure).await;
                }
            )*
        }
    };
}

on_both_stores!(
    an_infected_file_is_blocked_before_anyone_sees_it,
    eicar_inside_a_zip_is_blocked_too,
    clean_files_go_on_to_review_with_the_scanners_verdict,
    an_encrypted_archive_is_unscannable_and_blocked_by_default,
    with_the_review_policy_an_unscannable_file_goes_to_review_with_its_reason,
    a_file_over_the_scanners_stream_limit_is_unscannable,
    files_wait_in_scanning_while_clamd_is_down_and_go_on_when_it_returns,
    a_scanner_answering_garbage_never_lets_a_file_through,
    a_scanned_file_is_read_from_storage_once,
    an_infected_file_written_after_the_start_never_reaches_the_review,
    an_infected_new_version_is_blocked_too,
    an_archives_contents_are_listed_for_reviewers,
    under_the_host_the_scan_runs_as_queued_work,
    without_clamds_encryption_alert_an_encrypted_archive_passes_as_clean,
);

mod unscanned {
    #[tokio::test]
    async fn without_a_scanner_files_are_marked_not_scanned_on_the_embedded_store() {
        super::without_a_scanner_files_are_marked_not_scanned(super::Backend::Embedded).await;
    }

    #[tokio::test]
    #[cfg_attr(azure_tests_skipped, ignore = "needs Azurite (scripts/test starts it)")]
    async fn without_a_scanner_files_are_marked_not_scanned_on_azure() {
        super::without_a_scanner_files_are_marked_not_scanned(super::Backend::Azure).await;
    }
}
