use std::fmt;

use serde::{Deserialize, Serialize};

/// A person (or client) the app knows by name: a reviewer who decides, an uploader. From a
/// token of `FILE_APPROVER_REVIEWERS`/`FILE_APPROVER_UPLOADERS` (a name, no id), or from the
/// platform's sign-in (Easy Auth: a name and the identity provider's stable id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrincipalError {
    #[error("a principal's name must be 1–256 characters without control characters")]
    BadName,
    #[error("a principal's id must be 1–256 characters without control characters")]
    BadId,
}

fn valid(text: &str) -> bool {
    !text.is_empty() && text.chars().count() <= 256 && !text.chars().any(char::is_control)
}

impl Principal {
    /// `name` is what people read (an email address, a display name); `id`, when the identity
    /// provider gives one, is what tells two people of the same name apart.
    pub fn parse(name: &str, id: Option<&str>) -> Result<Self, PrincipalError> {
        let name = name.trim();
        if !valid(name) {
            return Err(PrincipalError::BadName);
        }
        let id = match id.map(str::trim) {
            Some(id) if !valid(id) => return Err(PrincipalError::BadId),
            other => other.map(str::to_owned),
        };
        Ok(Principal {
            name: name.to_owned(),
            id,
        })
    }

    /// Who decides when approvals are not authenticated.
    pub fn anonymous() -> Self {
        Principal {
            name: "anonymous".to_owned(),
            id: None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn is_anonymous(&self) -> bool {
        self.id.is_none() && self.name == "anonymous"
    }

    /// Whether two principals are the same person, for the four-eyes rules: by id when both
    /// have one, else by name (ignoring case: `Alice@contoso.com` is `alice@contoso.com`).
    /// Anonymous callers are nobody in particular, so never the same as anyone.
    pub fn same_person(&self, other: &Principal) -> bool {
        if self.is_anonymous() || other.is_anonymous() {
            return false;
        }
        match (&self.id, &other.id) {
            (Some(a), Some(b)) => a == b,
            _ => self.name.eq_ignore_ascii_case(&other.name),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_person_is_known_by_id_or_else_by_name() {
        let a = Principal::parse("alice@contoso.com", Some("oid-1")).unwrap();
        let renamed = Principal::parse("Alice Smith", Some("oid-1")).unwrap();
        let namesake = Principal::parse("alice@contoso.com", Some("oid-2")).unwrap();
        let token_alice = Principal::parse("Alice@Contoso.com", None).unwrap();
        assert!(a.same_person(&renamed));
        assert!(!a.same_person(&namesake));
        assert!(a.same_person(&token_alice));
        assert!(!Principal::anonymous().same_person(&Principal::anonymous()));
    }

    #[test]
    fn names_and_ids_are_checked() {
        assert_eq!(Principal::parse("", None), Err(PrincipalError::BadName));
        assert_eq!(Principal::parse("a\nb", None), Err(PrincipalError::BadName));
        assert_eq!(
            Principal::parse("x", Some(&"i".repeat(257))),
            Err(PrincipalError::BadId)
        );
        assert_eq!(Principal::parse(" bob ", None).unwrap().as_str(), "bob");
    }
}
