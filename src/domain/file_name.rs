use std::fmt;

/// A display name given by the uploader. Only ever shown and used as a download name, never as a
/// path: the last path component of what the client sent, 1–255 bytes of UTF-8, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileNameError {
    #[error("the file name is empty")]
    Empty,
    #[error("the file name is longer than 255 bytes")]
    TooLong,
    #[error("the file name contains a control character")]
    ControlCharacter,
    #[error("the file name has no last path component")]
    NoFileName,
}

impl FileName {
    pub const MAX_BYTES: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, FileNameError> {
        if raw.is_empty() {
            return Err(FileNameError::Empty);
        }
        // Control characters are refused before the path is cut, so that a name like
        // "a\n/b" cannot slip a newline past the check by hiding it in a dropped component.
        if raw.chars().any(char::is_control) {
            return Err(FileNameError::ControlCharacter);
        }
        // Browsers and curl send either separator; Windows clients send full paths.
        let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
        if last.is_empty() || last == "." || last == ".." {
            return Err(FileNameError::NoFileName);
        }
        if last.len() > Self::MAX_BYTES {
            return Err(FileNameError::TooLong);
        }
        Ok(FileName(last.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_path_component_is_kept() {
        assert_eq!(
            FileName::parse("report.pdf").unwrap().as_str(),
            "report.pdf"
        );
        assert_eq!(
            FileName::parse("../../etc/passwd").unwrap().as_str(),
            "passwd"
        );
        assert_eq!(
            FileName::parse(r"C:\Users\me\q3.xlsx").unwrap().as_str(),
            "q3.xlsx"
        );
        assert_eq!(
            FileName::parse("résumé 2026.docx").unwrap().as_str(),
            "résumé 2026.docx"
        );
    }

    #[test]
    fn empty_dotted_and_directory_names_are_refused() {
        assert_eq!(FileName::parse(""), Err(FileNameError::Empty));
        assert_eq!(FileName::parse("dir/"), Err(FileNameError::NoFileName));
        assert_eq!(FileName::parse(".."), Err(FileNameError::NoFileName));
        assert_eq!(FileName::parse("a/."), Err(FileNameError::NoFileName));
    }

    #[test]
    fn control_characters_are_refused_anywhere() {
        assert_eq!(
            FileName::parse("a\nb.txt"),
            Err(FileNameError::ControlCharacter)
        );
        assert_eq!(
            FileName::parse("x\u{7f}"),
            Err(FileNameError::ControlCharacter)
        );
        assert_eq!(
            FileName::parse("a\u{0}/b"),
            Err(FileNameError::ControlCharacter)
        );
    }

    #[test]
    fn names_are_limited_to_255_bytes_not_characters() {
        assert!(FileName::parse(&"a".repeat(255)).is_ok());
        assert_eq!(
            FileName::parse(&"a".repeat(256)),
            Err(FileNameError::TooLong)
        );
        // 128 two-byte characters are 256 bytes.
        assert_eq!(
            FileName::parse(&"é".repeat(128)),
            Err(FileNameError::TooLong)
        );
    }
}
