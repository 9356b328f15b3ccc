//! The storage conformance suite: what every [`Storage`] backend must do, written once.
//!
//! Each check is a `pub async fn` taking a [`Fixture`] and panicking (like any test) when the
//! backend misbehaves. `tests/store_conformance.rs` expands one `#[tokio::test]` per
//! (backend × check), so a failure names both.
//!
//! Every fixture carries a fresh container and table with random names, so checks can run in
//! parallel against one shared service (Azurite). Checks only use their own fixture's names.

// Test code (compiled only for tests and `test-support`): a failed expectation is the report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{Duration, Utc};
use futures::StreamExt;
use md5::{Digest as _, Md5};
use rand::{Rng, RngCore, SeedableRng};
use sha2::Sha256;

use super::{
    BatchOp, BodyTooLarge, ByteStream, ETag, Entity, Prop, PutBlobOptions, SignedUrlRequest,
    Storage, StoreError, StoreResult, StoredEntity, TableQuery, CONTENT_MD5_MAX_BYTES,
};
use crate::clock::{Clock, ManualClock, SystemClock};

// ---------------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------------

/// Closes a backend and opens it again on the same data (the embedded store's restart).
#[async_trait]
pub trait Restart: Send {
    /// `old` is the only remaining handle on the store; drop it before reopening.
    async fn restart(&mut self, old: Arc<dyn Storage>) -> Arc<dyn Storage>;
}

/// A backend under test, with a container and a table of its own.
pub struct Fixture {
    pub store: Arc<dyn Storage>,
    /// Created by [`Fixture::new`]; no other fixture uses it.
    pub container: String,
    /// Created by [`Fixture::new`]; no other fixture uses it.
    pub table: String,
    /// Created by [`Fixture::new`]; no other fixture uses it.
    pub queue: String,
    /// What the backend's signed-URL server believes is now (the wall clock for Azure).
    pub clock: Arc<dyn Clock>,
    /// Set when the checks may move that time (the embedded store's route).
    pub manual_clock: Option<ManualClock>,
    /// A plain HTTP client for fetching signed URLs.
    pub http: reqwest::Client,
    restart: Option<Box<dyn Restart>>,
    keep_alive: Vec<Box<dyn Any + Send>>,
}

impl Fixture {
    /// A fixture on `store` with a fresh, randomly named container and table (both created),
    /// using the wall clock.
    pub async fn new(store: Arc<dyn Storage>) -> Fixture {
        let container = format!("conf-{}", random_suffix());
        Fixture::with_container(store, &container).await
    }

    /// Like [`Fixture::new`] but with a given container: the embedded route only serves
    /// `files`, and an embedded fixture has a store of its own anyway.
    pub async fn with_container(store: Arc<dyn Storage>, container: &str) -> Fixture {
        let table = format!("conf{}", random_suffix());
        let queue = format!("conf-{}", random_suffix());
        store
            .ensure_container(container)
            .await
            .expect("the fixture's container can be created");
        store
            .ensure_table(&table)
            .await
            .expect("the fixture's table can be created");
        store
            .ensure_queue(&queue)
            .await
            .expect("the fixture's queue can be created");
        Fixture {
            store,
            container: container.to_owned(),
            table,
            queue,
            clock: Arc::new(SystemClock),
            manual_clock: None,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client"),
            restart: None,
            keep_alive: Vec::new(),
        }
    }

    /// The signed-URL server (and the embedded store's queues) read this clock, and checks may
    /// move it.
    pub fn with_manual_clock(mut self, clock: ManualClock) -> Self {
        self.clock = Arc::new(clock.clone());
        self.manual_clock = Some(clock);
        self
    }

    /// Fetches signed URLs with `http` (one that trusts a test certificate).
    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    pub fn with_restart(mut self, restart: impl Restart + 'static) -> Self {
        self.restart = Some(Box::new(restart));
        self
    }

    /// Keeps `guard` (a temporary directory, a server) alive as long as the fixture.
    pub fn keep_alive(mut self, guard: impl Any + Send) -> Self {
        self.keep_alive.push(Box::new(guard));
        self
    }

    /// Closes the store and opens it again on the same data.
    pub async fn restart(self) -> Fixture {
        let Fixture {
            store,
            container,
            table,
            queue,
            clock,
            manual_clock,
            http,
            restart,
            keep_alive,
        } = self;
        let mut restart = restart.expect("this check needs a fixture that can restart its store");
        let store = restart.restart(store).await;
        Fixture {
            store,
            container,
            table,
            queue,
            clock,
            manual_clock,
            http,
            restart: Some(restart),
            keep_alive,
        }
    }
}

/// Names the storage account the Azure test suites run against, as a connection string
/// (`UseDevelopmentStorage=true` for Azurite on its default ports). `scripts/test` starts a
/// private Azurite and sets it.
pub const AZURE_TEST_ENV: &str = "FILE_APPROVER_TEST_AZURE_STORAGE";

/// The Azure test account's connection string. Panics when [`AZURE_TEST_ENV`] is unset or
/// empty: a test that runs must not pass without storage (build.rs marks the Azure tests
/// ignored when they were built without it, except under `CI`).
pub fn azure_test_connection_string() -> String {
    match std::env::var(AZURE_TEST_ENV) {
        Ok(cs) if !cs.trim().is_empty() => cs,
        // A test that gets here runs: it was built with the setting (or under CI) and must not
        // pass without storage. Without the setting, build.rs marks these tests ignored.
        _ => panic!(
            "{AZURE_TEST_ENV} is unset: the Azure suites need a storage account \
             (scripts/test starts Azurite and sets it)"
        ),
    }
}

/// 16 lowercase letters and digits: valid in container and table names alike.
fn random_suffix() -> String {
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| {
            let n = rng.gen_range(0..36u8);
            char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn stream_of(chunks: Vec<Vec<u8>>) -> ByteStream {
    futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c)))).boxed()
}

/// `chunks`, then an error, as when a client disconnects mid-upload.
fn failing_stream(chunks: Vec<Vec<u8>>) -> ByteStream {
    let good = chunks.into_iter().map(|c| Ok(Bytes::from(c)));
    let bad = std::iter::once(Err("the client went away".into()));
    futures::stream::iter(good.chain(bad)).boxed()
}

async fn read_all(body: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut body = body;
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.expect("the blob streams without error"));
    }
    out
}

fn options(content_type: &str) -> PutBlobOptions {
    PutBlobOptions {
        content_type: content_type.to_owned(),
        max_bytes: None,
    }
}

/// Deterministic, non-repeating test bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

fn split(data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    data.chunks(chunk).map(<[u8]>::to_vec).collect()
}

async fn put(fx: &Fixture, name: &str, data: &[u8]) -> super::BlobProperties {
    fx.store
        .put_blob(
            &fx.container,
            name,
            stream_of(split(data, 64 * 1024)),
            &options("application/octet-stream"),
        )
        .await
        .expect("put_blob succeeds")
}

async fn get(fx: &Fixture, name: &str) -> Vec<u8> {
    let read = fx
        .store
        .get_blob(&fx.container, name, None)
        .await
        .expect("get_blob succeeds");
    read_all(read.body).await
}

fn assert_not_found<T: std::fmt::Debug>(result: super::StoreResult<T>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "{what}: expected NotFound, got {result:?}"
    );
}

fn assert_precondition_failed<T: std::fmt::Debug>(result: super::StoreResult<T>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::PreconditionFailed)),
        "{what}: expected PreconditionFailed, got {result:?}"
    );
}

fn assert_invalid<T: std::fmt::Debug>(result: super::StoreResult<T>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Invalid(_))),
        "{what}: expected Invalid, got {result:?}"
    );
}

async fn stored(fx: &Fixture, pk: &str, rk: &str) -> StoredEntity {
    fx.store
        .get_entity(&fx.table, pk, rk)
        .await
        .expect("the entity is there")
}

