//! STK callbacks (`POST /callbacks/{secret}/stk`): whatever bytes arrive, `StkCallback::parse`
//! never panics, and what it accepts is something the payment rules can trust.
#![no_main]

use daraja::StkCallback;
use libfuzzer_sys::fuzz_target;
use mpesa_domain::Cents;

fuzz_target!(|data: &[u8]| {
    let Ok(cb) = StkCallback::parse(data) else {
        return;
    };
    assert!(
        !cb.checkout_request_id().trim().is_empty(),
        "accepted without a CheckoutRequestID"
    );
    let report = cb
        .to_report()
        .expect("parse accepted it, so to_report must too");
    assert!(
        !report.result_code.as_str().is_empty(),
        "accepted without a ResultCode"
    );
    assert_eq!(report.result_code, cb.result_code());
    match &report.success {
        Some(s) => {
            assert!(
                report.result_code.is_success(),
                "success details on a failure code"
            );
            // A parsed success always names its receipt, trimmed.
            assert!(!s.receipt.is_empty(), "success without a receipt");
            assert_eq!(s.receipt, s.receipt.trim());
            if let Some(amount) = s.amount {
                // A payment amount is never negative, and it is exactly the digits sent.
                assert!(amount.0 >= 0, "negative amount {amount:?}");
                assert_eq!(Cents::parse(&amount.to_string()), Some(amount));
                let raw = cb
                    .metadata_value("Amount")
                    .expect("an amount came from somewhere");
                assert_eq!(raw.cents(), Some(amount));
            }
            if let Some(phone) = &s.phone {
                assert!(!phone.trim().is_empty());
            }
        }
        None => assert!(
            !report.result_code.is_success(),
            "a success code without details"
        ),
    }
    // What we store and what the simulator sends are the same bytes: serializing the parsed
    // callback and reading it again gives the same callback.
    let again = serde_json::to_vec(&cb).expect("a parsed callback serializes");
    let reparsed = StkCallback::parse(&again).expect("a serialized callback parses again");
    assert_eq!(reparsed, cb);
    assert_eq!(reparsed.to_report().unwrap(), report);
});
