//! The outbox as people see it (the dashboard): events by status, how many there are, one event
//! with every delivery attempt, and putting a dead or blocked event back in the queue.

use std::sync::Arc;

use mpesa_storage::{
    OutboxAttempt, OutboxEvent, OutboxFilter, OutboxStatus, Page, PageRequest, Storage,
    StorageError,
};
use tokio::sync::Notify;

use crate::ids::now_ms;

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    NoSuchEvent,
    /// Back in the queue; the worker was woken.
    Requeued,
    /// Neither dead nor blocked: left as it was.
    NotDead,
}

/// The outbox queue's read and retry operations: cheap to clone.
#[derive(Clone)]
pub struct OutboxQueue {
    storage: Arc<dyn Storage>,
    /// Wakes the outbox worker when an event is re-queued.
    wake: Arc<Notify>,
}

impl OutboxQueue {
    pub fn new(storage: Arc<dyn Storage>, wake: Arc<Notify>) -> Self {
        OutboxQueue { storage, wake }
    }

    /// Events, newest first.
    pub async fn list(
        &self,
        filter: &OutboxFilter,
        page: &PageRequest,
    ) -> Result<Page<OutboxEvent>, StorageError> {
        self.storage.list_outbox(filter, page).await
    }

    /// How many events have this status, when at most `cap`; `None` when there are more.
    pub async fn count_up_to(
        &self,
        status: OutboxStatus,
        cap: u32,
    ) -> Result<Option<usize>, StorageError> {
        let page = self
            .storage
            .list_outbox(
                &OutboxFilter {
                    status: Some(status),
                    channel: None,
                },
                &PageRequest {
                    limit: cap,
                    cursor: None,
                },
            )
            .await?;
        Ok(match page.next_cursor {
            Some(_) => None,
            None => Some(page.items.len()),
        })
    }

    /// One event and its delivery attempts, oldest first.
    pub async fn event(
        &self,
        id: &str,
    ) -> Result<Option<(OutboxEvent, Vec<OutboxAttempt>)>, StorageError> {
        let Some(event) = self.storage.get_outbox_event(id).await? else {
            return Ok(None);
        };
        let attempts = self.storage.outbox_attempts(id).await?;
        Ok(Some((event, attempts)))
    }

    /// Puts a dead (or blocked) event back in the queue and wakes the worker.
    pub async fn retry(&self, id: &str) -> Result<Retry, StorageError> {
        if self.storage.get_outbox_event(id).await?.is_none() {
            return Ok(Retry::NoSuchEvent);
        }
        if self.storage.retry_outbox_event(id, now_ms()).await? {
            self.wake.notify_one();
            Ok(Retry::Requeued)
        } else {
            Ok(Retry::NotDead)
        }
    }
}
