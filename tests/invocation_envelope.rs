//! The custom-handler invocation envelope, parsed from the host's payloads (copied from the
//! protocol research into `tests/fixtures/`) delivered in every chunking, from a generated
//! 100 MiB-blob envelope, and over a real loopback HTTP connection.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::convert::Infallible;

use axum::body::Body;
use axum::response::IntoResponse;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use file_approver::functions::invocation::{
    decoded, parse_invocation, BlobTriggerProperties, Invocation, InvocationError,
    InvocationLimits, InvocationResponse,
};
use futures::Stream;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

const BLOB_REQUEST: &str = include_str!("fixtures/b-blob-orchestrator.request.json");
const BLOB_RESPONSE: &str = include_str!("fixtures/b-blob-orchestrator.response.json");
const TIMER_REQUEST: &str = include_str!("fixtures/c-timer.request-with-retry.json");
/// The fixture's `Data.blob`: base64 of the 20-byte CSV `id,amount\n1,10\n2,20\n`.
const FIXTURE_BLOB: &str = "aWQsYW1vdW50CjEsMTAKMiwyMAo=";

type Chunk = Result<Bytes, Infallible>;

fn chunks_of(body: &[u8], sizes: impl FnMut() -> usize) -> impl Stream<Item = Chunk> {
    let mut sizes = sizes;
    let mut chunks = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = sizes().clamp(1, rest.len());
        chunks.push(Ok(Bytes::copy_from_slice(&rest[..n])));
        rest = &rest[n..];
    }
    futures::stream::iter(chunks)
}

fn whole(body: &[u8]) -> impl Stream<Item = Chunk> {
    futures::stream::iter(vec![Ok(Bytes::copy_from_slice(body))])
}

async fn parse(body: &str, skip: &[&str]) -> Result<Invocation, InvocationError> {
    parse_invocation(whole(body.as_bytes()), skip, &InvocationLimits::default()).await
}

async fn parse_bytewise(body: &str, skip: &[&str]) -> Result<Invocation, InvocationError> {
    parse_invocation(
        chunks_of(body.as_bytes(), || 1),
        skip,
        &InvocationLimits::default(),
    )
    .await
}

fn envelope_without_blob() -> (String, String) {
    let (before, after) = BLOB_REQUEST.split_once(FIXTURE_BLOB).unwrap();
    (before.to_owned(), after.to_owned())
}

// ---------------------------------------------------------------------------------------------
// The fixtures
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_blob_trigger_fixture_parses_with_the_blob_skipped_and_the_rest_kept() {
    let inv = parse(BLOB_REQUEST, &["blob"]).await.unwrap();

    assert_eq!(
        inv.skipped,
        vec![("blob".to_owned(), FIXTURE_BLOB.len() as u64)]
    );
    assert_eq!(inv.skipped_len("blob"), Some(28));
    assert!(!inv.data.contains_key("blob"));

    let record = inv.data_object("record").unwrap();
    assert_eq!(record["Owner"], "alice");
    assert_eq!(record["MaxRows"], 100_000);
    assert_eq!(record["RowKey"], "report-2025-03.csv");

    assert_eq!(
        inv.metadata_str("id").as_deref(),
        Some("report-2025-03.csv")
    );
    assert_eq!(
        inv.metadata_str("Uri").as_deref(),
        Some("https://mystorageacct.blob.core.windows.net/files/report-2025-03.csv")
    );
    assert_eq!(
        inv.metadata_object("sys").unwrap()["MethodName"],
        "orchestrator"
    );
    assert_eq!(
        inv.metadata_object("Metadata").unwrap()["uploadedby"],
        "alice"
    );

    let props = inv.blob_properties().unwrap();
    let at = Utc.with_ymd_and_hms(2025, 3, 14, 9, 25, 40).unwrap();
    let md5 = base64::engine::general_purpose::STANDARD
        .decode("ttJ58w8anYJ3GHI5UUZjBA==")
        .unwrap();
    assert_eq!(
        props,
        BlobTriggerProperties {
            content_length: Some(20),
            content_type: Some("text/csv".to_owned()),
            content_md5: Some(md5.try_into().unwrap()),
            last_modified: Some(at),
            created_on: Some(at),
        }
    );
}

