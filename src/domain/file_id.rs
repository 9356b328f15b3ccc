use std::fmt;

use uuid::Uuid;

/// A file's id: a server-generated UUID that is also its blob name and its workflow instance id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(Uuid);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a file id (a UUID such as 3f1c9a4e-0b6d-4c1e-9a51-2f8e7d6c5b4a)")]
pub struct FileIdError(String);

impl FileId {
    pub fn new() -> Self {
        FileId(Uuid::new_v4())
    }

    /// Accepts the hyphenated form only, in either case. Other UUID spellings (braces, `urn:`,
    /// no hyphens) are refused so that one file has exactly one URL and one blob name.
    pub fn parse(raw: &str) -> Result<Self, FileIdError> {
        let shown: String = raw.chars().take(64).collect();
        if raw.len() != 36 {
            return Err(FileIdError(shown));
        }
        Uuid::try_parse(raw)
            .map(FileId)
            .map_err(|_| FileIdError(shown))
    }
}

impl Default for FileId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lowercase hyphenated: the canonical form used as blob name and partition key.
        write!(f, "{}", self.0.hyphenated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hyphenated_uuid_is_a_file_id_in_lowercase() {
        let id = FileId::parse("3F1C9A4E-0B6D-4C1E-9A51-2F8E7D6C5B4A").unwrap();
        assert_eq!(id.to_string(), "3f1c9a4e-0b6d-4c1e-9a51-2f8e7d6c5b4a");
    }

    #[test]
    fn other_spellings_and_garbage_are_refused() {
        for raw in [
            "",
            "42",
            "3f1c9a4e0b6d4c1e9a512f8e7d6c5b4a",
            "{3f1c9a4e-0b6d-4c1e-9a51-2f8e7d6c5b4a}",
            "3f1c9a4e-0b6d-4c1e-9a51-2f8e7d6c5b4g",
            "../../etc/passwd",
        ] {
            assert!(FileId::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }
}
