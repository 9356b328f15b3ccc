//! The official SDK's HTTP pipeline (`azure_core` 1.x) as this app runs it: our pooled `reqwest`
//! client (with its timeouts and extra root certificates) as the transport, a few quick retries,
//! the pipeline's logging (which redacts every header it does not know to be harmless), and one
//! authorization policy:
//!
//! - [`SharedKeyTable`]: the account key, signed as the Table service's Shared Key scheme wants.
//!   The official crates sign only with Entra tokens; connection strings, Azurite's default
//!   account and teams that still use keys need this one hand-written signer (Microsoft's
//!   "Authorize with Shared Key", Table service form: verb, Content-MD5, Content-Type, date,
//!   canonicalized resource).
//! - [`Bearer`]: a managed identity's token, from the app's own credential (the one the legacy
//!   clients use too), forgotten when the service refuses it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core_v1::error::ErrorKind;
use azure_core_v1::http::policies::{Policy, PolicyResult};
use azure_core_v1::http::{
    AsyncRawResponse, ClientOptions, Context, ExponentialRetryOptions, HttpClient, Method,
    Pipeline, Request, RetryOptions, StatusCode, Transport,
};
use azure_core_v1::time::Duration;
use futures::TryStreamExt;

use super::identity::ManagedIdentityCredential;
use super::sas::sign;

/// The service version every table request asks for: JSON payloads and entity group
/// transactions as documented, and old enough for Azurite 3.35.
pub const TABLE_VERSION: &str = "2019-02-02";
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// How requests are authorized.
#[derive(Clone)]
pub enum Auth {
    Key { account: String, key: Vec<u8> },
    Token(Arc<ManagedIdentityCredential>),
}

/// A pipeline over `http` with `auth`.
pub fn pipeline(http: reqwest::Client, auth: Auth) -> Pipeline {
    // A few quick retries absorb a blip; a longer outage is the caller's to handle, as
    // `Unavailable`, instead of stalling a request for the SDK's default minute.
    let retry = RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: Duration::milliseconds(200),
        max_retries: 3,
        max_total_elapsed: Duration::seconds(10),
        max_delay: Duration::seconds(2),
    });
    let options = ClientOptions {
        retry,
        transport: Some(Transport::new(Arc::new(ReqwestTransport(http)))),
        ..ClientOptions::default()
    };
    let auth: Arc<dyn Policy> = match auth {
        Auth::Key { account, key } => Arc::new(SharedKeyTable { account, key }),
        Auth::Token(credential) => Arc::new(Bearer(credential)),
    };
    Pipeline::new(
        option_env!("CARGO_PKG_NAME"),
        option_env!("CARGO_PKG_VERSION"),
        options,
        Vec::new(),
        vec![auth],
        None,
    )
}

/// Our `reqwest` client as the pipeline's transport.
#[derive(Debug)]
struct ReqwestTransport(reqwest::Client);

#[async_trait]
impl HttpClient for ReqwestTransport {
    async fn execute_request(&self, request: &Request) -> azure_core_v1::Result<AsyncRawResponse> {
        let method = match request.method() {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
            Method::Patch => reqwest::Method::PATCH,
            other => {
                return Err(azure_core_v1::Error::with_message(
                    ErrorKind::Other,
                    format!("{other:?} is not a method this app sends"),
                ))
            }
        };
        let mut builder = self.0.request(method, request.url().clone());
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder = match request.body() {
            azure_core_v1::http::Body::Bytes(bytes) => builder.body(bytes.clone()),
            azure_core_v1::http::Body::SeekableStream(_) => {
                return Err(azure_core_v1::Error::with_message(
                    ErrorKind::Other,
                    "table requests carry their bodies whole",
                ))
            }
        };
        let response = builder.send().await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            // Without the URL: a request's URL may carry a signature.
            azure_core_v1::Error::with_error(kind, e.without_url(), "the request failed")
        })?;
        let status = StatusCode::from(response.status().as_u16());
        let mut headers = azure_core_v1::http::headers::Headers::new();
        for (name, value) in response.headers() {
            if let Ok(value) = value.to_str() {
                headers.insert(name.as_str().to_owned(), value.to_owned());
            }
        }
        let body = response.bytes_stream().map_err(|e| {
            azure_core_v1::Error::with_error(ErrorKind::Io, e.without_url(), "the response broke")
        });
        Ok(AsyncRawResponse::new(status, headers, Box::pin(body)))
    }
}

