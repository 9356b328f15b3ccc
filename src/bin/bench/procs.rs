//! Processes the benchmark starts and stops: the `handler` binary (where its memory is what is
//! measured), Azurite, and the scratch directory. Every process is stopped by its own PID when
//! its guard drops.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use file_approver::store::testing::PrivateAzurite;

use crate::error::{chain, failed, BenchError, IoContext, Result};

/// A scratch directory, removed with everything in it when dropped.
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn create(parent: &Path) -> Result<Self> {
        let path = parent.join(format!("bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).context(|| format!("create {}", path.display()))?;
        Ok(WorkDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh subdirectory.
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        let path = self.path.join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path).context(|| format!("clear {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).context(|| format!("create {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("bench: could not remove {}: {e}", self.path.display());
        }
    }
}

/// A port the kernel just handed out on loopback. Another process could take it before the
/// child binds it; the child would then fail to start and the row would say so.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context(|| "bind a free port".into())?;
    Ok(listener
        .local_addr()
        .context(|| "read a bound port".into())?
        .port())
}

/// True once `GET /` on the port answers 200 (the host's readiness probe).
pub fn root_answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_nodelay(true);
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// How the handler is started: as under the Functions host, or by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Local,
    CustomHandler,
}

/// `handler` as a child process.
pub struct ChildApp {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl ChildApp {
    /// Starts the handler with exactly `vars` (plus the port) as its environment and waits
    /// until it answers `GET /`.
    pub fn start(
        handler: &Path,
        mode: Mode,
        vars: &[(String, String)],
        log: &Path,
    ) -> Result<Self> {
        let (child, port) = spawn_handler(handler, mode, vars, log)?;
        let mut app = ChildApp {
            child,
            port,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !root_answers(port) {
            if let Ok(Some(status)) = app.child.try_wait() {
                return failed(format!(
                    "handler exited with {status} during start-up: {}",
                    tail(&app.log)
                ));
            }
            if Instant::now() > deadline {
                return failed(format!(
                    "handler did not answer GET / within 30 s: {}",
                    tail(&app.log)
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(app)
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `/proc/<pid>/status` memory figure (`VmHWM`, `VmRSS`) in bytes.
    pub fn memory(&self, field: &str) -> Result<u64> {
        proc_status_bytes(self.pid(), field)
    }

    /// Adds to `error` how the handler ended, when it is no longer running (a request that
    /// found nobody listening says nothing about why).
    pub fn explain(&mut self, error: BenchError) -> BenchError {
        match self.child.try_wait() {
            Ok(Some(status)) => BenchError::Failed(format!(
                "{}; the handler had exited with {status}; its log ends: {}",
                crate::error::chain(&error),
                tail(&self.log)
            )),
            _ => error,
        }
    }

    /// Resets the peak (`VmHWM`) to the current RSS, so the next peak belongs to what follows.
    pub fn reset_peak(&self) -> Result<()> {
        let path = format!("/proc/{}/clear_refs", self.pid());
        std::fs::write(&path, b"5").context(|| format!("write {path}"))
    }
}

impl Drop for ChildApp {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn spawn_handler(
    handler: &Path,
    mode: Mode,
    vars: &[(String, String)],
    log: &Path,
) -> Result<(Child, u16)> {
    let port = free_port()?;
    let port_var = match mode {
        Mode::Local => "PORT",
        Mode::CustomHandler => "FUNCTIONS_CUSTOMHANDLER_PORT",
    };
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .context(|| format!("open {}", log.display()))?;
    let err = out.try_clone().context(|| "clone a log handle".into())?;
    let child = Command::new(handler)
        // Only what the row sets: an AzureWebJobsStorage in the caller's environment must not
        // switch a row to another backend.
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(port_var, port.to_string())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .context(|| format!("start {}", handler.display()))?;
    Ok((child, port))
}

/// Time from starting the process to its first 200 on `GET /`.
pub fn cold_start(handler: &Path, vars: &[(String, String)], log: &Path) -> Result<Duration> {
    let started = Instant::now();
    let (mut child, port) = spawn_handler(handler, Mode::Local, vars, log)?;
    let result = loop {
        if root_answers(port) {
            break Ok(started.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            break failed(format!("handler exited with {status}: {}", tail(log)));
        }
        if started.elapsed() > Duration::from_secs(30) {
            break failed(format!("no answer within 30 s: {}", tail(log)));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    stop(&mut child);
    result
}

fn stop(child: &mut Child) {
    // SIGKILL by the child's own PID; nothing else is touched.
    let _ = child.kill();
    let _ = child.wait();
}

pub fn proc_status_bytes(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).context(|| format!("read {path}"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kib = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .map_err(|_| BenchError::Failed(format!("bad {field} line: {line}")))?;
            return Ok(kib * 1024);
        }
    }
    failed(format!("{path} has no {field}"))
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// A private Azurite on free ports with its data on disk.
pub struct Azurite(PrivateAzurite);

impl Azurite {
    /// Started for the official Python SDK too, which sends newer service versions than
    /// Azurite knows.
    pub fn start(bin: &Path, dir: &Path) -> Result<Self> {
        PrivateAzurite::start_for_newer_sdks(bin, dir)
            .map(Azurite)
            .map_err(|e| BenchError::Failed(chain(&e)))
    }
}

impl std::ops::Deref for Azurite {
    type Target = PrivateAzurite;
    fn deref(&self) -> &PrivateAzurite {
        &self.0
    }
}
