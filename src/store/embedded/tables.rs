//! Table Storage semantics over SQLite: the schema, entity reads and writes, batches and paged
//! queries.
//!
//! Every write runs in an `IMMEDIATE` transaction that reads the row's current ETag, decides,
//! and writes, so the check and the write cannot be split by another writer (in this process
//! the connection mutex already serializes them; the transaction keeps that true for the
//! database itself). ETags come from one counter stored in the database and bumped by every
//! write, blob or entity, so a version is never reissued, not even after a restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::sql_error;
use crate::store::{
    validate_key, BatchOp, ETag, Entity, Page, Prop, StoreError, StoreResult, StoredEntity,
    TableQuery,
};

/// Bumped when the schema changes; `open_database` refuses a database from a newer version.
/// 2: queues (`super::queues`).
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0);

CREATE TABLE IF NOT EXISTS tables (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS entities (
    tbl   TEXT NOT NULL,
    pk    TEXT NOT NULL,
    rk    TEXT NOT NULL,
    props TEXT NOT NULL,
    etag  TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, rk)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS blobs (
    container    TEXT NOT NULL,
    name         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    md5          BLOB NOT NULL,
    etag         TEXT NOT NULL,
    modified_us  INTEGER NOT NULL,
    PRIMARY KEY (container, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS pending_blobs (
    container    TEXT NOT NULL,
    name         TEXT NOT NULL,
    tmp          TEXT NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    md5          BLOB NOT NULL,
    etag         TEXT NOT NULL,
    modified_us  INTEGER NOT NULL,
    PRIMARY KEY (container, name, tmp)
) WITHOUT ROWID;
";

/// Table Storage's limits on one entity, enforced here so a local run refuses what Azure would.
const MAX_PROPERTIES: usize = 252;
const MAX_STRING_BYTES: usize = 64 * 1024;
const MAX_ENTITY_BYTES: usize = 1024 * 1024;
/// Table Storage's page limit.
const MAX_PAGE: u32 = 1000;

/// Opens the database, takes the directory's exclusive lock and brings the schema up to date.
pub(super) fn open_database(path: &Path) -> StoreResult<Connection> {
    let mut conn = Connection::open(path).map_err(sql_error)?;
    // Exclusive locking mode: the first write below takes a lock this connection keeps until
    // it closes, which is what makes the data directory single-owner (see the module docs of
    // `embedded`). In WAL mode it also avoids the shared-memory index entirely.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .map_err(sql_error)?;
    conn.busy_timeout(Duration::from_millis(200))
        .map_err(sql_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(in_use(path))?;
    // FULL: a write reported as committed survives a power cut, which conditional writes
    // promise (a lost commit would let a stale ETag win again).
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql_error)?;

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(in_use(path))?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql_error)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Invalid(format!(
            "{} has schema version {version}, newer than this build's {SCHEMA_VERSION}",
            path.display()
        )));
    }
    tx.execute_batch(SCHEMA).map_err(sql_error)?;
    tx.execute_batch(super::queues::SCHEMA).map_err(sql_error)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sql_error)?;
    tx.commit().map_err(sql_error)?;
    Ok(conn)
}

/// A locked database at open time means another process owns the data directory.
fn in_use(path: &Path) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::unavailable(format!(
                "{} is in use by another process (one process per data directory)",
                path.display()
            ))
        }
        _ => sql_error(e),
    }
}

/// The next value of the store-wide version counter.
pub(super) fn next_seq(conn: &Connection) -> StoreResult<i64> {
    conn.query_row(
        "UPDATE meta SET value = value + 1 WHERE key = 'seq' RETURNING value",
        [],
        |r| r.get(0),
    )
    .map_err(sql_error)
}

fn new_entity_etag(conn: &Connection) -> StoreResult<ETag> {
    Ok(ETag::new(format!("W/\"{}\"", next_seq(conn)?)))
}

/// Table names are case-insensitive in Table Storage: `Workflow` and `workflow` are one table.
fn table_key(table: &str) -> String {
    table.to_ascii_lowercase()
}

pub(super) fn ensure_table(conn: &mut Connection, table: &str) -> StoreResult<()> {
    conn.execute(
        "INSERT OR IGNORE INTO tables (name) VALUES (?1)",
        [table_key(table)],
    )
    .map_err(sql_error)?;
    Ok(())
}

fn require_table(conn: &Connection, key: &str) -> StoreResult<()> {
    let found = conn
        .query_row("SELECT 1 FROM tables WHERE name = ?1", [key], |_| Ok(()))
        .optional()
        .map_err(sql_error)?;
    found.ok_or(StoreError::NotFound)
}

