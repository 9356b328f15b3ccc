//! Signed URLs for the embedded store: the local stand-in for a Blob Storage service SAS.
//!
//! Read: `{public_base_url}/api/blobs/{name}?se=<unix seconds>&rscd=<content-disposition>&sig=<hex>`
//! (for container `files`; `…/api/blobs/{container}/{name}?…` for the others);
//! write: `{public_base_url}/api/uploads/{name}?se=<unix seconds>&sp=cw&sig=<hex>`. `sig` is
//! HMAC-SHA256, under the store's secret, of a versioned string holding the permission (`r` or
//! `cw`), the container, the name, the expiry and the disposition (empty for writes). Changing
//! any of them, or using the query on another blob or for the other permission, breaks the
//! signature. The container is signed, so a link never verifies under another container's
//! route; the routes (`crate::functions::blobs`) serve reads of `files`, `uploads` and `versions` and
//! writes of `uploads` only.

use std::io::Write as _;
use std::ops::Range;
use std::path::Path;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::RngCore;
use sha2::Sha256;
use url::Url;

use super::io_error;
use crate::store::{
    attachment_disposition, BlobRead, SignedUrlRequest, SignedWriteRequest, StoreError, StoreResult,
};

/// Tags the string-to-sign, so a change of format can never verify an old signature.
const SIGNATURE_VERSION: &str = "file-approver/embedded-blob-read/v1";
/// What a download link grants.
const READ: &str = "r";
/// What an upload link grants: create or replace the blob.
pub const WRITE: &str = "cw";
/// Length of a generated key.
const KEY_BYTES: usize = 32;
/// Shorter caller-given secrets are refused: HMAC is only as strong as its key.
const MIN_KEY_BYTES: usize = 16;

/// A URL path segment: everything but unreserved characters is percent-encoded.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a signed link was refused, or what failed while serving it.
#[derive(Debug, thiserror::Error)]
pub enum SignedUrlError {
    /// A parameter is missing, repeated or unparsable.
    #[error("the link is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not cover this blob, this expiry and this disposition.
    #[error("the link's signature does not match")]
    BadSignature,
    /// A genuine link whose time is up.
    #[error("the link expired at {0}")]
    Expired(DateTime<Utc>),
    /// The requested `Range` starts past the end of the blob.
    #[error("the requested range is not satisfiable for {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The query of a signed link, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignedQuery {
    pub se: Option<String>,
    pub sp: Option<String>,
    pub rscd: Option<String>,
    pub sig: Option<String>,
    /// The snapshot a download link reads, when it reads one.
    pub snapshot: Option<String>,
}

impl SignedQuery {
    /// Parses `se`, `sp`, `rscd` and `sig` out of a raw query string. Other parameters are ignored;
    /// a repeated one makes the link malformed (which copy was signed would be a guess).
    pub fn parse(raw: &str) -> Result<SignedQuery, SignedUrlError> {
        let mut query = SignedQuery::default();
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let slot = match key.as_ref() {
                "se" => &mut query.se,
                "sp" => &mut query.sp,
                "rscd" => &mut query.rscd,
                "sig" => &mut query.sig,
                "snapshot" => &mut query.snapshot,
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(SignedUrlError::Malformed("a parameter appears twice"));
            }
        }
        Ok(query)
    }
}

/// A verified link's blob, ready to serve.
pub struct SignedRead {
    pub read: BlobRead,
    /// The `Content-Disposition` the link was signed with.
    pub content_disposition: String,
    /// The byte range being served, when a `Range` was asked for.
    pub range: Option<Range<u64>>,
}

/// One HTTP byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`), before the size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRangeSpec {
    /// `a-b`, both inclusive.
    FromTo(u64, u64),
    /// `a-`: from `a` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRangeSpec {
    /// The end-exclusive offsets this range means for a blob of `size` bytes, or `None` when
    /// it selects nothing (RFC 9110: unsatisfiable).
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            ByteRangeSpec::FromTo(first, last) if first <= last && first < size => {
                Some(first..last.saturating_add(1).min(size))
            }
            ByteRangeSpec::From(first) if first < size => Some(first..size),
            ByteRangeSpec::Suffix(n) if n > 0 && size > 0 => Some(size.saturating_sub(n)..size),
            _ => None,
        }
    }
}

/// Mints and checks links.
pub(super) struct Signer {
    /// Keyed once; each signature starts from a clone.
    keyed: Hmac<Sha256>,
    base_url: String,
}

