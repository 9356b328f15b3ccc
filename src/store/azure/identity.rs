//! Keyless access: bearer tokens from the App Service / Functions managed-identity endpoint,
//! and the user-delegation keys that sign links without an account key.
//!
//! The platform puts the endpoint in `IDENTITY_ENDPOINT` and a secret for it in
//! `IDENTITY_HEADER` (Microsoft Learn, "How to use managed identities for App Service and Azure
//! Functions", REST protocol, api-version 2019-08-01). Written here rather than taken from
//! `azure_identity` 0.21: that crate reads the process environment on its own (tests run many
//! apps in one process, each with its own endpoint), cannot be pointed at a test CA, and would
//! add a second HTTP client stack for one GET.
//!
//! Tokens are cached and fetched again five minutes before they expire (what the Azure SDKs
//! do), one fetch at a time. A token the service refuses is forgotten at once
//! ([`ForgetRefusedToken`]), so a bad token costs one failed request, not an hour.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::{Context, Policy, PolicyResult, Request};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;

use crate::config::{IdentityEndpoint, ManagedIdentity};
use crate::store::StoreError;

/// The resource every storage service accepts tokens for.
const STORAGE_RESOURCE: &str = "https://storage.azure.com/";
const API_VERSION: &str = "2019-08-01";
/// Fetch a new token when the cached one has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The endpoint is on the instance itself; a slow answer means it is broken.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`TokenCredential`] over the managed-identity endpoint, with its cache.
pub(crate) struct ManagedIdentityCredential {
    endpoint: IdentityEndpoint,
    identity: ManagedIdentity,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<AccessToken>>,
}

impl fmt::Debug for ManagedIdentityCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentityCredential")
            .field("endpoint", &self.endpoint)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// The endpoint's answer. `expires_on` is seconds since the epoch, as a string in 2019-08-01
/// (a number in older versions).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_on: NumberOrString,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(i64),
    Text(String),
}

