//! What the workflow's history cannot hold because it happens after the workflow ended: the
//! download links handed out. One row per link in table `files`, partition `audit-<file id>`:
//! written before the link is returned, read by a file's history with one partition query, so
//! the cost stays with the file and never grows with other files.

use chrono::{DateTime, Utc};

use crate::domain::{FileId, Principal};
use crate::store::{Entity, Storage, StoreError, TableQuery};
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

impl LinkIssued {
    pub fn to_entity(&self, id: FileId) -> Entity {
        // Time first, so rows sort in issue order; a random tail keeps two links issued in
        // the same instant apart.
        let row_key = format!(
            "{}-{}",
            self.issued_time.format("%Y%m%dT%H%M%S%.9fZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut entity = Entity::new(partition(id), row_key)
            .with("Kind", "LinkIssued")
            .with("IssuedTime", self.issued_time.to_rfc3339())
            .with("ExpiresTime", self.expires_at.to_rfc3339());
        if let Some(requester) = &self.requester {
            entity = entity.with("RequesterName", requester.as_str());
            if let Some(id) = requester.id() {
                entity = entity.with("RequesterId", id);
            }
        }
        entity
    }
}

/// The links issued for file `id`, as history steps, oldest first.
pub(super) async fn links_issued(store: &dyn Storage, id: FileId) -> Result<Vec<Step>, FilesError> {
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
            let Some(time) = entity
                .str("IssuedTime")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            else {
                tracing::warn!(file = %id, row = %entity.row_key, "unreadable audit row skipped");
                continue;
            };
            let actor = entity
                .str("RequesterName")
                .and_then(|name| Principal::parse(name, entity.str("RequesterId")).ok());
            steps.push(Step {
                step: "linkIssued",
                time: time.with_timezone(&Utc),
                actor,
                stage: None,
                outcome: entity
                    .str("ExpiresTime")
                    .map(|e| format!("valid until {e}")),
                comment: None,
            });
        }
        continuation = page.continuation;
        if continuation.is_none() {
            return Ok(steps);
        }
    }
}
