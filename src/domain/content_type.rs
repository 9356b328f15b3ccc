use std::fmt;

/// A file's content type, kept as given (parameters included) but at least shaped like
/// `type/subtype`: it travels on as an HTTP header of the stored blob and of every download.
/// An upload that said nothing about its type is stored as `application/octet-stream` but is
/// *not declared*: the analysis has no claim to check it against, so it cannot mismatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    value: String,
    declared: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a content type (type/subtype)")]
pub struct ContentTypeError(String);

impl ContentType {
    /// What an upload without a declared type is stored as.
    pub const DEFAULT: &'static str = "application/octet-stream";

    /// What curl sends with `--data-binary` unless told otherwise, and what an HTML form's
    /// fields are: on a raw upload it says how the request was made, not what the file is.
    const FORM_FIELDS: &'static str = "application/x-www-form-urlencoded";

    /// `None` or blank (spaces and tabs only) means not declared (stored as
    /// [`ContentType::DEFAULT`]); anything else must be a media type as HTTP writes it —
    /// `type/subtype` tokens, then `; name=value` parameters (a token or a quoted string) — at
    /// most 255 characters, exactly as [`CONTENT_TYPE_PATTERN`] says (the API document states
    /// the same rule).
    pub fn parse(raw: Option<&str>) -> Result<Self, ContentTypeError> {
        let Some(raw) = raw.filter(|r| !r.chars().all(|c| c == ' ' || c == '\t')) else {
            return Ok(Self::undeclared());
        };
        if raw.chars().count() <= 255 && media_type(raw) {
            Ok(ContentType {
                value: raw.to_owned(),
                declared: true,
            })
        } else {
            Err(ContentTypeError(raw.chars().take(64).collect()))
        }
    }

    /// The `Content-Type` of a request whose body is the file itself: as [`ContentType::parse`],
    /// except that `application/x-www-form-urlencoded` (curl's default for `--data-binary`)
    /// is not declared.
    pub fn of_raw_body(raw: Option<&str>) -> Result<Self, ContentTypeError> {
        let parsed = Self::parse(raw)?;
        if parsed.essence() == Self::FORM_FIELDS {
            return Ok(Self::undeclared());
        }
        Ok(parsed)
    }

    /// A type an uploader declared, as stored before declarations were told apart: `false`
    /// turns it into a file whose type was not declared.
    pub fn with_declared(self, declared: bool) -> Self {
        if declared {
            self
        } else {
            Self::undeclared()
        }
    }

    /// Nothing said: stored as [`ContentType::DEFAULT`], checked against nothing.
    pub fn undeclared() -> Self {
        ContentType {
            value: Self::DEFAULT.to_owned(),
            declared: false,
        }
    }

    /// `application/octet-stream`, declared as such ("unknown binary").
    pub fn octet_stream() -> Self {
        ContentType {
            value: Self::DEFAULT.to_owned(),
            declared: true,
        }
    }

    /// What the blob is stored and served as.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Whether the uploader said what the file is.
    pub fn is_declared(&self) -> bool {
        self.declared
    }

