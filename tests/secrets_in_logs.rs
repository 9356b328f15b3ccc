//! Whatever `RUST_LOG` says, no credential reaches a log line: the golden path runs in a real
//! `handler` process at `RUST_LOG=trace`, on each backend, and its whole output is searched for
//! every secret the run used — the storage account key and any SharedKey signature, the link
//! signatures, the reviewers' tokens, the function key, the embedded store's signing key, and
//! on a keyless account the managed identity's tokens and its endpoint's secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use file_approver::store::conformance::azure_test_connection_string;
use serde_json::Value;

const ALICE: &str = "alice-secret-token-7f3a9c1d";
const BOB: &str = "bob-secret-token-2e8b6d0f44";
const FUNCTION_KEY: &str = "function-key-5c9e1a7b3d0f2468";
const SIGNING_KEY: &str = "embedded-signing-key-0123456789abcdef-xyz";
/// Azurite's published development key: what `UseDevelopmentStorage=true` signs with.
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Handler {
    child: Option<Child>,
    base: String,
    out: tempfile::NamedTempFile,
    _dir: tempfile::TempDir,
}

impl Handler {
    async fn start(storage: &[(&str, String)]) -> Handler {
        let dir = tempfile::tempdir().unwrap();
        let out = tempfile::NamedTempFile::new().unwrap();
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_handler"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "trace")
            .env("PORT", port.to_string())
            .env("FILE_APPROVER_DATA_DIR", dir.path())
            .env("FILE_APPROVER_SIGNING_KEY", SIGNING_KEY)
            .env(
                "FILE_APPROVER_REVIEWERS",
                format!("alice:{ALICE},bob:{BOB}"),
            )
            .stdin(Stdio::null())
            .stdout(out.reopen().unwrap())
            .stderr(out.reopen().unwrap());
        for (name, value) in storage {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{base}/")).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "no answer");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Handler {
            child: Some(child),
            base,
            out,
            _dir: dir,
        }
    }

    /// Stops the process and returns everything it wrote.
    fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::read_to_string(self.out.path()).unwrap()
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The golden path, every request carrying the function key as the host's clients do.
/// Returns the secrets it handled besides the fixed ones: the download link's signature.
async fn golden_path(base: &str, link_client: &reqwest::Client) -> Vec<String> {
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{base}{path}");
    let upload: Value = client
        .post(url(&format!(
            "/api/files?name=report.txt&code={FUNCTION_KEY}"
        )))
        .header("x-functions-key", FUNCTION_KEY)
        .body("quarterly numbers\n")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = upload["id"].as_str().unwrap().to_owned();
    for (stage, token) in [("upload", ALICE), ("download", BOB)] {
        // The download approval opens once the analysis is done.
        let started = Instant::now();
        loop {
            let response = client
                .post(url(&format!(
                    "/api/files/{id}/approvals/{stage}?code={FUNCTION_KEY}"
                )))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            if response.status().is_success() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{stage}: {}",
                response.status()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A refused credential is logged with its reason, never with itself.
    let refused = client
        .post(url(&format!("/api/files/{id}/approvals/download")))
        .bearer_auth("wrong-token-but-still-a-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let download: Value = client
        .get(url(&format!(
            "/api/files/{id}/download?code={FUNCTION_KEY}"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = download["downloadUrl"].as_str().unwrap().to_owned();
    let fetched = link_client.get(&link).send().await.unwrap();
    assert_eq!(fetched.status(), 200, "{link}");
    assert_eq!(fetched.text().await.unwrap(), "quarterly numbers\n");
    let signature = url::Url::parse(&link)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned())
        .expect("the link carries a signature");
    vec![
        signature.clone(),
        // as it appears in a URL, percent-encoded
        url::form_urlencoded::byte_serialize(signature.as_bytes()).collect(),
    ]
}

fn assert_no_secret(log: &str, secrets: &[String]) {
    assert!(
        log.lines().count() > 20,
        "the trace log is suspiciously short:\n{log}"
    );
    for secret in secrets {
        assert!(!secret.is_empty());
        if let Some(line) = log.lines().find(|line| line.contains(secret.as_str())) {
            panic!("a secret reached the log:\n{line}");
        }
    }
    // A SharedKey header's value is the account name and an HMAC of the request.
    if let Some(line) = log
        .lines()
        .find(|l| l.contains("SharedKey") || l.to_ascii_lowercase().contains("authorization"))
    {
        panic!("a request's credentials reached the log:\n{line}");
    }
}

fn fixed_secrets() -> Vec<String> {
    [
        ALICE,
        BOB,
        FUNCTION_KEY,
        SIGNING_KEY,
        "wrong-token-but-still-a-secret",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_trace_log_on_the_embedded_store() {
    let handler = Handler::start(&[]).await;
    let mut secrets = fixed_secrets();
    secrets.extend(golden_path(&handler.base, &reqwest::Client::new()).await);
    let log = handler.stop();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "not a trace log"
    );
    assert_no_secret(&log, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn no_secret_reaches_the_trace_log_on_azure_storage() {
    let connection_string = azure_test_connection_string();
    let handler = Handler::start(&[("AzureWebJobsStorage", connection_string.clone())]).await;
    let mut secrets = fixed_secrets();
    secrets.extend(golden_path(&handler.base, &reqwest::Client::new()).await);
    let log = handler.stop();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "not a trace log"
    );
    // The account key, whichever form the connection string gave it in.
    let key = connection_string
        .split(';')
        .find_map(|part| part.strip_prefix("AccountKey="))
        .unwrap_or(DEV_KEY)
        .to_owned();
    secrets.push(key.clone());
    secrets.push(key[..20].to_owned());
    assert_no_secret(&log, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azurite: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test installs Azurite and sets it)"
)]
async fn no_secret_reaches_the_trace_log_on_a_keyless_account() {
    use file_approver::store::testing::{KeylessAzurite, PrivateAzurite};
    let dir = tempfile::tempdir().unwrap();
    let bin = PrivateAzurite::bin_in(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    let keyless = KeylessAzurite::start(&bin, dir.path()).await.unwrap();
    let handler = Handler::start(&keyless.app_settings()).await;
    let mut secrets = fixed_secrets();
    secrets.extend(golden_path(&handler.base, &keyless.http_client()).await);
    let log = handler.stop();
    assert!(keyless.tokens.issued() >= 1, "no token was used");
    secrets.push(keyless.tokens.secret.clone());
    // Every JWT starts with the base64 of `{"`: a token in the log would show it.
    secrets.push("eyJ".to_owned());
    assert_no_secret(&log, &secrets);
}
