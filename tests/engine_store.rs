//! The engine over real storage: every test runs once per backend, as `embedded::<test>` (a
//! fresh on-disk store) and `azure::<test>` (the account in `FILE_APPROVER_TEST_AZURE_STORAGE`,
//! e.g. Azurite via `scripts/test`; unset, the Azure tests print "skipped" and pass, except
//! under `CI`, where they fail). Time is a `ManualClock`; nothing sleeps to wait for work:
//! `Engine::idle` does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use file_approver::clock::ManualClock;
use file_approver::engine::{
    ActivityError, Engine, EngineError, EngineOptions, EventKind, HistoryEvent, ListQuery,
    OrchestrationContext, OrchestrationError, RaiseEvent, RaiseOutcome, Registry, RetryPolicy,
    RuntimeStatus, StartOutcome, MAX_EVENT_BYTES,
};
use file_approver::store::azure::AzureStore;
use file_approver::store::conformance::azure_test_connection_string;
use file_approver::store::embedded::{EmbeddedOptions, EmbeddedStore};
use file_approver::store::testing::{FaultyStore, Op};
use file_approver::store::{Storage, StoreError};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

macro_rules! engine_tests {
    ($($test:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(backend) = super::embedded_backend().await {
                        super::$test(backend).await;
                    }
                }
            )+
        }
        mod azure {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    azure_tests_skipped,
                    ignore = "needs Azure Storage: FILE_APPROVER_TEST_AZURE_STORAGE is unset (scripts/test starts Azurite and sets it)"
                )]
                async fn $test() {
                    if let Some(backend) = super::azure_backend().await {
                        super::$test(backend).await;
                    }
                }
            )+
        }
    };
}

engine_tests!(
    start_runs_the_first_turn_and_starting_again_changes_nothing,
    raise_event_records_once_and_answers_with_the_status_after_the_turn,
    raise_event_refuses_unknown_finished_and_oversized,
    expect_custom_status_mismatch_records_nothing,
    expect_custom_status_is_checked_inside_the_turn_under_a_race,
    a_whole_workflow_runs_its_activity_and_completes,
    fifty_concurrent_raises_with_distinct_ids_are_each_recorded_once,
    the_same_event_id_raised_twenty_times_concurrently_is_recorded_once,
    two_engines_racing_turns_lose_and_duplicate_nothing,
    a_turn_that_loses_the_race_reloads_and_keeps_both_events,
    concurrent_starts_create_one_instance,
    an_activity_lost_with_its_process_is_rerun_by_recover_and_completed_once,
    a_storage_outage_during_a_turn_is_transient_and_leaves_the_instance_unchanged,
    an_outcome_that_cannot_be_recorded_is_recovered_after_the_lease,
    deadline_timers_fire_through_recover_with_a_manual_clock,
    a_failing_activity_is_retried_through_durable_timers,
    a_retry_timer_already_due_fires_without_recover,
    an_in_process_timer_wakes_the_instance_on_the_wall_clock,
    recover_is_one_query_when_nothing_is_due,
    turns_after_this_engines_own_commit_write_without_reading,
    a_stale_remembered_partition_is_caught_by_the_etag_and_reloaded,
    list_filters_by_runtime_and_custom_status_and_pages,
    terminate_then_purge_removes_the_instance,
    unknown_orchestrations_and_bad_ids_are_refused,
);

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

/// A store for one test, with the table the test's engines use.
struct Backend {
    store: Arc<dyn Storage>,
    table: String,
    _dir: Option<tempfile::TempDir>,
}

async fn embedded_backend() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            public_base_url: "http://127.0.0.1:7071".into(),
            signing_secret: Some(vec![7; 32]),
            ..EmbeddedOptions::default()
        },
    )
    .expect("the embedded store opens");
    Some(Backend {
        store: Arc::new(store),
        table: "workflows".into(),
        _dir: Some(dir),
    })
}