#[tokio::test]
async fn without_a_skip_list_the_blob_is_kept_as_its_base64_string() {
    let inv = parse(BLOB_REQUEST, &[]).await.unwrap();
    assert!(inv.skipped.is_empty());
    assert_eq!(inv.data["blob"], FIXTURE_BLOB);
}

#[tokio::test]
async fn the_timer_fixture_exposes_its_retry_context() {
    let inv = parse(TIMER_REQUEST, &["blob"]).await.unwrap();
    assert!(inv.skipped.is_empty());
    assert_eq!(inv.data_object("timer").unwrap()["IsPastDue"], false);
    let retry = inv.metadata_object("RetryContext").unwrap();
    assert_eq!(retry["RetryCount"], 1);
    assert_eq!(retry["MaxRetryCount"], 3);
}

#[tokio::test]
async fn the_envelope_parses_identically_whatever_the_chunking() {
    let expected = parse(BLOB_REQUEST, &["blob"]).await.unwrap();
    assert_eq!(
        parse_bytewise(BLOB_REQUEST, &["blob"]).await.unwrap(),
        expected
    );
    let mut rng = StdRng::seed_from_u64(3);
    for max in [2, 5, 13, 64, 700] {
        let chunks = chunks_of(BLOB_REQUEST.as_bytes(), || rng.gen_range(1..=max));
        let inv = parse_invocation(chunks, &["blob"], &InvocationLimits::default())
            .await
            .unwrap();
        assert_eq!(inv, expected, "chunks of up to {max} bytes");
    }
}

#[tokio::test]
async fn escapes_in_key_names_and_skipped_values_survive_a_split_at_every_byte() {
    // Metadata first; the blob key spelled with an escape; the skipped value full of escapes.
    let blob_content = r#"ab\"c\\d\/e\u00e9\uD83D\uDE00f\n"#;
    let body = format!(
        r#"{{ "Metadata" : {{ "id" : "\"x\\\"y\"" }} , "Data" : {{ "bl\u006fb" : "{blob_content}" , "record" : {{ "k" : "v\"}}" }} }} }}"#
    );
    let expected = parse(&body, &["blob"]).await.unwrap();
    assert_eq!(
        expected.skipped,
        vec![("blob".to_owned(), blob_content.len() as u64)]
    );
    assert_eq!(expected.metadata_str("id").as_deref(), Some("x\"y"));
    assert_eq!(expected.data_object("record").unwrap()["k"], "v\"}");
    assert_eq!(expected.data.len(), 1);

    let bytes = body.as_bytes();
    for split in 0..=bytes.len() {
        let chunks = futures::stream::iter(vec![
            Ok::<_, Infallible>(Bytes::copy_from_slice(&bytes[..split])),
            Ok(Bytes::copy_from_slice(&bytes[split..])),
        ]);
        let inv = parse_invocation(chunks, &["blob"], &InvocationLimits::default())
            .await
            .unwrap();
        assert_eq!(inv, expected, "split at byte {split}");
    }
    assert_eq!(parse_bytewise(&body, &["blob"]).await.unwrap(), expected);
}

// ---------------------------------------------------------------------------------------------
// A 100 MiB blob
// ---------------------------------------------------------------------------------------------

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The envelope of a `size`-byte blob, generated as a stream of 64 KiB base64 chunks, so neither
/// the blob nor its encoding is ever whole in memory.
fn generated_blob_envelope(size: usize) -> impl Stream<Item = Chunk> {
    const RAW_PIECE: usize = 48 * 1024; // a multiple of 3: the pieces' encodings concatenate
    let (before, after) = envelope_without_blob();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let pieces = (0..size.div_ceil(RAW_PIECE)).map(move |i| {
        let len = RAW_PIECE.min(size - i * RAW_PIECE);
        let raw: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        Ok(Bytes::from(
            base64::engine::general_purpose::STANDARD.encode(raw),
        ))
    });
    futures::stream::iter(
        std::iter::once(Ok(Bytes::from(before)))
            .chain(pieces)
            .chain(std::iter::once(Ok(Bytes::from(after)))),
    )
}

