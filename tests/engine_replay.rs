//! Replay tests: hand-written histories in, appended events and actions out. No storage, no
//! clock, no tasks: `engine::replay` is a pure function.
#![allow(clippy::unwrap_used)]

#[path = "common/approval.rs"]
mod approval_flow;

use approval_flow::{approval_flow, AnalysisShown, ANALYZE_RETRY};
use chrono::{DateTime, Duration, TimeZone, Utc};
use file_approver::engine::{
    replay, Action, EventKind, HistoryEvent, OrchestrationContext, OrchestrationError,
    OrchestrationFn, Registry, RetryPolicy, RuntimeStatus, TurnResult, MAX_EVENT_BYTES,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Orchestrations under test
// ---------------------------------------------------------------------------------------------

/// The shared test orchestration (`tests/common/approval.rs`), the analysis shown in the custom status.
async fn approval(ctx: OrchestrationContext, input: Value) -> Result<Value, OrchestrationError> {
    approval_flow(ctx, input, AnalysisShown::InStatus).await
}

/// Version 2 of `approval` that someone deployed under the same name: it waits an hour
/// before analysing.
async fn approval_with_cooldown(
    ctx: OrchestrationContext,
    input: Value,
) -> Result<Value, OrchestrationError> {
    let _: Value = ctx.wait_for_event("Approval").await?;
    ctx.create_timer(ctx.current_time() + Duration::hours(1))
        .await;
    let _: Value = ctx.call_activity("Analyze", &input, ANALYZE_RETRY).await?;
    Ok(json!("done"))
}

fn orchestration<F, Fut>(f: F) -> OrchestrationFn
where
    F: Fn(OrchestrationContext, Value) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, OrchestrationError>> + 'static,
{
    let mut registry = Registry::new();
    registry.orchestration("Test", f);
    registry.get_orchestration("Test").unwrap().clone()
}

// ---------------------------------------------------------------------------------------------
// Event builders
// ---------------------------------------------------------------------------------------------

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap()
}

/// A history under construction, one event at a time, as turns would write it.
struct History {
    events: Vec<HistoryEvent>,
}

impl History {
    fn new() -> Self {
        History { events: Vec::new() }
    }

    fn push(&mut self, at: DateTime<Utc>, kind: EventKind) -> i64 {
        let id = self.events.len() as i64;
        self.events.push(HistoryEvent::new(id, at, kind));
        id
    }

    fn turn(&mut self, at: DateTime<Utc>) -> &mut Self {
        self.push(at, EventKind::OrchestratorStarted {});
        self
    }

    fn started(&mut self, at: DateTime<Utc>, input: Value) -> &mut Self {
        self.push(
            at,
            EventKind::ExecutionStarted {
                name: "Test".into(),
                input,
            },
        );
        self
    }

    fn raised(&mut self, at: DateTime<Utc>, name: &str, id: &str, input: Value) -> &mut Self {
        self.push(at, raised(name, id, input));
        self
    }

    fn scheduled(&mut self, at: DateTime<Utc>, name: &str, input: Value) -> i64 {
        self.push(
            at,
            EventKind::TaskScheduled {
                name: name.into(),
                input,
            },
        )
    }

    fn timer(&mut self, at: DateTime<Utc>, fire_at: DateTime<Utc>) -> i64 {
        self.push(at, EventKind::TimerCreated { fire_at })
    }

    /// Appends what a turn produced, as the engine's commit would.
    fn commit(&mut self, result: &TurnResult) {
        for event in &result.new_events {
            assert_eq!(
                event.event_id,
                self.events.len() as i64,
                "event ids are contiguous"
            );
            self.events.push(event.clone());
        }
    }
}

fn raised(name: &str, id: &str, input: Value) -> EventKind {
    EventKind::EventRaised {
        name: name.into(),
        raise_id: id.into(),
        input,
    }
}

fn completed(task_scheduled_id: i64, result: Value) -> EventKind {
    EventKind::TaskCompleted {
        task_scheduled_id,
        result,
    }
}

fn failed(task_scheduled_id: i64, reason: &str) -> EventKind {
    EventKind::TaskFailed {
        task_scheduled_id,
        reason: reason.into(),
    }
}