async fn insert(fx: &Fixture, entity: &Entity) -> ETag {
    fx.store
        .insert_entity(&fx.table, entity)
        .await
        .expect("insert succeeds")
}

/// Every row of `query`, following continuations, checking each page's size.
/// A conditional replace of one row: a batch of one `Update`, as the engine writes its state row.
async fn update(fx: &Fixture, entity: &Entity, if_match: &ETag) -> StoreResult<ETag> {
    update_in(&fx.store, &fx.table, entity, if_match).await
}

async fn update_in(
    store: &Arc<dyn Storage>,
    table: &str,
    entity: &Entity,
    if_match: &ETag,
) -> StoreResult<ETag> {
    let op = BatchOp::Update {
        entity: entity.clone(),
        if_match: if_match.clone(),
    };
    let mut etags = store.batch(table, &entity.partition_key, vec![op]).await?;
    etags
        .pop()
        .flatten()
        .ok_or_else(|| StoreError::internal("an update answered no ETag"))
}

/// Every row of `partitions`, in order.
async fn rows_of(fx: &Fixture, partitions: &[&str]) -> Vec<StoredEntity> {
    let mut rows = Vec::new();
    for pk in partitions {
        rows.extend(query_all(fx, TableQuery::partition(*pk)).await.0);
    }
    rows
}

async fn query_all(fx: &Fixture, query: TableQuery) -> (Vec<StoredEntity>, usize) {
    let limit = query.top.map_or(1000, |top| top.min(1000)) as usize;
    let mut query = query;
    let mut rows = Vec::new();
    let mut pages = 0;
    loop {
        let page = fx
            .store
            .query(&fx.table, &query)
            .await
            .expect("query succeeds");
        pages += 1;
        assert!(
            page.entities.len() <= limit,
            "a page holds {} rows, over its limit {limit}",
            page.entities.len()
        );
        rows.extend(page.entities);
        match page.continuation {
            Some(token) => query.continuation = Some(token),
            None => return (rows, pages),
        }
        assert!(pages < 10_000, "the query never ends");
    }
}

fn keys(rows: &[StoredEntity]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| (r.entity.partition_key.clone(), r.entity.row_key.clone()))
        .collect()
}

async fn insert_rows(fx: &Fixture, pk: &str, rks: impl IntoIterator<Item = String>) {
    let ops: Vec<BatchOp> = rks
        .into_iter()
        .map(|rk| BatchOp::Insert(Entity::new(pk, rk).with("n", 1i64)))
        .collect();
    for chunk in ops.chunks(100) {
        fx.store
            .batch(&fx.table, pk, chunk.to_vec())
            .await
            .expect("the seeding batch succeeds");
    }
}

// ---------------------------------------------------------------------------------------------
// Blobs
// ---------------------------------------------------------------------------------------------

/// Put, properties, whole and ranged reads, replace.
/// Deleting a blob makes it gone for every read; deleting again, or a blob that never was, is
/// not an error; its neighbours stay.
pub async fn deleting_a_blob_removes_it_and_is_idempotent(fx: Fixture) {
    for name in ["doomed", "neighbour"] {
        fx.store
            .put_blob(
                &fx.container,
                name,
                stream_of(vec![b"bytes to forget".to_vec()]),
                &options("text/plain"),
            )
            .await
            .expect("put_blob succeeds");
    }
    fx.store
        .delete_blob(&fx.container, "doomed")
        .await
        .expect("delete_blob succeeds");
    assert!(matches!(
        fx.store.blob_properties(&fx.container, "doomed").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        fx.store.get_blob(&fx.container, "doomed", None).await,
        Err(StoreError::NotFound)
    ));
    fx.store
        .delete_blob(&fx.container, "doomed")
        .await
        .expect("deleting again is fine");
    fx.store
        .delete_blob(&fx.container, "never-was")
        .await
        .expect("deleting what never was is fine");
    let kept = fx
        .store
        .blob_properties(&fx.container, "neighbour")
        .await
        .expect("the neighbour stays");
    assert_eq!(kept.size, 15);
}

pub async fn blob_round_trip(fx: Fixture) {
    let data = pattern(300_001, 1);
    let written = fx
        .store
        .put_blob(
            &fx.container,
            "round-trip",
            stream_of(split(&data, 7_000)),
            &options("application/pdf"),
        )
        .await
        .expect("put_blob succeeds");
    assert_eq!(written.size, data.len() as u64);
    assert_eq!(written.content_type, "application/pdf");
    assert_eq!(
        written.content_md5,
        Some(<[u8; 16]>::from(Md5::digest(&data)))
    );

    let props = fx
        .store
        .blob_properties(&fx.container, "round-trip")
        .await
        .expect("properties");
    assert_eq!(props.size, written.size);
    assert_eq!(props.content_type, written.content_type);
    assert_eq!(props.content_md5, written.content_md5);
    assert_eq!(props.etag, written.etag);

    // A blob larger than one piece keeps no MD5 (as Azure keeps none for one sent in blocks).
    let large = pattern(usize::try_from(CONTENT_MD5_MAX_BYTES).unwrap() + 1, 3);
    let large_written = fx
        .store
        .put_blob(
            &fx.container,
            "round-trip-large",
            stream_of(split(&large, 256 * 1024)),
            &options("application/octet-stream"),
        )
        .await
        .expect("a large put_blob succeeds");
    assert_eq!(large_written.content_md5, None);
    let large_props = fx
        .store
        .blob_properties(&fx.container, "round-trip-large")
        .await
        .expect("properties of the large blob");
    assert_eq!(large_props.content_md5, None);
    assert_eq!(large_props.size, large.len() as u64);

    let whole = fx
        .store
        .get_blob(&fx.container, "round-trip", None)
        .await
        .expect("get");
    assert_eq!(whole.properties.etag, written.etag);
    assert_eq!(whole.properties.size, data.len() as u64);
    assert_eq!(read_all(whole.body).await, data);

    let ranged = fx
        .store
        .get_blob(&fx.container, "round-trip", Some(1_000..71_000))
        .await
        .expect("ranged get");
    assert_eq!(
        ranged.properties.size,
        data.len() as u64,
        "size is the whole blob's"
    );
    assert_eq!(read_all(ranged.body).await, &data[1_000..71_000]);

    let replaced = put(&fx, "round-trip", b"shorter").await;
    assert_ne!(replaced.etag, written.etag, "a new version has a new ETag");
    assert_eq!(get(&fx, "round-trip").await, b"shorter");

    let empty = put(&fx, "empty", b"").await;
    assert_eq!(empty.size, 0);
    assert_eq!(get(&fx, "empty").await, b"");

    assert_not_found(
        fx.store
            .get_blob(&fx.container, "never-written", None)
            .await
            .map(|_| ()),
        "get of a missing blob",
    );
    assert_not_found(
        fx.store
            .blob_properties(&fx.container, "never-written")
            .await,
        "properties of a missing blob",
    );
}

/// One blob-name rule on every backend: a file id or a plain name is fine; a separator, a
/// leading dot, a control character or an empty name is refused before any request.
pub async fn blob_names_follow_one_rule_everywhere(fx: Fixture) {
    put(&fx, "4f1c0a7e-9a55-4c1e-8f7e-2b1a0f6c3d21", b"x").await;
    put(&fx, "report 2026.pdf", b"x").await;
    for bad in [
        "",
        "a/b",
        "dir/",
        "a\\b",
        ".hidden",
        "..",
        "a\nb",
        &"n".repeat(256),
    ] {
        assert_invalid(
            fx.store
                .put_blob(
                    &fx.container,
                    bad,
                    stream_of(vec![b"x".to_vec()]),
                    &options("text/plain"),
                )
                .await,
            &format!("put of {bad:?}"),
        );
        assert_invalid(
            fx.store
                .get_blob(&fx.container, bad, None)
                .await
                .map(|_| ()),
            &format!("get of {bad:?}"),
        );
        assert_invalid(
            fx.store.blob_properties(&fx.container, bad).await,
            &format!("properties of {bad:?}"),
        );
        assert_invalid(
            fx.store
                .signed_read_url(&SignedUrlRequest {
                    snapshot: None,
                    container: &fx.container,
                    name: bad,
                    expires_at: Utc::now() + Duration::hours(1),
                    download_name: "x",
                })
                .await,
            &format!("link to {bad:?}"),
        );
    }
}

