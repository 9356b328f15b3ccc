//! `download`: asks the app for the one-hour link, fetches the bytes into `<path>.part`
//! (resuming what an earlier run or a dropped connection left there), and checks their
//! SHA-256 against the analysis the reviewers approved before the file takes its name. A
//! mismatch deletes the partial file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::{check, Api, CliError};
use crate::progress::Progress;

/// A transfer that breaks is taken up again from where it stopped this often.
const ATTEMPTS: u32 = 6;

/// What a download did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Downloaded {
    pub id: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// Bytes fetched by this run (less than the size when it resumed).
    pub bytes_received: u64,
    /// Bytes found already in the partial file from an earlier run.
    pub bytes_resumed: u64,
}

pub async fn download(
    api: &Api,
    id: &str,
    output: Option<&Path>,
    progress: &Progress,
) -> Result<Downloaded, CliError> {
    let grant = api.get(&format!("/api/files/{id}/download")).await?;
    let field = |value: &serde_json::Value, what: &str| {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CliError::Network(format!("the download grant has no {what}")))
    };
    let url = field(&grant["downloadUrl"], "downloadUrl")?;
    let name = field(&grant["name"], "name")?;
    let expected = field(&grant["metadata"]["sha256"], "approved SHA-256")?.to_lowercase();
    let size = grant["size"].as_u64().unwrap_or(0);
    // A directory (one that exists, or any path written with a trailing slash) gets the file
    // under its display name.
    let path = match output {
        Some(path) if path.is_dir() => path.join(&name),
        Some(path) if path.as_os_str().to_string_lossy().ends_with('/') => {
            tokio::fs::create_dir_all(path)
                .await
                .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
            path.join(&name)
        }
        Some(path) => path.to_owned(),
        None => PathBuf::from(&name),
    };
    let mut part = path.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);

    let (mut hasher, resumed) = hash_existing(&part, size).await?;
    progress.start(size, &format!("downloading {name}"));
    progress.advance(resumed);
    let mut have = resumed;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_from(api, &url, &part, have, &mut hasher, progress).await {
            Ok(Fetched::Appended(n)) => have += n,
            Ok(Fetched::Restarted(n)) => {
                have = n;
            }
            Err(CliError::Network(reason)) if attempt < ATTEMPTS => {
                eprintln!("file-approver: the transfer broke ({reason}); resuming");
                // What reached the disk is kept: hashed again from there, asked for after it.
                (hasher, have) = hash_existing(&part, size).await?;
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
            }
            Err(e) => {
                progress.finish();
                return Err(e);
            }
        }
        if have >= size {
            break;
        }
        if attempt >= ATTEMPTS {
            progress.finish();
            return Err(CliError::Network(format!(
                "the transfer kept ending early ({have} of {size} bytes)"
            )));
        }
    }
    progress.finish();
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(CliError::Integrity(format!(
            "the downloaded bytes have SHA-256 {actual}, not the approved {expected}; nothing kept"
        )));
    }
    tokio::fs::rename(&part, &path)
        .await
        .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
    Ok(Downloaded {
        id: id.to_owned(),
        path,
        size: have,
        sha256: actual,
        bytes_received: have - resumed,
        bytes_resumed: resumed,
    })
}

/// The hash of what a partial file already holds (nothing when it is longer than the file
/// can be, which only a stranger's file would be).
async fn hash_existing(part: &Path, size: u64) -> Result<(Sha256, u64), CliError> {
    let mut hasher = Sha256::new();
    let Ok(mut file) = tokio::fs::File::open(part).await else {
        return Ok((hasher, 0));
    };
    let len = file.metadata().await.map_or(0, |m| m.len());
    if len > size {
        drop(file);
        let _ = tokio::fs::remove_file(part).await;
        return Ok((hasher, 0));
    }
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = file
            .read(&mut buffer)
            .await
            .map_err(|e| CliError::Other(format!("{}: {e}", part.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((hasher, total))
}

enum Fetched {
    /// Bytes appended after what was there.
    Appended(u64),
    /// The server sent the whole file again (no range support): the part file was restarted
    /// and now holds this many bytes.
    Restarted(u64),
}

async fn fetch_from(
    api: &Api,
    url: &str,
    part: &Path,
    from: u64,
    hasher: &mut Sha256,
    progress: &Progress,
) -> Result<Fetched, CliError> {
    let mut request = api.http.get(url);
    if from > 0 {
        request = request.header("Range", format!("bytes={from}-"));
    }
    let response = request.send().await.map_err(CliError::network)?;
    if response.status() == StatusCode::RANGE_NOT_SATISFIABLE && from > 0 {
        return Ok(Fetched::Appended(0));
    }
    let response = check(response).await?;
    let restarted = response.status() == StatusCode::OK;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!restarted)
        .truncate(restarted)
        .open(part)
        .await
        .map_err(|e| CliError::Other(format!("{}: {e}", part.display())))?;
    if restarted && from > 0 {
        *hasher = Sha256::new();
    }
    let mut written = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                // What arrived is kept (and hashed): the next attempt asks for the rest.
                file.flush().await.ok();
                return Err(CliError::network(e));
            }
        };
        file.write_all(&chunk)
            .await
            .map_err(|e| CliError::Other(format!("{}: {e}", part.display())))?;
        hasher.update(&chunk);
        written += chunk.len() as u64;
        progress.advance(chunk.len() as u64);
    }
    file.sync_all()
        .await
        .map_err(|e| CliError::Other(format!("{}: {e}", part.display())))?;
    Ok(if restarted {
        Fetched::Restarted(written)
    } else {
        Fetched::Appended(written)
    })
}
