//! The custom-handler invocation envelope: what the Functions host POSTs to `/<functionName>` for
//! a non-HTTP function, and what the handler answers (custom-handler protocol §2–§3).
//!
//! The request is `{"Data": {...}, "Metadata": {...}}`, sent chunked. For a blob trigger,
//! `Data.<binding>` is the *whole blob*, base64-encoded: a 100 MiB upload arrives as ~134 MB of
//! JSON. The handler never needs those bytes (it reads the file from storage itself), so
//! [`parse_invocation`] streams the body through a small scanner that drops the listed `Data`
//! values as they pass, recording only their length, and keeps the rest, bounded by
//! [`InvocationLimits`], for `serde_json`. Memory stays flat whatever the blob size.
//!
//! Why a hand-written scanner rather than a streaming-JSON crate: `actson` and
//! `json-event-parser` accumulate every string value whole before emitting it (134 MB for the
//! blob), and `struson`, which can skip a value without buffering it, reads only from a blocking
//! `std::io::Read`, which would pin a blocking thread per invocation and still leave the retained
//! part unbounded. The scanner only has to find one kind of thing (the string values of a few
//! keys of `Data`); everything it keeps is validated by `serde_json` afterwards.
//!
//! Values follow the host's encoding rule (§2.3): anything that .NET serialises to a JSON
//! primitive arrives as a string *containing* JSON text (`"\"report.csv\""`, `"5"`, `"null"`);
//! [`decoded`] undoes that, and the accessors on [`Invocation`] apply it.

use std::pin::pin;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::store::BoxError;

/// Bounds on what [`parse_invocation`] keeps in memory.
#[derive(Debug, Clone)]
pub struct InvocationLimits {
    /// The envelope's JSON text without its skipped values. A blob trigger's envelope is a few
    /// KiB besides the blob (metadata, properties, the table record).
    pub max_retained_bytes: usize,
}