#[tokio::test]
async fn a_100_mib_blob_envelope_is_parsed_without_holding_the_blob() {
    const SIZE: usize = 100 * 1024 * 1024;
    // Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS, so the peak measured
    // below belongs to this parse, not to whatever ran before it in this process.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = proc_status_kib("VmRSS:");

    let inv = parse_invocation(
        generated_blob_envelope(SIZE),
        &["blob"],
        &InvocationLimits::default(),
    )
    .await
    .unwrap();

    let peak = if reset {
        proc_status_kib("VmHWM:")
    } else {
        proc_status_kib("VmRSS:")
    };
    let growth_mib = peak.saturating_sub(rss_before) as f64 / 1024.0;
    eprintln!(
        "RSS before {rss_before} KiB, peak {peak} KiB: +{growth_mib:.1} MiB (peak reset: {reset})"
    );
    assert_eq!(inv.skipped_len("blob"), Some(SIZE.div_ceil(3) as u64 * 4));
    assert_eq!(
        inv.metadata_str("id").as_deref(),
        Some("report-2025-03.csv")
    );
    assert!(growth_mib < 32.0, "RSS grew by {growth_mib:.1} MiB");
}

// ---------------------------------------------------------------------------------------------
// The value-encoding rule
// ---------------------------------------------------------------------------------------------

#[test]
fn double_encoded_values_are_decoded_exactly_once() {
    assert_eq!(decoded(&json!("\"3f1c9a4e\"")), json!("3f1c9a4e"));
    assert_eq!(decoded(&json!("5")), json!(5));
    assert_eq!(decoded(&json!("true")), json!(true));
    assert_eq!(decoded(&json!("null")), Value::Null);
    assert_eq!(decoded(&json!("{\"a\":1}")), json!({"a": 1}));
    assert_eq!(decoded(&json!("\"{\\\"a\\\":1}\"")), json!("{\"a\":1}"));
    assert_eq!(decoded(&json!("not json")), json!("not json"));
    assert_eq!(decoded(&json!({"a": "\"b\""})), json!({"a": "\"b\""}));
    assert_eq!(decoded(&json!(7)), json!(7));
}

#[tokio::test]
async fn a_missing_record_arrives_as_the_string_null_and_reads_as_none() {
    let body =
        r#"{"Data":{"blob":"AAAA","record":"null"},"Metadata":{"id":"\"f\"","DequeueCount":"5"}}"#;
    let inv = parse(body, &["blob"]).await.unwrap();
    assert_eq!(inv.data_object("record"), None);
    assert_eq!(inv.data_object("absent"), None);
    assert_eq!(inv.metadata_str("id").as_deref(), Some("f"));
    assert_eq!(inv.metadata_str("DequeueCount").as_deref(), Some("5"));
    assert_eq!(inv.metadata_str("absent"), None);
}

