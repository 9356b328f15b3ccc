use std::fmt;

/// A declared content type, kept as given (parameters included) but at least shaped like
/// `type/subtype`: it travels on as an HTTP header of the stored blob and of every download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a content type (type/subtype)")]
pub struct ContentTypeError(String);

impl ContentType {
    /// What an upload without a declared type is stored as.
    pub const DEFAULT: &'static str = "application/octet-stream";

    /// `None` or blank means [`ContentType::DEFAULT`].
    pub fn parse(raw: Option<&str>) -> Result<Self, ContentTypeError> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(Self::octet_stream());
        };
        let essence = raw.split(';').next().unwrap_or("").trim();
        let valid = raw.len() <= 255
            && !raw.chars().any(char::is_control)
            && essence
                .split_once('/')
                .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty() && !s.contains('/'));
        if valid {
            Ok(ContentType(raw.to_owned()))
        } else {
            Err(ContentTypeError(raw.chars().take(64).collect()))
        }
    }

    pub fn octet_stream() -> Self {
        ContentType(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_blank_type_is_octet_stream() {
        assert_eq!(
            ContentType::parse(None).unwrap().as_str(),
            ContentType::DEFAULT
        );
        assert_eq!(
            ContentType::parse(Some("  ")).unwrap().as_str(),
            ContentType::DEFAULT
        );
    }

    #[test]
    fn a_declared_type_is_kept_with_its_parameters() {
        assert_eq!(
            ContentType::parse(Some("text/plain; charset=utf-8"))
                .unwrap()
                .as_str(),
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn shapes_that_are_not_type_slash_subtype_are_refused() {
        for bad in ["text", "/plain", "text/", "a/b/c", "text/\u{1}plain"] {
            assert!(ContentType::parse(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(ContentType::parse(Some(&format!("text/{}", "x".repeat(300)))).is_err());
    }
}