impl Signer {
    pub(super) fn new(key: Vec<u8>, base_url: String) -> StoreResult<Signer> {
        if key.len() < MIN_KEY_BYTES {
            return Err(StoreError::Invalid(format!(
                "the signing secret needs at least {MIN_KEY_BYTES} bytes"
            )));
        }
        let keyed = Hmac::<Sha256>::new_from_slice(&key)
            .map_err(|_| StoreError::Invalid("the signing secret cannot key HMAC".into()))?;
        Ok(Signer { keyed, base_url })
    }

    /// Where links point: the base URL's scheme, host and port.
    pub(super) fn origin(&self) -> String {
        Url::parse(&self.base_url)
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_default()
    }

    /// The expiry is cut to whole seconds downwards: a link may die up to a second early,
    /// never late.
    pub(super) fn url(&self, request: &SignedUrlRequest<'_>) -> String {
        let expiry = request.expires_at.timestamp();
        let disposition = attachment_disposition(request.download_name);
        let signed_name = signed_name(request.name, request.snapshot);
        let signature = hex::encode(
            self.mac(READ, request.container, &signed_name, expiry, &disposition)
                .finalize()
                .into_bytes(),
        );
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(snapshot) = request.snapshot {
            query.append_pair("snapshot", snapshot);
        }
        let query = query
            .append_pair("se", &expiry.to_string())
            .append_pair("rscd", &disposition)
            .append_pair("sig", &signature)
            .finish();
        let name = utf8_percent_encode(request.name, PATH_SEGMENT);
        // The files' links keep their short form; other containers name themselves.
        if request.container == crate::store::FILES_CONTAINER {
            format!("{}/api/blobs/{name}?{query}", self.base_url)
        } else {
            format!(
                "{}/api/blobs/{}/{name}?{query}",
                self.base_url,
                utf8_percent_encode(request.container, PATH_SEGMENT)
            )
        }
    }

    /// The signature is checked (in constant time) before the expiry, so an answer never
    /// tells a forger anything but "no".
    pub(super) fn verify(
        &self,
        container: &str,
        name: &str,
        query: &SignedQuery,
        now: DateTime<Utc>,
    ) -> Result<String, SignedUrlError> {
        let (Some(se), Some(rscd), Some(sig)) = (&query.se, &query.rscd, &query.sig) else {
            return Err(SignedUrlError::Malformed(
                "se, rscd and sig are all required",
            ));
        };
        let name = signed_name(name, query.snapshot.as_deref());
        self.check(READ, container, &name, se, rscd, sig, now)?;
        Ok(rscd.clone())
    }

    /// An upload link for `request`'s blob; the expiry is cut to whole seconds downwards.
    pub(super) fn write_url(&self, request: &SignedWriteRequest<'_>) -> String {
        let expiry = request.expires_at.timestamp();
        let signature = hex::encode(
            self.mac(WRITE, request.container, request.name, expiry, "")
                .finalize()
                .into_bytes(),
        );
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("se", &expiry.to_string())
            .append_pair("sp", WRITE)
            .append_pair("sig", &signature)
            .finish();
        // Direct uploads keep their short form; another container (new versions') names
        // itself.
        if request.container == crate::store::UPLOADS_CONTAINER {
            format!(
                "{}/api/uploads/{}?{query}",
                self.base_url,
                utf8_percent_encode(request.name, PATH_SEGMENT)
            )
        } else {
            format!(
                "{}/api/uploads/{}/{}?{query}",
                self.base_url,
                utf8_percent_encode(request.container, PATH_SEGMENT),
                utf8_percent_encode(request.name, PATH_SEGMENT)
            )
        }
    }

    /// Checks an upload link like [`verify`](Self::verify) checks a download link.
    pub(super) fn verify_write(
        &self,
        container: &str,
        name: &str,
        query: &SignedQuery,
        now: DateTime<Utc>,
    ) -> Result<(), SignedUrlError> {
        let (Some(se), Some(sp), Some(sig)) = (&query.se, &query.sp, &query.sig) else {
            return Err(SignedUrlError::Malformed("se, sp and sig are all required"));
        };
        if query.rscd.is_some() {
            return Err(SignedUrlError::Malformed("an upload link has no rscd"));
        }
        self.check(sp, container, name, se, "", sig, now)?;
        if sp != WRITE {
            // Signed, but for something else than an upload.
            return Err(SignedUrlError::BadSignature);
        }
        Ok(())
    }

