//! Settings, read from the environment only (API.md, "Settings"). Under the Functions host they
//! come from app settings (`local.settings.json` `Values` locally). A bad value stops start-up
//! with a message that names the variable.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use url::Url;

use crate::domain::{valid_storage_name, Reviewers, ReviewersError, UnscannablePolicy};

/// How the process was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Started by the Functions host, which set `FUNCTIONS_CUSTOMHANDLER_PORT`.
    CustomHandler { port: u16 },
    /// Started by hand; the app does the host's duties itself.
    Local { port: u16 },
}

impl RunMode {
    pub fn port(self) -> u16 {
        match self {
            RunMode::CustomHandler { port } | RunMode::Local { port } => port,
        }
    }
    pub fn is_local(self) -> bool {
        matches!(self, RunMode::Local { .. })
    }
}

/// Where files and workflow state live.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageSetting {
    /// `AzureWebJobsStorage`: a connection string (it holds the account key: never print it).
    Azure { connection_string: String },
    /// `AzureWebJobsStorage__*`: the account's endpoints and the managed identity that opens
    /// them; no key.
    AzureIdentity(Box<IdentityConnection>),
    /// The embedded on-disk store.
    Embedded { data_dir: PathBuf },
}

impl fmt::Debug for StorageSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageSetting::Azure { .. } => f.write_str("Azure { connection_string: <redacted> }"),
            StorageSetting::AzureIdentity(connection) => {
                f.debug_tuple("AzureIdentity").field(connection).finish()
            }
            StorageSetting::Embedded { data_dir } => f
                .debug_struct("Embedded")
                .field("data_dir", data_dir)
                .finish(),
        }
    }
}

/// The Easy Auth side of the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EasyAuth {
    /// The app role that may decide (`FILE_APPROVER_REVIEWER_ROLE`, default `Reviewer`).
    pub reviewer_role: String,
    /// The app role that may upload (`FILE_APPROVER_UPLOADER_ROLE`); unset: anyone signed in.
    pub uploader_role: Option<String>,
    /// The app role that may revoke an approved file besides reviewing
    /// (`FILE_APPROVER_REVOKER_ROLE`); unset: any reviewer.
    pub revoker_role: Option<String>,
}

/// Where events go and how they are signed.
#[derive(Clone)]
pub struct Webhook {
    pub url: Url,
    pub secret: Vec<u8>,
    /// One delivery attempt's limit: a receiver slower than this counts as down.
    pub timeout: std::time::Duration,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url.as_str())
            .field("secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The host's identity-based connection, as its settings gave it: an account name (endpoints
/// on the public cloud), or the service URIs (other clouds, private endpoints, Azurite), and
/// the identity whose tokens open them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConnection {
    /// `AzureWebJobsStorage__accountName`.
    pub account_name: Option<String>,
    /// `AzureWebJobsStorage__blobServiceUri` (or `__serviceUri`).
    pub blob_service_uri: Option<String>,
    /// `AzureWebJobsStorage__queueServiceUri`.
    pub queue_service_uri: Option<String>,
    /// `AzureWebJobsStorage__tableServiceUri`.
    pub table_service_uri: Option<String>,
    pub identity: ManagedIdentity,
    /// The platform's token endpoint (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`).
    pub endpoint: IdentityEndpoint,
}

/// Where tokens come from: the platform's `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityEndpoint {
    pub url: Url,
    /// Sent as `X-IDENTITY-HEADER`; it proves the caller runs on the instance.
    pub header: String,
}

impl fmt::Debug for IdentityEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityEndpoint")
            .field("url", &self.url.as_str())
            .field("header", &"<redacted>")
            .finish()
    }
}

/// Which identity to ask for: the app's system-assigned one, or a user-assigned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedIdentity {
    SystemAssigned,
    /// `AzureWebJobsStorage__clientId`.
    ClientId(String),
    /// `AzureWebJobsStorage__managedIdentityResourceId`.
    ResourceId(String),
}

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    /// `tcp://host:port`.
    Tcp(String),
    /// The path of a unix socket.
    Unix(PathBuf),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClamdAddressError {
    #[error("must be tcp://host:port or the absolute path of a unix socket, not {0:?}")]
    Invalid(String),
}

impl ClamdAddress {
    pub fn parse(raw: &str) -> Result<Self, ClamdAddressError> {
        let raw = raw.trim();
        if let Some(rest) = raw.strip_prefix("tcp://") {
            let rest = rest.trim_end_matches('/');
            let valid = rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            return if valid {
                Ok(ClamdAddress::Tcp(rest.to_owned()))
            } else {
                Err(ClamdAddressError::Invalid(raw.chars().take(200).collect()))
            };
        }
        if raw.starts_with('/') {
            return Ok(ClamdAddress::Unix(PathBuf::from(raw)));
        }
        Err(ClamdAddressError::Invalid(raw.chars().take(200).collect()))
    }
}

impl std::fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClamdAddress::Tcp(hostport) => write!(f, "tcp://{hostport}"),
            ClamdAddress::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Which scanner looks at every file before a person does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScannerChoice {
    /// None: files go to review with the verdict `notScanned`.
    None,
    /// ClamAV's clamd (`FILE_APPROVER_CLAMD`).
    ClamAv(ClamdAddress),
    /// Microsoft Defender for Storage's on-upload malware scanning: its results arrive as
    /// Event Grid events (`scan_result/`).
    Defender,
}

