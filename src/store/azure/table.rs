//! Table Storage's JSON and OData dialect: our [`Entity`]/[`Prop`] to and from entity JSON,
//! query filters, and continuation tokens.
//!
//! Typing is explicit on the way out because JSON numbers are ambiguous to the service: a bare
//! integer is read as `Edm.Int32` (or `Edm.Double` when it does not fit), so every `Int` is sent
//! as a decimal string with `@odata.type: Edm.Int64`, and every `Float` carries
//! `Edm.Double`. On the way in, annotations decide the type; a bare number only
//! appears for entities written by other clients.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::store::{validate_key, ETag, Entity, Prop, StoreError, StoredEntity, TableQuery};

const PARTITION_KEY: &str = "PartitionKey";
const ROW_KEY: &str = "RowKey";
const TIMESTAMP: &str = "Timestamp";
const TYPE_SUFFIX: &str = "@odata.type";

/// Table Storage's page limit.
pub(crate) const MAX_PAGE: u32 = 1000;

/// Property names must be C# identifiers of at most 255 characters; the system properties
/// are the service's own. Checking here keeps odd names out of OData filters too.
pub(crate) fn validate_property_name(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok
        || name.len() > 255
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        || matches!(name, PARTITION_KEY | ROW_KEY | TIMESTAMP | "ETag")
    {
        return Err(StoreError::Invalid(format!(
            "property name {name:?} is not allowed (letters, digits and '_', not a system name)"
        )));
    }
    Ok(())
}

/// Checks keys and property names, then renders the entity's JSON body.
pub(crate) fn entity_to_json(entity: &Entity) -> Result<Value, StoreError> {
    validate_key(&entity.partition_key)?;
    validate_key(&entity.row_key)?;
    let mut map = Map::new();
    map.insert(
        PARTITION_KEY.into(),
        Value::String(entity.partition_key.clone()),
    );
    map.insert(ROW_KEY.into(), Value::String(entity.row_key.clone()));
    for (name, prop) in &entity.props {
        validate_property_name(name)?;
        let (value, edm_type) = match prop {
            Prop::Str(s) => (Value::String(s.clone()), None),
            Prop::Bool(b) => (Value::Bool(*b), None),
            Prop::Int(i) => (Value::String(i.to_string()), Some("Edm.Int64")),
            Prop::Float(f) => {
                let value = match Number::from_f64(*f) {
                    Some(n) => Value::Number(n),
                    // JSON has no NaN or infinities; OData spells them as strings.
                    None if f.is_nan() => Value::String("NaN".into()),
                    None if *f > 0.0 => Value::String("INF".into()),
                    None => Value::String("-INF".into()),
                };
                (value, Some("Edm.Double"))
            }
        };
        if let Some(edm_type) = edm_type {
            map.insert(
                format!("{name}{TYPE_SUFFIX}"),
                Value::String(edm_type.into()),
            );
        }
        map.insert(name.clone(), value);
    }
    Ok(Value::Object(map))
}

/// Reads an entity as the service returns it (any metadata level). `etag` comes from the
/// response's `ETag` header for single reads, or from `odata.etag` in query results.
pub(crate) fn entity_from_json(
    mut map: Map<String, Value>,
    etag: Option<String>,
) -> Result<StoredEntity, StoreError> {
    let etag = match etag {
        Some(etag) => etag,
        None => match map.get("odata.etag") {
            Some(Value::String(etag)) => etag.clone(),
            _ => return Err(malformed("an entity without odata.etag")),
        },
    };
    let partition_key = take_string(&mut map, PARTITION_KEY)?;
    let row_key = take_string(&mut map, ROW_KEY)?;
    let mut entity = Entity::new(partition_key, row_key);
    for (name, value) in &map {
        if name.starts_with("odata.") || name.contains('@') || name == TIMESTAMP {
            continue;
        }
        let annotation = map
            .get(&format!("{name}{TYPE_SUFFIX}"))
            .and_then(Value::as_str);
        if let Some(prop) = prop_from_json(name, value, annotation)? {
            entity.props.insert(name.clone(), prop);
        }
    }
    Ok(StoredEntity {
        entity,
        etag: ETag::new(etag),
    })
}

fn take_string(map: &mut Map<String, Value>, name: &str) -> Result<String, StoreError> {
    match map.remove(name) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(malformed(&format!("an entity without a string {name}"))),
    }
}

