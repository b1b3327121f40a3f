//! C2B validation and confirmation bodies: `C2bPayment::parse` never panics; an accepted body
//! has a receipt (`TransID`) and an exact, non-negative amount, and survives a round trip.
#![no_main]

use daraja::C2bPayment;
use libfuzzer_sys::fuzz_target;
use mpesa_domain::Cents;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = C2bPayment::parse(data) else {
        return;
    };
    assert!(!p.trans_id.trim().is_empty(), "accepted without a TransID");
    let amount = p.amount().expect("accepted without an exact amount");
    assert!(amount.0 >= 0, "negative payment amount {amount:?}");
    assert_eq!(Cents::parse(&amount.to_string()), Some(amount));
    let _ = p.org_account_balance();
    let _ = p.trans_time_ms();
    let _ = format!("{p:?}");
    let again = serde_json::to_vec(&p).expect("a parsed payment serializes");
    let reparsed = C2bPayment::parse(&again).expect("a serialized payment parses again");
    assert!(reparsed == p, "round trip changed the payment");
});