/// The content-safety gate's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSettings {
    pub scanner: ScannerChoice,
    /// `FILE_APPROVER_SCAN_TIMEOUT_SECS` (default 3600): how long a file may wait for a
    /// verdict before it counts as unscannable.
    pub timeout_secs: u64,
    /// `FILE_APPROVER_SCAN_UNSCANNABLE` (default `block`).
    pub unscannable: UnscannablePolicy,
    /// `FILE_APPROVER_BLOCKED_FILES=quarantine` (default `delete`): a blocked file's bytes are
    /// moved to the quarantine container instead of deleted.
    pub quarantine: bool,
}

#[derive(Clone)]
pub struct Settings {
    pub mode: RunMode,
    pub storage: StorageSetting,
    /// `FILE_APPROVER_STORAGE_CA_FILE`: PEM certificates the Azure store trusts besides the
    /// public roots.
    pub storage_ca_file: Option<PathBuf>,
    /// Empty (and no Easy Auth): approvals are not authenticated (reviewer `anonymous`).
    pub reviewers: Reviewers,
    /// `FILE_APPROVER_UPLOADERS`: who may upload, by token, besides the reviewers. Set:
    /// uploads need a token (or an Easy Auth sign-in).
    pub uploaders: Reviewers,
    /// `FILE_APPROVER_EASY_AUTH=true`: trust App Service Authentication's principal headers.
    pub easy_auth: Option<EasyAuth>,
    /// `FILE_APPROVER_FOUR_EYES` (default on): nobody approves their own upload, and the
    /// download is approved by someone other than the upload's approvers.
    pub four_eyes: bool,
    /// Distinct approvals each stage needs (`FILE_APPROVER_UPLOAD_QUORUM`,
    /// `FILE_APPROVER_DOWNLOAD_QUORUM`; 1 to 10, default 1).
    pub upload_quorum: u32,
    pub download_quorum: u32,
    /// `FILE_APPROVER_WEBHOOK_URL` + `_SECRET` (+ `_TIMEOUT_MS`): where notifications go.
    pub webhook: Option<Webhook>,
    /// `FILE_APPROVER_REMINDER_BEFORE_SECS`: remind this long before a stage's deadline.
    pub reminder_before_secs: Option<u64>,
    /// `FILE_APPROVER_RETENTION_SECS` (default 0): how long a refused file's bytes are kept.
    pub retention_secs: u64,
    pub max_upload_bytes: u64,
    /// The largest file an upload URL may be asked for.
    pub max_direct_upload_bytes: u64,
    /// How long an upload URL stays valid.
    pub upload_url_ttl_secs: u64,
    pub download_ttl_secs: u64,
    /// `FILE_APPROVER_MAX_DOWNLOADS`: how many downloads of one file its links allow in all;
    /// unset, no limit.
    pub max_downloads: Option<u64>,
    /// `FILE_APPROVER_BIND_DOWNLOAD_LINKS` (default false): a link asked for by a signed-in
    /// person or a token's holder works for them alone.
    pub bind_download_links: bool,
    /// `FILE_APPROVER_REQUIRE_REASON` (default true): a rejection or a change request needs a
    /// comment.
    pub require_reason: bool,
    /// Embedded store only: the base of the signed download links it hands out.
    pub public_url: Option<String>,
    /// Embedded store only: the link-signing secret (else a key file in the data dir).
    pub signing_key: Option<Vec<u8>>,
    /// How often local mode sweeps the open uploads (what the `sweep` timer does under the
    /// host); 0 turns it off (tests run it by hand).
    pub sweep_interval_secs: u64,
    /// The queue the workflows' work travels on; under the host, `work/function.json` names it.
    pub work_queue: String,
    /// Files up to this size are analyzed inside the approval's turn (no work message); 0
    /// sends every analysis through the work queue.
    pub inline_analysis_max_bytes: u64,
    /// An approval not given within this many seconds ends the workflow as `Expired`.
    pub approval_timeout_secs: Option<u64>,
    /// The storage time one request may spend before it answers 503.
    pub storage_budget: std::time::Duration,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: std::time::Duration,
    pub scan: ScanSettings,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("mode", &self.mode)
            .field("storage", &self.storage)
            .field("storage_ca_file", &self.storage_ca_file)
            .field("reviewers", &self.reviewers)
            .field("uploaders", &self.uploaders)
            .field("easy_auth", &self.easy_auth)
            .field("four_eyes", &self.four_eyes)
            .field("upload_quorum", &self.upload_quorum)
            .field("download_quorum", &self.download_quorum)
            .field("webhook", &self.webhook)
            .field("reminder_before_secs", &self.reminder_before_secs)
            .field("retention_secs", &self.retention_secs)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_direct_upload_bytes", &self.max_direct_upload_bytes)
            .field("upload_url_ttl_secs", &self.upload_url_ttl_secs)
            .field("download_ttl_secs", &self.download_ttl_secs)
            .field("max_downloads", &self.max_downloads)
            .field("bind_download_links", &self.bind_download_links)
            .field("require_reason", &self.require_reason)
            .field("public_url", &self.public_url)
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("sweep_interval_secs", &self.sweep_interval_secs)
            .field("work_queue", &self.work_queue)
            .field("inline_analysis_max_bytes", &self.inline_analysis_max_bytes)
            .field("approval_timeout_secs", &self.approval_timeout_secs)
            .field("storage_budget", &self.storage_budget)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("scan", &self.scan)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("FILE_APPROVER_REVIEWERS: {0}")]
    Reviewers(#[from] ReviewersError),
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// The same as [`Settings::from_env`] over a given map, so tests need not touch the
    /// process environment.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        // An empty value counts as unset: `local.settings.json` and app settings often carry
        // keys with empty values.
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

        let mode = run_mode(&get)?;
        let storage = storage(vars, &get, mode)?;
        let reviewers = match get("FILE_APPROVER_REVIEWERS") {
            Some(raw) => {
                let r = Reviewers::parse(raw)?;
                if r.is_empty() {
                    return Err(invalid("FILE_APPROVER_REVIEWERS", "lists no reviewer"));
                }
                r
            }
            None => Reviewers::default(),
        };
        let uploaders = match get("FILE_APPROVER_UPLOADERS") {
            Some(raw) => {
                let u = Reviewers::parse(raw)
                    .map_err(|e| invalid("FILE_APPROVER_UPLOADERS", e.to_string()))?;
                if u.is_empty() {
                    return Err(invalid("FILE_APPROVER_UPLOADERS", "lists no uploader"));
                }
                u
            }
            None => Reviewers::default(),
        };
        let easy_auth = match parse_bool("FILE_APPROVER_EASY_AUTH", get, false)? {
            false => None,
            true => Some(EasyAuth {
                reviewer_role: get("FILE_APPROVER_REVIEWER_ROLE")
                    .unwrap_or("Reviewer")
                    .to_owned(),
                uploader_role: get("FILE_APPROVER_UPLOADER_ROLE").map(str::to_owned),
                revoker_role: get("FILE_APPROVER_REVOKER_ROLE").map(str::to_owned),
            }),
        };
        let (upload_quorum, download_quorum) =
            quorums(&get, !reviewers.is_empty() || easy_auth.is_some())?;

        Ok(Settings {
            mode,
            storage,
            storage_ca_file: get("FILE_APPROVER_STORAGE_CA_FILE").map(PathBuf::from),
            reviewers,
            uploaders,
            easy_auth,
            four_eyes: parse_bool("FILE_APPROVER_FOUR_EYES", get, true)?,
            upload_quorum,
            download_quorum,
            webhook: webhook(&get)?,
            reminder_before_secs: optional_secs(&get, "FILE_APPROVER_REMINDER_BEFORE_SECS")?,
            retention_secs: parse_u64("FILE_APPROVER_RETENTION_SECS", get, 0, 0)?,
            max_upload_bytes: parse_u64("FILE_APPROVER_MAX_UPLOAD_BYTES", get, 104_857_600, 1)?,
            max_direct_upload_bytes: parse_u64(
                "FILE_APPROVER_MAX_DIRECT_UPLOAD_BYTES",
                get,
                1 << 40,
                1,
            )?,
            upload_url_ttl_secs: sas_ttl(&get, "FILE_APPROVER_UPLOAD_URL_TTL_SECS", 900, 60)?,
            download_ttl_secs: sas_ttl(&get, "FILE_APPROVER_DOWNLOAD_TTL_SECS", 3600, 1)?,
            max_downloads: match get("FILE_APPROVER_MAX_DOWNLOADS") {
                None => None,
                Some(_) => Some(parse_u64("FILE_APPROVER_MAX_DOWNLOADS", get, 0, 1)?),
            },
            bind_download_links: parse_bool("FILE_APPROVER_BIND_DOWNLOAD_LINKS", get, false)?,
            require_reason: parse_bool("FILE_APPROVER_REQUIRE_REASON", get, true)?,
            public_url: public_url(&get)?,
            signing_key: match get("FILE_APPROVER_SIGNING_KEY") {
                Some(k) if k.len() < 32 => {
                    return Err(invalid(
                        "FILE_APPROVER_SIGNING_KEY",
                        "must be at least 32 characters",
                    ))
                }
                Some(k) => Some(k.as_bytes().to_vec()),
                None => None,
            },
            sweep_interval_secs: parse_u64("FILE_APPROVER_SWEEP_INTERVAL_SECS", get, 60, 0)?,
            work_queue: work_queue(&get)?,
            inline_analysis_max_bytes: inline_analysis_max_bytes(get)?,
            approval_timeout_secs: optional_secs(&get, "FILE_APPROVER_APPROVAL_TIMEOUT_SECS")?,
            storage_budget: std::time::Duration::from_millis(parse_u64(
                "FILE_APPROVER_STORAGE_BUDGET_MS",
                get,
                5000,
                1,
            )?),
            header_read_timeout: std::time::Duration::from_millis(parse_u64(
                "FILE_APPROVER_HEADER_TIMEOUT_MS",
                get,
                10_000,
                1,
            )?),
            scan: scan(&get)?,
        })
    }
}

