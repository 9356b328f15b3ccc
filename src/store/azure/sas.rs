//! Single-blob SAS links, signed locally: read-only download links and create/write-only
//! upload links. With an account key they are service SAS; under a managed identity (no key)
//! they are user-delegation SAS, signed with a key the blob service lends for a few days
//! (fetched through the official blob client).
//!
//! Hand-written, both kinds, and the only authorization besides Shared Key request signing
//! (`pipeline.rs`) that this app writes itself:
//!
//! - the official crates build user-delegation SAS only, so a service SAS (connection strings,
//!   Azurite's default account, teams that still use keys) has no other signer;
//! - `azure_storage_sas` 1.0 signs user-delegation SAS as version 2026-04-06, whose
//!   string-to-sign (with signed request headers and query parameters) Azurite 3.35 — the
//!   newest that runs on the Node 20 these machines and CI have — does not know: it refuses
//!   every such link with 403, so links made that way could not be tested here. Version
//!   2022-11-02, signed below, is accepted by Azure and by Azurite alike.
//!
//! Either way a download link carries a `Content-Disposition: attachment` override (`rscd`)
//! under the user's file name, as the blob itself is named by a UUID.

use azure_storage_common::models::UserDelegationKey;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;
use url::Url;

use crate::store::{attachment_disposition, StoreError};

/// The service version the signature follows. Any version from 2020-12-06 to 2025-05-05 uses
/// the strings-to-sign below; Azure and Azurite 3.35 both accept 2022-11-02.
const SAS_VERSION: &str = "2022-11-02";

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded, so a
/// space is `%20` (never `+`, which Azure reads literally) and `+`/`/`/`=` of the base64
/// signature survive.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What one link grants.
pub(crate) enum Grant<'a> {
    /// Read, answered with `Content-Disposition: attachment` under `download_name`; of one
    /// snapshot of the blob (`sr=bs`) when `snapshot` names one.
    Read {
        download_name: &'a str,
        snapshot: Option<&'a str>,
    },
    /// Create and write (Put Blob, Put Block, Put Block List): no read, no delete, no list.
    Write,
}

/// What signs a link.
pub(crate) enum Signer<'a> {
    /// A service SAS, with the account key (decoded).
    AccountKey(&'a [u8]),
    /// A user-delegation SAS, with a key lent to the app's identity.
    Delegation(&'a UserDelegationKey),
}

/// A SAS for one blob (`sr=b`).
pub(crate) struct BlobSas<'a> {
    pub account: &'a str,
    pub signer: Signer<'a>,
    /// The blob's URL (the endpoint, container and name, path-encoded), without a query.
    pub blob_url: Url,
    pub container: &'a str,
    pub blob: &'a str,
    pub expires_at: DateTime<Utc>,
    pub grant: Grant<'a>,
}

