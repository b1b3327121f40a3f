//! Everything Safaricom POSTs back, parsed from a corpus of real-shaped payloads in
//! `tests/fixtures/` (each names its source in a `_source` line, stripped before parsing).
//! Every fixture is also serialized back and compared byte for byte (whitespace aside) with the
//! original, so the simulator, which emits these types, sends Safaricom's exact shapes.

use daraja::wire::{C2bPayment, ResultEnvelope, StkCallback};
use daraja::{CallbackParseError, parse_eat_timestamp};
use mpesa_domain::{CallbackVerdict, Cents, FinalOutcome, Msisdn, ResultCode};
use serde::Serialize;

/// The fixture's bytes without its `_source` line (removed as text, so numbers like `1.00`
/// keep their exact form).
fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let stripped: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("\"_source\""))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !stripped.contains("_source"),
        "{name}: the source note must be one line"
    );
    stripped.into_bytes()
}

/// JSON text without the whitespace between tokens.
fn minify(json: &[u8]) -> String {
    let mut out = String::new();
    let (mut in_string, mut escaped) = (false, false);
    for c in String::from_utf8_lossy(json).chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !c.is_whitespace() {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

fn assert_serializes_back<T: Serialize>(parsed: &T, raw: &[u8], name: &str) {
    assert_eq!(
        serde_json::to_string(parsed).unwrap(),
        minify(raw),
        "{name} does not serialize back to its shape"
    );
}

fn stk(name: &str) -> StkCallback {
    let raw = fixture(name);
    let parsed = StkCallback::parse(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_serializes_back(&parsed, &raw, name);
    parsed
}

fn eat_ms(text: &str) -> i64 {
    parse_eat_timestamp(text).unwrap()
}

#[test]
fn stk_success_docs_sample() {
    let cb = stk("stk_success_docs_2024.json");
    assert_eq!(cb.checkout_request_id(), "ws_CO_10072024091526171708374149");
    assert_eq!(cb.merchant_request_id(), "2654-4b64-97ff-b827b542881d3130");
    let report = cb.to_report().unwrap();
    assert!(report.result_code.is_success());
    let success = report.success.unwrap();
    assert_eq!(success.receipt, "SGA1XYZ123");
    assert_eq!(success.amount, Some(Cents(100)));
    assert_eq!(success.phone.as_deref(), Some("254708374149"));
    // 2024-07-10 09:15:41 in Nairobi is 06:15:41 UTC.
    assert_eq!(success.transaction_date_ms, Some(1_720_592_141_000));
    assert!(
        cb.metadata_value("Balance").is_none(),
        "valueless Balance stays valueless"
    );
    // The serialized form keeps the decimal and the valueless item exactly.
    let json = serde_json::to_string(&cb).unwrap();
    assert!(json.contains(r#"{"Name":"Amount","Value":1.00}"#));
    assert!(json.contains(r#"{"Name":"Balance"}"#));
    assert!(json.contains(r#""ResultCode":0,"#));
}

#[test]
fn stk_success_with_an_integer_amount() {
    let report = stk("stk_success_integer_amount.json").to_report().unwrap();
    let success = report.success.unwrap();
    assert_eq!(success.amount, Some(Cents(100)));
    assert_eq!(success.receipt, "NLJ7RT61SV");
    assert_eq!(success.transaction_date_ms, Some(eat_ms("20191219102115")));
}

#[test]
fn stk_success_with_a_large_decimal_amount_in_any_item_order() {
    let report = stk("stk_success_float_amount.json").to_report().unwrap();
    let success = report.success.unwrap();
    assert_eq!(success.amount, Some(Cents(1_050_000)));
    assert_eq!(success.receipt, "SGL7HJ2K4P");
    assert_eq!(success.phone.as_deref(), Some("254110123456"));
    assert_eq!(
        Msisdn::parse("0110123456")
            .unwrap()
            .matches_reported(success.phone.as_deref().unwrap()),
        Some(true)
    );
}

#[test]
fn stk_failures_carry_their_code_and_no_details() {
    for (name, code, outcome) in [
        ("stk_failure_1.json", "1", FinalOutcome::Failed),
        ("stk_failure_1032.json", "1032", FinalOutcome::Cancelled),
        ("stk_failure_1037.json", "1037", FinalOutcome::TimedOut),
        ("stk_failure_2001.json", "2001", FinalOutcome::Failed),
        (
            "stk_string_code_sfc.json",
            "SFC_IC0003",
            FinalOutcome::Failed,
        ),
    ] {
        let cb = stk(name);
        let report = cb.to_report().unwrap();
        assert_eq!(report.result_code, ResultCode::from(code), "{name}");
        assert!(report.success.is_none(), "{name}");
        assert!(!report.result_desc.is_empty(), "{name}");
        assert_eq!(
            report.result_code.callback_verdict(),
            CallbackVerdict::Final(outcome),
            "{name}"
        );
    }
    let cancelled = stk("stk_failure_1032.json").to_report().unwrap();
    assert_eq!(cancelled.result_desc, "Request cancelled by user");
}

#[test]
fn stk_string_zero_is_a_success_with_string_values() {
    let cb = stk("stk_string_code_zero.json");
    assert_eq!(
        serde_json::to_value(&cb).unwrap()["Body"]["stkCallback"]["ResultCode"],
        "0",
        "kept as a string"
    );
    let success = cb.to_report().unwrap().success.unwrap();
    assert_eq!(success.amount, Some(Cents(100)));
    assert_eq!(success.phone.as_deref(), Some("254708374149"));
    assert_eq!(success.transaction_date_ms, Some(eat_ms("20240710091541")));
}

#[test]
fn a_success_without_a_receipt_is_refused() {
    let raw = fixture("stk_success_without_receipt.json");
    assert_eq!(
        StkCallback::parse(&raw).unwrap_err(),
        CallbackParseError::MissingReceipt
    );
}

#[test]
fn broken_stk_bodies_are_refused_with_a_reason() {
    assert!(matches!(
        StkCallback::parse(b"not json"),
        Err(CallbackParseError::NotJson(_))
    ));
    assert!(matches!(
        StkCallback::parse(b"{\"Body\":{}}"),
        Err(CallbackParseError::Shape(_))
    ));
    let no_id =
        br#"{"Body":{"stkCallback":{"CheckoutRequestID":"","ResultCode":1032,"ResultDesc":"x"}}}"#;
    assert_eq!(
        StkCallback::parse(no_id).unwrap_err(),
        CallbackParseError::Missing("CheckoutRequestID")
    );
    // A number where text belongs: the error names the problem without quoting the phone.
    let odd = br#"{"Body":{"stkCallback":{"CheckoutRequestID":254708374149,"ResultCode":0}}}"#;
    let err = StkCallback::parse(odd).unwrap_err();
    assert!(!err.to_string().contains("254708374149"), "{err}");
    // Unknown fields anywhere are fine.
    let extra = br#"{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"ws_CO_1","ResultCode":1,"ResultDesc":"x","New":true},"More":1},"Top":[]}"#;
    assert_eq!(
        StkCallback::parse(extra).unwrap().result_code().as_str(),
        "1"
    );
}

fn c2b(name: &str) -> C2bPayment {
    let raw = fixture(name);
    let parsed = C2bPayment::parse(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_serializes_back(&parsed, &raw, name);
    parsed
}

#[test]
fn c2b_confirmation_with_a_masked_msisdn() {
    let p = c2b("c2b_confirmation_masked.json");
    assert_eq!(p.trans_id, "RKL51ZDR4F");
    assert_eq!(p.amount(), Some(Cents(500)));
    assert_eq!(p.org_account_balance(), Some(Cents(2_500)));
    assert_eq!(p.reported_msisdn(), "2547 ***** 126");
    assert_eq!(p.bill_ref_number.as_deref(), Some("INV0042"));
    assert_eq!(p.trans_time_ms(), Some(eat_ms("20231121121325")));
    assert_eq!(p.middle_name.as_deref(), Some(""));
    assert!(!format!("{p:?}").contains("JANE"), "Debug shows no names");
}

#[test]
fn c2b_confirmation_with_a_hashed_msisdn() {
    let p = c2b("c2b_confirmation_hashed.json");
    assert_eq!(p.transaction_type, "Buy Goods");
    assert_eq!(p.amount(), Some(Cents(15_000)));
    assert_eq!(p.reported_msisdn().len(), 64);
    assert_eq!(
        Msisdn::parse("0708374149")
            .unwrap()
            .matches_reported(p.reported_msisdn()),
        Some(true)
    );
    assert_eq!(p.middle_name, None);
}

#[test]
fn c2b_confirmation_short_form() {
    let p = c2b("c2b_confirmation_short.json");
    assert_eq!(p.first_name.as_deref(), Some("JOHN"));
    assert_eq!(
        (p.middle_name.as_deref(), p.last_name.as_deref()),
        (None, None)
    );
    assert_eq!(p.amount(), Some(Cents(100)));
    assert_eq!(p.business_short_code.as_str(), "4001234");
    let json = serde_json::to_string(&p).unwrap();
    assert!(
        !json.contains("MiddleName") && !json.contains("LastName"),
        "absent stays absent"
    );
}

#[test]
fn c2b_validation_request_has_an_empty_balance() {
    let p = c2b("c2b_validation.json");
    assert_eq!(p.org_account_balance(), None);
    assert_eq!(p.amount(), Some(Cents(500)));
}

#[test]
fn c2b_bodies_without_what_matters_are_refused() {
    let no_amount = br#"{"TransID":"RKL51ZDR4F","TransAmount":"five","MSISDN":"2547 ***** 126"}"#;
    assert!(matches!(
        C2bPayment::parse(no_amount),
        Err(CallbackParseError::InvalidAmount {
            field: "TransAmount",
            ..
        })
    ));
    // A payment of minus five shillings is no payment (the c2b_payment fuzz target's invariant).
    let negative = br#"{"TransID":"RKL51ZDR4F","TransAmount":"-5.00"}"#;
    assert!(matches!(
        C2bPayment::parse(negative),
        Err(CallbackParseError::InvalidAmount {
            field: "TransAmount",
            ..
        })
    ));
    let no_id = br#"{"TransID":" ","TransAmount":"5.00"}"#;
    assert_eq!(
        C2bPayment::parse(no_id).unwrap_err(),
        CallbackParseError::Missing("TransID")
    );
    // Numbers where Safaricom usually writes strings are read too.
    let numbers = br#"{"TransID":"X1","TransAmount":5,"BusinessShortCode":600966,"MSISDN":254708374149,"TransTime":20231121121325}"#;
    let p = C2bPayment::parse(numbers).unwrap();
    assert_eq!(p.amount(), Some(Cents(500)));
    assert_eq!(p.business_short_code.as_str(), "600966");
    assert!(!format!("{p:?}").contains("254708374149"));
}

fn result(name: &str) -> ResultEnvelope {
    let raw = fixture(name);
    let parsed = ResultEnvelope::parse(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_serializes_back(&parsed, &raw, name);
    parsed
}

#[test]
fn b2c_success_result() {
    let r = result("b2c_result_success.json");
    assert!(r.is_success());
    let payout = r.b2c().unwrap().unwrap();
    assert_eq!(payout.receipt, "SG632NMUAB");
    assert_eq!(payout.amount, Some(Cents(1_000)));
    assert_eq!(
        payout.utility_account_available_funds,
        Some(Cents(895_926_960))
    );
    assert_eq!(
        payout.working_account_available_funds,
        Some(Cents(119_937_100))
    );
    assert_eq!(
        payout.charges_paid_account_available_funds,
        Some(Cents(-198_000))
    );
    assert_eq!(payout.recipient_is_registered_customer, Some(true));
    // 06.07.2024 22:48:52 in Nairobi.
    assert_eq!(payout.completed_at_ms, Some(eat_ms("20240706224852")));
    assert_eq!(
        r.reference("QueueTimeoutURL").unwrap().as_text().unwrap(),
        "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit"
    );
}

#[test]
fn b2c_failure_result() {
    let r = result("b2c_result_failure.json");
    assert_eq!(r.result_code().as_str(), "2001");
    assert_eq!(r.b2c().unwrap(), None);
    assert_eq!(
        r.result.originator_conversation_id,
        "payout-2024-07-07-000124"
    );
    assert!(r.result.result_parameters.is_none());
}

#[test]
fn transaction_status_result() {
    let r = result("transaction_status_result.json");
    let status = r.transaction_status().unwrap().unwrap();
    assert_eq!(status.transaction_status.as_deref(), Some("Completed"));
    assert_eq!(status.receipt_no.as_deref(), Some("SB60ABCD12"));
    assert_eq!(status.amount, Some(Cents(100)));
    assert_eq!(status.initiated_at_ms, Some(eat_ms("20240206143645")));
    assert_eq!(status.credit_party_charges, None, "valueless item");
    assert_eq!(status.transaction_reason, None);
    assert_eq!(
        status.reason_type.as_deref(),
        Some("Pay Utility with OD Online")
    );
    assert_eq!(r.reference("Occasion").unwrap().as_text().unwrap(), "OK");
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains(r#"{"Key":"TransactionReason"}"#));
    assert!(json.contains(r#"{"Key":"Amount","Value":1.0}"#));
}

#[test]
fn account_balance_result() {
    let r = result("account_balance_result.json");
    assert_eq!(
        serde_json::to_value(&r).unwrap()["Result"]["ResultCode"],
        "0",
        "kept as a string"
    );
    let balances = r.account_balance().unwrap().unwrap();
    assert_eq!(balances.accounts.len(), 5);
    let utility = balances.account("Utility Account").unwrap();
    assert_eq!(utility.currency, "KES");
    assert_eq!(utility.available, Cents(22_803_700));
    assert_eq!(
        balances.account("Charges Paid Account").unwrap().current,
        Cents(-154_000)
    );
    assert_eq!(balances.completed_at_ms, Some(eat_ms("20200109125710")));
}

#[test]
fn reversal_results() {
    let ok = result("reversal_result_success.json");
    let reversal = ok.reversal().unwrap().unwrap();
    assert_eq!(
        reversal.original_transaction_id.as_deref(),
        Some("SKC82PACB8")
    );
    assert_eq!(reversal.amount, Some(Cents(100)));
    assert_eq!(reversal.charge, Some(Cents(0)));
    assert_eq!(
        reversal.debit_account_balance[0].available,
        Cents(772_217_962)
    );
    assert_eq!(reversal.completed_at_ms, Some(eat_ms("20211114132711")));

    let failed = result("reversal_result_failure.json");
    assert_eq!(failed.result_code().as_str(), "R000002");
    assert!(!failed.is_success());
    assert_eq!(failed.reversal().unwrap(), None);
    assert_eq!(failed.result.transaction_id.as_deref(), Some("SKE0000000"));
}

#[test]
fn a_single_result_parameter_object_and_a_reference_array() {
    let r = result("result_single_parameter_object.json");
    assert_eq!(
        r.parameter("BOCompletedTime").unwrap().as_i64(),
        Some(20_200_120_164_825)
    );
    assert!(r.reference("QueueTimeoutURL").is_some());
    assert!(
        r.reference("Occasion").is_none(),
        "valueless reference item"
    );
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        json.contains(r#""ResultParameter":{"Key":"BOCompletedTime","Value":20200120164825}"#),
        "object stays an object"
    );
}

#[test]
fn results_without_what_matters_are_refused() {
    let no_conversation = br#"{"Result":{"ResultCode":0}}"#;
    assert_eq!(
        ResultEnvelope::parse(no_conversation).unwrap_err(),
        CallbackParseError::Missing("ConversationID")
    );
    // A B2C success must name its receipt.
    let no_receipt = br#"{"Result":{"ResultCode":0,"ConversationID":"AG_1","ResultParameters":{"ResultParameter":[{"Key":"TransactionAmount","Value":10}]}}}"#;
    assert_eq!(
        ResultEnvelope::parse(no_receipt)
            .unwrap()
            .b2c()
            .unwrap_err(),
        CallbackParseError::Missing("TransactionReceipt")
    );
    // A balance success must carry a readable AccountBalance.
    let bad_balance = br#"{"Result":{"ResultCode":"0","ConversationID":"AG_1","ResultParameters":{"ResultParameter":{"Key":"AccountBalance","Value":"Working Account|KES|lots"}}}}"#;
    assert!(matches!(
        ResultEnvelope::parse(bad_balance)
            .unwrap()
            .account_balance(),
        Err(CallbackParseError::InvalidAccountBalance(_))
    ));
    // An amount paid out is never negative (balances may be).
    let negative = br#"{"Result":{"ResultCode":0,"ConversationID":"AG_1","TransactionID":"SG1","ResultParameters":{"ResultParameter":[{"Key":"TransactionAmount","Value":-10},{"Key":"B2CChargesPaidAccountAvailableFunds","Value":-1540.00}]}}}"#;
    assert!(matches!(
        ResultEnvelope::parse(negative).unwrap().b2c(),
        Err(CallbackParseError::InvalidAmount {
            field: "TransactionAmount",
            ..
        })
    ));
    let funds = std::str::from_utf8(negative)
        .unwrap()
        .replace("-10}", "10}");
    let payout = ResultEnvelope::parse(funds.as_bytes())
        .unwrap()
        .b2c()
        .unwrap()
        .unwrap();
    assert_eq!(
        payout.charges_paid_account_available_funds,
        Some(Cents(-154_000))
    );
    // An amount in exponent form is refused rather than guessed through a float.
    let exp = br#"{"Result":{"ResultCode":0,"ConversationID":"AG_1","TransactionID":"SG1","ResultParameters":{"ResultParameter":[{"Key":"TransactionAmount","Value":1e3}]}}}"#;
    assert!(matches!(
        ResultEnvelope::parse(exp).unwrap().b2c(),
        Err(CallbackParseError::InvalidAmount { .. })
    ));
}