/// Shared Key, as the Table service takes it.
struct SharedKeyTable {
    account: String,
    key: Vec<u8>,
}

impl fmt::Debug for SharedKeyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKeyTable")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl SharedKeyTable {
    /// The Table service's string to sign: verb, Content-MD5, Content-Type, date (the
    /// `x-ms-date` the request carries), and the canonicalized resource — the account, the
    /// path as sent (for Azurite's path-style URLs the account a second time), and `comp` when
    /// the query has one.
    fn string_to_sign(&self, request: &Request, date: &str) -> String {
        let header = |name: &'static str| {
            request
                .headers()
                .get_optional_str(&azure_core_v1::http::headers::HeaderName::from_static(name))
                .unwrap_or("")
                .to_owned()
        };
        let mut resource = format!("/{}{}", self.account, request.url().path());
        if let Some((_, comp)) = request.url().query_pairs().find(|(k, _)| k == "comp") {
            resource.push_str("?comp=");
            resource.push_str(&comp);
        }
        format!(
            "{}\n{}\n{}\n{}\n{}",
            method_name(request.method()),
            header("content-md5"),
            header("content-type"),
            date,
            resource
        )
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
        Method::Patch => "PATCH",
        _ => "",
    }
}

#[async_trait]
impl Policy for SharedKeyTable {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        // Per try: each retry is signed again with its own date.
        let date = super::now_rfc1123();
        request.insert_header("x-ms-date", date.clone());
        let signature = sign(&self.key, &self.string_to_sign(request, &date)).map_err(|e| {
            azure_core_v1::Error::with_error(ErrorKind::Credential, e, "cannot sign")
        })?;
        request.insert_header(
            "authorization",
            format!("SharedKey {}:{signature}", self.account),
        );
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// A managed identity's bearer token.
struct Bearer(Arc<ManagedIdentityCredential>);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer(..)")
    }
}

#[async_trait]
impl Policy for Bearer {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        use azure_core::auth::TokenCredential as _;
        let token = self.0.get_token(&[STORAGE_SCOPE]).await.map_err(|e| {
            azure_core_v1::Error::with_error(ErrorKind::Credential, e, "no storage token")
        })?;
        request.insert_header("x-ms-date", super::now_rfc1123());
        request.insert_header("authorization", format!("Bearer {}", token.token.secret()));
        let response = next[0].send(ctx, request, &next[1..]).await?;
        // A refused token is forgotten, so the next request fetches a new one instead of
        // repeating the refusal until the cached token expires.
        if matches!(u16::from(response.status()), 401 | 403) {
            self.0.forget().await;
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_string_to_sign_names_the_account_twice_on_path_style_urls() {
        let policy = SharedKeyTable {
            account: "devstoreaccount1".into(),
            key: vec![1, 2, 3],
        };
        let mut request = Request::new(
            "http://127.0.0.1:10002/devstoreaccount1/Tables"
                .parse()
                .expect("a URL"),
            Method::Post,
        );
        request.insert_header("content-type", "application/json");
        let text = policy.string_to_sign(&request, "Sun, 06 Dec 2026 15:00:00 GMT");
        assert_eq!(
            text,
            "POST\n\napplication/json\nSun, 06 Dec 2026 15:00:00 GMT\n/devstoreaccount1/devstoreaccount1/Tables"
        );
    }

    #[test]
    fn comp_is_part_of_the_resource_and_other_query_parameters_are_not() {
        let policy = SharedKeyTable {
            account: "acme".into(),
            key: vec![1],
        };
        let request = Request::new(
            "https://acme.table.core.windows.net/t()?$filter=x&comp=acl"
                .parse()
                .expect("a URL"),
            Method::Get,
        );
        let text = policy.string_to_sign(&request, "d");
        assert!(text.ends_with("\n/acme/t()?comp=acl"), "{text}");
    }
}