pub(super) fn get_entity(
    conn: &mut Connection,
    table: &str,
    pk: &str,
    rk: &str,
) -> StoreResult<StoredEntity> {
    let key = table_key(table);
    require_table(conn, &key)?;
    let (props, etag) = current(conn, &key, pk, rk)?.ok_or(StoreError::NotFound)?;
    Ok(StoredEntity {
        entity: Entity {
            partition_key: pk.to_owned(),
            row_key: rk.to_owned(),
            props: decode_props(&props)?,
        },
        etag: ETag::new(etag),
    })
}

/// One write in its own transaction. `pk` is the partition of a delete (other operations carry
/// theirs in the entity).
pub(super) fn write(
    conn: &mut Connection,
    table: &str,
    pk: &str,
    op: &BatchOp,
) -> StoreResult<Option<ETag>> {
    let key = table_key(table);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    require_table(&tx, &key)?;
    let etag = apply(&tx, &key, pk, op)?;
    tx.commit().map_err(sql_error)?;
    Ok(etag)
}

/// An entity group transaction: every operation in one SQLite transaction, which is dropped
/// (rolled back) at the first failure. The caller has run `validate_batch`.
pub(super) fn batch(
    conn: &mut Connection,
    table: &str,
    pk: &str,
    operations: &[BatchOp],
) -> StoreResult<Vec<Option<ETag>>> {
    let key = table_key(table);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    require_table(&tx, &key)?;
    let etags = operations
        .iter()
        .map(|op| apply(&tx, &key, pk, op))
        .collect::<StoreResult<Vec<_>>>()?;
    tx.commit().map_err(sql_error)?;
    Ok(etags)
}

/// Applies one operation inside the caller's transaction.
fn apply(conn: &Connection, key: &str, pk: &str, op: &BatchOp) -> StoreResult<Option<ETag>> {
    match op {
        BatchOp::Insert(entity) => {
            validate_entity(entity)?;
            if current(conn, key, &entity.partition_key, &entity.row_key)?.is_some() {
                return Err(StoreError::AlreadyExists);
            }
            store_row(conn, key, entity, &entity.props).map(Some)
        }
        BatchOp::Update { entity, if_match } => {
            validate_entity(entity)?;
            let (_, etag) = current(conn, key, &entity.partition_key, &entity.row_key)?
                .ok_or(StoreError::NotFound)?;
            check_etag(&etag, if_match)?;
            store_row(conn, key, entity, &entity.props).map(Some)
        }
        BatchOp::Delete { row_key, if_match } => {
            validate_key(pk)?;
            validate_key(row_key)?;
            let (_, etag) = current(conn, key, pk, row_key)?.ok_or(StoreError::NotFound)?;
            if let Some(if_match) = if_match {
                check_etag(&etag, if_match)?;
            }
            conn.execute(
                "DELETE FROM entities WHERE tbl = ?1 AND pk = ?2 AND rk = ?3",
                params![key, pk, row_key],
            )
            .map_err(sql_error)?;
            Ok(None)
        }
    }
}

/// `*` matches any version, as `If-Match: *` does on Table Storage.
fn check_etag(stored: &str, if_match: &ETag) -> StoreResult<()> {
    if if_match.as_str() == "*" || if_match.as_str() == stored {
        Ok(())
    } else {
        Err(StoreError::PreconditionFailed)
    }
}

/// Writes (inserts or replaces) the row with `props` under a fresh ETag.
fn store_row(
    conn: &Connection,
    key: &str,
    entity: &Entity,
    props: &BTreeMap<String, Prop>,
) -> StoreResult<ETag> {
    let etag = new_entity_etag(conn)?;
    conn.execute(
        "INSERT INTO entities (tbl, pk, rk, props, etag) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tbl, pk, rk) DO UPDATE SET props = excluded.props, etag = excluded.etag",
        params![
            key,
            entity.partition_key,
            entity.row_key,
            encode_props(props)?,
            etag.as_str()
        ],
    )
    .map_err(sql_error)?;
    Ok(etag)
}

