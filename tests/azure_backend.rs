//! Azure-specific behaviour of `AzureStore`, against a real Azurite (started by `scripts/test`,
//! which exports `FILE_APPROVER_TEST_AZURE_STORAGE`). The behaviour every backend shares is
//! covered by the storage conformance suite; these tests cover what only this backend can get
//! wrong: connection strings, the hand-signed SAS, batch statuses hidden in a 202, Int64
//! typing, paging, and block uploads.
//!
//! Without the variable the tests print "skipped" and pass, unless `CI` is set: then they fail,
//! so a CI run can never skip them silently.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{Duration, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use file_approver::store::azure::AzureStore;
use file_approver::store::conformance::azure_test_connection_string;
use file_approver::store::{
    BatchOp, BodyTooLarge, BoxError, ByteStream, ETag, Entity, Prop, PutBlobOptions,
    SignedUrlRequest, Storage, StoreError, TableQuery,
};

const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn store() -> Option<AzureStore> {
    Some(AzureStore::from_connection_string(&azure_test_connection_string()).unwrap())
}

/// Each test works in its own container and table, so tests run in parallel and reruns against
/// a long-lived Azurite do not collide.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// A conditional replace of one row: a batch of one `Update`.
async fn update(
    store: &AzureStore,
    table: &str,
    entity: &Entity,
    if_match: &ETag,
) -> Result<ETag, StoreError> {
    let op = BatchOp::Update {
        entity: entity.clone(),
        if_match: if_match.clone(),
    };
    let mut etags = store.batch(table, &entity.partition_key, vec![op]).await?;
    Ok(etags.pop().flatten().unwrap())
}

fn body_of(chunks: Vec<Bytes>) -> ByteStream {
    Box::pin(stream::iter(chunks.into_iter().map(Ok::<_, BoxError>)))
}

fn options(content_type: &str) -> PutBlobOptions {
    PutBlobOptions {
        content_type: content_type.to_owned(),
        max_bytes: None,
    }
}

/// Deterministic, incompressible-looking test bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Splits `data` into chunks of uneven sizes, as a network body would arrive.
fn uneven_chunks(data: &[u8]) -> Vec<Bytes> {
    let sizes = [1usize, 7_001, 65_536, 300_000, 13];
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - at);
        out.push(Bytes::copy_from_slice(&data[at..at + n]));
        at += n;
        i += 1;
    }
    out
}

async fn read_all(store: &AzureStore, container: &str, name: &str) -> Vec<u8> {
    let read = store.get_blob(container, name, None).await.unwrap();
    let chunks: Vec<Bytes> = read.body.try_collect().await.unwrap();
    chunks.concat()
}

async fn new_table(store: &AzureStore) -> String {
    let table = unique("t");
    store.ensure_table(&table).await.unwrap();
    table
}

async fn new_container(store: &AzureStore) -> String {
    let container = unique("c");
    store.ensure_container(&container).await.unwrap();
    container
}

// ---------------------------------------------------------------------------------------------
// Connection strings
// ---------------------------------------------------------------------------------------------

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn explicit_and_development_connection_strings_reach_the_same_account() {
    let cs = azure_test_connection_string();
    let explicit = if cs == "UseDevelopmentStorage=true" {
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;\
             TableEndpoint=http://127.0.0.1:10002/devstoreaccount1"
        )
    } else {
        cs.clone()
    };
    let first = AzureStore::from_connection_string(&cs).unwrap();
    let second = AzureStore::from_connection_string(&explicit).unwrap();
    let table = new_table(&first).await;
    let etag = first
        .insert_entity(&table, &Entity::new("p", "r").with("v", 1i64))
        .await
        .unwrap();
    let seen = second.get_entity(&table, "p", "r").await.unwrap();
    assert_eq!(seen.etag, etag);
    assert_eq!(seen.entity.i64("v"), Some(1));
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn a_wrong_account_key_is_refused_by_the_service_and_not_echoed() {
    let cs = azure_test_connection_string();
    let store = AzureStore::from_connection_string(&cs).unwrap();
    let table = new_table(&store).await;
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==";
    let explicit = if cs == "UseDevelopmentStorage=true" {
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={wrong_key};\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;\
             TableEndpoint=http://127.0.0.1:10002/devstoreaccount1"
        )
    } else {
        cs.replace(DEV_KEY, wrong_key)
    };
    let impostor = AzureStore::from_connection_string(&explicit).unwrap();
    let err = impostor.get_entity(&table, "p", "r").await.unwrap_err();
    // Refused credentials are the service being unavailable to this app (503 at the edge,
    // the service's code in the log), as with a managed identity's refused token.
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let shown = format!("{err:?} {err}");
    assert!(
        !shown.contains(wrong_key) && !shown.contains(DEV_KEY),
        "{shown}"
    );
}