impl Default for InvocationLimits {
    fn default() -> Self {
        InvocationLimits {
            max_retained_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("reading the invocation body failed")]
    Body(#[source] BoxError),
    /// Found by the scanner, which reads the skipped values `serde_json` never sees.
    #[error("the invocation body is not valid JSON: {reason} at byte {offset}")]
    Malformed { offset: u64, reason: &'static str },
    #[error("the invocation body is not valid JSON")]
    Json(#[source] serde_json::Error),
    #[error("the invocation envelope holds more than {limit} bytes besides its skipped values")]
    TooLarge { limit: usize },
    #[error("the invocation envelope has no `{0}` object")]
    MissingObject(&'static str),
}

/// One parsed invocation request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invocation {
    /// Input bindings by name, as sent (not yet [`decoded`]); skipped values are absent.
    pub data: Map<String, Value>,
    /// Trigger metadata (`Uri`, `Properties`, `id`, `sys`, ...), as sent. Empty when the
    /// envelope has none: only `Data` is required, since it carries the trigger.
    pub metadata: Map<String, Value>,
    /// Each skipped `Data` value's key and the length of its encoded string content in bytes
    /// (for a base64 blob: `4 * ceil(size / 3)`).
    pub skipped: Vec<(String, u64)>,
}

/// Undoes the host's value encoding once: a string whose content is JSON text becomes that JSON
/// value (`"\"abc\""` → `"abc"`, `"5"` → `5`, `"true"` → `true`, `"null"` → `null`,
/// `"{\"a\":1}"` → `{"a":1}`). Any other value, including a string that is not JSON text
/// (`"abc"`), is returned unchanged.
pub fn decoded(value: &Value) -> Value {
    match value {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| value.clone()),
        other => other.clone(),
    }
}

impl Invocation {
    /// A metadata value as text, decoded: `"\"3f1c…\""` → `3f1c…`. Numbers and booleans give
    /// their JSON text (`DequeueCount` `"5"` → `5`); objects, arrays, null and absent keys give
    /// `None`.
    pub fn metadata_str(&self, key: &str) -> Option<String> {
        scalar_text(&decoded(self.metadata.get(key)?))
    }

    /// A `Data` value that should be an object (a table input's entity): a real object or a
    /// string containing one. `None` when absent, `"null"` (entity not found) or anything else.
    pub fn data_object(&self, key: &str) -> Option<Map<String, Value>> {
        as_object(self.data.get(key)?)
    }

    /// A metadata value that should be an object, such as `Properties` or `sys`; old hosts sent
    /// those as strings containing JSON, which are accepted too.
    pub fn metadata_object(&self, key: &str) -> Option<Map<String, Value>> {
        as_object(self.metadata.get(key)?)
    }

    /// The encoded length of a skipped `Data` value, if it was skipped.
    pub fn skipped_len(&self, key: &str) -> Option<u64> {
        self.skipped
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, len)| *len)
    }

    /// The blob trigger's `Metadata.Properties`, when present. Every field is optional: the set
    /// depends on the storage SDK version in the host's extension bundle.
    pub fn blob_properties(&self) -> Option<BlobTriggerProperties> {
        self.metadata_object("Properties")
            .map(|props| BlobTriggerProperties::from_json(&props))
    }
}

fn as_object(value: &Value) -> Option<Map<String, Value>> {
    match decoded(value) {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The fields of a blob trigger's `Metadata.Properties` (.NET `BlobProperties`) the app uses.
/// A field that is missing, null or of an unexpected shape is `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlobTriggerProperties {
    pub content_length: Option<u64>,
    pub content_type: Option<String>,
    /// `ContentHash`: the MD5 of the content, when the service knows it.
    pub content_md5: Option<[u8; 16]>,
    pub last_modified: Option<DateTime<Utc>>,
    pub created_on: Option<DateTime<Utc>>,
}

impl BlobTriggerProperties {
    /// Reads the fields from a `Properties` object; names are matched case-insensitively since
    /// Json.NET's casing is a serializer setting, not a contract.
    pub fn from_json(props: &Map<String, Value>) -> Self {
        let field = |name: &str| {
            props
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| decoded(value))
        };
        let text = |name: &str| field(name).as_ref().and_then(scalar_text);
        BlobTriggerProperties {
            content_length: field("ContentLength").and_then(|v| match v {
                Value::Number(n) => n.as_u64(),
                _ => None,
            }),
            content_type: text("ContentType").filter(|s| !s.is_empty()),
            content_md5: text("ContentHash").and_then(|s| {
                let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
                bytes.try_into().ok()
            }),
            last_modified: text("LastModified").and_then(|s| parse_time(&s)),
            created_on: text("CreatedOn").and_then(|s| parse_time(&s)),
        }
    }
}

/// ISO 8601 with an offset, as .NET writes `DateTimeOffset`. Year 1 is .NET's
/// `default(DateTimeOffset)`, which `BlobProperties` uses for "not set".
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let time = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    (time.year() > 1).then_some(time)
}

/// The handler's answer to an invocation (protocol §3).
///
/// It always serializes to a JSON object with all three keys, so a 2xx reply is never empty or
/// `null` (which would hang the invocation until the function timeout).
///
/// Keep `outputs` empty or make its values JSON objects: the host base64-*decodes* any string
/// output (and a string `ReturnValue` bound to `$return`) that happens to be valid base64, so a
/// text output such as `"test"` would be written as three bytes of binary (§3.3). When no
/// `$return` binding exists, the top-level properties of an object `ReturnValue` are also copied
/// into the outputs (§3.5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvocationResponse {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    /// Logged by the host at Information level under the invocation's id, only for 2xx replies.
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

impl Default for InvocationResponse {
    fn default() -> Self {
        InvocationResponse {
            outputs: Map::new(),
            logs: Vec::new(),
            return_value: Value::Null,
        }
    }
}

impl InvocationResponse {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn log(&mut self, line: impl Into<String>) {
        self.logs.push(line.into());
    }

    /// Sets an output binding to an object, the one value shape the host passes through as is.
    pub fn set_output(&mut self, binding: impl Into<String>, value: Map<String, Value>) {
        self.outputs.insert(binding.into(), Value::Object(value));
    }
}

impl IntoResponse for InvocationResponse {
    fn into_response(self) -> Response {
        (StatusCode::OK, axum::Json(self)).into_response()
    }
}