async fn azure_backend() -> Option<Backend> {
    let connection_string = azure_test_connection_string();
    let store =
        AzureStore::from_connection_string(&connection_string).expect("the Azure store connects");
    // Tests share the account: each gets its own table.
    let table = format!("wf{}", uuid::Uuid::new_v4().simple());
    Some(Backend {
        store: Arc::new(store),
        table,
        _dir: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Orchestrations and helpers
// ---------------------------------------------------------------------------------------------

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap()
}

const LEASE: Duration = Duration::minutes(5);

const ANALYZE_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    first_interval: Duration::seconds(10),
    backoff_coefficient: 2.0,
    max_interval: Duration::minutes(1),
};

/// The shape of the real workflow: approval, analysis, approval with a one-day deadline.
async fn approval(ctx: OrchestrationContext, input: Value) -> Result<Value, OrchestrationError> {
    ctx.set_custom_status(json!("AwaitingUploadApproval"));
    let upload: Value = ctx.wait_for_event("Approval").await?;
    if upload["approved"] != json!(true) {
        return Ok(json!("Rejected"));
    }
    ctx.set_custom_status(json!("Analyzing"));
    let analysis: Value = ctx.call_activity("Analyze", &input, ANALYZE_RETRY).await?;
    ctx.set_custom_status(json!("AwaitingDownloadApproval"));
    let deadline = ctx.current_time() + Duration::days(1);
    match ctx
        .wait_for_event_until::<Value>("Approval", deadline)
        .await?
    {
        Some(d) if d["approved"] == json!(true) => Ok(json!({"analysis": analysis})),
        Some(_) => Ok(json!("Rejected")),
        None => Ok(json!("Expired")),
    }
}

/// Collects `input` "Vote" events, then completes with them in the order taken.
async fn tally(ctx: OrchestrationContext, input: Value) -> Result<Value, OrchestrationError> {
    let wanted = input.as_u64().unwrap_or(0);
    let mut votes = Vec::new();
    for _ in 0..wanted {
        let vote: String = ctx.wait_for_event("Vote").await?;
        votes.push(vote);
        ctx.set_custom_status(json!(votes.len()));
    }
    Ok(json!(votes))
}

/// Per item event, one activity call, one at a time; completes with the sum of the doubles.
async fn pipeline(ctx: OrchestrationContext, input: Value) -> Result<Value, OrchestrationError> {
    let items = input.as_u64().unwrap_or(0);
    let mut sum = 0;
    for _ in 0..items {
        let item: i64 = ctx.wait_for_event("Item").await?;
        let doubled: i64 = ctx
            .call_activity("Double", &item, RetryPolicy::none())
            .await?;
        sum += doubled;
    }
    Ok(json!(sum))
}

/// Calls `Analyze` with up to three attempts and no wait between them.
async fn retry_at_once(
    ctx: OrchestrationContext,
    input: Value,
) -> Result<Value, OrchestrationError> {
    let policy = RetryPolicy {
        max_attempts: 3,
        first_interval: Duration::zero(),
        ..RetryPolicy::default()
    };
    ctx.call_activity("Analyze", &input, policy).await
}

/// Sleeps (durably) for `input` milliseconds, then analyses.
async fn nap(ctx: OrchestrationContext, input: Value) -> Result<Value, OrchestrationError> {
    let ms = input.as_i64().unwrap_or(0);
    ctx.create_timer(ctx.current_time() + Duration::milliseconds(ms))
        .await;
    ctx.call_activity("Analyze", &json!({"file": "nap"}), RetryPolicy::none())
        .await
}

/// A registry with every test orchestration, and `Analyze` as given.
fn registry<F, Fut>(analyze: F) -> Registry
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, ActivityError>> + Send + 'static,
{
    let mut registry = Registry::new();
    registry
        .orchestration("Approval", approval)
        .orchestration("Tally", tally)
        .orchestration("Pipeline", pipeline)
        .orchestration("RetryAtOnce", retry_at_once)
        .orchestration("Nap", nap)
        .activity("Analyze", analyze)
        .activity("Double", |input: Value| async move {
            let n = input
                .as_i64()
                .ok_or_else(|| ActivityError::new("not a number"))?;
            Ok(json!(n * 2))
        });
    registry
}

/// Every test orchestration, with an `Analyze` whose runs nobody counts.
fn plain_registry() -> Registry {
    registry(counting_analyze(Arc::default()))
}

/// An `Analyze` that counts its runs and reports the file it was given.
fn counting_analyze(
    runs: Arc<AtomicUsize>,
) -> impl Fn(Value) -> futures::future::BoxFuture<'static, Result<Value, ActivityError>>
       + Send
       + Sync
       + 'static {
    move |input: Value| {
        let runs = runs.clone();
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(json!({"file": input["file"], "size": 3}))
        })
    }
}

async fn engine_on(
    store: Arc<dyn Storage>,
    table: &str,
    clock: &ManualClock,
    registry: Registry,
) -> Engine {
    let engine = Engine::new(
        store,
        Arc::new(clock.clone()),
        registry,
        EngineOptions {
            table: table.to_owned(),
            activity_lease: LEASE,
            in_process_timers: false,
            ..EngineOptions::default()
        },
    );
    engine.ensure_storage().await.expect("the table exists");
    engine
}

async fn engine(backend: &Backend, clock: &ManualClock, registry: Registry) -> Engine {
    engine_on(backend.store.clone(), &backend.table, clock, registry).await
}

/// An engine whose every request goes through a [`FaultyStore`] the test can break or race.
async fn faulty_engine(
    backend: &Backend,
    clock: &ManualClock,
    registry: Registry,
) -> (Arc<FaultyStore>, Engine) {
    let faulty = FaultyStore::new(backend.store.clone());
    let engine = engine_on(faulty.clone(), &backend.table, clock, registry).await;
    (faulty, engine)
}

fn raise(name: &str, id: &str, payload: Value) -> RaiseEvent {
    RaiseEvent {
        name: name.into(),
        event_id: id.into(),
        payload,
        expect_custom_status: None,
    }
}

fn approve(id: &str) -> RaiseEvent {
    raise("Approval", id, json!({"approved": true}))
}

async fn history(engine: &Engine, id: &str) -> Vec<HistoryEvent> {
    engine
        .status(id, true)
        .await
        .unwrap()
        .expect("the instance exists")
        .history
        .expect("history was asked for")
}

fn count(history: &[HistoryEvent], type_name: &str) -> usize {
    history
        .iter()
        .filter(|e| e.kind.type_name() == type_name)
        .count()
}

