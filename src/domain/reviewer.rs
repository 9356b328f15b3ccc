use std::fmt;

use sha2::{Digest, Sha256};

use super::Principal;

/// People known by a token, from `FILE_APPROVER_REVIEWERS` (who may decide) or
/// `FILE_APPROVER_UPLOADERS` (who may upload), both `name:token,…`.
///
/// Tokens are kept only as SHA-256 digests: they are compared in constant time and can never
/// be printed by accident (`Debug` shows names only).
#[derive(Clone, Default)]
pub struct Reviewers {
    entries: Vec<(Principal, [u8; 32])>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewersError {
    #[error("entry {index} is not of the form name:token")]
    NotAPair { index: usize },
    #[error("entry {index} has an empty name or token")]
    Empty { index: usize },
    #[error("reviewer name {name:?} must be 1–64 letters, digits, '.', '_', '-' or '@'")]
    BadName { name: String },
    #[error("the token of reviewer {name:?} is shorter than 16 characters")]
    WeakToken { name: String },
    #[error("reviewer {name:?} appears twice")]
    Duplicate { name: String },
    #[error("two reviewers share one token")]
    SharedToken,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Reviewers {
    pub fn parse(raw: &str) -> Result<Self, ReviewersError> {
        let mut entries: Vec<(Principal, [u8; 32])> = Vec::new();
        for (index, item) in raw.split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                continue;
            }
            let (name, token) = item
                .split_once(':')
                .ok_or(ReviewersError::NotAPair { index })?;
            let (name, token) = (name.trim(), token.trim());
            if name.is_empty() || token.is_empty() {
                return Err(ReviewersError::Empty { index });
            }
            let name_ok = name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
            if !name_ok {
                return Err(ReviewersError::BadName {
                    name: name.chars().take(64).collect(),
                });
            }
            if token.len() < 16 {
                return Err(ReviewersError::WeakToken {
                    name: name.to_owned(),
                });
            }
            if entries.iter().any(|(r, _)| r.as_str() == name) {
                return Err(ReviewersError::Duplicate {
                    name: name.to_owned(),
                });
            }
            let d = digest(token);
            if entries.iter().any(|(_, other)| *other == d) {
                return Err(ReviewersError::SharedToken);
            }
            entries.push((
                Principal::parse(name, None).map_err(|_| ReviewersError::BadName {
                    name: name.to_owned(),
                })?,
                d,
            ));
        }
        Ok(Reviewers { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The reviewer holding `token`, comparing digests in constant time.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let d = digest(token);
        let mut found = None;
        for (reviewer, stored) in &self.entries {
            // Fold every byte so the comparison time does not depend on where digests differ.
            let diff = stored
                .iter()
                .zip(d.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(reviewer.clone());
            }
        }
        found
    }
}

impl fmt::Debug for Reviewers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(r, _)| r.as_str()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviewers_authenticate_by_their_token() {
        let r = Reviewers::parse("alice:alice-token-0123456789, bob:bob-token-0123456789").unwrap();
        assert_eq!(
            r.authenticate("alice-token-0123456789").unwrap().as_str(),
            "alice"
        );
        assert_eq!(
            r.authenticate("bob-token-0123456789").unwrap().as_str(),
            "bob"
        );
        assert!(r.authenticate("mallory-token-0123").is_none());
        assert!(r.authenticate("").is_none());
    }

    #[test]
    fn debug_output_never_shows_tokens() {
        let r = Reviewers::parse("alice:alice-token-0123456789").unwrap();
        let shown = format!("{r:?}");
        assert!(shown.contains("alice") && !shown.contains("token-0123"));
    }

    #[test]
    fn malformed_lists_are_refused_with_a_reason() {
        assert_eq!(
            Reviewers::parse("alice").unwrap_err(),
            ReviewersError::NotAPair { index: 0 }
        );
        assert_eq!(
            Reviewers::parse("alice:").unwrap_err(),
            ReviewersError::Empty { index: 0 }
        );
        assert!(matches!(
            Reviewers::parse("alice:short"),
            Err(ReviewersError::WeakToken { .. })
        ));
        assert!(matches!(
            Reviewers::parse("a b:0123456789abcdef"),
            Err(ReviewersError::BadName { .. })
        ));
        assert!(matches!(
            Reviewers::parse("a:0123456789abcdef,a:0123456789abcdeg"),
            Err(ReviewersError::Duplicate { .. })
        ));
        assert_eq!(
            Reviewers::parse("a:0123456789abcdef,b:0123456789abcdef").unwrap_err(),
            ReviewersError::SharedToken
        );
    }
}
