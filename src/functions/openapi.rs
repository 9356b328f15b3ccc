//! `openapi/`: `GET /api/openapi.json` — the API described as OpenAPI 3.1, generated from the
//! handlers' own annotations and response types (utoipa), so it cannot drift from them.
//! `docs/openapi.json` is a copy that a test keeps equal to what this serves.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as OpenApiDoc, RefOr};
use utoipa::{Modify, OpenApi};

use super::schema::*;
use super::{
    approve, complete, download, fetch, grant_upload_url, history, me, notes, preview, related,
    revoke, status, upload, versions, withdraw, DecisionView, DownloadsView, FailureView,
    FileStatus, Links, PrincipalView, RulesView, ScanView, ScannerView, VersionView, WithheldView,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "File Approver",
        description = "A durable, human-in-the-loop approval workflow over uploaded files: upload, \
                       approve the upload, read the analysis, approve the download, fetch a \
                       one-hour read-only link. docs/API.md is the prose contract.",
        license(name = "MIT")
    ),
    paths(
        upload::upload,
        status::list,
        status::get_one,
        grant_upload_url::create,
        complete::complete,
        approve::approve,
        withdraw::withdraw,
        history::history,
        preview::preview,
        download::download,
        fetch::fetch,
        revoke::revoke,
        versions::new_version,
        versions::new_version_upload,
        versions::complete_version,
        notes::add_note,
        related::related,
        me::me,
        openapi_json,
    ),
    components(schemas(
        FileStatus,
        PrincipalView,
        RulesView,
        DecisionView,
        DownloadsView,
        WithheldView,
        ActionName,
        VersionView,
        FailureView,
        ScanView,
        ScannerView,
        ScanVerdictName,
        Links,
        StageName,
        RuntimeStatusName,
        AnalysisDoc,
        ArchiveDoc,
        ArchiveEntryDoc,
        ErrorBody,
        ErrorDetail,
        DecisionBody,
        DeclarationBody,
        WithdrawalBody,
        RevocationBody,
        NoteBodyDoc,
        VersionDeclarationBody,
        BinaryBody,
        MultipartUpload,
        ApprovalStageName,
        Awaiting,
    )),
    modifiers(&Security, &OperationLinks),
    // The host checks the function key before a request reaches the app; the app itself (and
    // local mode) takes requests without one.
    security(("functionKey" = []), ("functionKeyQuery" = []), ()),
    tags(
        (name = "files", description = "Uploading, reading and listing files"),
        (name = "review", description = "Decisions, withdrawal and the audit trail"),
        (name = "download", description = "The approved file's link"),
        (name = "meta", description = "This document")
    )
)]
pub struct ApiDoc;

/// The security schemes: the function key every route needs under the host (header or
/// `code`), a reviewer's or uploader's bearer token, and App Service Authentication.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "functionKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-functions-key",
                "The function key (Azure checks it; local mode does not).",
            ))),
        );
        components.add_security_scheme(
            "functionKeyQuery",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "code",
                "The function key as a query parameter.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A reviewer's or uploader's token (FILE_APPROVER_REVIEWERS, \
                         FILE_APPROVER_UPLOADERS); under Easy Auth, an Entra ID token the \
                         platform validates.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "easyAuth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-MS-CLIENT-PRINCIPAL",
                "Set by App Service Authentication for a signed-in person (trusted only with \
                 FILE_APPROVER_EASY_AUTH=true); clients do not send it themselves.",
            ))),
        );
    }
}

/// OpenAPI links, so clients and Schemathesis can follow a file from its upload to its status,
/// decisions, history and download.
struct OperationLinks;

