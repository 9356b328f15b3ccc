//! A client for ClamAV's daemon, clamd, over TCP or a unix socket: `VERSION` for the engine
//! and signature versions, `INSTREAM` to scan a stream of bytes (`man clamd`).
//!
//! Written here: the protocol is a handful of lines (a NUL-terminated command; chunks, each a
//! 4-byte big-endian length and its bytes; a zero-length chunk; one NUL-terminated answer),
//! and the crates that speak it either buffer the whole input or have no timeouts. Memory is
//! bounded by one chunk of the input; every read and write has an idle timeout, so a clamd
//! that hangs costs one attempt, not the workflow.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use crate::config::ClamdAddress;

/// Why clamd gave no answer this app can use. Every one of these is worth another attempt.
#[derive(Debug, thiserror::Error)]
pub enum ClamdError {
    #[error("cannot reach clamd at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("clamd at {address} stopped answering ({step})")]
    Timeout { address: String, step: &'static str },
    #[error("the connection to clamd broke: {0}")]
    Io(#[from] std::io::Error),
    #[error("clamd answered something that is not a scan result: {0:?}")]
    Garbage(String),
    #[error("clamd failed: {0}")]
    Failed(String),
    #[error("reading the file to scan: {0}")]
    Input(String),
}

/// What clamd said about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAnswer {
    Clean,
    /// The signatures that matched.
    Found(Vec<String>),
    /// The stream was longer than clamd's `StreamMaxLength`.
    TooLarge,
}

/// Engine and signature versions, from `VERSION` (`ClamAV 1.4.3/27484/Sun Dec  6 09:00:00 2026`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamdVersion {
    pub engine: String,
    pub signatures: Option<String>,
}

/// The longest answer read: a scan result names a few signatures at most.
const MAX_ANSWER: usize = 64 * 1024;
/// Chunks sent to clamd: small enough to be far below any `StreamMaxLength`, large enough to
/// cost little per chunk.
const CHUNK: usize = 256 * 1024;

trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// One clamd.
#[derive(Debug, Clone)]
pub struct Clamd {
    address: ClamdAddress,
    /// No progress for this long while connecting or sending: clamd is taken to hang.
    idle: Duration,
    /// How long the verdict may take once the stream has ended: clamd scans what it
    /// received only then, and a large archive takes a while.
    verdict_wait: Duration,
}

impl Clamd {
    pub fn new(address: ClamdAddress, idle: Duration, verdict_wait: Duration) -> Self {
        Clamd {
            address,
            idle,
            verdict_wait,
        }
    }

    pub fn address(&self) -> &ClamdAddress {
        &self.address
    }

    async fn connect(&self) -> Result<Pin<Box<dyn Connection>>, ClamdError> {
        let address = self.address.to_string();
        let connect = async {
            match &self.address {
                ClamdAddress::Tcp(hostport) => tokio::net::TcpStream::connect(hostport.as_str())
                    .await
                    .map(|s| Box::pin(s) as Pin<Box<dyn Connection>>),
                #[cfg(unix)]
                ClamdAddress::Unix(path) => tokio::net::UnixStream::connect(path)
                    .await
                    .map(|s| Box::pin(s) as Pin<Box<dyn Connection>>),
                #[cfg(not(unix))]
                ClamdAddress::Unix(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "unix sockets are not available on this platform",
                )),
            }
        };
        match tokio::time::timeout(self.idle, connect).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(source)) => Err(ClamdError::Connect { address, source }),
            Err(_) => Err(ClamdError::Timeout {
                address,
                step: "connecting",
            }),
        }
    }

    /// Runs `step` with the idle timeout.
    async fn within<T>(
        &self,
        step: &'static str,
        work: impl std::future::Future<Output = std::io::Result<T>>,
    ) -> Result<T, ClamdError> {
        self.within_for(self.idle, step, work).await
    }

    async fn within_for<T>(
        &self,
        limit: Duration,
        step: &'static str,
        work: impl std::future::Future<Output = std::io::Result<T>>,
    ) -> Result<T, ClamdError> {
        match tokio::time::timeout(limit, work).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClamdError::Timeout {
                address: self.address.to_string(),
                step,
            }),
        }
    }

    /// Reads one NUL-terminated answer, waiting at most `limit` for each piece of it.
    async fn answer(
        &self,
        connection: &mut Pin<Box<dyn Connection>>,
        limit: Duration,
    ) -> Result<String, ClamdError> {
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        loop {
            let n = self
                .within_for(limit, "answering", connection.read(&mut buffer))
                .await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
            if let Some(end) = answer.iter().position(|b| *b == 0) {
                answer.truncate(end);
                break;
            }
            if answer.len() > MAX_ANSWER {
                return Err(ClamdError::Garbage("an answer of more than 64 KiB".into()));
            }
        }
        String::from_utf8(answer)
            .map(|a| a.trim().to_owned())
            .map_err(|_| ClamdError::Garbage("an answer that is not UTF-8".into()))
    }

    pub async fn version(&self) -> Result<ClamdVersion, ClamdError> {
        let mut connection = self.connect().await?;
        self.within("sending VERSION", connection.write_all(b"zVERSION\0"))
            .await?;
        let answer = self.answer(&mut connection, self.idle).await?;
        parse_version(&answer)
    }

    /// Scans `body`, sent in chunks as it is read.
    pub async fn scan<S, E>(&self, mut body: S) -> Result<ClamdAnswer, ClamdError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut connection = self.connect().await?;
        self.within("sending INSTREAM", connection.write_all(b"zINSTREAM\0"))
            .await?;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ClamdError::Input(e.to_string()))?;
            for piece in chunk.chunks(CHUNK) {
                let length = u32::try_from(piece.len()).unwrap_or(u32::MAX).to_be_bytes();
                let sent = self
                    .within("receiving the stream", async {
                        connection.write_all(&length).await?;
                        connection.write_all(piece).await
                    })
                    .await;
                if let Err(e) = sent {
                    // clamd closes the connection once the stream passes its limit, after
                    // saying so: read what it said before calling it a broken connection.
                    return match self.answer(&mut connection, self.idle).await {
                        Ok(answer) if !answer.is_empty() => parse_scan(&answer),
                        _ => Err(e),
                    };
                }
            }
        }
        let ended = self
            .within(
                "ending the stream",
                connection.write_all(&0u32.to_be_bytes()),
            )
            .await;
        let answer = self.answer(&mut connection, self.verdict_wait).await;
        match (ended, answer) {
            (_, Ok(answer)) if !answer.is_empty() => parse_scan(&answer),
            (Err(e), _) => Err(e),
            (Ok(()), Ok(_)) => Err(ClamdError::Garbage("an empty answer".into())),
            (Ok(()), Err(e)) => Err(e),
        }
    }
}

