//! Related files, for reviewers: earlier files with the same bytes (and how each ended), and
//! the uploader's recent files. Each list is one partition of the related-files index
//! ([`crate::workflow::related`]), read newest first; the same-bytes list is paged.

use chrono::{DateTime, Utc};

use super::{FilePage, FileRecord, FileView, Files, FilesError};
use crate::domain::{FileId, Principal, Refusal, Stage};
use crate::store::{Entity, StoreError, TableQuery};
use crate::workflow::related::{self, RELATED_TABLE};

/// How many files one page of a list holds.
const PAGE: u32 = 10;

/// Files read at once for a page: about one round trip per this many files.
const READS_IN_FLIGHT: usize = 8;

/// One related file as a reviewer sees it.
#[derive(Debug, Clone)]
pub struct RelatedFile {
    pub id: FileId,
    pub name: String,
    /// The version that held the same bytes (1 for the uploader's list).
    pub version: u32,
    pub uploaded_time: DateTime<Utc>,
    pub stage: Stage,
    /// Who decided it last, when and why: a rejection's or change request's reason, say.
    pub decided_by: Option<Principal>,
    pub decided_time: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// What [`Files::related`] found.
#[derive(Debug, Clone, Default)]
pub struct Related {
    /// Other files whose bytes were the same as this one's current version, newest first.
    pub same_bytes: Vec<RelatedFile>,
    /// Where the same-bytes list goes on, if it does.
    pub continuation: Option<String>,
    /// The uploader's most recent other files (the first page only).
    pub by_uploader: Vec<RelatedFile>,
}

impl Files {
    /// Records an upload in its uploader's list, before its record and bytes (a row whose
    /// upload never committed names no file; listings skip it).
    pub(super) async fn index_uploader(&self, record: &FileRecord) -> Result<(), FilesError> {
        let Some(uploader) = &record.uploader else {
            return Ok(());
        };
        let row = Entity::new(
            related::by_uploader_partition(uploader),
            format!(
                "{}-{}",
                related::newest_first(record.created_time),
                record.id
            ),
        )
        .with("FileId", record.id.to_string())
        .with("Version", 1i64)
        .with("Name", record.name.as_str());
        match self.store.insert_entity(RELATED_TABLE, &row).await {
            Ok(_) | Err(StoreError::AlreadyExists) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The files related to file `id`: the same bytes (paged by `continuation`) and, on the
    /// first page, the uploader's recent files. Two partition reads, then one read per file
    /// listed for where it stands now.
    pub async fn related(
        &self,
        id: FileId,
        continuation: Option<String>,
    ) -> Result<Related, FilesError> {
        let continuation = position_of(continuation)?;
        let view = self.load(id).await?;
        let FileView::Workflow { summary, .. } = &view else {
            return Ok(Related::default());
        };
        let mut found = Related::default();
        let sha = summary
            .analysis
            .as_ref()
            .and_then(|a| a.get("sha256"))
            .and_then(|s| s.as_str());
        if let Some(sha) = sha {
            let (rows, next) = self
                .index_page(related::by_hash_partition(sha), continuation.clone())
                .await?;
            found.continuation = token_of(next);
            found.same_bytes = self.describe(rows, id).await?;
        }
        if let (None, Some(uploader)) = (continuation, &summary.file.uploader) {
            let (rows, _) = self
                .index_page(related::by_uploader_partition(uploader), None)
                .await?;
            found.by_uploader = self.describe(rows, id).await?;
        }
        Ok(found)
    }

    /// A page of an index partition, newest first, after `position` (the row key a page
    /// ended on; any string is a position, as listings' tokens are). The next page's position
    /// comes back when the page was full.
    async fn index_page(
        &self,
        partition: String,
        position: Option<String>,
    ) -> Result<(Vec<Entity>, Option<String>), FilesError> {
        self.index_page_of(partition, position, PAGE).await
    }

    /// [`Files::index_page`] with pages of `size` rows.
    async fn index_page_of(
        &self,
        partition: String,
        position: Option<String>,
        size: u32,
    ) -> Result<(Vec<Entity>, Option<String>), FilesError> {
        // Row keys are digits and ids: "~" sorts after all of them.
        let start = position.clone().unwrap_or_default();
        let query = TableQuery {
            row_keys: Some(start.."~".to_owned()),
            // One more, for the row at the position itself, which the previous page showed.
            top: Some(size + 1),
            ..TableQuery::partition(partition)
        };
        let mut rows: Vec<Entity> = match self.store.query(RELATED_TABLE, &query).await {
            Ok(page) => page.entities.into_iter().map(|s| s.entity).collect(),
            Err(StoreError::NotFound) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if let Some(position) = &position {
            rows.retain(|row| &row.row_key != position);
        }
        rows.truncate(size as usize);
        let next = (rows.len() == size as usize)
            .then(|| rows.last().map(|row| row.row_key.clone()))
            .flatten();
        Ok((rows, next))
    }

    /// `uploader`'s files, newest first: only those in `stage` when given, and only those
    /// `decider` may decide now when given. One partition read of their list, then one read
    /// per file for where it stands now. A row whose upload never committed names no file and
    /// is left out, so a page may hold fewer than `top` files (even none) with a continuation
    /// to follow.
    pub async fn uploads(
        &self,
        uploader: &Principal,
        stage: Option<Stage>,
        decider: Option<&Principal>,
        top: u32,
        continuation: Option<String>,
    ) -> Result<FilePage, FilesError> {
        let keep = |view: &FileView| {
            stage.is_none_or(|s| view.stage() == s)
                && decider.is_none_or(|r| super::actions::may_approve(view, r))
        };
        let position = position_of(continuation)?;
        let (rows, next) = self
            .index_page_of(related::by_uploader_partition(uploader), position, top)
            .await?;
        let files = self
            .load_rows(rows, None)
            .await?
            .into_iter()
            .map(|(_, _, view)| view)
            .filter(keep)
            .collect();
        Ok(FilePage {
            files,
            continuation: token_of(next),
        })
    }

    /// The files an index page names (but `except`), in its order, each with its id as it
    /// stands now:
    /// read [`READS_IN_FLIGHT`] at a time. A row that names no file (an upload that never
    /// committed, or one removed since) is left out.
    async fn load_rows(
        &self,
        rows: Vec<Entity>,
        except: Option<FileId>,
    ) -> Result<Vec<(Entity, FileId, FileView)>, FilesError> {
        use futures::{StreamExt, TryStreamExt};
        let named = rows.into_iter().filter_map(|row| {
            let id = row.str("FileId").and_then(|s| FileId::parse(s).ok())?;
            (Some(id) != except).then_some((row, id))
        });
        futures::stream::iter(named)
            .map(|(row, id)| async move {
                match self.load(id).await {
                    Ok(view) => Ok(Some((row, id, view))),
                    Err(FilesError::Refused(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(READS_IN_FLIGHT)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await
    }

    /// Each row's file as it stands now; the file itself, and rows naming no file, are left out.
    async fn describe(
        &self,
        rows: Vec<Entity>,
        this: FileId,
    ) -> Result<Vec<RelatedFile>, FilesError> {
        let mut files = Vec::new();
        for (row, id, view) in self.load_rows(rows, Some(this)).await? {
            let (uploaded_time, last) = match &view {
                FileView::Workflow { summary, .. } => (
                    summary.file.created_time,
                    summary
                        .approvals
                        .iter()
                        .rev()
                        .find(|d| !d.approved)
                        .cloned(),
                ),
                FileView::Uploaded { record, .. } => (record.created_time, None),
            };
            files.push(RelatedFile {
                id,
                name: row.str("Name").unwrap_or_default().to_owned(),
                version: u32::try_from(row.i64("Version").unwrap_or(1)).unwrap_or(1),
                uploaded_time,
                stage: view.stage(),
                decided_by: last.as_ref().map(|d| d.principal()),
                decided_time: last.as_ref().map(|d| d.decided_time),
                reason: last.and_then(|d| d.comment),
            });
        }
        Ok(files)
    }
}

/// The continuation token of a page that ends at `position` (the row key to continue after).
pub(super) fn token_of(position: Option<String>) -> Option<String> {
    position.map(|p| hex::encode(p.as_bytes()))
}

/// The position a continuation token names, as [`token_of`] writes it.
pub(super) fn position_of(token: Option<String>) -> Result<Option<String>, FilesError> {
    token
        .map(|token| {
            hex::decode(&token)
                .ok()
                .filter(|bytes| !bytes.is_empty())
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .ok_or(FilesError::Refused(Refusal::InvalidQuery(
                    "continuationToken is malformed".into(),
                )))
        })
        .transpose()
}
