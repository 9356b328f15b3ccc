//! Azure Blob, Queue and Table Storage behind [`Storage`], on the official SDK: blobs and
//! queues through the `azure_storage_blob` and `azure_storage_queue` clients, tables through a
//! thin client of our own (`tables`) on the same `azure_core` pipeline (`pipeline`), and
//! user-delegation links through `azure_storage_sas`.
//!
//! None of the SDK's types leaves this module: everything is mapped to the storage layer's own
//! types and to [`StoreError`]. What the SDK lacks is filled in here:
//!
//! - clients built from a connection string or from the host's identity-based settings
//!   (`connection`), sharing one pooled HTTP client with timeouts;
//! - Shared Key request signing and service SAS links, for accounts used with a key
//!   (`pipeline`, `sas`): the SDK signs with Entra tokens only;
//! - managed-identity tokens from the platform's endpoint as the app's settings name it
//!   (`identity`);
//! - streamed block uploads with a bounded number of blocks in memory (`blob`);
//! - typed entity JSON and OData filters (`table`);
//! - the Tables client (`tables`): entity group transactions written as the service documents
//!   them (one change set, CRLF lines) and answered per operation — a failed batch still
//!   answers HTTP 202, so every operation's status is read from the multipart answer.
//!
//! Retries: the pipeline retries I/O errors and 408/429/5xx a few times with backoff, then
//! the error surfaces as [`StoreError::Unavailable`]. A conditional write whose response was
//! lost may therefore come back as `PreconditionFailed` (or an insert as `AlreadyExists`) for a
//! write that did apply; callers of conditional writes already reload and re-check on those.

mod blob;
mod connection;
mod identity;
mod pipeline;
mod queue;
mod sas;
mod table;
mod tables;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::RequestContent;
use azure_storage_blob::models::KeyInfo;
use azure_storage_blob::{BlobClient, BlobServiceClient, BlobServiceClientOptions};
use azure_storage_common::models::UserDelegationKey;
use azure_storage_queue::{QueueServiceClient, QueueServiceClientOptions};
use chrono::{DateTime, Utc};

use self::blob::UploadShape;
use self::connection::{ConnectionSettings, Credential};
use self::identity::ManagedIdentityCredential;
use self::pipeline::{Auth, Service};
pub use crate::config::IdentityConnection;
pub use crate::config::{IdentityEndpoint, ManagedIdentity};
use crate::store::{
    validate_batch, validate_blob_name, validate_container_name, validate_message,
    validate_queue_name, validate_reception, validate_renewal, validate_table_name, BatchOp,
    BlobAt, BlobProperties, BlobRead, ByteStream, ETag, Entity, MessageReceipt, NextVisible, Page,
    PutBlobOptions, ReceivedMessage, SignedUrlRequest, SignedWriteRequest, Snapshot, Storage,
    StoreError, StoreResult, StoredEntity, TableQuery,
};

/// 4 MiB blocks, 4 in flight. Against Azurite on 2 shared cores a 256 MiB stream went up at
/// 146–247 MB/s with a 37 MB peak RSS; 8 MiB × 4 was in the same (noisy) band at 65 MB, and one
/// block in flight was slower (130 MB/s). Azurite is the bottleneck on loopback, so the shape
/// that keeps an upload's memory well inside the 64 MiB budget wins.
pub const DEFAULT_BLOCK_SIZE: usize = 4 * 1024 * 1024;
pub const DEFAULT_BLOCKS_IN_FLIGHT: usize = 4;
/// Reads are fetched in ranges of this size, one request each, so no single request runs
/// long enough to meet the request timeout on a slow consumer.
pub const READ_CHUNK: u64 = 8 * 1024 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// No bytes for this long on an open response: the peer is gone.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole of one request, body included (an 8 MiB block at a crawl still fits).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Azure Storage (or Azurite) as the app's storage.
#[derive(Clone)]
pub struct AzureStore {
    settings: Arc<ConnectionSettings>,
    blobs: Arc<BlobServiceClient>,
    queues: Arc<QueueServiceClient>,
    tables: tables::TableClient,
    upload: UploadShape,
    /// Without an account key: the user-delegation key links are signed with, once fetched,
    /// and when it expires.
    delegation_key: Arc<tokio::sync::Mutex<Option<LentKey>>>,
}

/// A user-delegation key and when it expires.
type LentKey = (UserDelegationKey, DateTime<Utc>);

