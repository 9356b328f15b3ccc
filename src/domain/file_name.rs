use std::fmt;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// A display name given by the uploader. Only ever shown and used as a download name, never as a
/// path: the last path component of what the client sent, 1–255 characters, no control
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
    #[error("the file name is longer than 255 characters")]
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
    /// Characters, not bytes: the API document can state a length in characters only
    /// (JSON Schema's `maxLength`), and a name is never a path on a file system here.
    pub const MAX_CHARS: usize = 255;

    /// The name for a file uploaded without one: its id, which is always a valid name.
    pub fn unnamed(id: &super::FileId) -> Self {
        FileName(id.to_string())
    }

    pub fn parse(raw: &str) -> Result<Self, FileNameError> {
        if raw.is_empty() {
            return Err(FileNameError::Empty);
        }
        // Control characters are refused before the path is cut, so that a name like
        // "a\n/b" cannot slip a newline past the check by hiding it in a dropped component.
        if raw.chars().any(char::is_control) {
            return Err(FileNameError::ControlCharacter);
        }
        if let Some(c) = raw.chars().find(|&c| is_deceptive(c)) {
            return Err(FileNameError::Deceptive(u32::from(c)));
        }
        // Browsers and curl send either separator; Windows clients send full paths.
        let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
        if last.is_empty() || last == "." || last == ".." {
            return Err(FileNameError::NoFileName);
        }
        if last.chars().count() > Self::MAX_CHARS {
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

fn is_deceptive(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// The rule of [`FileName::parse`] as a regular expression, for the API document (so that a
/// generated client or a fuzzer knows exactly which names are taken): an optional path whose
/// last component is 1–255 characters, not `.` or `..`, not only white space, with no control,
/// format, line or paragraph separator character anywhere. Built from the same character
/// predicates as `parse`, as explicit ranges, so that it means the same to every regex engine
/// whatever its Unicode tables; BMP characters are written `\uXXXX` (ECMA-262 and Python
/// alike), the few above it literally.
pub fn file_name_pattern() -> String {
    let refused = char_class(|c| c.is_control() || is_deceptive(c));
    let spaces = char_class(|c| c.is_whitespace() && !c.is_control() && !is_deceptive(c));
    format!(
        r"^(?:[^{refused}]*[/\\])?(?!\.\.?$)(?![{spaces}]*$)[^{refused}/\\]{{1,{max}}}$",
        max = FileName::MAX_CHARS
    )
}

/// The characters for which `pick` holds, as the inside of a regex character class.
fn char_class(pick: impl Fn(char) -> bool) -> String {
    fn one(c: char) -> String {
        match u32::from(c) {
            n if n <= 0xFFFF => format!("\\u{n:04x}"),
            _ => c.to_string(),
        }
    }
    let mut class = String::new();
    let mut run: Option<(char, char)> = None;
    let flush = |run: (char, char), class: &mut String| {
        class.push_str(&one(run.0));
        if run.1 != run.0 {
            class.push('-');
            class.push_str(&one(run.1));
        }
    };
    for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
        if !pick(c) {
            continue;
        }
        run = match run {
            Some((first, last)) if u32::from(last) + 1 == u32::from(c) => Some((first, c)),
            Some(done) => {
                flush(done, &mut class);
                Some((c, c))
            }
            None => Some((c, c)),
        };
    }
    if let Some(done) = run {
        flush(done, &mut class);
    }
    class
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
    fn names_are_limited_to_255_characters() {
        assert!(FileName::parse(&"a".repeat(255)).is_ok());
        assert!(FileName::parse(&"é".repeat(255)).is_ok());
        assert!(FileName::parse(&format!("dir/{}", "a".repeat(255))).is_ok());
        assert_eq!(
            FileName::parse(&"a".repeat(256)),
            Err(FileNameError::TooLong)
        );
        assert_eq!(
            FileName::parse(&"é".repeat(256)),
            Err(FileNameError::TooLong)
        );
    }

    /// The document's pattern and `parse` agree on names built to sit on every edge of the
    /// rule, and on random ones.
    #[test]
    fn the_documented_pattern_takes_exactly_the_names_parse_takes() {
        let mut samples: Vec<String> = [
            "report.pdf",
            "../../etc/passwd",
            r"C:\Users\me\q3.xlsx",
            "résumé 2026.docx",
            "",
            "dir/",
            ".",
            "..",
            "a/.",
            "a/..",
            "...",
            ".hidden",
            "   ",
            "dir/ \u{3000} ",
            " a.txt ",
            "a\nb",
            "a\u{0}/b",
            "x\u{7f}",
            "x\u{85}",
            "invoice\u{202E}gpj.exe",
            "re\u{200B}port",
            "a\u{2028}b",
            "\u{FEFF}",
            "x\u{E0001}",
            "x\u{1D173}",
            "😀.png",
            "a\u{A0}",
            "\u{A0}",
            "\\",
            "/",
            "a\\b/c",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        samples.extend([
            "a".repeat(255),
            "a".repeat(256),
            "é".repeat(255),
            "é".repeat(256),
        ]);
        samples.push(format!("{}/{}", "b".repeat(300), "a".repeat(255)));
        // Random names over an alphabet that mixes every kind of character.
        samples.extend(crate::domain::pattern_check::samples(
            "a. /\\\t\u{85}\u{A0}\u{200B}\u{3000}é😀\u{E0020}",
            5_000,
            6,
            0x9E37_79B9_7F4A_7C15,
        ));
        crate::domain::pattern_check::assert_agrees(&file_name_pattern(), samples, |name| {
            FileName::parse(name).is_ok()
        });
    }
}
