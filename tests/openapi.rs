//! The OpenAPI document: served at `/api/openapi.json`, kept in `docs/openapi.json`, and saying
//! what the handlers do (every route, its errors, its security, its links).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use file_approver::functions::openapi::document;
use serde_json::Value;

const CHECKED_IN: &str = "docs/openapi.json";

/// `docs/openapi.json` is what the app serves. After an API change, regenerate it with
/// `FILE_APPROVER_WRITE_OPENAPI=1 cargo test --test openapi`.
#[test]
fn the_checked_in_copy_is_what_the_app_serves() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKED_IN);
    let served = document();
    if std::env::var_os("FILE_APPROVER_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, served).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == served,
        "{CHECKED_IN} differs from the served document: run \
         FILE_APPROVER_WRITE_OPENAPI=1 cargo test --test openapi"
    );
}

#[test]
fn it_is_openapi_3_1_and_describes_every_http_route() {
    let doc: Value = serde_json::from_str(document()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/files", "post"),
        ("/api/files", "get"),
        ("/api/files/uploads", "post"),
        ("/api/files/{id}", "get"),
        ("/api/files/{id}/complete", "post"),
        ("/api/files/{id}/approvals/{stage}", "post"),
        ("/api/files/{id}/withdraw", "post"),
        ("/api/files/{id}/history", "get"),
        ("/api/files/{id}/download", "get"),
        ("/api/openapi.json", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path}");
    }
    for scheme in ["functionKey", "functionKeyQuery", "bearer", "easyAuth"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    let upload = &paths["/api/files"]["post"]["responses"]["201"];
    assert!(upload["headers"]["Location"].is_object());
    for link in [
        "GetFile",
        "ApproveUpload",
        "ApproveDownload",
        "Download",
        "GetHistory",
    ] {
        // camelCase, as the OpenAPI schema wants (utoipa 5 writes snake case; document() fixes it)
        assert!(upload["links"][link]["operationId"].is_string(), "{link}");
    }
    assert!(
        paths["/api/files/{id}"]["get"]["responses"]["503"]["headers"]["Retry-After"].is_object()
    );
}

/// docs/API.md's error codes are the ones the document's responses name, and each appears in
/// the app's error type.
#[test]
fn every_error_code_in_the_prose_contract_is_in_the_document() {
    let doc = document();
    let prose = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/API.md"),
    )
    .unwrap();
    for code in [
        "InvalidId",
        "InvalidName",
        "EmptyFile",
        "DeclaredTooLarge",
        "InvalidStage",
        "InvalidBody",
        "InvalidQuery",
        "InvalidMultipart",
        "InvalidHeader",
        "Unauthorized",
        "NotAReviewer",
        "NotAnUploader",
        "SelfApproval",
        "SameReviewer",
        "NotTheUploader",
        "NotFound",
        "NoPreview",
        "WrongStage",
        "NotApproved",
        "TooLarge",
        "UploadIncomplete",
        "StorageUnavailable",
        "InsufficientStorage",
    ] {
        assert!(
            doc.contains(code),
            "{code} missing from the OpenAPI document"
        );
        assert!(prose.contains(code), "{code} missing from docs/API.md");
    }
}

/// The document's stage names are the app's (the schema mirrors `domain::Stage`).
#[test]
fn the_documented_stages_are_the_apps() {
    let doc: Value = serde_json::from_str(document()).unwrap();
    let documented: Vec<&str> = doc["components"]["schemas"]["StageName"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let actual: Vec<&str> = file_approver::domain::Stage::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(documented, actual);
}

/// The documented largest declared size is the setting's default.
#[test]
fn the_documented_size_limit_is_the_default_setting() {
    let doc: Value = serde_json::from_str(document()).unwrap();
    let documented = doc["components"]["schemas"]["DeclarationBody"]["properties"]["size"]
        ["maximum"]
        .as_u64()
        .unwrap();
    let defaults =
        file_approver::config::Settings::from_vars(&std::collections::HashMap::new()).unwrap();
    assert_eq!(documented, defaults.max_direct_upload_bytes);
}
