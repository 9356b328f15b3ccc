//! File Approver: a durable, human-in-the-loop approval workflow over uploaded files, served as
//! an Azure Functions custom handler (or standalone in local mode).
//!
//! # Layout
//!
//! Dependencies point down this list, never up:
//!
//! - [`functions`]: the HTTP / invocation edge, one module per function folder (`upload/`,
//!   `status/`, `approve/`, `download/`, `orchestrator/`, `recover/`), the embedded store's
//!   signed-link route, and the host's invocation envelope.
//! - [`workflow`]: the `FileApproval` orchestration and the pure analysis activity, written
//!   against the engine's API.
//! - [`engine`]: a small durable engine (event-sourced orchestrations replayed from history kept
//!   in a table). Knows nothing of HTTP or Azure.
//! - [`store`]: the one storage trait and its backends (Azure Storage, embedded on-disk).
//! - [`domain`]: validated types (file ids, names, stages, decisions, reviewers).
//! - [`config`], [`telemetry`], [`startup`]: settings from the environment, logging, and wiring
//!   everything into a server.

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
