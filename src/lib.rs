//! File Approver: a durable, human-in-the-loop approval workflow over uploaded files, served as
//! an Azure Functions custom handler (or standalone in local mode).
//!
//! # Layout
//!
//! Dependencies point down this list, never up, and no file is part of an import circle
//! (`tests/architecture.rs` checks both):
//!
//! - [`startup`]: wiring everything into a server (our own hyper loop, for its header-read
//!   timeout), local mode's work driver and sweep.
//! - [`functions`]: the HTTP / invocation edge, one module per function folder (`upload/`,
//!   `grant_upload_url/`, `complete/`, `status/`, `approve/`, `withdraw/`, `history/`,
//!   `preview/`, `download/`, `openapi/`, `ui/` — the reviewers' web page, its assets built in
//!   —, `orchestrator/`, `start_direct_upload/`, `work/`, `sweep/`), who is calling (`auth`:
//!   tokens, Easy Auth), the embedded store's signed-link routes (`signed_links`), the host's
//!   invocation envelope, and the types that only describe the API (`schema`). Each handler is
//!   parse → one call on [`files::Files`] → map.
//! - [`error`]: [`error::ApiError`]: a [`domain::Refusal`] mapped to its status, or an opaque
//!   5xx whose details go to the log.
//! - [`files`]: the application layer, the one owner of a file's life, one file per use case
//!   (upload, upload URL, start, decide, withdraw, list and inbox, history, preview, download,
//!   sweep) around shared reads (`lookup`). No HTTP.
//! - [`workflow`]: the `FileApproval` orchestration (quorums, four-eyes guards, reminders,
//!   notifications, clean-up of refused files), what it starts from, the pure analysis
//!   activity and the webhook delivery, written against the engine's API; the one place that
//!   knows how stages and decisions are encoded.
//! - [`engine`]: a small durable engine (event-sourced orchestrations replayed from history kept
//!   in a table, work carried on a storage queue, a status index for listings) in rooms: the
//!   client and the worker on the turn, the turn on the handle and the orchestration model, all
//!   on a shared vocabulary. Knows nothing of HTTP or Azure.
//! - [`scan`]: the malware scanners a deployment may choose (ClamAV's clamd), each turning a
//!   stream of bytes into a verdict. Knows nothing of HTTP, storage or the workflow.
//! - [`store`]: the one storage trait (blobs, tables, queues), its backends (Azure Storage,
//!   embedded on-disk), one decorator mechanism ([`store::layer`]) and the per-request storage
//!   budget it carries.
//! - [`config`]: settings from the environment, a leaf every layer may read.
//! - [`domain`], [`clock`], [`telemetry`]: validated types (file ids, names, content types,
//!   stages, decisions, reviewers), the one list of refusals, injected time, logging.

pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod files;
pub mod functions;
pub mod scan;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod workflow;
