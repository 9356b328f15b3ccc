//! Structured logs with `tracing`: human-readable in local mode, JSON lines under the Functions
//! host. The host logs a worker's stdout lines as Information and its stderr lines as Error (or
//! Warning when they say "warn"), so under the host warnings and errors go to stderr and keep
//! their level in the host's log. Nothing here logs keys, tokens or SAS signatures; callers log
//! ids, names and outcomes only.

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. `RUST_LOG` overrides the default level (`info`).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    // try_init: a second call (tests starting several apps) must not panic.
    let _ = if json {
        let writer = std::io::stderr
            .with_max_level(Level::WARN)
            .or_else(std::io::stdout);
        builder
            .json()
            .flatten_event(true)
            .with_writer(writer)
            .try_init()
    } else {
        builder.compact().try_init()
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
