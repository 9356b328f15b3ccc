//! The deployment package (`scripts/package`): exactly what the Functions host reads, with a
//! handler that needs no glibc newer than 2.28 and that starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const GLIBC: (u32, u32) = (2, 28);

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
#[cfg_attr(
    package_tests_skipped,
    ignore = "builds a zig-linked release (minutes): set FILE_APPROVER_TEST_PACKAGE=1 (scripts/test and CI do)"
)]
fn the_package_holds_what_the_host_reads_and_its_handler_starts_on_glibc_2_28() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let zip = run(
        "scripts/package",
        &["--out", out.path().to_str().unwrap()],
        repo,
    );
    let zip = zip.trim();

    // Exactly host.json, the handler and every function folder's function.json.
    let mut expected: BTreeSet<String> = ["host.json".to_owned(), "handler".to_owned()].into();
    for entry in std::fs::read_dir(repo).unwrap() {
        let path = entry.unwrap().path();
        if path.join("function.json").is_file() {
            let folder = path.file_name().unwrap().to_string_lossy().into_owned();
            expected.insert(format!("{folder}/function.json"));
        }
    }
    // Listed and unpacked with Python's zipfile, as scripts/package wrote it (no zip tools
    // needed); each line is an entry's name and its Unix mode.
    let unpacked = tempfile::tempdir().unwrap();
    let entries = run(
        "python3",
        &[
            "-c",
            "import sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             for i in z.infolist(): print(i.filename, oct(i.external_attr >> 16))\n\
             z.extractall(sys.argv[2])",
            zip,
            unpacked.path().to_str().unwrap(),
        ],
        repo,
    );
    let listed: BTreeSet<String> = entries
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, expected);
    assert!(
        entries.lines().any(|l| l == "handler 0o100755"),
        "the handler is not executable in the zip:\n{entries}"
    );
    let handler = unpacked.path().join("handler");
    // zipfile does not restore modes: set it, as the host's unpacking keeps it.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&handler, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // No symbol asks for a glibc newer than 2.28.
    let symbols = run("objdump", &["-T", handler.to_str().unwrap()], repo);
    let newest = symbols
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("the handler links glibc dynamically");
    assert!(newest <= GLIBC, "the handler asks for glibc {newest:?}");

    // And it starts: local mode on a free port answers the host's readiness probe.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(&handler)
        .env_clear()
        .env("PORT", port.to_string())
        .env("FILE_APPROVER_DATA_DIR", data.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let answered = loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply);
            break reply.starts_with("HTTP/1.1 200");
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        answered,
        "the packaged handler did not answer GET / within 20 s"
    );
}
