//! `file-approver`: the command-line client of File Approver, for uploaders, reviewers and
//! scripts. It speaks the app's HTTP API (docs/API.md) and nothing else.

mod api;
mod download;
mod progress;
mod upload;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};

use api::{check, json_body, Api, CliError};
use file_approver::domain::{ApprovalStage, FileId, Stage};
use progress::Progress;

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  anything else (a file that cannot be read, a bad setting)
  2  the command line is wrong
  3  refused by the app (a bad request, not allowed, the wrong stage)
  4  no such file
  5  not (yet) approved for download
  6  the app or storage could not be reached, or failed
  7  the downloaded bytes are not the ones the reviewers approved (nothing is kept)
  8  wait: the file did not reach a wanted stage in time";

/// Upload files for approval, review them, and fetch approved ones, verified.
#[derive(Debug, Parser)]
#[command(name = "file-approver", version, after_help = EXIT_CODES)]
struct Cli {
    /// The app's base URL.
    #[arg(
        long,
        env = "FILE_APPROVER_URL",
        default_value = "http://127.0.0.1:7071",
        global = true
    )]
    url: String,
    /// Your token (uploaders' and reviewers' tokens, as the app was given them).
    #[arg(
        long,
        env = "FILE_APPROVER_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// The Functions host's key, where the deployment asks for one.
    #[arg(
        long,
        env = "FILE_APPROVER_FUNCTION_KEY",
        hide_env_values = true,
        global = true
    )]
    function_key: Option<String>,
    /// Print JSON for programs instead of text for people (errors too, on stdout).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Upload a file; prints its id. Large files go straight to storage in blocks, and an
    /// interrupted upload of the same file resumes.
    Upload {
        file: PathBuf,
        /// The display name (default: the file's own name).
        #[arg(long)]
        name: Option<String>,
        /// The declared media type (default: none declared; the analysis says what it is).
        #[arg(long = "type", value_name = "MEDIA_TYPE")]
        content_type: Option<String>,
    },
    /// A file's status: its stage, analysis, approvals and deadline.
    Status { id: String },
    /// Wait until a file reaches one of the given stages (default: a final one).
    Wait {
        id: String,
        /// Stages to wait for (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',')]
        until: Vec<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// What awaits your decision.
    Inbox,
    /// Approve a stage of a file.
    Approve {
        id: String,
        stage: StageArg,
        #[arg(long)]
        comment: Option<String>,
        /// The version you reviewed (`status` prints it): refused if another is under review.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        of_version: Option<u32>,
    },
    /// Reject a stage of a file; the comment says why.
    Reject {
        id: String,
        stage: StageArg,
        #[arg(long)]
        comment: String,
        /// The version you reviewed (`status` prints it): refused if another is under review.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        of_version: Option<u32>,
    },
    /// Send a file back to its uploader for a new version; the comment says what to change.
    RequestChanges {
        id: String,
        stage: StageArg,
        #[arg(long)]
        comment: String,
        /// The version you reviewed (`status` prints it): refused if another is under review.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        of_version: Option<u32>,
    },
    /// As the uploader, send a new version of a file whose reviewer asked for changes.
    NewVersion {
        id: String,
        file: PathBuf,
        /// The declared media type (default: none declared; the analysis says what it is).
        #[arg(long = "type", value_name = "MEDIA_TYPE")]
        content_type: Option<String>,
    },
    /// Take an approved file's approval back: every download link stops working at once.
    Revoke {
        id: String,
        /// Why (required; kept in the history).
        #[arg(long)]
        comment: String,
    },
    /// Every step of a file's life: who, when, what came of it.
    History { id: String },
    /// Fetch an approved file and check its SHA-256 against the approved analysis.
    Download {
        id: String,
        /// Where to save it (a file, or a directory to save it in under its name).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StageArg {
    Upload,
    Download,
}

impl From<StageArg> for ApprovalStage {
    fn from(stage: StageArg) -> Self {
        match stage {
            StageArg::Upload => ApprovalStage::Upload,
            StageArg::Download => ApprovalStage::Download,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&CliError::Other(e.to_string()), json),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, json),
    }
}