fn prop_from_json(
    name: &str,
    value: &Value,
    annotation: Option<&str>,
) -> Result<Option<Prop>, StoreError> {
    let bad = || malformed(&format!("property {name:?} does not match its type"));
    let prop = match (annotation, value) {
        (_, Value::Null) => return Ok(None),
        (Some("Edm.Int64" | "Edm.Int32"), Value::String(s)) => {
            Prop::Int(s.parse().map_err(|_| bad())?)
        }
        (Some("Edm.Int64" | "Edm.Int32"), Value::Number(n)) => {
            Prop::Int(n.as_i64().ok_or_else(bad)?)
        }
        (Some("Edm.Double"), Value::Number(n)) => Prop::Float(n.as_f64().ok_or_else(bad)?),
        (Some("Edm.Double"), Value::String(s)) => Prop::Float(match s.as_str() {
            "NaN" => f64::NAN,
            "INF" | "Infinity" => f64::INFINITY,
            "-INF" | "-Infinity" => f64::NEG_INFINITY,
            other => other.parse().map_err(|_| bad())?,
        }),
        (Some("Edm.Boolean") | None, Value::Bool(b)) => Prop::Bool(*b),
        // DateTime, Guid and Binary are never written by this app; another writer's values are
        // kept as their string form rather than failing the whole read.
        (
            Some("Edm.String" | "Edm.DateTime" | "Edm.Guid" | "Edm.Binary") | None,
            Value::String(s),
        ) => Prop::Str(s.clone()),
        (None, Value::Number(n)) => match n.as_i64() {
            Some(i) => Prop::Int(i),
            None => Prop::Float(n.as_f64().ok_or_else(bad)?),
        },
        _ => return Err(bad()),
    };
    Ok(Some(prop))
}

fn malformed(what: &str) -> StoreError {
    StoreError::internal(format!("Table Storage returned {what}"))
}

/// An OData string literal: single quotes doubled.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The `$filter` for a query, or `None` when it matches every row.
pub(crate) fn filter(query: &TableQuery) -> Result<String, StoreError> {
    let mut clauses = vec![format!(
        "{PARTITION_KEY} eq {}",
        literal(&query.partition_key)
    )];
    if let Some(range) = &query.row_keys {
        clauses.push(format!(
            "{ROW_KEY} ge {} and {ROW_KEY} lt {}",
            literal(&range.start),
            literal(&range.end)
        ));
    }
    for (name, value) in &query.equals {
        validate_property_name(name)?;
        let value = match value {
            Prop::Str(s) => literal(s),
            Prop::Bool(b) => b.to_string(),
            Prop::Int(i) => format!("{i}L"),
            Prop::Float(f) if f.is_finite() => format!("{f:?}"),
            Prop::Float(_) => {
                return Err(StoreError::Invalid(format!(
                    "property {name:?}: a query cannot compare with NaN or infinity"
                )))
            }
        };
        clauses.push(format!("{name} eq {value}"));
    }
    Ok(clauses.join(" and "))
}

/// The page size to ask for: at most [`MAX_PAGE`], at least one.
pub(crate) fn page_size(query: &TableQuery) -> u32 {
    query.top.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE)
}

