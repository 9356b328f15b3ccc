//! The same workflow on this project's engine and on the durable engines users would pick
//! instead, measured in one run (issue 14); this binary runs this project's engine and drives
//! the whole comparison. Each engine runs in a child process of its own, so that one's memory
//! and threads never count against another's; duroxide's child is the `peer-bench-duroxide`
//! binary (`PEER_BENCH_DUROXIDE`), built apart because its SQLite and ours cannot link together.
//!
//! The workflow: start; wait for an "upload" event; run an activity that hashes 4 KiB; wait
//! for a "download" event; complete. Figures:
//! - workflows per second with 16 clients, each driving workflows one after another;
//! - p50 / p99 from an event raised to the workflow's next state being durable and readable
//!   (after "upload": the activity's outcome recorded and the workflow waiting for "download";
//!   after "download": completed), seen by reading the engine's status every millisecond;
//! - fsync + fdatasync calls per workflow (strace, over a separate run of 100 workflows);
//! - resident memory of the engine's process at rest with 10,000 instances waiting.
//!
//!   peer-bench [--runs 3] [--workflows 400] [--waiting 10000] [--waiting-runs 1] [--only ours,duroxide,duroxide-defaults,restate]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;

#[path = "../../harness.rs"]
mod harness;
mod ours;

use harness::{Result, CLIENTS};

/// `child <throughput|waiting> <n> <dir>`: one measurement, one JSON line.
async fn child(args: &[String]) -> Result<()> {
    let [what, n, dir] = args else {
        return Err("child <throughput|waiting> <n> <dir>".into());
    };
    let peer = Arc::new(ours::Ours::open(Path::new(dir)).await?);
    println!("{}", harness::run(peer, what, n.parse()?).await?);
    Ok(())
}

fn spawn_child(engine: &str, what: &str, n: usize, strace: Option<&Path>) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let binary = |variable: &str| {
        std::env::var_os(variable)
            .map(std::path::PathBuf::from)
            .ok_or(format!(
                "{variable} names no binary (scripts/bench-peers sets it)"
            ))
    };
    let exe = match engine {
        "ours" => std::env::current_exe()?,
        "restate" => binary("PEER_BENCH_RESTATE")?,
        _ => binary("PEER_BENCH_DUROXIDE")?,
    };
    let mut command = match strace {
        Some(out) => {
            let mut c = Command::new("strace");
            c.args([
                "-f",
                "--seccomp-bpf",
                "-c",
                "-e",
                "trace=fsync,fdatasync",
                "-o",
            ])
            .arg(out)
            .arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let output = command
        .arg("child")
        .args((engine != "ours").then_some(engine))
        .args([what, &n.to_string()])
        .arg(dir.path())
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "{engine} {what} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("no result line")?;
    Ok(serde_json::from_str(line)?)
}

/// fsync + fdatasync calls, from `strace -c`'s summary table.
fn syncs(summary: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(summary)?;
    Ok(text
        .lines()
        .filter(|l| l.trim_end().ends_with("fsync") || l.trim_end().ends_with("fdatasync"))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // % time, seconds, usecs/call, calls, [errors], syscall
            cols.get(3).and_then(|c| c.parse::<u64>().ok())
        })
        .sum())
}

/// The gist of a child's error: its last line, cut to a table's width.
fn short(error: &str) -> String {
    let line = error
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(error);
    line.chars().take(160).collect()
}

fn median_and_range(values: &[f64]) -> String {
    if values.is_empty() {
        return "—".to_owned();
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    format!("{median:.1} ({:.1}–{:.1})", v[0], v[v.len() - 1])
}

fn parent(args: &[String]) -> Result<()> {
    let mut runs = 3;
    let mut workflows = 400;
    let mut waiting_count = 10_000;
    let mut waiting_runs = 1;
    let mut only: Vec<String> = vec!["ours".into(), "duroxide".into(), "duroxide-defaults".into()];
    // Restate's server is a ~430 MB install: compared only when scripts/bench-peers set it up.
    if std::env::var_os("PEER_BENCH_RESTATE").is_some() {
        only.push("restate".into());
    }
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" => runs = value()?.parse()?,
            "--workflows" => workflows = value()?.parse()?,
            "--waiting" => waiting_count = value()?.parse()?,
            "--waiting-runs" => waiting_runs = value()?.parse()?,
            "--only" => only = value()?.split(',').map(str::to_owned).collect(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let has_strace = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    println!("peer-bench: {runs} runs of {workflows} workflows with {CLIENTS} clients; {waiting_count} waiting instances; engines {only:?}");
    println!();
    println!("| engine | workflows/s | p50 ms | p99 ms | upload p99 ms | download p99 ms | fsyncs/workflow | RSS, {waiting_count} waiting | time to start them all |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for engine in &only {
        let mut wps = Vec::new();
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        let mut up99 = Vec::new();
        let mut down99 = Vec::new();
        let mut rss = Vec::new();
        let mut settled = Vec::new();
        // A run that fails is reported, not hidden: the row says how many of the runs failed
        // and why, and its figures are the runs that finished.
        let mut failures: Vec<String> = Vec::new();
        for _ in 0..runs {
            match spawn_child(engine, "throughput", workflows, None) {
                Ok(t) => {
                    let f = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
                    wps.push(f("workflows_per_s"));
                    p50.push(f("p50_ms"));
                    p99.push(f("p99_ms"));
                    up99.push(f("upload_p99_ms"));
                    down99.push(f("download_p99_ms"));
                }
                Err(e) => failures.push(format!("throughput: {}", short(&e.to_string()))),
            }
        }
        // Memory at rest varies little between runs (13.1–13.4 MiB over 3 for this engine) and
        // a slow engine takes minutes to reach 10,000 waiting instances: `--waiting-runs`.
        for _ in 0..waiting_runs {
            match spawn_child(engine, "waiting", waiting_count, None) {
                Ok(w) => {
                    rss.push(w["rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0);
                    settled.push(w["settled_s"].as_f64().unwrap_or(f64::NAN));
                }
                Err(e) => failures.push(format!("waiting: {}", short(&e.to_string()))),
            }
        }
        let fsyncs = if has_strace {
            let summary = tempfile::NamedTempFile::new()?;
            let n = 100;
            // Under strace a contended engine may fail a run where it would not otherwise:
            // up to three tries.
            let mut counted = None;
            for _ in 0..3 {
                match spawn_child(engine, "throughput", n, Some(summary.path())) {
                    Ok(_) => {
                        counted = Some(syncs(summary.path())? as f64 / n as f64);
                        break;
                    }
                    Err(e) => failures.push(format!("fsync count: {}", short(&e.to_string()))),
                }
            }
            counted.map_or_else(|| "failed".to_owned(), |c| format!("{c:.1}"))
        } else {
            "(no strace)".to_owned()
        };
        println!(
            "| {engine} | {} | {} | {} | {} | {} | {fsyncs} | {} MiB | {} s |",
            median_and_range(&wps),
            median_and_range(&p50),
            median_and_range(&p99),
            median_and_range(&up99),
            median_and_range(&down99),
            median_and_range(&rss),
            median_and_range(&settled),
        );
        for failure in failures {
            println!("  {engine} run failed — {failure}");
        }
    }
    println!();
    println!("Medians over {runs} runs ({waiting_runs} for the waiting instances), (lowest–highest) beside each.");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(child(&args[1..]));
    }
    parent(&args)
}