/// What a deployment may add to how the store connects.
#[derive(Debug, Clone, Default)]
pub struct AzureOptions {
    /// PEM certificates to trust besides the public roots: a private CA in front of the
    /// storage endpoints (Azure Stack Hub, a TLS-inspecting proxy, Azurite over https).
    pub extra_root_certificates: Option<Vec<u8>>,
}

/// How long a requested delegation key lives. Azure allows at most seven days from now; the
/// key must outlive every link signed with it, and upload links may live up to seven days.
const DELEGATION_KEY_LIFETIME: chrono::Duration = chrono::Duration::days(7);

/// A user-delegation key is fetched again when less than this is left of it, so that the links
/// signed with it stay valid for their whole life.
const DELEGATION_KEY_HEADROOM: chrono::Duration = chrono::Duration::hours(1);

impl fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureStore")
            .field("settings", &self.settings)
            .field("upload", &self.upload)
            .finish_non_exhaustive()
    }
}

impl AzureStore {
    /// A SAS for one blob, signed locally: with the account key, or else with a
    /// user-delegation key that outlives the link.
    async fn sas_url(
        &self,
        container: &str,
        name: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
        grant: sas::Grant<'_>,
    ) -> StoreResult<String> {
        let blob_url = self.blob(container, name)?.url().clone();
        let delegation;
        let signer = match &self.settings.credential {
            Credential::Key(key) => sas::Signer::AccountKey(key),
            Credential::Identity { .. } => {
                delegation = self.delegation_key(expires_at).await?;
                sas::Signer::Delegation(&delegation)
            }
        };
        sas::BlobSas {
            account: &self.settings.account,
            signer,
            blob_url,
            container,
            blob: name,
            expires_at,
            grant,
        }
        .url()
    }

    /// The cached user-delegation key, or a new one when it would expire before `until` (or
    /// within the hour). Keys are asked for the longest life Azure grants (seven days), so one
    /// request a week or so serves every link.
    async fn delegation_key(&self, until: DateTime<Utc>) -> StoreResult<UserDelegationKey> {
        let mut cached = self.delegation_key.lock().await;
        let now = Utc::now();
        if let Some((key, _)) = cached.as_ref().filter(|(_, expires_at)| {
            *expires_at >= until && *expires_at - now > DELEGATION_KEY_HEADROOM
        }) {
            return Ok(key.clone());
        }
        // Whole seconds, a few minutes back for clock skew; the expiry a little inside the
        // seven days the service allows from its own now.
        let start = now.timestamp() - 5 * 60;
        let expiry = (now + DELEGATION_KEY_LIFETIME).timestamp() - 10 * 60;
        let at = |seconds| {
            time::OffsetDateTime::from_unix_timestamp(seconds).map_err(StoreError::internal)
        };
        let key_info = RequestContent::try_from(KeyInfo {
            start: Some(at(start)?),
            expiry: Some(at(expiry)?),
            ..Default::default()
        })
        .map_err(|e| map_error("get user delegation key", e))?;
        let key = self
            .blobs
            .get_user_delegation_key(key_info, None)
            .await
            .map_err(|e| map_error("get user delegation key", e))?
            .into_model()
            .map_err(|e| map_error("get user delegation key", e))?;
        let expires_at = key
            .signed_expiry
            .map(from_sdk_time)
            .ok_or_else(|| StoreError::internal("a user-delegation key without an expiry"))?;
        tracing::info!(%expires_at, "fetched a user-delegation key for signing links");
        *cached = Some((key.clone(), expires_at));
        Ok(key)
    }

    /// Connects (lazily: no request is made here) with a storage connection string:
    /// `UseDevelopmentStorage=true` for Azurite on its default ports, or
    /// `DefaultEndpointsProtocol=…;AccountName=…;AccountKey=…[;EndpointSuffix=…]
    /// [;BlobEndpoint=…][;TableEndpoint=…]`. Errors: [`StoreError::Invalid`], naming the bad
    /// setting but never the key.
    pub fn from_connection_string(connection_string: &str) -> StoreResult<AzureStore> {
        Self::connect(
            ConnectionSettings::parse(connection_string)?,
            &AzureOptions::default(),
        )
    }

    /// [`AzureStore::from_connection_string`] with options.
    pub fn from_connection_string_with(
        connection_string: &str,
        options: &AzureOptions,
    ) -> StoreResult<AzureStore> {
        Self::connect(ConnectionSettings::parse(connection_string)?, options)
    }

    /// Connects (lazily) with a managed identity: requests carry its bearer tokens, and links
    /// are user-delegation SAS. Errors: [`StoreError::Invalid`] for bad settings.
    pub fn with_identity(
        connection: &IdentityConnection,
        options: &AzureOptions,
    ) -> StoreResult<AzureStore> {
        Self::connect(ConnectionSettings::from_identity(connection)?, options)
    }

