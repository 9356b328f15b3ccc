//! Table Storage over the official pipeline, our own thin client: the official SDK has no
//! Tables crate, and the storage trait needs only this — create a table, get an entity, insert
//! one, delete one (with or without an ETag), query one partition a page at a time, and commit
//! an entity group transaction (`$batch`), reading the status of **every** operation in the
//! multipart answer. Entities travel as JSON with `odata=minimalmetadata` (typed by
//! `table.rs`); every body is built and read here, none is held longer than its request.

use azure_core::http::{Context, Method, Pipeline, RawResponse, Request, Url};
use serde_json::{json, Map, Value};

use super::table;
use crate::store::{
    validate_key, BatchOp, ETag, Entity, Page, StoreError, StoredEntity, TableQuery,
};

const JSON_MINIMAL: &str = "application/json;odata=minimalmetadata";

/// The tables of one account.
#[derive(Debug, Clone)]
pub struct TableClient {
    pipeline: Pipeline,
    /// The table service's endpoint (`https://acct.table.core.windows.net`, or Azurite's
    /// `http://127.0.0.1:10002/devstoreaccount1`), without a trailing slash.
    endpoint: String,
}

impl TableClient {
    pub fn new(pipeline: Pipeline, endpoint: &Url) -> Self {
        TableClient {
            pipeline,
            endpoint: endpoint.as_str().trim_end_matches('/').to_owned(),
        }
    }

    fn url(&self, path: &str) -> Result<Url, StoreError> {
        format!("{}/{path}", self.endpoint)
            .parse()
            .map_err(|e| StoreError::internal(format!("a table URL: {e}")))
    }

    /// A request with the headers every table request carries.
    fn request(&self, method: Method, url: Url) -> Request {
        let mut request = Request::new(url, method);
        request.insert_header("x-ms-version", super::pipeline::TABLE_VERSION);
        request.insert_header("accept", JSON_MINIMAL);
        request.insert_header("dataserviceversion", "3.0;NetFx");
        request.insert_header("maxdataserviceversion", "3.0;NetFx");
        request
    }

    /// Sends a request; a status other than 2xx comes back as the pipeline's error (it checks
    /// every answer), mapped by `map_error`.
    async fn send(
        &self,
        operation: &'static str,
        mut request: Request,
    ) -> Result<RawResponse, StoreError> {
        self.pipeline
            .send(&Context::new(), &mut request, None)
            .await
            .map_err(|e| super::map_error(operation, e))
    }

