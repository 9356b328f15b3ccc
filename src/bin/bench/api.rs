//! The app's HTTP API as the benchmark's clients use it (API.md), over one pooled client.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::Value;

use crate::error::{failed, Result};

pub const AWAITING_UPLOAD: &str = "AwaitingUploadApproval";
pub const AWAITING_DOWNLOAD: &str = "AwaitingDownloadApproval";
pub const APPROVED: &str = "Approved";

/// Stages a workflow never leaves: waiting for another stage past one of these is hopeless.
const FINAL_STAGES: [&str; 4] = [APPROVED, "Rejected", "Expired", "Failed"];

#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            // Loopback only, whatever proxy the environment names.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(600))
            .build()?;
        Ok(Api {
            base: base.into(),
            http,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `POST /api/files?name=…` with a raw body; returns the new file's id.
    pub async fn upload(
        &self,
        name: &str,
        body: reqwest::Body,
        length: Option<u64>,
    ) -> Result<String> {
        let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let mut request = self
            .http
            .post(self.url(&format!("/api/files?name={encoded}")))
            .header(CONTENT_TYPE, "application/octet-stream");
        if let Some(length) = length {
            request = request.header(CONTENT_LENGTH, length);
        }
        let response = request.body(body).send().await?;
        let body = expect(response, &[StatusCode::CREATED], "upload").await?;
        match body["id"].as_str() {
            Some(id) => Ok(id.to_owned()),
            None => failed(format!("upload answered without an id: {body}")),
        }
    }

    /// `POST /api/files/{id}/approvals/{stage}` with an empty body (approve).
    pub async fn approve(&self, id: &str, stage: &str, token: &str) -> Result<()> {
        let response = self
            .http
            .post(self.url(&format!("/api/files/{id}/approvals/{stage}")))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await?;
        expect(response, &[StatusCode::ACCEPTED, StatusCode::OK], "approve")
            .await
            .map(drop)
    }

    pub async fn status(&self, id: &str) -> Result<Value> {
        let response = self
            .http
            .get(self.url(&format!("/api/files/{id}")))
            .send()
            .await?;
        expect(response, &[StatusCode::OK], "status").await
    }

    /// Polls the status every `every` until the file reaches `stage`; returns how many polls
    /// it took.
    pub async fn wait_for_stage(
        &self,
        id: &str,
        stage: &str,
        every: Duration,
        timeout: Duration,
    ) -> Result<u32> {
        let started = Instant::now();
        let mut polls = 0;
        loop {
            let status = self.status(id).await?;
            polls += 1;
            let current = status["stage"].as_str().unwrap_or("?");
            if current == stage {
                return Ok(polls);
            }
            if FINAL_STAGES.contains(&current) {
                return failed(format!(
                    "file {id} ended as {current} while waiting for {stage}: {status}"
                ));
            }
            if started.elapsed() > timeout {
                return failed(format!(
                    "file {id} still {current} after {timeout:?} waiting for {stage}"
                ));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// `GET /api/files/{id}/download` until it hands out a link (a download approval may
    /// finish its workflow just after answering); returns how many requests it took.
    pub async fn download(&self, id: &str, every: Duration, timeout: Duration) -> Result<u32> {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            let response = self
                .http
                .get(self.url(&format!("/api/files/{id}/download")))
                .send()
                .await?;
            attempts += 1;
            if response.status() == StatusCode::CONFLICT && started.elapsed() < timeout {
                tokio::time::sleep(every).await;
                continue;
            }
            let body = expect(response, &[StatusCode::OK], "download").await?;
            if body["downloadUrl"].as_str().is_none() {
                return failed(format!("download answered without a downloadUrl: {body}"));
            }
            return Ok(attempts);
        }
    }
}

/// The JSON body of a response with one of the `wanted` statuses, else an error naming both.
pub async fn expect(
    response: reqwest::Response,
    wanted: &[StatusCode],
    what: &str,
) -> Result<Value> {
    let status = response.status();
    let bytes = response.bytes().await?;
    if !wanted.contains(&status) {
        let text = String::from_utf8_lossy(&bytes);
        return failed(format!(
            "{what} answered {status}: {}",
            text.chars().take(300).collect::<String>()
        ));
    }
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&bytes)?)
}