fn assert_contiguous(history: &[HistoryEvent]) {
    for (i, e) in history.iter().enumerate() {
        assert_eq!(
            e.event_id, i as i64,
            "event ids run 0, 1, 2, … without gaps"
        );
    }
}

async fn runtime_status(engine: &Engine, id: &str) -> RuntimeStatus {
    engine
        .status(id, false)
        .await
        .unwrap()
        .unwrap()
        .runtime_status
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

async fn start_runs_the_first_turn_and_starting_again_changes_nothing(backend: Backend) {
    let clock = ManualClock::new(t0());
    let engine = engine(&backend, &clock, plain_registry()).await;

    let outcome = engine
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();
    assert!(matches!(outcome, StartOutcome::Started(_)), "{outcome:?}");
    let status = engine.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Running);
    assert_eq!(status.name, "Approval");
    assert_eq!(status.input, json!({"file": "f1"}));
    assert_eq!(status.custom_status, json!("AwaitingUploadApproval"));
    assert_eq!(status.created_time, t0());
    let first_history = status.history.unwrap();
    assert_eq!(
        first_history.len(),
        2,
        "OrchestratorStarted, ExecutionStarted"
    );

    clock.advance(Duration::minutes(1));
    let again = engine
        .start("Approval", "f1", json!({"file": "other"}))
        .await
        .unwrap();
    assert_eq!(again, StartOutcome::AlreadyExists);
    let status = engine.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.input, json!({"file": "f1"}));
    assert_eq!(status.last_updated_time, t0());
    assert_eq!(status.history.unwrap(), first_history);

    assert_eq!(engine.status("nope", false).await.unwrap(), None);
}

async fn raise_event_records_once_and_answers_with_the_status_after_the_turn(backend: Backend) {
    let clock = ManualClock::new(t0());
    let runs = Arc::new(AtomicUsize::new(0));
    let engine = engine(&backend, &clock, registry(counting_analyze(runs.clone()))).await;
    engine
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();

    clock.advance(Duration::minutes(2));
    let outcome = engine.raise_event("f1", approve("upload-1")).await.unwrap();
    let RaiseOutcome::Recorded(status) = outcome else {
        panic!("expected Recorded, got {outcome:?}");
    };
    assert_eq!(status.custom_status, json!("Analyzing"));
    assert_eq!(status.last_updated_time, t0() + Duration::minutes(2));

    let again = engine.raise_event("f1", approve("upload-1")).await.unwrap();
    assert!(matches!(again, RaiseOutcome::Duplicate(_)), "{again:?}");

    engine.idle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let h = history(&engine, "f1").await;
    assert_eq!(count(&h, "EventRaised"), 1);
    assert_eq!(count(&h, "TaskCompleted"), 1);
    assert_eq!(
        engine
            .status("f1", false)
            .await
            .unwrap()
            .unwrap()
            .custom_status,
        json!("AwaitingDownloadApproval")
    );
}

async fn raise_event_refuses_unknown_finished_and_oversized(backend: Backend) {
    let clock = ManualClock::new(t0());
    let engine = engine(&backend, &clock, plain_registry()).await;

    let missing = engine.raise_event("nobody", approve("a")).await;
    assert!(
        matches!(missing, Err(EngineError::InstanceNotFound(ref id)) if id == "nobody"),
        "{missing:?}"
    );

    engine.start("Approval", "f1", json!({})).await.unwrap();
    let big = raise("Approval", "big", json!("x".repeat(MAX_EVENT_BYTES)));
    let refused = engine.raise_event("f1", big).await;
    assert!(
        matches!(refused, Err(EngineError::PayloadTooLarge { .. })),
        "{refused:?}"
    );
    assert_eq!(count(&history(&engine, "f1").await, "EventRaised"), 0);

    let rejected = raise("Approval", "reject", json!({"approved": false}));
    let outcome = engine.raise_event("f1", rejected.clone()).await.unwrap();
    assert_eq!(outcome.status().runtime_status, RuntimeStatus::Completed);
    assert_eq!(outcome.status().output, Some(json!("Rejected")));

    let late = engine.raise_event("f1", approve("late")).await;
    assert!(
        matches!(
            late,
            Err(EngineError::NotRunning {
                status: RuntimeStatus::Completed
            })
        ),
        "{late:?}"
    );
    // A retry of the event that finished it still answers as a duplicate.
    let retried = engine.raise_event("f1", rejected).await.unwrap();
    assert!(matches!(retried, RaiseOutcome::Duplicate(_)), "{retried:?}");
}

async fn expect_custom_status_mismatch_records_nothing(backend: Backend) {
    let clock = ManualClock::new(t0());
    let engine = engine(&backend, &clock, plain_registry()).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();

    let mut download = approve("download");
    download.expect_custom_status = Some(json!("AwaitingDownloadApproval"));
    let refused = engine.raise_event("f1", download).await;
    match refused {
        Err(EngineError::UnexpectedCustomStatus { current }) => {
            assert_eq!(current, json!("AwaitingUploadApproval"))
        }
        other => panic!("expected UnexpectedCustomStatus, got {other:?}"),
    }
    assert_eq!(count(&history(&engine, "f1").await, "EventRaised"), 0);

    let mut upload = approve("upload");
    upload.expect_custom_status = Some(json!("AwaitingUploadApproval"));
    let outcome = engine.raise_event("f1", upload).await.unwrap();
    assert!(matches!(outcome, RaiseOutcome::Recorded(_)));
}

