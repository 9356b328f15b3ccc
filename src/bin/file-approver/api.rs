//! The app's HTTP API as the client calls it: where it is, who is calling, and what a refusal
//! or a failure means for the exit code.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

/// Everything that can end a command, each with the exit code scripts switch on.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API refused the request (a 4xx other than the two below): its code and message.
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    /// No such file (404).
    #[error("{code}: {message}")]
    NotFound { code: String, message: String },
    /// The file is not (yet) approved for what was asked (409 `NotApproved`).
    #[error("{code}: {message}")]
    NotApproved { code: String, message: String },
    /// The app or storage could not be reached, or answered with a server error.
    #[error("{0}")]
    Network(String),
    /// The bytes are not the ones the reviewers approved.
    #[error("{0}")]
    Integrity(String),
    /// `wait` gave up before the file reached a wanted stage.
    #[error("{0}")]
    Timeout(String),
    /// Anything else: a local file that cannot be read, a bad setting.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The documented exit codes (`file-approver --help` lists them).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Other(_) => 1,
            CliError::Refused { .. } => 3,
            CliError::NotFound { .. } => 4,
            CliError::NotApproved { .. } => 5,
            CliError::Network(_) => 6,
            CliError::Integrity(_) => 7,
            CliError::Timeout(_) => 8,
        }
    }

    /// The message alone (without the code), for `--json` output.
    pub fn message(&self) -> String {
        match self {
            CliError::Refused { message, .. }
            | CliError::NotFound { message, .. }
            | CliError::NotApproved { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The API's code, for `--json` output.
    pub fn code(&self) -> &str {
        match self {
            CliError::Refused { code, .. }
            | CliError::NotFound { code, .. }
            | CliError::NotApproved { code, .. } => code,
            CliError::Network(_) => "Network",
            CliError::Integrity(_) => "IntegrityCheckFailed",
            CliError::Timeout(_) => "Timeout",
            CliError::Other(_) => "Error",
        }
    }

    pub fn network(e: reqwest::Error) -> Self {
        // reqwest's own text names the URL, which may hold a signed link's signature.
        CliError::Network(file_approver::telemetry::error_chain(&e.without_url()))
    }
}

/// Where the app is and who is calling.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    function_key: Option<String>,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(
        url: &str,
        token: Option<String>,
        function_key: Option<String>,
    ) -> Result<Self, CliError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| CliError::Other(format!("FILE_APPROVER_URL {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CliError::Other(format!(
                "FILE_APPROVER_URL {url:?} is not an http(s) URL"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::Other(e.to_string()))?;
        Ok(Api {
            base: url.trim_end_matches('/').to_owned(),
            token,
            function_key,
            http,
        })
    }

    /// A request to one of the app's routes (`path` starts with `/api/`), with the caller's
    /// token and the function key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = &self.function_key {
            request = request.header("x-functions-key", key);
        }
        request
    }

    /// Sends a request and reads its JSON answer, or the API's refusal.
    pub async fn json(&self, request: RequestBuilder) -> Result<Value, CliError> {
        json_body(check(request.send().await.map_err(CliError::network)?).await?).await
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.json(self.request(Method::GET, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let request = self
            .request(Method::POST, path)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        self.json(request).await
    }
}

/// A response with a success status as it is; anything else as the error it means.
pub async fn check(response: Response) -> Result<Response, CliError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<Value>(&text) {
        Ok(body) => (
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
            body["error"]["message"].as_str().unwrap_or("").to_owned(),
        ),
        Err(_) => (String::new(), String::new()),
    };
    let code = if code.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("Error")
            .replace(' ', "")
    } else {
        code
    };
    let message = if message.is_empty() {
        format!("the server answered {status}")
    } else {
        message
    };
    Err(match status {
        StatusCode::NOT_FOUND => CliError::NotFound { code, message },
        StatusCode::CONFLICT if code == "NotApproved" => CliError::NotApproved { code, message },
        s if s.is_server_error() => CliError::Network(format!("{code}: {message}")),
        _ => CliError::Refused { code, message },
    })
}

/// A successful response's JSON body.
pub async fn json_body(response: Response) -> Result<Value, CliError> {
    let text = response.text().await.map_err(CliError::network)?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::Network(format!("the app answered something not JSON: {e}")))
}

/// Percent-encodes a query value.
pub fn query_value(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
