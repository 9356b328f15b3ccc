//! The engine's shared vocabulary, below the client, the turn and the worker: history events,
//! an instance's state and how both are stored as rows, the status index's keys, work
//! messages, options, errors and refusals. Nothing here does I/O.

pub mod error;
pub mod event;
pub mod index;
pub mod instance;
pub mod message;
pub mod options;
pub mod rows;