fn scan<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<ScanSettings, ConfigError> {
    let clamd = get("FILE_APPROVER_CLAMD")
        .map(|raw| {
            ClamdAddress::parse(raw).map_err(|e| invalid("FILE_APPROVER_CLAMD", e.to_string()))
        })
        .transpose()?;
    let scanner = match (
        get("FILE_APPROVER_SCANNER").map(str::to_ascii_lowercase),
        clamd,
    ) {
        (None, Some(address)) => ScannerChoice::ClamAv(address),
        (None, None) => ScannerChoice::None,
        (Some(choice), clamd) => match (choice.as_str(), clamd) {
            ("clamav", Some(address)) => ScannerChoice::ClamAv(address),
            ("clamav", None) => {
                return Err(invalid(
                    "FILE_APPROVER_CLAMD",
                    "is required with FILE_APPROVER_SCANNER=clamav: clamd's address, \
                     tcp://host:port or a unix socket's path",
                ))
            }
            ("none", None) => ScannerChoice::None,
            ("none", Some(_)) => {
                return Err(invalid(
                    "FILE_APPROVER_SCANNER",
                    "is none, yet FILE_APPROVER_CLAMD names a clamd: remove one of them",
                ))
            }
            ("defender", None) => ScannerChoice::Defender,
            ("defender", Some(_)) => {
                return Err(invalid(
                    "FILE_APPROVER_SCANNER",
                    "is defender, yet FILE_APPROVER_CLAMD names a clamd: choose one scanner",
                ))
            }
            _ => {
                return Err(invalid(
                    "FILE_APPROVER_SCANNER",
                    "must be clamav, defender or none",
                ))
            }
        },
    };
    let unscannable = match get("FILE_APPROVER_SCAN_UNSCANNABLE") {
        Some(raw) => UnscannablePolicy::parse(raw)
            .map_err(|e| invalid("FILE_APPROVER_SCAN_UNSCANNABLE", e.to_string()))?,
        None => UnscannablePolicy::Block,
    };
    let quarantine = match get("FILE_APPROVER_BLOCKED_FILES").map(str::to_ascii_lowercase) {
        None => false,
        Some(v) if v == "delete" => false,
        Some(v) if v == "quarantine" => true,
        Some(_) => {
            return Err(invalid(
                "FILE_APPROVER_BLOCKED_FILES",
                "must be delete or quarantine",
            ))
        }
    };
    Ok(ScanSettings {
        scanner,
        timeout_secs: parse_u64("FILE_APPROVER_SCAN_TIMEOUT_SECS", get, 3600, 1)?,
        unscannable,
        quarantine,
    })
}

