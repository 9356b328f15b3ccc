//! An Azurite of one's own: started on free loopback ports with its data on disk, stopped by its
//! own PID. The benchmark measures against one; a test that freezes storage (SIGSTOP) uses one so
//! that it stalls nobody else. Needs the Azurite that `scripts/test` installs from the project's
//! `package-lock.json` (`node_modules/.bin/azurite`).

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's published development key; it protects nothing.
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Debug, thiserror::Error)]
pub enum AzuriteError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Azurite exited with {status}: {log}")]
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("Azurite did not listen within 30 s: {log}")]
    Timeout { log: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AzuriteError {
    let what = what.into();
    move |source| AzuriteError::Io { what, source }
}

/// A running Azurite, stopped (thawed first, should it be frozen) when dropped.
pub struct PrivateAzurite {
    child: Child,
    log: PathBuf,
    pub connection_string: String,
    /// The service endpoints (`http(s)://127.0.0.1:<port>/devstoreaccount1`).
    pub blob_endpoint: String,
    pub queue_endpoint: String,
    pub table_endpoint: String,
}

/// Serve https with this certificate and accept OAuth bearer tokens (`--oauth basic`: Azurite
/// checks a token's issuer, audience and lifetime, not its signature).
pub struct OAuthHttps<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

impl PrivateAzurite {
    /// Where `npm ci` puts the binary in a checkout at `repo`.
    pub fn bin_in(repo: &Path) -> PathBuf {
        repo.join("node_modules/.bin/azurite")
    }

    /// Starts `bin` with its data and log in `dir`, and waits (up to 30 s) until its blob and
    /// table endpoints accept connections. Blocks the calling thread while it waits.
    pub fn start(bin: &Path, dir: &Path) -> Result<Self, AzuriteError> {
        Self::start_with(bin, dir, None)
    }

    /// [`PrivateAzurite::start`] for clients newer than Azurite (the Python and JavaScript
    /// SDKs send service versions it does not know): `--skipApiVersionCheck`. The app's own
    /// requests pin a version Azurite knows and never need it.
    pub fn start_for_newer_sdks(bin: &Path, dir: &Path) -> Result<Self, AzuriteError> {
        Self::start_args(bin, dir, None, &["--skipApiVersionCheck"])
    }

    /// [`PrivateAzurite::start`], over https with OAuth when `oauth` is given.
    pub fn start_with(
        bin: &Path,
        dir: &Path,
        oauth: Option<OAuthHttps<'_>>,
    ) -> Result<Self, AzuriteError> {
        Self::start_args(bin, dir, oauth, &[])
    }

    fn start_args(
        bin: &Path,
        dir: &Path,
        oauth: Option<OAuthHttps<'_>>,
        extra: &[&str],
    ) -> Result<Self, AzuriteError> {
        let port = || -> Result<u16, AzuriteError> {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(io("find a free port"))
        };
        let (blob, queue, table) = (port()?, port()?, port()?);
        let log = dir.join("azurite.log");
        let out = File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let err = out.try_clone().map_err(io("clone a log handle"))?;
        // Started directly (not through npx) so that this PID is Azurite itself.
        let mut command = Command::new(bin);
        let scheme = match &oauth {
            Some(OAuthHttps { cert, key }) => {
                command
                    .args(["--oauth", "basic", "--cert"])
                    .arg(cert)
                    .arg("--key")
                    .arg(key);
                "https"
            }
            None => "http",
        };
        let child = command
            .args(["--blobHost", "127.0.0.1", "--blobPort", &blob.to_string()])
            .args([
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                &queue.to_string(),
            ])
            .args([
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                &table.to_string(),
            ])
            .arg("--location")
            .arg(dir)
            .args(["--silent", "--disableTelemetry"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("start {}", bin.display())))?;
        let endpoint = |port: u16| format!("{scheme}://127.0.0.1:{port}/devstoreaccount1");
        let (blob_endpoint, queue_endpoint, table_endpoint) =
            (endpoint(blob), endpoint(queue), endpoint(table));
        let mut azurite = PrivateAzurite {
            child,
            log,
            connection_string: format!(
                "DefaultEndpointsProtocol={scheme};AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};\
                 BlobEndpoint={blob_endpoint};QueueEndpoint={queue_endpoint};TableEndpoint={table_endpoint}"
            ),
            blob_endpoint,
            queue_endpoint,
            table_endpoint,
        };
        let answers = |port: u16| TcpStream::connect(("127.0.0.1", port)).is_ok();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(answers(blob) && answers(queue) && answers(table)) {
            if let Ok(Some(status)) = azurite.child.try_wait() {
                return Err(AzuriteError::Exited {
                    status,
                    log: azurite.log_tail(),
                });
            }
            if Instant::now() > deadline {
                return Err(AzuriteError::Timeout {
                    log: azurite.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(azurite)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Azurite stops answering: the kernel still accepts connections, nothing replies.
    pub fn freeze(&self) -> Result<(), AzuriteError> {
        self.signal("-STOP")
    }

    pub fn thaw(&self) -> Result<(), AzuriteError> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), AzuriteError> {
        Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .map_err(io(format!("kill {signal}")))
            .map(drop)
    }

    /// The last lines Azurite wrote, for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for PrivateAzurite {
    fn drop(&mut self) {
        let _ = self.thaw();
        // SIGKILL by the child's own PID; nothing else is touched.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
