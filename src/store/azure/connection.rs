//! How the app reaches its storage account: a connection string (`AzureWebJobsStorage`),
//! parsed into endpoints and a key, or the host's identity-based settings
//! (`AzureWebJobsStorage__accountName` or `__blobServiceUri`/`__queueServiceUri`/
//! `__tableServiceUri`), which give endpoints and no key at all.
//!
//! The official SDK takes neither (its clients take an endpoint URL and an Entra credential),
//! so the mapping lives here. Errors name the offending setting but never repeat a value: a
//! connection string holds the account key.

use std::fmt;

use base64::Engine as _;
use url::Url;

use crate::config::{IdentityConnection, IdentityEndpoint, ManagedIdentity};
use crate::store::StoreError;

/// Azurite's (and the old storage emulator's) fixed account.
pub(crate) const DEV_ACCOUNT: &str = "devstoreaccount1";
/// Published in Microsoft's Azurite documentation; it protects nothing.
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";
const DEV_QUEUE_ENDPOINT: &str = "http://127.0.0.1:10001/devstoreaccount1";
const DEV_TABLE_ENDPOINT: &str = "http://127.0.0.1:10002/devstoreaccount1";

/// How requests are authorized.
#[derive(Clone)]
pub(crate) enum Credential {
    /// The decoded account key (the HMAC key for SharedKey and SAS signatures).
    Key(Vec<u8>),
    /// Bearer tokens of a managed identity; links are signed with user-delegation keys.
    Identity {
        identity: ManagedIdentity,
        endpoint: IdentityEndpoint,
    },
}

/// Everything needed to reach one storage account.
#[derive(Clone)]
pub(crate) struct ConnectionSettings {
    pub account: String,
    pub credential: Credential,
    /// Without a trailing slash; path-style for Azurite (`http://host:port/account`).
    pub blob_endpoint: Url,
    pub queue_endpoint: Url,
    pub table_endpoint: Url,
}

impl fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionSettings")
            .field("account", &self.account)
            .field(
                "credential",
                &match &self.credential {
                    Credential::Key(_) => "account key <redacted>".to_owned(),
                    Credential::Identity { identity, .. } => format!("{identity:?}"),
                },
            )
            .field("blob_endpoint", &self.blob_endpoint.as_str())
            .field("queue_endpoint", &self.queue_endpoint.as_str())
            .field("table_endpoint", &self.table_endpoint.as_str())
            .finish()
    }
}

/// The settings of a connection string, each at most once, not yet checked together.
#[derive(Default)]
struct Parts {
    use_dev: Option<String>,
    protocol: Option<String>,
    account: Option<String>,
    key: Option<String>,
    suffix: Option<String>,
    blob_endpoint: Option<String>,
    queue_endpoint: Option<String>,
    table_endpoint: Option<String>,
}