fn fired(timer_id: i64, fire_at: DateTime<Utc>) -> EventKind {
    EventKind::TimerFired { timer_id, fire_at }
}

fn types(events: &[HistoryEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.type_name()).collect()
}

fn run(
    orch: &OrchestrationFn,
    history: &History,
    inbound: Vec<EventKind>,
    now: DateTime<Utc>,
) -> TurnResult {
    replay(orch, "instance-1", &history.events, inbound, now)
}

/// The turn that starts an instance of `orch` with `input`, at `t0()`.
fn first_turn(orch: &OrchestrationFn, input: Value) -> TurnResult {
    let started = EventKind::ExecutionStarted {
        name: "Test".into(),
        input,
    };
    run(orch, &History::new(), vec![started], t0())
}

fn assert_nondeterminism(result: &TurnResult, expected: &str) {
    assert_eq!(result.runtime_status, RuntimeStatus::Failed);
    assert_eq!(result.nondeterminism(), Some(expected));
    assert!(result.actions.is_empty(), "a failed turn starts no work");
    assert_eq!(
        result.new_events.last().map(|e| e.kind.type_name()),
        Some("ExecutionCompleted")
    );
}

fn approved() -> Value {
    json!({"approved": true})
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn first_turn_records_the_start_and_waits_for_upload_approval() {
    let orch = orchestration(approval);
    let result = first_turn(&orch, json!({"file": "f1"}));
    assert_eq!(
        types(&result.new_events),
        ["OrchestratorStarted", "ExecutionStarted"]
    );
    assert!(result.new_events.iter().all(|e| e.timestamp == t0()));
    assert_eq!(result.runtime_status, RuntimeStatus::Running);
    assert_eq!(result.custom_status, json!("AwaitingUploadApproval"));
    assert!(result.actions.is_empty());
    assert!(result.open_activities.is_empty() && result.open_timers.is_empty());
}

#[test]
fn happy_path_runs_analysis_then_completes_on_download_approval() {
    let orch = orchestration(approval);
    let mut h = History::new();
    h.turn(t0()).started(t0(), json!({"file": "f1"}));

    // Upload approved: the analysis is scheduled in the same turn.
    let t1 = t0() + Duration::minutes(5);
    let r = run(&orch, &h, vec![raised("Approval", "a1", approved())], t1);
    assert_eq!(
        types(&r.new_events),
        ["OrchestratorStarted", "EventRaised", "TaskScheduled"]
    );
    assert_eq!(
        r.actions,
        vec![Action::ScheduleActivity {
            task_scheduled_id: 4,
            name: "Analyze".into(),
            input: json!({"file": "f1"}),
        }]
    );
    assert_eq!(r.custom_status, json!("Analyzing"));
    assert_eq!(r.open_activities, vec![4]);
    h.commit(&r);

    // Analysis done: a one-day deadline timer is created, counted from this turn's time.
    let t2 = t1 + Duration::seconds(30);
    let r = run(&orch, &h, vec![completed(4, json!({"size": 3}))], t2);
    assert_eq!(
        types(&r.new_events),
        ["OrchestratorStarted", "TaskCompleted", "TimerCreated"]
    );
    assert_eq!(
        r.actions,
        vec![Action::CreateTimer {
            timer_id: 7,
            fire_at: t2 + Duration::days(1)
        }]
    );
    assert_eq!(
        r.custom_status,
        json!({"stage": "AwaitingDownloadApproval", "analysis": {"size": 3}})
    );
    assert!(r.open_activities.is_empty());
    h.commit(&r);

    // Download approved before the deadline.
    let r = run(
        &orch,
        &h,
        vec![raised("Approval", "a2", approved())],
        t2 + Duration::hours(2),
    );
    assert_eq!(r.runtime_status, RuntimeStatus::Completed);
    assert_eq!(r.output, Some(json!("Approved")));
    assert_eq!(
        types(&r.new_events),
        ["OrchestratorStarted", "EventRaised", "ExecutionCompleted"]
    );
    assert!(r.actions.is_empty());
    assert!(
        r.open_timers.is_empty(),
        "a finished instance waits for nothing"
    );
}

#[test]
fn an_event_raised_before_the_wait_is_kept_and_consumed_in_order() {
    let orch = orchestration(approval);
    let mut h = History::new();
    h.turn(t0()).started(t0(), json!({}));
    h.turn(t0()).raised(t0(), "Approval", "upload", approved());
    let task = h.scheduled(t0(), "Analyze", json!({}));
    // The download approval arrives while the analysis is still running.
    h.turn(t0()).raised(
        t0(),
        "Approval",
        "download",
        json!({"approved": false, "comment": "no"}),
    );

    let r = run(&orch, &h, vec![completed(task, json!({}))], t0());
    // The kept event answers the wait at once: no deadline timer is even created.
    assert_eq!(r.runtime_status, RuntimeStatus::Completed);
    assert_eq!(r.output, Some(json!("Rejected")));
    assert_eq!(
        types(&r.new_events),
        ["OrchestratorStarted", "TaskCompleted", "ExecutionCompleted"]
    );
}

#[test]
fn two_events_of_one_name_go_to_two_waits_in_the_order_raised() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let first: String = ctx.wait_for_event("Note").await?;
        let second: String = ctx.wait_for_event("Note").await?;
        Ok(json!([first, second]))
    });
    let mut h = History::new();
    h.turn(t0()).started(t0(), Value::Null);
    let r = run(
        &orch,
        &h,
        vec![
            raised("Note", "1", json!("one")),
            raised("Note", "2", json!("two")),
        ],
        t0(),
    );
    assert_eq!(r.output, Some(json!(["one", "two"])));
}

