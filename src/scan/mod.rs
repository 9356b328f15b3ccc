//! Malware scanning: the scanners a deployment can choose, each turning a stream of a file's
//! bytes into a [`ScanReport`]. Knows nothing of HTTP, storage or the workflow: the workflow's
//! scan activity reads the blob and hands its bytes over.
//!
//! A scanner answers with a verdict it stands by (clean, malicious, or unscannable with a
//! reason: too large, encrypted) or with a [`ScanError`] — unreachable, hanging, answering
//! nonsense — which is worth another attempt. The workflow retries those until its scan
//! deadline and never passes a file on unscanned.

pub mod clamd;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;

pub use self::clamd::ClamdAddress;
use self::clamd::{Clamd, ClamdAnswer, ClamdError};
use crate::domain::{ScanReport, ScanVerdict, ScannerInfo};

/// The signature-name prefix clamd gives an archive it could not open for its encryption
/// (with `AlertEncrypted` on): no verdict on the contents, not a threat found in them.
const ENCRYPTED: &str = "Heuristics.Encrypted";

/// A scan attempt that gave no verdict; the next one may.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Clamd(#[from] ClamdError),
}

/// The scanner a deployment chose.
#[derive(Debug, Clone)]
pub enum Scanner {
    ClamAv(Clamd),
}

impl Scanner {
    /// ClamAV's clamd at `address`. A connection without progress for `idle` while the bytes
    /// go out is given up, and so is a verdict that takes longer than `verdict_wait` once
    /// they are all out.
    pub fn clamav(address: ClamdAddress, idle: Duration, verdict_wait: Duration) -> Self {
        Scanner::ClamAv(Clamd::new(address, idle, verdict_wait))
    }

    /// The scanner's name as reports carry it.
    pub fn name(&self) -> &'static str {
        match self {
            Scanner::ClamAv(_) => "clamav",
        }
    }

    /// Scans `body` (one pass, as it is read) and reports what the scanner saw, at `now`.
    pub async fn scan<S, E>(&self, body: S, now: DateTime<Utc>) -> Result<ScanReport, ScanError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        match self {
            Scanner::ClamAv(clamd) => {
                // The versions first: a clamd that cannot say them will not scan either, and
                // the report must name the signatures that judged the file.
                let version = clamd.version().await?;
                let info = ScannerInfo {
                    name: self.name().to_owned(),
                    engine: Some(version.engine),
                    signatures: version.signatures,
                };
                let answer = clamd.scan(body).await?;
                Ok(report(info, answer, now))
            }
        }
    }
}

fn report(scanner: ScannerInfo, answer: ClamdAnswer, now: DateTime<Utc>) -> ScanReport {
    match answer {
        ClamdAnswer::Clean => ScanReport {
            verdict: ScanVerdict::Clean,
            scanner: Some(scanner),
            threats: Vec::new(),
            scanned_time: Some(now),
            reason: None,
        },
        ClamdAnswer::TooLarge => ScanReport::unscannable(
            Some(scanner),
            "the file is larger than the scanner accepts (clamd's StreamMaxLength)",
            now,
        ),
        ClamdAnswer::Found(signatures) => {
            let (encrypted, threats): (Vec<String>, Vec<String>) = signatures
                .into_iter()
                .partition(|s| s.starts_with(ENCRYPTED));
            if threats.is_empty() {
                ScanReport::unscannable(
                    Some(scanner),
                    format!(
                        "an encrypted archive: its contents cannot be scanned ({})",
                        encrypted.join(", ")
                    ),
                    now,
                )
            } else {
                ScanReport {
                    verdict: ScanVerdict::Malicious,
                    scanner: Some(scanner),
                    threats,
                    scanned_time: Some(now),
                    reason: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ScannerInfo {
        ScannerInfo {
            name: "clamav".into(),
            engine: Some("1.4.3".into()),
            signatures: Some("1".into()),
        }
    }

    #[test]
    fn an_encrypted_archive_is_unscannable_not_malicious() {
        let r = report(
            info(),
            ClamdAnswer::Found(vec!["Heuristics.Encrypted.Zip".into()]),
            Utc::now(),
        );
        assert_eq!(r.verdict, ScanVerdict::Unscannable);
        assert!(r.reason.unwrap().contains("encrypted"));
        assert!(r.threats.is_empty());
    }

    #[test]
    fn a_threat_beside_an_encrypted_entry_is_malicious() {
        let r = report(
            info(),
            ClamdAnswer::Found(vec![
                "Heuristics.Encrypted.Zip".into(),
                "Eicar-Test-Signature".into(),
            ]),
            Utc::now(),
        );
        assert_eq!(r.verdict, ScanVerdict::Malicious);
        assert_eq!(r.threats, vec!["Eicar-Test-Signature".to_owned()]);
    }

    #[test]
    fn a_stream_over_the_limit_is_unscannable() {
        let r = report(info(), ClamdAnswer::TooLarge, Utc::now());
        assert_eq!(r.verdict, ScanVerdict::Unscannable);
        assert!(r.reason.unwrap().contains("larger"));
    }
}
