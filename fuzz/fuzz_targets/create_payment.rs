//! The merchant API's `POST /api/v1/payments` body as the HTTP edge reads it: bytes to JSON
//! (`serde_json::from_slice`, as `json_body` does), then `parse_payment_request`, the function
//! the handler calls. Nothing panics; what is accepted is within every documented limit; its
//! canonical form (the idempotency fingerprint) is itself accepted with the same canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpesa_domain::payment_request::MAX_METADATA_BYTES;
use mpesa_domain::{AmountBounds, Msisdn, TransactionDesc, parse_payment_request};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let bounds = AmountBounds::default();
    let r = match parse_payment_request(&value, bounds) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message");
            return;
        }
    };
    assert!((bounds.min..=bounds.max).contains(&r.amount.shillings()));
    let phone = r.phone.as_str();
    assert!(phone.len() == 12 && (phone.starts_with("2547") || phone.starts_with("2541")));
    assert_eq!(Msisdn::parse(phone).as_ref(), Ok(&r.phone));
    if let Some(reference) = &r.reference {
        let t = reference.as_str();
        assert!(!t.is_empty() && t.chars().count() <= 12 && t == t.trim());
    }
    if let Some(d) = &r.description {
        let t = d.as_str();
        assert!(!t.is_empty() && t.chars().count() <= 100 && !t.chars().any(char::is_control));
        // What Daraja gets from it is always something Daraja accepts.
        let desc = TransactionDesc::derive_from(t);
        assert!(
            TransactionDesc::parse(desc.as_str()).is_ok(),
            "{t:?} -> {desc:?}"
        );
    }
    if let Some(m) = &r.metadata {
        assert!(m.is_object() && m.to_string().len() <= MAX_METADATA_BYTES);
    }
    if let Some(e) = &r.customer_email {
        assert!(e.contains('@') && !e.chars().any(char::is_whitespace));
    }
    let again = parse_payment_request(&r.canonical, bounds)
        .expect("the canonical form of an accepted body is accepted");
    assert_eq!(again.canonical, r.canonical);
    assert_eq!(again.phone, r.phone);
    assert_eq!(again.amount, r.amount);
});
