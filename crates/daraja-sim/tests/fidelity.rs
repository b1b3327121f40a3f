//! Issue 17: the simulator refuses what Daraja refuses. One test per item, each citing the line of
//! `shared/daraja/` it follows.

mod common;

use std::time::Duration;

use common::*;
use daraja::wire::StkCallback;
use daraja_sim::{
    CallbackKind, LongReferences, SANDBOX_PASSKEY, SANDBOX_SHORTCODE, ShortcodeConfig, SimConfig,
};
use serde_json::{Value, json};

const PUSH: &str = "/mpesa/stkpush/v1/processrequest";

/// The STK callback of the push that answered `answer`.
async fn callback_of(receiver: &Receiver, answer: &Answer) -> StkCallback {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id = answer.body["CheckoutRequestID"].as_str().unwrap();
    StkCallback::parse(&receiver.stk_callback(id).await.body).unwrap()
}

fn code(callback: &StkCallback) -> String {
    callback.result_code().as_str().to_owned()
}

/// Item 1. stk.md "TransactionType, paybill vs till" (lines 90–101): "A wrong combination is
/// accepted synchronously and fails in the callback with `2028` … or `SFC_IC0003`";
/// problems.md #9 (lines 124–136).
#[tokio::test]
async fn item1_a_wrong_paybill_or_till_combination_fails_in_the_callback() {
    let server = start(
        SimConfig::for_tests().with_shortcode(ShortcodeConfig::sandbox_stk().with_till("5432100")),
    )
    .await;
    let receiver = Receiver::start().await;
    let token = token(&server).await;
    let push = |phone: &str, kind: &str, party_b: &str| {
        let mut b = push_body(phone, 1, &receiver.url("stk"));
        b["TransactionType"] = json!(kind);
        b["PartyB"] = json!(party_b);
        b
    };
    // A paybill push whose PartyB is not the paybill.
    let a = post_json(
        &server,
        PUSH,
        &token,
        &push("254711000101", "CustomerPayBillOnline", "600000"),
    )
    .await;
    assert_eq!(code(&callback_of(&receiver, &a).await), "2028");
    // A till push whose PartyB is the paybill (no till of this store number).
    let a = post_json(
        &server,
        PUSH,
        &token,
        &push("254711000102", "CustomerBuyGoodsOnline", SHORTCODE),
    )
    .await;
    let cb = callback_of(&receiver, &a).await;
    assert_eq!(code(&cb), "SFC_IC0003");
    assert_eq!(
        cb.body.stk_callback.result_desc,
        "The operator does not exist."
    );
    // The right combinations pay.
    let a = post_json(
        &server,
        PUSH,
        &token,
        &push("254711000103", "CustomerBuyGoodsOnline", "5432100"),
    )
    .await;
    assert_eq!(code(&callback_of(&receiver, &a).await), "0");
    let a = post_json(
        &server,
        PUSH,
        &token,
        &push("254711000104", "CustomerPayBillOnline", SHORTCODE),
    )
    .await;
    assert_eq!(code(&callback_of(&receiver, &a).await), "0");
}

/// Item 2 and the form body sent as JSON. stk.md synchronous errors (line 167: "Invalid
/// BusinessShortCode" is "the typical symptom of a missing `Content-Type: application/json` or
/// form-encoded body"); problems.md #7 (lines 98–109); b2c-and-results.md line 187
/// ("`InitiatorName` when the body is not JSON").
#[tokio::test]
async fn item2_a_body_without_the_json_content_type_is_not_read() {
    let server = start(SimConfig::for_tests()).await;
    let token = token(&server).await;
    let body = push_body("254711000201", 1, "http://127.0.0.1:9/hooks/stk").to_string();
    let body: &'static str = Box::leak(body.into_boxed_str());
    for content_type in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let a = post_raw(&server, PUSH, Some(&token), content_type, body).await;
        assert_eq!(
            a.error(),
            (400, "400.002.02", "Bad Request - Invalid BusinessShortCode"),
            "content type {content_type:?}"
        );
    }
    let json_utf8 = post_raw(
        &server,
        PUSH,
        Some(&token),
        "application/json; charset=utf-8",
        body,
    )
    .await;
    assert_eq!(json_utf8.status, 200, "{}", json_utf8.body);
    // A form body under the JSON content type: the first field, not 400.002.05.
    let form = post_raw(
        &server,
        PUSH,
        Some(&token),
        "application/json",
        "BusinessShortCode=174379&Amount=1&PhoneNumber=254711000202",
    )
    .await;
    assert_eq!(
        form.error(),
        (400, "400.002.02", "Bad Request - Invalid BusinessShortCode")
    );
    let b2c = post_raw(
        &server,
        "/mpesa/b2c/v3/paymentrequest",
        Some(&token),
        "text/plain",
        "{}",
    )
    .await;
    assert_eq!(
        b2c.error(),
        (400, "400.002.02", "Bad Request - Invalid InitiatorName")
    );
}

