//! Structured logs with `tracing`: human-readable in local mode, JSON lines under the Functions
//! host (which forwards stdout to its own logs). Nothing here logs keys, tokens or SAS
//! signatures; callers log ids, names and outcomes only.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. `RUST_LOG` overrides the default level (`info`).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    // try_init: a second call (tests starting several apps) must not panic.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