impl BlobSas<'_> {
    /// The blob URL with the SAS query appended.
    pub fn url(&self) -> Result<String, StoreError> {
        let expiry = self.expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let (permissions, disposition, snapshot) = match self.grant {
            Grant::Read {
                download_name,
                snapshot,
            } => ("r", attachment_disposition(download_name), snapshot),
            Grant::Write => ("cw", String::new(), None),
        };
        let resource = if snapshot.is_some() { "bs" } else { "b" };
        let disposition = disposition.as_str();
        // Over https the link refuses plain http; over http (Azurite) it cannot.
        let protocol = if self.blob_url.scheme() == "https" {
            "https"
        } else {
            ""
        };
        let canonical_resource = format!("/blob/{}/{}/{}", self.account, self.container, self.blob);

        // String-to-sign for versions 2020-12-06 and later, one field per line (Microsoft Learn,
        // "Create a service SAS" and "Create a user delegation SAS"; Azurite 3.35's
        // `generateBlobSASSignature20201206` and `...WithUDK20201206` agree). Both kinds share
        // the head and the tail; between them a service SAS has its signedIdentifier, a
        // user-delegation SAS the lent key's six fields (as the service wrote them) and three
        // unused ones. Values are signed decoded, exactly as the service reads them back from
        // the query. No `st`: a start time only adds clock-skew failures.
        let head = [permissions, "", &expiry, &canonical_resource];
        let lent;
        let (middle, key, delegation): (Vec<&str>, &[u8], _) = match &self.signer {
            Signer::AccountKey(key) => (vec![""], key, None),
            Signer::Delegation(k) => {
                lent = LentKey::read(k)?;
                (
                    vec![
                        lent.object_id,
                        lent.tenant_id,
                        &lent.start,
                        &lent.expiry,
                        lent.service,
                        lent.version,
                        "", // signedAuthorizedUserObjectId
                        "", // signedUnauthorizedUserObjectId
                        "", // signedCorrelationId
                    ],
                    lent.value,
                    Some(&lent),
                )
            }
        };
        let tail = [
            "", // signedIP
            protocol,
            SAS_VERSION,
            resource,
            snapshot.unwrap_or(""), // signedSnapshotTime
            "",                     // signedEncryptionScope
            "",                     // rscc
            disposition,
            "", // rsce
            "", // rscl
            "", // rsct
        ];
        let string_to_sign = head
            .iter()
            .chain(&middle)
            .chain(&tail)
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        let signature = sign(key, &string_to_sign)?;

        let mut query = vec![
            ("sv", SAS_VERSION),
            ("sp", permissions),
            ("sr", resource),
            ("se", &expiry),
        ];
        if let Some(k) = delegation {
            query.extend([
                ("skoid", k.object_id),
                ("sktid", k.tenant_id),
                ("skt", k.start.as_str()),
                ("ske", k.expiry.as_str()),
                ("sks", k.service),
                ("skv", k.version),
            ]);
        }
        if !protocol.is_empty() {
            query.push(("spr", protocol));
        }
        if !disposition.is_empty() {
            query.push(("rscd", disposition));
        }
        query.push(("sig", &signature));
        // The snapshot is a query parameter of the blob URL itself, beside the SAS's own.
        if let Some(snapshot) = snapshot {
            query.push(("snapshot", snapshot));
        }
        Ok(format!("{}?{}", self.blob_url, encode_query(&query)))
    }
}

/// `name=value&…`, each value percent-encoded (see [`QUERY_VALUE`]).
fn encode_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY_VALUE)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The fields of a lent key that a link signs and carries, each one required.
struct LentKey<'a> {
    object_id: &'a str,
    tenant_id: &'a str,
    start: String,
    expiry: String,
    service: &'a str,
    version: &'a str,
    value: &'a [u8],
}

impl<'a> LentKey<'a> {
    fn read(key: &'a UserDelegationKey) -> Result<Self, StoreError> {
        fn required<T>(field: Option<T>, name: &str) -> Result<T, StoreError> {
            field.ok_or_else(|| {
                StoreError::internal(format!("the lent user-delegation key has no {name}"))
            })
        }
        // Whole seconds, as the service wrote them and as the signature covers them.
        let when = |t: time::OffsetDateTime| {
            Some(
                super::from_sdk_time(t)
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            )
        };
        Ok(LentKey {
            object_id: required(key.signed_oid.as_deref(), "SignedOid")?,
            tenant_id: required(key.signed_tid.as_deref(), "SignedTid")?,
            start: required(key.signed_start.and_then(when), "SignedStart")?,
            expiry: required(key.signed_expiry.and_then(when), "SignedExpiry")?,
            service: required(key.signed_service.as_deref(), "SignedService")?,
            version: required(key.signed_version.as_deref(), "SignedVersion")?,
            value: required(key.value.as_deref(), "Value")?,
        })
    }
}

