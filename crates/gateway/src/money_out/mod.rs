//! Money going out: refunds (Reversal), payouts (B2C) and balances, on one initiator layer that
//! stores every request before sending it, sends it once, and follows it to its end by result
//! callback, queue-timeout notice or Transaction Status — never by sending it again.
//!
//! The doors (merchant API, dashboard, CLI) only translate to and from these services.

pub mod balance;
pub mod initiator;
pub mod notify;
pub mod payouts;
pub mod refunds;
pub mod resolver;
pub mod view;

pub use balance::Balances;
pub use initiator::{
    Ask, CallbackDoor, Initiator, InitiatorError, InitiatorOwner, InitiatorSettings,
};
pub use payouts::{PayoutError, PayoutPurpose, PayoutRequest, Payouts};
pub use refunds::{RefundError, Refunds};

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

/// Days since 1970-01-01 in East Africa Time (UTC+3, no daylight saving).
pub fn eat_day(ms: i64) -> i64 {
    (ms + 3 * 3_600_000).div_euclid(86_400_000)
}

/// The services of this room, built once and shared by every door.
#[derive(Clone)]
pub struct MoneyOut {
    pub initiator: Initiator,
    pub refunds: Refunds,
    pub payouts: Payouts,
    pub balances: Balances,
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
