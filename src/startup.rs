//! Wiring: settings → storage backend → engine → router → server. The listener is bound by
//! the caller's choice of port (0 in tests), and every dependency the handlers need travels in
//! [`AppState`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::clock::{Clock, SystemClock};
use crate::config::{ScanSettings, ScannerChoice, Settings, StorageSetting};
use crate::engine::{DriverOptions, Engine, EngineOptions, WorkDriver};
use crate::error::ApiError;
use crate::files::{Files, FilesError, Policy};
use crate::functions::{self, grant_upload_url, signed_links, AppState};
use crate::scan::Scanner;
use crate::store::azure::{AzureOptions, AzureStore};
use crate::store::budget::Budgeted;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::store::layer::Layered;
use crate::store::{Storage, StoreError};
use crate::workflow::{self, ScanRules, ScanVia};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open storage")]
    Storage(#[from] StoreError),
    #[error("cannot read FILE_APPROVER_STORAGE_CA_FILE {path}")]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare storage")]
    Prepare(#[from] FilesError),
    #[error("server failed")]
    Serve(#[source] std::io::Error),
}

/// A built, bound, not yet running app.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    settings: Settings,
    driver: WorkDriver,
}

impl Application {
    /// Binds 127.0.0.1 on the mode's port: the host always calls the handler on loopback, and
    /// local mode has no business listening anywhere else.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], settings.mode.port()));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        Self::build_with(settings, listener, Arc::new(SystemClock)).await
    }

    /// The same with a given listener and clock (tests: port 0 and a manual clock).
    pub async fn build_with(
        settings: Settings,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        Self::build_with_store_layer(settings, listener, clock, |store| store).await
    }

    /// The same with the storage backend wrapped by `layer` before anything uses it, so that
    /// every request the app makes goes through the wrapper (the benchmark counts them with
    /// `store::testing::counting`).
    pub async fn build_with_store_layer(
        settings: Settings,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
        layer: impl FnOnce(Arc<dyn Storage>) -> Arc<dyn Storage> + Send,
    ) -> Result<Self, StartupError> {
        let local_addr = listener.local_addr().map_err(StartupError::Serve)?;
        let (store, embedded): (Arc<dyn Storage>, Option<Arc<EmbeddedStore>>) =
            match &settings.storage {
                StorageSetting::Azure { connection_string } => (
                    Arc::new(AzureStore::from_connection_string_with(
                        connection_string,
                        &azure_options(&settings)?,
                    )?),
                    None,
                ),
                StorageSetting::AzureIdentity(connection) => (
                    Arc::new(AzureStore::with_identity(
                        connection,
                        &azure_options(&settings)?,
                    )?),
                    None,
                ),
                StorageSetting::Embedded { data_dir } => {
                    let public_base_url = settings
                        .public_url
                        .clone()
                        .unwrap_or_else(|| format!("http://{local_addr}"));
                    let store = Arc::new(EmbeddedStore::open(
                        data_dir,
                        EmbeddedOptions {
                            public_base_url,
                            signing_secret: settings.signing_key.clone(),
                            clock: clock.clone(),
                        },
                    )?);
                    (store.clone(), Some(store))
                }
            };
        // The budget wraps everything else, test decorators included, so that a store frozen
        // by a test is cut short exactly as a real one would be.
        let store: Arc<dyn Storage> = Arc::new(Layered::wrap(layer(store), Budgeted));

        let registry = workflow::registry(
            store.clone(),
            clock.clone(),
            settings.webhook.clone(),
            scanner(&settings.scan),
            settings.inline_analysis_max_bytes,
        );
        let engine = Engine::new(
            store.clone(),
            clock.clone(),
            registry,
            EngineOptions {
                work_queue: settings.work_queue.clone(),
                index_key: Arc::new(workflow::index_key),
                ..EngineOptions::default()
            },
        );
        let driver = WorkDriver::new(engine.clone(), DriverOptions::default());
        let files = Files::new(store, engine, clock.clone(), policy(&settings));
        files.ensure_storage().await?;

        let state = AppState {
            files: Arc::new(files),
            access: Arc::new(functions::auth::Access {
                reviewers: settings.reviewers.clone(),
                uploaders: settings.uploaders.clone(),
                easy_auth: settings.easy_auth.clone(),
            }),
            storage_budget: settings.storage_budget,
        };
        let mut router = functions::router(state.clone());
        if let Some(embedded) = embedded {
            let listener = Arc::new(grant_upload_url::StartOnCommit(state.files.clone()));
            router = router.merge(signed_links::router(embedded, clock, Some(listener)));
        }
        let router = with_edge_layers(router);
        Ok(Application {
            listener,
            router,
            state,
            settings,
            driver,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What runs the work queue in local mode; tests drain it instead of sleeping.
    pub fn driver(&self) -> &WorkDriver {
        &self.driver
    }

    /// Serves until the process is stopped. In local mode it also does what the host's
    /// triggers do under the host: it runs the work queue (the `work` queue trigger) and sweeps
    /// the open uploads (the `sweep` timer) right after start-up and then every
    /// `FILE_APPROVER_SWEEP_INTERVAL_SECS`.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        if self.settings.mode.is_local() {
            tokio::spawn(self.driver.clone().run());
            let interval = self.settings.sweep_interval_secs;
            if interval > 0 {
                let files = self.state.files.clone();
                let every = Duration::from_secs(interval);
                tokio::spawn(async move {
                    let mut ticks = tokio::time::interval(every);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        ticks.tick().await;
                        if let Err(e) = files.sweep_uploads().await {
                            tracing::warn!(error = %e, "sweep failed; will retry");
                        }
                    }
                });
            }
        }
        serve(
            self.listener,
            self.router,
            self.settings.header_read_timeout,
            shutdown_signal(),
        )
        .await;
        Ok(())
    }
}

