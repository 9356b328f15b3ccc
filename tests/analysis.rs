//! The analysis activity's pure core, fed real bytes: hand-made images, UTF-8 text split at
//! awkward places, random chunkings of the same content, and a real byte stream.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use file_approver::store::{BoxError, ByteStream};
use file_approver::workflow::analysis::{
    analyze_stream, content_types_match, Analysis, AnalysisError, Analyzer, ANALYZER_VERSION,
    SNIFF_PREFIX_BYTES,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 14, 40).unwrap()
}

fn analyze(bytes: &[u8], declared: &str) -> Analysis {
    let mut analyzer = Analyzer::new();
    analyzer.update(bytes);
    analyzer.finish(Some(declared), now())
}

fn analyze_in_chunks(bytes: &[u8], declared: &str, rng: &mut StdRng, max_chunk: usize) -> Analysis {
    let mut analyzer = Analyzer::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = rng.gen_range(0..=max_chunk.min(rest.len()));
        analyzer.update(&rest[..n]);
        rest = &rest[n..];
    }
    analyzer.finish(Some(declared), now())
}

#[test]
fn a_file_whose_type_was_not_declared_cannot_mismatch() {
    let mut analyzer = Analyzer::new();
    analyzer.update(b"col1,col2\n1,2\n");
    let analysis = analyzer.finish(None, now());
    assert!(analysis.content_type_matches);
    assert_eq!(analysis.detected_content_type, "text/plain");
    // Declared as unknown binary, the same text is a mismatch the reviewer should see.
    assert!(!analyze(b"col1,col2\n1,2\n", "application/octet-stream").content_type_matches);
}

// ---------------------------------------------------------------------------------------------
// Hand-made images
// ---------------------------------------------------------------------------------------------

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A 1-bit greyscale PNG of `width` × `height` (IHDR, one IDAT of a stored zlib block, IEND).
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn gif(width: u16, height: u16) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]); // 2-colour global table
    out.push(0x2C); // image descriptor
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&[0x02, 0x02, 0x44, 0x01, 0x00]); // LZW data
    out.push(0x3B);
    out
}

