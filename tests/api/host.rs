//! The app under a Functions host, played by the tests: the host cannot be installed here, so
//! [`HostQueue`] does what the queues extension does with the `work/` queue trigger (protocol
//! reference §2.3, §2.8, §3.8, §5.2) against the real queue — receive a batch, POST each message
//! to `/work` as the host shapes the invocation, delete it on 2xx, let it show again after
//! `visibilityTimeout` otherwise, and move it to `<queue>-poison` once it has been received
//! `maxDequeueCount` times. Its settings come from the project's own `host.json`, so a change
//! there is a change here. HTTP requests arrive forwarded, with the host's headers; the blob
//! trigger's invocation is built from the host's fixture payload.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use file_approver::store::testing::Op;
use file_approver::store::{ReceivedMessage, Storage};
use serde_json::Value;

use crate::helpers::{
    analysis_through_the_queue, spawn_app_with, Backend, Mode, Options, TestApp, ALICE, BOB,
};
use crate::host_protocol::{blob_trigger_payload, invoke_function, invoke_ok, record_binding};
use file_approver::functions::invocation::host_queue_invocation;

/// What `host.json`'s `extensions.queues` asks of the host.
#[derive(Debug, Clone)]
struct QueueSettings {
    message_encoding: String,
    max_dequeue_count: u32,
    visibility_timeout: Duration,
    batch_size: u32,
}

impl QueueSettings {
    fn from_host_json() -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("host.json");
        let host: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let queues = &host["extensions"]["queues"];
        let timeout = queues["visibilityTimeout"].as_str().unwrap();
        let seconds: Vec<u64> = timeout.split(':').map(|p| p.parse().unwrap()).collect();
        QueueSettings {
            // The queues extension's defaults, where host.json says nothing.
            message_encoding: queues["messageEncoding"]
                .as_str()
                .unwrap_or("base64")
                .to_owned(),
            max_dequeue_count: queues["maxDequeueCount"].as_u64().unwrap_or(5) as u32,
            visibility_timeout: Duration::from_secs(
                seconds[0] * 3600 + seconds[1] * 60 + seconds[2],
            ),
            batch_size: queues["batchSize"].as_u64().unwrap_or(16) as u32,
        }
    }
}

/// What one pass over the queue did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pass {
    invoked: usize,
    failed: usize,
    poisoned: usize,
}

/// The host's queue listener for the app's work queue.
struct HostQueue<'a> {
    app: &'a TestApp,
    store: std::sync::Arc<dyn Storage>,
    queue: String,
    settings: QueueSettings,
    invocations: AtomicUsize,
}

impl<'a> HostQueue<'a> {
    fn new(app: &'a TestApp) -> Self {
        HostQueue {
            app,
            store: app.state.files.store().clone(),
            queue: app.state.files.engine().work_queue().to_owned(),
            settings: QueueSettings::from_host_json(),
            invocations: AtomicUsize::new(0),
        }
    }

    fn poison_queue(&self) -> String {
        format!("{}-poison", self.queue)
    }

    /// One receive and the invocations for what it got, run concurrently as the host does.
    async fn pass(&self) -> Pass {
        // While an invocation runs the host keeps the message hidden (10 minutes, renewed).
        let messages = self
            .store
            .dequeue(
                &self.queue,
                self.settings.batch_size,
                Duration::from_secs(600),
            )
            .await
            .expect("the host's receive");
        let outcomes =
            futures::future::join_all(messages.into_iter().map(|m| self.handle(m))).await;
        let mut pass = Pass::default();
        for outcome in outcomes {
            match outcome {
                Handled::Done => pass.invoked += 1,
                Handled::Failed => {
                    pass.invoked += 1;
                    pass.failed += 1;
                }
                Handled::FailedAndPoisoned => {
                    pass.invoked += 1;
                    pass.failed += 1;
                    pass.poisoned += 1;
                }
                Handled::Poisoned => pass.poisoned += 1,
            }
        }
        pass
    }

    /// Passes until a receive comes back empty; what they did in all.
    async fn until_idle(&self) -> Pass {
        let mut total = Pass::default();
        for _ in 0..1000 {
            let pass = self.pass().await;
            if pass == Pass::default() {
                return total;
            }
            total.invoked += pass.invoked;
            total.failed += pass.failed;
            total.poisoned += pass.poisoned;
        }
        panic!("the queue never ran dry");
    }

