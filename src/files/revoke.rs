//! A reviewer takes an approval back: every download link stops giving bytes at once.

use super::decide::decided;
use super::{Decided, Files, FilesError};
use crate::domain::{FileId, Principal, Refusal, Stage};
use crate::engine::{EngineError, RaiseOutcome};
use crate::workflow::{self, RevocationEvent};

impl Files {
    /// Moves an `Approved` file to `Revoked` (final), with the reason the reviewer gave. The
    /// links handed out before are checked at every use, so none gives bytes from now on; a
    /// storage link one of them led to just before lives out its few minutes
    /// ([`super::Policy::fetch_ttl`]). The bytes then follow the retention of refused files.
    /// Refused (`WrongStage`) for a file that is not approved; the same reviewer saying it
    /// again changes nothing.
    pub async fn revoke(
        &self,
        id: FileId,
        reviewer: &Principal,
        comment: String,
    ) -> Result<Decided, FilesError> {
        let revocation = RevocationEvent {
            reviewer: reviewer.to_string(),
            reviewer_id: reviewer.id().map(str::to_owned),
            comment,
            revoked_time: self.clock.now(),
        };
        match self
            .engine
            .raise_event(&id.to_string(), workflow::revocation_event(&revocation)?)
            .await
        {
            Ok(raised) => {
                if matches!(raised, RaiseOutcome::Recorded(_)) {
                    tracing::warn!(file = %id, reviewer = %reviewer, "approval revoked");
                }
                decided(raised)
            }
            // Not approved (yet, or any more), or approved before workflows stayed to hear a
            // revocation (their instance has completed).
            Err(
                EngineError::InstanceNotFound(_)
                | EngineError::UnexpectedCustomStatus { .. }
                | EngineError::NotRunning { .. },
            ) => {
                // `load` says NotFound for a file that does not exist.
                let current = self.load(id).await?.stage();
                let why = if current == Stage::Approved {
                    "it was approved before revocation existed, so its workflow has ended; \
                     its links stay valid until they expire"
                        .to_owned()
                } else {
                    format!(
                        "only an approved file can be revoked, and it is {}",
                        current.describe()
                    )
                };
                Err(FilesError::Refused(Refusal::WrongStage {
                    message: format!("file {id} cannot be revoked: {why}"),
                    current,
                }))
            }
            Err(e) => Err(e.into()),
        }
    }
}
