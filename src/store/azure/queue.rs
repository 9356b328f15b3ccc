//! Queue Storage through the legacy `azure_storage_queues` 0.21 crate, mapped onto the storage
//! layer's own message types.
//!
//! What the crate lacks is filled in here: a message's time-to-live of `-1` (never expires; the
//! crate's `MessageTTL` only counts whole seconds up), which a timer message hidden for days
//! needs — with the service's default of 7 days it would expire the moment it became visible.
//! A per-call policy adds `messagettl=-1` to every Put Message before the request is signed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::{Context, Policy, PolicyResult, Request};
use azure_storage_queues::{NumberOfMessages, PopReceipt, QueueServiceClient, VisibilityTimeout};
use chrono::Utc;

use super::{map_error, utc};
use crate::store::{MessageReceipt, NextVisible, ReceivedMessage, StoreError, StoreResult};

/// Adds `messagettl=-1` to Put Message requests (`POST …/<queue>/messages`).
#[derive(Debug)]
pub(super) struct NeverExpire;

#[async_trait]
impl Policy for NeverExpire {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        if *request.method() == azure_core::Method::Post
            && request.url().path().ends_with("/messages")
            && !request.url().query_pairs().any(|(k, _)| k == "messagettl")
        {
            request
                .url_mut()
                .query_pairs_mut()
                .append_pair("messagettl", "-1");
        }
        next[0].send(ctx, request, &next[1..]).await
    }
}

fn seconds(d: Duration) -> Duration {
    // The service counts whole seconds; round a fraction up so that a delay is never shortened.
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

pub(super) async fn ensure(client: &QueueServiceClient, queue: &str) -> StoreResult<()> {
    match client.queue_client(queue).create().await {
        Ok(_) => Ok(()),
        Err(e) => match map_error("create queue", e) {
            StoreError::AlreadyExists => Ok(()),
            other => Err(other),
        },
    }
}

pub(super) async fn enqueue(
    client: &QueueServiceClient,
    queue: &str,
    text: &str,
    delay: Duration,
) -> StoreResult<MessageReceipt> {
    let response = client
        .queue_client(queue)
        .put_message(text)
        .visibility_timeout(VisibilityTimeout::new(seconds(delay)))
        .await
        .map_err(|e| map_error("put message", e))?;
    Ok(MessageReceipt {
        id: response.queue_message.message_id,
        pop_receipt: response.queue_message.pop_receipt,
    })
}

pub(super) async fn dequeue(
    client: &QueueServiceClient,
    queue: &str,
    max: u32,
    visibility: Duration,
) -> StoreResult<Vec<ReceivedMessage>> {
    let count = u8::try_from(max).map_err(|_| StoreError::Invalid("at most 32 messages".into()))?;
    let response = client
        .queue_client(queue)
        .get_messages()
        .number_of_messages(NumberOfMessages::new(count))
        .visibility_timeout(VisibilityTimeout::new(seconds(visibility)))
        .await
        .map_err(|e| map_error("get messages", e))?;
    Ok(response
        .messages
        .into_iter()
        .map(|m| ReceivedMessage {
            dequeue_count: u32::try_from(m.dequeue_count).unwrap_or(u32::MAX),
            inserted: utc(
                m.insertion_time.unix_timestamp(),
                m.insertion_time.nanosecond(),
            ),
            receipt: MessageReceipt {
                id: m.message_id,
                pop_receipt: m.pop_receipt,
            },
            text: m.message_text,
        })
        .collect())
}

fn pop_receipt(receipt: &MessageReceipt) -> PopReceipt {
    PopReceipt::new(receipt.id.clone(), receipt.pop_receipt.clone())
}

pub(super) async fn renew(
    client: &QueueServiceClient,
    queue: &str,
    receipt: &MessageReceipt,
    text: &str,
    visibility: Duration,
) -> StoreResult<MessageReceipt> {
    let response = client
        .queue_client(queue)
        .pop_receipt_client(pop_receipt(receipt))
        .update(text, VisibilityTimeout::new(seconds(visibility)))
        .await
        .map_err(|e| map_error("update message", e))?;
    Ok(MessageReceipt {
        id: receipt.id.clone(),
        pop_receipt: response.pop_receipt,
    })
}

pub(super) async fn delete(
    client: &QueueServiceClient,
    queue: &str,
    receipt: &MessageReceipt,
) -> StoreResult<()> {
    client
        .queue_client(queue)
        .pop_receipt_client(pop_receipt(receipt))
        .delete()
        .await
        .map(drop)
        .map_err(|e| map_error("delete message", e))
}

/// Queue Storage shows only visible messages: a peek says "now" when one is, and cannot tell
/// when a hidden one will show.
pub(super) async fn next_visible(
    client: &QueueServiceClient,
    queue: &str,
) -> StoreResult<NextVisible> {
    let peeked = client
        .queue_client(queue)
        .peek_messages()
        .await
        .map_err(|e| map_error("peek messages", e))?;
    Ok(if peeked.messages.is_empty() {
        NextVisible::Unknown
    } else {
        NextVisible::At(Utc::now())
    })
}
