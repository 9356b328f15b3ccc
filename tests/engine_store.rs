//! The engine over real storage: every test runs once per backend, as `embedded::<test>` (a
//! fresh on-disk store) and `azure::<test>` (the account in `FILE_APPROVER_TEST_AZURE_STORAGE`,
//! e.g. Azurite via `scripts/test`; reported as ignored when it was unset at build time, except
//! under `CI`, where they fail). Time is a `ManualClock`; nothing sleeps to wait for work: a
//! [`WorkDriver`] drains the work queue. Delayed messages (timers) follow the test's clock on the
//! embedded store only — Azure's queue keeps the service's time — so where a test needs a timer
//! message to come due on Azure, it delivers that message's text again itself, which is what a
//! redelivery is to the worker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/approval.rs"]
mod approval_flow;

use approval_flow::{approval_flow, AnalysisShown};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use file_approver::clock::ManualClock;
use file_approver::engine::{
    ActivityError, DriverOptions, Engine, EngineError, EngineOptions, EventGuard, EventKind,
    EventStamp, Executed, HeldBy, HistoryEvent, ListQuery, OrchestrationContext,
    OrchestrationError, RaiseEvent, RaiseOutcome, Refusal, Registry, RetryPolicy, RuntimeStatus,
    Stamped, Standby, StartOutcome, WorkDriver, WorkMessage, MAX_EVENT_BYTES,
};
use file_approver::store::azure::AzureStore;
use file_approver::store::conformance::azure_test_connection_string;
use file_approver::store::embedded::{EmbeddedOptions, EmbeddedStore};
use file_approver::store::testing::{BlobRequestModel, FaultyStore, Op, RequestCounter};
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
    a_guard_is_checked_inside_the_turn_under_a_race,
    a_stamp_completes_the_event_from_the_state_the_turn_commits_on,
    a_whole_workflow_runs_its_activity_and_completes,
    fifty_concurrent_raises_with_distinct_ids_are_each_recorded_once,
    the_same_event_id_raised_twenty_times_concurrently_is_recorded_once,
    two_engines_racing_turns_lose_and_duplicate_nothing,
    a_turn_that_loses_the_race_reloads_and_keeps_both_events,
    concurrent_starts_create_one_instance,
    an_activity_lost_with_its_process_runs_again_from_its_message_and_completes_once,
    an_activity_scheduled_while_a_driver_runs_is_taken_from_its_turn_without_a_receive,
    an_eagerly_taken_activity_whose_process_dies_comes_back_from_its_hidden_message,
    an_inline_activity_commits_with_the_turn_that_scheduled_it,
    an_inline_activity_that_fails_goes_through_the_queue_and_is_retried_there,
    an_inline_outcome_that_would_finish_the_instance_with_work_unsent_waits_for_the_queue,
    a_storage_outage_during_a_turn_is_transient_and_leaves_the_instance_unchanged,
    an_outcome_that_cannot_be_recorded_leaves_its_message_to_run_again,
    work_read_just_before_its_turn_commits_waits_for_the_commit,
    deadline_timers_fire_when_their_message_comes_due,
    a_failing_activity_is_retried_through_durable_timers,
    a_retry_timer_already_due_fires_at_once,
    a_running_worker_wakes_for_a_timer_on_the_wall_clock,
    an_idle_worker_makes_no_request,
    turns_after_this_engines_own_commit_write_without_reading,
    a_stale_remembered_partition_is_caught_by_the_etag_and_reloaded,
    a_finished_instance_is_answered_from_memory_by_the_process_that_finished_it,
    list_reads_the_status_index_oldest_first_and_pages,
    an_index_row_of_a_turn_that_never_committed_is_skipped_and_deleted,
    index_writes_of_turns_committing_together_share_batches,
    terminate_then_purge_removes_the_instance,
    unknown_orchestrations_and_bad_ids_are_refused,
    work_sent_by_a_turn_that_never_committed_is_retried_then_dropped,
    a_message_delivered_again_after_its_outcome_was_recorded_is_dropped,
    a_timer_beyond_the_queues_horizon_is_rearmed_and_fires_once_even_if_rearmed_twice,
    a_message_received_too_often_goes_to_the_poison_queue,
    a_host_held_activity_whose_process_dies_is_taken_over_from_its_standby_copy,
    a_long_host_held_activity_withdraws_its_standby_copy_and_a_short_one_sends_none,
);

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

/// A store for one test, with the table and work queue the test's engines use, and the clock
/// they (and the embedded store's queue) run on.
struct Backend {
    store: Arc<dyn Storage>,
    table: String,
    queue: String,
    clock: ManualClock,
    /// The clock's start.
    t0: DateTime<Utc>,
    /// True when delayed messages follow `clock` (the embedded store).
    queue_follows_clock: bool,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// The status index's table, next to the instances' table.
    fn index_table(&self) -> String {
        format!("{}index", self.table)
    }
}

async fn embedded_backend() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = ManualClock::new(t0());
    let store = EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            public_base_url: "http://127.0.0.1:7071".into(),
            signing_secret: Some(vec![7; 32]),
            clock: Arc::new(clock.clone()),
        },
    )
    .expect("the embedded store opens");
    Some(Backend {
        store: Arc::new(store),
        table: "workflows".into(),
        queue: "work".into(),
        clock,
        t0: t0(),
        queue_follows_clock: true,
        _dir: Some(dir),
    })
}

