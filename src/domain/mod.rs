//! Validated domain types. Every value that comes from outside (a URL segment, a header, a JSON
//! body, a setting) becomes one of these through its `parse` constructor, so the rest of the code
//! never sees an unchecked id, name, content type, stage or decision.

mod content_type;
mod decision;
mod file_id;
mod file_name;
mod json;
mod principal;
mod refusal;
mod reviewer;
mod scan;
mod stage;
mod storage_name;

pub use content_type::{ContentType, ContentTypeError, CONTENT_TYPE_PATTERN};
pub use decision::{Decision, DecisionError, Verdict};
pub use file_id::{FileId, FileIdError};
pub use file_name::{file_name_pattern, FileName, FileNameError};
pub use json::{from_json_object, optional_json_object};
pub use principal::{Principal, PrincipalError};
pub use refusal::{Refusal, RefusalKind};
pub use reviewer::{Reviewers, ReviewersError};
pub use scan::{
    ScanReport, ScanVerdict, ScanVerdictError, ScannerInfo, UnscannablePolicy,
    UnscannablePolicyError,
};
pub use stage::{ApprovalStage, Stage, StageError};
pub use storage_name::valid_storage_name;

/// For the tests that hold a documented pattern to its type's `parse`.
#[cfg(test)]
mod pattern_check {
    /// `count` strings of 0 to `max_len - 1` (at most 9) characters drawn from `alphabet`,
    /// the same every run (xorshift from `seed`).
    pub fn samples(alphabet: &str, count: usize, max_len: u64, mut seed: u64) -> Vec<String> {
        let alphabet: Vec<char> = alphabet.chars().collect();
        (0..count)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (0..seed % max_len)
                    .map(|i| alphabet[((seed >> (7 * i)) % alphabet.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    /// The pattern (ECMA-262 with look-aheads, as the API document states it) takes exactly
    /// the strings `parse` takes.
    pub fn assert_agrees(pattern: &str, samples: Vec<String>, parse: impl Fn(&str) -> bool) {
        let regex = fancy_regex::Regex::new(pattern).expect("the pattern compiles");
        for sample in samples {
            assert_eq!(
                regex.is_match(&sample).expect("matches"),
                parse(&sample),
                "{sample:?}"
            );
        }
    }
}