    /// `type/subtype`, lower case, without parameters.
    fn essence(&self) -> String {
        self.value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// The rule of [`ContentType::parse`] as a regular expression (ECMA-262 and Python alike), for
/// the API document: blank, or a media type of RFC 9110's grammar.
pub const CONTENT_TYPE_PATTERN: &str = concat!(
    r#"^(?:[ \t]*|"#,
    r#"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+"#,
    r#"(?:[ \t]*;[ \t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+="#,
    r#"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+|"(?:[^"\\\x00-\x1f\x7f-\x9f]|\\[^\x00-\x08\x0a-\x1f\x7f-\x9f])*"))*)$"#
);

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+.^_`|~-".contains(c)
}

/// One or more token characters at the start of `s`: what follows them.
fn after_token(s: &str) -> Option<&str> {
    let n = s.find(|c: char| !is_token_char(c)).unwrap_or(s.len());
    (n > 0).then(|| &s[n..])
}

/// A quoted string's inside (after its opening quote): what follows the closing quote.
fn after_quoted(s: &str) -> Option<&str> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            if c.is_control() && c != '\t' {
                return None;
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => return Some(&s[i + 1..]),
            c if c.is_control() => return None,
            _ => {}
        }
    }
    None
}

/// `type/subtype *( OWS ";" OWS name "=" ( token / quoted-string ) )`.
fn media_type(raw: &str) -> bool {
    fn check(raw: &str) -> Option<()> {
        let mut rest = after_token(raw)?;
        rest = after_token(rest.strip_prefix('/')?)?;
        while !rest.is_empty() {
            rest = rest.trim_start_matches([' ', '\t']).strip_prefix(';')?;
            rest = after_token(rest.trim_start_matches([' ', '\t']))?;
            rest = rest.strip_prefix('=')?;
            rest = match rest.strip_prefix('"') {
                Some(quoted) => after_quoted(quoted)?,
                None => after_token(rest)?,
            };
        }
        Some(())
    }
    check(raw).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_blank_type_is_stored_as_octet_stream_but_not_declared() {
        for raw in [None, Some("  ")] {
            let parsed = ContentType::parse(raw).unwrap();
            assert_eq!(parsed.as_str(), ContentType::DEFAULT);
            assert!(!parsed.is_declared());
        }
        assert!(ContentType::parse(Some("application/octet-stream"))
            .unwrap()
            .is_declared());
    }

    #[test]
    fn curls_default_type_on_a_raw_body_is_not_declared() {
        for raw in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        ] {
            let parsed = ContentType::of_raw_body(Some(raw)).unwrap();
            assert!(!parsed.is_declared(), "{raw}");
            assert_eq!(parsed.as_str(), ContentType::DEFAULT);
        }
        let csv = ContentType::of_raw_body(Some("text/csv")).unwrap();
        assert!(csv.is_declared());
        assert_eq!(csv.as_str(), "text/csv");
        // In a declaration (an upload URL's JSON) it is a claim like any other.
        assert!(
            ContentType::parse(Some("application/x-www-form-urlencoded"))
                .unwrap()
                .is_declared()
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
    fn media_types_with_parameters_as_http_writes_them_are_kept() {
        for good in [
            "text/plain",
            "application/vnd.ms-excel",
            "text/plain;charset=utf-8",
            "multipart/form-data; boundary=\"a b;c\"",
            "text/plain ; q=0.5",
        ] {
            assert_eq!(ContentType::parse(Some(good)).unwrap().as_str(), good);
        }
    }

    #[test]
    fn shapes_that_are_not_type_slash_subtype_are_refused() {
        for bad in [
            "text",
            "/plain",
            "text/",
            "a/b/c",
            "text/\u{1}plain",
            "000",
            " text/plain",
            "text/plain ",
            "text plain/x",
            "text/plain; charset",
            "text/plain; a=\"unterminated",
            "téxt/plain",
        ] {
            assert!(ContentType::parse(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(ContentType::parse(Some(&format!("text/{}", "x".repeat(300)))).is_err());
    }

    /// The document's pattern and `parse` agree (its 255-character cap is `maxLength` in the
    /// document, so samples stay under it).
    #[test]
    fn the_documented_pattern_takes_exactly_the_types_parse_takes() {
        let mut samples: Vec<String> = [
            "",
            "  ",
            "\t",
            "text/plain",
            "text/plain; charset=utf-8",
            "a/b;c=d",
            "a/b ; c=\"x y\"",
            "a/b; c=\"q\\\"\"",
            "a/b; c=\"\\\u{1}\"",
            "text",
            "/plain",
            "text/",
            "a/b/c",
            "text/\u{1}plain",
            " text/plain",
            "text/plain ",
            "text/plain; charset",
            "téxt/plain",
            "a/b; c=\"é\"",
            "a/b; c=\"\u{85}\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        samples.extend(crate::domain::pattern_check::samples(
            "ab/;= \t\"\\é\u{1}\u{85}",
            20_000,
            9,
            0x2545_F491_4F6C_DD1D,
        ));
        crate::domain::pattern_check::assert_agrees(CONTENT_TYPE_PATTERN, samples, |raw| {
            ContentType::parse(Some(raw)).is_ok()
        });
    }
}