impl Parts {
    fn read(connection_string: &str) -> Result<Self, StoreError> {
        let mut parts = Parts::default();
        for (index, part) in connection_string.split(';').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            // Values may contain '=' (base64 padding in keys), so split at the first one only.
            let Some((name, value)) = part.split_once('=') else {
                return Err(invalid(format!(
                    "part {} is not of the form Name=Value",
                    index + 1
                )));
            };
            let name = name.trim();
            let Some(slot) = parts.slot(name, index)? else {
                continue;
            };
            if slot.replace(value.trim().to_owned()).is_some() {
                return Err(invalid(format!("setting {name:?} appears twice")));
            }
        }
        Ok(parts)
    }

    /// Where setting `name` goes; `None` for settings of services this app does not use.
    fn slot(
        &mut self,
        name: &str,
        index: usize,
    ) -> Result<Option<&mut Option<String>>, StoreError> {
        // Setting names are case-insensitive in every official SDK.
        Ok(Some(match name.to_ascii_lowercase().as_str() {
            "usedevelopmentstorage" => &mut self.use_dev,
            "defaultendpointsprotocol" => &mut self.protocol,
            "accountname" => &mut self.account,
            "accountkey" => &mut self.key,
            "endpointsuffix" => &mut self.suffix,
            "blobendpoint" => &mut self.blob_endpoint,
            "queueendpoint" => &mut self.queue_endpoint,
            "tableendpoint" => &mut self.table_endpoint,
            // Services this app does not use; portal strings may carry them.
            "fileendpoint" => return Ok(None),
            "sharedaccesssignature" => {
                return Err(invalid(
                    "SharedAccessSignature is not supported: the app signs download links \
                     with the account key, so AccountName and AccountKey are required"
                        .into(),
                ))
            }
            "developmentstorageproxyuri" => {
                return Err(invalid(
                    "DevelopmentStorageProxyUri is not supported; give BlobEndpoint and \
                     TableEndpoint instead"
                        .into(),
                ))
            }
            // Only a short, letters-only name is echoed: a mistyped `AccountKey` must not
            // leak the key through its value, nor a pasted key (which holds '=') through
            // its "name".
            _ if name.len() <= 32 && name.chars().all(|c| c.is_ascii_alphabetic()) => {
                return Err(invalid(format!("unknown setting {name:?}")));
            }
            _ => {
                return Err(invalid(format!(
                    "part {} is not a known setting",
                    index + 1
                )));
            }
        }))
    }

    fn any_but_use_dev(&self) -> bool {
        self.protocol.is_some()
            || self.account.is_some()
            || self.key.is_some()
            || self.suffix.is_some()
            || self.blob_endpoint.is_some()
            || self.queue_endpoint.is_some()
            || self.table_endpoint.is_some()
    }
}

impl ConnectionSettings {
    /// Parses `UseDevelopmentStorage=true` or a `Key=Value;…` account connection string.
    pub fn parse(connection_string: &str) -> Result<Self, StoreError> {
        let parts = Parts::read(connection_string)?;
        if let Some(flag) = &parts.use_dev {
            if !flag.eq_ignore_ascii_case("true") {
                return Err(invalid("UseDevelopmentStorage must be \"true\"".into()));
            }
            if parts.any_but_use_dev() {
                return Err(invalid(
                    "UseDevelopmentStorage=true takes no other settings; for Azurite on other \
                     ports give AccountName, AccountKey, BlobEndpoint, QueueEndpoint and TableEndpoint"
                        .into(),
                ));
            }
            return Ok(ConnectionSettings {
                account: DEV_ACCOUNT.to_owned(),
                credential: Credential::Key(decode_key(DEV_KEY)?),
                blob_endpoint: endpoint(DEV_BLOB_ENDPOINT, "BlobEndpoint")?,
                queue_endpoint: endpoint(DEV_QUEUE_ENDPOINT, "QueueEndpoint")?,
                table_endpoint: endpoint(DEV_TABLE_ENDPOINT, "TableEndpoint")?,
            });
        }
        Self::account(parts)
    }

    /// An account's connection string: name, key, and endpoints given or made from the suffix.
    fn account(parts: Parts) -> Result<Self, StoreError> {
        let Parts {
            protocol,
            account,
            key,
            suffix,
            blob_endpoint,
            queue_endpoint,
            table_endpoint,
            ..
        } = parts;
        let account = account
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid("AccountName is missing".into()))?;
        if !account
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(invalid(
                "AccountName must be lowercase letters and digits".into(),
            ));
        }
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| invalid("AccountKey is missing".into()))?;
        let key = decode_key(&key)?;

        let protocol = protocol.unwrap_or_else(|| "https".to_owned());
        if protocol != "https" && protocol != "http" {
            return Err(invalid(
                "DefaultEndpointsProtocol must be https or http".into(),
            ));
        }
        let suffix = suffix.unwrap_or_else(|| "core.windows.net".to_owned());
        let default_endpoint = |service: &str| format!("{protocol}://{account}.{service}.{suffix}");
        let blob_endpoint = endpoint(
            &blob_endpoint.unwrap_or_else(|| default_endpoint("blob")),
            "BlobEndpoint",
        )?;
        let queue_endpoint = endpoint(
            &queue_endpoint.unwrap_or_else(|| default_endpoint("queue")),
            "QueueEndpoint",
        )?;
        let table_endpoint = endpoint(
            &table_endpoint.unwrap_or_else(|| default_endpoint("table")),
            "TableEndpoint",
        )?;
        Ok(ConnectionSettings {
            account,
            credential: Credential::Key(key),
            blob_endpoint,
            queue_endpoint,
            table_endpoint,
        })
    }
}