#[tokio::test]
async fn a_record_sent_as_an_object_or_as_a_string_of_json_reads_as_the_object() {
    let as_object = r#"{"Data":{"record":{"Name":"a.pdf","Size":3}},"Metadata":{}}"#;
    let as_string = r#"{"Data":{"record":"{\"Name\":\"a.pdf\",\"Size\":3}"},"Metadata":{}}"#;
    let expected: Map<String, Value> =
        serde_json::from_str(r#"{"Name":"a.pdf","Size":3}"#).unwrap();
    assert_eq!(
        parse(as_object, &["blob"])
            .await
            .unwrap()
            .data_object("record"),
        Some(expected.clone())
    );
    assert_eq!(
        parse(as_string, &["blob"])
            .await
            .unwrap()
            .data_object("record"),
        Some(expected)
    );
}

#[test]
fn blob_properties_tolerate_missing_extra_and_oddly_typed_fields() {
    let props: Map<String, Value> = serde_json::from_value(json!({
        "contentlength": "42",
        "ContentType": "",
        "ContentHash": "not base64!",
        "LastModified": "2025-03-14T10:25:40+01:00",
        "CreatedOn": "0001-01-01T00:00:00+00:00",
        "ETag": {},
        "SomethingNew": [1, 2, 3]
    }))
    .unwrap();
    assert_eq!(
        BlobTriggerProperties::from_json(&props),
        BlobTriggerProperties {
            content_length: Some(42),
            content_type: None,
            content_md5: None,
            last_modified: Some(Utc.with_ymd_and_hms(2025, 3, 14, 9, 25, 40).unwrap()),
            created_on: None,
        }
    );
    assert_eq!(
        BlobTriggerProperties::from_json(&Map::new()),
        BlobTriggerProperties::default()
    );
}

// ---------------------------------------------------------------------------------------------
// Envelope shape and errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metadata_before_data_is_accepted() {
    let body = r#"{"Metadata":{"id":"\"f1\""},"Data":{"blob":"QUJD","record":"null"}}"#;
    let inv = parse(body, &["blob"]).await.unwrap();
    assert_eq!(inv.metadata_str("id").as_deref(), Some("f1"));
    assert_eq!(inv.skipped_len("blob"), Some(4));
}

#[tokio::test]
async fn only_the_listed_keys_directly_under_data_are_skipped() {
    let body = r#"{"Data":{"blob":{"x":1},"record":{"blob":"kept"},"other":["blob"]},"Metadata":{"blob":"\"kept too\""}}"#;
    let inv = parse(body, &["blob"]).await.unwrap();
    assert!(inv.skipped.is_empty(), "a non-string value is not skipped");
    assert_eq!(inv.data["blob"], json!({"x": 1}));
    assert_eq!(inv.data_object("record").unwrap()["blob"], "kept");
    assert_eq!(inv.metadata_str("blob").as_deref(), Some("kept too"));
}

#[tokio::test]
async fn malformed_json_is_refused() {
    let cases = [
        r#"{"Data":{"blob":"QUJD"#,  // ends inside the skipped string
        r#"{"Data":{"record":"abc"#, // ends inside a kept string
        r#"{"Data":{"blob":"QU\qJD"},"Metadata":{}}"#, // bad escape in a skipped string
        "{\"Data\":{\"blob\":\"QU\nJD\"},\"Metadata\":{}}", // raw newline in a skipped string
        r#"{"Data":{"blob":"\u12G4"},"Metadata":{}}"#, // bad \u escape in a skipped string
        r#"{"Data":{"blob" "QUJD"},"Metadata":{}}"#, // missing colon
        r#"{"Data":{"blob":"QUJD"}"#, // unclosed envelope
        r#"{"Data":{"blob":"QUJD"}}}"#, // one brace too many
        r#"{"Data":{},"Metadata":{}} trailing"#,
        "not json at all",
        "",
    ];
    for body in cases {
        let result = parse(body, &["blob"]).await;
        assert!(
            matches!(
                result,
                Err(InvocationError::Malformed { .. } | InvocationError::Json(_))
            ),
            "{body:?} gave {result:?}"
        );
        let bytewise = parse_bytewise(body, &["blob"]).await;
        assert!(
            bytewise.is_err(),
            "{body:?} in 1-byte chunks gave {bytewise:?}"
        );
    }
}

