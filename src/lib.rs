//! File Approver: a durable, human-in-the-loop approval workflow over uploaded files, served as
//! an Azure Functions custom handler (or standalone in local mode).
//!
//! # Layout
//!
//! Dependencies point down this list, never up (`tests/architecture.rs` checks it):
//!
//! - [`startup`], [`config`]: settings from the environment, wiring everything into a server
//!   (our own hyper loop, for its header-read timeout), local mode's work driver and sweep.
//! - [`functions`]: the HTTP / invocation edge, one module per function folder (`upload/`,
//!   `uploads/`, `complete/`, `status/`, `approve/`, `withdraw/`, `history/`, `preview/`,
//!   `download/`, `openapi/`, `ui/` — the reviewers' web page, its assets built in —,
//!   `orchestrator/`, `uploaded/`, `work/`, `sweep/`), who is calling (`auth`: tokens, Easy
//!   Auth), the embedded store's signed-link routes (download and upload), and the host's
//!   invocation envelope. Each handler is parse → one call on [`files::Files`] → map.
//! - [`error`]: [`error::ApiError`], every failure a client can see with its status and code.
//! - [`files`]: the application layer, the one owner of a file's life: commit an upload, start
//!   its workflow, load, decide, list, preview, download, sweep what failed uploads left. No
//!   HTTP.
//! - [`workflow`]: the `FileApproval` orchestration (quorums, four-eyes guards, reminders,
//!   notifications, clean-up of refused files), the pure analysis activity and the webhook
//!   delivery, written against the engine's API; the one place that knows how stages and
//!   decisions are encoded.
//! - [`engine`]: a small durable engine (event-sourced orchestrations replayed from history kept
//!   in a table, work carried on a storage queue, a status index for listings): client, turn,
//!   worker and local mode's queue driver. Knows nothing of HTTP or Azure.
//! - [`store`]: the one storage trait (blobs, tables, queues), its backends (Azure Storage, embedded on-disk), one
//!   decorator mechanism ([`store::layer`]) and the per-request storage budget it carries.
//! - [`domain`], [`clock`], [`telemetry`]: validated types (file ids, names, content types,
//!   stages, decisions, reviewers), injected time, logging.

pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod files;
pub mod functions;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod workflow;
