//! Helpers for tests and the benchmark: two decorators built on [`crate::store::layer`] (fault
//! injection, [`faults`]; request counting, [`counting`]) and a private Azurite ([`azurite`]). Compiled only with the `test-support`
//! feature, so the handler never carries them.

pub mod azurite;
pub mod counting;
pub mod faults;

pub use super::layer::Op;
pub use azurite::PrivateAzurite;
pub use counting::{BlobRequestModel, CountingStore, RequestCounter, RequestCounts};
pub use faults::{Faults, FaultyStore};
