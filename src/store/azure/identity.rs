//! Keyless access: bearer tokens from the App Service / Functions managed-identity endpoint.
//!
//! The platform puts the endpoint in `IDENTITY_ENDPOINT` and a secret for it in
//! `IDENTITY_HEADER` (Microsoft Learn, "How to use managed identities for App Service and Azure
//! Functions", REST protocol, api-version 2019-08-01). Written here rather than taken from
//! `azure_identity` 1.0: its `ManagedIdentityCredential` reads the endpoint and the secret from
//! the process environment on every use and offers no way to pass them (its environment hook
//! is compiled for its own tests only), so the app's settings could not decide them and the
//! tests, which run many apps in one process each with its own endpoint, could not either; and
//! it cannot be told to drop a token the service refused.
//!
//! Tokens are cached and fetched again five minutes before they expire (what the Azure SDKs
//! do), one fetch at a time. A token the service refuses is forgotten at once (the pipeline's
//! `Bearer` policy calls [`ManagedIdentityCredential::forget`]), so a bad token costs one failed
//! request, not an hour.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::{IdentityEndpoint, ManagedIdentity};

/// The resource every storage service accepts tokens for.
const STORAGE_RESOURCE: &str = "https://storage.azure.com/";
const API_VERSION: &str = "2019-08-01";
/// Fetch a new token when the cached one has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The endpoint is on the instance itself; a slow answer means it is broken.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A storage token and when it stops working.
#[derive(Clone)]
pub(crate) struct AccessToken {
    secret: String,
    pub expires_on: DateTime<Utc>,
}

impl AccessToken {
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

/// Why no token came; it names the endpoint and the answer, never a token.
#[derive(Debug, thiserror::Error)]
#[error("the managed-identity endpoint {endpoint} gave no storage token: {why}")]
pub(crate) struct TokenError {
    endpoint: String,
    why: String,
}

/// The managed-identity endpoint, with its token cache.
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

    async fn fetch(&self) -> Result<AccessToken, TokenError> {
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
        let failed = |why: String| TokenError {
            endpoint: self.endpoint.url.to_string(),
            why,
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
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or_else(|| failed("an expires_on that is not a time".into()))?;
        Ok(AccessToken {
            secret: token.access_token,
            expires_on,
        })
    }
}

fn fresh(token: &AccessToken, now: DateTime<Utc>) -> bool {
    (token.expires_on - now)
        .to_std()
        .is_ok_and(|left| left > REFRESH_MARGIN)
}

impl ManagedIdentityCredential {
    /// A storage token: the cached one while it is fresh, else a new one.
    pub(crate) async fn token(&self) -> Result<AccessToken, TokenError> {
        // Held across the fetch: concurrent requests wait for one token instead of each
        // asking the endpoint.
        let mut cached = self.cached.lock().await;
        let now = Utc::now();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_in_secs: i64) -> AccessToken {
        AccessToken {
            secret: "t".into(),
            expires_on: Utc::now() + chrono::Duration::seconds(expires_in_secs),
        }
    }

    #[test]
    fn a_token_is_renewed_five_minutes_before_it_expires() {
        let now = Utc::now();
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
            url: url::Url::parse("http://127.0.0.1:41000/msi/token").unwrap(),
            header: "very-secret".into(),
        };
        assert!(!format!("{endpoint:?}").contains("very-secret"));
    }
}
