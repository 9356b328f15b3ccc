//! The `handler` binary as the Functions host starts it: a real child process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn handler() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_handler"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_bad_setting_stops_start_up_with_a_message_naming_it() {
    for (name, value) in [
        ("PORT", "seventy"),
        ("FILE_APPROVER_MAX_UPLOAD_BYTES", "lots"),
        ("FILE_APPROVER_REVIEWERS", "alice"),
    ] {
        let output = handler().env(name, value).output().unwrap();
        // Never 0: the host does not restart a worker that exits with 0.
        assert_eq!(output.status.code(), Some(1), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
}

#[test]
fn under_the_host_without_storage_it_refuses_to_start_instead_of_using_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string()),
        (
            "AzureWebJobsStorage__accountName",
            "filesapprover".to_owned(),
        ),
    ] {
        let output = handler()
            .current_dir(dir.path())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("AzureWebJobsStorage"), "{name}: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "{name}: nothing was written to local disk"
        );
    }
}

#[test]
fn under_the_host_it_answers_get_root_at_once_and_logs_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = handler()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FILE_APPROVER_STORAGE", "embedded")
        .env("FILE_APPROVER_DATA_DIR", dir.path())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // The host polls GET / every 25 ms until any answer: do the same, bounded.
    let answered = loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).unwrap();
            break reply;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no answer on port {port}"
        );
        std::thread::sleep(Duration::from_millis(25));
    };
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    child.kill().unwrap();
    child.wait().unwrap();

    // Under the host, logs are JSON lines: information on stdout, warnings on stderr (which
    // the host logs as warnings) — such as the one about unauthenticated approvals.
    let json_lines = |reader: &mut dyn Read| -> Vec<serde_json::Value> {
        BufReader::new(reader)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).expect("a JSON log line"))
            .collect()
    };
    let info = json_lines(child.stdout.as_mut().unwrap());
    let warnings = json_lines(child.stderr.as_mut().unwrap());
    assert!(info.iter().all(|l| l["level"] == "INFO"), "{info:?}");
    assert!(info.iter().any(|l| l["message"] == "listening"), "{info:?}");
    assert!(
        warnings.iter().any(|l| l["level"] == "WARN"
            && l["message"]
                .as_str()
                .unwrap_or("")
                .contains("NOT authenticated")),
        "{warnings:?}"
    );
}