/// Parses an invocation body as it streams in, skipping the string values of the `Data` keys
/// named in `skip` (e.g. `["blob"]`) without holding them. Key order does not matter
/// (`Metadata` may come first), and chunk boundaries may fall anywhere.
///
/// A skipped key whose value is not a string is kept like any other value. Skipped strings are
/// checked for JSON string syntax (escapes, control characters), but not for valid UTF-8.
///
/// In an axum route, take the raw `axum::body::Body` and pass `body.into_data_stream()`: the
/// buffering extractors (`Bytes`, `Json`) would hold the whole blob and stop at axum's 2 MB
/// default body limit.
/// The events an `eventGridTrigger` invocation carries under `binding`: one, or a batch.
pub fn events_of(invocation: &Invocation, binding: &str) -> Option<Vec<Value>> {
    match invocation.data.get(binding).map(decoded) {
        Some(Value::Array(events)) => Some(events),
        Some(event @ Value::Object(_)) => Some(vec![event]),
        _ => None,
    }
}

/// An event as a log can carry it: its id and subject, cut short.
pub fn event_summary(event: &Value) -> String {
    let field = |k: &str| {
        event
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>()
    };
    format!("id={} subject={}", field("id"), field("subject"))
}

/// The answer to an event the app could not take now: 503 when storage is unavailable (the
/// trigger's sender retries), else 500.
pub fn retry_later(e: &crate::files::FilesError) -> axum::response::Response {
    let status = match e {
        crate::files::FilesError::Storage(s) if s.is_transient() => {
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        }
        _ => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
    };
    axum::response::IntoResponse::into_response((status, InvocationResponse::new()))
}

/// A 200 answer whose `Logs` are `lines` (for the host's log).
pub fn logged(lines: Vec<String>) -> axum::response::Response {
    let mut response = InvocationResponse::new();
    for line in lines {
        response.log(line);
    }
    axum::response::IntoResponse::into_response(response)
}

pub async fn parse_invocation<S, E>(
    body: S,
    skip: &[&str],
    limits: &InvocationLimits,
) -> Result<Invocation, InvocationError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<BoxError>,
{
    let mut scanner = Scanner::new(skip, limits.max_retained_bytes);
    let mut body = pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| InvocationError::Body(e.into()))?;
        scanner.feed(&chunk)?;
    }
    scanner.finish()
}

/// Keys longer than this are never one of `Data`/`Metadata` or a skipped binding name, so the
/// scanner stops capturing them (they are still passed through).
const MAX_CAPTURED_KEY: usize = 256;
/// The same nesting limit `serde_json` applies.
const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The envelope object itself.
    Top,
    /// The `Data` object, whose listed keys are skipped.
    Data,
    Other,
}

#[derive(Debug)]
struct Frame {
    is_object: bool,
    role: Role,
    /// Inside an object, after `{` or `,`: the next string is a key.
    expect_key: bool,
    /// The last key read in a `Top` or `Data` object, decoded.
    key: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Lex {
    /// Between tokens.
    Structure,
    /// Inside a number or a literal (`true`, `null`, ...).
    Scalar,
    /// Inside a kept string; `capture` when it is a key of a `Top` or `Data` object.
    Str { escaped: bool, capture: bool },
    /// Inside a skipped string value; `hex_left` counts the digits of a `\u` escape.
    Skipped { escaped: bool, hex_left: u8 },
}

struct Scanner<'s> {
    skip: &'s [&'s str],
    limit: usize,
    /// The envelope's text with each skipped string replaced by `null`.
    out: Vec<u8>,
    stack: Vec<Frame>,
    lex: Lex,
    key: Vec<u8>,
    key_overflow: bool,
    skipped: Vec<(String, u64)>,
    offset: u64,
}

