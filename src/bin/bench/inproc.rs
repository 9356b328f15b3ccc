//! The app served from inside the benchmark, on its own Tokio runtime, with its storage wrapped
//! in a [`RequestCounter`] so that every request it makes is counted.
//!
//! A separate runtime keeps the app's tasks (handlers, activities, the recovery duty) apart
//! from the load generator's, and dropping it stops all of them: nothing keeps touching
//! storage after its row.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use file_approver::clock::SystemClock;
use file_approver::config::Settings;
use file_approver::engine::WorkDriver;
use file_approver::functions::AppState;
use file_approver::startup::Application;
use file_approver::store::testing::{BlobRequestModel, RequestCounter};
use file_approver::store::Storage;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use crate::error::{IoContext, Result};

pub struct InProcessApp {
    runtime: Option<Runtime>,
    pub base: String,
    pub state: AppState,
    pub driver: WorkDriver,
    pub counter: RequestCounter,
}

impl InProcessApp {
    /// Builds the app from `vars` (as if they were its environment) and serves it, in local
    /// mode, with the recovery duty running as it does there.
    pub async fn start(vars: HashMap<String, String>, model: BlobRequestModel) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("app")
            .enable_all()
            .build()
            .context(|| "build the app's runtime".into())?;
        let settings = Settings::from_vars(&vars)?;
        let counter = RequestCounter::new(model);
        let layer_counter = counter.clone();
        let started = runtime.spawn(async move {
            let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .context(|| "bind the app's port".into())?;
            let app = Application::build_with_store_layer(
                settings,
                listener,
                Arc::new(SystemClock),
                move |store| -> Arc<dyn Storage> { layer_counter.wrap(store) },
            )
            .await?;
            let addr = app
                .local_addr()
                .context(|| "read the app's address".into())?;
            let state = app.state().clone();
            let driver = app.driver().clone();
            tokio::spawn(async move {
                if let Err(e) = app.run_until_stopped().await {
                    eprintln!("bench: in-process app stopped: {}", crate::error::chain(&e));
                }
            });
            Ok::<_, crate::error::BenchError>((addr, state, driver))
        });
        let (addr, state, driver) = started.await??;
        Ok(InProcessApp {
            runtime: Some(runtime),
            base: format!("http://{addr}"),
            state,
            driver,
            counter,
        })
    }

    /// Runs `work` on the app's runtime (baselines measured where the app itself runs).
    pub async fn run<F, T>(&self, work: F) -> Result<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => Ok(runtime.spawn(work).await?),
            None => crate::error::failed("the app's runtime is gone"),
        }
    }

    /// Waits until the work queue has nothing visible left to run.
    pub async fn idle(&self) -> Result<()> {
        let driver = self.driver.clone();
        self.run(async move { driver.drain().await }).await
    }

    pub fn store(&self) -> Arc<dyn Storage> {
        self.state.files.store().clone()
    }
}

impl Drop for InProcessApp {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime inside another one would block; this stops it without waiting.
            runtime.shutdown_background();
        }
    }
}