/// Two reviewers approve the upload at once through two engines (two handler instances).
/// Both expect "AwaitingUploadApproval"; only the first commit may see it.
async fn expect_custom_status_is_checked_inside_the_turn_under_a_race(backend: Backend) {
    let clock = ManualClock::new(t0());
    let gate = Arc::new(Semaphore::new(0));
    let held = {
        let gate = gate.clone();
        move |_input: Value| {
            let gate = gate.clone();
            async move {
                let _permit = gate.acquire().await.map_err(ActivityError::new)?;
                Ok(json!({}))
            }
        }
    };
    let a = engine(&backend, &clock, registry(held.clone())).await;
    let b = engine(&backend, &clock, registry(held)).await;
    a.start("Approval", "f1", json!({})).await.unwrap();

    let guarded = |id: &str| RaiseEvent {
        expect_custom_status: Some(json!("AwaitingUploadApproval")),
        ..approve(id)
    };
    let (ra, rb) = tokio::join!(
        a.raise_event("f1", guarded("alice")),
        b.raise_event("f1", guarded("bob"))
    );
    let results = [ra, rb];
    let recorded = results
        .iter()
        .filter(|r| matches!(r, Ok(RaiseOutcome::Recorded(_))))
        .count();
    let refused = results
        .iter()
        .filter(|r| {
            matches!(r, Err(EngineError::UnexpectedCustomStatus { current }) if *current == json!("Analyzing"))
        })
        .count();
    assert_eq!((recorded, refused), (1, 1), "{results:?}");
    assert_eq!(count(&history(&a, "f1").await, "EventRaised"), 1);

    gate.add_permits(10);
    a.idle().await;
    b.idle().await;
}

async fn a_whole_workflow_runs_its_activity_and_completes(backend: Backend) {
    let clock = ManualClock::new(t0());
    let runs = Arc::new(AtomicUsize::new(0));
    let engine = engine(&backend, &clock, registry(counting_analyze(runs.clone()))).await;
    engine
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();
    engine.raise_event("f1", approve("upload")).await.unwrap();
    engine.idle().await;
    clock.advance(Duration::hours(1));
    let done = engine.raise_event("f1", approve("download")).await.unwrap();

    let status = done.status();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    assert_eq!(
        status.output,
        Some(json!({"analysis": {"file": "f1", "size": 3}}))
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let h = history(&engine, "f1").await;
    assert_contiguous(&h);
    assert_eq!(count(&h, "TaskScheduled"), 1);
    assert_eq!(count(&h, "TaskCompleted"), 1);
    assert_eq!(count(&h, "ExecutionCompleted"), 1);
    // The deadline timer lost the race; nothing is left for recovery.
    let report = engine.recover().await.unwrap();
    assert_eq!(report.pending_instances, 0);
}

/// Fifty reviewers vote at once, spread over three engines sharing the store.
async fn fifty_concurrent_raises_with_distinct_ids_are_each_recorded_once(backend: Backend) {
    let clock = ManualClock::new(t0());
    let mut engines = Vec::new();
    for _ in 0..3 {
        engines.push(engine(&backend, &clock, plain_registry()).await);
    }
    engines[0].start("Tally", "poll", json!(50)).await.unwrap();

    let raises = (0..50).map(|i| {
        let engine = engines[i % engines.len()].clone();
        async move {
            engine
                .raise_event(
                    "poll",
                    raise("Vote", &format!("vote-{i}"), json!(format!("v{i}"))),
                )
                .await
        }
    });
    let results = futures::future::join_all(raises).await;
    for result in &results {
        assert!(
            matches!(result, Ok(RaiseOutcome::Recorded(_))),
            "{result:?}"
        );
    }

    let status = engines[0].status("poll", true).await.unwrap().unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    let mut votes: Vec<String> = serde_json::from_value(status.output.unwrap()).unwrap();
    votes.sort();
    let mut expected: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(votes, expected);
    let h = status.history.unwrap();
    assert_contiguous(&h);
    assert_eq!(count(&h, "EventRaised"), 50);
}

async fn the_same_event_id_raised_twenty_times_concurrently_is_recorded_once(backend: Backend) {
    let clock = ManualClock::new(t0());
    let a = engine(&backend, &clock, plain_registry()).await;
    let b = engine(&backend, &clock, plain_registry()).await;
    a.start("Tally", "poll", json!(2)).await.unwrap();

    let raises = (0..20).map(|i| {
        let engine = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            engine
                .raise_event("poll", raise("Vote", "the-one", json!("v")))
                .await
        }
    });
    let results = futures::future::join_all(raises).await;
    let recorded = results
        .iter()
        .filter(|r| matches!(r, Ok(RaiseOutcome::Recorded(_))))
        .count();
    let duplicates = results
        .iter()
        .filter(|r| matches!(r, Ok(RaiseOutcome::Duplicate(_))))
        .count();
    assert_eq!((recorded, duplicates), (1, 19), "{results:?}");

    let status = a.status("poll", true).await.unwrap().unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Running);
    assert_eq!(status.custom_status, json!(1));
    assert_eq!(count(&status.history.unwrap(), "EventRaised"), 1);
}