async fn azure_backend() -> Option<Backend> {
    let connection_string = azure_test_connection_string();
    let store =
        AzureStore::from_connection_string(&connection_string).expect("the Azure store connects");
    // Tests share the account: each gets its own table and queue. The clock starts at the
    // service's time, which the queue's message times are on.
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let start = Utc::now().trunc_subsecs(0);
    Some(Backend {
        store: Arc::new(store),
        table: format!("wf{unique}"),
        queue: format!("work-{}", &unique[..16]),
        clock: ManualClock::new(start),
        t0: start,
        queue_follows_clock: false,
        _dir: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Orchestrations and helpers
// ---------------------------------------------------------------------------------------------

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap()
}

/// The shared test orchestration (`tests/common/approval.rs`), the analysis shown in the output.
async fn approval(ctx: OrchestrationContext, input: Value) -> Result<Value, OrchestrationError> {
    approval_flow(ctx, input, AnalysisShown::InOutput).await
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

/// Sleeps (durably) for ten days, past the queue's 7-day horizon, then completes.
async fn long_nap(ctx: OrchestrationContext, _input: Value) -> Result<Value, OrchestrationError> {
    ctx.create_timer(ctx.current_time() + Duration::days(10))
        .await;
    Ok(json!("rested"))
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
        .orchestration("LongNap", long_nap)
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

async fn engine_on(store: Arc<dyn Storage>, backend: &Backend, registry: Registry) -> Engine {
    engine_with(store, backend, registry, EngineOptions::default()).await
}

/// An engine with `options`, on the backend's table, index table and work queue.
async fn engine_with(
    store: Arc<dyn Storage>,
    backend: &Backend,
    registry: Registry,
    options: EngineOptions,
) -> Engine {
    let engine = Engine::new(
        store,
        Arc::new(backend.clock.clone()),
        registry,
        EngineOptions {
            table: backend.table.clone(),
            index_table: backend.index_table(),
            work_queue: backend.queue.clone(),
            ..options
        },
    );
    engine
        .ensure_storage()
        .await
        .expect("the table and queue exist");
    engine
}

/// A standby copy after 50 ms of running, hidden for 1 s (renewed every third of that).
async fn engine_with_quick_standby(
    store: Arc<dyn Storage>,
    backend: &Backend,
    registry: Registry,
) -> Engine {
    let standby = Standby {
        after: std::time::Duration::from_millis(50),
        hidden: std::time::Duration::from_secs(1),
    };
    let options = EngineOptions {
        standby,
        ..EngineOptions::default()
    };
    engine_with(store, backend, registry, options).await
}

/// Takes the queue's visible messages as the Functions host does: hidden for 10 minutes.
async fn host_takes(backend: &Backend) -> Vec<file_approver::store::ReceivedMessage> {
    receive(backend, 600).await
}

/// Lets a message hidden for `secs` show again: the test's clock on the embedded store, the
/// service's own time on Azure (which no test can move).
async fn let_hiding_lapse(backend: &Backend, secs: u64) {
    if backend.queue_follows_clock {
        backend.clock.advance(Duration::seconds(secs as i64 + 1));
    } else {
        tokio::time::sleep(std::time::Duration::from_millis(secs * 1000 + 500)).await;
    }
}

async fn engine(backend: &Backend, registry: Registry) -> Engine {
    engine_on(backend.store.clone(), backend, registry).await
}

/// An engine whose every request goes through a [`FaultyStore`] the test can break or race.
async fn faulty_engine(backend: &Backend, registry: Registry) -> (Arc<FaultyStore>, Engine) {
    let faulty = FaultyStore::new(backend.store.clone());
    let engine = engine_on(faulty.clone(), backend, registry).await;
    (faulty, engine)
}

/// The status after a raise that must have been recorded.
fn recorded(outcome: RaiseOutcome) -> file_approver::engine::InstanceStatus {
    match outcome {
        RaiseOutcome::Recorded(status) => status,
        other => panic!("not recorded: {other:?}"),
    }
}

/// Runs `engine`'s work queue until nothing visible is left.
async fn drain(engine: &Engine) {
    WorkDriver::new(engine.clone(), DriverOptions::default())
        .drain()
        .await;
}

/// Receives every visible message of the backend's work queue (up to 32), hiding them for
/// `hide_secs`, as a worker would.
async fn receive(backend: &Backend, hide_secs: u64) -> Vec<file_approver::store::ReceivedMessage> {
    backend
        .store
        .dequeue(
            &backend.queue,
            32,
            std::time::Duration::from_secs(hide_secs),
        )
        .await
        .expect("receive")
}

/// Delivers `message` again, as the queue does after a worker died or failed with it.
async fn redeliver(backend: &Backend, message: &WorkMessage) {
    backend
        .store
        .enqueue(
            &backend.queue,
            &message.to_text(),
            std::time::Duration::ZERO,
        )
        .await
        .expect("enqueue");
}

/// The timer message the engine sent for the instance's one open timer, whatever its delay.
async fn timer_message(engine: &Engine, id: &str) -> WorkMessage {
    let h = history(engine, id).await;
    let created = h
        .iter()
        .rev()
        .find_map(|e| match e.kind {
            EventKind::TimerCreated { fire_at } => Some((e.event_id, fire_at)),
            _ => None,
        })
        .expect("a timer was created");
    WorkMessage::Timer {
        instance: id.to_owned(),
        timer: created.0,
        fire_at: created.1,
    }
}

/// Lets the clock pass `by` and runs what came due: on the embedded store the delayed messages
/// show by themselves; on Azure (the service's time) the timer's message is delivered by hand.
async fn pass_and_drain(backend: &Backend, engine: &Engine, by: Duration, timer_of: Option<&str>) {
    backend.clock.advance(by);
    if let (false, Some(id)) = (backend.queue_follows_clock, timer_of) {
        let message = timer_message(engine, id).await;
        redeliver(backend, &message).await;
    }
    drain(engine).await;
}

fn raise(name: &str, id: &str, payload: Value) -> RaiseEvent {
    RaiseEvent {
        name: name.into(),
        event_id: id.into(),
        payload,
        expect_custom_status: None,
        guard: None,
        stamp: None,
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
    let clock = backend.clock.clone();
    let engine = engine(&backend, plain_registry()).await;

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
    assert_eq!(status.created_time, backend.t0);
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
    assert_eq!(status.last_updated_time, backend.t0);
    assert_eq!(status.history.unwrap(), first_history);

    assert_eq!(engine.status("nope", false).await.unwrap(), None);
}

async fn raise_event_records_once_and_answers_with_the_status_after_the_turn(backend: Backend) {
    let clock = backend.clock.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let engine = engine(&backend, registry(counting_analyze(runs.clone()))).await;
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
    assert_eq!(status.last_updated_time, backend.t0 + Duration::minutes(2));

    let again = engine.raise_event("f1", approve("upload-1")).await.unwrap();
    assert!(matches!(again, RaiseOutcome::Duplicate(_)), "{again:?}");

    drain(&engine).await;
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
    let engine = engine(&backend, plain_registry()).await;

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
    let engine = engine(&backend, plain_registry()).await;
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

/// Two engines (two handler instances) on one store, instance `f1` started, its activity held
/// until the returned gate gets permits.
async fn two_engines_with_a_held_activity(backend: &Backend) -> (Engine, Engine, Arc<Semaphore>) {
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
    let a = engine(backend, registry(held.clone())).await;
    let b = engine(backend, registry(held)).await;
    a.start("Approval", "f1", json!({})).await.unwrap();
    (a, b, gate)
}

/// Two reviewers approve the upload at once through two engines (two handler instances).
/// Both expect "AwaitingUploadApproval"; only the first commit may see it.
async fn expect_custom_status_is_checked_inside_the_turn_under_a_race(backend: Backend) {
    let (a, b, gate) = two_engines_with_a_held_activity(&backend).await;

    let guarded = |id: &str| RaiseEvent {
        expect_custom_status: Some(json!("AwaitingUploadApproval")),
        guard: None,
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
    drain(&a).await;
    drain(&b).await;
}

/// A guard (here: "nobody may approve once somebody has") sees the instance as the turn that
/// would record the event loads it, so of two engines racing, the loser's guard sees the
/// winner's event and refuses: one recorded, one refused, never two.
async fn a_guard_is_checked_inside_the_turn_under_a_race(backend: Backend) {
    let (a, b, gate) = two_engines_with_a_held_activity(&backend).await;

    let first_only = EventGuard(Arc::new(
        |_status: &file_approver::engine::InstanceStatus, history: &[HistoryEvent]| {
            let approved = history
                .iter()
                .any(|e| matches!(&e.kind, EventKind::EventRaised { .. }));
            if approved {
                Err(Refusal {
                    code: "AlreadyApproved",
                    message: "somebody approved first".into(),
                })
            } else {
                Ok(())
            }
        },
    ));
    let guarded = |id: &str| RaiseEvent {
        guard: Some(first_only.clone()),
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
        .filter(|r| matches!(r, Err(EngineError::Refused(r)) if r.code == "AlreadyApproved"))
        .count();
    assert_eq!((recorded, refused), (1, 1), "{results:?}");
    assert_eq!(count(&history(&a, "f1").await, "EventRaised"), 1);

    gate.add_permits(10);
    drain(&a).await;
    drain(&b).await;
}

/// A stamp names the event from the instance inside the turn (here: by how many events it
/// had), with no read by the caller; the stamped id is what a repeat is recognised by. Two
/// engines racing each stamp on the state their commit is guarded by, so the loser restamps
/// after its reload and neither overwrites the other.
async fn a_stamp_completes_the_event_from_the_state_the_turn_commits_on(backend: Backend) {
    let (a, b, gate) = two_engines_with_a_held_activity(&backend).await;

    let by_count = EventStamp(Arc::new(
        |_status: &file_approver::engine::InstanceStatus, history: &[HistoryEvent]| {
            let seen = history
                .iter()
                .filter(|e| matches!(&e.kind, EventKind::EventRaised { .. }))
                .count();
            Ok(Stamped {
                event_id: format!("note-{seen}"),
                payload: json!({ "seen": seen }),
            })
        },
    ));
    let stamped = || RaiseEvent {
        stamp: Some(by_count.clone()),
        ..raise("Note", "placeholder", json!(null))
    };
    let (ra, rb) = tokio::join!(
        a.raise_event("f1", stamped()),
        b.raise_event("f1", stamped())
    );
    assert!(matches!(ra, Ok(RaiseOutcome::Recorded(_))), "{ra:?}");
    assert!(matches!(rb, Ok(RaiseOutcome::Recorded(_))), "{rb:?}");
    let raised: Vec<(String, Value)> = history(&a, "f1")
        .await
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::EventRaised {
                raise_id, input, ..
            } => Some((raise_id, input)),
            _ => None,
        })
        .collect();
    assert_eq!(
        raised,
        vec![
            ("note-0".to_owned(), json!({"seen": 0})),
            ("note-1".to_owned(), json!({"seen": 1})),
        ]
    );

    // A stamp that names an event already recorded is a repeat: nothing changes.
    let again = EventStamp(Arc::new(
        |_status: &file_approver::engine::InstanceStatus, _history: &[HistoryEvent]| {
            Ok(Stamped {
                event_id: "note-0".into(),
                payload: json!({"seen": 0}),
            })
        },
    ));
    let repeat = a
        .raise_event(
            "f1",
            RaiseEvent {
                stamp: Some(again),
                ..raise("Note", "placeholder", json!(null))
            },
        )
        .await;
    assert!(
        matches!(repeat, Ok(RaiseOutcome::Duplicate(_))),
        "{repeat:?}"
    );
    assert_eq!(count(&history(&a, "f1").await, "EventRaised"), 2);

    gate.add_permits(10);
    drain(&a).await;
    drain(&b).await;
}

async fn a_whole_workflow_runs_its_activity_and_completes(backend: Backend) {
    let clock = backend.clock.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let engine = engine(&backend, registry(counting_analyze(runs.clone()))).await;
    engine
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();
    engine.raise_event("f1", approve("upload")).await.unwrap();
    drain(&engine).await;
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
    // The deadline timer lost the race: when its message comes, it finds nothing to do.
    let deadline = timer_message(&engine, "f1").await;
    let late = engine
        .execute(
            &deadline.to_text(),
            file_approver::clock::Clock::now(&backend.clock),
            HeldBy::Caller,
        )
        .await
        .unwrap();
    assert_eq!(late, Executed::Dropped("the instance has finished"));
}

/// Fifty reviewers vote at once, spread over three engines sharing the store.
async fn fifty_concurrent_raises_with_distinct_ids_are_each_recorded_once(backend: Backend) {
    let mut engines = Vec::new();
    for _ in 0..3 {
        engines.push(engine(&backend, plain_registry()).await);
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
    let a = engine(&backend, plain_registry()).await;
    let b = engine(&backend, plain_registry()).await;
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
    let a = engine(&backend, plain_registry()).await;
    let b = engine(&backend, plain_registry()).await;
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
    drain(&a).await;
    drain(&b).await;

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
    let (faulty, a) = faulty_engine(&backend, plain_registry()).await;
    let b = engine(&backend, plain_registry()).await;
    b.start("Tally", "poll", json!(2)).await.unwrap();

    let rival = b.clone();
    faulty.before_next_on(Op::Batch, &backend.table, async move {
        let outcome = rival
            .raise_event("poll", raise("Vote", "from-b", json!("b")))
            .await
            .unwrap();
        assert!(matches!(outcome, RaiseOutcome::Recorded(_)));
    });
    let batches = faulty.batches_on(&backend.table);
    let outcome = a
        .raise_event("poll", raise("Vote", "from-a", json!("a")))
        .await
        .unwrap();

    assert_eq!(
        faulty.batches_on(&backend.table) - batches,
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
    let a = engine(&backend, plain_registry()).await;
    let b = engine(&backend, plain_registry()).await;
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

/// The process that received an activity's message dies before the activity returns: it never
/// deletes the message, which the queue delivers again (here by hand: a redelivery is the same
/// text again), and a fresh engine runs the activity and records its outcome exactly once. The
/// dead process's own copy, when it shows again, finds the work done.
/// With a driver running in the process, the activity a turn schedules is sent hidden and
/// handed straight to that driver (eager dispatch): it runs without any receive, and its
/// message is deleted once the outcome is recorded, so nothing comes back later.
async fn an_activity_scheduled_while_a_driver_runs_is_taken_from_its_turn_without_a_receive(
    backend: Backend,
) {
    let counter = RequestCounter::new(BlobRequestModel::Calls);
    let runs = Arc::new(AtomicUsize::new(0));
    let engine = engine_on(
        counter.wrap(backend.store.clone()),
        &backend,
        registry(counting_analyze(runs.clone())),
    )
    .await;
    let driver = WorkDriver::new(engine.clone(), DriverOptions::default());
    let running = tokio::spawn(driver.clone().run());
    engine
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();
    counter.take();
    engine.raise_event("f1", approve("upload")).await.unwrap();
    // The same driver's count covers the work it was handed.
    driver.drain().await;
    let counts = counter.take();
    running.abort();

    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let status = engine.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.custom_status, json!("AwaitingDownloadApproval"));
    assert_eq!(count(&status.history.unwrap(), "TaskCompleted"), 1);
    assert_eq!(counts.messages_received, 0, "no receive got it: {counts}");
    // Sent (with the download deadline's timer), then deleted by the driver it was handed to.
    assert_eq!(counts.requests(Op::Enqueue), 2, "{counts}");
    assert_eq!(counts.requests(Op::DeleteMessage), 1, "{counts}");
    if backend.queue_follows_clock {
        // Past its hiding: it was deleted, not merely hidden.
        backend.clock.advance(Duration::seconds(61));
        let left = receive(&backend, 60).await;
        assert!(left.is_empty(), "{left:?}");
    }
}

/// The process that took an activity from its turn dies with it (its storage gone, so nothing
/// renews the message): the message shows when its hiding lapses, another process runs the
/// activity, and the outcome is recorded once.
async fn an_eagerly_taken_activity_whose_process_dies_comes_back_from_its_hidden_message(
    backend: Backend,
) {
    let hiding = std::time::Duration::from_secs(2);
    let (faulty, dying) = faulty_engine(
        &backend,
        registry(|_input: Value| async move {
            futures::future::pending::<()>().await;
            Ok(Value::Null)
        }),
    )
    .await;
    let driver = WorkDriver::new(
        dying.clone(),
        DriverOptions {
            visibility: hiding,
            ..DriverOptions::default()
        },
    );
    let running = tokio::spawn(driver.run());
    dying
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();
    dying.raise_event("f1", approve("upload")).await.unwrap();
    faulty.outage();
    running.abort();

    let runs = Arc::new(AtomicUsize::new(0));
    let fresh = engine(&backend, registry(counting_analyze(runs.clone()))).await;
    // Hidden until then: nothing for the other process yet.
    drain(&fresh).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    if backend.queue_follows_clock {
        backend.clock.advance(Duration::seconds(3));
    } else {
        // Azurite keeps its own time.
        tokio::time::sleep(hiding + std::time::Duration::from_secs(1)).await;
    }
    drain(&fresh).await;

    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let status = fresh.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.custom_status, json!("AwaitingDownloadApproval"));
    let h = status.history.unwrap();
    assert_eq!(count(&h, "TaskScheduled"), 1);
    assert_eq!(count(&h, "TaskCompleted"), 1);
}

/// An activity registered to run inline for its input runs inside the turn that schedules it:
/// the decision's turn commits `TaskScheduled` and `TaskCompleted` together, in one batch, with
/// no work message; the orchestration is already past it when the decision returns.
async fn an_inline_activity_commits_with_the_turn_that_scheduled_it(backend: Backend) {
    let counter = RequestCounter::new(BlobRequestModel::Calls);
    let runs = Arc::new(AtomicUsize::new(0));
    let mut inline = registry(counting_analyze(runs.clone()));
    inline.run_inline_when("Analyze", |input| input["file"] == "small");
    let engine = engine_on(counter.wrap(backend.store.clone()), &backend, inline).await;
    engine
        .start("Approval", "f1", json!({"file": "small"}))
        .await
        .unwrap();
    counter.take();
    let status = recorded(engine.raise_event("f1", approve("upload")).await.unwrap());
    let counts = counter.take();

    assert_eq!(status.custom_status, json!("AwaitingDownloadApproval"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let kinds: Vec<&str> = status
        .history
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.kind.type_name())
        .collect();
    assert_eq!(
        kinds[kinds.len() - 6..],
        [
            "OrchestratorStarted",
            "EventRaised",
            "TaskScheduled",
            "OrchestratorStarted",
            "TaskCompleted",
            "TimerCreated"
        ]
    );
    // One commit (and its index row); the only message is the download deadline's timer.
    assert_eq!(counts.requests(Op::Batch), 2, "{counts}");
    assert_eq!(counts.requests(Op::Enqueue), 1, "{counts}");
    let stored = history(&engine, "f1").await;
    assert_eq!(count(&stored, "TaskCompleted"), 1);

    // A larger file's activity goes through the queue.
    engine
        .start("Approval", "f2", json!({"file": "large"}))
        .await
        .unwrap();
    let status = recorded(engine.raise_event("f2", approve("upload")).await.unwrap());
    assert_eq!(status.custom_status, json!("Analyzing"));
    drain(&engine).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(count(&history(&engine, "f2").await, "TaskCompleted"), 1);
}

/// An inline attempt that fails is forgotten: the turn commits the scheduling alone, the
/// activity's message goes to the queue, and the queued run's outcome is what history keeps.
async fn an_inline_activity_that_fails_goes_through_the_queue_and_is_retried_there(
    backend: Backend,
) {
    let runs = Arc::new(AtomicUsize::new(0));
    let analyze = {
        let runs = runs.clone();
        move |input: Value| {
            let first = runs.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    return Err(ActivityError::new("storage hiccup"));
                }
                Ok(json!({"file": input["file"], "size": 3}))
            }
        }
    };
    let mut inline = registry(analyze);
    inline.run_inline_when("Analyze", |_| true);
    let engine = engine(&backend, inline).await;
    engine
        .start("Approval", "f1", json!({"file": "small"}))
        .await
        .unwrap();
    let status = recorded(engine.raise_event("f1", approve("upload")).await.unwrap());
    assert_eq!(status.custom_status, json!("Analyzing"));
    drain(&engine).await;

    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let status = engine.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.custom_status, json!("AwaitingDownloadApproval"));
    let h = status.history.unwrap();
    assert_eq!(count(&h, "TaskScheduled"), 1);
    assert_eq!(count(&h, "TaskFailed"), 0);
    assert_eq!(count(&h, "TaskCompleted"), 1);
}

/// An orchestration that ends on the first of two activities (the other never awaited): had
/// the inline one's outcome been merged, the instance would finish in the very turn that
/// scheduled the other, and a finished instance sends no work, so the other would never be
/// sent. The outcome is not merged: both go through the queue, as without inline running.
async fn an_inline_outcome_that_would_finish_the_instance_with_work_unsent_waits_for_the_queue(
    backend: Backend,
) {
    let counter = RequestCounter::new(BlobRequestModel::Calls);
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = registry(counting_analyze(runs.clone()));
    registry
        .orchestration(
            "FirstOfTwo",
            |ctx: OrchestrationContext, input: Value| async move {
                let analysis =
                    ctx.call_activity::<_, Value>("Analyze", &input, RetryPolicy::none());
                let double = ctx.call_activity::<_, Value>("Double", &2, RetryPolicy::none());
                let first = futures::future::select(Box::pin(analysis), Box::pin(double)).await;
                Ok(match first {
                    futures::future::Either::Left((analysis, _)) => analysis?,
                    futures::future::Either::Right((doubled, _)) => doubled?,
                })
            },
        )
        .run_inline_when("Analyze", |_| true);
    let engine = engine_on(counter.wrap(backend.store.clone()), &backend, registry).await;
    counter.take();
    let started = engine
        .start("FirstOfTwo", "f1", json!({"file": "small"}))
        .await
        .unwrap();
    let counts = counter.take();
    let StartOutcome::Started(status) = started else {
        panic!("not started")
    };
    assert_eq!(status.runtime_status, RuntimeStatus::Running);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the inline attempt ran");
    assert_eq!(count(status.history.as_ref().unwrap(), "TaskCompleted"), 0);
    assert_eq!(counts.requests(Op::Enqueue), 2, "both sent: {counts}");

    drain(&engine).await;
    let status = engine.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
}

async fn an_activity_lost_with_its_process_runs_again_from_its_message_and_completes_once(
    backend: Backend,
) {
    let clock = backend.clock.clone();
    let stuck = engine(
        &backend,
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
    // The dying process takes the message, and never finishes with it.
    let taken = receive(&backend, 60).await;
    assert_eq!(taken.len(), 1);
    let message = WorkMessage::parse(&taken[0].text).unwrap();
    assert!(matches!(message, WorkMessage::Activity { ref instance, .. } if instance == "f1"));
    drop(stuck);

    let runs = Arc::new(AtomicUsize::new(0));
    let fresh = engine(&backend, registry(counting_analyze(runs.clone()))).await;
    redeliver(&backend, &message).await;
    drain(&fresh).await;

    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let status = fresh.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.custom_status, json!("AwaitingDownloadApproval"));
    let h = status.history.unwrap();
    assert_eq!(count(&h, "TaskScheduled"), 1);
    assert_eq!(count(&h, "TaskCompleted"), 1);

    // The dead process's copy comes back once its visibility runs out: nothing to redo.
    if backend.queue_follows_clock {
        clock.advance(Duration::seconds(61));
        drain(&fresh).await;
    } else {
        redeliver(&backend, &message).await;
        drain(&fresh).await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(count(&history(&fresh, "f1").await, "TaskCompleted"), 1);
}

async fn a_storage_outage_during_a_turn_is_transient_and_leaves_the_instance_unchanged(
    backend: Backend,
) {
    let (faulty, engine) = faulty_engine(&backend, plain_registry()).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();
    let before = engine.status("f1", true).await.unwrap().unwrap();

    // The commit fails.
    faulty.fail_next_on(Op::Batch, &backend.table, 1);
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
    drain(&engine).await;
}

/// The activity finishes during an outage: its outcome cannot be recorded, so its message is
/// not deleted and comes back; the activity runs again and its outcome is recorded once.
async fn an_outcome_that_cannot_be_recorded_leaves_its_message_to_run_again(backend: Backend) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (faulty, engine) = faulty_engine(&backend, registry(counting_analyze(runs.clone()))).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();
    engine.raise_event("f1", approve("upload")).await.unwrap();
    let message = receive(&backend, 60).await.remove(0);

    faulty.fail_next_on(Op::Batch, &backend.table, 1);
    let failed = engine
        .execute(&message.text, message.inserted, HeldBy::Caller)
        .await;
    assert!(
        failed.as_ref().is_err_and(EngineError::is_transient),
        "{failed:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        count(&history(&engine, "f1").await, "TaskCompleted"),
        0,
        "the outcome was lost with the outage"
    );

    // The worker did not delete it: the queue delivers it again.
    let again = engine
        .execute(&message.text, message.inserted, HeldBy::Caller)
        .await
        .unwrap();
    assert_eq!(again, Executed::Done);
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
    // A third delivery (the delete failed, say) finds it done.
    let third = engine
        .execute(&message.text, message.inserted, HeldBy::Caller)
        .await
        .unwrap();
    assert_eq!(third, Executed::Dropped("already done"));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// A turn sends its work just before it commits. A worker that reads the message in between
/// waits for the commit and runs it, rather than putting it back on the queue for seconds.
async fn work_read_just_before_its_turn_commits_waits_for_the_commit(backend: Backend) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (faulty, engine) = faulty_engine(&backend, registry(counting_analyze(runs.clone()))).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();
    let (worker, store, queue) = (engine.clone(), backend.store.clone(), backend.queue.clone());
    let (sender, started) = tokio::sync::oneshot::channel();
    faulty.before_next_on(Op::Batch, &backend.table, async move {
        let message = store
            .dequeue(&queue, 1, std::time::Duration::from_secs(60))
            .await
            .unwrap()
            .remove(0);
        let run = tokio::spawn(async move {
            worker
                .execute(&message.text, message.inserted, HeldBy::Caller)
                .await
        });
        sender.send(run).ok();
    });
    engine.raise_event("f1", approve("upload")).await.unwrap();

    let executed = started.await.unwrap().await.unwrap().unwrap();
    assert_eq!(executed, Executed::Done);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(count(&history(&engine, "f1").await, "TaskCompleted"), 1);
}

async fn deadline_timers_fire_when_their_message_comes_due(backend: Backend) {
    let (faulty, engine) = faulty_engine(&backend, plain_registry()).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();
    engine.raise_event("f1", approve("upload")).await.unwrap();
    drain(&engine).await;
    assert_eq!(
        engine
            .status("f1", false)
            .await
            .unwrap()
            .unwrap()
            .custom_status,
        json!("AwaitingDownloadApproval")
    );

    // The deadline is a message hidden until it is due: before then, nothing fires, and a
    // worker waiting for it makes no request.
    backend.clock.advance(Duration::hours(23));
    let requests = faulty.requests();
    let taken = receive(&backend, 30).await;
    assert!(taken.is_empty(), "the deadline is not due yet: {taken:?}");
    assert_eq!(
        faulty.requests(),
        requests,
        "nothing asked the store meanwhile"
    );

    pass_and_drain(&backend, &engine, Duration::hours(2), Some("f1")).await;
    let status = engine.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    assert_eq!(status.output, Some(json!("Expired")));
    let h = status.history.unwrap();
    assert_eq!(count(&h, "TimerFired"), 1);
    let fired_at = h
        .iter()
        .find(|e| e.kind.type_name() == "TimerFired")
        .unwrap();
    assert_eq!(fired_at.timestamp, backend.t0 + Duration::hours(25));

    // A repeat of the timer's message finds a finished instance.
    let message = timer_message(&engine, "f1").await;
    let again = engine
        .execute(
            &message.to_text(),
            file_approver::clock::Clock::now(&backend.clock),
            HeldBy::Caller,
        )
        .await
        .unwrap();
    assert_eq!(again, Executed::Dropped("the instance has finished"));
}

async fn a_failing_activity_is_retried_through_durable_timers(backend: Backend) {
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
    let engine = engine(&backend, registry(flaky)).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();
    engine.raise_event("f1", approve("upload")).await.unwrap();
    drain(&engine).await;

    // First attempt failed; the retry waits on a 10 s durable timer.
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    let h = history(&engine, "f1").await;
    assert_eq!(count(&h, "TaskFailed"), 1);
    assert_eq!(count(&h, "TimerCreated"), 1);
    assert_eq!(count(&h, "TimerFired"), 0);

    pass_and_drain(&backend, &engine, Duration::seconds(10), Some("f1")).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    let status = engine.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.custom_status, json!("AwaitingDownloadApproval"));
    let h = status.history.unwrap();
    assert_eq!(count(&h, "TimerFired"), 1);
    assert_eq!(count(&h, "TaskScheduled"), 2);
    assert_eq!(count(&h, "TaskCompleted"), 1);
}

/// A zero-interval retry creates a timer that is due as it is created: its message shows at
/// once and the same drain fires it.
async fn a_retry_timer_already_due_fires_at_once(backend: Backend) {
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
    let engine = engine(&backend, registry(flaky)).await;
    engine.start("RetryAtOnce", "r", json!({})).await.unwrap();
    drain(&engine).await;

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

/// The one test on the wall clock, because the wall-clock wake-up is what it tests: a worker
/// running in the background sleeps until the timer this process sent shows on the queue (a
/// second ahead), then fires it, with no polling. The 30 s bound only keeps a broken wake-up
/// from hanging the suite; nothing is asserted about timing.
async fn a_running_worker_wakes_for_a_timer_on_the_wall_clock(backend: Backend) {
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
    let store = if backend.queue_follows_clock {
        // A store of its own on the wall clock: the backend's follows the test's manual one.
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Storage> =
            Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap());
        std::mem::forget(dir);
        store
    } else {
        backend.store.clone()
    };
    let engine = Engine::new(
        store,
        Arc::new(file_approver::clock::SystemClock),
        registry(analyze),
        EngineOptions {
            table: backend.table.clone(),
            index_table: backend.index_table(),
            work_queue: backend.queue.clone(),
            ..EngineOptions::default()
        },
    );
    engine.ensure_storage().await.unwrap();
    let worker = tokio::spawn(WorkDriver::new(engine.clone(), DriverOptions::default()).run());
    engine.start("Nap", "n", json!(50)).await.unwrap();

    let woke = tokio::time::timeout(std::time::Duration::from_secs(30), ran.acquire()).await;
    assert!(woke.is_ok(), "the timer never fired");
    // The activity has run; the worker records its outcome next (its message hidden meanwhile,
    // so a drain here would find nothing and return before the commit).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        let status = engine.status("n", true).await.unwrap().unwrap();
        if status.runtime_status.is_terminal() || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    worker.abort();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    assert_eq!(status.output, Some(json!("rested")));
    assert_eq!(count(&status.history.unwrap(), "TimerFired"), 1);
}

/// Nothing due, nothing asked: a worker that has drained the queue makes no request until
/// there is work.
async fn an_idle_worker_makes_no_request(backend: Backend) {
    let (faulty, engine) = faulty_engine(&backend, plain_registry()).await;
    for id in ["a", "b", "c"] {
        engine.start("Approval", id, json!({})).await.unwrap();
    }
    let worker = tokio::spawn(WorkDriver::new(engine.clone(), DriverOptions::default()).run());
    // Let it take its first look and settle into its sleep.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let requests = faulty.requests();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    worker.abort();
    assert_eq!(faulty.requests(), requests, "an idle worker polled");
}

/// The engine remembers what it committed, so the next turn it takes (a decision, an
/// activity's outcome) is one batch and no read — and the work message it sent is checked
/// against that memory too.
async fn turns_after_this_engines_own_commit_write_without_reading(backend: Backend) {
    let (faulty, engine) =
        faulty_engine(&backend, registry(counting_analyze(Arc::default()))).await;
    let (batches, queries) = (faulty.batches_on(&backend.table), faulty.queries());
    engine
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();
    engine.raise_event("f1", approve("upload")).await.unwrap();
    drain(&engine).await;
    engine.raise_event("f1", approve("download")).await.unwrap();
    // Four turns (start, decision, outcome, decision): four commits, not one query.
    assert_eq!(faulty.batches_on(&backend.table) - batches, 4);
    assert_eq!(faulty.queries() - queries, 0);
    let h = history(&engine, "f1").await;
    assert_eq!(count(&h, "ExecutionCompleted"), 1);
}

/// Engine `a` remembers its commit; engine `b` then advances the instance. `a`'s next turn
/// starts from what it remembered, is refused by the ETag, reloads, and loses nothing.
async fn a_stale_remembered_partition_is_caught_by_the_etag_and_reloaded(backend: Backend) {
    let a = engine(&backend, registry(counting_analyze(Arc::default()))).await;
    let b = engine(&backend, registry(counting_analyze(Arc::default()))).await;
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

/// A finished instance never changes, so the process that committed its end answers status
/// reads from what it committed: no storage request. Another process reads storage; a purge
/// forgets it.
async fn a_finished_instance_is_answered_from_memory_by_the_process_that_finished_it(
    backend: Backend,
) {
    let (faulty, engine) = faulty_engine(&backend, plain_registry()).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();
    let rejected = json!({"approved": false});
    engine
        .raise_event("f1", raise("Approval", "upload", rejected))
        .await
        .unwrap();
    let before = faulty.requests();
    let status = engine.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    assert_eq!(
        count(status.history.as_ref().unwrap(), "ExecutionCompleted"),
        1
    );
    assert!(engine
        .status("f1", false)
        .await
        .unwrap()
        .unwrap()
        .history
        .is_none());
    assert_eq!(faulty.requests(), before, "answered from memory");

    let other = engine_on(backend.store.clone(), &backend, plain_registry()).await;
    assert_eq!(other.status("f1", true).await.unwrap().unwrap(), status);

    engine.purge("f1").await.unwrap();
    assert!(engine.status("f1", true).await.unwrap().is_none());
}

/// The index key the default engine lists a custom status under.
fn key_of(status: Value) -> Option<String> {
    Some(file_approver::engine::index::by_custom_status()(&status).unwrap())
}

/// Listing by custom status reads the status index: one key's instances, oldest first (in the
/// order they took that status), each with its history; an instance that moves on leaves its
/// old key's listing; pages follow continuations.
async fn list_reads_the_status_index_oldest_first_and_pages(backend: Backend) {
    let engine = engine(&backend, plain_registry()).await;
    for id in ["c", "a", "b"] {
        engine.start("Approval", id, json!({})).await.unwrap();
        backend.clock.advance(Duration::seconds(1));
    }
    engine
        .raise_event("a", raise("Approval", "yes", json!({"approved": true})))
        .await
        .unwrap();

    let waiting = engine
        .list(ListQuery {
            key: key_of(json!("AwaitingUploadApproval")),
            through_key: None,
            top: 10,
            continuation: None,
        })
        .await
        .unwrap();
    let ids: Vec<_> = waiting
        .instances
        .iter()
        .map(|s| s.instance_id.clone())
        .collect();
    assert_eq!(ids, ["c", "b"], "oldest first; a moved on");
    assert!(waiting.instances.iter().all(|s| s.history.is_some()));

    let analyzing = engine
        .list(ListQuery {
            key: key_of(json!("Analyzing")),
            through_key: None,
            top: 10,
            continuation: None,
        })
        .await
        .unwrap();
    assert_eq!(analyzing.instances.len(), 1);
    assert_eq!(analyzing.instances[0].instance_id, "a");

    let mut seen = Vec::new();
    let mut continuation = None;
    for _ in 0..10 {
        let page = engine
            .list(ListQuery {
                key: None,
                through_key: None,
                top: 1,
                continuation: continuation.take(),
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
    assert_eq!(seen, ["a", "b", "c"], "every instance once");
}

/// The index row goes in before the commit. When the commit then fails, the row is one no state
/// names: listings skip it and delete it, and the instance stays listed where it is.
async fn an_index_row_of_a_turn_that_never_committed_is_skipped_and_deleted(backend: Backend) {
    let (faulty, engine) = faulty_engine(&backend, plain_registry()).await;
    engine.start("Approval", "f1", json!({})).await.unwrap();
    faulty.fail_next_on(Op::Batch, &backend.table, 1);
    let failed = engine.raise_event("f1", approve("upload")).await;
    assert!(failed.is_err());

    let list = |status: Value| {
        engine.list(ListQuery {
            key: key_of(status),
            through_key: None,
            top: 10,
            continuation: None,
        })
    };
    assert_eq!(
        index_rows(&backend, key_of(json!("Analyzing"))).await,
        1,
        "written ahead"
    );
    assert!(
        list(json!("Analyzing")).await.unwrap().instances.is_empty(),
        "but no state names it"
    );
    assert_eq!(
        index_rows(&backend, key_of(json!("Analyzing"))).await,
        0,
        "and the listing deleted it"
    );
    let waiting = list(json!("AwaitingUploadApproval")).await.unwrap();
    assert_eq!(waiting.instances.len(), 1, "still listed where it is");

    // The decision, retried, moves it; its old row is left until its next move.
    engine.raise_event("f1", approve("upload")).await.unwrap();
    assert_eq!(list(json!("Analyzing")).await.unwrap().instances.len(), 1);
    assert!(list(json!("AwaitingUploadApproval"))
        .await
        .unwrap()
        .instances
        .is_empty());
}

/// The status index's rows whose key starts with `key`.
async fn index_rows(backend: &Backend, key: Option<String>) -> usize {
    backend
        .store
        .query(
            &backend.index_table(),
            &file_approver::store::TableQuery::partition("index"),
        )
        .await
        .unwrap()
        .entities
        .into_iter()
        .filter(|e| {
            key.as_deref()
                .is_none_or(|k| e.entity.row_key.starts_with(k))
        })
        .count()
}

/// Every index row is in one partition, so concurrent turns' index writes go out together: a
/// burst of decisions costs far fewer index requests than decisions, and every instance is
/// listed where it now is.
async fn index_writes_of_turns_committing_together_share_batches(backend: Backend) {
    let (faulty, engine) = faulty_engine(&backend, plain_registry()).await;
    let ids: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    for id in &ids {
        engine.start("Approval", id, json!({})).await.unwrap();
    }
    let before = faulty.batches_on(&backend.index_table());
    let raises = ids
        .iter()
        .map(|id| engine.raise_event(id, approve("upload")));
    for outcome in futures::future::join_all(raises).await {
        assert!(matches!(outcome.unwrap(), RaiseOutcome::Recorded(_)));
    }
    let index_batches = faulty.batches_on(&backend.index_table()) - before;
    assert!(
        index_batches <= 10,
        "20 turns wrote the index in {index_batches} batches"
    );
    let listed = engine
        .list(ListQuery {
            key: key_of(json!("Analyzing")),
            through_key: None,
            top: 100,
            continuation: None,
        })
        .await
        .unwrap();
    assert_eq!(listed.instances.len(), 20);
    assert!(engine
        .list(ListQuery {
            key: key_of(json!("AwaitingUploadApproval")),
            through_key: None,
            top: 100,
            continuation: None,
        })
        .await
        .unwrap()
        .instances
        .is_empty());
    drain(&engine).await;
}

async fn terminate_then_purge_removes_the_instance(backend: Backend) {
    let engine = engine(&backend, plain_registry()).await;
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
    let engine = engine(&backend, plain_registry()).await;
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

// ---------------------------------------------------------------------------------------------
// Crash points of queue-driven work
// ---------------------------------------------------------------------------------------------

/// A turn sends its work before it commits. When the commit then fails (a crash, an outage),
/// the message finds its event missing: it is retried while the turn might still land, then
/// dropped; the caller's retry of the turn sends its own, and the activity runs once.
async fn work_sent_by_a_turn_that_never_committed_is_retried_then_dropped(backend: Backend) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (faulty, engine) = faulty_engine(&backend, registry(counting_analyze(runs.clone()))).await;
    engine
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();
    faulty.fail_next_on(Op::Batch, &backend.table, 1);
    let failed = engine.raise_event("f1", approve("upload")).await;
    assert!(
        failed.as_ref().is_err_and(EngineError::is_transient),
        "{failed:?}"
    );
    let orphan = receive(&backend, 60).await;
    assert_eq!(orphan.len(), 1, "the work went out before the commit");
    let orphan = &orphan[0];

    let early = engine
        .execute(&orphan.text, orphan.inserted, HeldBy::Caller)
        .await;
    assert!(
        matches!(early, Err(EngineError::NotCommitted { .. })),
        "{early:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    backend.clock.advance(Duration::seconds(31));
    let late = engine
        .execute(&orphan.text, orphan.inserted, HeldBy::Caller)
        .await
        .unwrap();
    assert_eq!(late, Executed::Dropped("its turn never committed"));
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    // The client retries; its turn commits with its own message.
    engine.raise_event("f1", approve("upload")).await.unwrap();
    drain(&engine).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let h = history(&engine, "f1").await;
    assert_eq!(count(&h, "TaskScheduled"), 1);
    assert_eq!(count(&h, "TaskCompleted"), 1);
}

/// The outcome is committed, then the worker dies (or its delete fails) before the message is
/// deleted: the message comes back and is dropped as done.
async fn a_message_delivered_again_after_its_outcome_was_recorded_is_dropped(backend: Backend) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (faulty, engine) = faulty_engine(&backend, registry(counting_analyze(runs.clone()))).await;
    engine
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();
    engine.raise_event("f1", approve("upload")).await.unwrap();
    faulty.fail_next(Op::DeleteMessage, 1);
    drain(&engine).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(count(&history(&engine, "f1").await, "TaskCompleted"), 1);

    // The undeleted message shows again once its visibility has run out.
    if backend.queue_follows_clock {
        backend.clock.advance(Duration::seconds(61));
    } else {
        let h = history(&engine, "f1").await;
        let task = h
            .iter()
            .find(|e| e.kind.type_name() == "TaskScheduled")
            .unwrap()
            .event_id;
        redeliver(
            &backend,
            &WorkMessage::Activity {
                instance: "f1".into(),
                task,
            },
        )
        .await;
    }
    drain(&engine).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "done work is not done again"
    );
    assert_eq!(count(&history(&engine, "f1").await, "TaskCompleted"), 1);
}

/// A timer ten days out cannot hide on the queue that long (7 days at most): its message comes
/// early and re-arms itself for the rest. A crash between the re-arm and the old message's
/// delete leaves two messages for one timer; it fires once.
async fn a_timer_beyond_the_queues_horizon_is_rearmed_and_fires_once_even_if_rearmed_twice(
    backend: Backend,
) {
    let engine = engine(&backend, plain_registry()).await;
    engine.start("LongNap", "n", json!({})).await.unwrap();
    let message = timer_message(&engine, "n").await;
    let WorkMessage::Timer { fire_at, .. } = message.clone() else {
        unreachable!()
    };
    assert_eq!(fire_at, backend.t0 + Duration::days(10));

    // Seven days on, the message comes, early. Twice: the first worker re-armed it and died
    // before deleting it, so it came back and a second worker re-armed it again.
    backend.clock.advance(Duration::days(7));
    let now = file_approver::clock::Clock::now(&backend.clock);
    for _ in 0..2 {
        let early = engine
            .execute(&message.to_text(), now, HeldBy::Caller)
            .await
            .unwrap();
        assert_eq!(early, Executed::Done);
    }
    assert_eq!(count(&history(&engine, "n").await, "TimerFired"), 0);

    // Three days later both re-armed messages show; one fires the timer, one finds it fired.
    backend.clock.advance(Duration::days(3));
    if !backend.queue_follows_clock {
        redeliver(&backend, &message).await;
        redeliver(&backend, &message).await;
    }
    drain(&engine).await;
    let status = engine.status("n", true).await.unwrap().unwrap();
    assert_eq!(status.runtime_status, RuntimeStatus::Completed);
    assert_eq!(count(&status.history.unwrap(), "TimerFired"), 1);
}

/// A message whose work fails every time is moved to `<queue>-poison` after too many
/// receptions, as the host does, instead of running forever.
async fn a_message_received_too_often_goes_to_the_poison_queue(backend: Backend) {
    let engine = engine(&backend, plain_registry()).await;
    let poison = format!("{}-poison", backend.queue);
    backend
        .store
        .enqueue(
            &backend.queue,
            &WorkMessage::Activity {
                instance: "never-committed".into(),
                task: 3,
            }
            .to_text(),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    let options = DriverOptions {
        max_dequeue_count: 1,
        retry_after: std::time::Duration::from_secs(1),
        ..DriverOptions::default()
    };
    let driver = WorkDriver::new(engine.clone(), options);
    // First reception: not committed yet, retried later.
    driver.drain().await;
    // Second reception, once the retry delay has passed: over the limit. (Azure's queue keeps
    // the service's time, so there the second passes for real.)
    if backend.queue_follows_clock {
        backend.clock.advance(Duration::seconds(2));
    } else {
        tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    }
    driver.drain().await;
    let poisoned = backend
        .store
        .dequeue(&poison, 32, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(poisoned.len(), 1);
    assert!(poisoned[0].text.contains("never-committed"));
    let left = receive(&backend, 30).await;
    assert!(left.is_empty(), "{left:?}");
}

/// Under the host a delivered message stays hidden for 10 minutes whatever happens to the
/// process; a long activity's standby copy is what brings its work back within a minute.
async fn a_host_held_activity_whose_process_dies_is_taken_over_from_its_standby_copy(
    backend: Backend,
) {
    let faulty = FaultyStore::new(backend.store.clone());
    let dying = engine_with_quick_standby(
        faulty.clone(),
        &backend,
        registry(|_input: Value| async move {
            futures::future::pending::<()>().await;
            Ok(Value::Null)
        }),
    )
    .await;
    dying
        .start("Approval", "f1", json!({"file": "f1"}))
        .await
        .unwrap();
    dying.raise_event("f1", approve("upload")).await.unwrap();
    let taken = host_takes(&backend).await;
    assert_eq!(taken.len(), 1);
    let (copy_held, copy_is_held) = tokio::sync::oneshot::channel();
    faulty.before_next_on(Op::RenewMessage, &backend.queue, async move {
        let _ = copy_held.send(());
    });
    let running = tokio::spawn({
        let dying = dying.clone();
        let (text, inserted) = (taken[0].text.clone(), taken[0].inserted);
        async move { dying.execute(&text, inserted, HeldBy::Host).await }
    });
    copy_is_held
        .await
        .expect("the standby copy is sent and held");
    // The process dies mid-analysis; the host's own copy stays hidden for 10 minutes.
    running.abort();
    assert!(running.await.is_err(), "killed, not finished");
    drop(dying);

    let_hiding_lapse(&backend, 1).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let taker = engine(&backend, registry(counting_analyze(runs.clone()))).await;
    let standby = host_takes(&backend).await;
    assert_eq!(
        standby.len(),
        1,
        "the standby copy shows; the original does not"
    );
    assert_eq!(standby[0].text, taken[0].text, "a copy of the same work");
    let done = taker
        .execute(&standby[0].text, standby[0].inserted, HeldBy::Host)
        .await
        .unwrap();
    assert_eq!(done, Executed::Done);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let status = taker.status("f1", true).await.unwrap().unwrap();
    assert_eq!(status.custom_status, json!("AwaitingDownloadApproval"));
    assert_eq!(count(&status.history.unwrap(), "TaskCompleted"), 1);

    // The original, once the host lets it show, finds the work done.
    let late = taker
        .execute(&taken[0].text, taken[0].inserted, HeldBy::Host)
        .await
        .unwrap();
    assert_eq!(late, Executed::Dropped("already done"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

async fn a_long_host_held_activity_withdraws_its_standby_copy_and_a_short_one_sends_none(
    backend: Backend,
) {
    let counter = RequestCounter::new(BlobRequestModel::Calls);
    let engine = engine_with_quick_standby(
        counter.wrap(backend.store.clone()),
        &backend,
        registry(|input: Value| async move {
            if input["file"] == "slow" {
                // Long enough for the copy and a renewal or two.
                tokio::time::sleep(std::time::Duration::from_millis(800)).await;
            }
            Ok(json!({"file": input["file"], "size": 3}))
        }),
    )
    .await;
    for (id, file, copies) in [("f1", "quick", 0), ("f2", "slow", 1)] {
        engine
            .start("Approval", id, json!({"file": file}))
            .await
            .unwrap();
        engine.raise_event(id, approve("upload")).await.unwrap();
        let taken = host_takes(&backend).await;
        assert_eq!(taken.len(), 1);
        let before = counter.snapshot();
        let done = engine
            .execute(&taken[0].text, taken[0].inserted, HeldBy::Host)
            .await
            .unwrap();
        assert_eq!(done, Executed::Done);
        let spent = counter.snapshot().since(&before);
        // One message is the download deadline's timer, sent by the outcome's turn.
        assert_eq!(
            spent.calls(Op::Enqueue),
            1 + copies,
            "{file}: the timer and the standby copies sent"
        );
        assert_eq!(
            spent.calls(Op::DeleteMessage),
            copies,
            "{file}: copies withdrawn"
        );
        if copies > 0 {
            assert!(
                spent.calls(Op::RenewMessage) >= 1,
                "{file}: the copy was held"
            );
        }
        // The host deletes its message after the 2xx.
        backend
            .store
            .delete_message(&backend.queue, &taken[0].receipt)
            .await
            .unwrap();
        let status = engine.status(id, false).await.unwrap().unwrap();
        assert_eq!(status.custom_status, json!("AwaitingDownloadApproval"));
    }
    // Nothing was left behind to show later (the deadline timers are a day away).
    let_hiding_lapse(&backend, 1).await;
    assert!(host_takes(&backend).await.is_empty());
}
