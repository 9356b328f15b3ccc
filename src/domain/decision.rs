use serde::Deserialize;

/// A reviewer's decision as posted to `/approvals/{stage}`: an empty body approves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub approved: bool,
    pub comment: Option<String>,
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
    comment: Option<String>,
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
                approved: true,
                comment: None,
            });
        };
        let comment = Self::comment(parsed.comment)?;
        Ok(Decision {
            approved: parsed.approved.unwrap_or(true),
            comment,
        })
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
                approved: true,
                comment: None
            }
        );
        assert!(Decision::parse(b" null\n").unwrap().approved);
        // White space alone is neither nothing nor JSON (found by Schemathesis).
        assert!(Decision::parse(b"\r").is_err());
        assert!(Decision::parse(b"  \n").is_err());
        // A JSON null is no fields at all, like an empty body (not `"approved": null`).
        assert!(Decision::parse(b"null").unwrap().approved);
        assert!(Decision::parse(br#"{"approved": null}"#).is_err());
    }

    #[test]
    fn approved_false_rejects_with_its_comment() {
        let d = Decision::parse(br#"{"approved": false, "comment": "contains PII"}"#).unwrap();
        assert!(!d.approved);
        assert_eq!(d.comment.as_deref(), Some("contains PII"));
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
