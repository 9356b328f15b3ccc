//! The app on a storage account without keys, as it runs on Azure with a managed identity:
//! `AzureWebJobsStorage__*` service URIs, tokens from the platform's identity endpoint, links
//! signed as user-delegation SAS. Each test has an Azurite of its own over https with
//! `--oauth basic` (which checks every token's issuer, audience and lifetime) and a stand-in
//! token endpoint whose answers the test changes.

use std::time::Duration;

use file_approver::store::azure::AzureStore;
use file_approver::store::testing::{KeylessAzurite, PrivateAzurite, Tokens};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{assert_error, spawn_app_with, Backend, Mode, Options, TestApp, ALICE, BOB};

/// Inside the app's five-minute renewal margin: every request fetches a new token.
const SHORT_LIVED: Tokens = Tokens::Valid {
    lifetime: Duration::from_secs(4 * 60),
};

/// An Azurite of this test's own over https with OAuth, and its token endpoint; the directory
/// holds Azurite's data and certificate.
async fn keyless_azurite() -> (KeylessAzurite, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bin = PrivateAzurite::bin_in(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    let keyless = KeylessAzurite::start(&bin, dir.path())
        .await
        .expect("a keyless Azurite");
    (keyless, dir)
}

async fn keyless_app(tokens: Tokens) -> (TestApp, KeylessAzurite, tempfile::TempDir) {
    let (keyless, dir) = keyless_azurite().await;
    keyless.tokens.issue(tokens);
    let app = spawn_app_with(Options {
        backend: Backend::Azure,
        mode: Mode::Local,
        storage_settings: Some(keyless.app_settings()),
        ..Options::default()
    })
    .await
    .expect("the app starts on the keyless account");
    (app, keyless, dir)
}

macro_rules! keyless_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                azure_tests_skipped,
                ignore = "needs Azurite: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test installs Azurite and sets it)"
            )]
            async fn $name() {
                super::$name().await
            }
        )+
    };
}

pub mod tests {
    keyless_tests!(
        a_file_goes_its_whole_way_on_an_account_without_keys,
        storage_tokens_are_cached_and_renewed_before_they_expire,
        a_refused_or_missing_token_answers_503_and_the_next_good_one_recovers,
        the_cause_of_a_storage_outage_names_the_token_problem,
        a_user_assigned_identity_is_asked_for_by_its_client_id,
    );
}