/// Two handler processes feed one instance: each raises half the items, and each runs the
/// activities its own turns schedule, whose completions race the other's raises.
async fn two_engines_racing_turns_lose_and_duplicate_nothing(backend: Backend) {
    const ITEMS: i64 = 16;
    let clock = ManualClock::new(t0());
    let a = engine(&backend, &clock, plain_registry()).await;
    let b = engine(&backend, &clock, plain_registry()).await;
    a.start("Pipeline", "p", json!(ITEMS)).await.unwrap();

    let feed = |engine: Engine, items: Vec<i64>| async move {
        for item in items {
            let outcome = engine
                .raise_event("p", raise("Item", &format!("item-{item}"), json!(item)))
                .await
                .unwrap();
            assert!(matches!(outcome, RaiseOutcome::Recorded(_)), "{outcome:?}");
        }
    };
    tokio::join!(
        feed(a.clone(), (0..ITEMS).filter(|i| i % 2 == 0).collect()),
        feed(b.clone(), (0..ITEMS).filter(|i| i % 2 == 1).collect()),
    );
    // Each engine's work only starts more work in that engine, so one round settles both.
    a.idle().await;
    b.idle().await;

    let status = a.status("p", true).await.unwrap().unwrap();
    assert_eq!(
        status.runtime_status,
        RuntimeStatus::Completed,
        "{status:?}"
    );
    assert_eq!(
        status.output,
        Some(json!((0..ITEMS).map(|i| i * 2).sum::<i64>()))
    );
    let h = status.history.unwrap();
    assert_contiguous(&h);
    assert_eq!(count(&h, "EventRaised"), ITEMS as usize);
    assert_eq!(count(&h, "TaskScheduled"), ITEMS as usize);
    assert_eq!(count(&h, "TaskCompleted"), ITEMS as usize);
    let mut completed: Vec<i64> = h
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::TaskCompleted {
                task_scheduled_id, ..
            } => Some(task_scheduled_id),
            _ => None,
        })
        .collect();
    completed.dedup();
    assert_eq!(completed.len(), ITEMS as usize, "each task completed once");
}

/// Engine A loads the instance; before A commits, engine B commits a turn of its own. A's
/// commit must fail on the stale ETag, and A must reload and replay on top of B's turn.
async fn a_turn_that_loses_the_race_reloads_and_keeps_both_events(backend: Backend) {
    let clock = ManualClock::new(t0());
    let (faulty, a) = faulty_engine(&backend, &clock, plain_registry()).await;
    let b = engine(&backend, &clock, plain_registry()).await;
    b.start("Tally", "poll", json!(2)).await.unwrap();

    let rival = b.clone();
    faulty.before_next(Op::Batch, async move {
        let outcome = rival
            .raise_event("poll", raise("Vote", "from-b", json!("b")))
            .await
            .unwrap();
        assert!(matches!(outcome, RaiseOutcome::Recorded(_)));
    });
    let batches = faulty.batches();
    let outcome = a
        .raise_event("poll", raise("Vote", "from-a", json!("a")))
        .await
        .unwrap();

    assert_eq!(
        faulty.batches() - batches,
        2,
        "one refused commit, one retry"
    );
    let status = outcome.status();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    assert_eq!(status.output, Some(json!(["b", "a"])));
    let h = history(&a, "poll").await;
    assert_contiguous(&h);
    assert_eq!(count(&h, "EventRaised"), 2);
}

async fn concurrent_starts_create_one_instance(backend: Backend) {
    let clock = ManualClock::new(t0());
    let a = engine(&backend, &clock, plain_registry()).await;
    let b = engine(&backend, &clock, plain_registry()).await;
    let starts = (0..10).map(|i| {
        let engine = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { engine.start("Approval", "f1", json!({"attempt": i})).await }
    });
    let results = futures::future::join_all(starts).await;
    let started = results
        .iter()
        .filter(|r| matches!(r, Ok(StartOutcome::Started(_))))
        .count();
    let existing = results
        .iter()
        .filter(|r| matches!(r, Ok(StartOutcome::AlreadyExists)))
        .count();
    assert_eq!((started, existing), (1, 9), "{results:?}");
    let h = history(&a, "f1").await;
    assert_eq!(count(&h, "ExecutionStarted"), 1);
    assert_contiguous(&h);
}

/// The process that committed `TaskScheduled` dies before the activity returns (here: its
/// activity never returns and the engine is dropped). A fresh engine's `recover` runs the
/// activity again once the lease has run out, and its outcome is recorded exactly once.
async fn an_activity_lost_with_its_process_is_rerun_by_recover_and_completed_once(
    backend: Backend,
) {
    let clock = ManualClock::new(t0());
    let stuck = engine(
        &backend,
        &clock,
        registry(|_input: Value| async move {
            futures::future::pending::<()>().await;
            Ok(Value::Null)
        }),
    )
    .await;
    stuck
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();
    stuck.raise_event("f1", approve("upload")).await.unwrap();
    drop(stuck);

    let runs = Arc::new(AtomicUsize::new(0));
    let fresh = engine(&backend, &clock, registry(counting_analyze(runs.clone()))).await;
    clock.advance(LEASE - Duration::seconds(1));
    let early = fresh.recover().await.unwrap();
    assert_eq!(early.pending_instances, 1);
    assert_eq!(
        early.activities_restarted, 0,
        "the lease has not run out yet"
    );

    clock.advance(Duration::seconds(2));
    let report = fresh.recover().await.unwrap();
    assert_eq!(report.activities_restarted, 1);
    assert_eq!(report.failures, 0);
    fresh.idle().await;

    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let status = fresh.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.custom_status, json!("AwaitingDownloadApproval"));
    let h = status.history.unwrap();
    assert_eq!(count(&h, "TaskScheduled"), 1);
    assert_eq!(count(&h, "TaskCompleted"), 1);

    // A second pass (even after the lease would have run out again) has nothing to redo.
    clock.advance(LEASE * 2);
    let again = fresh.recover().await.unwrap();
    assert_eq!(again.activities_restarted, 0);
    fresh.idle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