fn fail(error: &CliError, json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            json!({ "error": { "code": error.code(), "message": error.message() } })
        );
    } else {
        eprintln!("file-approver: {error}");
    }
    ExitCode::from(error.exit_code())
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Completions { shell } = cli.command {
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "file-approver", &mut std::io::stdout());
        return Ok(());
    }
    let api = Api::new(&cli.url, cli.token, cli.function_key)?;
    let out = Output { json: cli.json };
    match cli.command {
        Command::Upload {
            file,
            name,
            content_type,
        } => {
            let progress = Progress::new(cli.json);
            let request = upload::UploadRequest {
                path: &file,
                name,
                content_type,
            };
            let (status, sent) = upload::upload(&api, request, &progress).await?;
            if out.json {
                out.value(&json!({ "file": status, "upload": sent }));
            } else {
                println!("{}", status["id"].as_str().unwrap_or_default());
            }
        }
        Command::Status { id } => {
            let status = api.get(&format!("/api/files/{}", file_id(&id)?)).await?;
            out.status(&status);
        }
        Command::Wait { id, until, timeout } => {
            let wanted = wanted_stages(&until)?;
            let status = wait(&api, &file_id(&id)?, &wanted, Duration::from_secs(timeout)).await?;
            out.status(&status);
        }
        Command::Inbox => {
            // Every page: an inbox is read whole, oldest first.
            let mut files = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut path = "/api/files?awaiting=me&top=100".to_owned();
                if let Some(token) = &token {
                    path.push_str(&format!("&continuationToken={token}"));
                }
                let page = api.get(&path).await?;
                files.extend(page["files"].as_array().cloned().unwrap_or_default());
                token = page["continuationToken"].as_str().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
            out.listing(&json!({ "files": files }));
        }
        Command::Approve {
            id,
            stage,
            comment,
            of_version,
        } => {
            let body = json!({ "approved": true, "comment": comment });
            out.status(&decide(&api, &id, stage, body, of_version).await?);
        }
        Command::Reject {
            id,
            stage,
            comment,
            of_version,
        } => {
            let body = json!({ "approved": false, "comment": comment });
            out.status(&decide(&api, &id, stage, body, of_version).await?);
        }
        Command::RequestChanges {
            id,
            stage,
            comment,
            of_version,
        } => {
            let body = json!({ "decision": "requestChanges", "comment": comment });
            out.status(&decide(&api, &id, stage, body, of_version).await?);
        }
        Command::NewVersion {
            id,
            file,
            content_type,
        } => {
            let progress = Progress::new(cli.json);
            let id = file_id(&id)?;
            let status =
                upload::new_version(&api, &id, &file, content_type.as_deref(), &progress).await?;
            out.status(&status);
        }
        Command::Revoke { id, comment } => {
            let path = format!("/api/files/{}/revoke", file_id(&id)?);
            out.status(&api.post_json(&path, &json!({ "comment": comment })).await?);
        }
        Command::History { id } => {
            let history = api
                .get(&format!("/api/files/{}/history", file_id(&id)?))
                .await?;
            out.history(&history);
        }
        Command::Download { id, output } => {
            let progress = Progress::new(cli.json);
            let done =
                download::download(&api, &file_id(&id)?, output.as_deref(), &progress).await?;
            if out.json {
                out.value(&json!(done));
            } else {
                println!(
                    "{} (SHA-256 {}, verified)",
                    done.path.display(),
                    done.sha256
                );
            }
        }
        Command::Completions { .. } => {}
    }
    Ok(())
}

/// A file id as the app writes them; anything else is refused here, before a request.
fn file_id(id: &str) -> Result<String, CliError> {
    FileId::parse(id)
        .map(|id| id.to_string())
        .map_err(|e| CliError::Refused {
            code: "InvalidId".into(),
            message: e.to_string(),
        })
}

