//! What the workflow's history does not hold: the download links handed out and every time
//! one was followed. One row per link and per fetch in table `files`, partition
//! `audit-<file id>`, and one counter row (`downloads`) that the download limit is checked
//! against: written before the link or the bytes go out, read by a file's history with one
//! partition query, so the cost stays with the file and never grows with other files.
//!
//! A fetch that counts (a download from its first byte) is recorded in one batch with the
//! counter's increment, guarded by the counter's ETag: two fetches racing for the last
//! download cannot both win.

use chrono::{DateTime, Utc};

use crate::domain::{FileId, Principal, Refusal};
use crate::store::{BatchOp, Entity, Storage, StoreError, TableQuery};
use crate::workflow::Step;

use super::{FilesError, FILES_TABLE};

fn partition(id: FileId) -> String {
    format!("audit-{id}")
}

/// A download link handed out.
pub(super) struct LinkIssued {
    pub issued_time: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Whoever the request named (a token's holder, a signed-in person); `None` for a caller
    /// known only by the function key.
    pub requester: Option<Principal>,
}

/// The counter row's key: after every time-keyed row (they start with a digit).
const DOWNLOADS_ROW: &str = "downloads";

/// Time first, so rows sort in time order; a random tail keeps two rows of the same instant
/// apart.
fn row_key(time: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        time.format("%Y%m%dT%H%M%S%.9fZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn with_requester(mut entity: Entity, requester: Option<&Principal>) -> Entity {
    if let Some(requester) = requester {
        entity = entity.with("RequesterName", requester.as_str());
        if let Some(id) = requester.id() {
            entity = entity.with("RequesterId", id);
        }
    }
    entity
}

impl LinkIssued {
    pub fn to_entity(&self, id: FileId) -> Entity {
        let entity = Entity::new(partition(id), row_key(self.issued_time))
            .with("Kind", "LinkIssued")
            .with("IssuedTime", self.issued_time.to_rfc3339())
            .with("ExpiresTime", self.expires_at.to_rfc3339());
        with_requester(entity, self.requester.as_ref())
    }
}

/// A download link followed: who, from where, with what, from which byte.
pub(super) struct Fetched {
    pub time: DateTime<Utc>,
    pub requester: Option<Principal>,
    pub client: Option<String>,
    pub user_agent: Option<String>,
    /// Set for a resumed download (a `Range` from a later byte): it does not count.
    pub range_start: Option<u64>,
    /// The file's size, for the history's words.
    pub size: u64,
}

impl Fetched {
    fn to_entity(&self, id: FileId) -> Entity {
        let mut entity = Entity::new(partition(id), row_key(self.time))
            .with("Kind", "Fetched")
            .with("IssuedTime", self.time.to_rfc3339())
            .with("Size", i64::try_from(self.size).unwrap_or(i64::MAX));
        // Client-sent text is kept short: it is for people reading the audit.
        let short = |s: &str| s.chars().take(200).collect::<String>();
        if let Some(client) = &self.client {
            entity = entity.with("Client", short(client));
        }
        if let Some(agent) = &self.user_agent {
            entity = entity.with("UserAgent", short(agent));
        }
        if let Some(start) = self.range_start {
            entity = entity.with("RangeStart", i64::try_from(start).unwrap_or(i64::MAX));
        }
        with_requester(entity, self.requester.as_ref())
    }
}

/// A reviewer's private note: for reviewers' eyes only, never the uploader's.
pub(super) struct Note {
    pub time: DateTime<Utc>,
    pub reviewer: Principal,
    pub text: String,
}

impl Note {
    pub fn to_entity(&self, id: FileId) -> Entity {
        let entity = Entity::new(partition(id), row_key(self.time))
            .with("Kind", "Note")
            .with("IssuedTime", self.time.to_rfc3339())
            .with("Text", self.text.as_str());
        with_requester(entity, Some(&self.reviewer))
    }
}

/// How many conditional attempts a fetch makes before it gives up to a storm of others.
const COUNT_ATTEMPTS: usize = 8;

/// Records a fetch; one that starts from the first byte also counts against `limit`
/// (`DownloadLimitReached` once it is used up).
pub(super) async fn record_fetch(
    store: &dyn Storage,
    id: FileId,
    fetch: &Fetched,
    limit: Option<u64>,
) -> Result<(), FilesError> {
    let row = fetch.to_entity(id);
    if fetch.range_start.is_some() {
        store.insert_entity(FILES_TABLE, &row).await?;
        return Ok(());
    }
    let partition = partition(id);
    for _ in 0..COUNT_ATTEMPTS {
        let (count, etag) = match store
            .get_entity(FILES_TABLE, &partition, DOWNLOADS_ROW)
            .await
        {
            Ok(stored) => (stored.entity.i64("Count").unwrap_or(0), Some(stored.etag)),
            Err(StoreError::NotFound) => (0, None),
            Err(e) => return Err(e.into()),
        };
        let count = u64::try_from(count).unwrap_or(0);
        if let Some(limit) = limit.filter(|limit| count >= *limit) {
            return Err(FilesError::Refused(Refusal::DownloadLimitReached(format!(
                "file {id} was downloaded {count} times, the most this deployment allows ({limit})"
            ))));
        }
        let counter = Entity::new(partition.as_str(), DOWNLOADS_ROW)
            .with("Count", i64::try_from(count + 1).unwrap_or(i64::MAX));
        let counter = match etag {
            Some(if_match) => BatchOp::Update {
                entity: counter,
                if_match,
            },
            None => BatchOp::Insert(counter),
        };
        let ops = vec![counter, BatchOp::Insert(row.clone())];
        match store.batch(FILES_TABLE, &partition, ops).await {
            Ok(_) => return Ok(()),
            // Another fetch counted first: read the count again.
            Err(StoreError::PreconditionFailed | StoreError::AlreadyExists) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(FilesError::Storage(StoreError::Unavailable(
        "too many downloads of one file at once; try again".into(),
    )))
}

/// How many downloads of file `id` have been counted.
pub(super) async fn downloads(store: &dyn Storage, id: FileId) -> Result<u64, FilesError> {
    match store
        .get_entity(FILES_TABLE, &partition(id), DOWNLOADS_ROW)
        .await
    {
        Ok(stored) => Ok(u64::try_from(stored.entity.i64("Count").unwrap_or(0)).unwrap_or(0)),
        Err(StoreError::NotFound) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// A byte count in the history's words ("1.2 GiB").
fn bytes_in_words(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The step one audit row shows: a link issued, or a link followed.
fn step_of(entity: &Entity, time: DateTime<Utc>) -> Step {
    let actor = entity
        .str("RequesterName")
        .and_then(|name| Principal::parse(name, entity.str("RequesterId")).ok());
    if entity.str("Kind") == Some("Note") {
        return Step {
            step: "note",
            time,
            actor,
            stage: None,
            outcome: None,
            comment: entity.str("Text").map(str::to_owned),
        };
    }
    if entity.str("Kind") == Some("Fetched") {
        let size = u64::try_from(entity.i64("Size").unwrap_or(0)).unwrap_or(0);
        let how = match entity.i64("RangeStart") {
            Some(start) => format!("resumed from byte {start} of {}", bytes_in_words(size)),
            None => bytes_in_words(size),
        };
        let from = [entity.str("Client"), entity.str("UserAgent")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
        return Step {
            step: "downloaded",
            time,
            actor,
            stage: None,
            outcome: Some(if from.is_empty() {
                how
            } else {
                format!("{how} ({from})")
            }),
            comment: None,
        };
    }
    Step {
        step: "linkIssued",
        time,
        actor,
        stage: None,
        outcome: entity
            .str("ExpiresTime")
            .map(|e| format!("valid until {e}")),
        comment: None,
    }
}

/// The links issued for file `id`, their fetches and (for a reviewer, `notes`) reviewers'
/// private notes, as history steps, oldest first.
pub(super) async fn steps(
    store: &dyn Storage,
    id: FileId,
    notes: bool,
) -> Result<Vec<Step>, FilesError> {
    let mut steps = Vec::new();
    let mut continuation = None;
    loop {
        let page = match store
            .query(
                FILES_TABLE,
                &TableQuery {
                    continuation,
                    ..TableQuery::partition(partition(id))
                },
            )
            .await
        {
            Ok(page) => page,
            Err(StoreError::NotFound) => return Ok(steps),
            Err(e) => return Err(e.into()),
        };
        for stored in &page.entities {
            let entity = &stored.entity;
            if entity.row_key == DOWNLOADS_ROW || (!notes && entity.str("Kind") == Some("Note")) {
                continue;
            }
            let Some(time) = entity
                .str("IssuedTime")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            else {
                tracing::warn!(file = %id, row = %entity.row_key, "unreadable audit row skipped");
                continue;
            };
            steps.push(step_of(entity, time.with_timezone(&Utc)));
        }
        continuation = page.continuation;
        if continuation.is_none() {
            return Ok(steps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bytes_in_words;

    #[test]
    fn sizes_are_told_in_binary_units() {
        assert_eq!(bytes_in_words(512), "512 bytes");
        assert_eq!(bytes_in_words(1536), "1.5 KiB");
        assert_eq!(bytes_in_words(1_288_490_189), "1.2 GiB");
    }
}
