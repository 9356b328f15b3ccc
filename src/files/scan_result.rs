//! A malware-scanning result from Microsoft Defender for Storage, delivered by Event Grid: matched
//! to its file by the blob's URL and to its bytes by the blob's ETag, then handed to the file's
//! workflow, which waits in `Scanning` for it.

use super::view::FileView;
use super::{Files, FilesError};
use crate::domain::{FileId, Refusal, Stage};
use crate::engine::{EngineError, RaiseOutcome};
use crate::store::{StoreError, FILES_CONTAINER, UPLOADS_CONTAINER, VERSIONS_CONTAINER};
use crate::workflow::{self, DefenderResult, ScanVia};

/// What became of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanResultOutcome {
    /// Handed to the file's workflow.
    Recorded(FileId),
    /// The same result again (Event Grid delivers at least once).
    Duplicate(FileId),
    /// Not for a file waiting for it, or for other bytes: why, for the log.
    Ignored(String),
}

/// The container and file id a blob URL names: its last two path segments (an account name
/// comes first on Azurite's path-style URLs).
fn file_of(blob_uri: &str) -> Option<(&'static str, FileId)> {
    let url = url::Url::parse(blob_uri).ok()?;
    let mut segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    let name = segments.pop()?;
    let container = match segments.pop()? {
        c if c == FILES_CONTAINER => FILES_CONTAINER,
        c if c == UPLOADS_CONTAINER => UPLOADS_CONTAINER,
        // A new version's blob, `{id}-v{n}`.
        c if c == VERSIONS_CONTAINER => {
            let (id, number) = name.rsplit_once("-v")?;
            number.parse::<u32>().ok()?;
            return Some((VERSIONS_CONTAINER, FileId::parse(id).ok()?));
        }
        _ => return None,
    };
    Some((container, FileId::parse(name).ok()?))
}

/// The blob name a result's URL ends with.
fn blob_name_of(blob_uri: &str) -> Option<String> {
    let url = url::Url::parse(blob_uri).ok()?;
    let name = url.path_segments()?.rfind(|s| !s.is_empty())?;
    Some(name.to_owned())
}

/// ETags compare without their quotes and case: Defender writes `0x8DC…`, the blob service
/// answers `"0x8DC…"`.
fn same_version(a: &str, b: &str) -> bool {
    a.trim_matches('"')
        .eq_ignore_ascii_case(b.trim_matches('"'))
}

impl Files {
    /// Hands a Defender result to the workflow of the file it is about, once its bytes are
    /// shown to be the ones scanned. Results for no file of this app, for a file that is not
    /// waiting for one (it was decided already, or scans another way), or for other bytes (the
    /// blob was replaced since) are ignored, with the reason. Errors are worth a redelivery
    /// (storage unavailable).
    pub async fn record_scan_result(
        &self,
        result: &DefenderResult,
    ) -> Result<ScanResultOutcome, FilesError> {
        let ignored = |why: String| Ok(ScanResultOutcome::Ignored(why));
        let Some((container, id)) = file_of(&result.blob_uri) else {
            return ignored("the blob is not a file of this app".into());
        };
        let view = match self.load(id).await {
            Ok(view) => view,
            Err(FilesError::Refused(Refusal::NotFound(_))) => {
                return ignored(format!("file {id} does not exist"))
            }
            Err(e) => return Err(e),
        };
        let FileView::Workflow { summary, .. } = &view else {
            return ignored(format!("file {id}'s workflow has not started"));
        };
        let via_defender = summary
            .file
            .scan
            .is_some_and(|rules| rules.via == ScanVia::Defender);
        let scanned_name = blob_name_of(&result.blob_uri);
        if !via_defender
            || summary.stage != Stage::Scanning
            || summary.file.container() != container
            || scanned_name.as_deref() != Some(summary.file.blob_name())
        {
            return ignored(format!(
                "file {id} is not waiting for a Defender result (stage {})",
                summary.stage
            ));
        }
        // The version the workflow pinned: a result for bytes written later is not its.
        let properties = match self.store.properties_at(summary.file.bytes()).await {
            Ok(p) => p,
            Err(StoreError::NotFound) => return ignored(format!("file {id} has no bytes")),
            Err(e) => return Err(e.into()),
        };
        if !same_version(properties.etag.as_str(), &result.etag) {
            return ignored(format!(
                "the result is for other bytes of file {id} (ETag {} scanned, {} stored)",
                result.etag,
                properties.etag.as_str()
            ));
        }
        let event = workflow::scan_result_event(result, properties.etag.as_str())?;
        match self.engine.raise_event(&id.to_string(), event).await {
            Ok(RaiseOutcome::Recorded(_)) => {
                tracing::info!(file = %id, verdict = %result.report.verdict, "Defender's result recorded");
                Ok(ScanResultOutcome::Recorded(id))
            }
            Ok(RaiseOutcome::Duplicate(_)) => Ok(ScanResultOutcome::Duplicate(id)),
            // Decided between the load and the turn.
            Err(EngineError::UnexpectedCustomStatus { .. } | EngineError::NotRunning { .. }) => {
                ignored(format!("file {id} is no longer waiting for a scan result"))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_urls_name_their_file_on_azure_and_on_azurite() {
        let id = "3f1c0e1e-7d5c-4b8e-9a39-0c5d2b1f6a11";
        let (container, found) =
            file_of(&format!("https://acct.blob.core.windows.net/uploads/{id}")).unwrap();
        assert_eq!(container, UPLOADS_CONTAINER);
        assert_eq!(found.to_string(), id);
        let (container, _) = file_of(&format!(
            "http://127.0.0.1:10000/devstoreaccount1/files/{id}"
        ))
        .unwrap();
        assert_eq!(container, FILES_CONTAINER);
        assert!(file_of(&format!("https://acct.blob.core.windows.net/other/{id}")).is_none());
        assert!(file_of("https://acct.blob.core.windows.net/files/not-an-id").is_none());
        assert!(file_of("not a url").is_none());
        let (container, found) = file_of(&format!(
            "https://acct.blob.core.windows.net/versions/{id}-v2"
        ))
        .unwrap();
        assert_eq!(container, VERSIONS_CONTAINER);
        assert_eq!(found.to_string(), id);
        assert!(file_of(&format!(
            "https://acct.blob.core.windows.net/versions/{id}-vx"
        ))
        .is_none());
    }

    #[test]
    fn etags_match_without_quotes_or_case() {
        assert!(same_version("\"0x8DC12AB\"", "0x8dc12ab"));
        assert!(!same_version("\"0x8DC12AB\"", "0x8DC12AC"));
    }
}
