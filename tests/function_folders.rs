//! The function folders as the Functions host loads them: every `function.json` must load on
//! Flex Consumption (no polling blob trigger) and match what the handler serves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use file_approver::files::{FILES_TABLE, OPEN_UPLOADS};
use file_approver::store::FILES_CONTAINER;
use serde_json::Value;

fn function_folders() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path().join("function.json");
        if path.is_file() {
            let name = path
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}/function.json: {e}"));
            found.push((name, json));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn bindings(function: &Value) -> &Vec<Value> {
    function["bindings"].as_array().expect("a bindings array")
}

#[test]
fn no_function_uses_a_polling_blob_trigger_which_flex_consumption_refuses() {
    for (name, function) in function_folders() {
        for binding in bindings(&function) {
            if binding["type"] == "blobTrigger" {
                assert_eq!(
                    binding["source"], "EventGrid",
                    "{name}: a blob trigger without \"source\": \"EventGrid\" does not load on Flex Consumption"
                );
            }
        }
    }
}

#[test]
fn the_orchestrator_reads_the_record_where_uploads_write_it() {
    let (_, orchestrator) = function_folders()
        .into_iter()
        .find(|(name, _)| name == "orchestrator")
        .expect("an orchestrator folder");
    let bindings = bindings(&orchestrator);
    let trigger = bindings
        .iter()
        .find(|b| b["type"] == "blobTrigger")
        .expect("a blob trigger");
    assert_eq!(trigger["path"], format!("{FILES_CONTAINER}/{{id}}"));
    assert_eq!(trigger["name"], "blob");
    let record = bindings
        .iter()
        .find(|b| b["type"] == "table")
        .expect("a table input");
    assert_eq!(record["direction"], "in");
    assert_eq!(record["name"], "record");
    assert_eq!(record["tableName"], FILES_TABLE);
    assert_eq!(record["partitionKey"], OPEN_UPLOADS);
    assert_eq!(record["rowKey"], "{id}");
}

/// Every HTTP function needs the function key, but the web page's (`ui`) and the download
/// links' (`fetch`): the page holds no data (its calls to the API carry the key and the
/// caller's identity), and a browser cannot send a key when it first opens a page; a download
/// link is its own authority (its signature), as a SAS is, for clients holding no key.
#[test]
fn every_http_function_has_one_trigger_one_output_and_a_function_key() {
    let mut http = 0;
    for (name, function) in function_folders() {
        let bindings = bindings(&function);
        let triggers: Vec<_> = bindings
            .iter()
            .filter(|b| b["type"] == "httpTrigger")
            .collect();
        if triggers.is_empty() {
            continue;
        }
        http += 1;
        assert_eq!(triggers.len(), 1, "{name}");
        let level = if name == "ui" || name == "fetch" {
            "anonymous"
        } else {
            "function"
        };
        assert_eq!(triggers[0]["authLevel"], level, "{name}");
        let outputs = bindings.iter().filter(|b| b["type"] == "http").count();
        assert_eq!(outputs, 1, "{name}");
    }
    assert!(http >= 4, "upload, status, approve, download");
}