impl Modify for OperationLinks {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let by_id = |operation: &str, from: &str| {
            LinkBuilder::new()
                .operation_id(operation)
                .parameter("id", from)
                .build()
        };
        let link_targets = |from: &'static str| {
            [
                ("GetFile", by_id("getFile", from)),
                ("GetHistory", by_id("getHistory", from)),
                (
                    "ApproveUpload",
                    LinkBuilder::new()
                        .operation_id("decide")
                        .parameter("id", from)
                        .parameter("stage", "upload")
                        .build(),
                ),
                (
                    "ApproveDownload",
                    LinkBuilder::new()
                        .operation_id("decide")
                        .parameter("id", from)
                        .parameter("stage", "download")
                        .build(),
                ),
                ("Withdraw", by_id("withdraw", from)),
                ("Revoke", by_id("revoke", from)),
                ("NewVersion", by_id("newVersion", from)),
                ("AddNote", by_id("addNote", from)),
                ("GetRelated", by_id("getRelated", from)),
                ("Download", by_id("download", from)),
            ]
        };
        for (path, status) in [
            ("/api/files", "201"),
            ("/api/files/uploads", "201"),
            ("/api/files/{id}", "200"),
            ("/api/files/{id}/approvals/{stage}", "202"),
        ] {
            let Some(item) = openapi.paths.paths.get_mut(path) else {
                continue;
            };
            let operation = match path {
                "/api/files/{id}" => item.get.as_mut(),
                _ => item.post.as_mut(),
            };
            let Some(operation) = operation else {
                continue;
            };
            if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) {
                for (name, link) in link_targets("$response.body#/id") {
                    response.links.insert(name.to_owned(), RefOr::T(link));
                }
            }
        }
    }
}

/// A comment: no control characters but line breaks and tabs.
const COMMENT_PATTERN: &str = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$";
/// A reason: a comment with at least one character that is not white space (what Rust's
/// `trim` removes) in it.
const REASON_PATTERN: &str = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$";

fn decision_body_schema() -> serde_json::Value {
    let comment = serde_json::json!({"type": ["string", "null"], "maxLength": 2000, "pattern": COMMENT_PATTERN,
        "description": "Up to 2,000 characters; line breaks and tabs are the only control characters."});
    let reason = serde_json::json!({"type": "string", "minLength": 1, "maxLength": 2000, "pattern": REASON_PATTERN,
        "description": "Why: required (unless FILE_APPROVER_REQUIRE_REASON=false), more than white space."});
    let version = serde_json::json!({"type": "integer", "minimum": 1, "maximum": u32::MAX,
        "description": "The version decided on (FileStatus `version`). When another version is under review by then: 409 WrongStage. Absent: the version under review when the decision is recorded."});
    serde_json::json!({
        "description": "A reviewer's decision. An empty body approves. `{\"approved\": false}` and `{\"decision\": \"reject\"}` reject, `{\"decision\": \"requestChanges\"}` returns the file to its uploader; both need a comment that says why.",
        "oneOf": [
            {"type": "object", "additionalProperties": false,
             "properties": {"approved": {"const": true}, "comment": comment, "version": version}},
            {"type": "object", "additionalProperties": false, "required": ["approved", "comment"],
             "properties": {"approved": {"const": false}, "comment": reason, "version": version}},
            {"type": "object", "additionalProperties": false, "required": ["decision"],
             "properties": {"decision": {"const": "approve"}, "comment": comment, "version": version}},
            {"type": "object", "additionalProperties": false, "required": ["decision", "comment"],
             "properties": {"decision": {"enum": ["reject", "requestChanges"]}, "comment": reason, "version": version}}
        ]
    })
}

/// The document, as served and as checked into `docs/openapi.json` (pretty, newline-ended).
/// Built once per process: it depends on nothing but the code, and building it walks every
/// Unicode scalar value for the file-name pattern.
pub fn document() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(build_document)
}

