//! The official SDK's HTTP pipeline (`azure_core` 1.x) as this app runs it, for all three
//! services: our pooled `reqwest` client (with its timeouts and extra root certificates) as the
//! transport, a few quick retries, the pipeline's logging (which redacts every header it does
//! not know to be harmless), and one authorization policy:
//!
//! - [`SharedKey`]: the account key. The official crates sign only with Entra tokens;
//!   connection strings, Azurite's default account and teams that still use keys need this one
//!   hand-written signer (Microsoft Learn, "Authorize with Shared Key": the Blob and Queue
//!   services' long form, and the Table service's short one).
//! - [`Bearer`]: a managed identity's token, from the app's own credential
//!   (`identity.rs`), forgotten when the service refuses it.
//!
//! The blob and queue clients are built without a credential (they would insist on their own
//! bearer policy and on https) and get the policy through [`client_options`] instead, so every
//! service is authorized the same way.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::headers::HeaderName;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    AsyncRawResponse, ClientOptions, Context, ExponentialRetryOptions, HttpClient, Method,
    Pipeline, Request, RetryOptions, StatusCode, Transport,
};
use azure_core::time::Duration;
use futures::TryStreamExt;

use super::identity::ManagedIdentityCredential;
use super::sas::sign;

/// The service version every table request asks for: JSON payloads and entity group
/// transactions as documented, and old enough for Azurite 3.35.
pub const TABLE_VERSION: &str = "2019-02-02";
/// The version blob and queue requests ask for instead of the crates' newest (2026-04-06):
/// the newest that Azurite 3.35 (the one CI runs) accepts without `--skipApiVersionCheck`, and
/// new enough for everything the app uses.
pub const STORAGE_VERSION: &str = "2025-11-05";

/// How requests are authorized.
#[derive(Clone)]
pub enum Auth {
    Key { account: String, key: Vec<u8> },
    Token(Arc<ManagedIdentityCredential>),
}

/// Which of the two Shared Key forms a service takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    BlobOrQueue,
    Table,
}

/// Client options over `http` with `auth` for `service`: what the blob and queue clients are
/// built with, and what the tables pipeline is made of.
pub fn client_options(http: reqwest::Client, auth: Auth, service: Service) -> ClientOptions {
    // A few quick retries absorb a blip; a longer outage is the caller's to handle, as
    // `Unavailable`, instead of stalling a request for the SDK's default minute.
    let retry = RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: Duration::milliseconds(200),
        max_retries: 3,
        max_total_elapsed: Duration::seconds(10),
        max_delay: Duration::seconds(2),
    });
    let auth: Arc<dyn Policy> = match auth {
        Auth::Key { account, key } => Arc::new(SharedKey {
            account,
            key,
            service,
        }),
        Auth::Token(credential) => Arc::new(Bearer(credential)),
    };
    ClientOptions {
        retry,
        transport: Some(Transport::new(Arc::new(ReqwestTransport(http)))),
        // Per try: each retry is signed again, with its own date.
        per_try_policies: vec![auth],
        ..ClientOptions::default()
    }
}

/// The tables pipeline over `http` with `auth`.
pub fn pipeline(http: reqwest::Client, auth: Auth) -> Pipeline {
    Pipeline::new(
        option_env!("CARGO_PKG_NAME"),
        option_env!("CARGO_PKG_VERSION"),
        client_options(http, auth, Service::Table),
        Vec::new(),
        Vec::new(),
        None,
    )
}

/// Our `reqwest` client as the pipeline's transport.
#[derive(Debug)]
struct ReqwestTransport(reqwest::Client);

