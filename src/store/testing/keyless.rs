//! Keyless storage, for real, on this machine: a private Azurite over https that checks OAuth
//! bearer tokens (`--oauth basic`), and a stand-in for the platform's managed-identity endpoint
//! that hands out tokens the way App Service does (GET with `resource`, `api-version`
//! 2019-08-01, the `X-IDENTITY-HEADER` secret; `access_token` and `expires_on` back). The
//! tests then point the app at both exactly as the platform would: `AzureWebJobsStorage__*`,
//! `IDENTITY_ENDPOINT`, `IDENTITY_HEADER`.
//!
//! Azurite's basic OAuth checks a token's issuer, audience and lifetime, not its signature, so
//! the stand-in's tokens are unsigned JWTs with real claims; what the endpoint hands out can be
//! changed mid-test (expired tokens, a foreign audience, an endpoint that fails).

// Test code (compiled only for tests and `test-support`): a broken harness is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;
use tokio::sync::oneshot;

use super::azurite::{AzuriteError, OAuthHttps, PrivateAzurite};
use crate::store::azure::{AzureOptions, IdentityConnection, IdentityEndpoint, ManagedIdentity};

/// The identity's object and tenant ids, as they appear in its tokens (and so in the
/// user-delegation keys Azurite lends it).
pub const OBJECT_ID: &str = "6f1c2a7e-5b9d-4e0a-9c3f-2d8b7a6e5f41";
pub const TENANT_ID: &str = "0b5e8f3a-1c2d-4e6f-8a9b-7c3d2e1f0a9b";

/// What the endpoint answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tokens {
    /// Good tokens, valid for this long.
    Valid { lifetime: Duration },
    /// Tokens whose lifetime ended a minute ago (the endpoint claims they are good for an hour).
    Expired,
    /// Tokens for another resource than storage.
    WrongAudience,
    /// No token: this HTTP status and an error body.
    Failing { status: u16 },
}

#[derive(Debug)]
struct EndpointState {
    secret: String,
    tokens: Tokens,
    issued: usize,
    client_ids: Vec<Option<String>>,
}

/// The managed-identity endpoint's stand-in, served on a loopback port until dropped.
pub struct TokenEndpoint {
    pub url: String,
    pub secret: String,
    state: Arc<Mutex<EndpointState>>,
    _stop: oneshot::Sender<()>,
}

impl TokenEndpoint {
    /// Serves on a free loopback port (inside the current Tokio runtime) handing out good
    /// tokens for an hour.
    pub async fn start() -> std::io::Result<Self> {
        let secret = format!("identity-header-{}", uuid::Uuid::new_v4().simple());
        let state = Arc::new(Mutex::new(EndpointState {
            secret: secret.clone(),
            tokens: Tokens::Valid {
                lifetime: Duration::from_secs(3600),
            },
            issued: 0,
            client_ids: Vec::new(),
        }));
        let app = Router::new()
            .route("/msi/token", get(token))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/msi/token", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(TokenEndpoint {
            url,
            secret,
            state,
            _stop: stop,
        })
    }

    /// From now on, answer with `tokens`.
    pub fn issue(&self, tokens: Tokens) {
        self.lock().tokens = tokens;
    }

    /// Tokens handed out.
    pub fn issued(&self) -> usize {
        self.lock().issued
    }

    /// The `client_id` of each request (a user-assigned identity's), in order.
    pub fn client_ids(&self) -> Vec<Option<String>> {
        self.lock().client_ids.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EndpointState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn token(
    State(state): State<Arc<Mutex<EndpointState>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let secret = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok());
    if secret != Some(state.secret.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "X-IDENTITY-HEADER is missing or wrong",
        );
    }
    if query.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "unsupported api-version",
        );
    }
    let Some(resource) = query.get("resource").cloned() else {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "resource is missing");
    };
    state.client_ids.push(query.get("client_id").cloned());
    let now = chrono::Utc::now().timestamp();
    let (audience, not_before, expires) = match &state.tokens {
        Tokens::Valid { lifetime } => (
            resource.clone(),
            now - 60,
            now + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2),
        ),
        Tokens::Expired => (resource.clone(), now - 7200, now - 60),
        Tokens::WrongAudience => ("https://vault.azure.net".to_owned(), now - 60, now + 3600),
        Tokens::Failing { status } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, "Unavailable", "the identity service failed");
        }
    };
    state.issued += 1;
    let claims = json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{TENANT_ID}/"),
        "iat": not_before,
        "nbf": not_before,
        "exp": expires,
        "oid": OBJECT_ID,
        "tid": TENANT_ID,
        "sub": OBJECT_ID,
        "idtyp": "app",
        "ver": "1.0",
    });
    let part = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let jwt = format!(
        "{}.{}.{}",
        part(json!({"alg": "RS256", "typ": "JWT"})),
        part(claims),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"unsigned")
    );
    // What the endpoint claims is the token's expiry: for `Expired`, an hour ahead (a token
    // the service refuses although the cache thinks it good).
    let claimed = match state.tokens {
        Tokens::Expired => now + 3600,
        _ => expires,
    };
    Json(json!({
        "access_token": jwt,
        "expires_on": claimed.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": query.get("client_id").cloned().unwrap_or_else(|| OBJECT_ID.to_owned()),
    }))
    .into_response()
}

