//! The table layout: how an instance maps onto rows of one partition.
//!
//! | RowKey | holds |
//! |---|---|
//! | `h-` + 16 hex digits of the event id | one [`HistoryEvent`] as JSON (`Event`), plus `EventType` for people reading the table |
//! | `state` | [`InstanceState`]: name, status, custom status, input, output, failure, times, the next event id, open work |
//!
//! `h-…` sorts before `state`, and zero-padded hex sorts like the numbers, so one partition
//! query returns the history in order followed by the state row.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use super::error::EngineError;
use super::event::{HistoryEvent, RuntimeStatus};
use super::instance::{InstanceState, InstanceStatus};
use crate::store::{Entity, Prop, StoredEntity};

pub const STATE_ROW: &str = "state";
/// The half-open row-key range that selects exactly the state rows in a cross-partition query:
/// every key in it starts with `state`, and no other row key does.
pub const STATE_ROW_RANGE: std::ops::Range<&str> = "state".."statf";

/// [`STATE_ROW_RANGE`] as a query takes it.
pub fn state_row_range() -> std::ops::Range<String> {
    STATE_ROW_RANGE.start.to_owned()..STATE_ROW_RANGE.end.to_owned()
}

pub const P_NAME: &str = "Name";
pub const P_RUNTIME_STATUS: &str = "RuntimeStatus";
pub const P_CUSTOM_STATUS: &str = "CustomStatus";
pub const P_INPUT: &str = "Input";
pub const P_OUTPUT: &str = "Output";
pub const P_FAILURE: &str = "Failure";
pub const P_CREATED_TIME: &str = "CreatedTime";
pub const P_LAST_UPDATED_TIME: &str = "LastUpdatedTime";
pub const P_NEXT_EVENT_ID: &str = "NextEventId";
pub const P_OPEN_ACTIVITIES: &str = "OpenActivities";
pub const P_OPEN_TIMERS: &str = "OpenTimers";
pub const P_INDEX_ROW: &str = "IndexRow";
pub const P_STALE_INDEX_ROW: &str = "StaleIndexRow";
pub const P_EVENT: &str = "Event";
pub const P_EVENT_TYPE: &str = "EventType";

/// The row key of history event `event_id`.
pub fn history_row_key(event_id: i64) -> String {
    format!("h-{event_id:016x}")
}

/// Fixed-width RFC 3339, so string order is time order.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// JSON with object keys sorted, whatever serde_json's map order: equal values give equal
/// strings, which list filters and `expect_custom_status` rely on.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

impl InstanceState {
    /// The state row (PartitionKey = the instance id).
    pub fn to_entity(&self) -> Entity {
        let status = &self.status;
        let mut e = Entity::new(status.instance_id.as_str(), STATE_ROW)
            .with(P_NAME, status.name.as_str())
            .with(P_RUNTIME_STATUS, status.runtime_status.as_str())
            .with(P_CUSTOM_STATUS, canonical_json(&status.custom_status))
            .with(P_INPUT, status.input.to_string())
            .with(P_CREATED_TIME, format_time(status.created_time))
            .with(P_LAST_UPDATED_TIME, format_time(status.last_updated_time))
            .with(P_NEXT_EVENT_ID, self.next_event_id)
            .with(
                P_OPEN_ACTIVITIES,
                serde_json::to_string(&self.open_activities).unwrap_or_else(|_| "[]".into()),
            )
            .with(
                P_OPEN_TIMERS,
                serde_json::to_string(&self.open_timers).unwrap_or_else(|_| "[]".into()),
            );
        if let Some(output) = &status.output {
            e = e.with(P_OUTPUT, output.to_string());
        }
        if let Some(failure) = &status.failure {
            e = e.with(P_FAILURE, failure.as_str());
        }
        if let Some(row) = &self.index_row {
            e = e.with(P_INDEX_ROW, row.as_str());
        }
        if let Some(row) = &self.stale_index_row {
            e = e.with(P_STALE_INDEX_ROW, row.as_str());
        }
        e
    }