#[test]
fn the_deadline_timer_wins_when_it_fires_before_the_approval() {
    let orch = orchestration(approval);
    let mut h = History::new();
    h.turn(t0()).started(t0(), json!({}));
    h.turn(t0()).raised(t0(), "Approval", "upload", approved());
    let task = h.scheduled(t0(), "Analyze", json!({}));
    h.turn(t0()).push(t0(), completed(task, json!({})));
    let deadline = t0() + Duration::days(1);
    let timer = h.timer(t0(), deadline);

    let r = run(&orch, &h, vec![fired(timer, deadline)], deadline);
    assert_eq!(r.runtime_status, RuntimeStatus::Completed);
    assert_eq!(r.output, Some(json!("Expired")));
}

#[test]
fn an_event_arriving_in_the_same_turn_after_the_timer_fired_loses_the_race() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let deadline = ctx.current_time() + Duration::hours(1);
        let first: Option<String> = ctx.wait_for_event_until("Go", deadline).await?;
        // The late event is not lost: it waits for the next wait.
        let later: String = ctx.wait_for_event("Go").await?;
        Ok(json!({"first": first, "later": later}))
    });
    let mut h = History::new();
    h.turn(t0()).started(t0(), Value::Null);
    let timer = h.timer(t0(), t0() + Duration::hours(1));

    let r = run(
        &orch,
        &h,
        vec![
            fired(timer, t0() + Duration::hours(1)),
            raised("Go", "g", json!("late")),
        ],
        t0() + Duration::hours(2),
    );
    assert_eq!(r.output, Some(json!({"first": null, "later": "late"})));
}

#[test]
fn a_timer_that_lost_the_race_is_no_longer_open() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let deadline = ctx.current_time() + Duration::hours(1);
        let first: Option<String> = ctx.wait_for_event_until("Go", deadline).await?;
        let _: String = ctx.wait_for_event("Again").await?;
        Ok(json!(first))
    });
    let mut h = History::new();
    h.turn(t0()).started(t0(), Value::Null);
    h.timer(t0(), t0() + Duration::hours(1));

    let r = run(&orch, &h, vec![raised("Go", "g", json!("x"))], t0());
    assert_eq!(r.runtime_status, RuntimeStatus::Running);
    assert!(
        r.open_timers.is_empty(),
        "nobody waits for the deadline any more, so nothing should wake up for it"
    );
}