async fn decide(
    api: &Api,
    id: &str,
    stage: StageArg,
    mut body: Value,
    of_version: Option<u32>,
) -> Result<Value, CliError> {
    let stage = ApprovalStage::from(stage);
    if let Some(version) = of_version {
        body["version"] = Value::from(version);
    }
    api.post_json(
        &format!("/api/files/{}/approvals/{}", file_id(id)?, stage.as_str()),
        &body,
    )
    .await
}

fn wanted_stages(until: &[String]) -> Result<Vec<Stage>, CliError> {
    if until.is_empty() {
        return Ok(Stage::ALL.into_iter().filter(|s| s.is_final()).collect());
    }
    until
        .iter()
        .map(|name| Stage::parse(name.trim()).map_err(|e| CliError::Other(format!("--until: {e}"))))
        .collect()
}

/// Polls the file's status until its stage is one of `wanted`. The app's `Retry-After` (on a
/// 503, or on a status it expects to change soon) sets the pause; otherwise it grows from one
/// second to fifteen, so a long human wait costs a few requests a minute.
async fn wait(api: &Api, id: &str, wanted: &[Stage], timeout: Duration) -> Result<Value, CliError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_secs(1);
    loop {
        let response = api
            .request(Method::GET, &format!("/api/files/{id}"))
            .send()
            .await;
        let hint = response
            .as_ref()
            .ok()
            .and_then(|r| r.headers().get("retry-after"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        // A refused connection or a passing outage is waited out like any other pause.
        if let Ok(response) = response {
            match check(response).await {
                Ok(response) => {
                    let status = json_body(response).await?;
                    let stage = status["stage"].as_str().and_then(|s| Stage::parse(s).ok());
                    if stage.is_some_and(|s| wanted.contains(&s)) {
                        return Ok(status);
                    }
                }
                Err(CliError::Network(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(CliError::Timeout(format!(
                "file {id} did not reach {} within {} s",
                wanted
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                timeout.as_secs()
            )));
        }
        let sleep = hint.unwrap_or(pause).min(deadline - now);
        tokio::time::sleep(sleep).await;
        pause = (pause * 2).min(Duration::from_secs(15));
    }
}

/// How results are printed: JSON for programs, or lines for people.
struct Output {
    json: bool,
}

/// The scan in one line: the verdict, then what was found or why there is none, then who
/// scanned.
fn scan_line(scan: &Value) -> Option<String> {
    let verdict = scan["verdict"].as_str()?;
    let mut line = match verdict {
        "notScanned" => "notScanned (no scanner is configured)".to_owned(),
        other => other.to_owned(),
    };
    let threats: Vec<&str> = scan["threats"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !threats.is_empty() {
        line.push_str(&format!(": {}", threats.join(", ")));
    }
    if let Some(reason) = scan["reason"].as_str() {
        line.push_str(&format!(": {reason}"));
    }
    if let Some(name) = scan["scanner"]["name"].as_str() {
        let engine = scan["scanner"]["engine"]
            .as_str()
            .map(|e| format!(" {e}"))
            .unwrap_or_default();
        line.push_str(&format!(" ({name}{engine})"));
    }
    Some(line)
}

/// An archive's contents in one line: how many entries, and what deserves a look.
fn archive_line(archive: &Value) -> Option<String> {
    let count = archive["entryCount"].as_u64()?;
    let mut notes = Vec::new();
    match archive["encryptedEntries"].as_u64() {
        Some(n) if n > 0 => notes.push(format!("{n} encrypted")),
        _ => {}
    }
    match archive["nestedArchives"].as_u64() {
        Some(n) if n > 0 => notes.push(format!("{n} nested archives")),
        _ => {}
    }
    if archive["highCompressionRatio"] == json!(true) {
        notes.push(format!(
            "expands {}x",
            archive["compressionRatio"].as_u64().unwrap_or(0)
        ));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    Some(format!("{count} entries{notes}"))
}

impl Output {
    fn value(&self, value: &Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{value}");
    }

    fn status(&self, status: &Value) {
        if self.json {
            return self.value(status);
        }
        let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        println!("{}  {}", text(&status["id"]), text(&status["name"]));
        println!("  stage     {}", text(&status["stage"]));
        if let Some(size) = status["size"].as_u64() {
            println!("  size      {size} bytes");
        }
        if let Some(uploader) = status["uploader"]["name"].as_str() {
            println!("  uploader  {uploader}");
        }
        if let Some(scan) = scan_line(&status["scan"]) {
            println!("  scan      {scan}");
        }
        if let Some(sha) = status["analysis"]["sha256"].as_str() {
            println!("  sha256    {sha}");
        }
        if let Some(archive) = archive_line(&status["analysis"]["archive"]) {
            println!("  archive   {archive}");
        }
        if let Some(detected) = status["analysis"]["detectedContentType"].as_str() {
            println!("  detected  {detected}");
        }
        if let Some(deadline) = status["deadline"].as_str() {
            println!("  deadline  {deadline}");
        }
        for approval in status["approvals"].as_array().into_iter().flatten() {
            println!(
                "  {} {} by {}{}",
                text(&approval["stage"]),
                match approval["decision"].as_str() {
                    Some("requestChanges") => "changes requested",
                    _ if approval["approved"] == json!(true) => "approved",
                    _ => "rejected",
                },
                approval["reviewer"]["name"]
                    .as_str()
                    .or(approval["reviewer"].as_str())
                    .unwrap_or("-"),
                approval["comment"]
                    .as_str()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            );
        }
        // What the caller may do next, as the server decided it for them.
        if let Some(allowed) = status["allowedActions"].as_array() {
            let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
            let shown = if names.is_empty() {
                "nothing now".to_owned()
            } else {
                names.join(", ")
            };
            println!("  you may   {shown}");
        }
        for withheld in status["withheldActions"].as_array().into_iter().flatten() {
            println!(
                "  not you   {}: {}",
                text(&withheld["action"]),
                text(&withheld["message"])
            );
        }
    }

    fn listing(&self, page: &Value) {
        if self.json {
            return self.value(page);
        }
        let files = page["files"].as_array().cloned().unwrap_or_default();
        if files.is_empty() {
            println!("Nothing awaits you.");
        }
        for file in files {
            println!(
                "{}  {:<26}  {:>12}  {}",
                file["id"].as_str().unwrap_or("-"),
                file["stage"].as_str().unwrap_or("-"),
                file["size"]
                    .as_u64()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                file["name"].as_str().unwrap_or("-")
            );
        }
    }

    fn history(&self, history: &Value) {
        if self.json {
            return self.value(history);
        }
        for step in history["steps"].as_array().into_iter().flatten() {
            let mut line = format!(
                "{}  {}",
                step["time"].as_str().unwrap_or("-"),
                step["step"].as_str().unwrap_or("-")
            );
            if let Some(outcome) = step["outcome"].as_str() {
                line.push_str(&format!(" ({outcome})"));
            }
            if let Some(actor) = step["actor"]["name"].as_str() {
                line.push_str(&format!(" by {actor}"));
            }
            if let Some(comment) = step["comment"].as_str() {
                line.push_str(&format!(": {comment}"));
            }
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_reads_as_verdict_finding_and_scanner() {
        let malicious = json!({"verdict": "malicious", "threats": ["Eicar-Test-Signature"],
            "scanner": {"name": "clamav", "engine": "1.4.3"}});
        assert_eq!(
            scan_line(&malicious).unwrap(),
            "malicious: Eicar-Test-Signature (clamav 1.4.3)"
        );
        let unscannable = json!({"verdict": "unscannable", "threats": [],
            "reason": "an encrypted archive", "scanner": {"name": "defender"}});
        assert_eq!(
            scan_line(&unscannable).unwrap(),
            "unscannable: an encrypted archive (defender)"
        );
        assert_eq!(scan_line(&Value::Null), None);
    }

    #[test]
    fn an_archive_reads_as_its_count_and_its_warnings() {
        let archive = json!({"entryCount": 3, "encryptedEntries": 1, "nestedArchives": 0,
            "highCompressionRatio": true, "compressionRatio": 1000});
        assert_eq!(
            archive_line(&archive).unwrap(),
            "3 entries (1 encrypted, expands 1000x)"
        );
    }
}