/// A self-signed certificate for `127.0.0.1` and `localhost`, written to `dir` as
/// `cert.pem` and `key.pem`.
pub struct TestCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub pem: Vec<u8>,
}

impl TestCertificate {
    pub fn create(dir: &Path) -> Result<Self, AzuriteError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| AzuriteError::Io { what, source }
        };
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .map_err(|e| AzuriteError::Io {
            what: "make a test certificate".into(),
            source: std::io::Error::other(e),
        })?;
        let pem = certified.cert.pem().into_bytes();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, &pem).map_err(io("write cert.pem"))?;
        std::fs::write(&key, certified.key_pair.serialize_pem()).map_err(io("write key.pem"))?;
        Ok(TestCertificate { cert, key, pem })
    }
}

/// A private Azurite over https with OAuth, its certificate, and a token endpoint: everything
/// an app needs to run keyless.
pub struct KeylessAzurite {
    pub azurite: PrivateAzurite,
    pub tokens: TokenEndpoint,
    pub certificate: TestCertificate,
}

impl KeylessAzurite {
    /// Starts both, with the certificate and Azurite's data in `dir`. Blocks the calling
    /// thread while Azurite starts (a second or two).
    pub async fn start(bin: &Path, dir: &Path) -> Result<Self, AzuriteError> {
        let certificate = TestCertificate::create(dir)?;
        let azurite = PrivateAzurite::start_with(
            bin,
            dir,
            Some(OAuthHttps {
                cert: &certificate.cert,
                key: &certificate.key,
            }),
        )?;
        let tokens = TokenEndpoint::start()
            .await
            .map_err(|source| AzuriteError::Io {
                what: "serve the token endpoint".into(),
                source,
            })?;
        Ok(KeylessAzurite {
            azurite,
            tokens,
            certificate,
        })
    }

    /// The connection the host's settings would describe: the three service URIs and the
    /// system-assigned identity.
    pub fn connection(&self) -> IdentityConnection {
        IdentityConnection {
            account_name: None,
            blob_service_uri: Some(self.azurite.blob_endpoint.clone()),
            queue_service_uri: Some(self.azurite.queue_endpoint.clone()),
            table_service_uri: Some(self.azurite.table_endpoint.clone()),
            identity: ManagedIdentity::SystemAssigned,
            endpoint: self.endpoint(),
        }
    }

    pub fn endpoint(&self) -> IdentityEndpoint {
        IdentityEndpoint {
            url: url::Url::parse(&self.tokens.url).expect("the endpoint's URL"),
            header: self.tokens.secret.clone(),
        }
    }

    /// Trust the test certificate.
    pub fn options(&self) -> AzureOptions {
        AzureOptions {
            extra_root_certificates: Some(self.certificate.pem.clone()),
        }
    }

    /// The app settings the platform would give an app with this identity and account.
    pub fn app_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AzureWebJobsStorage__blobServiceUri",
                self.azurite.blob_endpoint.clone(),
            ),
            (
                "AzureWebJobsStorage__queueServiceUri",
                self.azurite.queue_endpoint.clone(),
            ),
            (
                "AzureWebJobsStorage__tableServiceUri",
                self.azurite.table_endpoint.clone(),
            ),
            ("AzureWebJobsStorage__credential", "managedidentity".into()),
            ("IDENTITY_ENDPOINT", self.tokens.url.clone()),
            ("IDENTITY_HEADER", self.tokens.secret.clone()),
            (
                "FILE_APPROVER_STORAGE_CA_FILE",
                self.certificate.cert.to_string_lossy().into_owned(),
            ),
        ]
    }

    /// A plain HTTP client that trusts the test certificate (and holds no credentials).
    pub fn http_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&self.certificate.pem)
                    .expect("the test certificate"),
            )
            .build()
            .expect("an HTTP client")
    }
}