fn run_mode<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<RunMode, ConfigError> {
    Ok(match get("FUNCTIONS_CUSTOMHANDLER_PORT") {
        Some(p) => RunMode::CustomHandler {
            port: parse_port("FUNCTIONS_CUSTOMHANDLER_PORT", p)?,
        },
        None => RunMode::Local {
            port: match get("PORT") {
                Some(p) => parse_port("PORT", p)?,
                None => 7071,
            },
        },
    })
}

/// The two stages' quorums (1 to 10). More than one approval needs reviewers that can be told
/// apart (`known_reviewers`).
fn quorums<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    known_reviewers: bool,
) -> Result<(u32, u32), ConfigError> {
    let quorum = |name: &'static str| -> Result<u32, ConfigError> {
        let q = parse_u64(name, get, 1, 1)?;
        if q > 10 {
            return Err(invalid(name, "is more than 10 distinct approvals"));
        }
        Ok(u32::try_from(q).unwrap_or(1))
    };
    let upload_quorum = quorum("FILE_APPROVER_UPLOAD_QUORUM")?;
    let download_quorum = quorum("FILE_APPROVER_DOWNLOAD_QUORUM")?;
    if (upload_quorum > 1 || download_quorum > 1) && !known_reviewers {
        return Err(invalid(
            if upload_quorum > 1 {
                "FILE_APPROVER_UPLOAD_QUORUM"
            } else {
                "FILE_APPROVER_DOWNLOAD_QUORUM"
            },
            "needs known reviewers (FILE_APPROVER_REVIEWERS or FILE_APPROVER_EASY_AUTH): \
             anonymous approvals cannot be told apart",
        ));
    }
    Ok((upload_quorum, download_quorum))
}

fn webhook<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<Option<Webhook>, ConfigError> {
    let Some(raw) = get("FILE_APPROVER_WEBHOOK_URL") else {
        return Ok(None);
    };
    let url = Url::parse(raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| invalid("FILE_APPROVER_WEBHOOK_URL", "must be an http(s) URL"))?;
    let secret = get("FILE_APPROVER_WEBHOOK_SECRET").ok_or_else(|| {
        invalid(
            "FILE_APPROVER_WEBHOOK_SECRET",
            "is required with FILE_APPROVER_WEBHOOK_URL: it signs every event",
        )
    })?;
    if secret.len() < 16 {
        return Err(invalid(
            "FILE_APPROVER_WEBHOOK_SECRET",
            "must be at least 16 characters",
        ));
    }
    Ok(Some(Webhook {
        url,
        secret: secret.as_bytes().to_vec(),
        timeout: std::time::Duration::from_millis(parse_u64(
            "FILE_APPROVER_WEBHOOK_TIMEOUT_MS",
            get,
            10_000,
            1,
        )?),
    }))
}

