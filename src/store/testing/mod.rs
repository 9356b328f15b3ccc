//! Decorators for tests and the benchmark, built on [`crate::store::layer`]: fault injection
//! ([`faults`]) and request counting ([`counting`]). Compiled only with the `test-support`
//! feature, so the handler never carries them.

pub mod counting;
pub mod faults;

pub use super::layer::Op;
pub use counting::{BlobRequestModel, CountingStore, RequestCounter, RequestCounts};
pub use faults::{Faults, FaultyStore};