async fn a_storage_outage_during_a_turn_is_transient_and_leaves_the_instance_unchanged(
    backend: Backend,
) {
    let clock = ManualClock::new(t0());
    let (faulty, engine) = faulty_engine(&backend, &clock, plain_registry()).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();
    let before = engine.status("f1", true).await.unwrap().unwrap();

    // The commit fails.
    faulty.fail_next(Op::Batch, 1);
    let failed = engine.raise_event("f1", approve("upload")).await;
    match &failed {
        Err(e @ EngineError::Storage(StoreError::Unavailable(_))) => assert!(e.is_transient()),
        other => panic!("expected a transient storage error, got {other:?}"),
    }
    assert_eq!(engine.status("f1", true).await.unwrap().unwrap(), before);

    // The load fails.
    faulty.fail_next(Op::Query, 1);
    let failed = engine.raise_event("f1", approve("upload")).await;
    assert!(
        failed.as_ref().is_err_and(EngineError::is_transient),
        "{failed:?}"
    );
    assert_eq!(engine.status("f1", true).await.unwrap().unwrap(), before);

    // Once storage is back, the same call is recorded (it was not half-recorded before).
    let outcome = engine.raise_event("f1", approve("upload")).await.unwrap();
    assert!(matches!(outcome, RaiseOutcome::Recorded(_)), "{outcome:?}");
    engine.idle().await;
}

/// The activity finishes during an outage: its outcome cannot be recorded. The work stays
/// open, and `recover` runs it again after the lease.
async fn an_outcome_that_cannot_be_recorded_is_recovered_after_the_lease(backend: Backend) {
    let clock = ManualClock::new(t0());
    let gate = Arc::new(Semaphore::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let analyze = {
        let (gate, runs) = (gate.clone(), runs.clone());
        move |_input: Value| {
            let (gate, runs) = (gate.clone(), runs.clone());
            async move {
                gate.acquire().await.map_err(ActivityError::new)?.forget();
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(json!({"ok": true}))
            }
        }
    };
    let (faulty, engine) = faulty_engine(&backend, &clock, registry(analyze)).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();
    engine.raise_event("f1", approve("upload")).await.unwrap();

    faulty.outage();
    gate.add_permits(1);
    engine.idle().await;
    faulty.heal();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let h = history(&engine, "f1").await;
    assert_eq!(
        count(&h, "TaskCompleted"),
        0,
        "the outcome was lost with the outage"
    );

    clock.advance(LEASE + Duration::seconds(1));
    gate.add_permits(1);
    let report = engine.recover().await.unwrap();
    assert_eq!(report.activities_restarted, 1);
    engine.idle().await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "activities run at least once"
    );
    let h = history(&engine, "f1").await;
    assert_eq!(
        count(&h, "TaskCompleted"),
        1,
        "and are recorded exactly once"
    );
}

async fn deadline_timers_fire_through_recover_with_a_manual_clock(backend: Backend) {
    let clock = ManualClock::new(t0());
    let (faulty, engine) = faulty_engine(&backend, &clock, plain_registry()).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();
    engine.raise_event("f1", approve("upload")).await.unwrap();
    engine.idle().await;
    assert_eq!(
        engine
            .status("f1", false)
            .await
            .unwrap()
            .unwrap()
            .custom_status,
        json!("AwaitingDownloadApproval")
    );

    clock.advance(Duration::hours(23));
    let requests = faulty.requests();
    let early = engine.recover().await.unwrap();
    assert_eq!((early.pending_instances, early.timers_fired), (1, 0));
    assert_eq!(
        faulty.requests() - requests,
        1,
        "a pass with nothing due is one query"
    );

    clock.advance(Duration::hours(2));
    let report = engine.recover().await.unwrap();
    assert_eq!(report.timers_fired, 1);
    let status = engine.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    assert_eq!(status.output, Some(json!("Expired")));
    let h = status.history.unwrap();
    assert_eq!(count(&h, "TimerFired"), 1);
    let fired_at = h
        .iter()
        .find(|e| e.kind.type_name() == "TimerFired")
        .unwrap();
    assert_eq!(fired_at.timestamp, t0() + Duration::hours(25));

    let after = engine.recover().await.unwrap();
    assert_eq!(
        after.pending_instances, 0,
        "a finished instance has no pending work"
    );
}