fn parse_version(answer: &str) -> Result<ClamdVersion, ClamdError> {
    let Some(rest) = answer.strip_prefix("ClamAV ") else {
        return Err(ClamdError::Garbage(answer.chars().take(200).collect()));
    };
    let mut parts = rest.split('/');
    let engine = parts.next().unwrap_or_default().trim().to_owned();
    let signatures = parts
        .next()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    Ok(ClamdVersion { engine, signatures })
}

/// Reads an `INSTREAM` answer: `stream: OK`, `stream: <signature> FOUND` (one line per
/// signature when clamd reports all matches), `INSTREAM size limit exceeded. ERROR`, or another
/// `… ERROR`.
fn parse_scan(answer: &str) -> Result<ClamdAnswer, ClamdError> {
    if answer.contains("size limit exceeded") {
        return Ok(ClamdAnswer::TooLarge);
    }
    if answer.ends_with("ERROR") {
        return Err(ClamdError::Failed(answer.chars().take(300).collect()));
    }
    let mut found = Vec::new();
    let mut clean = false;
    for line in answer.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some(result) = line.strip_prefix("stream:") else {
            return Err(ClamdError::Garbage(answer.chars().take(200).collect()));
        };
        let result = result.trim();
        if result == "OK" {
            clean = true;
        } else if let Some(signature) = result.strip_suffix(" FOUND") {
            found.push(signature.trim().to_owned());
        } else {
            return Err(ClamdError::Garbage(answer.chars().take(200).collect()));
        }
    }
    match (clean, found.is_empty()) {
        (_, false) => Ok(ClamdAnswer::Found(found)),
        (true, true) => Ok(ClamdAnswer::Clean),
        (false, true) => Err(ClamdError::Garbage(answer.chars().take(200).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_of_clamd_maps_to_a_result() {
        assert_eq!(parse_scan("stream: OK").unwrap(), ClamdAnswer::Clean);
        assert_eq!(
            parse_scan("stream: Eicar-Test-Signature.UNOFFICIAL FOUND").unwrap(),
            ClamdAnswer::Found(vec!["Eicar-Test-Signature.UNOFFICIAL".into()])
        );
        assert_eq!(
            parse_scan("stream: A FOUND\nstream: B FOUND").unwrap(),
            ClamdAnswer::Found(vec!["A".into(), "B".into()])
        );
        assert_eq!(
            parse_scan("INSTREAM size limit exceeded. ERROR").unwrap(),
            ClamdAnswer::TooLarge
        );
        assert!(matches!(
            parse_scan("stream: Can't allocate memory ERROR"),
            Err(ClamdError::Failed(_))
        ));
        assert!(matches!(parse_scan("HELLO"), Err(ClamdError::Garbage(_))));
        assert!(matches!(
            parse_scan("stream: maybe"),
            Err(ClamdError::Garbage(_))
        ));
    }

    #[test]
    fn the_version_names_engine_and_signatures() {
        assert_eq!(
            parse_version("ClamAV 1.4.3/27484/Sun Dec  6 09:00:00 2026").unwrap(),
            ClamdVersion {
                engine: "1.4.3".into(),
                signatures: Some("27484".into())
            }
        );
        assert_eq!(parse_version("ClamAV 1.4.3").unwrap().signatures, None);
        assert!(parse_version("PONG").is_err());
    }

    fn body(bytes: &'static [u8]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        futures::stream::iter([Ok(Bytes::from_static(bytes))])
    }

    #[tokio::test]
    async fn a_clamd_that_hangs_costs_one_idle_timeout() {
        let fake = crate::scan::testing::FakeClamd::start(None).await.unwrap();
        let clamd = Clamd::new(
            fake.address.clone(),
            Duration::from_millis(200),
            Duration::from_millis(300),
        );
        let started = std::time::Instant::now();
        let error = clamd.scan(body(b"hello")).await.unwrap_err();
        assert!(matches!(error, ClamdError::Timeout { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connection_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let clamd = Clamd::new(
            ClamdAddress::Tcp(format!("127.0.0.1:{port}")),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let error = clamd.version().await.unwrap_err();
        assert!(matches!(error, ClamdError::Connect { .. }), "{error}");
    }

    #[tokio::test]
    async fn garbage_is_never_a_verdict() {
        let fake = crate::scan::testing::FakeClamd::start(Some(b"stream: maybe\0"))
            .await
            .unwrap();
        let clamd = Clamd::new(
            fake.address.clone(),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let error = clamd.scan(body(b"hello")).await.unwrap_err();
        assert!(matches!(error, ClamdError::Garbage(_)), "{error}");
    }
}