/// Serves HTTP/1.1 until `shutdown`, then lets requests in flight finish. Like `axum::serve`,
/// but with a header-read timeout: a client that opens a connection and trickles its headers
/// (or sends none) is dropped after `header_read_timeout` instead of holding a connection and
/// a task for as long as it likes.
async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = stream;
        // The peer's address, for the download audit (`ConnectInfo`, as axum's own server
        // would give it).
        let service = tower::util::MapRequest::new(
            router.clone(),
            move |mut request: Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        );
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The scanner the settings choose. Sending gives up after 30 s without progress; the verdict
/// may take up to 15 minutes once the bytes are out (clamd scans a stream when it has all of
/// it), never longer than the scan deadline itself.
fn scanner(settings: &ScanSettings) -> Option<Scanner> {
    match &settings.scanner {
        // Defender for Storage scans on its own; its verdicts come as events.
        ScannerChoice::None | ScannerChoice::Defender => None,
        ScannerChoice::ClamAv(address) => Some(Scanner::clamav(
            address.clone(),
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs(settings.timeout_secs.min(15 * 60)),
        )),
    }
}

/// The scan rules files start under, when a scanner is configured.
fn scan_rules(settings: &ScanSettings) -> Option<ScanRules> {
    let via = match settings.scanner {
        ScannerChoice::None => return None,
        ScannerChoice::ClamAv(_) => ScanVia::App,
        ScannerChoice::Defender => ScanVia::Defender,
    };
    Some(ScanRules {
        via,
        timeout_secs: settings.timeout_secs,
        unscannable: settings.unscannable,
        quarantine: settings.quarantine,
    })
}

/// The file policy the settings describe. Under the host the blob trigger starts workflows,
/// so the sweep gives it a minute before stepping in; locally nothing else will.
fn policy(settings: &Settings) -> Policy {
    let local = settings.mode.is_local();
    Policy {
        max_upload_bytes: settings.max_upload_bytes,
        download_ttl: chrono::Duration::seconds(
            i64::try_from(settings.download_ttl_secs).unwrap_or(3600),
        ),
        max_downloads: settings.max_downloads,
        bind_download_links: settings.bind_download_links,
        require_reason: settings.require_reason,
        approval_timeout_secs: settings.approval_timeout_secs,
        four_eyes: settings.four_eyes,
        notify: settings.webhook.is_some(),
        reminder_before_secs: settings.reminder_before_secs,
        retention_secs: settings.retention_secs,
        scan: scan_rules(&settings.scan),
        upload_quorum: settings.upload_quorum,
        download_quorum: settings.download_quorum,
        max_direct_upload_bytes: settings.max_direct_upload_bytes,
        upload_url_ttl: chrono::Duration::seconds(
            i64::try_from(settings.upload_url_ttl_secs).unwrap_or(900),
        ),
        start_on_upload: local,
        start_grace: if local {
            chrono::Duration::zero()
        } else {
            chrono::Duration::minutes(1)
        },
        ..Policy::default()
    }
}

async fn shutdown_signal() {
    // Ctrl-C in local mode; the host stops the worker with SIGTERM/SIGKILL.
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The span of one request: method and path only. Query strings carry secrets (the host's
/// function key in `code`, a signed link's `sig`), so they never reach the log.
fn request_span(request: &Request<Body>) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        invocation_id = request
            .headers()
            .get("x-azure-functions-invocationid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    )
}

/// The whole route table (besides the embedded store's signed-link route), with its layers.
pub fn app(state: AppState) -> Router {
    with_edge_layers(functions::router(state))
}

/// Panics become JSON 500s, every request gets a span, and every answer says `nosniff` (the
/// JSON included: a browser must never read an answer that echoes a file's name or comment
/// as anything but its declared type). Applied after the signed-link route is merged in:
/// layers only wrap the routes that exist when they are added.
fn with_edge_layers(router: Router) -> Router {
    router
        .layer(axum::middleware::from_fn(
            functions::newline_terminated_json,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            axum::http::HeaderValue::from_static("nosniff"),
        ))
        .layer(CatchPanicLayer::custom(|_| -> Response {
            ApiError::internal("a handler panicked").into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
}

fn azure_options(settings: &Settings) -> Result<AzureOptions, StartupError> {
    let extra_root_certificates = match &settings.storage_ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|source| StartupError::CaFile {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    Ok(AzureOptions {
        extra_root_certificates,
    })
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what the log writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl MakeWriter<'_> for Captured {
        type Writer = Captured;
        fn make_writer(&self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn request_logs_name_the_path_but_never_the_function_key() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let request = Request::get("/api/files?code=the-function-key")
                .body(Body::empty())
                .unwrap();
            let span = request_span(&request);
            let _entered = span.enter();
            tracing::debug!("handled");
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("path=/api/files"), "{log}");
        assert!(!log.contains("the-function-key"), "{log}");
    }
}
