//! The storage conformance suite (see tests/store_conformance.rs).