/// A snapshot keeps the bytes it was taken of: later writes change the blob, never the
/// snapshot; reads, ranges and properties of the snapshot say so.
pub async fn a_snapshot_keeps_its_bytes_when_the_blob_is_replaced(fx: Fixture) {
    let first = put(&fx, "pinned", b"the version that was approved").await;
    let snapshot = fx
        .store
        .snapshot_blob(&fx.container, "pinned", Some(&first.etag))
        .await
        .expect("snapshot of the current version");
    assert_eq!(snapshot.etag, first.etag);
    put(&fx, "pinned", b"a replacement sent later").await;
    assert_eq!(get(&fx, "pinned").await, b"a replacement sent later");

    let at = super::BlobAt {
        container: &fx.container,
        name: "pinned",
        snapshot: Some(&snapshot.id),
    };
    let read = fx.store.read_blob(at, None).await.expect("snapshot read");
    assert_eq!(read_all(read.body).await, b"the version that was approved");
    let props = fx
        .store
        .properties_at(at)
        .await
        .expect("snapshot properties");
    assert_eq!(props.size, 29);
    assert_eq!(props.etag, first.etag);
    let read = fx.store.read_blob(at, Some(4..11)).await.expect("range");
    assert_eq!(read_all(read.body).await, b"version");

    let second = fx
        .store
        .snapshot_blob(&fx.container, "pinned", None)
        .await
        .expect("a second snapshot");
    assert_ne!(second.id, snapshot.id);
    let again = fx
        .store
        .read_blob(
            super::BlobAt {
                snapshot: Some(&second.id),
                ..at
            },
            None,
        )
        .await
        .expect("second snapshot read");
    assert_eq!(read_all(again.body).await, b"a replacement sent later");
}

/// A snapshot is taken of the version named, or not at all; of a missing blob, never.
pub async fn a_snapshot_of_a_stale_version_or_a_missing_blob_is_refused(fx: Fixture) {
    let first = put(&fx, "moving", b"one").await;
    put(&fx, "moving", b"two").await;
    assert_precondition_failed(
        fx.store
            .snapshot_blob(&fx.container, "moving", Some(&first.etag))
            .await,
        "snapshot of a replaced version",
    );
    assert_not_found(
        fx.store.snapshot_blob(&fx.container, "absent", None).await,
        "snapshot of a missing blob",
    );
}

/// Deleting a blob deletes its snapshots with it.
pub async fn deleting_a_blob_deletes_its_snapshots(fx: Fixture) {
    put(&fx, "gone", b"bytes").await;
    let snapshot = fx
        .store
        .snapshot_blob(&fx.container, "gone", None)
        .await
        .expect("snapshot");
    fx.store
        .delete_blob(&fx.container, "gone")
        .await
        .expect("delete");
    let at = super::BlobAt {
        container: &fx.container,
        name: "gone",
        snapshot: Some(&snapshot.id),
    };
    assert_not_found(
        fx.store.properties_at(at).await,
        "a deleted blob's snapshot",
    );
}

/// A download link to a snapshot serves the snapshot's bytes, whatever the blob holds now.
pub async fn a_signed_url_to_a_snapshot_serves_the_snapshot(fx: Fixture) {
    put(&fx, "linked", b"pinned bytes").await;
    let snapshot = fx
        .store
        .snapshot_blob(&fx.container, "linked", None)
        .await
        .expect("snapshot");
    put(&fx, "linked", b"replaced bytes, longer").await;
    let url = fx
        .store
        .signed_read_url(&SignedUrlRequest {
            snapshot: Some(&snapshot.id),
            container: &fx.container,
            name: "linked",
            expires_at: fx.clock.now() + Duration::minutes(5),
            download_name: "pinned.txt",
        })
        .await
        .expect("signed_read_url");
    let response = fx.http.get(&url).send().await.expect("the URL answers");
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        b"pinned bytes"
    );
    // The same link without its snapshot is another link: its signature does not cover it.
    let (base, query) = url.split_once('?').expect("a query");
    let without: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.starts_with("snapshot="))
        .collect();
    let stripped = format!("{base}?{}", without.join("&"));
    let response = fx.http.get(&stripped).send().await.expect("answers");
    assert_eq!(
        response.status(),
        reqwest::StatusCode::FORBIDDEN,
        "{stripped}"
    );
}

/// A stream error mid-upload commits nothing: no new blob, no change to an older one.
pub async fn failed_stream_leaves_no_blob_and_keeps_the_older_one(fx: Fixture) {
    let two_mib = 2 * 1024 * 1024;
    let result = fx
        .store
        .put_blob(
            &fx.container,
            "never",
            failing_stream(split(&pattern(3 * two_mib, 2), two_mib)),
            &options("text/plain"),
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::Body(_))),
        "expected Body, got {result:?}"
    );
    assert_not_found(
        fx.store.blob_properties(&fx.container, "never").await,
        "blob of a failed upload",
    );

    let older = put(&fx, "kept", b"the older version").await;
    let result = fx
        .store
        .put_blob(
            &fx.container,
            "kept",
            failing_stream(split(&pattern(3 * two_mib, 3), two_mib)),
            &options("text/plain"),
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::Body(_))),
        "expected Body, got {result:?}"
    );
    let props = fx
        .store
        .blob_properties(&fx.container, "kept")
        .await
        .expect("the older blob is still there");
    assert_eq!(props.etag, older.etag);
    assert_eq!(get(&fx, "kept").await, b"the older version");
}

/// `max_bytes` is a hard limit: one byte over is refused with `BodyTooLarge` and commits
/// nothing; exactly the limit is accepted.
pub async fn oversized_put_is_refused_and_leaves_no_blob(fx: Fixture) {
    let limit: u64 = 5 * 1024 * 1024;
    let limited = PutBlobOptions {
        content_type: "text/plain".into(),
        max_bytes: Some(limit),
    };
    let too_big = pattern(limit as usize + 1, 4);
    let older = put(&fx, "kept", b"older").await;
    for name in ["never", "kept"] {
        let result = fx
            .store
            .put_blob(
                &fx.container,
                name,
                stream_of(split(&too_big, 1024 * 1024)),
                &limited,
            )
            .await;
        match result {
            Err(StoreError::Body(e)) => {
                let too_large = e
                    .downcast_ref::<BodyTooLarge>()
                    .expect("the Body error wraps BodyTooLarge");
                assert_eq!(too_large.limit, limit);
            }
            other => panic!("expected Body(BodyTooLarge), got {other:?}"),
        }
    }
    assert_not_found(
        fx.store.blob_properties(&fx.container, "never").await,
        "blob of a refused upload",
    );
    let props = fx
        .store
        .blob_properties(&fx.container, "kept")
        .await
        .expect("older blob");
    assert_eq!(props.etag, older.etag);

    let exact = fx
        .store
        .put_blob(
            &fx.container,
            "exact",
            stream_of(split(&too_big[..limit as usize], 1024 * 1024)),
            &limited,
        )
        .await
        .expect("a body of exactly max_bytes is accepted");
    assert_eq!(exact.size, limit);
}

/// This process's resident set size, from `/proc/self/status` (Linux only).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The peak of [`resident_bytes`] seen at the sampling points.
#[derive(Default)]
struct PeakRss(AtomicU64);

impl PeakRss {
    fn sample(&self) {
        if let Some(now) = resident_bytes() {
            self.0.fetch_max(now, Ordering::Relaxed);
        }
    }
}