/// Item 3. problems.md #6 (line 94: "malformed URL (`https:my_app…`)" gives `Invalid
/// CallBackURL`); the same rules apply to C2B URLs (c2b.md line 236).
#[tokio::test]
async fn item3_malformed_callback_urls_are_refused_not_repaired() {
    let server = start(SimConfig::for_tests()).await;
    let token = token(&server).await;
    for bad in [
        "https:my_app.example.com/cb",
        "https:/127.0.0.1:9/hooks/stk",
        "http:/127.0.0.1:9/hooks/stk",
        "https:///127.0.0.1/cb",
    ] {
        let a = post_json(&server, PUSH, &token, &push_body("254711000301", 1, bad)).await;
        assert_eq!(
            a.error(),
            (400, "400.002.02", "Bad Request - Invalid CallBackURL"),
            "{bad}"
        );
        let r = post_json(
            &server,
            "/mpesa/c2b/v2/registerurl",
            &token,
            &json!({"ShortCode": "600000", "ResponseType": "Completed", "ConfirmationURL": bad, "ValidationURL": "http://127.0.0.1:9/v"}),
        )
        .await;
        assert_eq!(r.error(), (400, "400.003.02", "Bad Request"), "{bad}");
    }
}

/// Item 4. b2c-and-results.md line 269 (`2001`: "Wrong username, wrong password, wrong
/// certificate") and line 542 ("wrong user → 20/2001"): lenient mode forgives the encryption,
/// not a user that does not exist.
#[tokio::test]
async fn item4_an_unknown_initiator_fails_in_lenient_mode() {
    let server = start(SimConfig::for_tests()).await;
    let receiver = Receiver::start().await;
    let token = token(&server).await;
    let credential = daraja::EncryptionCertificate::sandbox()
        .security_credential(&secrecy::SecretString::from("anything"))
        .unwrap();
    let b2c = |initiator: &str, id: &str| {
        json!({
            "OriginatorConversationID": id, "InitiatorName": initiator,
            "SecurityCredential": credential.expose(), "CommandID": "BusinessPayment", "Amount": 10,
            "PartyA": "600000", "PartyB": "254711000401", "Remarks": "payout",
            "QueueTimeOutURL": receiver.url("timeout"), "ResultURL": receiver.url("result")
        })
    };
    for (initiator, id, expected) in [("nobody", "fid-4-a", "2001"), ("testapi", "fid-4-b", "0")] {
        let a = post_json(
            &server,
            "/mpesa/b2c/v3/paymentrequest",
            &token,
            &b2c(initiator, id),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let conversation = a.body["ConversationID"].as_str().unwrap().to_owned();
        let result = server
            .sim
            .wait_for_result(&conversation, WAIT)
            .await
            .unwrap();
        let body: Value = serde_json::from_str(result.body_text()).unwrap();
        assert_eq!(
            body["Result"]["ResultCode"].to_string().trim_matches('"'),
            expected,
            "{initiator}"
        );
    }
}

/// Item 5. stk.md STK ResultCodes, line 269 (`17`: "Same amount to the same customer pushed
/// again within 2 minutes"); operations.md line 95 ("Business rules that behave like rate
/// limits").
#[tokio::test]
async fn item5_the_same_phone_and_amount_again_within_the_window_is_rule_limited() {
    let server = start(SimConfig {
        rule_limit_window: Duration::from_secs(120),
        ..SimConfig::for_tests()
    })
    .await;
    let receiver = Receiver::start().await;
    let token = token(&server).await;
    let cb = receiver.url("stk");
    let first = post_json(&server, PUSH, &token, &push_body("254711000501", 50, &cb)).await;
    assert_eq!(code(&callback_of(&receiver, &first).await), "0");
    let again = post_json(&server, PUSH, &token, &push_body("254711000501", 50, &cb)).await;
    let limited = callback_of(&receiver, &again).await;
    assert_eq!(code(&limited), "17");
    assert_eq!(limited.body.stk_callback.result_desc, "Rule limited.");
    // Another amount, or another phone, is not limited.
    let other = post_json(&server, PUSH, &token, &push_body("254711000501", 51, &cb)).await;
    assert_eq!(code(&callback_of(&receiver, &other).await), "0");
    let phone = post_json(&server, PUSH, &token, &push_body("254711000502", 50, &cb)).await;
    assert_eq!(code(&callback_of(&receiver, &phone).await), "0");
    // With the window at zero (SimConfig::for_tests), the rule is off.
    let relaxed = start(SimConfig::for_tests()).await;
    let t = common::token(&relaxed).await;
    for _ in 0..2 {
        let a = post_json(&relaxed, PUSH, &t, &push_body("254711000503", 50, &cb)).await;
        assert_eq!(code(&callback_of(&receiver, &a).await), "0");
    }
}

/// Item 6. stk.md "Amount" (line 108: "Whole numbers only"); problems.md #8 (line 118: "float
/// formatting (`1e+05`)").
#[tokio::test]
async fn item6_loose_amount_formats_are_refused() {
    let server = start(SimConfig::for_tests()).await;
    let token = token(&server).await;
    let cb = "http://127.0.0.1:9/hooks/stk";
    for raw in [
        "1e+05",
        "1E5",
        "100000.0",
        "\"0100\"",
        "\" 100\"",
        "\"100.00\"",
        "1.5",
    ] {
        let mut body = push_body("254711000601", 1, cb).to_string();
        body = body.replace("\"Amount\":1", &format!("\"Amount\":{raw}"));
        let body: &'static str = Box::leak(body.into_boxed_str());
        let a = post_raw(&server, PUSH, Some(&token), "application/json", body).await;
        assert_eq!(
            a.error(),
            (400, "400.002.02", "Bad Request - Invalid Amount"),
            "{raw}"
        );
    }
    for ok in [json!(100), json!("100")] {
        let mut b = push_body("254711000602", 1, cb);
        b["Amount"] = ok.clone();
        b["PhoneNumber"] = json!(format!(
            "2547110006{}",
            if ok.is_string() { "03" } else { "04" }
        ));
        b["PartyA"] = b["PhoneNumber"].clone();
        assert_eq!(
            post_json(&server, PUSH, &token, &b).await.status,
            200,
            "{ok}"
        );
    }
}

/// Item 7. stk.md "AccountReference and TransactionDesc" (lines 139–142): a prompt over 182
/// characters fails with `1025` (established); a synchronous refusal of a 13+ character
/// reference is "not established" and is the `Refuse` option.
#[tokio::test]
async fn item7_a_long_reference_fails_with_1025_or_is_refused_when_asked() {
    let server = start(SimConfig::for_tests()).await;
    let receiver = Receiver::start().await;
    let token = token(&server).await;
    let cb = receiver.url("stk");
    let with_reference = |phone: &str, reference: &str| {
        let mut b = push_body(phone, 1, &cb);
        b["AccountReference"] = json!(reference);
        b["TransactionDesc"] = json!("Lipa na mpesa online");
        b
    };
    // Longer than documented, still a short prompt: accepted and paid.
    let a = post_json(
        &server,
        PUSH,
        &token,
        &with_reference("254711000701", "INVOICE-2026-0042"),
    )
    .await;
    assert_eq!(code(&callback_of(&receiver, &a).await), "0");
    // A prompt past 182 characters: 1025.
    let long = "R".repeat(120);
    let a = post_json(
        &server,
        PUSH,
        &token,
        &with_reference("254711000702", &long),
    )
    .await;
    let cb1025 = callback_of(&receiver, &a).await;
    assert_eq!(code(&cb1025), "1025");
    assert_eq!(
        cb1025.body.stk_callback.result_desc,
        "An error occurred while sending a push request."
    );
    // The option: refused at once, like mpesakit's client-side limits.
    let strict = start(SimConfig {
        long_references: LongReferences::Refuse,
        ..SimConfig::for_tests()
    })
    .await;
    let t = common::token(&strict).await;
    let a = post_json(
        &strict,
        PUSH,
        &t,
        &with_reference("254711000703", "INVOICE-2026-0042"),
    )
    .await;
    assert_eq!(
        a.error(),
        (400, "400.002.02", "Bad Request - Invalid AccountReference")
    );
    let mut desc = push_body("254711000704", 1, &cb);
    desc["TransactionDesc"] = json!("Lipa na mpesa online");
    let a = post_json(&strict, PUSH, &t, &desc).await;
    assert_eq!(
        a.error(),
        (400, "400.002.02", "Bad Request - Invalid TransactionDesc")
    );
}

/// Item 8. c2b.md "Flow" (lines 19–25: validation "off by default; enabled by Safaricom on
/// request") and "Simulator behaviour" (lines 478–480). Switched on for the standalone
/// simulator by `DARAJA_SIM_C2B_VALIDATION` or at runtime over HTTP.
#[tokio::test]
async fn item8_c2b_external_validation_is_switched_on_over_http_and_by_env() {
    let config = SimConfig::for_tests()
        .apply_env(|n| (n == "DARAJA_SIM_C2B_VALIDATION").then(|| "600111".to_owned()))
        .unwrap();
    let server = start(config).await;
    assert!(
        server.sim.c2b_validation("600111"),
        "on from the environment"
    );
    assert!(!server.sim.c2b_validation("600000"), "off by default");
    let receiver = Receiver::start().await;
    receiver.set_validation(ValidationReply::Reject("C2B00012"));
    let token = token(&server).await;
    let register = json!({"ShortCode": "600000", "ResponseType": "Completed",
        "ConfirmationURL": receiver.url("confirm"), "ValidationURL": receiver.url("validate")});
    assert_eq!(
        post_json(&server, "/mpesa/c2b/v2/registerurl", &token, &register)
            .await
            .status,
        200
    );
    let settings = http()
        .post(format!("{}/simulator/c2b", server.base_url))
        .json(&json!({"validation": {"600000": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(settings.status(), 200);
    assert_eq!(
        settings.json::<Value>().await.unwrap()["validation"]["600000"],
        true
    );
    let simulate = json!({"ShortCode": "600000", "CommandID": "CustomerPayBillOnline", "Amount": 5,
        "Msisdn": "254711000801", "BillRefNumber": "WRONG"});
    let a = post_json(&server, "/mpesa/c2b/v2/simulate", &token, &simulate).await;
    assert_eq!(a.status, 200);
    let validation = server
        .sim
        .wait_for_callback(WAIT, |c| c.kind == CallbackKind::C2bValidation)
        .await
        .unwrap();
    // Refused: no money moved, so no confirmation.
    assert!(server.sim.payment(&validation.reference).is_none());
    assert!(
        !server
            .sim
            .callbacks()
            .iter()
            .any(|c| c.kind == CallbackKind::C2bConfirmation)
    );
}

/// Item 9. stk.md "Password and timestamp" (lines 81–84): Daraja documents only the format;
/// whether a stale or UTC timestamp is refused is "not established", so refusing one is the
/// strict option (`timestamp_max_skew`), off by default.
#[tokio::test]
async fn item9_a_timestamp_far_from_east_africa_time_is_refused_in_strict_mode() {
    let now = chrono::Utc::now();
    let eat = daraja::eat_timestamp(now);
    let utc = now.format("%Y%m%d%H%M%S").to_string();
    let with_timestamp = |phone: &str, ts: &str| {
        let mut b = push_body(phone, 1, "http://127.0.0.1:9/hooks/stk");
        b["Timestamp"] = json!(ts);
        b["Password"] = json!(password(SANDBOX_SHORTCODE, SANDBOX_PASSKEY, ts));
        b
    };
    let strict = start(SimConfig {
        timestamp_max_skew: Some(Duration::from_secs(300)),
        ..SimConfig::for_tests()
    })
    .await;
    let t = token(&strict).await;
    let a = post_json(&strict, PUSH, &t, &with_timestamp("254711000901", &utc)).await;
    assert_eq!(
        a.error(),
        (400, "400.002.02", "Bad Request - Invalid Timestamp"),
        "UTC is 3 h off"
    );
    let a = post_json(&strict, PUSH, &t, &with_timestamp("254711000902", &eat)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // STK Query uses the same Password/Timestamp scheme (stk.md line 88): the same rule.
    let checkout = a.body["CheckoutRequestID"].as_str().unwrap();
    let query = |ts: &str| {
        json!({"BusinessShortCode": SANDBOX_SHORTCODE, "Password": password(SANDBOX_SHORTCODE, SANDBOX_PASSKEY, ts),
            "Timestamp": ts, "CheckoutRequestID": checkout})
    };
    let q = post_json(&strict, "/mpesa/stkpushquery/v1/query", &t, &query(&utc)).await;
    assert_eq!(
        q.error(),
        (400, "400.002.02", "Bad Request - Invalid Timestamp")
    );
    let q = post_json(&strict, "/mpesa/stkpushquery/v1/query", &t, &query(&eat)).await;
    assert_ne!(q.error().2, "Bad Request - Invalid Timestamp", "{}", q.body);
    // Default: the format is all that is checked (what every library passes today).
    let lenient = start(SimConfig::for_tests()).await;
    let t = token(&lenient).await;
    let a = post_json(&lenient, PUSH, &t, &with_timestamp("254711000903", &utc)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let env = SimConfig::default()
        .apply_env(|n| (n == "DARAJA_SIM_TIMESTAMP_MAX_SKEW_SECS").then(|| "120".to_owned()))
        .unwrap();
    assert_eq!(env.timestamp_max_skew, Some(Duration::from_secs(120)));
}