fn jpeg_segment(out: &mut Vec<u8>, marker: u8, payload: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A baseline JPEG header: JFIF APP0, `app1_segments` 64 KiB APP1 segments (as a camera's
/// EXIF/XMP would add), then the SOF0 frame header carrying the dimensions.
fn jpeg(width: u16, height: u16, app1_segments: usize) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    jpeg_segment(
        &mut out,
        0xE0,
        b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    );
    let mut exif = b"Exif\0\0".to_vec();
    exif.resize(65_000, 0x5A);
    for _ in 0..app1_segments {
        jpeg_segment(&mut out, 0xE1, &exif);
    }
    let mut sof = vec![8];
    sof.extend_from_slice(&height.to_be_bytes());
    sof.extend_from_slice(&width.to_be_bytes());
    sof.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    jpeg_segment(&mut out, 0xC0, &sof);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

fn bmp(width: i32, height: i32) -> Vec<u8> {
    let mut out = b"BM".to_vec();
    out.extend_from_slice(&(54u32 + 4).to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]);
    out.extend_from_slice(&[0; 4]);
    out
}

fn webp_lossless(width: u32, height: u32) -> Vec<u8> {
    // VP8L: signature 0x2F, then 14 bits width-1, 14 bits height-1, alpha bit, 3 version bits.
    let bits = (width - 1) | ((height - 1) << 14);
    let mut vp8l = vec![0x2F];
    vp8l.extend_from_slice(&bits.to_le_bytes());
    vp8l.extend_from_slice(&[0, 0, 0]);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&((4 + 8 + vp8l.len()) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBPVP8L");
    out.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
    out.extend_from_slice(&vp8l);
    out
}

#[test]
fn a_hand_made_png_reports_its_type_and_dimensions() {
    let a = analyze(&png(640, 480), "image/png");
    assert_eq!(a.detected_content_type, "image/png");
    assert_eq!((a.width, a.height), (Some(640), Some(480)));
    assert!(a.content_type_matches);
    assert!(!a.is_text);
    assert_eq!((a.line_count, a.word_count), (None, None));
}

#[test]
fn a_hand_made_gif_reports_its_type_and_dimensions() {
    let a = analyze(&gif(3, 2), "image/gif");
    assert_eq!(a.detected_content_type, "image/gif");
    assert_eq!((a.width, a.height), (Some(3), Some(2)));
    assert!(a.content_type_matches);
}

#[test]
fn a_hand_made_jpeg_reports_its_type_and_dimensions() {
    let a = analyze(&jpeg(1024, 768, 0), "image/jpg");
    assert_eq!(a.detected_content_type, "image/jpeg");
    assert_eq!((a.width, a.height), (Some(1024), Some(768)));
    assert!(
        a.content_type_matches,
        "image/jpg is an alias of image/jpeg"
    );
}

#[test]
fn a_jpeg_with_large_metadata_segments_before_its_frame_header_still_reports_dimensions() {
    let bytes = jpeg(4000, 3000, 3);
    assert!(bytes.len() > 190_000);
    let mut rng = StdRng::seed_from_u64(7);
    let a = analyze_in_chunks(&bytes, "image/jpeg", &mut rng, 10_000);
    assert_eq!((a.width, a.height), (Some(4000), Some(3000)));
}

#[test]
fn a_jpeg_whose_frame_header_lies_beyond_the_sniffing_prefix_reports_no_dimensions() {
    let bytes = jpeg(4000, 3000, 5);
    assert!(bytes.len() > SNIFF_PREFIX_BYTES);
    let a = analyze(&bytes, "image/jpeg");
    assert_eq!(a.detected_content_type, "image/jpeg");
    assert_eq!((a.width, a.height), (None, None));
}

#[test]
fn a_hand_made_bmp_and_webp_report_their_types_and_dimensions() {
    let a = analyze(&bmp(17, 9), "image/bmp");
    assert_eq!(a.detected_content_type, "image/bmp");
    assert_eq!((a.width, a.height), (Some(17), Some(9)));
    let a = analyze(&webp_lossless(300, 200), "image/webp");
    assert_eq!(a.detected_content_type, "image/webp");
    assert_eq!((a.width, a.height), (Some(300), Some(200)));
}

// ---------------------------------------------------------------------------------------------
// Hashing
// ---------------------------------------------------------------------------------------------

#[test]
fn sha256_matches_the_fips_180_test_vectors() {
    let vectors: [(&[u8], &str); 3] = [
        (
            b"",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            b"abc",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        ),
    ];
    for (input, expected) in vectors {
        assert_eq!(analyze(input, "text/plain").sha256, expected);
    }
    let million_a = vec![b'a'; 1_000_000];
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(
        analyze_in_chunks(&million_a, "text/plain", &mut rng, 100_000).sha256,
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
}

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

#[test]
fn lines_count_newlines_plus_an_unterminated_last_line() {
    let cases: [(&[u8], u64, u64); 8] = [
        (b"a", 1, 1),
        (b"a\nb", 2, 2),
        (b"a\nb\n", 2, 2),
        (b"\n", 1, 0),
        (b"\n\n", 2, 0),
        (b"one two\tthree\r\nfour  five\n\nsix", 4, 6),
        (b"   ", 1, 0),
        ("ünïcödé wörds\u{a0}joined\n".as_bytes(), 1, 2),
    ];
    for (input, lines, words) in cases {
        let a = analyze(input, "text/plain");
        assert!(a.is_text, "{input:?}");
        assert_eq!(a.line_count, Some(lines), "lines of {input:?}");
        assert_eq!(a.word_count, Some(words), "words of {input:?}");
    }
}

#[test]
fn utf8_split_across_every_chunk_boundary_is_still_text() {
    let text = "Grüße, 世界! 😀 emoji and ascii\nline two ünd mehr\n".as_bytes();
    let whole = analyze(text, "text/plain");
    assert!(whole.is_text);
    assert_eq!(whole.detected_content_type, "text/plain");
    for split in 0..=text.len() {
        let mut analyzer = Analyzer::new();
        analyzer.update(&text[..split]);
        analyzer.update(&text[split..]);
        assert_eq!(
            analyzer.finish(Some("text/plain"), now()),
            whole,
            "split at {split}"
        );
    }
    let mut analyzer = Analyzer::new();
    for byte in text {
        analyzer.update(std::slice::from_ref(byte));
    }
    assert_eq!(
        analyzer.finish(Some("text/plain"), now()),
        whole,
        "one byte at a time"
    );
}

#[test]
fn invalid_utf8_is_octet_stream_without_text_counts() {
    for input in [
        &b"plain text then a stray \xff byte"[..],
        b"overlong \xc0\xaf slash",
        b"surrogate \xed\xa0\x80 half",
        b"truncated at the end \xe2\x82",
        b"\x00\x01\x02\x03\xfe\xfd binary",
    ] {
        let a = analyze(input, "text/plain");
        assert!(!a.is_text, "{input:?}");
        assert_eq!(a.detected_content_type, "application/octet-stream");
        assert_eq!((a.line_count, a.word_count), (None, None));
        assert!(!a.content_type_matches);
    }
}

#[test]
fn the_analysis_does_not_depend_on_how_the_bytes_are_chunked() {
    let mut rng = StdRng::seed_from_u64(42);
    let words = [
        "alpha",
        "βeta",
        "γάμμα",
        "δ",
        "😀",
        "\t",
        " ",
        "\n",
        "\r\n",
        "  ",
        "x",
    ];
    let mut text = String::new();
    while text.len() < 300_000 {
        text.push_str(words[rng.gen_range(0..words.len())]);
    }
    let mut binary = text.clone().into_bytes();
    binary[250_000] = 0xFF;
    let image = jpeg(800, 600, 2);
    for (bytes, declared) in [
        (text.as_bytes(), "text/plain"),
        (&binary[..], "application/octet-stream"),
        (&image[..], "image/jpeg"),
    ] {
        let whole = analyze(bytes, declared);
        for max_chunk in [1, 3, 17, 4096, 100_000] {
            let sample = if max_chunk < 10 {
                &bytes[..20_000]
            } else {
                bytes
            };
            let expected = if max_chunk < 10 {
                analyze(sample, declared)
            } else {
                whole.clone()
            };
            let chunked = analyze_in_chunks(sample, declared, &mut rng, max_chunk);
            assert_eq!(chunked, expected, "chunks up to {max_chunk}");
        }
    }
    let whole = analyze(text.as_bytes(), "text/plain");
    let naive_words = text.split_ascii_whitespace().count() as u64;
    assert_eq!(whole.word_count, Some(naive_words));
    let naive_lines = text.lines().count() as u64;
    assert_eq!(whole.line_count, Some(naive_lines));
}

// ---------------------------------------------------------------------------------------------
// Content-type agreement
// ---------------------------------------------------------------------------------------------

#[test]
fn a_declared_type_that_contradicts_the_content_is_flagged() {
    assert!(!analyze(&png(1, 1), "application/pdf").content_type_matches);
    assert!(!analyze(&png(1, 1), "text/plain").content_type_matches);
    assert!(!analyze(b"just some words", "image/png").content_type_matches);
    assert!(!analyze(b"%PDF-1.7\n\xe2\xe3\xcf\xd3", "image/png").content_type_matches);
    assert!(!analyze(&png(1, 1), "application/octet-stream").content_type_matches);
}

#[test]
fn a_declared_type_that_agrees_with_the_content_matches_whatever_its_parameters() {
    assert!(analyze(&png(1, 1), "IMAGE/PNG; name=x.png").content_type_matches);
    assert!(analyze(b"%PDF-1.7\n\xe2\xe3\xcf\xd3", "application/pdf").content_type_matches);
    assert!(analyze(b"\x00\xff\x10", "application/octet-stream").content_type_matches);
}

#[test]
fn plain_text_matches_any_textual_declared_type() {
    for declared in [
        "text/plain",
        "text/csv; charset=utf-8",
        "text/markdown",
        "application/json",
        "application/ld+json",
        "image/svg+xml",
        "application/x-yaml",
    ] {
        assert!(
            analyze(b"id,amount\n1,10\n", declared).content_type_matches,
            "{declared}"
        );
    }
    let html = analyze(b"<!DOCTYPE html><html><body>hi</body></html>", "text/html");
    assert_eq!(html.detected_content_type, "text/html");
    assert!(html.is_text && html.content_type_matches);
    let xml = analyze(b"<?xml version=\"1.0\"?><svg/>", "image/svg+xml");
    assert_eq!(xml.detected_content_type, "text/xml");
    assert!(xml.content_type_matches);
}

#[test]
fn unrecognised_binary_content_matches_only_declared_types_the_sniffer_cannot_recognise() {
    let unknown = b"\x00\x13\x37 proprietary \xff\xfe payload";
    assert!(analyze(unknown, "application/x-custom-thing").content_type_matches);
    assert!(analyze(unknown, "model/gltf-binary").content_type_matches);
    assert!(analyze(unknown, "application/octet-stream").content_type_matches);
    assert!(!analyze(unknown, "image/png").content_type_matches);
    assert!(!analyze(unknown, "application/pdf").content_type_matches);
    assert!(!analyze(unknown, "text/csv").content_type_matches);
    assert!(!analyze(unknown, "nonsense").content_type_matches);
}

#[test]
fn container_formats_match_their_generic_container_type() {
    assert!(content_types_match(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/zip"
    ));
    assert!(content_types_match(
        "application/epub+zip",
        "application/zip"
    ));
    assert!(content_types_match(
        "application/msword",
        "application/x-ole-storage"
    ));
    assert!(!content_types_match("application/pdf", "application/zip"));
}

// ---------------------------------------------------------------------------------------------
// Edge cases and the wire shape
// ---------------------------------------------------------------------------------------------

#[test]
fn an_empty_file_is_empty_text_that_matches_any_declared_type() {
    let a = analyze(b"", "application/pdf");
    assert_eq!(a.size, 0);
    assert_eq!(a.detected_content_type, "text/plain");
    assert!(a.is_text);
    assert_eq!((a.line_count, a.word_count), (Some(0), Some(0)));
    assert!(a.content_type_matches);
    assert_eq!(
        a.sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn the_json_has_exactly_the_api_keys_and_is_identical_for_identical_bytes() {
    let text = serde_json::to_value(analyze(b"hello world\n", "text/plain")).unwrap();
    let keys: Vec<&str> = text
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "size",
        "sha256",
        "detectedContentType",
        "contentTypeMatches",
        "isText",
        "lineCount",
        "wordCount",
        "analyzedTime",
        "analyzerVersion",
    ];
    let mut sorted_keys = keys.clone();
    sorted_keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted_keys, expected);
    assert_eq!(text["analyzedTime"], "2026-11-24T09:14:40Z");
    assert_eq!(text["analyzerVersion"], ANALYZER_VERSION);

    let image = serde_json::to_value(analyze(&png(2, 3), "image/png")).unwrap();
    assert_eq!(image["width"], 2);
    assert_eq!(image["height"], 3);
    assert!(image.get("lineCount").is_none());

    let first = serde_json::to_string(&analyze(&gif(5, 5), "image/gif")).unwrap();
    let second = serde_json::to_string(&analyze(&gif(5, 5), "image/gif")).unwrap();
    assert_eq!(first, second);
    let round_trip: Analysis = serde_json::from_str(&first).unwrap();
    assert_eq!(round_trip, analyze(&gif(5, 5), "image/gif"));
}

// ---------------------------------------------------------------------------------------------
// The stream entry point
// ---------------------------------------------------------------------------------------------

fn byte_stream(chunks: Vec<Result<Bytes, BoxError>>) -> ByteStream {
    Box::pin(futures::stream::iter(chunks))
}

#[tokio::test]
async fn analyzing_a_stream_gives_the_same_result_as_feeding_the_analyzer() {
    let content = jpeg(320, 240, 1);
    let chunks = content
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let a = analyze_stream(byte_stream(chunks), Some("image/jpeg"), now())
        .await
        .unwrap();
    assert_eq!(a, analyze(&content, "image/jpeg"));
}

#[tokio::test]
async fn a_failing_stream_fails_the_analysis_and_says_how_far_it_got() {
    let chunks = vec![
        Ok(Bytes::from_static(b"0123456789")),
        Err::<Bytes, BoxError>("connection reset".into()),
        Ok(Bytes::from_static(b"never read")),
    ];
    match analyze_stream(byte_stream(chunks), Some("text/plain"), now()).await {
        Err(AnalysisError::Read { bytes_read, .. }) => assert_eq!(bytes_read, 10),
        other => panic!("expected a read error, got {other:?}"),
    }
}

/// Throughput report, not an assertion: run in release mode against a large file, e.g.
/// `head -c 256M /dev/urandom > /tmp/r.bin && ANALYSIS_BENCH_FILE=/tmp/r.bin cargo test --release
/// --test analysis -- --ignored --nocapture`, and compare with `openssl dgst -sha256 /tmp/r.bin`.
#[test]
#[ignore = "a benchmark; needs ANALYSIS_BENCH_FILE"]
fn throughput_report() {
    use sha2::Digest;
    use std::io::Read;
    let Ok(path) = std::env::var("ANALYSIS_BENCH_FILE") else {
        eprintln!("ANALYSIS_BENCH_FILE is not set");
        return;
    };
    let mib = |bytes: u64, secs: f64| bytes as f64 / secs / (1024.0 * 1024.0);

    let started = Instant::now();
    let mut file = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; 4 * 1024 * 1024];
    let mut analyzer = Analyzer::new();
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        analyzer.update(&buf[..n]);
    }
    let a = analyzer.finish(Some("application/octet-stream"), now());
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "analyzer over {path}: {} bytes in {secs:.3} s = {:.0} MiB/s (isText {}, {})",
        a.size,
        mib(a.size, secs),
        a.is_text,
        a.sha256
    );

    let started = Instant::now();
    let mut file = std::fs::File::open(&path).unwrap();
    let mut hasher = sha2::Sha256::new();
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "bare sha2 over {path}: {:.0} MiB/s ({})",
        mib(total, secs),
        hex::encode(hasher.finalize())
    );

    // The whole pipeline, as the activity runs it: the file streamed in 256 KiB chunks (the
    // embedded store's read size) through `analyze_stream` and its hashing thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use futures::StreamExt;
        let file = tokio::fs::File::open(&path).await.unwrap();
        let stream: ByteStream = Box::pin(
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
                .map(|chunk| chunk.map_err(|e| Box::new(e) as BoxError)),
        );
        let started = Instant::now();
        let a = analyze_stream(stream, Some("application/octet-stream"), now())
            .await
            .unwrap();
        let secs = started.elapsed().as_secs_f64();
        eprintln!("analyze_stream over {path}: {:.0} MiB/s", mib(a.size, secs));
    });

    // The text path in isolation: ASCII prose, in memory.
    let mut rng = StdRng::seed_from_u64(9);
    let mut text = Vec::with_capacity(256 * 1024 * 1024);
    while text.len() < 256 * 1024 * 1024 - 16 {
        let len = rng.gen_range(1..12);
        text.extend(std::iter::repeat_n(b'a' + rng.gen_range(0..26u8), len));
        text.push(if rng.gen_range(0..12) == 0 {
            b'\n'
        } else {
            b' '
        });
    }
    let started = Instant::now();
    let mut analyzer = Analyzer::new();
    for chunk in text.chunks(4 * 1024 * 1024) {
        analyzer.update(chunk);
    }
    let a = analyzer.finish(Some("text/plain"), now());
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "analyzer over 256 MiB of ASCII text in memory: {:.0} MiB/s ({} lines, {} words)",
        mib(a.size, secs),
        a.line_count.unwrap_or(0),
        a.word_count.unwrap_or(0)
    );
    let started = Instant::now();
    let mut hasher = sha2::Sha256::new();
    hasher.update(&text);
    let digest = hasher.finalize();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "bare sha2 over the same text in memory: {:.0} MiB/s ({})",
        mib(text.len() as u64, secs),
        hex::encode(digest)
    );
}
