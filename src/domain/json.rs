//! The one way a JSON request body becomes a struct.

use serde::de::DeserializeOwned;

/// `body` as `T`, which must be written as a JSON object: serde's derived structs also take a
/// JSON array of their fields in order (`[]` would be a withdrawal with no comment, `["a.pdf",
/// 10]` a declaration), a shape no client means and the API document does not allow.
pub fn from_json_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err("the body must be a JSON object".into());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// The body of an endpoint whose fields are all optional: nothing, or a JSON `null` (what
/// clients send for "no fields"), is `None`; anything else must be a JSON object. A body that
/// is not UTF-8, or only white space (neither nothing nor JSON), is refused, not taken as empty.
pub fn optional_json_object<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, String> {
    if body.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    if text.trim() == "null" {
        return Ok(None);
    }
    from_json_object(body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Two {
        #[serde(default)]
        a: Option<u8>,
        #[serde(default)]
        b: Option<u8>,
    }

    #[test]
    fn no_body_or_null_is_no_fields_but_white_space_is_refused() {
        assert!(optional_json_object::<Two>(b"").unwrap().is_none());
        assert!(optional_json_object::<Two>(b" null\n").unwrap().is_none());
        assert!(optional_json_object::<Two>(b"{\"a\": 1}")
            .unwrap()
            .is_some());
        for body in [&b"\r"[..], b"  ", b"\xff", b"[]"] {
            assert!(optional_json_object::<Two>(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn only_an_object_is_taken() {
        assert!(from_json_object::<Two>(b" {\"a\": 1}").is_ok());
        for body in [&b"[]"[..], b"[1, 2]", b"1", b"\"a\"", b"", b"null"] {
            assert!(from_json_object::<Two>(body).is_err(), "{body:?}");
        }
    }
}
