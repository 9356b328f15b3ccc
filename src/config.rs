//! Settings, read from the environment only (API.md, "Settings"). Under the Functions host they
//! come from app settings (`local.settings.json` `Values` locally). A bad value stops start-up
//! with a message that names the variable.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use crate::domain::{Reviewers, ReviewersError};

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
    /// The embedded on-disk store.
    Embedded { data_dir: PathBuf },
}

impl fmt::Debug for StorageSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageSetting::Azure { .. } => f.write_str("Azure { connection_string: <redacted> }"),
            StorageSetting::Embedded { data_dir } => f
                .debug_struct("Embedded")
                .field("data_dir", data_dir)
                .finish(),
        }
    }
}

#[derive(Clone)]
pub struct Settings {
    pub mode: RunMode,
    pub storage: StorageSetting,
    /// Empty: approvals are not authenticated (reviewer `anonymous`).
    pub reviewers: Reviewers,
    pub max_upload_bytes: u64,
    pub download_ttl_secs: u64,
    /// Embedded store only: the base of the signed download links it hands out.
    pub public_url: Option<String>,
    /// Embedded store only: the link-signing secret (else a key file in the data dir).
    pub signing_key: Option<Vec<u8>>,
    /// How often local mode runs its duties (the engine's recovery, starting workflows that
    /// did not start); 0 turns them off (tests run them by hand).
    pub recover_interval_secs: u64,
    /// An approval not given within this many seconds ends the workflow as `Expired`.
    pub approval_timeout_secs: Option<u64>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("mode", &self.mode)
            .field("storage", &self.storage)
            .field("reviewers", &self.reviewers)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("download_ttl_secs", &self.download_ttl_secs)
            .field("public_url", &self.public_url)
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("recover_interval_secs", &self.recover_interval_secs)
            .field("approval_timeout_secs", &self.approval_timeout_secs)
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

        let mode = match get("FUNCTIONS_CUSTOMHANDLER_PORT") {
            Some(p) => RunMode::CustomHandler {
                port: parse_port("FUNCTIONS_CUSTOMHANDLER_PORT", p)?,
            },
            None => RunMode::Local {
                port: match get("PORT") {
                    Some(p) => parse_port("PORT", p)?,
                    None => 7071,
                },
            },
        };

        let storage = match get("AzureWebJobsStorage") {
            Some(cs) => StorageSetting::Azure {
                connection_string: cs.to_owned(),
            },
            None => StorageSetting::Embedded {
                data_dir: PathBuf::from(get("FILE_APPROVER_DATA_DIR").unwrap_or("./data")),
            },
        };

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

        let max_upload_bytes = parse_u64("FILE_APPROVER_MAX_UPLOAD_BYTES", get, 104_857_600, 1)?;
        let download_ttl_secs = parse_u64("FILE_APPROVER_DOWNLOAD_TTL_SECS", get, 3600, 1)?;
        if download_ttl_secs > 7 * 24 * 3600 {
            return Err(invalid(
                "FILE_APPROVER_DOWNLOAD_TTL_SECS",
                "is longer than 7 days, the longest a service SAS should live",
            ));
        }
        let recover_interval_secs = parse_u64("FILE_APPROVER_RECOVER_INTERVAL_SECS", get, 60, 0)?;
        let approval_timeout_secs = match get("FILE_APPROVER_APPROVAL_TIMEOUT_SECS") {
            Some(_) => Some(parse_u64("FILE_APPROVER_APPROVAL_TIMEOUT_SECS", get, 0, 1)?),
            None => None,
        };

        let public_url = match get("FILE_APPROVER_PUBLIC_URL") {
            Some(u) => {
                let parsed = url::Url::parse(u)
                    .map_err(|e| invalid("FILE_APPROVER_PUBLIC_URL", e.to_string()))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(invalid(
                        "FILE_APPROVER_PUBLIC_URL",
                        "must be an http(s) URL such as http://127.0.0.1:7071",
                    ));
                }
                Some(u.trim_end_matches('/').to_owned())
            }
            None => None,
        };
        let signing_key = match get("FILE_APPROVER_SIGNING_KEY") {
            Some(k) if k.len() < 32 => {
                return Err(invalid(
                    "FILE_APPROVER_SIGNING_KEY",
                    "must be at least 32 characters",
                ))
            }
            Some(k) => Some(k.as_bytes().to_vec()),
            None => None,
        };

        Ok(Settings {
            mode,
            storage,
            reviewers,
            max_upload_bytes,
            download_ttl_secs,
            public_url,
            signing_key,
            recover_interval_secs,
            approval_timeout_secs,
        })
    }
}

fn parse_port(name: &'static str, raw: &str) -> Result<u16, ConfigError> {
    raw.parse::<u16>()
        .map_err(|_| invalid(name, format!("{raw:?} is not a port number (0–65535)")))
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
            ("PORT", "9"),
        ]))
        .unwrap();
        assert_eq!(s.mode, RunMode::CustomHandler { port: 50308 });
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
