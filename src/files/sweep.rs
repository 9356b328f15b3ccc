//! Housekeeping: what failed or abandoned uploads left behind.

use chrono::{DateTime, Utc};

use super::TriggerFacts;
use super::{FileRecord, Files, FilesError, FILES_TABLE, OPEN_UPLOADS};
use crate::store::{StoreError, TableQuery};

/// What one sweep of the open uploads did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Committed uploads whose workflow the sweep started (or found started).
    pub started: usize,
    /// Uploads that never committed, removed with their records.
    pub abandoned: usize,
    /// Markers the sweep could not settle this time (logged; retried on the next pass).
    pub failures: usize,
}

impl Files {
    /// Settles the open uploads old enough to need it (module docs): one query of the
    /// open-uploads partition, then a blob check for each record past the grace.
    pub async fn sweep_uploads(&self) -> Result<SweepReport, FilesError> {
        let now = self.clock.now();
        let settle_before = now - self.policy.start_grace;
        let abandon_before = now - self.policy.abandon_uploads_after;
        let mut report = SweepReport::default();
        let mut continuation = None;
        loop {
            let page = self
                .store
                .query(
                    FILES_TABLE,
                    &TableQuery {
                        continuation,
                        ..TableQuery::partition(OPEN_UPLOADS.to_owned())
                    },
                )
                .await?;
            for stored in &page.entities {
                let record = match FileRecord::from_entity(&stored.entity) {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::error!(error = %e, "unreadable open-upload record");
                        report.failures += 1;
                        continue;
                    }
                };
                if record.created_time > settle_before {
                    continue;
                }
                match self.settle(&record, abandon_before).await {
                    Ok(Some(true)) => report.started += 1,
                    Ok(Some(false)) => report.abandoned += 1,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(file = %record.id, error = %e, "could not settle an open upload; the next sweep will");
                        report.failures += 1;
                    }
                }
            }
            continuation = page.continuation;
            if continuation.is_none() {
                break;
            }
        }
        if report != SweepReport::default() {
            tracing::info!(?report, "swept open uploads");
        }
        Ok(report)
    }

    /// `Some(true)`: started; `Some(false)`: removed as abandoned; `None`: still in flight.
    pub(super) async fn settle(
        &self,
        record: &FileRecord,
        abandon_before: DateTime<Utc>,
    ) -> Result<Option<bool>, FilesError> {
        let id = record.id;
        // An upload URL's upload may still arrive until the URL expires.
        let since = match record.direct {
            Some(direct) => direct.url_expires_at,
            None => record.created_time,
        };
        match self
            .store
            .blob_properties(record.container(), &id.to_string())
            .await
        {
            Ok(props) => {
                let facts = TriggerFacts {
                    record: Some(record.clone()),
                    blob_size: Some(props.size),
                    blob_created: None,
                    blob_etag: Some(props.etag.clone()),
                };
                self.start(id, facts).await?;
                Ok(Some(true))
            }
            Err(StoreError::NotFound) if since < abandon_before => {
                // Its bytes, if any, are gone with it: the embedded store removes a failed
                // write's file at once (and a crashed one's at open); Azure discards
                // uncommitted blocks itself after 7 days.
                self.forget_record(id).await;
                tracing::info!(file = %id, since = %record.created_time, "removed an upload that never finished");
                Ok(Some(false))
            }
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
