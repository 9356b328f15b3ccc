use serde::Deserialize;

/// A reviewer's decision as posted to `/approvals/{stage}`: an empty body approves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub comment: Option<String>,
    /// The version the reviewer decided on, when their client said (FileStatus `version`);
    /// otherwise the decision is on whichever version is under review when it is recorded.
    pub version: Option<u32>,
}

/// What a reviewer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject,
    /// Return the file to its uploader for a new version.
    RequestChanges,
}

impl Verdict {
    /// The word of `{"decision": …}`.
    pub fn parse(raw: &str) -> Result<Self, DecisionError> {
        match raw {
            "approve" => Ok(Verdict::Approve),
            "reject" => Ok(Verdict::Reject),
            "requestChanges" => Ok(Verdict::RequestChanges),
            other => Err(DecisionError::Malformed(format!(
                "{:?} is not a decision; expected \"approve\", \"reject\" or \"requestChanges\"",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
            Verdict::RequestChanges => "requestChanges",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecisionError {
    #[error(
        "the body is not a JSON object of the form {{\"approved\": true, \"comment\": \"…\"}}: {0}"
    )]
    Malformed(String),
    #[error("the comment is longer than {max} characters", max = Decision::MAX_COMMENT_CHARS)]
    CommentTooLong,
    #[error("the comment contains a control character other than a line break or tab")]
    CommentControlCharacter,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// Absent means approve; `null` is refused like any other non-boolean, so a client that
    /// serialises an unset field as `null` cannot approve by accident.
    #[serde(default, deserialize_with = "present_bool")]
    approved: Option<bool>,
    /// `approve`, `reject` or `requestChanges`: the other way to say it, and the only way to
    /// ask for changes.
    #[serde(default, deserialize_with = "present_string")]
    decision: Option<String>,
    comment: Option<String>,
    #[serde(default, deserialize_with = "present_version")]
    version: Option<u32>,
}

/// A version number from 1, as JSON Schema's `integer` takes it: `2` and `2.0` alike.
fn present_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let number = serde_json::Number::deserialize(d)?;
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= f64::from(u32::MAX))
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "\"version\" must be a whole number from 1, not {number}"
            ))
        })
}

fn present_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

fn present_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    bool::deserialize(d).map(Some)
}

impl Decision {
    /// Comments travel in workflow history; the cap (at most 8,000 bytes of UTF-8) keeps every
    /// history row far below Table Storage's 64 KiB property limit.
    pub const MAX_COMMENT_CHARS: usize = 2000;

    /// A comment as given with a decision or a withdrawal: at most [`Self::MAX_COMMENT_CHARS`]
    /// characters, no control characters but line breaks and tabs; blank is none.
    pub fn comment(raw: Option<String>) -> Result<Option<String>, DecisionError> {
        match raw {
            Some(c) if c.chars().count() > Self::MAX_COMMENT_CHARS => {
                Err(DecisionError::CommentTooLong)
            }
            Some(c)
                if c.chars()
                    .any(|ch| ch.is_control() && !matches!(ch, '\n' | '\r' | '\t')) =>
            {
                Err(DecisionError::CommentControlCharacter)
            }
            Some(c) if c.trim().is_empty() => Ok(None),
            other => Ok(other),
        }
    }

    pub fn parse(body: &[u8]) -> Result<Self, DecisionError> {
        // Unknown fields are refused: a typo such as "aproved": false must not silently approve.
        let Some(parsed) =
            super::optional_json_object::<Body>(body).map_err(DecisionError::Malformed)?
        else {
            // No fields is a plain approval.
            return Ok(Decision {
                verdict: Verdict::Approve,
                comment: None,
                version: None,
            });
        };
        let comment = Self::comment(parsed.comment)?;
        let verdict = match (parsed.approved, parsed.decision.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(DecisionError::Malformed(
                    "give either \"approved\" or \"decision\", not both".into(),
                ))
            }
            (_, Some(word)) => Verdict::parse(word)?,
            (Some(false), None) => Verdict::Reject,
            (Some(true) | None, None) => Verdict::Approve,
        };
        Ok(Decision {
            verdict,
            comment,
            version: parsed.version,
        })
    }

    pub fn approves(&self) -> bool {
        self.verdict == Verdict::Approve
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_approves() {
        assert_eq!(
            Decision::parse(b"").unwrap(),
            Decision {
                verdict: Verdict::Approve,
                comment: None,
                version: None,
            }
        );
        assert!(Decision::parse(b" null\n").unwrap().approves());
        // White space alone is neither nothing nor JSON (found by Schemathesis).
        assert!(Decision::parse(b"\r").is_err());
        assert!(Decision::parse(b"  \n").is_err());
        // A JSON null is no fields at all, like an empty body (not `"approved": null`).
        assert!(Decision::parse(b"null").unwrap().approves());
        assert!(Decision::parse(br#"{"approved": null}"#).is_err());
    }

    #[test]
    fn a_version_is_a_whole_number_from_one() {
        for (body, version) in [
            (r#"{"version": 2}"#, Some(2)),
            (r#"{"version": 2.0}"#, Some(2)),
            (r#"{}"#, None),
        ] {
            assert_eq!(
                Decision::parse(body.as_bytes()).unwrap().version,
                version,
                "{body}"
            );
        }
        for body in [
            r#"{"version": 0}"#,
            r#"{"version": 1.5}"#,
            r#"{"version": -1}"#,
            r#"{"version": 4294967296}"#,
            r#"{"version": "2"}"#,
            r#"{"version": null}"#,
        ] {
            assert!(Decision::parse(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn approved_false_rejects_with_its_comment() {
        let d = Decision::parse(br#"{"approved": false, "comment": "contains PII"}"#).unwrap();
        assert_eq!(d.verdict, Verdict::Reject);
        assert_eq!(d.comment.as_deref(), Some("contains PII"));
    }

    #[test]
    fn a_decision_word_says_the_same_or_asks_for_changes() {
        for (body, verdict) in [
            (&br#"{"decision": "approve"}"#[..], Verdict::Approve),
            (
                br#"{"decision": "reject", "comment": "no"}"#,
                Verdict::Reject,
            ),
            (
                br#"{"decision": "requestChanges", "comment": "page 3"}"#,
                Verdict::RequestChanges,
            ),
            (br#"{"approved": true}"#, Verdict::Approve),
        ] {
            assert_eq!(Decision::parse(body).unwrap().verdict, verdict);
        }
        for body in [
            &br#"{"decision": "maybe"}"#[..],
            br#"{"decision": null}"#,
            br#"{"decision": true}"#,
            br#"{"decision": "approve", "approved": true}"#,
        ] {
            assert!(
                matches!(Decision::parse(body), Err(DecisionError::Malformed(_))),
                "{:?} was accepted",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn wrong_types_unknown_fields_and_non_objects_are_malformed() {
        for body in [
            &br#"{"approved": "yes"}"#[..],
            br#"{"aproved": false}"#,
            br#"[true]"#,
            br#"true"#,
            br#"{"approved": true"#,
            br#"{"comment": 5}"#,
            br#"{"approved": null}"#,
            b"\xff",
            b"[]",
            b"[true, \"ok\"]",
            b"\xef\xbf",
        ] {
            assert!(
                matches!(Decision::parse(body), Err(DecisionError::Malformed(_))),
                "{:?} was accepted",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn long_comments_are_refused() {
        let body = format!(r#"{{"comment": "{}"}}"#, "x".repeat(2001));
        assert_eq!(
            Decision::parse(body.as_bytes()),
            Err(DecisionError::CommentTooLong)
        );
    }
}
