//! What the doors read about payments: one payment with everything that happened to it, lists,
//! the overview's figures, and the callbacks Safaricom posted.
//!
//! Reading needs only the database: [`PaymentReads`] stands alone so that the command line reads
//! payments through the same operations as the dashboard without Daraja credentials;
//! [`Payments::reads`](crate::payments::Payments::reads) hands the running service's out.

use std::sync::Arc;

use mpesa_storage::{
    CallbackFilter, DailyVolume, Millis, OutboxAttempt, OutboxEvent, Page, PageRequest, Payment,
    PaymentEvent, PaymentFilter, PaymentStats, RawCallback, Refund, Storage, StorageError,
};

/// The payments' read operations: cheap to clone.
#[derive(Clone)]
pub struct PaymentReads {
    storage: Arc<dyn Storage>,
}

/// A payment and its story, as the dashboard's payment page shows it.
#[derive(Debug)]
pub struct PaymentRecord {
    pub payment: Payment,
    /// Its timeline.
    pub events: Vec<PaymentEvent>,
    /// The callbacks that named it, as received.
    pub callbacks: Vec<RawCallback>,
    /// What it queued to send.
    pub outbox: Vec<OutboxEvent>,
    /// The delivery attempts of each outbox row (`attempts[i]` are `outbox[i]`'s).
    pub attempts: Vec<Vec<OutboxAttempt>>,
    /// Its refunds, oldest first.
    pub refunds: Vec<Refund>,
    /// The title of the payment link it was paid through (the link's id if the link is gone).
    pub link_title: Option<String>,
}

impl PaymentReads {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        PaymentReads { storage }
    }

    /// One payment, `None` when there is no such payment.
    pub async fn find(&self, id: &str) -> Result<Option<Payment>, StorageError> {
        self.storage.get_payment(id).await
    }

    /// The payment that holds an M-Pesa receipt, whichever channel it came by.
    pub async fn find_by_receipt(&self, receipt: &str) -> Result<Option<Payment>, StorageError> {
        self.storage.find_payment_by_receipt(receipt).await
    }

    /// A payment with its timeline, callbacks, outbox rows (and their attempts), refunds and
    /// link title; `None` when there is no such payment.
    pub async fn record(&self, id: &str) -> Result<Option<PaymentRecord>, StorageError> {
        let storage = &self.storage;
        let Some(payment) = storage.get_payment(id).await? else {
            return Ok(None);
        };
        let (events, callbacks, outbox, refunds) = tokio::try_join!(
            storage.payment_events(id),
            storage.callbacks_for_payment(id),
            storage.outbox_for_payment(id),
            storage.refunds_for_payment(id),
        )?;
        // A payment has a handful of notifications; their attempts are read one event at a time.
        let attempts =
            futures::future::try_join_all(outbox.iter().map(|e| storage.outbox_attempts(&e.id)))
                .await?;
        let link_title = match &payment.payment_link_id {
            Some(link_id) => Some(
                storage
                    .get_payment_link(link_id)
                    .await?
                    .map(|l| l.title)
                    .unwrap_or_else(|| link_id.clone()),
            ),
            None => None,
        };
        Ok(Some(PaymentRecord {
            payment,
            events,
            callbacks,
            outbox,
            attempts,
            refunds,
            link_title,
        }))
    }

    /// Payments, newest first.
    pub async fn list(
        &self,
        filter: &PaymentFilter,
        page: &PageRequest,
    ) -> Result<Page<Payment>, StorageError> {
        self.storage.list_payments(filter, page).await
    }

    /// Counts and amounts per status (and completed ones per channel) of the payments created
    /// in `[from, to)`.
    pub async fn stats(&self, from: Millis, to: Millis) -> Result<PaymentStats, StorageError> {
        self.storage.payment_stats(from, to).await
    }

    /// Completed volume per East Africa Time day of the payments created in `[from, to)`.
    pub async fn daily_volume(
        &self,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<DailyVolume>, StorageError> {
        self.storage.daily_volume(from, to).await
    }

    /// A callback as received (body, headers, outcome).
    pub async fn received_callback(&self, id: &str) -> Result<Option<RawCallback>, StorageError> {
        self.storage.get_callback(id).await
    }

    /// Callbacks as received, newest first.
    pub async fn received_callbacks(
        &self,
        filter: &CallbackFilter,
        page: &PageRequest,
    ) -> Result<Page<RawCallback>, StorageError> {
        self.storage.list_callbacks(filter, page).await
    }
}