async fn a_failing_activity_is_retried_through_durable_timers(backend: Backend) {
    let clock = ManualClock::new(t0());
    let attempts = Arc::new(AtomicUsize::new(0));
    let flaky = {
        let attempts = attempts.clone();
        move |_input: Value| {
            let attempts = attempts.clone();
            async move {
                if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(ActivityError::new("transient failure"))
                } else {
                    Ok(json!({"ok": true}))
                }
            }
        }
    };
    let engine = engine(&backend, &clock, registry(flaky)).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();
    engine.raise_event("f1", approve("upload")).await.unwrap();
    engine.idle().await;

    // First attempt failed; the retry waits on a 10 s durable timer.
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    let h = history(&engine, "f1").await;
    assert_eq!(count(&h, "TaskFailed"), 1);
    assert_eq!(count(&h, "TimerCreated"), 1);
    assert_eq!(engine.recover().await.unwrap().timers_fired, 0);

    clock.advance(Duration::seconds(10));
    assert_eq!(engine.recover().await.unwrap().timers_fired, 1);
    engine.idle().await;
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let status = engine.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.custom_status, json!("AwaitingDownloadApproval"));
    let h = status.history.unwrap();
    assert_eq!(count(&h, "TaskScheduled"), 2);
    assert_eq!(count(&h, "TaskCompleted"), 1);
}

/// A zero-interval retry creates a timer that is due as it is created: the engine fires it as
/// tracked work, so `idle` covers it and no recovery pass is needed.
async fn a_retry_timer_already_due_fires_without_recover(backend: Backend) {
    let clock = ManualClock::new(t0());
    let attempts = Arc::new(AtomicUsize::new(0));
    let flaky = {
        let attempts = attempts.clone();
        move |_input: Value| {
            let attempts = attempts.clone();
            async move {
                match attempts.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(ActivityError::new("not yet")),
                    _ => Ok(json!("third time lucky")),
                }
            }
        }
    };
    let engine = engine(&backend, &clock, registry(flaky)).await;
    engine.start("RetryAtOnce", "r", json!({})).await.unwrap();
    engine.idle().await;

    let status = engine.status("r", true).await.unwrap().unwrap();
    assert_eq!(
        status.runtime_status,
        RuntimeStatus::Completed,
        "{status:?}"
    );
    assert_eq!(status.output, Some(json!("third time lucky")));
    let h = status.history.unwrap();
    assert_eq!(count(&h, "TaskFailed"), 2);
    assert_eq!(count(&h, "TimerFired"), 2);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

/// The one test on the wall clock, because the wall-clock wake-up is what it tests: a timer
/// 50 ms ahead fires in-process with no `recover` pass. The 30 s bound only keeps a broken
/// wake-up from hanging the suite; nothing is asserted about timing.
async fn an_in_process_timer_wakes_the_instance_on_the_wall_clock(backend: Backend) {
    let ran = Arc::new(Semaphore::new(0));
    let analyze = {
        let ran = ran.clone();
        move |_input: Value| {
            let ran = ran.clone();
            async move {
                ran.add_permits(1);
                Ok(json!("rested"))
            }
        }
    };
    let engine = Engine::new(
        backend.store.clone(),
        Arc::new(file_approver::clock::SystemClock),
        registry(analyze),
        EngineOptions {
            table: backend.table.clone(),
            ..EngineOptions::default()
        },
    );
    engine.ensure_storage().await.unwrap();
    engine.start("Nap", "n", json!(50)).await.unwrap();

    let woke = tokio::time::timeout(std::time::Duration::from_secs(30), ran.acquire()).await;
    assert!(woke.is_ok(), "the timer never fired");
    engine.idle().await;
    let status = engine.status("n", true).await.unwrap().unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    assert_eq!(status.output, Some(json!("rested")));
    assert_eq!(count(&status.history.unwrap(), "TimerFired"), 1);
}

async fn recover_is_one_query_when_nothing_is_due(backend: Backend) {
    let clock = ManualClock::new(t0());
    let (faulty, engine) = faulty_engine(&backend, &clock, plain_registry()).await;
    for id in ["a", "b", "c"] {
        engine.start("Approval", id, json!({})).await.unwrap();
    }
    let (requests, queries) = (faulty.requests(), faulty.queries());
    let report = engine.recover().await.unwrap();
    assert_eq!(report, Default::default());
    assert_eq!(faulty.requests() - requests, 1);
    assert_eq!(
        faulty.queries() - queries,
        1,
        "and that request is the query"
    );
}

/// The engine remembers what it committed, so the next turn it takes (a decision, an
/// activity's outcome) is one batch and no read.
async fn turns_after_this_engines_own_commit_write_without_reading(backend: Backend) {
    let clock = ManualClock::new(t0());
    let faulty = FaultyStore::new(backend.store.clone());
    let engine = engine_on(
        faulty.clone(),
        &backend.table,
        &clock,
        registry(counting_analyze(Arc::default())),
    )
    .await;
    let before = faulty.requests();
    engine
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();
    engine.raise_event("f1", approve("upload")).await.unwrap();
    engine.idle().await;
    engine.raise_event("f1", approve("download")).await.unwrap();
    // Four turns (start, decision, outcome, decision): four batches, not one query more.
    assert_eq!(faulty.requests() - before, 4);
    assert_eq!(faulty.batches(), 4);
    let h = history(&engine, "f1").await;
    assert_eq!(count(&h, "ExecutionCompleted"), 1);
}

