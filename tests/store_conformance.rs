//! Runs every check of `file_approver::store::conformance` against every backend: one test per
//! (backend × check), named `embedded::<check>` and `azure::<check>`.
//!
//! - `embedded`: a fresh temporary directory per test, with the real signed-link route served
//!   on 127.0.0.1 and a manual clock, so link expiry is tested without sleeping.
//! - `azure`: the storage account in `FILE_APPROVER_TEST_AZURE_STORAGE` (a connection string;
//!   `UseDevelopmentStorage=true` for Azurite). Unset when the tests were built, they are
//!   reported as ignored (see `build.rs`), except under `CI`, where they run and fail.

#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use file_approver::clock::ManualClock;
use file_approver::functions::signed_links;
use file_approver::store::conformance::{azure_test_connection_string, Fixture, Restart};
use file_approver::store::embedded::{EmbeddedOptions, EmbeddedStore};
use file_approver::store::Storage;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One `#[tokio::test]` per check, each on a fresh fixture from `$fixture`; the Azure ones are
/// ignored when built without Azure Storage configured (build.rs).
macro_rules! checks {
    (embedded: $fixture:ident => $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(fixture) = super::$fixture().await {
                    file_approver::store::conformance::$check(fixture).await;
                }
            }
        )+
    };
    (azure: $fixture:ident => $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                azure_tests_skipped,
                ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
            )]
            async fn $check() {
                if let Some(fixture) = super::$fixture().await {
                    file_approver::store::conformance::$check(fixture).await;
                }
            }
        )+
    };
}

/// Calls `$callback!` with the checks every backend must pass appended to `$args`.
macro_rules! with_the_common_checks {
    ($callback:ident ! ($($args:tt)*)) => {
        $callback!($($args)*
            blob_round_trip,
            deleting_a_blob_removes_it_and_is_idempotent,
            blob_names_follow_one_rule_everywhere,
            failed_stream_leaves_no_blob_and_keeps_the_older_one,
            a_snapshot_keeps_its_bytes_when_the_blob_is_replaced,
            a_snapshot_of_a_stale_version_or_a_missing_blob_is_refused,
            deleting_a_blob_deletes_its_snapshots,
            a_signed_url_to_a_snapshot_serves_the_snapshot,
            oversized_put_is_refused_and_leaves_no_blob,
            large_blob_streams_in_bounded_memory,
            entity_round_trip_keeps_every_prop_type,
            inserting_an_existing_entity_is_already_exists,
            missing_entities_are_not_found,
            update_replaces_the_property_set,
            stale_etag_update_is_refused,
            stale_etag_delete_is_refused,
            concurrent_conditional_updates_exactly_one_wins,
            forbidden_key_characters_are_invalid,
            missing_tables_and_containers_are_not_found,
            batch_with_a_stale_update_applies_nothing,
            batch_with_a_duplicate_insert_applies_nothing,
            batch_returns_etags_that_guard_the_next_write,
            oversized_batch_is_refused_before_anything_is_applied,
            cross_partition_batch_is_refused_before_anything_is_applied,
            partition_query_pages_every_row_once_in_order,
            row_key_range_query_returns_only_that_range,
            equality_filter_matches_within_its_partition,
            signed_url_serves_the_bytes_under_the_download_name,
            signed_url_refuses_writes,
            signed_url_is_refused_for_another_blob,
            expired_signed_url_is_refused,
            an_upload_url_takes_a_put_of_its_blob,
            an_upload_url_refuses_reads_deletes_and_untyped_puts,
            an_upload_url_is_refused_for_another_blob,
            an_expired_upload_url_is_refused,
            queue_messages_round_trip_and_are_deleted_by_their_receipt,
            a_delayed_message_stays_hidden_until_due,
            an_undeleted_message_comes_back_with_a_higher_count,
            renewing_keeps_a_message_hidden_and_replaces_its_receipt,
            a_sender_holds_and_withdraws_its_message_by_the_send_receipt,
            bad_queue_requests_are_refused,
            next_visible_says_when_a_worker_may_sleep_until,
        );
    };
}

/// The checks every backend must pass, plus `$extra` ones for this backend.
macro_rules! conformance_suite {
    ($backend:ident: $fixture:ident $(, $extra:ident)* $(,)?) => {
        with_the_common_checks!(checks!($backend: $fixture => $($extra,)*));
    };
}