impl ConnectionSettings {
    /// The endpoints of an identity-based connection: each service's URI when given, else the
    /// public cloud's for the account name. The account name (signed into every link) is the
    /// given one, else read from the blob URI: its first host label
    /// (`https://acme.blob.core.windows.net`), or its first path segment when the host is an
    /// address (`https://127.0.0.1:10000/devstoreaccount1`, Azurite's path style).
    pub fn from_identity(connection: &IdentityConnection) -> Result<Self, StoreError> {
        let invalid = |why: String| StoreError::Invalid(format!("AzureWebJobsStorage__*: {why}"));
        let account_name = connection
            .account_name
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty());
        if let Some(name) = account_name {
            if !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                return Err(invalid(
                    "accountName must be lowercase letters and digits".into(),
                ));
            }
        }
        let service = |given: &Option<String>, service: &str, setting: &str| match (
            given.as_deref().map(str::trim).filter(|u| !u.is_empty()),
            account_name,
        ) {
            (Some(uri), _) => identity_endpoint(uri, setting),
            (None, Some(name)) => identity_endpoint(
                &format!("https://{name}.{service}.core.windows.net"),
                setting,
            ),
            (None, None) => Err(invalid(format!(
                "{setting} is missing (give it, or accountName for the public cloud)"
            ))),
        };
        let blob_endpoint = service(&connection.blob_service_uri, "blob", "blobServiceUri")?;
        let queue_endpoint = service(&connection.queue_service_uri, "queue", "queueServiceUri")?;
        let table_endpoint = service(&connection.table_service_uri, "table", "tableServiceUri")?;
        let account = match account_name {
            Some(name) => name.to_owned(),
            None => account_of(&blob_endpoint).ok_or_else(|| {
                invalid(
                    "the account name cannot be read from blobServiceUri; give accountName too"
                        .into(),
                )
            })?,
        };
        Ok(ConnectionSettings {
            account,
            credential: Credential::Identity {
                identity: connection.identity.clone(),
                endpoint: connection.endpoint.clone(),
            },
            blob_endpoint,
            queue_endpoint,
            table_endpoint,
        })
    }
}

/// A service URI of an identity-based connection: tokens travel only over https.
fn identity_endpoint(raw: &str, setting: &str) -> Result<Url, StoreError> {
    let url = endpoint(raw, setting).map_err(|e| match e {
        StoreError::Invalid(m) => StoreError::Invalid(
            m.replace("storage connection string: ", "AzureWebJobsStorage__*: "),
        ),
        other => other,
    })?;
    if url.scheme() != "https" {
        return Err(StoreError::Invalid(format!(
            "AzureWebJobsStorage__*: {setting} must be an https URL (bearer tokens are never sent \
             over plain http)"
        )));
    }
    Ok(url)
}

/// The account a blob endpoint belongs to.
fn account_of(blob: &Url) -> Option<String> {
    let name = match blob.host()? {
        url::Host::Domain(domain) if domain != "localhost" => domain.split('.').next()?,
        _ => blob.path_segments()?.next()?,
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    valid.then(|| name.to_owned())
}

fn invalid(why: String) -> StoreError {
    StoreError::Invalid(format!("storage connection string: {why}"))
}

fn decode_key(key: &str) -> Result<Vec<u8>, StoreError> {
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err(invalid("AccountKey is not valid base64".into())),
    }
}