impl<'s> Scanner<'s> {
    fn new(skip: &'s [&'s str], limit: usize) -> Self {
        Scanner {
            skip,
            limit,
            out: Vec::new(),
            stack: Vec::new(),
            lex: Lex::Structure,
            key: Vec::new(),
            key_overflow: false,
            skipped: Vec::new(),
            offset: 0,
        }
    }

    fn malformed(&self, at: usize, reason: &'static str) -> InvocationError {
        InvocationError::Malformed {
            offset: self.offset + at as u64,
            reason,
        }
    }

    fn keep(&mut self, bytes: &[u8]) -> Result<(), InvocationError> {
        if self.out.len() + bytes.len() > self.limit {
            return Err(InvocationError::TooLarge { limit: self.limit });
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn feed(&mut self, data: &[u8]) -> Result<(), InvocationError> {
        let mut i = 0;
        while i < data.len() {
            match self.lex {
                Lex::Skipped { escaped, hex_left } => {
                    i = self.skip_string(data, i, escaped, hex_left)?;
                }
                Lex::Str { escaped, capture } => {
                    let b = data[i];
                    self.keep(&[b])?;
                    i += 1;
                    if escaped {
                        self.lex = Lex::Str {
                            escaped: false,
                            capture,
                        };
                    } else if b == b'\\' {
                        self.lex = Lex::Str {
                            escaped: true,
                            capture,
                        };
                    } else if b == b'"' {
                        self.lex = Lex::Structure;
                        if capture {
                            self.end_key();
                        }
                        continue;
                    }
                    if capture {
                        if self.key.len() < MAX_CAPTURED_KEY {
                            self.key.push(b);
                        } else {
                            self.key_overflow = true;
                        }
                    }
                }
                Lex::Scalar => {
                    let b = data[i];
                    if matches!(b, b',' | b'}' | b']' | b':' | b' ' | b'\t' | b'\n' | b'\r') {
                        self.lex = Lex::Structure;
                    } else {
                        self.keep(&[b])?;
                        i += 1;
                    }
                }
                Lex::Structure => {
                    self.structure(data[i], i)?;
                    i += 1;
                }
            }
        }
        self.offset += data.len() as u64;
        Ok(())
    }

    fn structure(&mut self, b: u8, at: usize) -> Result<(), InvocationError> {
        match b {
            b'{' | b'[' => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(self.malformed(at, "nesting too deep"));
                }
                let role = match self.stack.last() {
                    None => Role::Top,
                    Some(parent)
                        if parent.role == Role::Top && parent.key.as_deref() == Some("Data") =>
                    {
                        Role::Data
                    }
                    Some(_) => Role::Other,
                };
                let is_object = b == b'{';
                self.stack.push(Frame {
                    is_object,
                    role: if is_object { role } else { Role::Other },
                    expect_key: is_object,
                    key: None,
                });
            }
            b'}' | b']' => {
                if self.stack.pop().is_none() {
                    return Err(self.malformed(at, "unbalanced brackets"));
                }
            }
            b',' => {
                if let Some(frame) = self.stack.last_mut() {
                    frame.expect_key = frame.is_object;
                }
            }
            b'"' => {
                let frame = self.stack.last_mut();
                match frame {
                    Some(frame) if frame.expect_key => {
                        frame.expect_key = false;
                        let capture = matches!(frame.role, Role::Top | Role::Data);
                        self.key.clear();
                        self.key_overflow = false;
                        self.lex = Lex::Str {
                            escaped: false,
                            capture,
                        };
                    }
                    Some(Frame {
                        role: Role::Data,
                        key: Some(key),
                        ..
                    }) if self.skip.contains(&key.as_str()) => {
                        self.skipped.push((key.clone(), 0));
                        self.lex = Lex::Skipped {
                            escaped: false,
                            hex_left: 0,
                        };
                        return self.keep(b"null");
                    }
                    _ => {
                        self.lex = Lex::Str {
                            escaped: false,
                            capture: false,
                        };
                    }
                }
            }
            b':' | b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => self.lex = Lex::Scalar,
        }
        self.keep(&[b])
    }

    fn end_key(&mut self) {
        let decoded = if self.key_overflow {
            None
        } else {
            // The captured bytes are the key's raw text between its quotes, escapes included.
            let mut quoted = Vec::with_capacity(self.key.len() + 2);
            quoted.push(b'"');
            quoted.extend_from_slice(&self.key);
            quoted.push(b'"');
            serde_json::from_slice::<String>(&quoted).ok()
        };
        if let Some(frame) = self.stack.last_mut() {
            frame.key = decoded;
        }
    }

    /// Consumes skipped string content from `data[i..]`, returning where it stopped: at the
    /// end of `data`, or just after the closing quote.
    fn skip_string(
        &mut self,
        data: &[u8],
        mut i: usize,
        mut escaped: bool,
        mut hex_left: u8,
    ) -> Result<usize, InvocationError> {
        let start = i;
        let result = loop {
            if i >= data.len() {
                self.lex = Lex::Skipped { escaped, hex_left };
                break Ok(i);
            }
            if hex_left > 0 {
                if !data[i].is_ascii_hexdigit() {
                    break Err(self.malformed(i, "bad \\u escape in a string"));
                }
                hex_left -= 1;
                i += 1;
            } else if escaped {
                match data[i] {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => hex_left = 4,
                    _ => break Err(self.malformed(i, "bad escape in a string")),
                }
                escaped = false;
                i += 1;
            } else {
                // The fast path: base64 holds neither quotes nor backslashes, so this jumps over
                // a whole chunk at a time.
                let rest = &data[i..];
                let stop = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                if rest[..stop].iter().any(|&b| b < 0x20) {
                    break Err(self.malformed(i, "control character in a string"));
                }
                i += stop;
                match data.get(i) {
                    Some(b'"') => {
                        i += 1;
                        self.lex = Lex::Structure;
                        self.add_skipped(i - start - 1);
                        return Ok(i);
                    }
                    Some(_) => {
                        escaped = true;
                        i += 1;
                    }
                    None => {}
                }
            }
        };
        self.add_skipped(i - start);
        result
    }

    fn add_skipped(&mut self, len: usize) {
        if let Some((_, total)) = self.skipped.last_mut() {
            *total += len as u64;
        }
    }

    fn finish(self) -> Result<Invocation, InvocationError> {
        if matches!(self.lex, Lex::Str { .. } | Lex::Skipped { .. }) {
            return Err(InvocationError::Malformed {
                offset: self.offset,
                reason: "the body ends inside a string",
            });
        }
        let envelope: Value = serde_json::from_slice(&self.out).map_err(InvocationError::Json)?;
        let Value::Object(mut envelope) = envelope else {
            return Err(InvocationError::MissingObject("Data"));
        };
        let Some(Value::Object(mut data)) = envelope.remove("Data") else {
            return Err(InvocationError::MissingObject("Data"));
        };
        let metadata = match envelope.remove("Metadata") {
            None => Map::new(),
            Some(Value::Object(metadata)) => metadata,
            Some(_) => return Err(InvocationError::MissingObject("Metadata")),
        };
        for (key, _) in &self.skipped {
            data.remove(key);
        }
        Ok(Invocation {
            data,
            metadata,
            skipped: self.skipped,
        })
    }
}