/// Packs the service's `NextPartitionKey`/`NextRowKey` pair into one opaque, URL-safe token.
pub(crate) fn encode_continuation(partition_key: &str, row_key: Option<&str>) -> String {
    let json = serde_json::json!([partition_key, row_key]).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

pub(crate) fn decode_continuation(token: &str) -> Result<(String, Option<String>), StoreError> {
    let bad = || StoreError::Invalid("the continuation token is not one this store issued".into());
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    serde_json::from_slice::<(String, Option<String>)>(&json).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn ints_go_out_as_annotated_int64_strings() {
        let e = Entity::new("p", "r")
            .with("n", 5_000_000_000i64)
            .with("s", "x")
            .with("b", true);
        assert_eq!(
            entity_to_json(&e).unwrap(),
            json!({
                "PartitionKey": "p", "RowKey": "r",
                "n": "5000000000", "n@odata.type": "Edm.Int64",
                "s": "x", "b": true
            })
        );
    }

    #[test]
    fn floats_are_annotated_and_non_finite_ones_spelled_out() {
        let mut e = Entity::new("p", "r");
        e.props.insert("f".into(), Prop::Float(2.0));
        e.props.insert("g".into(), Prop::Float(f64::NEG_INFINITY));
        let v = entity_to_json(&e).unwrap();
        assert_eq!(v["f"], json!(2.0));
        assert_eq!(v["f@odata.type"], "Edm.Double");
        assert_eq!(v["g"], "-INF");
    }

    #[test]
    fn full_metadata_entity_reads_back_with_exact_types() {
        let map = object(json!({
            "odata.metadata": "http://x/$metadata#t/@Element",
            "odata.type": "devstoreaccount1.t",
            "odata.id": "http://x/t(PartitionKey='p',RowKey='r')",
            "odata.etag": "W/\"datetime'2026-11-24T08%3A28%3A58.8785681Z'\"",
            "odata.editLink": "t(PartitionKey='p',RowKey='r')",
            "PartitionKey": "p", "RowKey": "r",
            "Timestamp@odata.type": "Edm.DateTime", "Timestamp": "2026-11-24T08:28:58.8785681Z",
            "n@odata.type": "Edm.Int64", "n": "-9223372036854775808",
            "f@odata.type": "Edm.Double", "f": 2.0,
            "nan@odata.type": "Edm.Double", "nan": "NaN",
            "i32@odata.type": "Edm.Int32", "i32": 7,
            "s": "hello", "b": false
        }));
        let stored = entity_from_json(map, None).unwrap();
        assert_eq!(
            stored.etag.as_str(),
            "W/\"datetime'2026-11-24T08%3A28%3A58.8785681Z'\""
        );
        let p = &stored.entity.props;
        assert_eq!(p["n"], Prop::Int(i64::MIN));
        assert_eq!(p["f"], Prop::Float(2.0));
        assert!(matches!(p["nan"], Prop::Float(x) if x.is_nan()));
        assert_eq!(p["i32"], Prop::Int(7));
        assert_eq!(p["s"], Prop::Str("hello".into()));
        assert_eq!(p["b"], Prop::Bool(false));
        assert_eq!(
            p.len(),
            6,
            "system and metadata fields are not properties: {p:?}"
        );
    }

    #[test]
    fn header_etag_wins_over_body() {
        let map = object(json!({"PartitionKey": "p", "RowKey": "r"}));
        let stored = entity_from_json(map, Some("W/\"1\"".into())).unwrap();
        assert_eq!(stored.etag.as_str(), "W/\"1\"");
    }

    #[test]
    fn mistyped_value_is_an_internal_error() {
        let map = object(json!({
            "PartitionKey": "p", "RowKey": "r", "odata.etag": "e",
            "n@odata.type": "Edm.Int64", "n": "twelve"
        }));
        assert!(matches!(
            entity_from_json(map, None),
            Err(StoreError::Internal(_))
        ));
    }

    #[test]
    fn system_and_odd_property_names_are_refused() {
        for name in [
            "RowKey",
            "Timestamp",
            "a-b",
            "1a",
            "x@odata.type",
            "",
            "a b",
        ] {
            let e = Entity::new("p", "r").with(name, "v");
            assert!(
                matches!(entity_to_json(&e), Err(StoreError::Invalid(_))),
                "{name:?} accepted"
            );
        }
    }

    #[test]
    fn forbidden_key_characters_are_refused() {
        let e = Entity::new("p", "a/b");
        assert!(matches!(entity_to_json(&e), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn filter_escapes_quotes_and_types_literals() {
        let q = TableQuery {
            row_keys: Some("a".to_owned().."b".to_owned()),
            equals: vec![
                ("status".into(), Prop::from("it's")),
                ("done".into(), Prop::from(true)),
                ("n".into(), Prop::from(3i64)),
                ("f".into(), Prop::Float(1.0)),
            ],
            ..TableQuery::partition("o'brien")
        };
        assert_eq!(
            filter(&q).unwrap(),
            "PartitionKey eq 'o''brien' and RowKey ge 'a' and RowKey lt 'b' \
             and status eq 'it''s' and done eq true and n eq 3L and f eq 1.0"
        );
    }

    #[test]
    fn filter_refuses_property_names_that_could_inject() {
        let q = TableQuery {
            equals: vec![("x eq 1 or y".into(), Prop::from(true))],
            ..TableQuery::partition("p")
        };
        assert!(matches!(filter(&q), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn a_partition_query_filters_on_its_partition_and_asks_for_a_full_page() {
        let q = TableQuery::partition("p");
        assert_eq!(filter(&q).unwrap(), "PartitionKey eq 'p'");
        assert_eq!(page_size(&q), 1000);
        let q = TableQuery {
            top: Some(5000),
            ..TableQuery::partition("p")
        };
        assert_eq!(page_size(&q), 1000);
    }

    #[test]
    fn continuation_round_trips_and_rejects_garbage() {
        let token = encode_continuation("1!8!cA--", Some("1!8!cg--"));
        assert_eq!(
            decode_continuation(&token).unwrap(),
            ("1!8!cA--".to_owned(), Some("1!8!cg--".to_owned()))
        );
        let token = encode_continuation("p", None);
        assert_eq!(decode_continuation(&token).unwrap(), ("p".to_owned(), None));
        assert!(matches!(
            decode_continuation("not a token"),
            Err(StoreError::Invalid(_))
        ));
    }
}
