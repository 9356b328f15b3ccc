//! Types that exist only to describe the API in the OpenAPI document: request bodies the
//! handlers read by other means, names of path and query values, the error body. The handlers'
//! annotations and the document (`openapi.rs`) both name them, so they sit in a room of their
//! own below both.

use serde::Serialize;
use utoipa::ToSchema;

/// Where a file's workflow stands: the schema of `domain::Stage`, its names read from
/// `Stage::ALL` so the list is written once.
#[derive(Serialize)] // for the schema-only structs that name it; never serialized
pub struct StageName;

impl utoipa::PartialSchema for StageName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "Where a file's workflow stands (docs/API.md, \"Workflow stages\").",
            ))
            .enum_values(Some(crate::domain::Stage::ALL.map(|s| s.as_str())))
            .into()
    }
}

impl ToSchema for StageName {}

/// A scan's outcome: the schema of `domain::ScanVerdict`, its names read from
/// `ScanVerdict::ALL`.
#[derive(Serialize)] // for the schema-only structs that name it; never serialized
pub struct ScanVerdictName;

impl utoipa::PartialSchema for ScanVerdictName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "What the malware scan concluded (docs/API.md, \"Scanning\"); `notScanned` \
                 when no scanner is configured, never to be read as clean.",
            ))
            .enum_values(Some(crate::domain::ScanVerdict::ALL.map(|v| v.as_str())))
            .into()
    }
}

impl ToSchema for ScanVerdictName {}

/// Something a person can do to a file: the schema of `files::actions::Action`, its names read
/// from `Action::ALL`.
#[derive(Serialize)] // for the schema-only structs that name it; never serialized
pub struct ActionName;

impl utoipa::PartialSchema for ActionName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "An action on a file (docs/API.md, \"What the caller may do\").",
            ))
            .enum_values(Some(crate::files::actions::Action::ALL.map(|a| a.as_str())))
            .into()
    }
}

impl ToSchema for ActionName {}

/// Which decision a reviewer gives.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // a schema only: the real type is `domain::ApprovalStage`
pub enum ApprovalStageName {
    Upload,
    Download,
}

/// Whose inbox: the caller's.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // a schema only
pub enum Awaiting {
    Me,
}

/// The Durable Functions word for the same instance.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema only: the real type is `engine::RuntimeStatus`
pub enum RuntimeStatusName {
    Pending,
    Running,
    Completed,
    Failed,
    Terminated,
}

/// What the analysis gathered about the contents (docs/API.md, "Analysis").
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // a schema only: the real type is `workflow::analysis::Analysis`
pub struct AnalysisDoc {
    size: u64,
    /// Lowercase hex.
    sha256: String,
    detected_content_type: String,
    content_type_matches: bool,
    is_text: bool,
    line_count: Option<u64>,
    word_count: Option<u64>,
    width: Option<u64>,
    height: Option<u64>,
    analyzed_time: String,
    analyzer_version: String,
    /// For a zip (and formats built on it: DOCX, XLSX, JAR, ...): its central directory.
    archive: Option<ArchiveDoc>,
}

/// What a zip's central directory lists (docs/API.md, "Analysis").
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // a schema only: the real type is `workflow::archive::ArchiveFacts`
pub struct ArchiveDoc {
    /// `zip`.
    format: String,
    entry_count: u64,
    /// The first 100 entries.
    entries: Vec<ArchiveEntryDoc>,
    /// More entries exist than are listed.
    truncated: Option<bool>,
    encrypted_entries: u64,
    nested_archives: u64,
    total_size: u64,
    /// How many times the entries' compressed bytes expand.
    compression_ratio: u64,
    /// More than 100×: how zip bombs look.
    high_compression_ratio: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // a schema only
pub struct ArchiveEntryDoc {
    name: String,
    size: u64,
    compressed_size: u64,
    encrypted: Option<bool>,
}

/// Every error: `{"error": {"code", "message", "currentStage"?}}`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema only: `error::ApiError` renders it
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// A stable code (docs/API.md lists them with their statuses).
    code: String,
    message: String,
    /// With `WrongStage` and `NotApproved`: where the file stands.
    current_stage: Option<StageName>,
}

/// A reviewer's decision. An empty body approves.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: `domain::Decision::parse` reads it
pub struct DecisionBody {
    /// `false` rejects.
    #[serde(default)]
    #[schema(default = true)]
    approved: bool,
    /// Up to 2,000 characters; line breaks and tabs are the only control characters.
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"
    )]
    comment: Option<String>,
}

/// An upload straight to storage, declared.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // a schema only: `grant_upload_url::Declaration` reads it
pub struct DeclarationBody {
    /// The display name: see `uploadFile`'s `name`.
    name: String,
    /// Bytes the upload will hold, exactly. The maximum is the default of
    /// `FILE_APPROVER_MAX_DIRECT_UPLOAD_BYTES` (1 TiB); a deployment may set a lower one (413).
    #[schema(minimum = 1, maximum = 1_099_511_627_776_u64)]
    size: u64,
    /// A media type as HTTP writes it (`type/subtype`, then `; name=value` parameters); blank
    /// or absent means `application/octet-stream`.
    #[schema(max_length = 255)]
    content_type: Option<String>,
}

/// A file's raw bytes: at least one (an empty file is refused with `EmptyFile`).
#[derive(Serialize, ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // a schema only
pub struct BinaryBody(Vec<u8>);

/// A form with one file part (its filename is the display name unless `?name=` says).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a schema only
pub struct MultipartUpload {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// A withdrawal, with a comment at most.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub struct WithdrawalBody {
    /// Up to 2,000 characters; line breaks and tabs are the only control characters.
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"
    )]
    comment: Option<String>,
}

/// A revocation: why the approval is taken back.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub struct RevocationBody {
    /// Required, 1 to 2,000 characters, not only spaces; line breaks and tabs are the only
    /// control characters.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*\\S[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$"
    )]
    comment: String,
}

/// A reviewer's private note.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: `notes::NoteBody` reads it
#[schema(as = NoteBody)]
pub struct NoteBodyDoc {
    /// 1 to 2,000 characters, more than white space; line breaks and tabs are the only
    /// control characters.
    #[schema(min_length = 1, max_length = 2000)]
    note: String,
}

/// A new version declared, for an upload URL.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // a schema only: `versions::VersionDeclaration` reads it
pub struct VersionDeclarationBody {
    /// The new version's size in bytes. The maximum is the default of
    /// `FILE_APPROVER_MAX_DIRECT_UPLOAD_BYTES` (1 TiB); a deployment may set a lower one.
    #[schema(minimum = 1, maximum = 1_099_511_627_776_u64)]
    size: u64,
}