/// A 256 MiB blob, generated on the fly and never held whole, is written and read back with
/// the same SHA-256 while the process stays small.
///
/// Memory is measured as the growth of VmRSS (sampled every MiB of the upload and of the
/// download) over its value when the check starts. Other checks run in parallel in the same
/// process, so the figure includes their allocations; they are all small (the largest, the
/// paged query, holds a few MiB), which the 64 MiB bound leaves room for. Run this check alone
/// (`cargo test --test store_conformance large_blob -- --nocapture`) for a clean figure.
pub async fn large_blob_streams_in_bounded_memory(fx: Fixture) {
    const TOTAL: u64 = 256 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    const BOUND: u64 = 64 * 1024 * 1024;
    // Resident memory is the whole process's: two of these checks (one per backend) running at
    // once would each see the other's buffers. The other checks move kilobytes.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _alone = ONE_AT_A_TIME.lock().await;

    let baseline = resident_bytes();
    let peak = Arc::new(PeakRss::default());
    let written_hash = Arc::new(Mutex::new(Sha256::new()));

    let generator = {
        let peak = Arc::clone(&peak);
        let written_hash = Arc::clone(&written_hash);
        let rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        futures::stream::unfold((rng, 0u64), move |(mut rng, sent)| {
            let peak = Arc::clone(&peak);
            let written_hash = Arc::clone(&written_hash);
            async move {
                if sent >= TOTAL {
                    return None;
                }
                let mut chunk = vec![0u8; CHUNK];
                rng.fill_bytes(&mut chunk);
                written_hash
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .update(&chunk);
                if sent % (1024 * 1024) == 0 {
                    peak.sample();
                }
                Some((Ok(Bytes::from(chunk)), (rng, sent + CHUNK as u64)))
            }
        })
        .boxed()
    };
    let props = fx
        .store
        .put_blob(
            &fx.container,
            "large",
            generator,
            &options("application/octet-stream"),
        )
        .await
        .expect("the large put succeeds");
    assert_eq!(props.size, TOTAL);
    let written: [u8; 32] = written_hash
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .finalize()
        .into();

    let read = fx
        .store
        .get_blob(&fx.container, "large", None)
        .await
        .expect("the large get succeeds");
    let mut body = read.body;
    let mut read_hash = Sha256::new();
    let mut received = 0u64;
    let mut next_sample = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("the large blob streams without error");
        read_hash.update(&chunk);
        received += chunk.len() as u64;
        if received >= next_sample {
            peak.sample();
            next_sample += 1024 * 1024;
        }
    }
    assert_eq!(received, TOTAL);
    let read: [u8; 32] = read_hash.finalize().into();
    assert_eq!(
        read, written,
        "the blob reads back with the SHA-256 it was written with"
    );

    // Replaced by a byte, so that Azurite's disk does not keep 256 MiB to the end of the run.
    put(&fx, "large", b"x").await;

    match (baseline, peak.0.load(Ordering::Relaxed)) {
        (Some(baseline), peak) if peak > 0 => {
            let growth = peak.saturating_sub(baseline);
            println!(
                "{}: 256 MiB blob, VmRSS {} MiB at start, peak growth {:.1} MiB (bound {} MiB)",
                fx.store.backend_name(),
                baseline / (1024 * 1024),
                growth as f64 / (1024.0 * 1024.0),
                BOUND / (1024 * 1024)
            );
            assert!(
                growth < BOUND,
                "resident memory grew by {growth} bytes while streaming 256 MiB"
            );
        }
        _ => println!("VmRSS is not available here: memory growth not measured"),
    }
}

// ---------------------------------------------------------------------------------------------
// Entities
// ---------------------------------------------------------------------------------------------

/// Every property type reads back as exactly what was written, with the insert's ETag.
pub async fn entity_round_trip_keeps_every_prop_type(fx: Fixture) {
    let entity = Entity::new("partition", "row")
        .with("text", "Grüße, \"quotes\" & <tags>")
        .with("empty", "")
        .with("small", 42i64)
        .with("big", i64::MAX)
        .with("negative", i64::MIN)
        .with("yes", true)
        .with("no", false)
        .with("tenth", Prop::Float(0.1))
        .with("integral", Prop::Float(3.0))
        .with("huge", Prop::Float(-1.5e300))
        .with("tiny", Prop::Float(2.5e-300));
    let etag = insert(&fx, &entity).await;
    let read = stored(&fx, "partition", "row").await;
    assert_eq!(read.entity, entity);
    assert_eq!(read.etag, etag);
}

pub async fn inserting_an_existing_entity_is_already_exists(fx: Fixture) {
    let first = Entity::new("p", "r").with("v", "first");
    let etag = insert(&fx, &first).await;
    let again = Entity::new("p", "r").with("v", "second");
    let result = fx.store.insert_entity(&fx.table, &again).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists)),
        "expected AlreadyExists, got {result:?}"
    );
    let read = stored(&fx, "p", "r").await;
    assert_eq!(read.entity, first);
    assert_eq!(read.etag, etag);
}

pub async fn missing_entities_are_not_found(fx: Fixture) {
    let some_etag = insert(&fx, &Entity::new("p", "present")).await;
    let missing = Entity::new("p", "missing").with("v", 1i64);
    assert_not_found(fx.store.get_entity(&fx.table, "p", "missing").await, "get");
    assert_not_found(update(&fx, &missing, &some_etag).await, "update");
    assert_not_found(
        fx.store
            .delete_entity(&fx.table, "p", "missing", None)
            .await,
        "delete",
    );
    assert_not_found(
        fx.store
            .delete_entity(&fx.table, "p", "missing", Some(&some_etag))
            .await,
        "conditional delete",
    );
}

/// An update replaces the whole property set.
pub async fn update_replaces_the_property_set(fx: Fixture) {
    let etag = insert(&fx, &Entity::new("p", "r").with("a", 1i64).with("b", "x")).await;
    let new_etag = update(&fx, &Entity::new("p", "r").with("d", 2i64), &etag)
        .await
        .expect("update");
    assert_ne!(new_etag, etag);
    let read = stored(&fx, "p", "r").await;
    assert_eq!(read.entity, Entity::new("p", "r").with("d", 2i64));
    assert_eq!(read.etag, new_etag);
}

/// A write guarded by an ETag that is no longer current changes nothing.
pub async fn stale_etag_update_is_refused(fx: Fixture) {
    let stale = insert(&fx, &Entity::new("p", "r").with("v", 0i64)).await;
    let current = update(&fx, &Entity::new("p", "r").with("v", 1i64), &stale)
        .await
        .expect("update with the current ETag");
    assert_ne!(current, stale);

    assert_precondition_failed(
        update(&fx, &Entity::new("p", "r").with("v", 2i64), &stale).await,
        "update with a stale ETag",
    );
    let read = stored(&fx, "p", "r").await;
    assert_eq!(read.entity, Entity::new("p", "r").with("v", 1i64));
    assert_eq!(read.etag, current);
}

pub async fn stale_etag_delete_is_refused(fx: Fixture) {
    let stale = insert(&fx, &Entity::new("p", "r").with("v", 0i64)).await;
    let current = update(&fx, &Entity::new("p", "r").with("v", 1i64), &stale)
        .await
        .expect("update");
    assert_precondition_failed(
        fx.store
            .delete_entity(&fx.table, "p", "r", Some(&stale))
            .await,
        "delete with a stale ETag",
    );
    assert_eq!(stored(&fx, "p", "r").await.etag, current);
    fx.store
        .delete_entity(&fx.table, "p", "r", Some(&current))
        .await
        .expect("delete with the current ETag");
    assert_not_found(
        fx.store.get_entity(&fx.table, "p", "r").await,
        "after delete",
    );

    insert(&fx, &Entity::new("p", "unconditional")).await;
    fx.store
        .delete_entity(&fx.table, "p", "unconditional", None)
        .await
        .expect("delete without an ETag");
}

