use std::fmt;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// A display name given by the uploader. Only ever shown and used as a download name, never as a
/// path: the last path component of what the client sent, 1–255 bytes of UTF-8, no control
/// characters, and nothing that makes it read as something it is not (OWASP's file upload
/// guidance): no format characters (Unicode category Cf: the bidi overrides and isolates that
/// turn `invoice\u{202E}gpj.exe` into "invoiceexe.jpg", zero-width characters, the byte order
/// mark), no line or paragraph separators, and not only white space. Emoji joined with U+200D
/// are refused with the rest of Cf: a name is evidence, not decoration.
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
    #[error("the file name contains an invisible or direction-changing character (U+{0:04X})")]
    Deceptive(u32),
    #[error("the file name is only white space")]
    Blank,
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
        if let Some(c) = raw.chars().find(|&c| {
            matches!(
                c.general_category(),
                GeneralCategory::Format
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
            )
        }) {
            return Err(FileNameError::Deceptive(u32::from(c)));
        }
        // Browsers and curl send either separator; Windows clients send full paths.
        let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
        if last.is_empty() || last == "." || last == ".." {
            return Err(FileNameError::NoFileName);
        }
        if last.len() > Self::MAX_BYTES {
            return Err(FileNameError::TooLong);
        }
        if last.chars().all(char::is_whitespace) {
            return Err(FileNameError::Blank);
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
    fn bidi_controls_that_disguise_an_extension_are_refused() {
        assert_eq!(
            FileName::parse("invoice\u{202E}gpj.exe"),
            Err(FileNameError::Deceptive(0x202E))
        );
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{200E}', '\u{200F}',
        ] {
            assert!(FileName::parse(&format!("a{c}b.txt")).is_err(), "{c:?}");
        }
        for c in ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{061C}'] {
            assert!(FileName::parse(&format!("a{c}b.txt")).is_err(), "{c:?}");
        }
    }

    #[test]
    fn zero_width_separator_and_byte_order_characters_are_refused() {
        for c in [
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{2028}', '\u{2029}',
            '\u{00AD}',
        ] {
            assert!(
                matches!(
                    FileName::parse(&format!("re{c}port.pdf")),
                    Err(FileNameError::Deceptive(_))
                ),
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_name_of_only_white_space_is_refused() {
        assert_eq!(FileName::parse("   "), Err(FileNameError::Blank));
        assert_eq!(FileName::parse("dir/ \u{3000} "), Err(FileNameError::Blank));
        assert_eq!(FileName::parse(" a.txt ").unwrap().as_str(), " a.txt ");
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