/// Engine `a` remembers its commit; engine `b` then advances the instance. `a`'s next turn
/// starts from what it remembered, is refused by the ETag, reloads, and loses nothing.
async fn a_stale_remembered_partition_is_caught_by_the_etag_and_reloaded(backend: Backend) {
    let clock = ManualClock::new(t0());
    let a = engine(&backend, &clock, registry(counting_analyze(Arc::default()))).await;
    let b = engine(&backend, &clock, registry(counting_analyze(Arc::default()))).await;
    a.start("Tally", "poll", json!(3)).await.unwrap();
    a.raise_event("poll", raise("Vote", "v1", json!("a1")))
        .await
        .unwrap();
    b.raise_event("poll", raise("Vote", "v2", json!("b1")))
        .await
        .unwrap();
    // `a` remembers the state before b's vote.
    let done = a
        .raise_event("poll", raise("Vote", "v3", json!("a2")))
        .await
        .unwrap();
    assert_eq!(done.status().runtime_status, RuntimeStatus::Completed);
    assert_eq!(done.status().output, Some(json!(["a1", "b1", "a2"])));
    // A duplicate that only storage knows of is still recognised.
    let again = a
        .raise_event("poll", raise("Vote", "v2", json!("b1")))
        .await
        .unwrap();
    assert!(matches!(again, RaiseOutcome::Duplicate(_)));
}

async fn list_filters_by_runtime_and_custom_status_and_pages(backend: Backend) {
    let clock = ManualClock::new(t0());
    let engine = engine(&backend, &clock, plain_registry()).await;
    for id in ["a", "b", "c"] {
        engine.start("Approval", id, json!({})).await.unwrap();
    }
    engine
        .raise_event("b", raise("Approval", "no", json!({"approved": false})))
        .await
        .unwrap();

    let running = engine
        .list(ListQuery {
            runtime_status: Some(RuntimeStatus::Running),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    let mut ids: Vec<_> = running
        .instances
        .iter()
        .map(|s| s.instance_id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "c"]);
    assert!(running.instances.iter().all(|s| s.history.is_none()));

    // "b" ended without changing its custom status: only the status filter tells it apart.
    let waiting = |runtime_status| {
        engine.list(ListQuery {
            runtime_status,
            custom_status: Some(json!("AwaitingUploadApproval")),
            ..ListQuery::default()
        })
    };
    assert_eq!(waiting(None).await.unwrap().instances.len(), 3);
    assert_eq!(
        waiting(Some(RuntimeStatus::Running))
            .await
            .unwrap()
            .instances
            .len(),
        2
    );
    let nobody = engine
        .list(ListQuery {
            custom_status: Some(json!("Analyzing")),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert!(nobody.instances.is_empty());

    let mut seen = Vec::new();
    let mut continuation = None;
    for _ in 0..10 {
        let page = engine
            .list(ListQuery {
                top: Some(1),
                continuation: continuation.take(),
                ..ListQuery::default()
            })
            .await
            .unwrap();
        assert!(page.instances.len() <= 1);
        seen.extend(page.instances.into_iter().map(|s| s.instance_id));
        continuation = page.continuation;
        if continuation.is_none() {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "c"]);
}

async fn terminate_then_purge_removes_the_instance(backend: Backend) {
    let clock = ManualClock::new(t0());
    let engine = engine(&backend, &clock, plain_registry()).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();

    let refused = engine.purge("f1").await;
    assert!(
        matches!(
            refused,
            Err(EngineError::StillRunning {
                status: RuntimeStatus::Running
            })
        ),
        "{refused:?}"
    );

    let status = engine.terminate("f1", "operator said so").await.unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Terminated);
    assert_eq!(status.output, Some(json!("operator said so")));
    let late = engine.raise_event("f1", approve("upload")).await;
    assert!(
        matches!(late, Err(EngineError::NotRunning { .. })),
        "{late:?}"
    );
    assert!(matches!(
        engine.terminate("f1", "again").await,
        Err(EngineError::NotRunning { .. })
    ));

    engine.purge("f1").await.unwrap();
    assert_eq!(engine.status("f1", true).await.unwrap(), None);
    assert!(matches!(
        engine.purge("f1").await,
        Err(EngineError::InstanceNotFound(_))
    ));
    // The id is free again.
    assert!(matches!(
        engine.start("Approval", "f1", json!({})).await.unwrap(),
        StartOutcome::Started(_)
    ));
    assert_eq!(runtime_status(&engine, "f1").await, RuntimeStatus::Running);
}

async fn unknown_orchestrations_and_bad_ids_are_refused(backend: Backend) {
    let clock = ManualClock::new(t0());
    let engine = engine(&backend, &clock, plain_registry()).await;
    assert!(matches!(
        engine.start("Nope", "f1", json!({})).await,
        Err(EngineError::UnknownOrchestration(_))
    ));
    assert!(matches!(
        engine.start("Approval", "a/b", json!({})).await,
        Err(EngineError::InvalidInstanceId(_))
    ));
    assert!(matches!(
        engine
            .start("Approval", "f1", json!("x".repeat(MAX_EVENT_BYTES)))
            .await,
        Err(EngineError::PayloadTooLarge { .. })
    ));
    assert_eq!(engine.status("f1", false).await.unwrap(), None);
}