    pub fn from_entity(entity: &Entity) -> Result<Self, EngineError> {
        let corrupt = |what: &str| {
            EngineError::Corrupt(format!(
                "state row of {} has no valid {what}",
                entity.partition_key
            ))
        };
        let json = |name: &str| -> Result<Option<Value>, EngineError> {
            entity
                .str(name)
                .map(|s| serde_json::from_str(s).map_err(|_| corrupt(name)))
                .transpose()
        };
        let time = |name: &str| entity.str(name).and_then(parse_time);
        Ok(InstanceState {
            status: InstanceStatus {
                instance_id: entity.partition_key.clone(),
                name: entity
                    .str(P_NAME)
                    .ok_or_else(|| corrupt(P_NAME))?
                    .to_owned(),
                runtime_status: entity
                    .str(P_RUNTIME_STATUS)
                    .and_then(RuntimeStatus::parse)
                    .ok_or_else(|| corrupt(P_RUNTIME_STATUS))?,
                custom_status: json(P_CUSTOM_STATUS)?.unwrap_or(Value::Null),
                input: json(P_INPUT)?.unwrap_or(Value::Null),
                output: json(P_OUTPUT)?,
                failure: entity.str(P_FAILURE).map(str::to_owned),
                created_time: time(P_CREATED_TIME).ok_or_else(|| corrupt(P_CREATED_TIME))?,
                last_updated_time: time(P_LAST_UPDATED_TIME)
                    .ok_or_else(|| corrupt(P_LAST_UPDATED_TIME))?,
                history: None,
            },
            next_event_id: entity
                .i64(P_NEXT_EVENT_ID)
                .ok_or_else(|| corrupt(P_NEXT_EVENT_ID))?,
            open_activities: json(P_OPEN_ACTIVITIES)?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|_| corrupt(P_OPEN_ACTIVITIES))?
                .unwrap_or_default(),
            open_timers: json(P_OPEN_TIMERS)?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|_| corrupt(P_OPEN_TIMERS))?
                .unwrap_or_default(),
            index_row: entity.str(P_INDEX_ROW).map(str::to_owned),
            stale_index_row: entity.str(P_STALE_INDEX_ROW).map(str::to_owned),
        })
    }
}

/// A history row for `event`.
pub fn history_entity(instance_id: &str, event: &HistoryEvent) -> Result<Entity, EngineError> {
    let json = serde_json::to_string(event)
        .map_err(|e| EngineError::Corrupt(format!("unserializable history event: {e}")))?;
    Ok(Entity::new(instance_id, history_row_key(event.event_id))
        .with(P_EVENT_TYPE, event.kind.type_name())
        .with(P_EVENT, Prop::Str(json)))
}

/// Decodes a history row.
pub fn history_event(stored: &StoredEntity) -> Result<HistoryEvent, EngineError> {
    let entity = &stored.entity;
    let json = entity.str(P_EVENT).ok_or_else(|| {
        EngineError::Corrupt(format!(
            "history row {}/{} has no Event",
            entity.partition_key, entity.row_key
        ))
    })?;
    serde_json::from_str(json).map_err(|e| {
        EngineError::Corrupt(format!(
            "history row {}/{} is unreadable: {e}",
            entity.partition_key, entity.row_key
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::OpenTimer;

    #[test]
    fn history_row_keys_sort_like_their_event_ids_and_before_the_state_row() {
        let keys: Vec<String> = [0, 9, 10, 255, 4096, i64::MAX]
            .iter()
            .map(|&id| history_row_key(id))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys.iter().all(|k| k.as_str() < STATE_ROW));
        assert!(STATE_ROW_RANGE.contains(&STATE_ROW));
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).unwrap_or_default();
        let b: Value = serde_json::from_str(r#"{"a":{"c":3,"d":2},"b":1}"#).unwrap_or_default();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"c":3,"d":2},"b":1}"#);
    }

    #[test]
    fn state_rows_round_trip() {
        let t = DateTime::<Utc>::from_timestamp(1_700_000_000, 123_000).unwrap_or_default();
        let state = InstanceState {
            status: InstanceStatus {
                instance_id: "x".into(),
                name: "FileApproval".into(),
                runtime_status: RuntimeStatus::Running,
                custom_status: serde_json::json!({"stage": "AwaitingUploadApproval"}),
                input: serde_json::json!({"id": "x"}),
                output: None,
                failure: None,
                created_time: t,
                last_updated_time: t,
                history: None,
            },
            next_event_id: 7,
            open_activities: vec![5],
            open_timers: vec![OpenTimer {
                timer_id: 6,
                fire_at: t + chrono::Duration::days(3),
            }],
            index_row: Some("k~2023-11-14T22:13:20.000123Z~x".into()),
            stale_index_row: None,
        };
        let entity = state.to_entity();
        let back = InstanceState::from_entity(&entity).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, state);
    }
}