    fn connect(settings: ConnectionSettings, options: &AzureOptions) -> StoreResult<AzureStore> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        if let Some(pem) = &options.extra_root_certificates {
            let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                StoreError::Invalid(format!("the extra root certificates are not PEM: {e}"))
            })?;
            if certificates.is_empty() {
                return Err(StoreError::Invalid(
                    "the extra root certificates file holds no certificate".into(),
                ));
            }
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http.build().map_err(StoreError::internal)?;
        let auth = match &settings.credential {
            Credential::Key(key) => Auth::Key {
                account: settings.account.clone(),
                key: key.clone(),
            },
            Credential::Identity { identity, endpoint } => Auth::Token(Arc::new(
                ManagedIdentityCredential::new(endpoint.clone(), identity.clone(), http.clone()),
            )),
        };
        let blob_options = BlobServiceClientOptions {
            client_options: pipeline::client_options(
                http.clone(),
                auth.clone(),
                Service::BlobOrQueue,
            ),
            version: pipeline::STORAGE_VERSION.to_owned(),
        };
        // No credential: the clients would add their own bearer policy; ours is in the options.
        let blobs =
            BlobServiceClient::new(settings.blob_endpoint.clone(), None, Some(blob_options))
                .map_err(|e| StoreError::Invalid(format!("the blob endpoint: {e}")))?;
        let queue_options = QueueServiceClientOptions {
            client_options: pipeline::client_options(
                http.clone(),
                auth.clone(),
                Service::BlobOrQueue,
            ),
            version: pipeline::STORAGE_VERSION.to_owned(),
        };
        let queues =
            QueueServiceClient::new(settings.queue_endpoint.clone(), None, Some(queue_options))
                .map_err(|e| StoreError::Invalid(format!("the queue endpoint: {e}")))?;
        let tables =
            tables::TableClient::new(pipeline::pipeline(http, auth), &settings.table_endpoint);
        Ok(AzureStore {
            settings: Arc::new(settings),
            blobs: Arc::new(blobs),
            queues: Arc::new(queues),
            tables,
            upload: UploadShape {
                block_size: DEFAULT_BLOCK_SIZE,
                in_flight: DEFAULT_BLOCKS_IN_FLIGHT,
            },
            delegation_key: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// Changes how uploads are cut up: blocks of `block_size` bytes (64 KiB to 100 MiB), at
    /// most `in_flight` of them sent at once (1 to 16). Memory per upload is about
    /// `block_size × (in_flight + 1)`.
    #[must_use]
    pub fn with_upload_blocks(mut self, block_size: usize, in_flight: usize) -> Self {
        self.upload = UploadShape {
            block_size: block_size.clamp(64 * 1024, 100 * 1024 * 1024),
            in_flight: in_flight.clamp(1, 16),
        };
        self
    }

    fn blob(&self, container: &str, name: &str) -> StoreResult<BlobClient> {
        validate_container_name(container)?;
        validate_blob_name(name)?;
        Ok(self.blobs.blob_client(container, name))
    }
}

#[async_trait]
impl Storage for AzureStore {
    fn backend_name(&self) -> &'static str {
        "azure"
    }

    fn signed_url_origin(&self) -> String {
        self.settings.blob_endpoint.origin().ascii_serialization()
    }

    async fn ensure_container(&self, container: &str) -> StoreResult<()> {
        validate_container_name(container)?;
        created(
            "create container",
            self.blobs
                .blob_container_client(container)
                .create(None)
                .await,
        )
    }

    async fn put_blob(
        &self,
        container: &str,
        name: &str,
        body: ByteStream,
        options: &PutBlobOptions,
    ) -> StoreResult<BlobProperties> {
        let client = self.blob(container, name)?;
        blob::upload(&client, body, options, self.upload).await
    }

    async fn read_blob(
        &self,
        at: BlobAt<'_>,
        range: Option<std::ops::Range<u64>>,
    ) -> StoreResult<BlobRead> {
        let client = self.blob(at.container, at.name)?;
        blob::read(client, at.snapshot, range, READ_CHUNK).await
    }

    async fn properties_at(&self, at: BlobAt<'_>) -> StoreResult<BlobProperties> {
        blob::properties(&self.blob(at.container, at.name)?, at.snapshot).await
    }

    async fn snapshot_blob(
        &self,
        container: &str,
        name: &str,
        if_match: Option<&ETag>,
    ) -> StoreResult<Snapshot> {
        blob::snapshot(&self.blob(container, name)?, if_match).await
    }

    async fn delete_blob(&self, container: &str, name: &str) -> StoreResult<()> {
        blob::delete(&self.blob(container, name)?).await
    }

    async fn signed_read_url(&self, request: &SignedUrlRequest<'_>) -> StoreResult<String> {
        let grant = sas::Grant::Read {
            download_name: request.download_name,
            snapshot: request.snapshot,
        };
        self.sas_url(request.container, request.name, request.expires_at, grant)
            .await
    }

    async fn signed_write_url(&self, request: &SignedWriteRequest<'_>) -> StoreResult<String> {
        let grant = sas::Grant::Write;
        self.sas_url(request.container, request.name, request.expires_at, grant)
            .await
    }

    async fn ensure_table(&self, table: &str) -> StoreResult<()> {
        validate_table_name(table)?;
        self.tables.create_table(table).await
    }

    async fn get_entity(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
    ) -> StoreResult<StoredEntity> {
        validate_table_name(table)?;
        self.tables.get(table, partition_key, row_key).await
    }

    async fn insert_entity(&self, table: &str, entity: &Entity) -> StoreResult<ETag> {
        validate_table_name(table)?;
        self.tables.insert(table, entity).await
    }

    async fn delete_entity(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
        if_match: Option<&ETag>,
    ) -> StoreResult<()> {
        validate_table_name(table)?;
        self.tables
            .delete(table, partition_key, row_key, if_match)
            .await
    }

    async fn query(&self, table: &str, query: &TableQuery) -> StoreResult<Page> {
        validate_table_name(table)?;
        self.tables.query(table, query).await
    }

    async fn ensure_queue(&self, queue: &str) -> StoreResult<()> {
        validate_queue_name(queue)?;
        queue::ensure(&self.queues, queue).await
    }

    async fn enqueue(
        &self,
        queue: &str,
        text: &str,
        delay: std::time::Duration,
    ) -> StoreResult<MessageReceipt> {
        validate_queue_name(queue)?;
        validate_message(text, delay)?;
        queue::enqueue(&self.queues, queue, text, delay).await
    }

    async fn dequeue(
        &self,
        queue: &str,
        max: u32,
        visibility: std::time::Duration,
    ) -> StoreResult<Vec<ReceivedMessage>> {
        validate_queue_name(queue)?;
        validate_reception(max, visibility)?;
        queue::dequeue(&self.queues, queue, max, visibility).await
    }

    async fn renew_message(
        &self,
        queue: &str,
        receipt: &MessageReceipt,
        text: &str,
        visibility: std::time::Duration,
    ) -> StoreResult<MessageReceipt> {
        validate_queue_name(queue)?;
        validate_renewal(visibility)?;
        queue::renew(&self.queues, queue, receipt, text, visibility).await
    }

    async fn delete_message(&self, queue: &str, receipt: &MessageReceipt) -> StoreResult<()> {
        validate_queue_name(queue)?;
        queue::delete(&self.queues, queue, receipt).await
    }

    async fn next_visible(&self, queue: &str) -> StoreResult<NextVisible> {
        validate_queue_name(queue)?;
        queue::next_visible(&self.queues, queue).await
    }

    async fn batch(
        &self,
        table: &str,
        partition_key: &str,
        operations: Vec<BatchOp>,
    ) -> StoreResult<Vec<Option<ETag>>> {
        // First, and on every backend: Azurite would accept what Azure refuses.
        validate_batch(partition_key, &operations)?;
        validate_table_name(table)?;
        self.tables.batch(table, partition_key, &operations).await
    }
}