/// Every check in turn, each on a fresh fixture from `$fixture`, naming each as it starts (a
/// failure's output then says which).
macro_rules! in_sequence {
    ($fixture:expr => $($check:ident),+ $(,)?) => {
        $(
            eprintln!("check: {}", stringify!($check));
            file_approver::store::conformance::$check($fixture.await).await;
        )+
    };
}

mod embedded {
    conformance_suite!(
        embedded: embedded_fixture,
        restart_keeps_blobs_entities_and_etags,
        restart_keeps_queue_messages
    );
}

mod azure {
    conformance_suite!(azure: azure_fixture);
}

/// The Azure backend without an account key: a managed identity's tokens and user-delegation
/// links, against an Azurite over https with OAuth. One Azurite for the whole suite, so the
/// checks run one after another in a single test.
mod keyless {
    use super::*;
    use file_approver::store::testing::KeylessAzurite;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        azure_tests_skipped,
        ignore = "needs Azurite: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test installs Azurite and sets it)"
    )]
    async fn every_check_passes_on_an_account_without_keys() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bin = file_approver::store::testing::PrivateAzurite::bin_in(std::path::Path::new(
            env!("CARGO_MANIFEST_DIR"),
        ));
        let keyless = KeylessAzurite::start(&bin, dir.path())
            .await
            .expect("a keyless Azurite");
        let store: Arc<dyn Storage> = Arc::new(
            file_approver::store::azure::AzureStore::with_identity(
                &keyless.connection(),
                &keyless.options(),
            )
            .expect("the keyless store connects"),
        );
        let fixture = || async {
            Fixture::new(Arc::clone(&store))
                .await
                .with_http(keyless.http_client())
        };
        with_the_common_checks!(in_sequence!(fixture() =>));
        // One token served every request of the suite: it was cached, not fetched per request.
        assert_eq!(keyless.tokens.issued(), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Embedded
// ---------------------------------------------------------------------------------------------

/// A store in a fresh temporary directory, its signed-link route served on a free loopback
/// port. The container is `files`, the only one the route serves; the store is this test's
/// alone, so the name needs no random part.
async fn embedded_fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("the bound address");
    let clock = ManualClock::new(Utc::now());
    let options = EmbeddedOptions {
        public_base_url: format!("http://{address}"),
        signing_secret: None,
        clock: Arc::new(clock.clone()),
    };
    let store =
        Arc::new(EmbeddedStore::open(dir.path(), options.clone()).expect("the store opens"));
    let app = signed_links::router(Arc::clone(&store), Arc::new(clock.clone()), None);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                // Dropping the sender stops the server too.
                let _ = stopped.await;
            })
            .await
            .expect("the route serves");
    });
    let restart = EmbeddedRestart {
        dir: dir.path().to_owned(),
        options,
        server: Some((stop, server)),
    };
    let store: Arc<dyn Storage> = store;
    Some(
        Fixture::with_container(store, signed_links::SERVED_CONTAINER)
            .await
            .with_manual_clock(clock)
            .with_restart(restart)
            .keep_alive(dir),
    )
}

/// Stops the route (which holds the store), closes the store, reopens the directory.
struct EmbeddedRestart {
    dir: PathBuf,
    options: EmbeddedOptions,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

#[async_trait]
impl Restart for EmbeddedRestart {
    async fn restart(&mut self, old: Arc<dyn Storage>) -> Arc<dyn Storage> {
        if let Some((stop, server)) = self.server.take() {
            let _ = stop.send(());
            server.await.expect("the route stops");
        }
        drop(old);
        Arc::new(EmbeddedStore::open(&self.dir, self.options.clone()).expect("the store reopens"))
    }
}

// ---------------------------------------------------------------------------------------------
// Azure
// ---------------------------------------------------------------------------------------------

/// The Azure backend on the account in `FILE_APPROVER_TEST_AZURE_STORAGE`, or `None` (a
/// skip) when it is unset outside CI.
async fn azure_fixture() -> Option<Fixture> {
    let connection_string = azure_test_connection_string();
    let store = file_approver::store::azure::AzureStore::from_connection_string(&connection_string)
        .expect("the Azure store connects");
    Some(Fixture::new(Arc::new(store)).await)
}