/// A queue-trigger invocation of function `method` as the Functions host shapes it (§2.2, §2.3,
/// §2.8): `item` and every string in the metadata JSON-encoded once more, `DequeueCount` as a
/// string, times without fractions. For the stand-ins of the host in the tests and the
/// benchmark, so both speak one shape.
#[cfg(any(test, feature = "test-support"))]
pub fn host_queue_invocation(
    message: &crate::store::ReceivedMessage,
    item: &str,
    method: &str,
    now: DateTime<Utc>,
) -> serde_json::Value {
    use chrono::SecondsFormat;
    let twice = |s: &str| serde_json::Value::String(serde_json::to_string(s).unwrap_or_default());
    let time = |t: DateTime<Utc>| {
        serde_json::Value::String(
            t.to_rfc3339_opts(SecondsFormat::Secs, true)
                .replace('Z', "+00:00"),
        )
    };
    serde_json::json!({
        "Data": { "item": twice(item) },
        "Metadata": {
            "DequeueCount": message.dequeue_count.to_string(),
            "ExpirationTime": "9999-12-31T23:59:59+00:00",
            "Id": twice(&message.receipt.id),
            "InsertionTime": time(message.inserted),
            "NextVisibleTime": time(now + chrono::Duration::minutes(10)),
            "PopReceipt": twice(&message.receipt.pop_receipt),
            "sys": {
                "MethodName": method,
                "UtcNow": now.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                "RandGuid": uuid::Uuid::new_v4().to_string(),
            }
        }
    })
}
