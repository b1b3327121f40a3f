//! `ResultURL` bodies (B2C, Transaction Status, Account Balance, Reversal): parsing and every
//! typed view never panic; a successful B2C result names its receipt; a failure has no details;
//! accepted bodies survive a round trip. Also feeds the raw text to `parse_account_balance`.
#![no_main]

use daraja::ResultEnvelope;
use daraja::wire::parse_account_balance;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(accounts) = parse_account_balance(text)
    {
        assert!(!accounts.is_empty(), "Ok with no account");
        for a in accounts {
            for field in [&a.name, &a.currency] {
                assert_eq!(field.as_str(), field.trim());
                assert!(!field.contains('|') && !field.contains('&'), "{field:?}");
            }
        }
    }
    let Ok(r) = ResultEnvelope::parse(data) else {
        return;
    };
    assert!(
        !r.result.conversation_id.trim().is_empty()
            || !r.result.originator_conversation_id.trim().is_empty(),
        "accepted without a conversation id"
    );
    assert!(
        !r.result_code().as_str().is_empty(),
        "accepted without a ResultCode"
    );
    let b2c = r.b2c();
    let status = r.transaction_status();
    let balance = r.account_balance();
    let reversal = r.reversal();
    if r.is_success() {
        if let Ok(Some(p)) = &b2c {
            assert!(
                !p.receipt.trim().is_empty(),
                "B2C success without a receipt"
            );
            if let Some(a) = p.amount {
                assert!(a.0 >= 0, "negative B2C amount {a:?}");
            }
        }
        if let Ok(Some(b)) = &balance {
            assert!(!b.accounts.is_empty(), "a balance success with no account");
        }
    } else {
        assert!(matches!(b2c, Ok(None)));
        assert!(matches!(status, Ok(None)));
        assert!(matches!(balance, Ok(None)));
        assert!(matches!(reversal, Ok(None)));
    }
    let again = serde_json::to_vec(&r).expect("a parsed result serializes");
    let reparsed = ResultEnvelope::parse(&again).expect("a serialized result parses again");
    assert_eq!(reparsed, r);
});
