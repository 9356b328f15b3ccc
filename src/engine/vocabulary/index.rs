//! The status index: instances listed by a key derived from their custom status, without
//! scanning the instances.
//!
//! All rows live in one partition (`index`) of the engine's index table, keyed
//! `<key>~<since>~<instance>` — `since` is when the instance took that key — so one partition
//! query lists a key's instances oldest first, and every query names its partition. The key is
//! the application's to choose ([`IndexKeyFn`]): File Approver groups the stages a reviewer acts
//! on, so a step that changes nothing for people (analysis finishing) writes no index row.
//!
//! The index cannot be written atomically with a turn (another partition), so it is written
//! around it, in an order that keeps every listing complete:
//!
//! - before the turn's commit, the instance's row for its new key is inserted (together with the
//!   deletion of its row from two keys back, stale since the previous change: one batch);
//! - the state row records which index row is current (`IndexRow`) and which is now stale
//!   (`StaleIndexRow`), atomically with the turn;
//! - when the instance finishes, its previous key's row is deleted after the commit.
//!
//! A row is valid only while the instance's state names it. A crash or a failed commit between
//! the two writes leaves a row that no state names (or a stale one not yet deleted); a listing
//! skips such rows and deletes them as it meets them, so no key's listing ever misses an
//! instance and garbage does not outlive the next listing that reaches it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::Value;

use super::rows::{canonical_json, format_time};

/// Maps an instance's custom status to the key it is listed under; `None`: not listed.
pub type IndexKeyFn = Arc<dyn Fn(&Value) -> Option<String> + Send + Sync>;

/// The one partition of the index table.
pub const INDEX_PARTITION: &str = "index";

/// What a key may not hold as itself: what table keys forbid, the row key's separator, `%`.
const ESCAPED: &AsciiSet = &CONTROLS
    .add(b'/')
    .add(b'\\')
    .add(b'#')
    .add(b'?')
    .add(b'~')
    .add(b'%');

/// Makes any text usable as a key (percent-encoding what table keys forbid).
pub fn escape_key(text: &str) -> String {
    utf8_percent_encode(text, ESCAPED).to_string()
}

/// The default: every distinct custom status is its own key.
pub fn by_custom_status() -> IndexKeyFn {
    Arc::new(|status: &Value| Some(escape_key(&canonical_json(status))))
}

/// The row of `instance` under `key` since `since`.
pub(in crate::engine) fn row_key(key: &str, since: DateTime<Utc>, instance: &str) -> String {
    format!("{key}~{}~{instance}", format_time(since))
}

/// Every row of `key`: its rows start with `key~` and then a time, which sorts below `~`.
pub(in crate::engine) fn key_range(key: &str) -> std::ops::Range<String> {
    format!("{key}~")..format!("{key}~~")
}

/// The key and instance a row key names.
pub(in crate::engine) fn parse_row_key(row_key: &str) -> Option<(&str, &str)> {
    let (key, rest) = row_key.split_once('~')?;
    let (_since, instance) = rest.split_once('~')?;
    Some((key, instance))
}

/// What one turn does to the index: `before` goes with (ahead of) the commit, `after` once it
/// has landed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::engine) struct IndexChange {
    pub insert: Option<String>,
    pub delete_before: Option<String>,
    pub delete_after: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_keys_sort_by_key_then_time_and_stay_inside_their_range() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let early = row_key("2-review", t, "a");
        let late = row_key("2-review", t + chrono::Duration::seconds(1), "b");
        assert!(early < late);
        let range = key_range("2-review");
        assert!(range.contains(&early) && range.contains(&late));
        assert!(!range.contains(&row_key("3-approved", t, "a")));
        assert!(!range.contains(&row_key("2-review-x", t, "a")));
        assert_eq!(parse_row_key(&early), Some(("2-review", "a")));
    }

    #[test]
    fn custom_statuses_become_safe_keys() {
        let key = by_custom_status()(&serde_json::json!({"a/b": "c~d#?"})).unwrap_or_default();
        assert!(!key.contains(['/', '\\', '#', '?', '~']), "{key}");
        assert!(crate::store::validate_key(&key).is_ok());
    }
}