fn build_document() -> String {
    let mut doc = match serde_json::to_value(ApiDoc::openapi()) {
        Ok(doc) => doc,
        Err(e) => return format!("{{\"error\": \"{e}\"}}\n"),
    };
    spec_link_keys(&mut doc);
    // A decision's body, exactly as `domain::Decision::parse` and the reason rule take it: an
    // approval (by `approved` or by `decision`, a comment optional), or a rejection or change
    // request, which needs a comment with more than white space in it. One form or the other,
    // never both words.
    if let Some(body) = doc.pointer_mut("/components/schemas/DecisionBody") {
        *body = decision_body_schema();
    }
    for pointer in [
        "/components/schemas/RevocationBody/properties/comment",
        "/components/schemas/NoteBody/properties/note",
    ] {
        if let Some(text) = doc.pointer_mut(pointer) {
            text["pattern"] = serde_json::Value::from(REASON_PATTERN);
        }
    }
    // The media-type and file-name rules live once, in the domain types that enforce them.
    if let Some(content_type) =
        doc.pointer_mut("/components/schemas/DeclarationBody/properties/contentType")
    {
        content_type["pattern"] = serde_json::Value::from(crate::domain::CONTENT_TYPE_PATTERN);
    }
    // utoipa takes no length on a binary newtype: an empty file is refused (`EmptyFile`).
    for pointer in [
        "/components/schemas/BinaryBody",
        "/components/schemas/MultipartUpload/properties/file",
    ] {
        if let Some(binary) = doc.pointer_mut(pointer) {
            binary["minLength"] = serde_json::Value::from(1);
        }
    }
    // Other form fields are skipped, but their names travel in part headers, where HTTP takes
    // no control character but the tab (the multipart parser refuses the form). Line breaks are
    // the exception: a form's encoding writes them as %0A and %0D (HTML's multipart/form-data
    // rules), so a name may hold them.
    if let Some(form) = doc.pointer_mut("/components/schemas/MultipartUpload") {
        form["propertyNames"] =
            serde_json::json!({"pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$"});
    }
    let name_pattern = serde_json::Value::from(crate::domain::file_name_pattern());
    if let Some(name) = doc.pointer_mut("/components/schemas/DeclarationBody/properties/name") {
        name["pattern"] = name_pattern.clone();
    }
    if let Some(parameters) = doc
        .pointer_mut("/paths/~1api~1files/post/parameters")
        .and_then(|p| p.as_array_mut())
    {
        for parameter in parameters.iter_mut().filter(|p| p["name"] == "name") {
            parameter["schema"]["pattern"] = name_pattern.clone();
        }
    }
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// utoipa 5 writes a Link object's `operationId`/`operationRef` in snake case, which the
/// OpenAPI schema refuses (checked with openapi-spec-validator): renamed here, in every
/// response's links.
fn spec_link_keys(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
        for operation in item.values_mut() {
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(|r| r.as_object_mut())
            else {
                continue;
            };
            for response in responses.values_mut() {
                let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
                    continue;
                };
                for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                    for (from, to) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                    ] {
                        if let Some(value) = link.remove(from) {
                            link.insert(to.to_owned(), value);
                        }
                    }
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "getOpenApi",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"),
        (status = 400, description = "InvalidQuery", body = ErrorBody),
    )
)]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The router refuses query parameters a route does not take (`known_query_only`); the
    /// document says which each takes. Both lists must be the same.
    #[test]
    fn the_documented_query_parameters_are_the_ones_the_router_lets_through() {
        let doc: serde_json::Value = serde_json::from_str(document()).expect("JSON");
        for (template, item) in doc["paths"].as_object().expect("paths") {
            let path = template
                .replace("{id}", "3f1c9a4e-0b6d-4c1e-9a51-2f8e7d6c5b4a")
                .replace("{stage}", "upload");
            for (method, operation) in item.as_object().expect("operations") {
                let method = axum::http::Method::from_bytes(method.to_uppercase().as_bytes())
                    .expect("a method");
                let mut documented: Vec<&str> = operation["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "query")
                            .filter_map(|p| p["name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                documented.sort_unstable();
                let mut allowed = super::super::query_parameters(&method, &path).to_vec();
                allowed.sort_unstable();
                assert_eq!(documented, allowed, "{method} {template}");
            }
        }
    }
}
