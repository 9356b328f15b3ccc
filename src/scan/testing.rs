//! A real clamd for the tests, on this machine: Debian's `clamav-daemon`, started offline on a
//! free loopback port with a signature database written here — one line that detects the
//! EICAR test file (by its MD5 and size), inside archives too — and stopped by its PID.
//! Stopping and starting it again on the same port plays a scanner that goes away mid-run.
//!
//! `FILE_APPROVER_TEST_CLAMD` names the clamd binary (`scripts/test` sets it).

// Test code (compiled only for tests and `test-support`): a broken harness is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ClamdAddress;

/// The 68-byte EICAR test string: harmless, and every scanner reports it.
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// The signature clamd reports it under with the database written here.
pub const EICAR_SIGNATURE: &str = "Eicar-Test-Signature.UNOFFICIAL";

/// How the private clamd is configured.
#[derive(Debug, Clone)]
pub struct ClamdOptions {
    /// clamd's `StreamMaxLength` (`100M`, `1M`, ...).
    pub stream_max_length: String,
    /// clamd's `AlertEncrypted`: report encrypted archives as `Heuristics.Encrypted.*`.
    pub alert_encrypted: bool,
    /// clamd's `MaxScanSize` and `MaxFileSize`, when not its defaults (400M and 100M: past
    /// them clamd stops looking and still answers OK).
    pub max_scan: Option<String>,
}

impl Default for ClamdOptions {
    fn default() -> Self {
        ClamdOptions {
            stream_max_length: "100M".into(),
            alert_encrypted: true,
            max_scan: None,
        }
    }
}

/// A clamd of the test's own, stopped when dropped.
pub struct PrivateClamd {
    pub address: ClamdAddress,
    bin: PathBuf,
    conf: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateClamd {
    /// The clamd binary the tests use, when one is configured.
    pub fn bin() -> Option<PathBuf> {
        std::env::var_os("FILE_APPROVER_TEST_CLAMD")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    /// [`PrivateClamd::bin`], else Debian's clamd where it is installed (the benchmark's way).
    pub fn bin_or_installed() -> Option<PathBuf> {
        Self::bin().or_else(|| {
            ["/usr/sbin/clamd", "/usr/bin/clamd"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
    }

    /// Writes the database and configuration under `dir` and starts clamd on a free port.
    pub async fn start(bin: &Path, dir: &Path, options: &ClamdOptions) -> std::io::Result<Self> {
        // clamd reads every path in its configuration as absolute.
        let dir = std::fs::canonicalize(dir)?;
        let dir = dir.as_path();
        let db = dir.join("db");
        std::fs::create_dir_all(&db)?;
        std::fs::write(
            db.join("test.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = dir.join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "DatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nForeground yes\n\
                 LogFile {}\nStreamMaxLength {}\nAlertEncrypted {}\nAlertEncryptedArchive {}\n",
                db.display(),
                dir.join("clamd.log").display(),
                options.stream_max_length,
                yes(options.alert_encrypted),
                yes(options.alert_encrypted),
            ) + &options
                .max_scan
                .as_ref()
                .map(|max| format!("MaxScanSize {max}\nMaxFileSize {max}\n"))
                .unwrap_or_default(),
        )?;
        let mut clamd = PrivateClamd {
            address: ClamdAddress::Tcp(format!("127.0.0.1:{port}")),
            bin: bin.to_owned(),
            conf,
            port,
            child: None,
        };
        clamd.resume().await?;
        Ok(clamd)
    }

    /// Its configuration file (what `clamdscan --config-file` reads to find it).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The address as the app's setting takes it.
    pub fn setting(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Stops clamd (by its PID) and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// Starts clamd again on the same port and waits until it answers.
    pub async fn resume(&mut self) -> std::io::Result<()> {
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            if ping(self.port).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop().await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "clamd did not answer PING within 60 s",
        ))
    }
}

impl Drop for PrivateClamd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn yes(on: bool) -> &'static str {
    if on {
        "yes"
    } else {
        "no"
    }
}

async fn ping(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"zPING\0").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 5];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut answer)).await,
        Ok(Ok(_)) if &answer == b"PONG\0"
    )
}

/// A stand-in that accepts connections and answers every command with `answer` (garbage,
/// say), or with nothing at all (a clamd that hangs), until dropped.
pub struct FakeClamd {
    pub address: ClamdAddress,
    task: tokio::task::JoinHandle<()>,
}

impl FakeClamd {
    pub async fn start(answer: Option<&'static [u8]>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    // Read the command (and whatever follows), then answer or hang.
                    let _ = stream.read(&mut buffer).await;
                    match answer {
                        Some(answer) => {
                            let _ = stream.write_all(answer).await;
                            let _ = stream.shutdown().await;
                        }
                        None => {
                            while let Ok(n) = stream.read(&mut buffer).await {
                                if n == 0 {
                                    break;
                                }
                            }
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                    }
                });
            }
        });
        Ok(FakeClamd {
            address: ClamdAddress::Tcp(format!("127.0.0.1:{port}")),
            task,
        })
    }

    pub fn setting(&self) -> String {
        format!("{}", self.address)
    }
}

impl Drop for FakeClamd {
    fn drop(&mut self) {
        self.task.abort();
    }
}