/// A number of seconds (at least 1) that may be left unset.
fn optional_secs<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    name: &'static str,
) -> Result<Option<u64>, ConfigError> {
    match get(name) {
        Some(_) => Ok(Some(parse_u64(name, get, 0, 1)?)),
        None => Ok(None),
    }
}

/// How long a signed link lives: at most 7 days, the longest a service SAS should live.
fn sas_ttl<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    name: &'static str,
    default: u64,
    min: u64,
) -> Result<u64, ConfigError> {
    let secs = parse_u64(name, get, default, min)?;
    if secs > 7 * 24 * 3600 {
        return Err(invalid(
            name,
            "is longer than 7 days, the longest a service SAS should live",
        ));
    }
    Ok(secs)
}

fn work_queue<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<String, ConfigError> {
    let work_queue = get("FILE_APPROVER_WORK_QUEUE").unwrap_or("workflow-work");
    if !valid_storage_name(work_queue) {
        return Err(invalid(
            "FILE_APPROVER_WORK_QUEUE",
            format!(
                "queue name {work_queue:?} must be 3-63 lowercase letters, digits and single hyphens"
            ),
        ));
    }
    Ok(work_queue.to_owned())
}

fn public_url<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<Option<String>, ConfigError> {
    let Some(u) = get("FILE_APPROVER_PUBLIC_URL") else {
        return Ok(None);
    };
    let parsed = Url::parse(u).map_err(|e| invalid("FILE_APPROVER_PUBLIC_URL", e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(invalid(
            "FILE_APPROVER_PUBLIC_URL",
            "must be an http(s) URL such as http://127.0.0.1:7071",
        ));
    }
    Ok(Some(u.trim_end_matches('/').to_owned()))
}

/// Where data lives. Under the host a missing `AzureWebJobsStorage` is an error, never a quiet
/// fallback to local disk: on Azure that disk is lost at the next scale-in, and two instances
/// would each keep their own truth. `FILE_APPROVER_STORAGE=embedded` opts in explicitly (a
/// single-instance test rig).
fn storage<'a>(
    vars: &'a HashMap<String, String>,
    get: &impl Fn(&str) -> Option<&'a str>,
    mode: RunMode,
) -> Result<StorageSetting, ConfigError> {
    const STORAGE: &str = "AzureWebJobsStorage";
    let embedded = || StorageSetting::Embedded {
        data_dir: PathBuf::from(get("FILE_APPROVER_DATA_DIR").unwrap_or("./data")),
    };
    let choice = get("FILE_APPROVER_STORAGE");
    match (choice, get(STORAGE)) {
        (Some("embedded"), _) => return Ok(embedded()),
        (Some("azure") | None, Some(cs)) => {
            return Ok(StorageSetting::Azure {
                connection_string: cs.to_owned(),
            })
        }
        (Some("azure") | None, None) => {}
        (Some(other), _) => {
            return Err(invalid(
                "FILE_APPROVER_STORAGE",
                format!(
                    "{:?} is not a store; give azure or embedded",
                    other.chars().take(32).collect::<String>()
                ),
            ))
        }
    }
    if let Some(connection) = identity_connection(vars, get)? {
        return Ok(StorageSetting::AzureIdentity(Box::new(connection)));
    }
    match (choice, mode) {
        (Some(_), _) => Err(invalid(
            STORAGE,
            "is required by FILE_APPROVER_STORAGE=azure",
        )),
        (None, RunMode::CustomHandler { .. }) => Err(invalid(
            STORAGE,
            "is required under the Functions host: the embedded store would keep data on an \
             instance's local disk, lost at scale-in and not shared between instances \
             (FILE_APPROVER_STORAGE=embedded opts in anyway, for a single-instance test rig)",
        )),
        (None, RunMode::Local { .. }) => Ok(embedded()),
    }
}