    async fn handle(&self, message: ReceivedMessage) -> Handled {
        let max = self.settings.max_dequeue_count;
        // A message received more often than allowed (its earlier receivers died) goes to the
        // poison queue without another run.
        if message.dequeue_count > max {
            self.poison(&message).await;
            return Handled::Poisoned;
        }
        let Some(item) = self.decode(&message.text) else {
            // The extension cannot decode it: that is a failed attempt like any other.
            return self.failed(&message).await;
        };
        let status = self.invoke(&message, &item).await;
        if status.is_success() {
            self.store
                .delete_message(&self.queue, &message.receipt)
                .await
                .expect("the host's delete");
            Handled::Done
        } else {
            self.failed(&message).await
        }
    }

    /// `messageEncoding`: `none` hands the text over as it is; `base64` decodes it first.
    fn decode(&self, text: &str) -> Option<String> {
        use base64::Engine as _;
        match self.settings.message_encoding.as_str() {
            "none" => Some(text.to_owned()),
            _ => base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok()),
        }
    }

    async fn failed(&self, message: &ReceivedMessage) -> Handled {
        if message.dequeue_count >= self.settings.max_dequeue_count {
            self.poison(message).await;
            return Handled::FailedAndPoisoned;
        }
        // Released: it shows again after visibilityTimeout.
        self.store
            .renew_message(
                &self.queue,
                &message.receipt,
                &message.text,
                self.settings.visibility_timeout,
            )
            .await
            .expect("the host's release");
        Handled::Failed
    }

    async fn poison(&self, message: &ReceivedMessage) {
        let poison = self.poison_queue();
        self.store
            .ensure_queue(&poison)
            .await
            .expect("poison queue");
        self.store
            .enqueue(&poison, &message.text, Duration::ZERO)
            .await
            .expect("copy to the poison queue");
        self.store
            .delete_message(&self.queue, &message.receipt)
            .await
            .expect("the host's delete");
    }

    /// The invocation as the host sends it (§2.2, §2.3, §2.8): the message and every string
    /// in the metadata JSON-encoded once more, numbers as strings, times without fractions,
    /// the body chunked.
    async fn invoke(&self, message: &ReceivedMessage, item: &str) -> reqwest::StatusCode {
        self.invocations.fetch_add(1, Ordering::SeqCst);
        let body = host_queue_invocation(message, item, "work", Utc::now()).to_string();
        let response = invoke_function(self.app, "work", body).await;
        let status = response.status();
        if status.is_success() {
            // §3.1: a 2xx must carry the JSON envelope.
            let reply: Value = response.json().await.expect("a JSON invocation response");
            assert!(reply["Logs"].is_array(), "{reply}");
        }
        status
    }

    /// Every message of the poison queue back onto the work queue: what an operator does once
    /// the cause is fixed (README, "Poison messages").
    async fn requeue_poison(&self) -> usize {
        let poison = self.poison_queue();
        let mut moved = 0;
        loop {
            let messages = self
                .store
                .dequeue(&poison, 32, Duration::from_secs(60))
                .await
                .expect("receive poison");
            if messages.is_empty() {
                return moved;
            }
            for message in messages {
                self.store
                    .enqueue(&self.queue, &message.text, Duration::ZERO)
                    .await
                    .expect("requeue");
                self.store
                    .delete_message(&poison, &message.receipt)
                    .await
                    .expect("delete poison");
                moved += 1;
            }
        }
    }
}

enum Handled {
    Done,
    Failed,
    FailedAndPoisoned,
    Poisoned,
}