fn endpoint(raw: &str, setting: &str) -> Result<Url, StoreError> {
    let url = Url::parse(raw.trim_end_matches('/'))
        .map_err(|e| invalid(format!("{setting} is not a valid URL ({e})")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(invalid(format!("{setting} must be an http or https URL")));
    }
    if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "{setting} must be a base URL: a host, an optional path, no query"
        )));
    }
    if url.cannot_be_a_base() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(format!("{setting} must be a plain base URL")));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a2V5LWJ5dGVzLWZvci10ZXN0aW5nLW9ubHk=";

    fn parse(s: &str) -> Result<ConnectionSettings, StoreError> {
        ConnectionSettings::parse(s)
    }

    fn message(e: StoreError) -> String {
        match e {
            StoreError::Invalid(m) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn development_storage_points_at_azurite_default_ports() {
        let s = parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(s.account, "devstoreaccount1");
        assert_eq!(
            s.blob_endpoint.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert_eq!(
            s.table_endpoint.as_str(),
            "http://127.0.0.1:10002/devstoreaccount1"
        );
        assert!(matches!(&s.credential, Credential::Key(k) if k.len() == 64));
    }

    #[test]
    fn account_string_builds_public_cloud_endpoints() {
        let s = parse(&format!(
            "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={KEY};EndpointSuffix=core.windows.net"
        ))
        .unwrap();
        assert_eq!(s.account, "acme");
        assert_eq!(
            s.blob_endpoint.as_str(),
            "https://acme.blob.core.windows.net/"
        );
        assert_eq!(
            s.table_endpoint.as_str(),
            "https://acme.table.core.windows.net/"
        );
        assert!(matches!(&s.credential, Credential::Key(k) if k == b"key-bytes-for-testing-only"));
    }

    #[test]
    fn endpoint_suffix_selects_another_cloud() {
        let s = parse(&format!(
            "AccountName=acme;AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn"
        ))
        .unwrap();
        assert_eq!(
            s.table_endpoint.as_str(),
            "https://acme.table.core.chinacloudapi.cn/"
        );
    }

    #[test]
    fn explicit_endpoints_on_any_port_win_over_defaults() {
        let s = parse(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};\
             BlobEndpoint=http://127.0.0.1:41000/devstoreaccount1/;\
             TableEndpoint=http://127.0.0.1:41002/devstoreaccount1;"
        ))
        .unwrap();
        assert_eq!(
            s.blob_endpoint.as_str(),
            "http://127.0.0.1:41000/devstoreaccount1"
        );
        assert_eq!(
            s.table_endpoint.as_str(),
            "http://127.0.0.1:41002/devstoreaccount1"
        );
    }

    #[test]
    fn setting_names_are_case_insensitive_and_a_queue_endpoint_is_kept() {
        let s = parse(&format!(
            "accountname=acme;ACCOUNTKEY={KEY};QueueEndpoint=http://127.0.0.1:10001/acme"
        ))
        .unwrap();
        assert_eq!(s.account, "acme");
        assert_eq!(s.queue_endpoint.as_str(), "http://127.0.0.1:10001/acme");
    }

    #[test]
    fn missing_key_is_named() {
        let m = message(parse("AccountName=acme").unwrap_err());
        assert!(m.contains("AccountKey is missing"), "{m}");
    }

    #[test]
    fn missing_account_is_named() {
        let m = message(parse(&format!("AccountKey={KEY}")).unwrap_err());
        assert!(m.contains("AccountName is missing"), "{m}");
    }

    #[test]
    fn errors_never_echo_the_key() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
        for bad in [
            format!("AccountName=acme;AccountKey={secret};BlobEndpoint=not a url"),
            format!("AccountName=acme;AccountKey={secret}%%%"),
            format!("AccountName=acme;AcountKey={secret}"),
            format!("AccountName=acme;AccountKey={secret};AccountKey={secret}"),
            format!("AccountName=acme;{secret}"),
        ] {
            let m = message(parse(&bad).unwrap_err());
            assert!(!m.contains("c2VjcmV0"), "leaked the key: {m}");
        }
    }

    #[test]
    fn key_that_is_not_base64_is_refused() {
        let m = message(parse("AccountName=acme;AccountKey=not*base64").unwrap_err());
        assert!(m.contains("not valid base64"), "{m}");
    }

    #[test]
    fn unknown_setting_is_refused_by_name() {
        let m =
            message(parse(&format!("AccountName=acme;AccountKey={KEY};Colour=blue")).unwrap_err());
        assert!(m.contains("\"Colour\""), "{m}");
        assert!(!m.contains("blue"), "{m}");
    }

    #[test]
    fn sas_connection_strings_are_refused() {
        let m = message(
            parse("BlobEndpoint=https://acme.blob.core.windows.net;SharedAccessSignature=sv=x")
                .unwrap_err(),
        );
        assert!(m.contains("SharedAccessSignature"), "{m}");
    }

    #[test]
    fn development_storage_takes_no_other_settings() {
        assert!(parse("UseDevelopmentStorage=true;AccountName=acme").is_err());
        assert!(parse("UseDevelopmentStorage=false").is_err());
    }

    #[test]
    fn endpoint_must_be_http_or_https_without_query() {
        for endpoint in ["ftp://host/x", "http://host/x?sv=1", "not a url"] {
            let cs = format!("AccountName=acme;AccountKey={KEY};BlobEndpoint={endpoint}");
            assert!(parse(&cs).is_err(), "{endpoint} accepted");
        }
    }

    #[test]
    fn debug_output_hides_the_key() {
        let s = parse(&format!("AccountName=acme;AccountKey={KEY}")).unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains(KEY) && !shown.contains("key-bytes"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn malformed_part_is_reported_by_position() {
        let m = message(parse("AccountName=acme;garbage").unwrap_err());
        assert!(m.contains("part 2"), "{m}");
    }

    fn identity(
        account: Option<&str>,
        blob: Option<&str>,
        queue: Option<&str>,
        table: Option<&str>,
    ) -> Result<ConnectionSettings, StoreError> {
        ConnectionSettings::from_identity(&IdentityConnection {
            account_name: account.map(str::to_owned),
            blob_service_uri: blob.map(str::to_owned),
            queue_service_uri: queue.map(str::to_owned),
            table_service_uri: table.map(str::to_owned),
            identity: ManagedIdentity::SystemAssigned,
            endpoint: IdentityEndpoint {
                url: Url::parse("http://127.0.0.1:8081/msi/token").unwrap(),
                header: "secret".into(),
            },
        })
    }

    #[test]
    fn an_identity_account_name_gives_public_cloud_endpoints() {
        let s = identity(Some("acme"), None, None, None).unwrap();
        assert_eq!(s.account, "acme");
        assert_eq!(
            s.blob_endpoint.as_str(),
            "https://acme.blob.core.windows.net/"
        );
        assert_eq!(
            s.queue_endpoint.as_str(),
            "https://acme.queue.core.windows.net/"
        );
        assert_eq!(
            s.table_endpoint.as_str(),
            "https://acme.table.core.windows.net/"
        );
        assert!(matches!(s.credential, Credential::Identity { .. }));
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn identity_service_uris_win_and_name_the_account() {
        let s = identity(
            None,
            Some("https://acme.blob.core.chinacloudapi.cn"),
            Some("https://acme.queue.core.chinacloudapi.cn"),
            Some("https://acme.table.core.chinacloudapi.cn"),
        )
        .unwrap();
        assert_eq!(s.account, "acme");
        assert_eq!(
            s.table_endpoint.host_str(),
            Some("acme.table.core.chinacloudapi.cn")
        );
        // Azurite's path style: the account is the first path segment.
        let s = identity(
            None,
            Some("https://127.0.0.1:10000/devstoreaccount1"),
            Some("https://127.0.0.1:10001/devstoreaccount1"),
            Some("https://127.0.0.1:10002/devstoreaccount1"),
        )
        .unwrap();
        assert_eq!(s.account, "devstoreaccount1");
    }

    #[test]
    fn an_identity_connection_refuses_plain_http_and_missing_services() {
        let m = message(
            identity(
                None,
                Some("http://127.0.0.1:10000/devstoreaccount1"),
                Some("https://127.0.0.1:10001/devstoreaccount1"),
                Some("https://127.0.0.1:10002/devstoreaccount1"),
            )
            .unwrap_err(),
        );
        assert!(m.contains("blobServiceUri must be an https URL"), "{m}");
        let m = message(
            identity(None, Some("https://acme.blob.core.windows.net"), None, None).unwrap_err(),
        );
        assert!(m.contains("queueServiceUri is missing"), "{m}");
        let m = message(identity(Some("Not-Valid"), None, None, None).unwrap_err());
        assert!(m.contains("accountName"), "{m}");
    }
}