pub(super) fn sign(key: &[u8], string_to_sign: &str) -> Result<String, StoreError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|_| StoreError::Invalid("the signing key cannot be used for HMAC".into()))?;
    mac.update(string_to_sign.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Pins the string-to-sign: a known key and inputs give this exact signature, computed once
    /// and checked against Azurite by tests/azure_backend.rs.
    #[test]
    fn url_carries_read_only_blob_scoped_fields() {
        let key = b"0123456789abcdef".to_vec();
        let sas = BlobSas {
            account: "devstoreaccount1",
            signer: Signer::AccountKey(&key),
            blob_url: Url::parse("http://127.0.0.1:10000/devstoreaccount1/files/abc").unwrap(),
            container: "files",
            blob: "abc",
            expires_at: Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap(),
            grant: Grant::Read {
                download_name: "a b.txt",
                snapshot: None,
            },
        };
        let url = sas.url().unwrap();
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "http://127.0.0.1:10000/devstoreaccount1/files/abc");
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("sv"), "2022-11-02");
        assert_eq!(get("sp"), "r");
        assert_eq!(get("sr"), "b");
        assert_eq!(get("se"), "2030-01-02T03:04:05Z");
        assert_eq!(
            get("rscd"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert!(!pairs.iter().any(|(n, _)| n == "spr" || n == "st"));
        assert!(!query.contains('+'), "spaces must be %20: {query}");
        let expected = sign(
            &key,
            "r\n\n2030-01-02T03:04:05Z\n/blob/devstoreaccount1/files/abc\n\n\n\n2022-11-02\nb\n\n\n\n\
             attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt\n\n\n",
        )
        .unwrap();
        assert_eq!(get("sig"), expected);
    }

    /// Pins the user-delegation string-to-sign: the key's six fields follow the canonical
    /// resource, three empty ones follow them, and the key's fields travel in the query.
    #[test]
    fn delegation_links_sign_with_the_lent_key_and_carry_its_fields() {
        let key = UserDelegationKey {
            signed_oid: Some("11111111-1111-1111-1111-111111111111".into()),
            signed_tid: Some("22222222-2222-2222-2222-222222222222".into()),
            signed_start: Some(time::macros::datetime!(2030-01-01 00:00:00 UTC)),
            signed_expiry: Some(time::macros::datetime!(2030-01-08 00:00:00 UTC)),
            signed_service: Some("b".into()),
            signed_version: Some("2025-11-05".into()),
            value: Some(b"lent key".to_vec()),
            ..UserDelegationKey::default()
        };
        let sas = BlobSas {
            account: "acme",
            signer: Signer::Delegation(&key),
            blob_url: Url::parse("https://acme.blob.core.windows.net/uploads/abc").unwrap(),
            container: "uploads",
            blob: "abc",
            expires_at: Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap(),
            grant: Grant::Write,
        };
        let url = sas.url().unwrap();
        let query = url.split_once('?').unwrap().1;
        let pairs: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(pairs["sp"], "cw");
        assert_eq!(pairs["skoid"], "11111111-1111-1111-1111-111111111111");
        assert_eq!(pairs["sktid"], "22222222-2222-2222-2222-222222222222");
        assert_eq!(pairs["skt"], "2030-01-01T00:00:00Z");
        assert_eq!(pairs["ske"], "2030-01-08T00:00:00Z");
        assert_eq!(pairs["sks"], "b");
        assert_eq!(pairs["skv"], "2025-11-05");
        let expected = sign(
            b"lent key",
            "cw\n\n2030-01-02T03:04:05Z\n/blob/acme/uploads/abc\n\
             11111111-1111-1111-1111-111111111111\n22222222-2222-2222-2222-222222222222\n\
             2030-01-01T00:00:00Z\n2030-01-08T00:00:00Z\nb\n2025-11-05\n\n\n\n\nhttps\n\
             2022-11-02\nb\n\n\n\n\n\n\n",
        )
        .unwrap();
        assert_eq!(pairs["sig"], expected);
    }

    #[test]
    fn https_links_are_limited_to_https() {
        let sas = BlobSas {
            account: "acme",
            signer: Signer::AccountKey(b"k"),
            blob_url: Url::parse("https://acme.blob.core.windows.net/files/abc").unwrap(),
            container: "files",
            blob: "abc",
            expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
            grant: Grant::Read {
                download_name: "x",
                snapshot: None,
            },
        };
        assert!(sas.url().unwrap().contains("&spr=https&"));
    }
}
