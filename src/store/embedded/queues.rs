//! Azure Queue Storage semantics over SQLite: messages with a visibility time, dequeue counts and
//! pop receipts, in the same database (and the same exclusive ownership) as the tables.
//!
//! Time is the store's clock, so tests move a delayed message into view by moving the clock.
//! A reception hides the message until `now + visibility` and issues a fresh pop receipt; an
//! older receipt no longer deletes or renews it, as on Azure.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::sql_error;
use crate::store::{MessageReceipt, NextVisible, ReceivedMessage, StoreError, StoreResult};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS messages (
    queue         TEXT NOT NULL,
    id            TEXT NOT NULL,
    text          TEXT NOT NULL,
    inserted_us   INTEGER NOT NULL,
    visible_us    INTEGER NOT NULL,
    dequeue_count INTEGER NOT NULL,
    pop_receipt   TEXT NOT NULL,
    PRIMARY KEY (queue, id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (queue, visible_us, inserted_us);
";

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::internal(format!("a message time {us} is out of range")))
}

fn require_queue(conn: &Connection, queue: &str) -> StoreResult<()> {
    let exists = conn
        .query_row(
            "SELECT 1 FROM queues WHERE name = ?1",
            params![queue],
            |_| Ok(()),
        )
        .optional()
        .map_err(sql_error)?;
    exists.ok_or(StoreError::NotFound)
}

pub(super) fn ensure_queue(conn: &Connection, queue: &str) -> StoreResult<()> {
    conn.execute(
        "INSERT OR IGNORE INTO queues (name) VALUES (?1)",
        params![queue],
    )
    .map_err(sql_error)
    .map(drop)
}

pub(super) fn enqueue(
    conn: &mut Connection,
    queue: &str,
    text: &str,
    now: DateTime<Utc>,
    visible_at: DateTime<Utc>,
) -> StoreResult<MessageReceipt> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    require_queue(&tx, queue)?;
    let receipt = MessageReceipt {
        id: uuid::Uuid::new_v4().to_string(),
        pop_receipt: uuid::Uuid::new_v4().to_string(),
    };
    tx.execute(
        "INSERT INTO messages (queue, id, text, inserted_us, visible_us, dequeue_count, pop_receipt)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
        params![
            queue,
            receipt.id,
            text,
            micros(now),
            micros(visible_at),
            receipt.pop_receipt
        ],
    )
    .map_err(sql_error)?;
    tx.commit().map_err(sql_error)?;
    Ok(receipt)
}

pub(super) fn dequeue(
    conn: &mut Connection,
    queue: &str,
    max: u32,
    now: DateTime<Utc>,
    hidden_until: DateTime<Utc>,
) -> StoreResult<Vec<ReceivedMessage>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    require_queue(&tx, queue)?;
    let visible: Vec<(String, String, i64, i64)> = {
        let mut statement = tx
            .prepare(
                "SELECT id, text, inserted_us, dequeue_count FROM messages
                 WHERE queue = ?1 AND visible_us <= ?2
                 ORDER BY visible_us, inserted_us LIMIT ?3",
            )
            .map_err(sql_error)?;
        let rows = statement
            .query_map(params![queue, micros(now), i64::from(max)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(sql_error)?;
        rows.collect::<Result<_, _>>().map_err(sql_error)?
    };
    let mut received = Vec::with_capacity(visible.len());
    for (id, text, inserted_us, count) in visible {
        let pop_receipt = uuid::Uuid::new_v4().to_string();
        tx.execute(
            "UPDATE messages SET visible_us = ?1, dequeue_count = dequeue_count + 1, pop_receipt = ?2
             WHERE queue = ?3 AND id = ?4",
            params![micros(hidden_until), pop_receipt, queue, id],
        )
        .map_err(sql_error)?;
        received.push(ReceivedMessage {
            text,
            dequeue_count: u32::try_from(count + 1).unwrap_or(u32::MAX),
            inserted: from_micros(inserted_us)?,
            receipt: MessageReceipt { id, pop_receipt },
        });
    }
    tx.commit().map_err(sql_error)?;
    Ok(received)
}

/// The row of a reception that is still current, or `NotFound`.
fn current(conn: &Connection, queue: &str, receipt: &MessageReceipt) -> StoreResult<()> {
    require_queue(conn, queue)?;
    let found: Option<String> = conn
        .query_row(
            "SELECT pop_receipt FROM messages WHERE queue = ?1 AND id = ?2",
            params![queue, receipt.id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_error)?;
    match found {
        Some(pop) if pop == receipt.pop_receipt => Ok(()),
        _ => Err(StoreError::NotFound),
    }
}

pub(super) fn renew(
    conn: &mut Connection,
    queue: &str,
    receipt: &MessageReceipt,
    hidden_until: DateTime<Utc>,
) -> StoreResult<MessageReceipt> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    current(&tx, queue, receipt)?;
    let pop_receipt = uuid::Uuid::new_v4().to_string();
    tx.execute(
        "UPDATE messages SET visible_us = ?1, pop_receipt = ?2 WHERE queue = ?3 AND id = ?4",
        params![micros(hidden_until), pop_receipt, queue, receipt.id],
    )
    .map_err(sql_error)?;
    tx.commit().map_err(sql_error)?;
    Ok(MessageReceipt {
        id: receipt.id.clone(),
        pop_receipt,
    })
}

pub(super) fn delete(
    conn: &mut Connection,
    queue: &str,
    receipt: &MessageReceipt,
) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    current(&tx, queue, receipt)?;
    tx.execute(
        "DELETE FROM messages WHERE queue = ?1 AND id = ?2",
        params![queue, receipt.id],
    )
    .map_err(sql_error)?;
    tx.commit().map_err(sql_error)
}

pub(super) fn next_visible(conn: &Connection, queue: &str) -> StoreResult<NextVisible> {
    require_queue(conn, queue)?;
    let earliest: Option<i64> = conn
        .query_row(
            "SELECT MIN(visible_us) FROM messages WHERE queue = ?1",
            params![queue],
            |r| r.get(0),
        )
        .map_err(sql_error)?;
    match earliest {
        None => Ok(NextVisible::Empty),
        Some(us) => Ok(NextVisible::At(from_micros(us)?)),
    }
}