#[async_trait]
impl HttpClient for ReqwestTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let method = match request.method() {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
            Method::Patch => reqwest::Method::PATCH,
            other => {
                return Err(azure_core::Error::with_message(
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
            azure_core::http::Body::Bytes(bytes) => builder.body(bytes.clone()),
            azure_core::http::Body::SeekableStream(_) => {
                return Err(azure_core::Error::with_message(
                    ErrorKind::Other,
                    "requests carry their bodies whole",
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
            azure_core::Error::with_error(kind, e.without_url(), "the request failed")
        })?;
        let status = StatusCode::from(response.status().as_u16());
        let mut headers = azure_core::http::headers::Headers::new();
        for (name, value) in response.headers() {
            if let Ok(value) = value.to_str() {
                headers.insert(name.as_str().to_owned(), value.to_owned());
            }
        }
        let body = response.bytes_stream().map_err(|e| {
            azure_core::Error::with_error(ErrorKind::Io, e.without_url(), "the response broke")
        });
        Ok(AsyncRawResponse::new(status, headers, Box::pin(body)))
    }
}

/// Shared Key: an HMAC of the request's parts with the account key.
struct SharedKey {
    account: String,
    key: Vec<u8>,
    service: Service,
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKey")
            .field("account", &self.account)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

fn header<'a>(request: &'a Request, name: &'static str) -> &'a str {
    request
        .headers()
        .get_optional_str(&HeaderName::from_static(name))
        .unwrap_or("")
}

impl SharedKey {
    fn string_to_sign(&self, request: &Request, date: &str) -> String {
        match self.service {
            Service::Table => self.table_string_to_sign(request, date),
            Service::BlobOrQueue => self.blob_string_to_sign(request),
        }
    }

    /// The Table service's form: verb, Content-MD5, Content-Type, date (the `x-ms-date` the
    /// request carries), and the canonicalized resource — the account, the path as sent (for
    /// Azurite's path-style URLs the account a second time), and `comp` when the query has one.
    fn table_string_to_sign(&self, request: &Request, date: &str) -> String {
        let mut resource = format!("/{}{}", self.account, request.url().path());
        if let Some((_, comp)) = request.url().query_pairs().find(|(k, _)| k == "comp") {
            resource.push_str("?comp=");
            resource.push_str(&comp);
        }
        format!(
            "{}\n{}\n{}\n{}\n{}",
            method_name(request.method()),
            header(request, "content-md5"),
            header(request, "content-type"),
            date,
            resource
        )
    }

    /// The Blob and Queue services' form: the verb and eleven standard headers (Content-Length
    /// empty when zero; no Date, as `x-ms-date` is sent), every `x-ms-` header sorted, and the
    /// canonicalized resource — the account, the path, then each query parameter on its own
    /// line, lower-cased and sorted, its values decoded and comma-joined.
    fn blob_string_to_sign(&self, request: &Request) -> String {
        let length = match header(request, "content-length") {
            "" => request.body().len().unwrap_or(0).to_string(),
            given => given.to_owned(),
        };
        let length = if length == "0" { "" } else { length.as_str() };
        let mut text = String::with_capacity(512);
        text.push_str(method_name(request.method()));
        for value in [
            header(request, "content-encoding"),
            header(request, "content-language"),
            length,
            header(request, "content-md5"),
            header(request, "content-type"),
            "", // Date: x-ms-date is signed below instead.
            header(request, "if-modified-since"),
            header(request, "if-match"),
            header(request, "if-none-match"),
            header(request, "if-unmodified-since"),
            header(request, "range"),
        ] {
            text.push('\n');
            text.push_str(value);
        }
        text.push('\n');
        let mut ms: Vec<(String, &str)> = request
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-ms-"))
            .map(|(name, value)| (name.as_str().to_ascii_lowercase(), value.as_str()))
            .collect();
        ms.sort();
        for (name, value) in ms {
            text.push_str(&name);
            text.push(':');
            text.push_str(value.trim());
            text.push('\n');
        }
        text.push('/');
        text.push_str(&self.account);
        text.push_str(request.url().path());
        let mut parameters: std::collections::BTreeMap<String, Vec<String>> =
            std::collections::BTreeMap::new();
        for (name, value) in request.url().query_pairs() {
            parameters
                .entry(name.to_ascii_lowercase())
                .or_default()
                .push(value.into_owned());
        }
        for (name, mut values) in parameters {
            values.sort();
            text.push('\n');
            text.push_str(&name);
            text.push(':');
            text.push_str(&values.join(","));
        }
        text
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
impl Policy for SharedKey {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let date = super::now_rfc1123();
        request.insert_header("x-ms-date", date.clone());
        let signature = sign(&self.key, &self.string_to_sign(request, &date))
            .map_err(|e| azure_core::Error::with_error(ErrorKind::Credential, e, "cannot sign"))?;
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
        let token = self.0.token().await.map_err(|e| {
            azure_core::Error::with_error(ErrorKind::Credential, e, "no storage token")
        })?;
        request.insert_header("x-ms-date", super::now_rfc1123());
        request.insert_header("authorization", format!("Bearer {}", token.secret()));
        let response = next[0].send(ctx, request, &next[1..]).await?;
        // A refused token (expired early, revoked, for the wrong audience) is forgotten, so the
        // next request fetches a new one instead of repeating the refusal until the cached token
        // expires. A 403 about permissions (a missing role assignment) keeps the token: a new
        // one would be refused the same way.
        let status = u16::from(response.status());
        let code = response
            .headers()
            .get_optional_str(&HeaderName::from_static("x-ms-error-code"))
            .unwrap_or("");
        if status == 401
            || (status == 403
                && matches!(code, "AuthenticationFailed" | "InvalidAuthenticationInfo"))
        {
            tracing::warn!(
                status,
                code,
                "storage refused the managed identity's token; a new one will be fetched"
            );
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
        let policy = SharedKey {
            account: "devstoreaccount1".into(),
            key: vec![1, 2, 3],
            service: Service::Table,
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
        let policy = SharedKey {
            account: "acme".into(),
            key: vec![1],
            service: Service::Table,
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

    #[test]
    fn the_blob_string_to_sign_lists_the_headers_then_every_query_parameter_sorted() {
        let policy = SharedKey {
            account: "devstoreaccount1".into(),
            key: vec![1],
            service: Service::BlobOrQueue,
        };
        let mut request = Request::new(
            "http://127.0.0.1:10000/devstoreaccount1/files/a%20b?comp=block&blockid=QUJD%3D%3D&Timeout=30"
                .parse()
                .expect("a URL"),
            Method::Put,
        );
        request.insert_header("x-ms-version", "2025-11-05");
        request.insert_header("x-ms-date", "Sun, 06 Dec 2026 15:00:00 GMT");
        request.insert_header("content-type", "application/octet-stream");
        request.insert_header("if-match", "\"0x1\"");
        request.set_body(bytes::Bytes::from_static(b"four"));
        let text = policy.string_to_sign(&request, "unused");
        assert_eq!(
            text,
            "PUT\n\n\n4\n\napplication/octet-stream\n\n\n\"0x1\"\n\n\n\n\
             x-ms-date:Sun, 06 Dec 2026 15:00:00 GMT\nx-ms-version:2025-11-05\n\
             /devstoreaccount1/devstoreaccount1/files/a%20b\n\
             blockid:QUJD==\ncomp:block\ntimeout:30"
        );
    }

    #[test]
    fn an_empty_body_signs_an_empty_content_length() {
        let policy = SharedKey {
            account: "acme".into(),
            key: vec![1],
            service: Service::BlobOrQueue,
        };
        let request = Request::new(
            "https://acme.queue.core.windows.net/q/messages?numofmessages=1"
                .parse()
                .expect("a URL"),
            Method::Get,
        );
        let text = policy.string_to_sign(&request, "unused");
        assert!(text.starts_with("GET\n\n\n\n\n"), "{text}");
        assert!(
            text.ends_with("\n/acme/q/messages\nnumofmessages:1"),
            "{text}"
        );
    }
}