/// The host's identity-based connection (`AzureWebJobsStorage__accountName`, or the service
/// URIs; `__credential`, `__clientId`; `:` instead of `__` in local.settings.json), read the
/// way the Functions host reads it, with names matched without regard to case. `None` when no
/// such setting is given.
fn identity_connection<'a>(
    vars: &'a HashMap<String, String>,
    get: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Option<IdentityConnection>, ConfigError> {
    const STORAGE: &str = "AzureWebJobsStorage";
    let mut given: HashMap<String, (&str, &str)> = HashMap::new();
    for (name, value) in vars {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let Some(rest) = name
            .strip_prefix("AzureWebJobsStorage__")
            .or_else(|| name.strip_prefix("AzureWebJobsStorage:"))
        else {
            continue;
        };
        if given
            .insert(rest.to_ascii_lowercase(), (name.as_str(), value))
            .is_some()
        {
            return Err(invalid(
                STORAGE,
                format!("{rest} is given twice (with __ and with :)"),
            ));
        }
    }
    if given.is_empty() {
        return Ok(None);
    }
    let mut take = |key: &str| given.remove(key).map(|(_, v)| v.to_owned());
    let account_name = take("accountname");
    let blob = take("blobserviceuri");
    let service = take("serviceuri");
    if blob.is_some() && service.is_some() {
        return Err(invalid(
            STORAGE,
            "__blobServiceUri and __serviceUri are the same setting; give one",
        ));
    }
    let blob_service_uri = blob.or(service);
    let queue_service_uri = take("queueserviceuri");
    let table_service_uri = take("tableserviceuri");
    let credential = take("credential");
    let client_id = take("clientid");
    let resource_id = take("managedidentityresourceid");
    if let Some((name, _)) = given.values().next() {
        return Err(invalid(
            STORAGE,
            format!(
                "{name} is not supported: this app connects with a managed identity only \
                 (accountName or the service URIs, credential=managedidentity, clientId or \
                 managedIdentityResourceId)"
            ),
        ));
    }
    // Without `credential` the host uses its default chain, which on Azure is the managed
    // identity: the same here.
    if let Some(credential) = credential {
        if !credential.eq_ignore_ascii_case("managedidentity") {
            return Err(invalid(
                STORAGE,
                format!(
                    "__credential {:?} is not supported; give managedidentity",
                    credential.chars().take(32).collect::<String>()
                ),
            ));
        }
    }
    let identity = match (client_id, resource_id) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                STORAGE,
                "give __clientId or __managedIdentityResourceId, not both",
            ))
        }
        (Some(id), None) => ManagedIdentity::ClientId(id),
        (None, Some(id)) => ManagedIdentity::ResourceId(id),
        (None, None) => ManagedIdentity::SystemAssigned,
    };
    let endpoint = match (get("IDENTITY_ENDPOINT"), get("IDENTITY_HEADER")) {
        (Some(url), Some(header)) => IdentityEndpoint {
            url: url::Url::parse(url).map_err(|e| invalid("IDENTITY_ENDPOINT", e.to_string()))?,
            header: header.to_owned(),
        },
        _ => {
            return Err(invalid(
                STORAGE,
                "an identity-based connection needs the platform's managed-identity endpoint \
                 (IDENTITY_ENDPOINT and IDENTITY_HEADER, set by App Service and Azure Functions \
                 when the app has an identity); run elsewhere with a connection string in \
                 AzureWebJobsStorage",
            ))
        }
    };
    Ok(Some(IdentityConnection {
        account_name,
        blob_service_uri,
        queue_service_uri,
        table_service_uri,
        identity,
        endpoint,
    }))
}

fn parse_bool<'a>(
    name: &'static str,
    get: impl Fn(&str) -> Option<&'a str>,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(name).map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(_) => Err(invalid(name, "must be true or false")),
    }
}

fn parse_port(name: &'static str, raw: &str) -> Result<u16, ConfigError> {
    raw.parse::<u16>()
        .map_err(|_| invalid(name, format!("{raw:?} is not a port number (0–65535)")))
}

/// The largest file analyzed inside its approval's turn by default: one read of at most
/// this much, tens of milliseconds on Azure. Larger files go through the work queue, so no
/// request waits for a long analysis.
pub const DEFAULT_INLINE_ANALYSIS_MAX_BYTES: u64 = 4 * 1024 * 1024;

fn inline_analysis_max_bytes<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<u64, ConfigError> {
    parse_u64(
        "FILE_APPROVER_INLINE_ANALYSIS_MAX_BYTES",
        get,
        DEFAULT_INLINE_ANALYSIS_MAX_BYTES,
        0,
    )
}

