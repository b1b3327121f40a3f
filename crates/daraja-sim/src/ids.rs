//! Identifiers in Safaricom's formats (`Daraja's documentation and captured payloads`, "Identifier formats").

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Datelike, FixedOffset, Utc};
use rand::Rng;

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";

/// An instant in East Africa Time (UTC+3, no daylight saving).
pub(crate) fn eat(instant: DateTime<Utc>) -> DateTime<FixedOffset> {
    instant.with_timezone(&daraja::clock::eat())
}

/// `YYYYMMDDHHmmss` in EAT.
pub(crate) fn eat_timestamp(instant: DateTime<Utc>) -> String {
    daraja::eat_timestamp(instant)
}

/// B2C's `DD.MM.YYYY HH:mm:ss` in EAT.
pub(crate) fn eat_dotted(instant: DateTime<Utc>) -> String {
    eat(instant).format("%d.%m.%Y %H:%M:%S").to_string()
}

fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// A 28-character alphanumeric access token.
pub(crate) fn access_token() -> String {
    random_from(ALNUM, 28)
}

/// `ws_CO_` + `DDMMYYYYHHmmss` + milliseconds (not zero-padded) + the 9-digit subscriber
/// number, e.g. `ws_CO_23052022122137653708374149`.
pub(crate) fn checkout_request_id(instant: DateTime<Utc>, subscriber_number: &str) -> String {
    let t = eat(instant);
    format!(
        "ws_CO_{}{}{}",
        t.format("%d%m%Y%H%M%S"),
        t.timestamp_subsec_millis(),
        subscriber_number
    )
}

/// The first three characters of a receipt: year letter (`L` = 2017 … `S` = 2024), month letter
/// (`A`–`L`), day (`1`–`9`, then `A` = 10 … `V` = 31).
fn receipt_date_code(instant: DateTime<Utc>) -> String {
    let t = eat(instant);
    let year = (b'A' + ((t.year() - 2006).rem_euclid(26)) as u8) as char;
    let month = (b'A' + (t.month0() as u8)) as char;
    let day = match t.day() {
        d @ 1..=9 => (b'0' + d as u8) as char,
        d => (b'A' + (d - 10) as u8) as char,
    };
    format!("{year}{month}{day}")
}

/// A 10-character M-Pesa receipt, e.g. `UKM4AB12CD` (22 Nov 2026).
pub(crate) fn receipt(instant: DateTime<Utc>) -> String {
    format!(
        "{}{}",
        receipt_date_code(instant),
        random_from(UPPER_ALNUM, 7)
    )
}

/// The placeholder receipt of failures and queries, e.g. `UKM0000000`.
pub(crate) fn placeholder_receipt(instant: DateTime<Utc>) -> String {
    format!("{}0000000", receipt_date_code(instant))
}

/// `AG_YYYYMMDD_` + 20 hex characters, e.g. `AG_20240706_20106e9209f64bebd05b`.
pub(crate) fn conversation_id(instant: DateTime<Utc>) -> String {
    format!(
        "AG_{}_{}",
        eat(instant).format("%Y%m%d"),
        random_from(HEX, 20)
    )
}

/// Makes the gateway-style ids that end in a running number: `MerchantRequestID`, a
/// gateway-made `OriginatorConversationID`, an error's `requestId`. Shape:
/// `2654-4b64-97ff-b827b542881d3130`.
#[derive(Debug)]
pub(crate) struct IdGenerator {
    counter: AtomicU64,
}

impl Default for IdGenerator {
    fn default() -> Self {
        IdGenerator {
            counter: AtomicU64::new(rand::thread_rng().gen_range(1_000_000..2_000_000)),
        }
    }
}

impl IdGenerator {
    pub(crate) fn gateway_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}-{}-{}-{}{}",
            random_from(HEX, 4),
            random_from(HEX, 4),
            random_from(HEX, 4),
            random_from(HEX, 12),
            n
        )
    }
}

/// A `requestId` for an error envelope, when no generator is at hand.
pub(crate) fn request_id() -> String {
    static IDS: std::sync::OnceLock<IdGenerator> = std::sync::OnceLock::new();
    IDS.get_or_init(IdGenerator::default).gateway_id()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn formats() {
        // 23 May 2022 12:21:37.653 EAT = 09:21:37.653 UTC.
        let instant = Utc.with_ymd_and_hms(2022, 5, 23, 9, 21, 37).unwrap()
            + chrono::Duration::milliseconds(653);
        assert_eq!(
            checkout_request_id(instant, "708374149"),
            "ws_CO_23052022122137653708374149"
        );
        let early = Utc.with_ymd_and_hms(2026, 9, 28, 22, 26, 1).unwrap()
            + chrono::Duration::milliseconds(3);
        assert_eq!(
            checkout_request_id(early, "708374149"),
            "ws_CO_290920260126013708374149"
        );
        // 21 Nov 2023 gives RKL, 6 Feb 2024 gives SB6.
        assert_eq!(
            &receipt(Utc.with_ymd_and_hms(2023, 11, 21, 9, 0, 0).unwrap())[..3],
            "RKL"
        );
        assert_eq!(
            placeholder_receipt(Utc.with_ymd_and_hms(2024, 2, 6, 9, 0, 0).unwrap()),
            "SB60000000"
        );
        let r = receipt(instant);
        assert_eq!(r.len(), 10);
        assert!(
            r.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        let c = conversation_id(Utc.with_ymd_and_hms(2024, 7, 6, 9, 0, 0).unwrap());
        assert!(c.starts_with("AG_20240706_") && c.len() == 32, "{c}");
        assert_eq!(access_token().len(), 28);
        assert!(access_token().bytes().all(|b| b.is_ascii_alphanumeric()));
        let g = IdGenerator::default();
        let (a, b) = (g.gateway_id(), g.gateway_id());
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            eat_dotted(Utc.with_ymd_and_hms(2024, 7, 6, 19, 48, 52).unwrap()),
            "06.07.2024 22:48:52"
        );
    }
}
