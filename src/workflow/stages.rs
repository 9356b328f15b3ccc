//! How a stage is written as the instance's custom status: what the orchestration sets, what
//! a raised event expects, what a listing filters on. Shared by the orchestration and the
//! events raised to it.

use serde_json::{json, Value};

use crate::domain::Stage;

pub fn stage_status(stage: Stage) -> Value {
    json!(stage.as_str())
}
