//! What a malware scanner said about a file's bytes, as the workflow records it and clients
//! see it (`FileStatus.scan`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A scan's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScanVerdict {
    /// A scanner read every byte and found nothing.
    Clean,
    /// A scanner found a threat: the file is blocked.
    Malicious,
    /// A scanner was asked but could not give a verdict (too large, encrypted, no answer
    /// before the deadline, a scanner that kept failing); `reason` says which.
    Unscannable,
    /// No scanner is configured. Never to be read as clean.
    NotScanned,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a scan verdict; expected clean, malicious, unscannable or notScanned")]
pub struct ScanVerdictError(String);

impl ScanVerdict {
    pub const ALL: [ScanVerdict; 4] = [
        ScanVerdict::Clean,
        ScanVerdict::Malicious,
        ScanVerdict::Unscannable,
        ScanVerdict::NotScanned,
    ];

    pub fn parse(raw: &str) -> Result<Self, ScanVerdictError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == raw)
            .ok_or_else(|| ScanVerdictError(raw.chars().take(64).collect()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScanVerdict::Clean => "clean",
            ScanVerdict::Malicious => "malicious",
            ScanVerdict::Unscannable => "unscannable",
            ScanVerdict::NotScanned => "notScanned",
        }
    }
}

impl fmt::Display for ScanVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which scanner looked, and with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScannerInfo {
    /// `clamav` (or `defender`).
    pub name: String,
    /// The engine's version, when the scanner tells (`1.4.3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The signature database's version, when the scanner tells (`27484`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<String>,
}

/// A scan, as recorded in the workflow's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport {
    pub verdict: ScanVerdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanner: Option<ScannerInfo>,
    /// The threats found (signature names); empty unless `malicious`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threats: Vec<String>,
    /// When the verdict was reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanned_time: Option<DateTime<Utc>>,
    /// Why there is no verdict (`unscannable`), in words a reviewer can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ScanReport {
    /// The report of a file no scanner looked at.
    pub fn not_scanned() -> Self {
        ScanReport {
            verdict: ScanVerdict::NotScanned,
            scanner: None,
            threats: Vec::new(),
            scanned_time: None,
            reason: None,
        }
    }

    /// A scanner was asked but gave no verdict, for `reason`.
    pub fn unscannable(
        scanner: Option<ScannerInfo>,
        reason: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        ScanReport {
            verdict: ScanVerdict::Unscannable,
            scanner,
            threats: Vec::new(),
            scanned_time: Some(at),
            reason: Some(reason.into()),
        }
    }
}

/// What happens to a file no scanner could give a verdict on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum UnscannablePolicy {
    /// It is blocked like an infected file (the default: the gate never opens unscanned).
    #[default]
    Block,
    /// It goes on to review, with the reason shown to the reviewers as a warning.
    Review,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an unscannable-file policy; expected block or review")]
pub struct UnscannablePolicyError(String);

impl UnscannablePolicy {
    pub fn parse(raw: &str) -> Result<Self, UnscannablePolicyError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "block" => Ok(UnscannablePolicy::Block),
            "review" => Ok(UnscannablePolicy::Review),
            _ => Err(UnscannablePolicyError(raw.chars().take(64).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_parse_back_from_their_names() {
        for verdict in ScanVerdict::ALL {
            assert_eq!(ScanVerdict::parse(verdict.as_str()), Ok(verdict));
            let json = serde_json::to_value(verdict).unwrap();
            assert_eq!(json, verdict.as_str());
        }
        assert!(ScanVerdict::parse("ok").is_err());
    }

    #[test]
    fn a_report_without_a_scanner_shows_only_its_verdict() {
        let shown = serde_json::to_value(ScanReport::not_scanned()).unwrap();
        assert_eq!(shown, serde_json::json!({"verdict": "notScanned"}));
    }

    #[test]
    fn the_unscannable_policy_is_block_or_review() {
        assert_eq!(
            UnscannablePolicy::parse("Review"),
            Ok(UnscannablePolicy::Review)
        );
        assert_eq!(UnscannablePolicy::default(), UnscannablePolicy::Block);
        assert!(UnscannablePolicy::parse("allow").is_err());
    }
}