    /// The signature first (in constant time), then the expiry (`se`, Unix seconds).
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        permission: &str,
        container: &str,
        name: &str,
        se: &str,
        disposition: &str,
        sig: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SignedUrlError> {
        let expiry: i64 = se
            .parse()
            .map_err(|_| SignedUrlError::Malformed("se is not a number of seconds"))?;
        let signature =
            hex::decode(sig).map_err(|_| SignedUrlError::Malformed("sig is not hex"))?;
        self.mac(permission, container, name, expiry, disposition)
            .verify_slice(&signature)
            .map_err(|_| SignedUrlError::BadSignature)?;
        let expires_at = DateTime::from_timestamp(expiry, 0)
            .ok_or(SignedUrlError::Malformed("se is out of range"))?;
        if now >= expires_at {
            return Err(SignedUrlError::Expired(expires_at));
        }
        Ok(())
    }

    fn mac(
        &self,
        permission: &str,
        container: &str,
        name: &str,
        expiry: i64,
        disposition: &str,
    ) -> Hmac<Sha256> {
        // The permission is one of two constants and container and blob names hold no
        // newline (both are validated), so the fields cannot run into each other; the
        // disposition comes last and may hold anything.
        let mut mac = self.keyed.clone();
        mac.update(
            format!(
                "{SIGNATURE_VERSION}\n{permission}\n{container}\n{name}\n{expiry}\n{disposition}"
            )
            .as_bytes(),
        );
        mac
    }
}

/// What a read link signs as its blob: the name, and on a line of its own the snapshot it
/// reads (names hold no newline, so the two never run together).
fn signed_name(name: &str, snapshot: Option<&str>) -> String {
    match snapshot {
        None => name.to_owned(),
        Some(snapshot) => format!("{name}\nsnapshot={snapshot}"),
    }
}