impl NumberOrString {
    fn seconds(&self) -> Option<i64> {
        match self {
            NumberOrString::Number(n) => Some(*n),
            NumberOrString::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// The endpoint's error body: `{"error": {"code", "message"}}` or the older flat form.
#[derive(Deserialize)]
struct ErrorResponse {
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
}

impl ManagedIdentityCredential {
    pub(crate) fn new(
        endpoint: IdentityEndpoint,
        identity: ManagedIdentity,
        http: reqwest::Client,
    ) -> Self {
        ManagedIdentityCredential {
            endpoint,
            identity,
            http,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Drops the cached token: the next request fetches a new one.
    pub(crate) async fn forget(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> azure_core::Result<AccessToken> {
        let mut url = self.endpoint.url.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("api-version", API_VERSION)
                .append_pair("resource", STORAGE_RESOURCE);
            match &self.identity {
                ManagedIdentity::SystemAssigned => {}
                ManagedIdentity::ClientId(id) => {
                    query.append_pair("client_id", id);
                }
                ManagedIdentity::ResourceId(id) => {
                    query.append_pair("mi_res_id", id);
                }
            }
        }
        let failed = |why: String| {
            azure_core::Error::message(
                ErrorKind::Credential,
                format!(
                    "the managed-identity endpoint {} gave no storage token: {why}",
                    self.endpoint.url
                ),
            )
        };
        let response = self
            .http
            .get(url)
            .header("X-IDENTITY-HEADER", &self.endpoint.header)
            .timeout(TOKEN_TIMEOUT)
            .send()
            .await
            .map_err(|e| failed(format!("{e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(format!("reading the answer: {e}")))?;
        if !status.is_success() {
            // The error body names the cause (an unknown client id, a missing role); it never
            // holds a token.
            let detail = serde_json::from_slice::<ErrorResponse>(&body)
                .ok()
                .and_then(|e| e.error.map(|v| v.to_string()).or(e.message))
                .unwrap_or_default();
            return Err(failed(format!(
                "HTTP {status} {}",
                detail.chars().take(300).collect::<String>()
            )));
        }
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("an answer that is not a token ({e})")))?;
        let expires_on = token
            .expires_on
            .seconds()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or_else(|| failed("an expires_on that is not a time".into()))?;
        Ok(AccessToken::new(
            Secret::new(token.access_token),
            expires_on,
        ))
    }
}

fn fresh(token: &AccessToken, now: time::OffsetDateTime) -> bool {
    token.expires_on - now > REFRESH_MARGIN
}

#[async_trait]
impl TokenCredential for ManagedIdentityCredential {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        // Held across the fetch: concurrent requests wait for one token instead of each
        // asking the endpoint.
        let mut cached = self.cached.lock().await;
        let now = time::OffsetDateTime::now_utc();
        if let Some(token) = cached.as_ref().filter(|t| fresh(t, now)) {
            return Ok(token.clone());
        }
        match self.fetch().await {
            Ok(token) => {
                tracing::debug!(expires_on = %token.expires_on, "fetched a storage token");
                *cached = Some(token.clone());
                Ok(token)
            }
            // Within its margin the old token still works: keep using it while the endpoint
            // is down, and say so.
            Err(e) => match cached.as_ref().filter(|t| t.expires_on > now) {
                Some(token) => {
                    tracing::warn!(error = %e, expires_on = %token.expires_on, "could not refresh the storage token; using the current one until it expires");
                    Ok(token.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.forget().await;
        Ok(())
    }
}

/// Forgets the cached token when the service refuses it (expired early, revoked, for the wrong
/// audience), so the next request brings a new one. A 403 that is about permissions (a missing
/// role assignment) keeps the token: a new one would be refused the same way.
#[derive(Debug)]
pub(crate) struct ForgetRefusedToken(pub Arc<ManagedIdentityCredential>);

#[async_trait]
impl Policy for ForgetRefusedToken {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let result = next[0].send(ctx, request, &next[1..]).await;
        if let Err(e) = &result {
            if let ErrorKind::HttpResponse { status, error_code } = e.kind() {
                let code = error_code.as_deref().unwrap_or("");
                let refused = u16::from(*status) == 401
                    || (u16::from(*status) == 403
                        && matches!(code, "AuthenticationFailed" | "InvalidAuthenticationInfo"));
                if refused {
                    tracing::warn!(
                        status = u16::from(*status),
                        code,
                        "storage refused the managed identity's token; a new one will be fetched"
                    );
                    self.0.forget().await;
                }
            }
        }
        result
    }
}

/// A user-delegation key as the service handed it out. The times are kept as the service wrote
/// them: they are signed into every link as they are.
#[derive(Clone)]
pub(crate) struct DelegationKey {
    pub object_id: String,
    pub tenant_id: String,
    pub start: String,
    pub expiry: String,
    pub service: String,
    pub version: String,
    /// Decoded from base64: the HMAC key of the links.
    pub value: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

/// The service's answer to Get User Delegation Key, its times kept as written.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DelegationKeyAnswer {
    signed_oid: String,
    signed_tid: String,
    signed_start: String,
    signed_expiry: String,
    signed_service: String,
    signed_version: String,
    value: String,
}

/// The version of the storage REST API the key is asked under (any from 2018-11-09 lends keys).
const DELEGATION_API_VERSION: &str = "2022-11-02";

/// Asks the blob service to lend the identity a key for `start..expiry` (Get User Delegation
/// Key). Sent here rather than through the legacy crate, whose answer parser demands an
/// `x-ms-request-id` header that Azurite does not send.
pub(crate) async fn fetch_delegation_key(
    http: &reqwest::Client,
    credential: &ManagedIdentityCredential,
    blob_endpoint: &Url,
    start: DateTime<Utc>,
    expiry: DateTime<Utc>,
) -> Result<DelegationKey, StoreError> {
    let format = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let token = credential
        .get_token(&[])
        .await
        .map_err(|e| StoreError::unavailable(DelegationFailure::Token(e)))?;
    let mut url = blob_endpoint.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(Some("restype=service&comp=userdelegationkey"));
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>{}</Start><Expiry>{}</Expiry></KeyInfo>",
        format(start),
        format(expiry)
    );
    let response = http
        .post(url)
        .header("Authorization", format!("Bearer {}", token.token.secret()))
        .header("x-ms-version", DELEGATION_API_VERSION)
        .header("x-ms-date", super::now_rfc1123())
        .header("Content-Type", "application/xml")
        .body(body)
        .send()
        .await
        .map_err(|e| StoreError::unavailable(DelegationFailure::Request(e)))?;
    let status = response.status().as_u16();
    let code = response
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response
        .text()
        .await
        .map_err(|e| StoreError::unavailable(DelegationFailure::Request(e)))?;
    if !(200..300).contains(&status) {
        let failure = DelegationFailure::Status {
            status,
            code: code.clone(),
        };
        return Err(match status {
            401 | 403 => {
                if status == 401
                    || matches!(
                        code.as_str(),
                        "AuthenticationFailed" | "InvalidAuthenticationInfo"
                    )
                {
                    credential.forget().await;
                }
                StoreError::unavailable(failure)
            }
            408 | 429 | 500..=599 => StoreError::unavailable(failure),
            _ => StoreError::internal(failure),
        });
    }
    let answer: DelegationKeyAnswer = azure_core::xml::read_xml_str(&text)
        .map_err(|e| StoreError::internal(DelegationFailure::Answer(e.to_string())))?;
    let value = base64::engine::general_purpose::STANDARD
        .decode(answer.value.trim())
        .map_err(|_| {
            StoreError::internal(DelegationFailure::Answer(
                "a Value that is not base64".into(),
            ))
        })?;
    let expires_at = DateTime::parse_from_rfc3339(&answer.signed_expiry)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            StoreError::internal(DelegationFailure::Answer(
                "a SignedExpiry that is not a time".into(),
            ))
        })?;
    Ok(DelegationKey {
        object_id: answer.signed_oid,
        tenant_id: answer.signed_tid,
        start: answer.signed_start,
        expiry: answer.signed_expiry,
        service: answer.signed_service,
        version: answer.signed_version,
        value,
        expires_at,
    })
}

/// Why no user-delegation key came (kept inside `Unavailable`/`Internal`, and so in the log).
#[derive(Debug, thiserror::Error)]
enum DelegationFailure {
    #[error("get user delegation key: no token")]
    Token(#[source] azure_core::Error),
    #[error("get user delegation key: the request failed")]
    Request(#[source] reqwest::Error),
    #[error("get user delegation key answered HTTP {status} {code}")]
    Status { status: u16, code: String },
    #[error("get user delegation key: {0}")]
    Answer(String),
}

/// How long a requested delegation key lives. Azure allows at most seven days from now; the
/// key must outlive every link signed with it, and upload links may live up to seven days.
pub(crate) const DELEGATION_KEY_LIFETIME: chrono::Duration = chrono::Duration::days(7);

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_in_secs: i64) -> AccessToken {
        AccessToken::new(
            Secret::new("t"),
            time::OffsetDateTime::now_utc() + time::Duration::seconds(expires_in_secs),
        )
    }

    #[test]
    fn a_token_is_renewed_five_minutes_before_it_expires() {
        let now = time::OffsetDateTime::now_utc();
        assert!(fresh(&token(3600), now));
        assert!(fresh(&token(5 * 60 + 30), now));
        assert!(!fresh(&token(5 * 60 - 30), now));
        assert!(!fresh(&token(-1), now));
    }

    #[test]
    fn expires_on_is_read_as_a_string_or_a_number() {
        let text: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_on":"1700000000"}"#).unwrap();
        let number: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_on":1700000000}"#).unwrap();
        assert_eq!(text.expires_on.seconds(), Some(1_700_000_000));
        assert_eq!(number.expires_on.seconds(), Some(1_700_000_000));
        let bad: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_on":"soon"}"#).unwrap();
        assert_eq!(bad.expires_on.seconds(), None);
    }

    #[test]
    fn the_endpoint_secret_is_not_printed() {
        let endpoint = IdentityEndpoint {
            url: Url::parse("http://127.0.0.1:41000/msi/token").unwrap(),
            header: "very-secret".into(),
        };
        assert!(!format!("{endpoint:?}").contains("very-secret"));
    }
}