#[test]
fn a_failed_activity_is_retried_after_a_durable_backoff_timer() {
    let orch = orchestration(approval);
    let mut h = History::new();
    h.turn(t0()).started(t0(), json!({"file": "f"}));
    h.turn(t0()).raised(t0(), "Approval", "upload", approved());
    let first = h.scheduled(t0(), "Analyze", json!({"file": "f"}));

    // Attempt 1 fails: a 10 s timer is created, nothing is rescheduled yet.
    let t1 = t0() + Duration::seconds(3);
    let r = run(&orch, &h, vec![failed(first, "disk hiccup")], t1);
    assert_eq!(r.runtime_status, RuntimeStatus::Running);
    assert_eq!(
        r.actions,
        vec![Action::CreateTimer {
            timer_id: 7,
            fire_at: t1 + Duration::seconds(10)
        }]
    );
    h.commit(&r);

    // The timer fires: attempt 2 is scheduled.
    let t2 = t1 + Duration::seconds(10);
    let r = run(&orch, &h, vec![fired(7, t2)], t2);
    assert_eq!(
        r.actions,
        vec![Action::ScheduleActivity {
            task_scheduled_id: 10,
            name: "Analyze".into(),
            input: json!({"file": "f"}),
        }]
    );
    h.commit(&r);

    // Attempt 2 succeeds: on to the download approval.
    let r = run(&orch, &h, vec![completed(10, json!({"ok": 1}))], t2);
    assert_eq!(r.runtime_status, RuntimeStatus::Running);
    assert_eq!(r.custom_status["stage"], json!("AwaitingDownloadApproval"));
    assert_eq!(r.custom_status["analysis"], json!({"ok": 1}));
}

#[test]
fn an_activity_failing_every_attempt_fails_the_instance_with_the_last_message() {
    let orch = orchestration(approval);
    let mut h = History::new();
    h.turn(t0()).started(t0(), json!({}));
    h.turn(t0()).raised(t0(), "Approval", "upload", approved());
    let mut now = t0();
    let mut task = h.scheduled(now, "Analyze", json!({}));
    let mut expected_delays = vec![10, 20];
    loop {
        let r = run(&orch, &h, vec![failed(task, &format!("boom {task}"))], now);
        h.commit(&r);
        if r.runtime_status != RuntimeStatus::Running {
            assert_eq!(r.runtime_status, RuntimeStatus::Failed);
            assert_eq!(
                r.failure.as_deref(),
                Some(format!("activity Analyze failed: boom {task}").as_str())
            );
            break;
        }
        let Some(Action::CreateTimer { timer_id, fire_at }) = r.actions.first().cloned() else {
            panic!("expected a backoff timer, got {:?}", r.actions);
        };
        assert_eq!(fire_at - now, Duration::seconds(expected_delays.remove(0)));
        now = fire_at;
        let r = run(&orch, &h, vec![fired(timer_id, fire_at)], now);
        h.commit(&r);
        let Some(Action::ScheduleActivity {
            task_scheduled_id, ..
        }) = r.actions.first().cloned()
        else {
            panic!("expected a new attempt, got {:?}", r.actions);
        };
        task = task_scheduled_id;
    }
    assert!(expected_delays.is_empty(), "three attempts, two waits");
}

/// Original code: approval, then the analysis. Changed code: approval, a one-hour timer,
/// then the analysis. An instance that already scheduled the analysis cannot continue.
#[test]
fn a_code_change_under_a_running_instance_is_detected_as_nondeterminism() {
    let orch = orchestration(approval_with_cooldown);
    let mut h = History::new();
    h.turn(t0()).started(t0(), json!({}));
    h.turn(t0()).raised(t0(), "Approval", "upload", approved());
    let task = h.scheduled(t0(), "Analyze", json!({}));

    let r = run(&orch, &h, vec![completed(task, json!({}))], t0());
    assert_nondeterminism(
        &r,
        "nondeterministic: history has TaskScheduled 'Analyze' at 4 but the code scheduled a timer",
    );
    // The inbound event is still recorded before the failure.
    assert_eq!(
        types(&r.new_events),
        ["OrchestratorStarted", "TaskCompleted", "ExecutionCompleted"]
    );
}