/// The row's stored properties (JSON) and ETag, if it exists.
fn current(
    conn: &Connection,
    key: &str,
    pk: &str,
    rk: &str,
) -> StoreResult<Option<(String, String)>> {
    conn.query_row(
        "SELECT props, etag FROM entities WHERE tbl = ?1 AND pk = ?2 AND rk = ?3",
        params![key, pk, rk],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(sql_error)
}

pub(super) fn query(conn: &mut Connection, table: &str, q: &TableQuery) -> StoreResult<Page> {
    let key = table_key(table);
    require_table(conn, &key)?;
    let top = match q.top {
        Some(0) => {
            return Err(StoreError::Invalid(
                "a query's top must be at least 1".into(),
            ))
        }
        Some(n) => n.min(MAX_PAGE),
        None => MAX_PAGE,
    };

    let mut sql = String::from("SELECT pk, rk, props, etag FROM entities WHERE tbl = ?");
    let mut args = vec![Value::Text(key)];
    sql.push_str(" AND pk = ?");
    args.push(Value::Text(q.partition_key.clone()));
    if let Some(range) = &q.row_keys {
        sql.push_str(" AND rk >= ? AND rk < ?");
        args.push(Value::Text(range.start.clone()));
        args.push(Value::Text(range.end.clone()));
    }
    for (name, value) in &q.equals {
        validate_property_name(name)?;
        // The property name was just checked to be an identifier, so it cannot break out of
        // the quoted JSON path label.
        let (tag, value) = match StoredProp::from(value) {
            StoredProp::Str(s) => ("s", Value::Text(s)),
            StoredProp::Int(i) => ("i", Value::Integer(i)),
            StoredProp::Float(bits) => ("f", Value::Text(bits)),
            StoredProp::Bool(b) => ("b", Value::Integer(i64::from(b))),
        };
        sql.push_str(" AND json_extract(props, ?) = ?");
        args.push(Value::Text(format!("$.\"{name}\".{tag}")));
        args.push(value);
    }
    if let Some(token) = &q.continuation {
        let (after_pk, after_rk) = decode_continuation(token)?;
        sql.push_str(" AND (pk > ? OR (pk = ? AND rk > ?))");
        args.push(Value::Text(after_pk.clone()));
        args.push(Value::Text(after_pk));
        args.push(Value::Text(after_rk));
    }
    // One row more than the page tells whether another page follows.
    sql.push_str(" ORDER BY pk, rk LIMIT ?");
    args.push(Value::Integer(i64::from(top) + 1));

    let mut statement = conn.prepare(&sql).map_err(sql_error)?;
    let rows = statement
        .query_map(params_from_iter(args), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(sql_error)?;
    let mut entities = Vec::new();
    let mut more = false;
    for row in rows {
        let (pk, rk, props, etag) = row.map_err(sql_error)?;
        if entities.len() == top as usize {
            more = true;
            break;
        }
        entities.push(StoredEntity {
            entity: Entity {
                partition_key: pk,
                row_key: rk,
                props: decode_props(&props)?,
            },
            etag: ETag::new(etag),
        });
    }
    let continuation = match entities.last() {
        Some(last) if more => Some(encode_continuation(
            &last.entity.partition_key,
            &last.entity.row_key,
        )?),
        _ => None,
    };
    Ok(Page {
        entities,
        continuation,
    })
}

/// The token is the last (PartitionKey, RowKey) returned; the next page starts after it.
fn encode_continuation(pk: &str, rk: &str) -> StoreResult<String> {
    let json = serde_json::to_vec(&(pk, rk)).map_err(StoreError::internal)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

fn decode_continuation(token: &str) -> StoreResult<(String, String)> {
    let invalid =
        || StoreError::Invalid("the continuation token is not one this store issued".into());
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    serde_json::from_slice(&json).map_err(|_| invalid())
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// A property as stored in the `props` JSON, tagged with its type so it reads back as exactly
/// the same [`Prop`]. Floats are kept as their IEEE bits: JSON has no NaN or infinities, and a
/// decimal round trip is only exact if every parser along the way is.
#[derive(Debug, Serialize, Deserialize)]
enum StoredProp {
    #[serde(rename = "s")]
    Str(String),
    #[serde(rename = "i")]
    Int(i64),
    #[serde(rename = "f")]
    Float(String),
    #[serde(rename = "b")]
    Bool(bool),
}

impl From<&Prop> for StoredProp {
    fn from(p: &Prop) -> Self {
        match p {
            Prop::Str(s) => StoredProp::Str(s.clone()),
            Prop::Int(i) => StoredProp::Int(*i),
            Prop::Float(f) => StoredProp::Float(format!("{:016x}", f.to_bits())),
            Prop::Bool(b) => StoredProp::Bool(*b),
        }
    }
}

impl TryFrom<StoredProp> for Prop {
    type Error = StoreError;
    fn try_from(p: StoredProp) -> StoreResult<Prop> {
        Ok(match p {
            StoredProp::Str(s) => Prop::Str(s),
            StoredProp::Int(i) => Prop::Int(i),
            StoredProp::Float(bits) => Prop::Float(f64::from_bits(
                u64::from_str_radix(&bits, 16).map_err(StoreError::internal)?,
            )),
            StoredProp::Bool(b) => Prop::Bool(b),
        })
    }
}

fn encode_props(props: &BTreeMap<String, Prop>) -> StoreResult<String> {
    let stored: BTreeMap<&str, StoredProp> = props
        .iter()
        .map(|(name, value)| (name.as_str(), StoredProp::from(value)))
        .collect();
    serde_json::to_string(&stored).map_err(StoreError::internal)
}

fn decode_props(json: &str) -> StoreResult<BTreeMap<String, Prop>> {
    let stored: BTreeMap<String, StoredProp> =
        serde_json::from_str(json).map_err(StoreError::internal)?;
    stored
        .into_iter()
        .map(|(name, value)| Ok((name, Prop::try_from(value)?)))
        .collect()
}

/// Keys, property names and sizes as Table Storage checks them.
fn validate_entity(entity: &Entity) -> StoreResult<()> {
    validate_key(&entity.partition_key)?;
    validate_key(&entity.row_key)?;
    if entity.props.len() > MAX_PROPERTIES {
        return Err(StoreError::Invalid(format!(
            "an entity holds at most {MAX_PROPERTIES} properties, not {}",
            entity.props.len()
        )));
    }
    for (name, value) in &entity.props {
        validate_property_name(name)?;
        if let Prop::Str(s) = value {
            if utf16_bytes(s) > MAX_STRING_BYTES {
                return Err(StoreError::Invalid(format!(
                    "property {name:?} is over Table Storage's 64 KiB string limit"
                )));
            }
        }
    }
    let size = entity_size(entity);
    if size > MAX_ENTITY_BYTES {
        return Err(StoreError::Invalid(format!(
            "the entity takes {size} bytes, over Table Storage's 1 MiB"
        )));
    }
    Ok(())
}

/// Property names are identifiers on Table Storage (they become OData names); the system
/// properties cannot be set.
fn validate_property_name(name: &str) -> StoreResult<()> {
    let identifier = name.len() <= 255
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier && !matches!(name, "PartitionKey" | "RowKey" | "Timestamp") {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{name:?} is not a property name Table Storage accepts"
        )))
    }
}

fn utf16_bytes(s: &str) -> usize {
    2 * s.encode_utf16().count()
}

/// Table Storage's documented size formula: 4 bytes, plus the keys in UTF-16, plus for each
/// property 8 bytes, its name in UTF-16 and its value.
fn entity_size(entity: &Entity) -> usize {
    let props: usize = entity
        .props
        .iter()
        .map(|(name, value)| {
            8 + utf16_bytes(name)
                + match value {
                    Prop::Str(s) => 4 + utf16_bytes(s),
                    Prop::Int(_) | Prop::Float(_) => 8,
                    Prop::Bool(_) => 1,
                }
        })
        .sum();
    4 + utf16_bytes(&entity.partition_key) + utf16_bytes(&entity.row_key) + props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prop_type_survives_encoding_bit_for_bit() {
        let mut props = BTreeMap::new();
        props.insert("s".to_owned(), Prop::Str("ü \"quoted\"\n".into()));
        props.insert("i".to_owned(), Prop::Int(i64::MIN));
        props.insert("f".to_owned(), Prop::Float(0.1 + 0.2));
        props.insert("inf".to_owned(), Prop::Float(f64::NEG_INFINITY));
        props.insert("tiny".to_owned(), Prop::Float(f64::MIN_POSITIVE / 3.0));
        props.insert("b".to_owned(), Prop::Bool(false));
        let json = encode_props(&props).expect("encodes");
        assert_eq!(decode_props(&json).expect("decodes"), props);
    }

    #[test]
    fn system_and_non_identifier_property_names_are_refused() {
        for bad in [
            "PartitionKey",
            "RowKey",
            "Timestamp",
            "",
            "1a",
            "a-b",
            "a\"b",
            "odata.etag",
        ] {
            assert!(validate_property_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["name", "_x", "Stage2"] {
            assert!(validate_property_name(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn oversized_strings_and_entities_are_refused() {
        let big = "x".repeat(MAX_STRING_BYTES / 2 + 1);
        let entity = Entity::new("p", "r").with("text", big.as_str());
        assert!(matches!(
            validate_entity(&entity),
            Err(StoreError::Invalid(_))
        ));

        let mut entity = Entity::new("p", "r");
        for i in 0..20 {
            entity = entity.with(&format!("p{i}"), "x".repeat(30_000).as_str());
        }
        assert!(matches!(
            validate_entity(&entity),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn a_forged_continuation_token_is_invalid() {
        assert!(matches!(
            decode_continuation("not base64!"),
            Err(StoreError::Invalid(_))
        ));
        let token = encode_continuation("p", "r").expect("encodes");
        assert_eq!(
            decode_continuation(&token).expect("decodes"),
            ("p".to_owned(), "r".to_owned())
        );
    }
}
