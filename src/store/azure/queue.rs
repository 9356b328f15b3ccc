//! Queue Storage through the official `azure_storage_queue` client, mapped onto the storage
//! layer's own message types.
//!
//! Every message is sent with a time-to-live of `-1` (never expires): a timer message hidden
//! for days would otherwise, with the service's default of 7 days, expire the moment it became
//! visible.

use std::time::Duration;

use azure_core::http::headers::HeaderName;
use azure_core::http::{RequestContent, XmlFormat};
use azure_storage_queue::models::{
    QueueClientReceiveMessagesOptions, QueueClientSendMessageOptions,
    QueueClientUpdateMessageOptions, QueueMessage,
};
use azure_storage_queue::{QueueClient, QueueServiceClient};
use chrono::Utc;

use super::{from_sdk_time, map_error};
use crate::store::{MessageReceipt, NextVisible, ReceivedMessage, StoreError, StoreResult};

fn seconds(d: Duration) -> i32 {
    // The service counts whole seconds; round a fraction up so that a delay is never shortened.
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(whole).unwrap_or(i32::MAX)
}

fn client(service: &QueueServiceClient, queue: &str) -> StoreResult<QueueClient> {
    service
        .queue_client(queue)
        .map_err(|e| map_error("queue URL", e))
}

fn message(text: &str) -> StoreResult<RequestContent<QueueMessage, XmlFormat>> {
    RequestContent::try_from(QueueMessage {
        message_text: Some(text.to_owned()),
    })
    .map_err(|e| map_error("queue message", e))
}

/// A field the service always sends, missing: an answer this app cannot use.
fn missing(field: &'static str) -> StoreError {
    StoreError::internal(format!("the queue service's answer has no {field}"))
}

pub(super) async fn ensure(service: &QueueServiceClient, queue: &str) -> StoreResult<()> {
    match client(service, queue)?.create(None).await {
        Ok(_) => Ok(()),
        Err(e) => match map_error("create queue", e) {
            StoreError::AlreadyExists => Ok(()),
            other => Err(other),
        },
    }
}

pub(super) async fn enqueue(
    service: &QueueServiceClient,
    queue: &str,
    text: &str,
    delay: Duration,
) -> StoreResult<MessageReceipt> {
    let options = QueueClientSendMessageOptions {
        visibility_timeout: Some(seconds(delay)),
        message_time_to_live: Some(-1),
        ..Default::default()
    };
    let sent = client(service, queue)?
        .send_message(message(text)?, Some(options))
        .await
        .map_err(|e| map_error("put message", e))?
        .into_model()
        .map_err(|e| map_error("put message", e))?;
    let sent = sent
        .items
        .and_then(|items| items.into_iter().next())
        .ok_or_else(|| missing("message"))?;
    Ok(MessageReceipt {
        id: sent.message_id.ok_or_else(|| missing("MessageId"))?,
        pop_receipt: sent.pop_receipt.ok_or_else(|| missing("PopReceipt"))?,
    })
}

pub(super) async fn dequeue(
    service: &QueueServiceClient,
    queue: &str,
    max: u32,
    visibility: Duration,
) -> StoreResult<Vec<ReceivedMessage>> {
    let count =
        i32::try_from(max).map_err(|_| StoreError::Invalid("at most 32 messages".into()))?;
    let options = QueueClientReceiveMessagesOptions {
        number_of_messages: Some(count),
        visibility_timeout: Some(seconds(visibility)),
        ..Default::default()
    };
    let received = client(service, queue)?
        .receive_messages(Some(options))
        .await
        .map_err(|e| map_error("get messages", e))?
        .into_model()
        .map_err(|e| map_error("get messages", e))?;
    received
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let inserted = m.insertion_time.ok_or_else(|| missing("InsertionTime"))?;
            Ok(ReceivedMessage {
                dequeue_count: m
                    .dequeue_count
                    .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX)),
                inserted: from_sdk_time(inserted),
                receipt: MessageReceipt {
                    id: m.message_id.ok_or_else(|| missing("MessageId"))?,
                    pop_receipt: m.pop_receipt.ok_or_else(|| missing("PopReceipt"))?,
                },
                text: m.message_text.unwrap_or_default(),
            })
        })
        .collect()
}

pub(super) async fn renew(
    service: &QueueServiceClient,
    queue: &str,
    receipt: &MessageReceipt,
    text: &str,
    visibility: Duration,
) -> StoreResult<MessageReceipt> {
    let options = QueueClientUpdateMessageOptions {
        queue_message: Some(message(text)?),
        ..Default::default()
    };
    let response = client(service, queue)?
        .update_message(
            &receipt.id,
            &receipt.pop_receipt,
            seconds(visibility),
            Some(options),
        )
        .await
        .map_err(|e| map_error("update message", e))?;
    // The new receipt comes only as a header; the crate has no typed accessor for it.
    let pop_receipt = response
        .headers()
        .get_optional_str(&HeaderName::from_static("x-ms-popreceipt"))
        .ok_or_else(|| missing("x-ms-popreceipt"))?
        .to_owned();
    Ok(MessageReceipt {
        id: receipt.id.clone(),
        pop_receipt,
    })
}

pub(super) async fn delete(
    service: &QueueServiceClient,
    queue: &str,
    receipt: &MessageReceipt,
) -> StoreResult<()> {
    client(service, queue)?
        .delete_message(&receipt.id, &receipt.pop_receipt, None)
        .await
        .map(drop)
        .map_err(|e| map_error("delete message", e))
}

/// Queue Storage shows only visible messages: a peek says "now" when one is, and cannot tell
/// when a hidden one will show.
pub(super) async fn next_visible(
    service: &QueueServiceClient,
    queue: &str,
) -> StoreResult<NextVisible> {
    let peeked = client(service, queue)?
        .peek_messages(None)
        .await
        .map_err(|e| map_error("peek messages", e))?
        .into_model()
        .map_err(|e| map_error("peek messages", e))?;
    Ok(if peeked.items.unwrap_or_default().is_empty() {
        NextVisible::Unknown
    } else {
        NextVisible::At(Utc::now())
    })
}
