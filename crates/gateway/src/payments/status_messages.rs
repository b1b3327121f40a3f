//! Each payment's Telegram status message as stored: which chat message shows the payment, and
//! the payment it shows. Read and written by the bot (the first message, before the push) and by
//! the outbox (the final edit), through `telegram::status`.

use std::sync::Arc;

use mpesa_storage::{Payment, Storage, StorageError, TelegramStatusMessage};

/// The status-message records: cheap to clone.
#[derive(Clone)]
pub struct StatusMessages {
    storage: Arc<dyn Storage>,
}

impl StatusMessages {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        StatusMessages { storage }
    }

    /// The payment as stored now.
    pub async fn payment(&self, id: &str) -> Result<Option<Payment>, StorageError> {
        self.storage.get_payment(id).await
    }

    /// The message that shows a payment, if one was sent.
    pub async fn of_payment(
        &self,
        payment_id: &str,
    ) -> Result<Option<TelegramStatusMessage>, StorageError> {
        self.storage.find_telegram_status_message(payment_id).await
    }

    /// Records (or replaces) the message that shows a payment; `Err(NotFound)` if there is no
    /// such payment.
    pub async fn record(&self, message: &TelegramStatusMessage) -> Result<(), StorageError> {
        self.storage.put_telegram_status_message(message).await
    }
}