#[tokio::test]
async fn an_envelope_without_a_data_object_is_refused() {
    for body in [
        r#"{"Metadata":{"id":"\"f\""}}"#,
        r#"{"Data":"null","Metadata":{}}"#,
        r#"{"data":{},"Metadata":{}}"#,
        r#"[{"Data":{}}]"#,
    ] {
        let result = parse(body, &["blob"]).await;
        assert!(
            matches!(result, Err(InvocationError::MissingObject("Data"))),
            "{body:?} gave {result:?}"
        );
    }
    let no_metadata = parse(r#"{"Data":{"blob":"QUJD"}}"#, &["blob"])
        .await
        .unwrap();
    assert!(no_metadata.metadata.is_empty());
}

#[tokio::test]
async fn kept_values_over_the_limit_are_refused_but_a_skipped_value_of_any_size_is_not() {
    let limits = InvocationLimits {
        max_retained_bytes: 1024,
    };
    let big_record = format!(
        r#"{{"Data":{{"record":{{"Note":"{}"}}}},"Metadata":{{}}}}"#,
        "x".repeat(2000)
    );
    let result = parse_invocation(whole(big_record.as_bytes()), &["blob"], &limits).await;
    assert!(
        matches!(result, Err(InvocationError::TooLarge { limit: 1024 })),
        "{result:?}"
    );

    let big_blob = format!(
        r#"{{"Data":{{"blob":"{}"}},"Metadata":{{}}}}"#,
        "QUJD".repeat(250_000)
    );
    let inv = parse_invocation(whole(big_blob.as_bytes()), &["blob"], &limits)
        .await
        .unwrap();
    assert_eq!(inv.skipped_len("blob"), Some(1_000_000));
}

#[tokio::test]
async fn a_failing_body_stream_is_a_body_error() {
    let chunks = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"{\"Data\":{\"blob\":\"QU")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )),
    ]);
    let result = parse_invocation(chunks, &["blob"], &InvocationLimits::default()).await;
    assert!(
        matches!(result, Err(InvocationError::Body(_))),
        "{result:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The response
// ---------------------------------------------------------------------------------------------

#[test]
fn the_response_serializes_with_the_hosts_keys_as_in_the_fixture() {
    let mut response = InvocationResponse::new();
    let audit: Map<String, Value> = serde_json::from_value(json!({
        "PartitionKey": "orchestrator",
        "RowKey": "report-2025-03.csv|20",
        "Owner": "alice",
        "Bytes": 20,
        "Status": "queued"
    }))
    .unwrap();
    response.set_output("audit", audit);
    response.log("orchestrator: report-2025-03.csv (20 bytes) owner=alice pipeline=ingest-v2");
    let fixture: Value = serde_json::from_str(BLOB_RESPONSE).unwrap();
    assert_eq!(serde_json::to_value(&response).unwrap(), fixture);
}

#[tokio::test]
async fn an_empty_response_is_still_a_200_json_object() {
    let response = InvocationResponse::new().into_response();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value,
        json!({"Outputs": {}, "Logs": [], "ReturnValue": null})
    );
}

// ---------------------------------------------------------------------------------------------
// Over HTTP
// ---------------------------------------------------------------------------------------------

async fn orchestrator(body: Body) -> axum::response::Response {
    match parse_invocation(
        body.into_data_stream(),
        &["blob"],
        &InvocationLimits::default(),
    )
    .await
    {
        Ok(inv) => {
            let mut response = InvocationResponse::new();
            response.log(format!(
                "id={} skipped={}",
                inv.metadata_str("id").unwrap_or_default(),
                inv.skipped_len("blob").unwrap_or(0)
            ));
            response.into_response()
        }
        Err(e) => (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[tokio::test]
async fn a_chunked_invocation_over_http_larger_than_axums_default_body_limit_is_answered() {
    let app = axum::Router::new().route("/orchestrator", axum::routing::post(orchestrator));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    const SIZE: usize = 3 * 1024 * 1024;
    let response = reqwest::Client::new()
        .post(format!("http://{address}/orchestrator"))
        .header("Content-Type", "application/json; charset=utf-8")
        .header(
            "X-Azure-Functions-InvocationId",
            "9a7d1c52-08e4-4b6e-b0a3-3c1f2e5d6a77",
        )
        .body(reqwest::Body::wrap_stream(generated_blob_envelope(SIZE)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "Outputs": {},
            "Logs": [format!("id=report-2025-03.csv skipped={}", SIZE.div_ceil(3) * 4)],
            "ReturnValue": null
        })
    );
    server.abort();
}