/// The `ensure_*` methods are idempotent: a create that finds the resource already there
/// succeeds.
fn created<T>(operation: &'static str, result: azure_core::Result<T>) -> StoreResult<()> {
    match result.map_err(|e| map_error(operation, e)) {
        Ok(_) | Err(StoreError::AlreadyExists) => Ok(()),
        Err(other) => Err(other),
    }
}

/// `x-ms-date` now, in the RFC 1123 form the services read.
fn now_rfc1123() -> String {
    Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// A time as the SDK gives it (`time`), as the rest of the app keeps it (`chrono`).
pub(crate) fn from_sdk_time(t: time::OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default()
}

/// Maps an operation's status inside a batch; the crate keeps no error code there, but in a
/// single-partition batch of these operations each status has one meaning.
fn batch_failure(status: u16) -> StoreError {
    match status {
        404 => StoreError::NotFound,
        409 => StoreError::AlreadyExists,
        412 => StoreError::PreconditionFailed,
        408 | 429 | 500 | 502 | 503 | 504 => StoreError::unavailable(AzureFailure::Status {
            operation: "entity group transaction",
            status,
        }),
        400..=499 => StoreError::Invalid(format!(
            "the service refused an operation of the batch (HTTP {status})"
        )),
        _ => StoreError::internal(AzureFailure::Status {
            operation: "entity group transaction",
            status,
        }),
    }
}

/// The cause kept inside `Unavailable`/`Internal`: what was being done, and the SDK's error.
/// Requests carry SharedKey or bearer headers, never secrets in URLs (links are signed
/// locally, not sent), and the transport drops URLs from its errors, so errors hold none.
#[derive(Debug, thiserror::Error)]
enum AzureFailure {
    #[error("Azure Storage {operation} failed")]
    Sdk {
        operation: &'static str,
        #[source]
        source: azure_core::Error,
    },
    #[error("Azure Storage {operation} answered HTTP {status}")]
    Status {
        operation: &'static str,
        status: u16,
    },
    #[error("Azure Storage {operation} answered HTTP {status} {code}")]
    Answered {
        operation: &'static str,
        status: u16,
        code: String,
    },
}

/// What a status the service answered means to a caller, by status and error code.
fn status_error(operation: &'static str, status: u16, code: &str) -> StoreError {
    let failure = || AzureFailure::Answered {
        operation,
        status,
        code: code.to_owned(),
    };
    match status {
        404 => StoreError::NotFound,
        412 => StoreError::PreconditionFailed,
        // A queue message received again since (or deleted): the reception is gone.
        400 if code == "PopReceiptMismatch" => StoreError::NotFound,
        409 if code.ends_with("BeingDeleted") => StoreError::unavailable(failure()),
        409 if code.is_empty() || code.ends_with("AlreadyExists") => StoreError::AlreadyExists,
        408 | 429 | 500 | 502 | 503 | 504 => StoreError::unavailable(failure()),
        // The service refused the app's credentials (an expired or foreign token, a missing
        // role assignment, a rotated key): nothing a caller can fix, and it may pass once an
        // operator (or a fresh token) has. The log keeps the service's code.
        401 | 403 => StoreError::unavailable(failure()),
        400 | 411 | 413 | 414 | 416 => StoreError::Invalid(format!(
            "{operation}: the service refused the request (HTTP {status} {code})"
        )),
        _ => StoreError::internal(failure()),
    }
}

/// Maps an error of the SDK (the pipeline raises the service's refusals itself, with their
/// status and error code).
pub(crate) fn map_error(operation: &'static str, e: azure_core::Error) -> StoreError {
    if let ErrorKind::HttpResponse {
        status, error_code, ..
    } = e.kind()
    {
        return status_error(
            operation,
            u16::from(*status),
            error_code.as_deref().unwrap_or(""),
        );
    }
    let transient = matches!(
        e.kind(),
        ErrorKind::Io | ErrorKind::Connection | ErrorKind::Credential
    );
    let failure = AzureFailure::Sdk {
        operation,
        source: e,
    };
    // No connection, a broken one, or no token from the managed-identity endpoint: the
    // service cannot be reached as this app, which to a caller is the service being
    // unavailable.
    if transient {
        StoreError::unavailable(failure)
    } else {
        StoreError::internal(failure)
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn batch_statuses_map_to_store_errors() {
        assert!(matches!(batch_failure(412), StoreError::PreconditionFailed));
        assert!(matches!(batch_failure(409), StoreError::AlreadyExists));
        assert!(matches!(batch_failure(404), StoreError::NotFound));
        assert!(matches!(batch_failure(400), StoreError::Invalid(_)));
        assert!(batch_failure(503).is_transient());
    }

    #[test]
    fn store_debug_output_hides_the_key() {
        let store = AzureStore::from_connection_string("UseDevelopmentStorage=true").unwrap();
        let shown = format!("{store:?}");
        assert!(shown.contains("devstoreaccount1"), "{shown}");
        assert!(!shown.contains("Eby8vdM02"), "{shown}");
    }

    #[test]
    fn upload_shape_is_clamped() {
        let store = AzureStore::from_connection_string("UseDevelopmentStorage=true")
            .unwrap()
            .with_upload_blocks(1, 1000);
        assert_eq!(store.upload.block_size, 64 * 1024);
        assert_eq!(store.upload.in_flight, 16);
    }
}
