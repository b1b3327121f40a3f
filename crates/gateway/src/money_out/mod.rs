//! Money going out: refunds (Reversal), payouts (B2C) and balances, on one initiator layer that
//! stores every request before sending it, sends it once, and follows it to its end by result
//! callback, queue-timeout notice or Transaction Status — never by sending it again.
//!
//! The doors (merchant API, dashboard, CLI) only translate to and from these services.

pub mod balance;
pub mod initiator;
pub mod notify;
pub mod payouts;
pub mod receipts;
pub mod refunds;
pub mod resolver;
pub mod view;

pub use balance::Balances;
pub use initiator::{
    Ask, CallbackDoor, Initiator, InitiatorError, InitiatorOwner, InitiatorSettings,
};
pub use payouts::{HandOutcome, PayoutError, PayoutPurpose, PayoutReads, PayoutRequest, Payouts};
pub use receipts::{ReceiptChecks, ReceiptError};
pub use refunds::{RefundError, Refunds};
pub use view::Hold;

/// Who asked for a refund or payout, as the audit trail names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// `admin:<username>`, `api:<key name>`.
    pub name: String,
    /// `api`, `dashboard`.
    pub source: &'static str,
    pub api_key_id: Option<String>,
}

impl Requester {
    pub fn admin(username: &str) -> Self {
        Requester {
            name: format!("admin:{username}"),
            source: "dashboard",
            api_key_id: None,
        }
    }

    /// A customer in a Telegram chat (`/paid`).
    pub fn telegram(chat_id: i64) -> Self {
        Requester {
            name: format!("telegram:{chat_id}"),
            source: "telegram",
            api_key_id: None,
        }
    }

    pub fn api_key(key: &mpesa_storage::ApiKey) -> Self {
        Requester {
            name: format!("api:{}", key.name),
            source: "api",
            api_key_id: Some(key.id.clone()),
        }
    }
}

/// An idempotency claim as the services take it: (key, SHA-256 of the canonical request).
pub type Claim = (String, String);

/// Days since 1970-01-01 in East Africa Time (a payout day).
pub use mpesa_domain::eat::day_number as eat_day;

/// The admin a refund or payout counts as asked for by, for the rule that another admin decides
/// it: its requester (`admin:<username>`), or for one asked through an API key, the admin who
/// made that key on the dashboard. Else one admin could make a key, ask with it, and approve or
/// settle what they asked for. `None`: no admin (a key made with the command line).
async fn asking_admin(
    storage: &dyn mpesa_storage::Storage,
    requested_by: &str,
    api_key_id: Option<&str>,
) -> Result<Option<String>, mpesa_storage::StorageError> {
    if requested_by.starts_with("admin:") {
        return Ok(Some(requested_by.to_owned()));
    }
    let Some(key_id) = api_key_id else {
        return Ok(None);
    };
    Ok(storage
        .list_api_keys()
        .await?
        .into_iter()
        .find(|key| key.id == key_id)
        .and_then(|key| key.created_by))
}

/// The Daraja request of a payout or refund (`request_id`), if it was stored.
async fn request_of(
    storage: &dyn mpesa_storage::Storage,
    request_id: Option<&str>,
) -> Result<Option<mpesa_storage::InitiatorRequest>, mpesa_storage::StorageError> {
    match request_id {
        Some(id) => storage.get_initiator_request(id).await,
        None => Ok(None),
    }
}

/// The services of this room, built once and shared by every door.
#[derive(Clone)]
pub struct MoneyOut {
    pub initiator: Initiator,
    pub refunds: Refunds,
    pub payouts: Payouts,
    pub balances: Balances,
    /// Checking receipt codes with Safaricom (Transaction Status).
    pub receipts: ReceiptChecks,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eat_day_turns_at_21_00_utc() {
        let midnight_eat = 86_400_000 * 20_000 - 3 * 3_600_000;
        assert_eq!(eat_day(midnight_eat - 1), 19_999);
        assert_eq!(eat_day(midnight_eat), 20_000);
    }
}