fn parse_u64<'a>(
    name: &'static str,
    get: impl Fn(&str) -> Option<&'a str>,
    default: u64,
    min: u64,
) -> Result<u64, ConfigError> {
    let Some(raw) = get(name) else {
        return Ok(default);
    };
    let value = raw
        .parse::<u64>()
        .map_err(|_| invalid(name, format!("{raw:?} is not a whole number")))?;
    if value < min {
        return Err(invalid(name, format!("must be at least {min}")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    fn scan_settings(pairs: &[(&str, &str)]) -> Result<ScanSettings, ConfigError> {
        let mut vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        vars.insert("FILE_APPROVER_STORAGE".into(), "embedded".into());
        Settings::from_vars(&vars).map(|s| s.scan)
    }

    #[test]
    fn a_clamd_address_turns_scanning_on_with_safe_defaults() {
        let scan = scan_settings(&[("FILE_APPROVER_CLAMD", "tcp://127.0.0.1:3310")]).unwrap();
        assert_eq!(
            scan.scanner,
            ScannerChoice::ClamAv(ClamdAddress::Tcp("127.0.0.1:3310".into()))
        );
        assert_eq!(scan.timeout_secs, 3600);
        assert_eq!(scan.unscannable, UnscannablePolicy::Block);
        assert!(!scan.quarantine);
        assert_eq!(scan_settings(&[]).unwrap().scanner, ScannerChoice::None);
    }

    #[test]
    fn scan_settings_that_contradict_or_are_unknown_stop_the_start() {
        for bad in [
            vec![("FILE_APPROVER_SCANNER", "clamav")],
            vec![
                ("FILE_APPROVER_SCANNER", "none"),
                ("FILE_APPROVER_CLAMD", "tcp://h:1"),
            ],
            vec![
                ("FILE_APPROVER_SCANNER", "defender"),
                ("FILE_APPROVER_CLAMD", "tcp://h:1"),
            ],
            vec![("FILE_APPROVER_SCANNER", "norton")],
            vec![("FILE_APPROVER_CLAMD", "clamd:3310")],
            vec![
                ("FILE_APPROVER_CLAMD", "tcp://h:1"),
                ("FILE_APPROVER_SCAN_UNSCANNABLE", "allow"),
            ],
            vec![
                ("FILE_APPROVER_CLAMD", "tcp://h:1"),
                ("FILE_APPROVER_BLOCKED_FILES", "keep"),
            ],
            vec![
                ("FILE_APPROVER_CLAMD", "tcp://h:1"),
                ("FILE_APPROVER_SCAN_TIMEOUT_SECS", "0"),
            ],
        ] {
            assert!(scan_settings(&bad).is_err(), "{bad:?} was accepted");
        }
        let review = scan_settings(&[
            ("FILE_APPROVER_CLAMD", "/run/clamav/clamd.ctl"),
            ("FILE_APPROVER_SCAN_UNSCANNABLE", "review"),
            ("FILE_APPROVER_BLOCKED_FILES", "quarantine"),
        ])
        .unwrap();
        assert_eq!(review.unscannable, UnscannablePolicy::Review);
        assert!(review.quarantine);
        assert_eq!(
            scan_settings(&[("FILE_APPROVER_SCANNER", "Defender")])
                .unwrap()
                .scanner,
            ScannerChoice::Defender
        );
    }

    #[test]
    fn addresses_are_tcp_urls_or_socket_paths() {
        assert_eq!(
            ClamdAddress::parse("tcp://127.0.0.1:3310"),
            Ok(ClamdAddress::Tcp("127.0.0.1:3310".into()))
        );
        assert_eq!(
            ClamdAddress::parse("/run/clamav/clamd.ctl"),
            Ok(ClamdAddress::Unix("/run/clamav/clamd.ctl".into()))
        );
        assert!(ClamdAddress::parse("tcp://host").is_err());
        assert!(ClamdAddress::parse("tcp://:3310").is_err());
        assert!(ClamdAddress::parse("clamd:3310").is_err());
    }

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_settings_mean_local_mode_on_the_embedded_store() {
        let s = Settings::from_vars(&vars(&[])).unwrap();
        assert_eq!(s.mode, RunMode::Local { port: 7071 });
        assert_eq!(
            s.storage,
            StorageSetting::Embedded {
                data_dir: PathBuf::from("./data")
            }
        );
        assert!(s.reviewers.is_empty());
        assert_eq!(s.max_upload_bytes, 104_857_600);
        assert_eq!(s.download_ttl_secs, 3600);
    }

    #[test]
    fn the_host_port_selects_custom_handler_mode() {
        let s = Settings::from_vars(&vars(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "50308"),
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            ("PORT", "9"),
        ]))
        .unwrap();
        assert_eq!(s.mode, RunMode::CustomHandler { port: 50308 });
    }

    #[test]
    fn under_the_host_missing_storage_is_an_error_naming_the_setting() {
        let err =
            Settings::from_vars(&vars(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "50308")])).unwrap_err();
        assert!(err.to_string().starts_with("AzureWebJobsStorage"), "{err}");
        let explicit = Settings::from_vars(&vars(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "50308"),
            ("FILE_APPROVER_STORAGE", "embedded"),
        ]))
        .unwrap();
        assert!(matches!(explicit.storage, StorageSetting::Embedded { .. }));
    }

    const ENDPOINT: [(&str, &str); 2] = [
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:41234/msi/token"),
        ("IDENTITY_HEADER", "platform-secret"),
    ];

    fn identity_of(pairs: &[(&str, &str)]) -> Result<IdentityConnection, ConfigError> {
        let mut given = pairs.to_vec();
        given.extend(ENDPOINT);
        given.push(("FUNCTIONS_CUSTOMHANDLER_PORT", "50308"));
        match Settings::from_vars(&vars(&given))?.storage {
            StorageSetting::AzureIdentity(connection) => Ok(*connection),
            other => panic!("not an identity connection: {other:?}"),
        }
    }

    #[test]
    fn identity_based_storage_is_read_as_the_host_reads_it() {
        let c = identity_of(&[("AzureWebJobsStorage__accountName", "acme")]).unwrap();
        assert_eq!(c.account_name.as_deref(), Some("acme"));
        assert_eq!(c.identity, ManagedIdentity::SystemAssigned);
        assert_eq!(c.endpoint.header, "platform-secret");

        let c = identity_of(&[
            ("AzureWebJobsStorage:blobServiceUri", "https://b.example"),
            ("AzureWebJobsStorage__queueServiceUri", "https://q.example"),
            ("AzureWebJobsStorage__TableServiceUri", "https://t.example"),
            ("AzureWebJobsStorage__credential", "managedidentity"),
            ("AzureWebJobsStorage__clientId", "0000-client"),
        ])
        .unwrap();
        assert_eq!(c.blob_service_uri.as_deref(), Some("https://b.example"));
        assert_eq!(c.queue_service_uri.as_deref(), Some("https://q.example"));
        assert_eq!(c.table_service_uri.as_deref(), Some("https://t.example"));
        assert_eq!(c.identity, ManagedIdentity::ClientId("0000-client".into()));

        let c = identity_of(&[
            ("AzureWebJobsStorage__serviceUri", "https://b.example"),
            (
                "AzureWebJobsStorage__managedIdentityResourceId",
                "/subscriptions/x/id",
            ),
        ])
        .unwrap();
        assert_eq!(c.blob_service_uri.as_deref(), Some("https://b.example"));
        assert_eq!(
            c.identity,
            ManagedIdentity::ResourceId("/subscriptions/x/id".into())
        );
    }

    #[test]
    fn identity_based_storage_refuses_what_it_cannot_honour() {
        for (given, says) in [
            (
                vec![("AzureWebJobsStorage__credential", "clientsecret")],
                "managedidentity",
            ),
            (
                vec![("AzureWebJobsStorage__clientSecret", "s3cret")],
                "AzureWebJobsStorage__clientSecret is not supported",
            ),
            (
                vec![
                    ("AzureWebJobsStorage__clientId", "a"),
                    ("AzureWebJobsStorage__managedIdentityResourceId", "b"),
                ],
                "not both",
            ),
            (
                vec![
                    ("AzureWebJobsStorage__blobServiceUri", "https://b.example"),
                    ("AzureWebJobsStorage__serviceUri", "https://b.example"),
                ],
                "give one",
            ),
        ] {
            let err = identity_of(&given).unwrap_err().to_string();
            assert!(err.starts_with("AzureWebJobsStorage"), "{err}");
            assert!(err.contains(says), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        // Off the platform there is no token endpoint: said at start-up, not at first use.
        let err = Settings::from_vars(&vars(&[("AzureWebJobsStorage__accountName", "acme")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("IDENTITY_ENDPOINT"), "{err}");
    }

    #[test]
    fn people_settings_are_read_and_checked() {
        let s = Settings::from_vars(&vars(&[
            ("FILE_APPROVER_EASY_AUTH", "true"),
            ("FILE_APPROVER_UPLOADER_ROLE", "Uploader"),
            ("FILE_APPROVER_FOUR_EYES", "off"),
            ("FILE_APPROVER_UPLOAD_QUORUM", "2"),
            ("FILE_APPROVER_UPLOADERS", "uma:uma-token-0123456789"),
        ]))
        .unwrap();
        let easy = s.easy_auth.unwrap();
        assert_eq!(easy.reviewer_role, "Reviewer");
        assert_eq!(easy.uploader_role.as_deref(), Some("Uploader"));
        assert!(!s.four_eyes);
        assert_eq!((s.upload_quorum, s.download_quorum), (2, 1));
        assert_eq!(s.uploaders.len(), 1);
        let defaults = Settings::from_vars(&vars(&[])).unwrap();
        assert!(defaults.easy_auth.is_none() && defaults.four_eyes);
        for (name, value) in [
            ("FILE_APPROVER_EASY_AUTH", "maybe"),
            ("FILE_APPROVER_FOUR_EYES", "2"),
            ("FILE_APPROVER_UPLOAD_QUORUM", "0"),
            ("FILE_APPROVER_DOWNLOAD_QUORUM", "11"),
            ("FILE_APPROVER_UPLOADERS", "uma:short"),
            // Without known reviewers two approvals cannot be told apart.
            ("FILE_APPROVER_DOWNLOAD_QUORUM", "2"),
        ] {
            let err = Settings::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn identity_settings_never_show_the_endpoint_secret() {
        let s = Settings::from_vars(&vars(&[
            ("AzureWebJobsStorage__accountName", "acme"),
            ENDPOINT[0],
            ENDPOINT[1],
        ]))
        .unwrap();
        assert!(!format!("{s:?}").contains("platform-secret"));
    }

    #[test]
    fn a_connection_string_wins_and_azure_can_be_demanded() {
        let s = Settings::from_vars(&vars(&[
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            ("AzureWebJobsStorage__accountName", "ignored"),
        ]))
        .unwrap();
        assert!(matches!(s.storage, StorageSetting::Azure { .. }));
        let err = Settings::from_vars(&vars(&[("FILE_APPROVER_STORAGE", "azure")])).unwrap_err();
        assert!(err.to_string().starts_with("AzureWebJobsStorage"), "{err}");
        let err = Settings::from_vars(&vars(&[("FILE_APPROVER_STORAGE", "disk")])).unwrap_err();
        assert!(
            err.to_string().starts_with("FILE_APPROVER_STORAGE"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_setting() {
        for (name, value) in [
            ("PORT", "seventy"),
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "70000"),
            ("FILE_APPROVER_MAX_UPLOAD_BYTES", "-1"),
            ("FILE_APPROVER_DOWNLOAD_TTL_SECS", "0"),
            ("FILE_APPROVER_PUBLIC_URL", "ftp://x"),
            ("FILE_APPROVER_SIGNING_KEY", "short"),
            ("FILE_APPROVER_REVIEWERS", "alice"),
        ] {
            let err = Settings::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert!(
                err.to_string().starts_with(name),
                "{err} does not name {name}"
            );
        }
    }

    #[test]
    fn debug_output_hides_the_connection_string_and_keys() {
        let s = Settings::from_vars(&vars(&[
            ("AzureWebJobsStorage", "AccountName=a;AccountKey=c2VjcmV0"),
            (
                "FILE_APPROVER_SIGNING_KEY",
                "0123456789abcdef0123456789abcdef-secret",
            ),
        ]))
        .unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("secret"),
            "{shown}"
        );
    }
}
