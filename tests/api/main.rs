//! API tests: the app served on a real port, driven over HTTP with a plain client, on the
//! embedded store and (when `FILE_APPROVER_TEST_AZURE_STORAGE` is set, as in CI) on Azurite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions;
mod after_approval;
mod bad_input;
mod content_types;
mod defender;
mod direct_upload;
mod helpers;
mod host;
mod host_protocol;
mod keyless;
mod lifecycle;
mod notify;
mod people;
mod review_loop;
mod review_page;
mod robustness;
mod scanning;
mod workflow;