/// Checks the base URL once, at open, and keeps it without a trailing slash.
pub(super) fn parse_base_url(raw: &str) -> StoreResult<String> {
    let invalid = |why: &str| StoreError::Invalid(format!("public_base_url {raw:?} {why}"));
    let url = Url::parse(raw).map_err(|_| invalid("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("is not http or https"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("has a query or fragment"));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// Reads the key file, or creates it with 32 random bytes readable by the owner only. The
/// new key is written to a temporary file and renamed into place, so a crash never leaves a
/// short key behind.
pub(super) fn load_or_create_key(path: &Path) -> StoreResult<Vec<u8>> {
    match std::fs::read(path) {
        Ok(key) if key.len() >= KEY_BYTES => return Ok(key),
        Ok(_) => {
            return Err(StoreError::Invalid(format!(
                "{} holds fewer than {KEY_BYTES} bytes; delete it to generate a new key \
                 (links already handed out stop working)",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("read", path, e)),
    }
    let mut key = vec![0u8; KEY_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(StoreError::internal)?;
    let tmp = path.with_extension("key.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .map_err(|e| io_error("create", &tmp, e))?;
    file.write_all(&key)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error("rename into", path, e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("sync", dir, e))?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn signer() -> Signer {
        Signer::new(vec![42; 32], "http://127.0.0.1:7071".into()).expect("signer")
    }

    fn mint(
        signer: &Signer,
        container: &str,
        name: &str,
        expires_at: DateTime<Utc>,
    ) -> SignedQuery {
        let url = signer.url(&SignedUrlRequest {
            snapshot: None,
            container,
            name,
            expires_at,
            download_name: "Übersicht \"2024\".xlsx",
        });
        let (_, query) = url.split_once('?').expect("query");
        SignedQuery::parse(query).expect("parses")
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    fn mint_write(signer: &Signer, name: &str, expires_at: DateTime<Utc>) -> (String, SignedQuery) {
        let url = signer.write_url(&SignedWriteRequest {
            container: "uploads",
            name,
            expires_at,
        });
        let (path, query) = url.split_once('?').expect("query");
        (path.to_owned(), SignedQuery::parse(query).expect("parses"))
    }

    #[test]
    fn an_upload_link_verifies_for_its_blob_only_and_never_as_a_download() {
        let s = signer();
        let (path, q) = mint_write(&s, "abc", now() + Duration::minutes(15));
        assert_eq!(path, "http://127.0.0.1:7071/api/uploads/abc");
        assert_eq!(q.sp.as_deref(), Some(WRITE));
        s.verify_write("uploads", "abc", &q, now()).expect("valid");
        for (container, name) in [("uploads", "abd"), ("files", "abc")] {
            assert!(matches!(
                s.verify_write(container, name, &q, now()),
                Err(SignedUrlError::BadSignature)
            ));
        }
        // As a download link it lacks what a download is signed with.
        assert!(s.verify("uploads", "abc", &q, now()).is_err());
        // A download link's signature does not make an upload link.
        let read = mint(&s, "uploads", "abc", now() + Duration::hours(1));
        let forged = SignedQuery {
            sp: Some(WRITE.into()),
            rscd: None,
            ..read
        };
        assert!(matches!(
            s.verify_write("uploads", "abc", &forged, now()),
            Err(SignedUrlError::BadSignature)
        ));
        assert!(matches!(
            s.verify_write("uploads", "abc", &q, now() + Duration::minutes(15)),
            Err(SignedUrlError::Expired(_))
        ));
    }

    #[test]
    fn a_minted_link_verifies_and_returns_its_disposition() {
        let s = signer();
        let q = mint(&s, "files", "abc", now() + Duration::hours(1));
        let disposition = s.verify("files", "abc", &q, now()).expect("valid");
        assert_eq!(
            disposition,
            "attachment; filename=\"_bersicht _2024_.xlsx\"; \
             filename*=UTF-8''%C3%9Cbersicht%20%222024%22.xlsx"
        );
    }

    #[test]
    fn a_link_is_bound_to_its_container_name_expiry_and_disposition() {
        let s = signer();
        let q = mint(&s, "files", "abc", now() + Duration::hours(1));
        assert!(matches!(
            s.verify("other", "abc", &q, now()),
            Err(SignedUrlError::BadSignature)
        ));
        assert!(matches!(
            s.verify("files", "abd", &q, now()),
            Err(SignedUrlError::BadSignature)
        ));
        let later = SignedQuery {
            se: Some((now() + Duration::days(30)).timestamp().to_string()),
            ..q.clone()
        };
        assert!(matches!(
            s.verify("files", "abc", &later, now()),
            Err(SignedUrlError::BadSignature)
        ));
        let inline = SignedQuery {
            rscd: Some("inline".into()),
            ..q.clone()
        };
        assert!(matches!(
            s.verify("files", "abc", &inline, now()),
            Err(SignedUrlError::BadSignature)
        ));
        let other_key = Signer::new(vec![43; 32], "http://x".into()).expect("signer");
        assert!(matches!(
            other_key.verify("files", "abc", &q, now()),
            Err(SignedUrlError::BadSignature)
        ));
    }

    #[test]
    fn a_link_expires_at_its_expiry_second() {
        let s = signer();
        let q = mint(&s, "files", "abc", now() + Duration::seconds(10));
        assert!(s
            .verify("files", "abc", &q, now() + Duration::seconds(9))
            .is_ok());
        assert!(matches!(
            s.verify("files", "abc", &q, now() + Duration::seconds(10)),
            Err(SignedUrlError::Expired(_))
        ));
    }

    #[test]
    fn missing_or_repeated_parameters_are_malformed() {
        let s = signer();
        assert!(matches!(
            s.verify("files", "abc", &SignedQuery::default(), now()),
            Err(SignedUrlError::Malformed(_))
        ));
        assert!(matches!(
            SignedQuery::parse("se=1&sig=aa&sig=bb"),
            Err(SignedUrlError::Malformed(_))
        ));
    }

    #[test]
    fn names_are_percent_encoded_in_the_path() {
        let url = signer().url(&SignedUrlRequest {
            snapshot: None,
            container: "files",
            name: "a b?c",
            expires_at: now(),
            download_name: "x",
        });
        assert!(
            url.starts_with("http://127.0.0.1:7071/api/blobs/a%20b%3Fc?se="),
            "{url}"
        );
    }

    #[test]
    fn byte_ranges_resolve_like_http() {
        assert_eq!(ByteRangeSpec::FromTo(0, 0).resolve(10), Some(0..1));
        assert_eq!(ByteRangeSpec::FromTo(2, 100).resolve(10), Some(2..10));
        assert_eq!(ByteRangeSpec::FromTo(10, 12).resolve(10), None);
        assert_eq!(ByteRangeSpec::FromTo(5, 2).resolve(10), None);
        assert_eq!(ByteRangeSpec::From(7).resolve(10), Some(7..10));
        assert_eq!(ByteRangeSpec::Suffix(3).resolve(10), Some(7..10));
        assert_eq!(ByteRangeSpec::Suffix(30).resolve(10), Some(0..10));
        assert_eq!(ByteRangeSpec::Suffix(0).resolve(10), None);
        assert_eq!(ByteRangeSpec::From(0).resolve(0), None);
    }

    #[test]
    fn a_generated_key_is_kept_owner_only_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing.key");
        let first = load_or_create_key(&path).expect("created");
        assert_eq!(first.len(), KEY_BYTES);
        assert_eq!(load_or_create_key(&path).expect("read"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