#[test]
fn history_with_more_scheduled_work_than_the_code_is_nondeterministic() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let v: Value = ctx.wait_for_event("Go").await?;
        Ok(v)
    });
    let mut h = History::new();
    h.turn(t0()).started(t0(), Value::Null);
    h.scheduled(t0(), "Analyze", json!({}));

    let r = run(&orch, &h, vec![raised("Go", "g", json!(1))], t0());
    assert_nondeterminism(
        &r,
        "nondeterministic: history has TaskScheduled 'Analyze' at 2 but the code scheduled nothing",
    );
}

#[test]
fn a_renamed_activity_is_nondeterministic() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let v: Value = ctx
            .call_activity("AnalyzeV2", &json!({}), RetryPolicy::none())
            .await?;
        Ok(v)
    });
    let mut h = History::new();
    h.turn(t0()).started(t0(), Value::Null);
    let task = h.scheduled(t0(), "Analyze", json!({}));

    let r = run(&orch, &h, vec![completed(task, json!(1))], t0());
    assert_nondeterminism(
        &r,
        "nondeterministic: history has TaskScheduled 'Analyze' at 2 but the code scheduled activity 'AnalyzeV2'",
    );
}

#[test]
fn a_duplicate_completion_in_history_is_ignored() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let a: i64 = ctx.call_activity("A", &1, RetryPolicy::none()).await?;
        let b: i64 = ctx.call_activity("B", &2, RetryPolicy::none()).await?;
        Ok(json!(a + b))
    });
    let mut h = History::new();
    h.turn(t0()).started(t0(), Value::Null);
    let a = h.scheduled(t0(), "A", json!(1));
    h.turn(t0()).push(t0(), completed(a, json!(10)));
    let b = h.scheduled(t0(), "B", json!(2));

    let r = run(
        &orch,
        &h,
        vec![completed(a, json!(999)), completed(b, json!(20))],
        t0(),
    );
    assert_eq!(r.output, Some(json!(30)));
}

#[test]
fn replays_see_history_time_and_the_same_guids() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let started = ctx.current_time();
        let guid = ctx.new_guid();
        let replaying = ctx.is_replaying();
        let _: Value = ctx.wait_for_event("Go").await?;
        Ok(json!({
            "started": started,
            "guid": guid,
            "replayingAtStart": replaying,
            "replayingAtEnd": ctx.is_replaying(),
            "now": ctx.current_time(),
        }))
    });
    let first = first_turn(&orch, Value::Null);
    let mut h = History::new();
    h.commit(&first);
    let later = t0() + Duration::hours(5);
    let r = run(&orch, &h, vec![raised("Go", "g", json!(1))], later);
    let out = r.output.unwrap();
    assert_eq!(out["started"], json!(t0()));
    assert_eq!(out["now"], json!(later));
    assert_eq!(out["replayingAtStart"], json!(true));
    assert_eq!(out["replayingAtEnd"], json!(false));

    // The same history replayed again gives the same GUID.
    let again = run(&orch, &h, vec![raised("Go", "g", json!(1))], later);
    assert_eq!(again.output.unwrap()["guid"], out["guid"]);
}

#[test]
fn a_panicking_orchestration_fails_its_instance_instead_of_the_engine() {
    let orch = orchestration(|_ctx: OrchestrationContext, input: Value| async move {
        if input.is_null() {
            panic!("no input");
        }
        Ok(input)
    });
    let r = first_turn(&orch, Value::Null);
    assert_eq!(r.runtime_status, RuntimeStatus::Failed);
    assert_eq!(
        r.failure.as_deref(),
        Some("orchestration panicked: no input")
    );
}

#[test]
fn an_output_too_large_for_a_history_row_fails_the_instance() {
    let orch = orchestration(|_ctx: OrchestrationContext, _| async move {
        Ok(json!("x".repeat(MAX_EVENT_BYTES)))
    });
    let r = first_turn(&orch, Value::Null);
    assert_eq!(r.runtime_status, RuntimeStatus::Failed);
    assert!(
        r.failure
            .as_deref()
            .unwrap()
            .starts_with("payload too large: ExecutionCompleted"),
        "{:?}",
        r.failure
    );
    assert_eq!(r.output, None);
    assert_eq!(
        types(&r.new_events),
        [
            "OrchestratorStarted",
            "ExecutionStarted",
            "ExecutionCompleted"
        ]
    );
}

