//! Validated domain types. Every value that comes from outside (a URL segment, a header, a JSON
//! body, a setting) becomes one of these through its `parse` constructor, so the rest of the code
//! never sees an unchecked id, name, content type, stage or decision.

mod content_type;
mod decision;
mod file_id;
mod file_name;
mod json;
mod principal;
mod reviewer;
mod stage;

pub use content_type::{ContentType, ContentTypeError, CONTENT_TYPE_PATTERN};
pub use decision::{Decision, DecisionError};
pub use file_id::{FileId, FileIdError};
pub use file_name::{file_name_pattern, FileName, FileNameError};
pub use json::from_json_object;
pub use principal::{Principal, PrincipalError};
pub use reviewer::{Reviewers, ReviewersError};
pub use stage::{ApprovalStage, Stage, StageError};