#[tokio::test]
async fn a_closed_port_is_reported_as_unavailable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = AzureStore::from_connection_string(&format!(
        "AccountName=devstoreaccount1;AccountKey={DEV_KEY};\
         BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;\
         TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1"
    ))
    .unwrap();
    let err = store.ensure_table("nothinghere").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = store.ensure_container("nothing-here").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Signed read links
// ---------------------------------------------------------------------------------------------

async fn blob_with_link(
    store: &AzureStore,
    expires_in: Duration,
) -> (String, String, Vec<u8>, String) {
    let container = new_container(store).await;
    let name = uuid::Uuid::new_v4().to_string();
    let content = pattern(100_000, 7);
    store
        .put_blob(
            &container,
            &name,
            body_of(vec![Bytes::from(content.clone())]),
            &options("application/pdf"),
        )
        .await
        .unwrap();
    let url = store
        .signed_read_url(&SignedUrlRequest {
            snapshot: None,
            container: &container,
            name: &name,
            expires_at: Utc::now() + expires_in,
            download_name: "Quartalsbericht \"Q3\" Übersicht.pdf",
        })
        .await
        .unwrap();
    (container, name, content, url)
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn signed_link_downloads_the_blob_as_an_attachment() {
    let Some(store) = store() else { return };
    let (_, _, content, url) = blob_with_link(&store, Duration::hours(1)).await;
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"Quartalsbericht _Q3_ _bersicht.pdf\"; \
         filename*=UTF-8''Quartalsbericht%20%22Q3%22%20%C3%9Cbersicht.pdf"
    );
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(response.bytes().await.unwrap(), content);
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn signed_link_cannot_write_or_delete() {
    let Some(store) = store() else { return };
    let (container, name, content, url) = blob_with_link(&store, Duration::hours(1)).await;
    let http = reqwest::Client::new();
    let put = http
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body("overwritten")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 403);
    let delete = http.delete(&url).send().await.unwrap();
    assert_eq!(delete.status(), 403);
    assert_eq!(read_all(&store, &container, &name).await, content);
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn signed_link_query_does_not_open_another_blob() {
    let Some(store) = store() else { return };
    let (container, _, _, url) = blob_with_link(&store, Duration::hours(1)).await;
    let other = "other-blob";
    store
        .put_blob(
            &container,
            other,
            body_of(vec![Bytes::from_static(b"secret")]),
            &options("text/plain"),
        )
        .await
        .unwrap();
    let (base, query) = url.split_once('?').unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let response = reqwest::get(format!("{prefix}/{other}?{query}"))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn expired_or_tampered_signed_link_is_refused() {
    let Some(store) = store() else { return };
    let (_, _, _, expired) = blob_with_link(&store, Duration::minutes(-5)).await;
    assert_eq!(reqwest::get(&expired).await.unwrap().status(), 403);

    let (_, _, _, valid) = blob_with_link(&store, Duration::hours(1)).await;
    let tampered = valid.replacen("sp=r", "sp=rw", 1);
    assert_ne!(tampered, valid);
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);
}

// ---------------------------------------------------------------------------------------------
// Blobs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn multi_block_upload_round_trips_without_an_md5_as_the_service_keeps_none() {
    let Some(store) = store() else { return };
    // Small blocks so that a 1 MiB body is 16 blocks with several in flight.
    let store = store.with_upload_blocks(64 * 1024, 3);
    let container = new_container(&store).await;
    let content = pattern(1024 * 1024 + 17, 1);
    let written = store
        .put_blob(
            &container,
            "multi",
            body_of(uneven_chunks(&content)),
            &options("image/png"),
        )
        .await
        .unwrap();
    assert_eq!(written.size, content.len() as u64);
    // Sent in blocks: no MD5, here or in the service (BlobProperties::content_md5).
    assert_eq!(written.content_md5, None);

    let stored = store.blob_properties(&container, "multi").await.unwrap();
    assert_eq!(stored.size, content.len() as u64);
    assert_eq!(stored.content_type, "image/png");
    assert_eq!(stored.content_md5, None);
    assert_eq!(stored.etag, written.etag);
    assert_eq!(read_all(&store, &container, "multi").await, content);
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn body_of_exactly_one_block_is_one_put_blob_with_its_md5() {
    let Some(store) = store() else { return };
    let store = store.with_upload_blocks(64 * 1024, 2);
    let container = new_container(&store).await;
    let content = pattern(64 * 1024, 2);
    store
        .put_blob(
            &container,
            "one",
            body_of(uneven_chunks(&content)),
            &options("text/plain"),
        )
        .await
        .unwrap();
    let stored = store.blob_properties(&container, "one").await.unwrap();
    assert_eq!(stored.content_md5, Some(Md5::digest(&content).into()));
    assert_eq!(read_all(&store, &container, "one").await, content);
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn empty_blob_round_trips() {
    let Some(store) = store() else { return };
    let container = new_container(&store).await;
    let written = store
        .put_blob(&container, "empty", body_of(vec![]), &options("text/plain"))
        .await
        .unwrap();
    assert_eq!(written.size, 0);
    assert!(read_all(&store, &container, "empty").await.is_empty());
    let read = store
        .get_blob(&container, "empty", Some(0..10))
        .await
        .unwrap();
    assert_eq!(read.properties.size, 0);
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn ranged_reads_span_chunks_and_clamp_at_the_end() {
    let Some(store) = store() else { return };
    let container = new_container(&store).await;
    let content = pattern(300_000, 3);
    store
        .put_blob(
            &container,
            "r",
            body_of(vec![Bytes::from(content.clone())]),
            &options("a/b"),
        )
        .await
        .unwrap();
    for range in [0..1, 1000..200_000, 299_999..300_000, 250_000..400_000] {
        let read = store
            .get_blob(&container, "r", Some(range.clone()))
            .await
            .unwrap();
        assert_eq!(read.properties.size, 300_000);
        let got: Vec<Bytes> = read.body.try_collect().await.unwrap();
        let end = (range.end as usize).min(content.len());
        assert_eq!(
            got.concat(),
            &content[range.start as usize..end],
            "{range:?}"
        );
    }
    let err = store
        .get_blob(&container, "r", Some(400_000..400_001))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn failed_stream_leaves_the_older_blob_untouched() {
    let Some(store) = store() else { return };
    let store = store.with_upload_blocks(64 * 1024, 2);
    let container = new_container(&store).await;
    store
        .put_blob(
            &container,
            "doc",
            body_of(vec![Bytes::from_static(b"version 1")]),
            &options("text/plain"),
        )
        .await
        .unwrap();
    let before = store.blob_properties(&container, "doc").await.unwrap();

    // Several blocks get staged before the stream breaks.
    let good = pattern(300_000, 4);
    let failing: ByteStream = Box::pin(
        stream::iter(uneven_chunks(&good).into_iter().map(Ok::<_, BoxError>)).chain(stream::once(
            async { Err::<Bytes, BoxError>("client went away".into()) },
        )),
    );
    let err = store
        .put_blob(&container, "doc", failing, &options("text/plain"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Body(_)), "{err:?}");

    assert_eq!(read_all(&store, &container, "doc").await, b"version 1");
    assert_eq!(
        store.blob_properties(&container, "doc").await.unwrap(),
        before
    );
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn body_over_the_limit_is_refused_without_a_commit() {
    let Some(store) = store() else { return };
    let store = store.with_upload_blocks(64 * 1024, 2);
    let container = new_container(&store).await;
    store
        .put_blob(
            &container,
            "doc",
            body_of(vec![Bytes::from_static(b"version 1")]),
            &options("text/plain"),
        )
        .await
        .unwrap();
    let content = pattern(500_000, 5);
    let limited = PutBlobOptions {
        content_type: "text/plain".into(),
        max_bytes: Some(200_000),
    };
    let err = store
        .put_blob(
            &container,
            "doc",
            body_of(uneven_chunks(&content)),
            &limited,
        )
        .await
        .unwrap_err();
    let StoreError::Body(cause) = err else {
        panic!("{err:?}")
    };
    let too_large = cause.downcast_ref::<BodyTooLarge>().unwrap();
    assert_eq!(too_large.limit, 200_000);
    assert_eq!(read_all(&store, &container, "doc").await, b"version 1");
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn missing_blobs_and_containers_are_not_found() {
    let Some(store) = store() else { return };
    let container = new_container(&store).await;
    assert!(matches!(
        store.blob_properties(&container, "nope").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_blob(&container, "nope", None).await.err(),
        Some(StoreError::NotFound)
    ));
    assert!(matches!(
        store.blob_properties(&unique("missing"), "nope").await,
        Err(StoreError::NotFound)
    ));
    store.ensure_container(&container).await.unwrap();
}

/// Throughput and memory of one 256 MiB streamed upload; run by hand:
/// `scripts/test --test azure_backend -- --ignored --nocapture large_stream`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 256 MiB measurement, not a check"]
async fn large_stream_upload_measurement() {
    let Some(store) = store() else { return };
    // FILE_APPROVER_BENCH_BLOCKS=<MiB>x<in flight> compares block shapes without a rebuild.
    let shape = std::env::var("FILE_APPROVER_BENCH_BLOCKS").unwrap_or_else(|_| "8x4".into());
    let (mib, in_flight) = shape.split_once('x').unwrap();
    let (mib, in_flight): (usize, usize) = (mib.parse().unwrap(), in_flight.parse().unwrap());
    let store = store.with_upload_blocks(mib * 1024 * 1024, in_flight);
    let container = new_container(&store).await;
    const TOTAL: usize = 256 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(pattern(CHUNK, 9));
    let body: ByteStream = Box::pin(stream::iter(
        (0..TOTAL / CHUNK).map(move |_| Ok::<_, BoxError>(chunk.clone())),
    ));
    let started = std::time::Instant::now();
    let written = store
        .put_blob(
            &container,
            "large",
            body,
            &options("application/octet-stream"),
        )
        .await
        .unwrap();
    let upload = started.elapsed();
    assert_eq!(written.size, TOTAL as u64);
    let started = std::time::Instant::now();
    let read = store.get_blob(&container, "large", None).await.unwrap();
    let read_bytes = read
        .body
        .try_fold(0usize, |n, c| async move { Ok(n + c.len()) })
        .await
        .unwrap();
    let download = started.elapsed();
    assert_eq!(read_bytes, TOTAL);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?");
    let mb = TOTAL as f64 / 1e6;
    println!(
        "{shape}: 256 MiB upload: {:.1} s, {:.0} MB/s; read back: {:.1} s, {:.0} MB/s; test process {hwm}",
        upload.as_secs_f64(),
        mb / upload.as_secs_f64(),
        download.as_secs_f64(),
        mb / download.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn int64_and_other_types_round_trip_exactly() {
    let Some(store) = store() else { return };
    let table = new_table(&store).await;
    let mut entity = Entity::new("types", "row")
        .with("max", i64::MAX)
        .with("min", i64::MIN)
        .with("big", 5_000_000_000i64)
        .with("small", 1i64)
        .with("yes", true)
        .with("text", "it's \"quoted\" – ünïcode")
        .with("numeric_text", "42");
    entity.props.insert("tenth".into(), Prop::Float(0.1));
    entity.props.insert("whole".into(), Prop::Float(2.0));
    store.insert_entity(&table, &entity).await.unwrap();

    let read = store.get_entity(&table, "types", "row").await.unwrap();
    assert_eq!(read.entity, entity);
    let page = store
        .query(
            &table,
            &TableQuery {
                ..TableQuery::partition("types")
            },
        )
        .await
        .unwrap();
    assert_eq!(page.entities.len(), 1);
    assert_eq!(page.entities[0].entity, entity);
    assert_eq!(page.entities[0].etag, read.etag);
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn keys_with_quotes_spaces_and_unicode_work_everywhere() {
    let Some(store) = store() else { return };
    let table = new_table(&store).await;
    let (pk, rk) = ("o'brien & co", "a b'c ü%20");
    let etag = store
        .insert_entity(&table, &Entity::new(pk, rk).with("v", 1i64))
        .await
        .unwrap();
    let etag = update(
        &store,
        &table,
        &Entity::new(pk, rk).with("v", 2i64).with("w", true),
        &etag,
    )
    .await
    .unwrap();
    let read = store.get_entity(&table, pk, rk).await.unwrap();
    assert_eq!(read.etag, etag);
    assert_eq!(read.entity.i64("v"), Some(2));
    assert_eq!(read.entity.bool("w"), Some(true));
    let etags = store
        .batch(
            &table,
            pk,
            vec![
                BatchOp::Update {
                    entity: Entity::new(pk, rk).with("v", 3i64),
                    if_match: etag,
                },
                BatchOp::Insert(Entity::new(pk, "x'y")),
            ],
        )
        .await
        .unwrap();
    store
        .delete_entity(&table, pk, rk, etags[0].as_ref())
        .await
        .unwrap();
    let page = store
        .query(
            &table,
            &TableQuery {
                ..TableQuery::partition(pk)
            },
        )
        .await
        .unwrap();
    let rows: Vec<_> = page
        .entities
        .iter()
        .map(|e| e.entity.row_key.as_str())
        .collect();
    assert_eq!(rows, ["x'y"]);
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn batch_returns_each_rows_new_etag() {
    let Some(store) = store() else { return };
    let table = new_table(&store).await;
    let state = store
        .insert_entity(&table, &Entity::new("wf", "state").with("step", 0i64))
        .await
        .unwrap();
    store
        .insert_entity(&table, &Entity::new("wf", "old"))
        .await
        .unwrap();
    let etags = store
        .batch(
            &table,
            "wf",
            vec![
                BatchOp::Insert(Entity::new("wf", "h-000001").with("event", "started")),
                BatchOp::Insert(Entity::new("wf", "h-000002").with("event", "waiting")),
                BatchOp::Update {
                    entity: Entity::new("wf", "state").with("step", 1i64),
                    if_match: state,
                },
                BatchOp::Delete {
                    row_key: "old".into(),
                    if_match: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(etags.len(), 4);
    assert!(etags[3].is_none());
    for (row, etag) in ["h-000001", "h-000002", "state"].iter().zip(&etags) {
        let read = store.get_entity(&table, "wf", row).await.unwrap();
        assert_eq!(Some(&read.etag), etag.as_ref(), "{row}");
    }
    assert!(matches!(
        store.get_entity(&table, "wf", "old").await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn batch_failure_hidden_in_a_202_is_detected_and_nothing_applies() {
    let Some(store) = store() else { return };
    let table = new_table(&store).await;
    let state = store
        .insert_entity(&table, &Entity::new("wf", "state").with("step", 0i64))
        .await
        .unwrap();
    let newer = update(
        &store,
        &table,
        &Entity::new("wf", "state").with("step", 1i64),
        &state,
    )
    .await
    .unwrap();

    // A stale ETag, after an insert that must be rolled back.
    let err = store
        .batch(
            &table,
            "wf",
            vec![
                BatchOp::Insert(Entity::new("wf", "h-000001")),
                BatchOp::Update {
                    entity: Entity::new("wf", "state").with("step", 2i64),
                    if_match: state,
                },
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::PreconditionFailed), "{err:?}");
    assert!(matches!(
        store.get_entity(&table, "wf", "h-000001").await,
        Err(StoreError::NotFound)
    ));

    // A valid update, then an insert of a row that exists: the update must be rolled back.
    store
        .insert_entity(&table, &Entity::new("wf", "h-000000"))
        .await
        .unwrap();
    let err = store
        .batch(
            &table,
            "wf",
            vec![
                BatchOp::Update {
                    entity: Entity::new("wf", "state").with("step", 2i64),
                    if_match: newer.clone(),
                },
                BatchOp::Insert(Entity::new("wf", "h-000000")),
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    let read = store.get_entity(&table, "wf", "state").await.unwrap();
    assert_eq!(read.etag, newer);
    assert_eq!(read.entity.i64("step"), Some(1));

    // Updating a row that is not there.
    let err = store
        .batch(
            &table,
            "wf",
            vec![BatchOp::Update {
                entity: Entity::new("wf", "ghost"),
                if_match: newer,
            }],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn batch_azure_would_refuse_is_refused_before_sending() {
    let Some(store) = store() else { return };
    let table = new_table(&store).await;
    let cross = vec![
        BatchOp::Insert(Entity::new("a", "1")),
        BatchOp::Insert(Entity::new("b", "1")),
    ];
    assert!(matches!(
        store.batch(&table, "a", cross).await,
        Err(StoreError::Invalid(_))
    ));
    let too_many = (0..101)
        .map(|i| BatchOp::Insert(Entity::new("a", format!("{i:03}"))))
        .collect();
    assert!(matches!(
        store.batch(&table, "a", too_many).await,
        Err(StoreError::Invalid(_))
    ));
    let big = "x".repeat(30_000);
    let too_big = (0..100)
        .map(|i| {
            BatchOp::Insert(
                Entity::new("a", format!("{i:03}"))
                    .with("p1", big.as_str())
                    .with("p2", big.as_str()),
            )
        })
        .collect();
    assert!(matches!(
        store.batch(&table, "a", too_big).await,
        Err(StoreError::Invalid(_))
    ));
    // Nothing of the refused batches reached the table (Azurite would have taken the first).
    let page = store
        .query(&table, &TableQuery::partition("a"))
        .await
        .unwrap();
    assert!(page.entities.is_empty());
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn single_entity_errors_map_to_store_errors() {
    let Some(store) = store() else { return };
    let table = new_table(&store).await;
    let etag = store
        .insert_entity(&table, &Entity::new("p", "r"))
        .await
        .unwrap();
    assert!(matches!(
        store.insert_entity(&table, &Entity::new("p", "r")).await,
        Err(StoreError::AlreadyExists)
    ));
    let newer = update(
        &store,
        &table,
        &Entity::new("p", "r").with("v", 1i64),
        &ETag::new("*"),
    )
    .await
    .unwrap();
    assert_ne!(newer, etag);
    assert!(matches!(
        update(&store, &table, &Entity::new("p", "r"), &etag).await,
        Err(StoreError::PreconditionFailed)
    ));
    assert!(matches!(
        store.delete_entity(&table, "p", "r", Some(&etag)).await,
        Err(StoreError::PreconditionFailed)
    ));
    assert!(matches!(
        update(&store, &table, &Entity::new("p", "gone"), &etag).await,
        Err(StoreError::NotFound)
    ));
    store.delete_entity(&table, "p", "r", None).await.unwrap();
    assert!(matches!(
        store.delete_entity(&table, "p", "r", None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_entity(&unique("missing"), "p", "r").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .query(&unique("missing"), &TableQuery::partition("p"))
            .await,
        Err(StoreError::NotFound)
    ));
    store.ensure_table(&table).await.unwrap();
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn query_pages_past_1000_rows_with_continuations() {
    let Some(store) = store() else { return };
    let table = new_table(&store).await;
    for chunk in 0..25 {
        let ops = (0..100)
            .map(|i| {
                let n = chunk * 100 + i;
                BatchOp::Insert(Entity::new("many", format!("{n:05}")).with("n", n as i64))
            })
            .collect();
        store.batch(&table, "many", ops).await.unwrap();
    }
    store
        .insert_entity(&table, &Entity::new("other", "00000"))
        .await
        .unwrap();

    let mut query = TableQuery {
        top: Some(5000),
        ..TableQuery::partition("many")
    };
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    loop {
        let page = store.query(&table, &query).await.unwrap();
        sizes.push(page.entities.len());
        seen.extend(
            page.entities
                .into_iter()
                .map(|e| e.entity.i64("n").unwrap()),
        );
        match page.continuation {
            Some(token) => query.continuation = Some(token),
            None => break,
        }
    }
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_eq!(seen, (0..2500).collect::<Vec<i64>>());
}

#[tokio::test]
#[cfg_attr(
    azure_tests_skipped,
    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
)]
async fn query_filters_by_row_range_and_property_values() {
    let Some(store) = store() else { return };
    let table = new_table(&store).await;
    for (rk, status, done) in [
        ("a1", "it's open", false),
        ("b1", "it's open", true),
        ("b2", "closed", false),
        ("b3", "it's open", false),
        ("c1", "it's open", false),
    ] {
        store
            .insert_entity(
                &table,
                &Entity::new("p", rk)
                    .with("status", status)
                    .with("done", done),
            )
            .await
            .unwrap();
    }
    let page = store
        .query(
            &table,
            &TableQuery {
                row_keys: Some("b".to_owned().."c".to_owned()),
                equals: vec![
                    ("status".into(), Prop::from("it's open")),
                    ("done".into(), Prop::from(false)),
                ],
                ..TableQuery::partition("p")
            },
        )
        .await
        .unwrap();
    let rows: Vec<_> = page
        .entities
        .iter()
        .map(|e| e.entity.row_key.clone())
        .collect();
    assert_eq!(rows, ["b3"]);
    assert!(page.continuation.is_none());

    let mut query = TableQuery {
        top: Some(2),
        ..TableQuery::partition("p")
    };
    let first = store.query(&table, &query).await.unwrap();
    assert_eq!(first.entities.len(), 2);
    query.continuation = first.continuation;
    let second = store.query(&table, &query).await.unwrap();
    let rows: Vec<_> = second
        .entities
        .iter()
        .map(|e| e.entity.row_key.clone())
        .collect();
    assert_eq!(rows, ["b2", "b3"]);

    let props: BTreeMap<_, _> = second.entities[0].entity.props.clone();
    assert_eq!(props.get("done"), Some(&Prop::Bool(false)));
}