/// An upload as the host forwards it: the public host name, the function key, the host's
/// headers (§4.2).
async fn forwarded_upload(app: &TestApp, name: &str, content: &[u8]) -> Value {
    let response = app
        .client
        .post(app.url(&format!("/api/files?name={name}&code=the-function-key")))
        .header("Host", "fileapprover.azurewebsites.net")
        .header("x-functions-key", "the-function-key")
        .header("X-Forwarded-Proto", "https")
        .header("X-Azure-Functions-HostVersion", "4.1037.0.23568")
        .header(
            "X-Azure-Functions-InvocationId",
            uuid::Uuid::new_v4().to_string(),
        )
        .header("Content-Type", "text/csv")
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// Upload, then the blob trigger's invocation: the workflow is started by the host.
async fn uploaded_and_triggered(app: &TestApp, content: &[u8]) -> String {
    let uploaded = forwarded_upload(app, "ledger.csv", content).await;
    assert_eq!(
        uploaded["stage"], "Uploaded",
        "under the host the trigger starts it"
    );
    let id = uploaded["id"].as_str().unwrap().to_owned();
    let record = record_binding(app, &id).await;
    invoke_ok(app, blob_trigger_payload(&id, content, record)).await;
    assert_eq!(app.status(&id).await["stage"], "AwaitingUploadApproval");
    id
}

async fn golden_path_runs_on_host_invocations_alone(backend: Backend) {
    // The analysis goes through the queue trigger, as a file over the inline limit's would.
    let Some(app) = spawn_app_with(Options {
        backend,
        mode: Mode::CustomHandler,
        vars: vec![analysis_through_the_queue()],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let host = HostQueue::new(&app);
    let content = b"date,amount\n2026-11-02,120\n2026-11-09,80\n";
    let id = uploaded_and_triggered(&app, content).await;
    assert_eq!(
        host.until_idle().await,
        Pass::default(),
        "no work before a decision"
    );

    let response = app.approve(&id, "upload", Some(ALICE), None).await;
    assert_eq!(response.status(), 202);
    // Nothing runs in the background under the host: the analysis waits for its invocation.
    assert_eq!(app.status(&id).await["stage"], "Analyzing");

    let pass = host.until_idle().await;
    assert_eq!(
        pass,
        Pass {
            invoked: 1,
            failed: 0,
            poisoned: 0
        },
        "one analysis, one invocation"
    );
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingDownloadApproval");
    assert_eq!(status["analysis"]["size"], content.len());

    let response = app.approve(&id, "download", Some(BOB), None).await;
    assert_eq!(response.status(), 202);
    // The approval cancels the deadline timer: its message, when it shows in a day, finds the
    // workflow finished. Nothing else is left to do.
    assert_eq!(host.until_idle().await, Pass::default());
    let download: Value = app
        .get(&format!("/api/files/{id}/download"))
        .await
        .json()
        .await
        .unwrap();
    let fetched = reqwest::get(download["downloadUrl"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), content);
}

async fn work_that_keeps_failing_is_poisoned_by_the_host_and_finishes_once_requeued(
    backend: Backend,
) {
    let Some(app) = spawn_app_with(Options {
        backend,
        mode: Mode::CustomHandler,
        faults: true,
        vars: vec![analysis_through_the_queue()],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let mut host = HostQueue::new(&app);
    // The host would wait 5 s (host.json) between attempts; the test does not.
    host.settings.visibility_timeout = Duration::ZERO;
    let id = uploaded_and_triggered(&app, b"a,b\n1,2\n").await;
    app.approve_ok(&id, "upload", ALICE).await;

    // The analysis runs, but its outcome can never be committed.
    let faults = app.faults.as_ref().unwrap();
    faults.fail_next_on(Op::Batch, "workflows", usize::MAX / 2);
    let pass = host.until_idle().await;
    let max = host.settings.max_dequeue_count as usize;
    assert_eq!(
        pass,
        Pass {
            invoked: max,
            failed: max,
            poisoned: 1
        },
        "tried maxDequeueCount times, then parked"
    );
    assert_eq!(
        app.status(&id).await["stage"],
        "Analyzing",
        "nothing half-done"
    );

    // The cause is fixed and the operator requeues the poison queue.
    faults.heal();
    assert_eq!(host.requeue_poison().await, 1);
    let pass = host.until_idle().await;
    assert_eq!(
        pass,
        Pass {
            invoked: 1,
            failed: 0,
            poisoned: 0
        }
    );
    let status = app.status(&id).await;
    assert_eq!(status["stage"], "AwaitingDownloadApproval");
    let history = app.history(&id).await;
    let completed = history
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                file_approver::engine::EventKind::TaskCompleted { .. }
            )
        })
        .count();
    assert_eq!(completed, 1, "the outcome recorded once");
}

crate::on_every_backend!(
    golden_path_runs_on_host_invocations_alone,
    work_that_keeps_failing_is_poisoned_by_the_host_and_finishes_once_requeued,
);