#[test]
fn fan_out_beyond_one_batch_fails_the_instance_rather_than_splitting_the_turn() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let calls: Vec<_> = (0..120)
            .map(|i| ctx.call_activity::<_, Value>("A", &i, RetryPolicy::none()))
            .collect();
        futures::future::try_join_all(calls).await?;
        Ok(Value::Null)
    });
    let r = first_turn(&orch, Value::Null);
    assert_eq!(r.runtime_status, RuntimeStatus::Failed);
    assert!(r.actions.is_empty());
    assert!(r.failure.unwrap().contains("one batch holds at most 99"));
}

#[test]
fn parallel_activities_complete_in_any_order() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let calls: Vec<_> = (0..3)
            .map(|i| ctx.call_activity::<_, i64>("Square", &i, RetryPolicy::none()))
            .collect();
        let results = futures::future::try_join_all(calls).await?;
        Ok(json!(results))
    });
    let first = first_turn(&orch, Value::Null);
    assert_eq!(first.actions.len(), 3);
    assert_eq!(first.open_activities, vec![2, 3, 4]);
    let mut h = History::new();
    h.commit(&first);
    let r = run(
        &orch,
        &h,
        vec![completed(4, json!(4)), completed(2, json!(0))],
        t0(),
    );
    assert_eq!(r.runtime_status, RuntimeStatus::Running);
    assert_eq!(r.open_activities, vec![3]);
    h.commit(&r);
    let r = run(&orch, &h, vec![completed(3, json!(1))], t0());
    assert_eq!(r.output, Some(json!([0, 1, 4])));
}

/// `try_join_all` over more than 30 futures switches to a waker-driven set; completions must
/// still reach it.
#[test]
fn a_wide_fan_out_completes_through_waker_driven_combinators() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let calls: Vec<_> = (0..40)
            .map(|i| ctx.call_activity::<_, i64>("Double", &i, RetryPolicy::none()))
            .collect();
        let results = futures::future::try_join_all(calls).await?;
        Ok(json!(results.iter().sum::<i64>()))
    });
    let first = first_turn(&orch, Value::Null);
    let mut h = History::new();
    h.commit(&first);
    let completions: Vec<EventKind> = first
        .actions
        .iter()
        .rev()
        .map(|a| match a {
            Action::ScheduleActivity {
                task_scheduled_id,
                input,
                ..
            } => completed(*task_scheduled_id, json!(input.as_i64().unwrap() * 2)),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let r = run(&orch, &h, completions, t0());
    assert_eq!(r.output, Some(json!((0..40).map(|i| i * 2).sum::<i64>())));
}

#[test]
fn a_fan_out_over_four_megabytes_fails_the_instance_rather_than_splitting_the_turn() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let big = "x".repeat(30 * 1024);
        let calls: Vec<_> = (0..60)
            .map(|_| ctx.call_activity::<_, Value>("A", &big, RetryPolicy::none()))
            .collect();
        futures::future::try_join_all(calls).await?;
        Ok(Value::Null)
    });
    let r = first_turn(&orch, Value::Null);
    assert_eq!(r.runtime_status, RuntimeStatus::Failed);
    assert!(r.actions.is_empty());
    assert!(r
        .failure
        .unwrap()
        .contains("bytes; one batch holds at most"));
}

#[test]
fn an_event_delivered_to_an_abandoned_wait_goes_to_the_next_wait() {
    let orch = orchestration(|ctx: OrchestrationContext, _| async move {
        let mut abandoned = Box::pin(ctx.wait_for_event::<String>("A"));
        // Polled once, so it is registered as the first waiter for "A"...
        assert!(futures::FutureExt::now_or_never(&mut abandoned).is_none());
        let b: String = ctx.wait_for_event("B").await?;
        // ...and receives "A" while the code waits for "B", but is dropped unread.
        drop(abandoned);
        let a: String = ctx.wait_for_event("A").await?;
        Ok(json!([b, a]))
    });
    let mut h = History::new();
    h.turn(t0()).started(t0(), Value::Null);
    let r = run(
        &orch,
        &h,
        vec![raised("A", "1", json!("a")), raised("B", "2", json!("b"))],
        t0(),
    );
    assert_eq!(r.output, Some(json!(["b", "a"])));
}