/// Upload, both approvals, analysis and a download link that a plain HTTP client can use and
/// cannot write through; an upload URL that takes a file. All with tokens, no key anywhere.
pub async fn a_file_goes_its_whole_way_on_an_account_without_keys() {
    let (app, keyless, _dir) = keyless_app(Tokens::Valid {
        lifetime: Duration::from_secs(3600),
    })
    .await;
    let bytes = b"signed off by nobody's key\n";
    let id = app.upload_ok("keyless.txt", bytes).await;
    app.approve_ok(&id, "upload", ALICE).await;
    app.idle().await;
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingDownloadApproval");
    assert_eq!(
        status["analysis"]["sha256"],
        hex::encode(Sha256::digest(bytes))
    );
    app.approve_ok(&id, "download", BOB).await;
    let download: Value = app
        .get(&format!("/api/files/{id}/download"))
        .await
        .json()
        .await
        .unwrap();
    // The app's link leads to a user-delegation SAS for the pinned snapshot: the lent key's
    // fields, no account key behind it.
    let link = download["downloadUrl"].as_str().unwrap();
    let followed = app.client.get(link).send().await.unwrap();
    assert_eq!(followed.status(), 307);
    let url = followed.headers()["location"].to_str().unwrap().to_owned();
    let url = url.as_str();
    for field in [
        "skoid=",
        "sktid=",
        "skt=",
        "ske=",
        "sks=b",
        "skv=",
        "sp=r",
        "sr=bs",
        "snapshot=",
    ] {
        assert!(url.contains(field), "{field} missing from {url}");
    }
    let http = keyless.http_client();
    let fetched = http.get(url).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert!(fetched.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("keyless.txt"));
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), bytes);
    let write = http
        .put(url)
        .header("x-ms-blob-type", "BlockBlob")
        .body("overwritten")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403, "a read link must refuse writes");

    // An upload URL, signed the same way, takes a file.
    let ticket: Value = app
        .client
        .post(app.url("/api/files/uploads"))
        .json(&json!({"name": "direct.bin", "size": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload_url = ticket["uploadUrl"].as_str().unwrap();
    assert!(upload_url.contains("skoid=") && upload_url.contains("sp=cw"));
    let put = http
        .put(upload_url)
        .header("x-ms-blob-type", "BlockBlob")
        .body(&b"12345"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let id = ticket["id"].as_str().unwrap();
    let status: Value = app
        .client
        .post(app.url(&format!("/api/files/{id}/complete")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["stage"], "AwaitingUploadApproval");
    assert_eq!(status["size"], 5);
    assert!(keyless.tokens.client_ids().iter().all(Option::is_none));
}

/// A token is asked for once and reused while it has more than five minutes left; one with
/// less is replaced before a request goes out with it.
pub async fn storage_tokens_are_cached_and_renewed_before_they_expire() {
    let (app, keyless, _dir) = keyless_app(SHORT_LIVED).await;
    let before = keyless.tokens.issued();
    let id = app.upload_ok("renewed.txt", b"x").await;
    app.status(&id).await;
    let renewals = keyless.tokens.issued() - before;
    assert!(
        renewals >= 2,
        "tokens with under five minutes left must be renewed, {renewals} fetched"
    );

    keyless.tokens.issue(Tokens::Valid {
        lifetime: Duration::from_secs(3600),
    });
    app.status(&id).await;
    let cached_from = keyless.tokens.issued();
    for _ in 0..5 {
        app.status(&id).await;
    }
    app.upload_ok("cached.txt", b"y").await;
    assert_eq!(
        keyless.tokens.issued(),
        cached_from,
        "an hour-long token serves every request"
    );
}

/// Expired tokens, tokens for another resource and an endpoint that fails each make a request
/// answer 503 `StorageUnavailable` (never 500), with the cause in the log; once the endpoint
/// hands out good tokens again the next request works, without a restart. While the current
/// token still has time left, a failing endpoint costs nothing.
pub async fn a_refused_or_missing_token_answers_503_and_the_next_good_one_recovers() {
    let (app, keyless, _dir) = keyless_app(SHORT_LIVED).await;
    let id = app.upload_ok("kept.txt", b"kept").await;
    let status_path = format!("/api/files/{id}");
    let unavailable = |bad: Tokens| {
        let app = &app;
        let path = status_path.clone();
        async move {
            let response = app.get(&path).await;
            let retry_after = response.headers().get("retry-after").cloned();
            assert_error(response, 503, "StorageUnavailable").await;
            assert_eq!(retry_after.expect("Retry-After"), "5", "{bad:?}");
        }
    };

    // The current token is still valid for minutes: the endpoint's failure is not felt.
    keyless.tokens.issue(Tokens::Failing { status: 500 });
    assert_eq!(app.get(&status_path).await.status(), 200);

    for bad in [Tokens::Expired, Tokens::WrongAudience] {
        keyless.tokens.issue(bad.clone());
        unavailable(bad.clone()).await;
        keyless.tokens.issue(SHORT_LIVED);
        assert_eq!(app.get(&status_path).await.status(), 200, "after {bad:?}");
    }
    for status in [500, 400] {
        // A refused token is forgotten, so nothing is left to fall back on...
        keyless.tokens.issue(Tokens::Expired);
        unavailable(Tokens::Expired).await;
        // ...and an endpoint that fails leaves the request without a token.
        let bad = Tokens::Failing { status };
        keyless.tokens.issue(bad.clone());
        unavailable(bad.clone()).await;
        keyless.tokens.issue(SHORT_LIVED);
        assert_eq!(app.get(&status_path).await.status(), 200, "after {bad:?}");
    }
    // An hour-long token the service refuses is forgotten at once, not kept for the hour.
    keyless.tokens.issue(Tokens::Expired);
    unavailable(Tokens::Expired).await;
    keyless.tokens.issue(Tokens::Valid {
        lifetime: Duration::from_secs(3600),
    });
    assert_eq!(app.get(&status_path).await.status(), 200);
}

/// What the 503's log line carries (the error's chain): the service's refusal code, or the
/// identity endpoint's failure, never the token.
pub async fn the_cause_of_a_storage_outage_names_the_token_problem() {
    use file_approver::store::{Storage, StoreError};
    let (keyless, _dir) = keyless_azurite().await;
    let store = AzureStore::with_identity(&keyless.connection(), &keyless.options()).unwrap();
    let chain = |e: StoreError| {
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    };
    keyless.tokens.issue(Tokens::Expired);
    let cause = chain(store.ensure_table("refused").await.unwrap_err());
    assert!(cause.contains("AuthenticationFailed"), "{cause}");
    assert!(
        !cause.contains("eyJ"),
        "a token leaked into the log: {cause}"
    );

    keyless.tokens.issue(Tokens::Failing { status: 500 });
    let cause = chain(store.ensure_table("refused").await.unwrap_err());
    assert!(cause.contains("managed-identity endpoint"), "{cause}");
    assert!(cause.contains("HTTP 500"), "{cause}");
    assert!(!cause.contains(&keyless.tokens.secret), "{cause}");
}

/// `AzureWebJobsStorage__clientId` picks a user-assigned identity: the endpoint is asked for
/// that one's token.
pub async fn a_user_assigned_identity_is_asked_for_by_its_client_id() {
    use file_approver::store::azure::ManagedIdentity;
    use file_approver::store::Storage;
    let (keyless, _dir) = keyless_azurite().await;
    let mut connection = keyless.connection();
    connection.identity = ManagedIdentity::ClientId("3c9e1f6a-user-assigned".into());
    let store = AzureStore::with_identity(&connection, &keyless.options()).unwrap();
    store.ensure_table("assigned").await.unwrap();
    assert_eq!(
        keyless.tokens.client_ids(),
        vec![Some("3c9e1f6a-user-assigned".to_owned())]
    );
}
