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

    /// `None` or blank (spaces and tabs only) means [`ContentType::DEFAULT`]; anything else
    /// must be a media type as HTTP writes it — `type/subtype` tokens, then `; name=value`
    /// parameters (a token or a quoted string) — at most 255 characters, exactly as
    /// [`CONTENT_TYPE_PATTERN`] says (the API document states the same rule).
    pub fn parse(raw: Option<&str>) -> Result<Self, ContentTypeError> {
        let Some(raw) = raw.filter(|r| !r.chars().all(|c| c == ' ' || c == '\t')) else {
            return Ok(Self::octet_stream());
        };
        if raw.chars().count() <= 255 && media_type(raw) {
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
