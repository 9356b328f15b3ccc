//! [`IndexWriter`]: the status index's writes, gathered. Every index row lives in one partition,
//! so the index writes of turns running at the same time can travel as one entity group
//! transaction: under load a burst of decisions costs one index request per round trip instead
//! of one per decision, and the partition (a single hot spot on Table Storage) sees fewer
//! requests. Nothing waits for company: the first writer goes at once, and writers that arrive
//! while its batch is in flight go together in the next (a leader-follower group commit).

use std::sync::Mutex;

use tokio::sync::oneshot;

use super::vocabulary::index::{IndexChange, INDEX_PARTITION};
use crate::store::{BatchOp, Entity, Storage, StoreError};

/// Table Storage's limit on one entity group transaction.
const MAX_GROUP_OPS: usize = 100;

struct Pending {
    ops: Vec<BatchOp>,
    /// `true`: written with the group; `false`: the group failed, the writer writes its own.
    done: oneshot::Sender<bool>,
}

#[derive(Default)]
pub(super) struct IndexWriter {
    pending: Mutex<Vec<Pending>>,
    /// Held by the writer whose group is in flight.
    leader: tokio::sync::Mutex<()>,
}

impl IndexWriter {
    /// Writes `ops` (inserts and deletes of index rows, at most [`MAX_GROUP_OPS`]). A row
    /// already there (an insert retried) or already gone (a delete a listing beat) is no
    /// failure.
    pub(super) async fn write(
        &self,
        store: &dyn Storage,
        table: &str,
        ops: Vec<BatchOp>,
    ) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (done, mut written) = oneshot::channel();
        self.lock_pending().push(Pending {
            ops: ops.clone(),
            done,
        });
        loop {
            let leader = self.leader.lock().await;
            match written.try_recv() {
                Ok(true) => return Ok(()),
                Ok(false) | Err(oneshot::error::TryRecvError::Closed) => {
                    drop(leader);
                    return write_each(store, table, ops).await;
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            // This writer leads: everything waiting goes, oldest first, as far as one
            // transaction holds (its own ops included, unless older ones fill it).
            let group = self.take_group();
            let all: Vec<BatchOp> = group.iter().flat_map(|p| p.ops.iter().cloned()).collect();
            let ok = store.batch(table, INDEX_PARTITION, all).await.is_ok();
            for member in group {
                let _ = member.done.send(ok);
            }
        }
    }

    fn take_group(&self) -> Vec<Pending> {
        let mut pending = self.lock_pending();
        let mut ops = 0;
        let mut taken = 0;
        for p in pending.iter() {
            if taken > 0 && ops + p.ops.len() > MAX_GROUP_OPS {
                break;
            }
            ops += p.ops.len();
            taken += 1;
        }
        pending.drain(..taken).collect()
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `ops` one request each: after a group failed (one member's row already gone fails them
/// all), so that each writer gets its own answer.
async fn write_each(store: &dyn Storage, table: &str, ops: Vec<BatchOp>) -> Result<(), StoreError> {
    for op in ops {
        let done = match op {
            BatchOp::Insert(entity) => store.insert_entity(table, &entity).await.map(drop),
            BatchOp::Delete { row_key, .. } => {
                store
                    .delete_entity(table, INDEX_PARTITION, &row_key, None)
                    .await
            }
            BatchOp::Update { entity, if_match } => store
                .batch(
                    table,
                    INDEX_PARTITION,
                    vec![BatchOp::Update { entity, if_match }],
                )
                .await
                .map(drop),
        };
        match done {
            Ok(()) | Err(StoreError::NotFound | StoreError::AlreadyExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The writes around a turn's commit (`index.rs` says why in this order).
impl IndexWriter {
    /// The index writes that go ahead of a commit (with those of turns committing at the same
    /// time); a row already gone or already there (a retried turn) is no failure.
    pub(super) async fn before(
        &self,
        store: &dyn Storage,
        table: &str,
        change: &IndexChange,
    ) -> Result<(), StoreError> {
        let mut ops = Vec::new();
        if let Some(row) = &change.insert {
            ops.push(BatchOp::Insert(Entity::new(INDEX_PARTITION, row.as_str())));
        }
        if let Some(row) = &change.delete_before {
            ops.push(BatchOp::Delete {
                row_key: row.clone(),
                if_match: None,
            });
        }
        self.write(store, table, ops).await
    }

    /// The index write that follows a commit. Best effort: a row left behind is one no state
    /// names, which the next listing that meets it deletes.
    pub(super) async fn after(&self, store: &dyn Storage, table: &str, change: &IndexChange) {
        if let Some(row) = &change.delete_after {
            let delete = BatchOp::Delete {
                row_key: row.clone(),
                if_match: None,
            };
            if let Err(e) = self.write(store, table, vec![delete]).await {
                tracing::warn!(row, error = %e, "could not delete a stale index row; a listing will");
            }
        }
    }
}