    /// Creates the table; one that exists already is no failure.
    pub async fn create_table(&self, table: &str) -> Result<(), StoreError> {
        let mut request = self.request(Method::Post, self.url("Tables")?);
        request.insert_header("content-type", "application/json");
        request.insert_header("prefer", "return-no-content");
        request.set_body(json!({ "TableName": table }).to_string());
        match self.send("create table", request).await {
            Ok(_) | Err(StoreError::AlreadyExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn get(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
    ) -> Result<StoredEntity, StoreError> {
        validate_key(partition_key)?;
        validate_key(row_key)?;
        let url = self.url(&entity_path(table, partition_key, row_key))?;
        let response = self
            .send("get entity", self.request(Method::Get, url))
            .await?;
        let etag = header(&response, "etag");
        let map = json_object(&response, "get entity")?;
        table::entity_from_json(map, etag)
    }

    pub async fn insert(&self, table: &str, entity: &Entity) -> Result<ETag, StoreError> {
        let body = table::entity_to_json(entity)?;
        let mut request = self.request(Method::Post, self.url(&encode_path(table))?);
        request.insert_header("content-type", "application/json");
        request.insert_header("prefer", "return-no-content");
        request.set_body(body.to_string());
        let response = self.send("insert entity", request).await?;
        header(&response, "etag")
            .map(ETag::new)
            .ok_or_else(|| StoreError::internal("an insert answered no ETag"))
    }

    /// Deletes an entity: only at `if_match`'s version when given, else whatever it holds.
    pub async fn delete(
        &self,
        table: &str,
        partition_key: &str,
        row_key: &str,
        if_match: Option<&ETag>,
    ) -> Result<(), StoreError> {
        validate_key(partition_key)?;
        validate_key(row_key)?;
        let url = self.url(&entity_path(table, partition_key, row_key))?;
        let mut request = self.request(Method::Delete, url);
        request.insert_header("if-match", if_match.map_or("*", ETag::as_str).to_owned());
        self.send("delete entity", request).await.map(drop)
    }

    /// One page of a query over one partition.
    pub async fn query(&self, table: &str, query: &TableQuery) -> Result<Page, StoreError> {
        let mut url = self.url(&format!("{}()", encode_path(table)))?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("$filter", &table::filter(query)?);
            pairs.append_pair("$top", &table::page_size(query).to_string());
            if let Some(token) = &query.continuation {
                let (partition, row) = table::decode_continuation(token)?;
                pairs.append_pair("NextPartitionKey", &partition);
                if let Some(row) = row {
                    pairs.append_pair("NextRowKey", &row);
                }
            }
        }
        let response = self
            .send("query entities", self.request(Method::Get, url))
            .await?;
        let next_partition = header(&response, "x-ms-continuation-nextpartitionkey");
        let next_row = header(&response, "x-ms-continuation-nextrowkey");
        let continuation =
            next_partition.map(|p| table::encode_continuation(&p, next_row.as_deref()));
        let mut body = json_object(&response, "query entities")?;
        let entities = match body.remove("value") {
            Some(Value::Array(values)) => values
                .into_iter()
                .map(|value| match value {
                    Value::Object(map) => table::entity_from_json(map, None),
                    _ => Err(StoreError::internal("a query answered a non-object entity")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(StoreError::internal("a query answered no value array")),
        };
        Ok(Page {
            entities,
            continuation,
        })
    }

    /// An entity group transaction: all of `operations` (one partition) or none. Answers each
    /// operation's new ETag (none for deletes).
    pub async fn batch(
        &self,
        table: &str,
        partition_key: &str,
        operations: &[BatchOp],
    ) -> Result<Vec<Option<ETag>>, StoreError> {
        let batch_boundary = format!("batch_{}", uuid::Uuid::new_v4());
        let body = batch_body(
            &self.endpoint,
            table,
            partition_key,
            operations,
            &batch_boundary,
        )?;
        let mut request = self.request(Method::Post, self.url("$batch")?);
        request.insert_header(
            "content-type",
            format!("multipart/mixed; boundary={batch_boundary}"),
        );
        request.set_body(body);
        let response = self.send("entity group transaction", request).await?;
        let answers = batch_answers(response.body())?;
        // A failed transaction answers 202 with only the failing operation's response inside:
        // every status must be looked at, not the HTTP call's.
        if let Some(failed) = answers.iter().find(|a| !(200..300).contains(&a.status)) {
            return Err(super::batch_failure(failed.status));
        }
        if answers.len() != operations.len() {
            return Err(StoreError::internal(format!(
                "the batch answered {} operation responses for {} operations",
                answers.len(),
                operations.len()
            )));
        }
        operations
            .iter()
            .zip(answers)
            .map(|(op, answer)| match op {
                BatchOp::Delete { .. } => Ok(None),
                _ => answer
                    .etag
                    .map(|e| Some(ETag::new(e)))
                    .ok_or_else(|| StoreError::internal("a batch operation answered no ETag")),
            })
            .collect()
    }
}

/// A table name or key, percent-encoded for a URL path.
fn encode_path(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, PATH).to_string()
}

/// What a path segment may not hold raw.
const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'(')
    .remove(b')')
    .remove(b'=')
    .remove(b',');

/// `table(PartitionKey='…',RowKey='…')`, quotes doubled as OData literals want, then encoded.
fn entity_path(table: &str, partition_key: &str, row_key: &str) -> String {
    let literal = |key: &str| encode_path(&key.replace('\'', "''"));
    format!(
        "{}(PartitionKey=%27{}%27,RowKey=%27{}%27)",
        encode_path(table),
        literal(partition_key),
        literal(row_key)
    )
}

fn header(response: &RawResponse, name: &'static str) -> Option<String> {
    response
        .headers()
        .get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
        .map(str::to_owned)
}

fn json_object(
    response: &RawResponse,
    operation: &'static str,
) -> Result<Map<String, Value>, StoreError> {
    match serde_json::from_slice(response.body()) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(StoreError::internal(format!(
            "{operation} answered a non-object"
        ))),
        Err(e) => Err(StoreError::internal(format!(
            "{operation} answered bad JSON: {e}"
        ))),
    }
}

/// The request body of an entity group transaction: one change set holding every operation,
/// lines ending in CRLF as MIME and the service's documentation want.
fn batch_body(
    endpoint: &str,
    table: &str,
    partition_key: &str,
    operations: &[BatchOp],
    batch_boundary: &str,
) -> Result<String, StoreError> {
    let changeset = format!("changeset_{}", uuid::Uuid::new_v4());
    let mut body = String::new();
    body.push_str(&format!("--{batch_boundary}\r\n"));
    body.push_str(&format!(
        "Content-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
    ));
    for op in operations {
        body.push_str(&format!("--{changeset}\r\n"));
        body.push_str("Content-Type: application/http\r\n");
        body.push_str("Content-Transfer-Encoding: binary\r\n\r\n");
        let (method, path, if_match, entity) = match op {
            BatchOp::Insert(entity) => ("POST", encode_path(table), None, Some(entity)),
            BatchOp::Update { entity, if_match } => (
                "PUT",
                entity_path(table, &entity.partition_key, &entity.row_key),
                Some(if_match.as_str().to_owned()),
                Some(entity),
            ),
            BatchOp::Delete { row_key, if_match } => (
                "DELETE",
                entity_path(table, partition_key, row_key),
                Some(if_match.as_ref().map_or("*", ETag::as_str).to_owned()),
                None,
            ),
        };
        body.push_str(&format!("{method} {endpoint}/{path} HTTP/1.1\r\n"));
        body.push_str(&format!("Accept: {JSON_MINIMAL}\r\n"));
        body.push_str("DataServiceVersion: 3.0;NetFx\r\n");
        if let Some(if_match) = if_match {
            body.push_str(&format!("If-Match: {if_match}\r\n"));
        }
        match entity {
            Some(entity) => {
                let json = table::entity_to_json(entity)?.to_string();
                body.push_str("Content-Type: application/json\r\n");
                body.push_str("Prefer: return-no-content\r\n");
                body.push_str(&format!("Content-Length: {}\r\n\r\n", json.len()));
                body.push_str(&json);
                body.push_str("\r\n");
            }
            None => body.push_str("\r\n"),
        }
    }
    body.push_str(&format!("--{changeset}--\r\n"));
    body.push_str(&format!("--{batch_boundary}--\r\n"));
    Ok(body)
}

/// One operation's answer inside a batch response.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    etag: Option<String>,
}

/// Reads every embedded HTTP response of a batch answer, in order: its status line and ETag.
fn batch_answers(body: &[u8]) -> Result<Vec<Answer>, StoreError> {
    let text = String::from_utf8_lossy(body);
    let mut answers = Vec::new();
    let mut lines = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("HTTP/1.1 ") else {
            continue;
        };
        let status = rest
            .split(' ')
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| StoreError::internal(format!("a batch answer's status line: {line}")))?;
        let mut etag = None;
        // The embedded response's headers run to the first empty line.
        for header in lines.by_ref() {
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.trim().eq_ignore_ascii_case("etag") {
                    etag = Some(value.trim().to_owned());
                }
            }
        }
        answers.push(Answer { status, etag });
    }
    if answers.is_empty() {
        return Err(StoreError::internal(
            "a batch answered no operation response",
        ));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Prop;

    #[test]
    fn entity_paths_double_quotes_and_encode_what_a_path_cannot_hold() {
        assert_eq!(
            entity_path("workflows", "a'b", "h-0001 x"),
            "workflows(PartitionKey=%27a%27%27b%27,RowKey=%27h-0001%20x%27)"
        );
    }

    #[test]
    fn a_batch_body_is_one_change_set_with_crlf_lines_and_conditions() {
        let mut entity = Entity::new("p", "state");
        entity.props.insert("N".into(), Prop::Int(1));
        let ops = vec![
            BatchOp::Update {
                entity: entity.clone(),
                if_match: ETag::new("W/\"1\""),
            },
            BatchOp::Insert(Entity::new("p", "h-1")),
            BatchOp::Delete {
                row_key: "old".into(),
                if_match: None,
            },
        ];
        let body = batch_body("http://h/acct", "t", "p", &ops, "batch_x").expect("a body");
        assert!(body.starts_with("--batch_x\r\nContent-Type: multipart/mixed; boundary=changeset_"));
        assert!(body
            .contains("PUT http://h/acct/t(PartitionKey=%27p%27,RowKey=%27state%27) HTTP/1.1\r\n"));
        assert!(body.contains("If-Match: W/\"1\"\r\n"));
        assert!(body.contains("POST http://h/acct/t HTTP/1.1\r\n"));
        assert!(body.contains(
            "DELETE http://h/acct/t(PartitionKey=%27p%27,RowKey=%27old%27) HTTP/1.1\r\nAccept"
        ));
        assert!(body.contains("If-Match: *\r\n"));
        assert!(
            !body.replace("\r\n", "").contains('\n'),
            "every line ends in CRLF"
        );
        assert!(body.ends_with("--batch_x--\r\n"));
    }

    #[test]
    fn every_operation_answer_is_read_in_order_with_its_etag() {
        let answer = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n\
            --changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
            HTTP/1.1 204 No Content\r\nETag: W/\"datetime'1'\"\r\nDataServiceVersion: 3.0;\r\n\r\n\
            --changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
            HTTP/1.1 204 No Content\r\nDataServiceVersion: 1.0;\r\n\r\n\
            --changesetresponse_2--\r\n--batchresponse_1--\r\n";
        assert_eq!(
            batch_answers(answer.as_bytes()).expect("answers"),
            vec![
                Answer {
                    status: 204,
                    etag: Some("W/\"datetime'1'\"".into())
                },
                Answer {
                    status: 204,
                    etag: None
                },
            ]
        );
        let failed = "--batchresponse_1\r\n\r\n--changesetresponse_2\r\n\r\nHTTP/1.1 412 Precondition Failed\r\nContent-Type: application/json\r\n\r\n{\"odata.error\":{\"code\":\"UpdateConditionNotSatisfied\"}}\r\n--changesetresponse_2--\r\n";
        assert_eq!(
            batch_answers(failed.as_bytes()).expect("answers")[0].status,
            412
        );
    }
}
