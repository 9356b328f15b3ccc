//! Marks the Azure test suites as ignored when no Azure Storage is configured for them, so that
//! `cargo test` alone reports them as ignored rather than passed. Under `CI` they are never
//! ignored: there a missing `FILE_APPROVER_TEST_AZURE_STORAGE` fails them. (`scripts/test`
//! starts Azurite and sets it.) The deployment package's test (`tests/package.rs`, minutes of
//! zig-linked release build) is likewise ignored unless `FILE_APPROVER_TEST_PACKAGE` or `CI` is
//! set (`scripts/test` sets it). The SDK interop tests (`tests/azure_interop.rs`) also need
//! `FILE_APPROVER_TEST_PYTHON`, a Python with the official SDK (`scripts/test` makes one). The
//! scan tests need `FILE_APPROVER_TEST_CLAMD`, the clamd binary they start (`scripts/test` sets
//! it to Debian's).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(azure_tests_skipped)");
    println!("cargo::rustc-check-cfg=cfg(package_tests_skipped)");
    println!("cargo::rustc-check-cfg=cfg(interop_tests_skipped)");
    println!("cargo::rustc-check-cfg=cfg(clamd_tests_skipped)");
    println!("cargo::rerun-if-env-changed=FILE_APPROVER_TEST_CLAMD");
    println!("cargo::rerun-if-env-changed=FILE_APPROVER_TEST_PYTHON");
    println!("cargo::rerun-if-env-changed=FILE_APPROVER_TEST_PACKAGE");
    println!("cargo::rerun-if-env-changed=FILE_APPROVER_TEST_AZURE_STORAGE");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-changed=build.rs");
    let configured = std::env::var("FILE_APPROVER_TEST_AZURE_STORAGE")
        .is_ok_and(|value| !value.trim().is_empty());
    let ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
    if !configured && !ci {
        println!("cargo::rustc-cfg=azure_tests_skipped");
    }
    // The SDK interop tests need both Azure Storage and a Python with the official SDK.
    let python = std::env::var("FILE_APPROVER_TEST_PYTHON").is_ok_and(|v| !v.trim().is_empty());
    let interop_ready = configured && python;
    if !interop_ready && !ci {
        println!("cargo::rustc-cfg=interop_tests_skipped");
    }
    // The scan tests run a real clamd (`scripts/test` names Debian's).
    let clamd = std::env::var("FILE_APPROVER_TEST_CLAMD").is_ok_and(|v| !v.trim().is_empty());
    if !clamd && !ci {
        println!("cargo::rustc-cfg=clamd_tests_skipped");
    }
    let package = std::env::var("FILE_APPROVER_TEST_PACKAGE").is_ok_and(|v| !v.trim().is_empty());
    if !package && !ci {
        println!("cargo::rustc-cfg=package_tests_skipped");
    }
}
