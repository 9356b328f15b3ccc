//! Structured logs with `tracing`: human-readable in local mode, JSON lines under the Functions
//! host. The host logs a worker's stdout lines as Information and its stderr lines as Error (or
//! Warning when they say "warn"), so under the host warnings and errors go to stderr and keep
//! their level in the host's log. Nothing here logs keys, tokens or SAS signatures; callers log
//! ids, names and outcomes only, and the dependencies that would log requests with their
//! credentials are capped at warnings whatever `RUST_LOG` says (`QUIET_TARGETS`).

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Crates that log requests, or could: the Azure SDK (its logging policy redacts every header it
/// does not know to be harmless, but the legacy 0.21 crates once logged SharedKey
/// `Authorization` headers at debug — RUSTSEC-2026-0275 — and a second line costs nothing) and
/// the HTTP stack under it. Capped at warnings whatever `RUST_LOG` asks for, so no operator
/// chasing a bug can switch on a log that holds the account's credentials.
const QUIET_TARGETS: [&str; 11] = [
    "azure_core",
    "typespec_client_core",
    "typespec",
    "azure_storage_blob",
    "azure_storage_queue",
    "azure_storage_common",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
];

/// `RUST_LOG` (default `info`), with [`QUIET_TARGETS`] capped at warnings. The cap is a second
/// filter that every event must also pass, so no `RUST_LOG` directive can lift it.
fn filter() -> impl tracing_subscriber::layer::Filter<tracing_subscriber::Registry> {
    let requested = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let cap = QUIET_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, LevelFilter::WARN),
    );
    requested.and(cap)
}

/// Installs the global subscriber: JSON lines under the host, compact text locally, colours
/// only when standard output is a terminal.
pub fn init(json: bool) {
    // try_init: a second call (tests starting several apps) must not panic.
    let _ = if json {
        let writer = std::io::stderr
            .with_max_level(Level::WARN)
            .or_else(std::io::stdout);
        tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_target(true)
                    .with_writer(writer)
                    .with_filter(filter()),
            )
            .try_init()
    } else {
        tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .compact()
                    .with_target(true)
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_filter(filter()),
            )
            .try_init()
    };
}

/// An error and its whole `source()` chain on one line (`outer: cause: root cause`), for a log
/// field: `Display` alone shows only the outermost message, which for wrapped errors is rarely
/// the one that explains the failure.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("start-up failed")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("storage unavailable")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_in_order() {
        let e = Outer(Inner(std::io::Error::other("connection refused")));
        assert_eq!(
            error_chain(&e),
            "start-up failed: storage unavailable: connection refused"
        );
    }
}
