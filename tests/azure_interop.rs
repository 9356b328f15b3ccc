//! The app's own Tables client and the official Azure SDK for Python (`azure-data-tables`,
//! pinned in scripts/interop-requirements.txt) on the same table of an Azure Storage account
//! (Azurite via `scripts/test`): what one writes, the other reads back with the same values
//! and the same types. The Python comes from `FILE_APPROVER_TEST_PYTHON` (scripts/test makes
//! a virtual environment for it); without it these tests are reported as ignored, except under
//! `CI`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use file_approver::store::azure::AzureStore;
use file_approver::store::conformance::azure_test_connection_string;
use file_approver::store::{BatchOp, Entity, Prop, Storage, TableQuery};
use serde_json::{json, Value};

fn python() -> String {
    match std::env::var("FILE_APPROVER_TEST_PYTHON") {
        Ok(python) if !python.trim().is_empty() => python,
        _ => panic!(
            "FILE_APPROVER_TEST_PYTHON is unset: these tests need a Python with \
             azure-data-tables (scripts/test makes one)"
        ),
    }
}

/// Runs tests/interop/tables.py and parses what it printed.
fn sdk(verb: &str, table: &str, partition: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/tables.py");
    let output = Command::new(python())
        .args([
            script,
            verb,
            &azure_test_connection_string(),
            table,
            partition,
        ])
        .output()
        .expect("the Python interpreter runs");
    assert!(
        output.status.success(),
        "tables.py {verb}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("tables.py prints JSON")
}

async fn fresh_table(store: &AzureStore) -> String {
    let table = format!(
        "interop{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    store.ensure_table(&table).await.unwrap();
    table
}

#[tokio::test]
#[cfg_attr(
    interop_tests_skipped,
    ignore = "needs Azure Storage and a Python with azure-data-tables (scripts/test sets both)"
)]
async fn entities_the_python_sdk_writes_read_back_here_with_their_types() {
    let store = AzureStore::from_connection_string(&azure_test_connection_string()).unwrap();
    let table = fresh_table(&store).await;
    sdk("write", &table, "p1");

    let first = store
        .get_entity(&table, "p1", "from-python-1")
        .await
        .unwrap();
    let props = &first.entity.props;
    assert_eq!(props["Name"], Prop::Str("O'Brien ✓ é".into()));
    assert_eq!(props["Big"], Prop::Int(9_007_199_254_740_993));
    assert_eq!(props["Ratio"], Prop::Float(0.25));
    assert_eq!(props["Done"], Prop::Bool(true));
    let page = store
        .query(&table, &TableQuery::partition("p1".to_owned()))
        .await
        .unwrap();
    let rows: Vec<&str> = page
        .entities
        .iter()
        .map(|e| e.entity.row_key.as_str())
        .collect();
    assert_eq!(rows, ["from-python-1", "from-python-2"]);
    // The ETag the SDK's write left guards a write from here.
    store
        .delete_entity(&table, "p1", "from-python-1", Some(&first.etag))
        .await
        .unwrap();
}

#[tokio::test]
#[cfg_attr(
    interop_tests_skipped,
    ignore = "needs Azure Storage and a Python with azure-data-tables (scripts/test sets both)"
)]
async fn entities_written_here_read_back_in_the_python_sdk_with_their_types() {
    let store = AzureStore::from_connection_string(&azure_test_connection_string()).unwrap();
    let table = fresh_table(&store).await;
    let mut state = Entity::new("p2", "state");
    state
        .props
        .insert("Name".into(), Prop::Str("it's ✓".into()));
    state.props.insert("Next".into(), Prop::Int(1 << 40));
    state.props.insert("Ratio".into(), Prop::Float(1.5));
    state.props.insert("Done".into(), Prop::Bool(false));
    let etag = store.insert_entity(&table, &state).await.unwrap();
    // A batch as a turn writes one: the state row updated under its ETag, history inserted.
    state.props.insert("Done".into(), Prop::Bool(true));
    let history = Entity::new("p2", "h-0000000000000000");
    store
        .batch(
            &table,
            "p2",
            vec![
                BatchOp::Update {
                    entity: state,
                    if_match: etag,
                },
                BatchOp::Insert(history),
            ],
        )
        .await
        .unwrap();

    let read = sdk("read", &table, "p2");
    assert_eq!(
        read,
        json!([
            { "RowKey": "h-0000000000000000", "props": {} },
            { "RowKey": "state", "props": {
                "Name": ["Edm.String", "it's ✓"],
                "Next": ["Edm.Int64", (1u64 << 40).to_string()],
                "Ratio": ["Edm.Double", 1.5],
                "Done": ["Edm.Boolean", true],
            } },
        ])
    );
}