/// The durable engine's safety rests on this: of many writers holding the same version,
/// exactly one wins.
pub async fn concurrent_conditional_updates_exactly_one_wins(fx: Fixture) {
    const WRITERS: i64 = 20;
    let etag = insert(&fx, &Entity::new("p", "contended").with("writer", -1i64)).await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = Arc::clone(&fx.store);
            let table = fx.table.clone();
            let etag = etag.clone();
            tokio::spawn(async move {
                let entity = Entity::new("p", "contended").with("writer", writer);
                (writer, update_in(&store, &table, &entity, &etag).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (writer, result) = task.await.expect("the writer task completes");
        match result {
            Ok(new_etag) => winners.push((writer, new_etag)),
            Err(StoreError::PreconditionFailed) => {}
            Err(other) => {
                panic!("writer {writer}: expected success or PreconditionFailed, got {other:?}")
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    let (winner, winner_etag) = &winners[0];
    let read = stored(&fx, "p", "contended").await;
    assert_eq!(read.entity.i64("writer"), Some(*winner));
    assert_eq!(&read.etag, winner_etag);
}

pub async fn forbidden_key_characters_are_invalid(fx: Fixture) {
    for (pk, rk) in [
        ("a/b", "r"),
        ("p", "a\\b"),
        ("p", "a#b"),
        ("p", "a?b"),
        ("p", "a\u{1}b"),
    ] {
        assert_invalid(
            fx.store
                .insert_entity(&fx.table, &Entity::new(pk, rk))
                .await,
            &format!("insert of ({pk:?}, {rk:?})"),
        );
    }
    let rows = rows_of(&fx, &["a/b", "p"]).await;
    assert!(rows.is_empty(), "nothing was stored: {:?}", keys(&rows));
}

/// Like Table Storage: a table must be created before use; creating twice is fine.
pub async fn missing_tables_and_containers_are_not_found(fx: Fixture) {
    fx.store
        .ensure_table(&fx.table)
        .await
        .expect("ensure_table is idempotent");
    fx.store
        .ensure_container(&fx.container)
        .await
        .expect("ensure_container is idempotent");

    let table = format!("missing{}", random_suffix());
    assert_not_found(
        fx.store.get_entity(&table, "p", "r").await,
        "get in a missing table",
    );
    assert_not_found(
        fx.store.insert_entity(&table, &Entity::new("p", "r")).await,
        "insert into a missing table",
    );
    assert_not_found(
        fx.store
            .query(&table, &TableQuery::partition("p"))
            .await
            .map(|_| ()),
        "query of a missing table",
    );
    assert_not_found(
        fx.store
            .batch(&table, "p", vec![BatchOp::Insert(Entity::new("p", "r"))])
            .await,
        "batch on a missing table",
    );

    let container = format!("missing-{}", random_suffix());
    assert_not_found(
        fx.store
            .put_blob(
                &container,
                "b",
                stream_of(vec![b"x".to_vec()]),
                &options("text/plain"),
            )
            .await,
        "put into a missing container",
    );
    assert_not_found(
        fx.store.get_blob(&container, "b", None).await.map(|_| ()),
        "get from a missing container",
    );
}

// ---------------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------------

/// An insert followed by a stale update: the insert must not survive the failed update.
pub async fn batch_with_a_stale_update_applies_nothing(fx: Fixture) {
    let stale = insert(&fx, &Entity::new("p", "a").with("v", 0i64)).await;
    let current = update(&fx, &Entity::new("p", "a").with("v", 1i64), &stale)
        .await
        .expect("update");
    let result = fx
        .store
        .batch(
            &fx.table,
            "p",
            vec![
                BatchOp::Insert(Entity::new("p", "b").with("v", 0i64)),
                BatchOp::Update {
                    entity: Entity::new("p", "a").with("v", 2i64),
                    if_match: stale,
                },
            ],
        )
        .await;
    assert_precondition_failed(result, "batch with a stale update");
    assert_not_found(
        fx.store.get_entity(&fx.table, "p", "b").await,
        "the batch's insert",
    );
    let read = stored(&fx, "p", "a").await;
    assert_eq!(read.etag, current);
    assert_eq!(read.entity.i64("v"), Some(1));
}

/// A valid conditional update followed by an insert of an existing row: the update must not
/// survive the failed insert.
pub async fn batch_with_a_duplicate_insert_applies_nothing(fx: Fixture) {
    let etag = insert(&fx, &Entity::new("p", "a").with("v", 0i64)).await;
    let existing = insert(&fx, &Entity::new("p", "b").with("v", 0i64)).await;
    let result = fx
        .store
        .batch(
            &fx.table,
            "p",
            vec![
                BatchOp::Update {
                    entity: Entity::new("p", "a").with("v", 1i64),
                    if_match: etag.clone(),
                },
                BatchOp::Insert(Entity::new("p", "b").with("v", 1i64)),
            ],
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists)),
        "expected AlreadyExists, got {result:?}"
    );
    let a = stored(&fx, "p", "a").await;
    assert_eq!(
        a.etag, etag,
        "the update in the failed batch was not applied"
    );
    assert_eq!(a.entity.i64("v"), Some(0));
    assert_eq!(stored(&fx, "p", "b").await.etag, existing);
}

/// Every kind of operation in one batch; the returned ETags are the rows' new versions and
/// guard the next conditional write.
pub async fn batch_returns_etags_that_guard_the_next_write(fx: Fixture) {
    let a = insert(&fx, &Entity::new("p", "a").with("v", 0i64)).await;
    let c = insert(&fx, &Entity::new("p", "c")).await;
    let etags = fx
        .store
        .batch(
            &fx.table,
            "p",
            vec![
                BatchOp::Insert(Entity::new("p", "new").with("v", 0i64)),
                BatchOp::Update {
                    entity: Entity::new("p", "a").with("v", 1i64),
                    if_match: a.clone(),
                },
                BatchOp::Delete {
                    row_key: "c".into(),
                    if_match: Some(c),
                },
            ],
        )
        .await
        .expect("the batch succeeds");
    assert_eq!(etags.len(), 3);
    assert!(etags[2].is_none(), "a delete has no ETag");
    for (rk, etag) in ["new", "a"].iter().zip(&etags) {
        let etag = etag.as_ref().expect("a write returns its ETag");
        assert_eq!(&stored(&fx, "p", rk).await.etag, etag, "row {rk}");
    }
    assert_ne!(etags[1].as_ref(), Some(&a));
    assert_eq!(
        stored(&fx, "p", "a").await.entity,
        Entity::new("p", "a").with("v", 1i64)
    );
    assert_not_found(
        fx.store.get_entity(&fx.table, "p", "c").await,
        "deleted row",
    );

    let new_etag = etags[0].clone().expect("insert ETag");
    update(&fx, &Entity::new("p", "new").with("v", 1i64), &new_etag)
        .await
        .expect("the batch's ETag guards the next write");
    assert_precondition_failed(
        update(&fx, &Entity::new("p", "a").with("v", 9i64), &a).await,
        "the pre-batch ETag is stale",
    );
}

/// Batches Azure would refuse are refused everywhere, before anything is applied.
pub async fn oversized_batch_is_refused_before_anything_is_applied(fx: Fixture) {
    let ops: Vec<BatchOp> = (0..101)
        .map(|i| BatchOp::Insert(Entity::new("p", format!("r{i:03}"))))
        .collect();
    assert_invalid(fx.store.batch(&fx.table, "p", ops).await, "101 operations");
    assert_invalid(
        fx.store.batch(&fx.table, "p", Vec::new()).await,
        "no operation",
    );
    let rows = rows_of(&fx, &["p"]).await;
    assert!(rows.is_empty(), "nothing was applied: {:?}", keys(&rows));

    let ops: Vec<BatchOp> = (0..100)
        .map(|i| BatchOp::Insert(Entity::new("p", format!("r{i:03}"))))
        .collect();
    fx.store
        .batch(&fx.table, "p", ops)
        .await
        .expect("100 operations are allowed");
}

pub async fn cross_partition_batch_is_refused_before_anything_is_applied(fx: Fixture) {
    let ops = vec![
        BatchOp::Insert(Entity::new("p1", "r1")),
        BatchOp::Insert(Entity::new("p2", "r2")),
    ];
    assert_invalid(fx.store.batch(&fx.table, "p1", ops).await, "two partitions");
    let ops = vec![
        BatchOp::Insert(Entity::new("p1", "r1")),
        BatchOp::Update {
            entity: Entity::new("p1", "r1"),
            if_match: ETag::new("*"),
        },
    ];
    assert_invalid(fx.store.batch(&fx.table, "p1", ops).await, "one row twice");
    let rows = rows_of(&fx, &["p1", "p2"]).await;
    assert!(rows.is_empty(), "nothing was applied: {:?}", keys(&rows));
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

/// 2 501 rows of one partition come back in pages of at most 1000, each row once, in order,
/// and no row of a neighbouring partition.
pub async fn partition_query_pages_every_row_once_in_order(fx: Fixture) {
    const ROWS: usize = 2_501;
    let expected: Vec<String> = (0..ROWS).map(|i| format!("row{i:05}")).collect();
    insert_rows(&fx, "big", expected.iter().rev().cloned()).await;
    insert_rows(&fx, "bif", ["before".to_owned()]).await;
    insert_rows(&fx, "bih", ["after".to_owned()]).await;

    let query = TableQuery {
        ..TableQuery::partition("big")
    };
    let (rows, pages) = query_all(&fx, query).await;
    assert!(pages >= 3, "{ROWS} rows take at least 3 pages, not {pages}");
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|rk| ("big".to_owned(), rk.clone()))
        .collect();
    assert_eq!(keys(&rows), want);

    let capped = TableQuery {
        top: Some(5_000),
        ..TableQuery::partition("big")
    };
    let page = fx.store.query(&fx.table, &capped).await.expect("query");
    assert!(page.entities.len() <= 1000, "top is capped at 1000");
    assert!(page.continuation.is_some());

    let small = TableQuery {
        top: Some(7),
        ..TableQuery::partition("big")
    };
    let page = fx.store.query(&fx.table, &small).await.expect("query");
    assert_eq!(keys(&page.entities), want[..7].to_vec());
}

pub async fn row_key_range_query_returns_only_that_range(fx: Fixture) {
    insert_rows(&fx, "p", (0..20).map(|i| format!("r{i:02}"))).await;
    insert_rows(&fx, "q", (0..20).map(|i| format!("r{i:02}"))).await;
    let query = TableQuery {
        row_keys: Some("r05".to_owned().."r10".to_owned()),
        top: Some(2),
        ..TableQuery::partition("p")
    };
    let (rows, _) = query_all(&fx, query).await;
    let want: Vec<(String, String)> = (5..10)
        .map(|i| ("p".to_owned(), format!("r{i:02}")))
        .collect();
    assert_eq!(keys(&rows), want);
}

/// Equality on string and bool properties, inside the one partition a query names, through
/// pages.
pub async fn equality_filter_matches_within_its_partition(fx: Fixture) {
    let mut want = Vec::new();
    for pk in ["p1", "p2", "p3"] {
        let ops: Vec<BatchOp> = (0..10)
            .map(|i| {
                let kind = if i % 3 == 0 { "wanted" } else { "other" };
                BatchOp::Insert(
                    Entity::new(pk, format!("r{i:02}"))
                        .with("kind", kind)
                        .with("flag", i % 2 == 0),
                )
            })
            .collect();
        fx.store.batch(&fx.table, pk, ops).await.expect("seed");
        if pk == "p2" {
            want.extend(
                (0..10)
                    .filter(|i| i % 3 == 0)
                    .map(|i| (pk.to_owned(), format!("r{i:02}"))),
            );
        }
    }
    let query = TableQuery {
        equals: vec![("kind".into(), Prop::from("wanted"))],
        top: Some(3),
        ..TableQuery::partition("p2")
    };
    let (rows, _) = query_all(&fx, query).await;
    assert_eq!(keys(&rows), want);
    assert!(rows.iter().all(|r| r.entity.str("kind") == Some("wanted")));

    let query = TableQuery {
        equals: vec![
            ("kind".into(), Prop::from("wanted")),
            ("flag".into(), Prop::Bool(true)),
        ],
        ..TableQuery::partition("p2")
    };
    let (rows, _) = query_all(&fx, query).await;
    let want: Vec<(String, String)> = [0, 6].map(|i| ("p2".to_owned(), format!("r{i:02}"))).into();
    assert_eq!(keys(&rows), want);
}

// ---------------------------------------------------------------------------------------------
// Signed URLs
// ---------------------------------------------------------------------------------------------

const DISPLAY_NAME: &str = "Quarterly report «final» \"v2\".txt";

async fn signed_url(fx: &Fixture, name: &str, valid_for: Duration) -> String {
    fx.store
        .signed_read_url(&SignedUrlRequest {
            snapshot: None,
            container: &fx.container,
            name,
            expires_at: fx.clock.now() + valid_for,
            download_name: DISPLAY_NAME,
        })
        .await
        .expect("signed_read_url")
}

/// The `filename*` of a Content-Disposition, decoded.
fn extended_filename(disposition: &str) -> Option<String> {
    let start = disposition.find("filename*=UTF-8''")? + "filename*=UTF-8''".len();
    let encoded = disposition[start..].split(';').next()?.trim();
    percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A plain HTTP client gets the bytes, saved under the display name.
pub async fn signed_url_serves_the_bytes_under_the_download_name(fx: Fixture) {
    let data = pattern(100_000, 5);
    fx.store
        .put_blob(
            &fx.container,
            "signed",
            stream_of(split(&data, 10_000)),
            &options("text/plain"),
        )
        .await
        .expect("put");
    let url = signed_url(&fx, "signed", Duration::hours(1)).await;
    let response = fx.http.get(&url).send().await.expect("the URL answers");
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("content-type").as_deref(), Some("text/plain"));
    let disposition = header("content-disposition").expect("a Content-Disposition");
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert_eq!(
        extended_filename(&disposition).as_deref(),
        Some(DISPLAY_NAME),
        "{disposition}"
    );
    let body = response.bytes().await.expect("the body");
    assert_eq!(body.as_ref(), data.as_slice());
}

/// The link is read-only: writes through it are refused and change nothing.
pub async fn signed_url_refuses_writes(fx: Fixture) {
    put(&fx, "signed", b"original").await;
    let url = signed_url(&fx, "signed", Duration::hours(1)).await;
    let put_status = fx
        .http
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body("overwritten")
        .send()
        .await
        .expect("the URL answers")
        .status();
    assert!(put_status.is_client_error(), "PUT answered {put_status}");
    let delete_status = fx
        .http
        .delete(&url)
        .send()
        .await
        .expect("the URL answers")
        .status();
    assert!(
        delete_status.is_client_error(),
        "DELETE answered {delete_status}"
    );
    assert_eq!(get(&fx, "signed").await, b"original");
}

/// The signature covers the blob: the same query on another blob's URL is refused.
pub async fn signed_url_is_refused_for_another_blob(fx: Fixture) {
    put(&fx, "granted", b"granted").await;
    put(&fx, "withheld", b"withheld").await;
    let url = signed_url(&fx, "granted", Duration::hours(1)).await;
    let mut other = reqwest::Url::parse(&url).expect("a URL");
    other
        .path_segments_mut()
        .expect("a path")
        .pop()
        .push("withheld");
    let response = fx
        .http
        .get(other.clone())
        .send()
        .await
        .expect("the URL answers");
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN, "{other}");
    let response = fx.http.get(&url).send().await.expect("the URL answers");
    assert_eq!(
        response.status(),
        reqwest::StatusCode::OK,
        "the genuine link works"
    );
}

/// A link minted already expired is refused; with a movable clock, a valid link is refused
/// once time passes its expiry.
pub async fn expired_signed_url_is_refused(fx: Fixture) {
    put(&fx, "signed", b"data").await;
    let expired = signed_url(&fx, "signed", Duration::seconds(-1)).await;
    let status = fx
        .http
        .get(&expired)
        .send()
        .await
        .expect("answers")
        .status();
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "an expired link");

    if let Some(clock) = &fx.manual_clock {
        let url = signed_url(&fx, "signed", Duration::hours(1)).await;
        let status = fx.http.get(&url).send().await.expect("answers").status();
        assert_eq!(status, reqwest::StatusCode::OK);
        clock.advance(Duration::hours(1));
        let response = fx.http.get(&url).send().await.expect("answers");
        assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
        let body = response.text().await.expect("a body");
        assert!(body.contains("expired"), "the refusal says why: {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Upload links (always in the uploads container: the embedded store serves no other)
// ---------------------------------------------------------------------------------------------

/// An upload link for a fresh blob of the uploads container, valid for `valid_for`.
async fn upload_url(fx: &Fixture, valid_for: Duration) -> (String, String) {
    fx.store
        .ensure_container(super::UPLOADS_CONTAINER)
        .await
        .expect("the uploads container");
    let name = uuid::Uuid::new_v4().to_string();
    let url = fx
        .store
        .signed_write_url(&super::SignedWriteRequest {
            container: super::UPLOADS_CONTAINER,
            name: &name,
            expires_at: fx.clock.now() + valid_for,
        })
        .await
        .expect("an upload URL");
    (name, url)
}

/// A single `PUT` as `curl -T` or an SDK's small upload sends it.
async fn put_through(fx: &Fixture, url: &str, body: &'static [u8]) -> reqwest::Response {
    fx.http
        .put(url)
        .header("x-ms-blob-type", "BlockBlob")
        .header("content-type", "application/pdf")
        .body(body)
        .send()
        .await
        .expect("the URL answers")
}

/// An upload link takes a plain HTTP `PUT` of its blob, with the content type sent.
pub async fn an_upload_url_takes_a_put_of_its_blob(fx: Fixture) {
    let (name, url) = upload_url(&fx, Duration::minutes(15)).await;
    let response = put_through(&fx, &url, b"straight to storage").await;
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    assert!(response.headers().contains_key("etag"));
    let read = fx
        .store
        .get_blob(super::UPLOADS_CONTAINER, &name, None)
        .await
        .expect("the blob is there");
    assert_eq!(read.properties.content_type, "application/pdf");
    assert_eq!(read_all(read.body).await, b"straight to storage");
}

/// It grants nothing else: no read, no delete, not without the blob type.
pub async fn an_upload_url_refuses_reads_deletes_and_untyped_puts(fx: Fixture) {
    let (name, url) = upload_url(&fx, Duration::minutes(15)).await;
    let untyped = fx
        .http
        .put(&url)
        .body("no blob type")
        .send()
        .await
        .expect("answers");
    assert_eq!(untyped.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(
        put_through(&fx, &url, b"kept").await.status(),
        reqwest::StatusCode::CREATED
    );
    let read = fx.http.get(&url).send().await.expect("answers").status();
    assert!(read.is_client_error(), "GET answered {read}");
    let delete = fx.http.delete(&url).send().await.expect("answers").status();
    assert!(delete.is_client_error(), "DELETE answered {delete}");
    let kept = fx
        .store
        .get_blob(super::UPLOADS_CONTAINER, &name, None)
        .await
        .expect("still there");
    assert_eq!(read_all(kept.body).await, b"kept");
}

/// The signature covers the blob: the same query on another name is refused, and writes
/// nothing there.
pub async fn an_upload_url_is_refused_for_another_blob(fx: Fixture) {
    let (_, url) = upload_url(&fx, Duration::minutes(15)).await;
    let other_name = uuid::Uuid::new_v4().to_string();
    let mut other = reqwest::Url::parse(&url).expect("a URL");
    other
        .path_segments_mut()
        .expect("a path")
        .pop()
        .push(&other_name);
    let status = put_through(&fx, other.as_str(), b"smuggled").await.status();
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    assert_not_found(
        fx.store
            .blob_properties(super::UPLOADS_CONTAINER, &other_name)
            .await,
        "the other blob",
    );
}

/// After its expiry an upload link writes nothing.
pub async fn an_expired_upload_url_is_refused(fx: Fixture) {
    let (name, expired) = upload_url(&fx, Duration::seconds(-1)).await;
    let status = put_through(&fx, &expired, b"late").await.status();
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "an expired link");
    assert_not_found(
        fx.store
            .blob_properties(super::UPLOADS_CONTAINER, &name)
            .await,
        "the blob of an expired link",
    );
    if let Some(clock) = &fx.manual_clock {
        let (_, url) = upload_url(&fx, Duration::minutes(15)).await;
        assert_eq!(
            put_through(&fx, &url, b"in time").await.status(),
            reqwest::StatusCode::CREATED
        );
        clock.advance(Duration::minutes(15));
        let response = put_through(&fx, &url, b"too late").await;
        assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
        let body = response.text().await.expect("a body");
        assert!(body.contains("expired"), "the refusal says why: {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Restart (backends with local state)
// ---------------------------------------------------------------------------------------------

/// Blobs, entities and ETag semantics survive closing and reopening the store: old ETags
/// still guard writes, stale ones are still refused, and no ETag is ever issued twice.
pub async fn restart_keeps_blobs_entities_and_etags(fx: Fixture) {
    let blob = put(&fx, "kept", b"kept across a restart").await;
    let stale = insert(&fx, &Entity::new("p", "a").with("v", 0i64)).await;
    let current = update(&fx, &Entity::new("p", "a").with("v", 1i64), &stale)
        .await
        .expect("update");
    let b = insert(&fx, &Entity::new("p", "b").with("v", 0i64)).await;
    let mut issued: Vec<ETag> = vec![blob.etag.clone(), stale.clone(), current.clone(), b.clone()];

    let fx = fx.restart().await;

    assert_eq!(get(&fx, "kept").await, b"kept across a restart");
    let props = fx
        .store
        .blob_properties(&fx.container, "kept")
        .await
        .expect("properties");
    assert_eq!(props, blob);
    let a = stored(&fx, "p", "a").await;
    assert_eq!(a.entity, Entity::new("p", "a").with("v", 1i64));
    assert_eq!(a.etag, current);
    assert_precondition_failed(
        update(&fx, &Entity::new("p", "a").with("v", 2i64), &stale).await,
        "a stale ETag after restart",
    );
    let after = update(&fx, &Entity::new("p", "a").with("v", 2i64), &current)
        .await
        .expect("the current ETag still guards writes after restart");
    let new_row = insert(&fx, &Entity::new("p", "c")).await;
    let new_blob = put(&fx, "new", b"new").await;
    for etag in [&after, &new_row, &new_blob.etag] {
        assert!(
            !issued.contains(etag),
            "ETag {etag} was issued before the restart"
        );
        issued.push(etag.clone());
    }
    assert_eq!(stored(&fx, "p", "b").await.etag, b);
    let mut props: BTreeMap<String, Prop> = BTreeMap::new();
    props.insert("v".into(), Prop::Int(2));
    assert_eq!(stored(&fx, "p", "a").await.entity.props, props);
}

// ---------------------------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------------------------

/// Lets `seconds` pass for the backend's queue: the embedded store's clock is moved; Azure's is
/// the service's own, so the check waits (its visibility counts whole seconds).
async fn let_pass(fx: &Fixture, seconds: u64) {
    match &fx.manual_clock {
        Some(clock) => clock.advance(Duration::seconds(i64::try_from(seconds).unwrap_or(60))),
        None => tokio::time::sleep(std::time::Duration::from_millis(seconds * 1000 + 300)).await,
    }
}

fn secs(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n)
}

async fn receive(fx: &Fixture, visibility: u64) -> Vec<super::ReceivedMessage> {
    fx.store
        .dequeue(&fx.queue, 32, secs(visibility))
        .await
        .expect("dequeue")
}

/// Sent, received once with a fresh receipt, hidden while received, deleted for good; the text
/// comes back exactly, XML-special and non-ASCII characters included.
pub async fn queue_messages_round_trip_and_are_deleted_by_their_receipt(fx: Fixture) {
    let texts = ["{\"work\":\"activity\",\"task\":5}", "<&>\"' é ✓"];
    for text in texts {
        fx.store
            .enqueue(&fx.queue, text, secs(0))
            .await
            .expect("enqueue");
    }
    let mut received = receive(&fx, 30).await;
    received.sort_by(|a, b| a.text.cmp(&b.text));
    let mut expected = texts.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(
        received.iter().map(|m| m.text.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(received.iter().all(|m| m.dequeue_count == 1));
    assert!(
        receive(&fx, 30).await.is_empty(),
        "received messages stay hidden"
    );
    for message in &received {
        fx.store
            .delete_message(&fx.queue, &message.receipt)
            .await
            .expect("delete");
    }
    assert_not_found(
        fx.store
            .delete_message(&fx.queue, &received[0].receipt)
            .await,
        "a second delete",
    );
}

/// A delayed message is invisible until its time (a durable timer).
pub async fn a_delayed_message_stays_hidden_until_due(fx: Fixture) {
    fx.store
        .enqueue(&fx.queue, "later", secs(2))
        .await
        .expect("enqueue");
    assert!(receive(&fx, 30).await.is_empty(), "visible too early");
    let_pass(&fx, 3).await;
    let received = receive(&fx, 30).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].text, "later");
}

/// A received message that is not deleted comes back once its visibility runs out, with a
/// higher dequeue count and a new receipt; the old receipt no longer deletes it.
pub async fn an_undeleted_message_comes_back_with_a_higher_count(fx: Fixture) {
    fx.store
        .enqueue(&fx.queue, "retry me", secs(0))
        .await
        .expect("enqueue");
    let first = receive(&fx, 1).await.remove(0);
    let_pass(&fx, 2).await;
    let second = receive(&fx, 30).await;
    assert_eq!(second.len(), 1, "it came back");
    let second = second.into_iter().next().expect("one");
    assert_eq!(second.dequeue_count, 2);
    assert_ne!(second.receipt, first.receipt);
    assert_not_found(
        fx.store.delete_message(&fx.queue, &first.receipt).await,
        "delete by a stale receipt",
    );
    fx.store
        .delete_message(&fx.queue, &second.receipt)
        .await
        .expect("delete by the current receipt");
}

/// A worker still busy renews its message: it stays hidden past its first visibility, and only
/// the renewed receipt deletes it.
pub async fn renewing_keeps_a_message_hidden_and_replaces_its_receipt(fx: Fixture) {
    fx.store
        .enqueue(&fx.queue, "long job", secs(0))
        .await
        .expect("enqueue");
    let received = receive(&fx, 1).await.remove(0);
    let renewed = fx
        .store
        .renew_message(&fx.queue, &received.receipt, &received.text, secs(30))
        .await
        .expect("renew");
    let_pass(&fx, 2).await;
    assert!(receive(&fx, 30).await.is_empty(), "renewed: still hidden");
    assert_not_found(
        fx.store.delete_message(&fx.queue, &received.receipt).await,
        "delete by the receipt before the renewal",
    );
    fx.store
        .delete_message(&fx.queue, &renewed)
        .await
        .expect("delete by the renewed receipt");

    // Renewed for no time at all, a message shows again at once: how the Functions host
    // releases a message whose invocation failed.
    fx.store
        .enqueue(&fx.queue, "failed job", secs(0))
        .await
        .expect("enqueue");
    let received = receive(&fx, 30).await.remove(0);
    fx.store
        .renew_message(&fx.queue, &received.receipt, &received.text, secs(0))
        .await
        .expect("release");
    let again = receive(&fx, 30).await;
    assert_eq!(again.len(), 1, "released: visible again");
    assert_eq!(again[0].dequeue_count, 2);
}

/// The receipt a send returns lets the sender keep its own message hidden and then delete it
/// without ever receiving it: how a long activity's standby copy is held and withdrawn.
pub async fn a_sender_holds_and_withdraws_its_message_by_the_send_receipt(fx: Fixture) {
    let sent = fx
        .store
        .enqueue(&fx.queue, "standby", secs(30))
        .await
        .expect("enqueue");
    let held = fx
        .store
        .renew_message(&fx.queue, &sent, "standby", secs(30))
        .await
        .expect("hide again by the send receipt");
    assert_eq!(held.id, sent.id, "the same message");
    assert!(receive(&fx, 30).await.is_empty(), "held: still hidden");
    assert_not_found(
        fx.store.delete_message(&fx.queue, &sent).await,
        "delete by the receipt the hiding replaced",
    );
    fx.store
        .delete_message(&fx.queue, &held)
        .await
        .expect("withdraw by the current receipt");
    assert_not_found(
        fx.store
            .renew_message(&fx.queue, &held, "standby", secs(0))
            .await
            .map(drop),
        "release of a withdrawn message",
    );

    // Released at once by its sender, it is delivered like any other message.
    let sent = fx
        .store
        .enqueue(&fx.queue, "standby", secs(30))
        .await
        .expect("enqueue");
    fx.store
        .renew_message(&fx.queue, &sent, "standby", secs(0))
        .await
        .expect("release");
    let got = receive(&fx, 30).await;
    assert_eq!(got.len(), 1, "released: delivered");
    assert_eq!(got[0].text, "standby");
    assert_eq!(got[0].dequeue_count, 1, "never received before");
}

/// What Azure refuses is refused everywhere, before anything is sent.
pub async fn bad_queue_requests_are_refused(fx: Fixture) {
    assert_invalid(
        fx.store
            .enqueue(
                &fx.queue,
                &"x".repeat(super::MAX_MESSAGE_BYTES + 1),
                secs(0),
            )
            .await,
        "a message over 64 KiB",
    );
    assert_invalid(
        fx.store
            .enqueue(&fx.queue, "x", super::MAX_VISIBILITY + secs(1))
            .await,
        "a delay over 7 days",
    );
    assert_invalid(
        fx.store.enqueue("Bad_Queue", "x", secs(0)).await,
        "a bad queue name",
    );
    assert_invalid(
        fx.store.dequeue(&fx.queue, 33, secs(30)).await,
        "33 messages at once",
    );
    let missing = format!("missing-{}", random_suffix());
    assert_not_found(
        fx.store.enqueue(&missing, "x", secs(0)).await,
        "a missing queue",
    );
    assert!(receive(&fx, 30).await.is_empty(), "nothing was sent");
}

/// What a worker that must not poll can learn: exactly when the embedded store's next message
/// shows; on Azure, only whether one is visible now.
pub async fn next_visible_says_when_a_worker_may_sleep_until(fx: Fixture) {
    let before = fx.store.next_visible(&fx.queue).await.expect("empty");
    assert!(
        matches!(
            before,
            super::NextVisible::Empty | super::NextVisible::Unknown
        ),
        "{before:?}"
    );
    let now = fx.clock.now();
    fx.store
        .enqueue(&fx.queue, "in ten seconds", secs(10))
        .await
        .expect("enqueue");
    match fx.store.next_visible(&fx.queue).await.expect("pending") {
        super::NextVisible::At(t) => {
            assert!(t >= now + Duration::seconds(9), "{t} is too early");
        }
        super::NextVisible::Unknown => {}
        super::NextVisible::Empty => panic!("the queue holds a message"),
    }
}

/// Messages survive closing and reopening the store (embedded: the same database).
pub async fn restart_keeps_queue_messages(fx: Fixture) {
    fx.store
        .enqueue(&fx.queue, "durable", secs(0))
        .await
        .expect("enqueue");
    let fx = fx.restart().await;
    let received = receive(&fx, 30).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].text, "durable");
}
