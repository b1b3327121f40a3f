//! The OpenAPI document says what the API accepts (what `scripts/schemathesis` found wrong).

use mpesa_domain::{AccountReference, AmountBounds, Description, Msisdn, check_email};
use mpesa_gateway::http::openapi::document;
use mpesa_storage::Backend;
use regex::Regex;
use serde_json::{Value, json};

use crate::support::*;

fn doc() -> Value {
    serde_json::to_value(document()).unwrap()
}

fn pattern(schema: &Value) -> Regex {
    let p = schema["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("a pattern in {schema}"));
    Regex::new(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn body_field(doc: &Value, field: &str) -> Value {
    doc["components"]["schemas"]["CreatePaymentRequest"]["properties"][field].clone()
}

fn list_param(doc: &Value, name: &str) -> Value {
    doc["paths"]["/api/v1/payments"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("parameter {name}"))["schema"]
        .clone()
}

/// Every operation has its own operationId (Schemathesis resolves inferred links by it: two
/// handlers named `show` sent a payment link's id to the receipt route).
#[test]
fn operation_ids_are_unique() {
    let doc = doc();
    let mut seen = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Some(id) = operation["operationId"].as_str() {
                let here = format!("{method} {path}");
                if let Some(before) = seen.insert(id.to_owned(), here.clone()) {
                    panic!("operationId {id} is used by {before} and {here}");
                }
            }
        }
    }
}

/// The receipt code's documented path pattern accepts exactly the codes the receipt routes
/// accept (schemathesis sends what the pattern allows and expects it to be taken).
#[test]
fn the_receipt_code_pattern_is_the_validation() {
    let doc = doc();
    for path in ["/api/v1/receipts/{code}", "/api/v1/receipts/{code}/check"] {
        let operation = &doc["paths"][path];
        let operation = if operation["get"].is_object() {
            &operation["get"]
        } else {
            &operation["post"]
        };
        let param = operation["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} has parameters"))
            .iter()
            .find(|p| p["name"] == "code")
            .unwrap_or_else(|| panic!("{path} documents code"));
        let code = pattern(&param["schema"]);
        for sample in [
            "SGA1XYZ123",
            "0000000000",
            "ABCDEFGHIJ",
            "sga1xyz123",
            "SGA1XYZ12",
            "SGA1XYZ1234",
            "SGA1-XYZ12",
            " SGA1XYZ12",
            "SGA1XYZ12 ",
            "SGA1XYZ12\n",
            "SGA1XYZ12É",
            "ＳGA1XYZ123",
            "",
        ] {
            assert_eq!(
                code.is_match(sample),
                mpesa_gateway::money_out::receipts::parse_code(sample).is_ok(),
                "{path}: {sample:?}"
            );
        }
        for status in ["401", "404", "422", "503"] {
            assert!(
                operation["responses"][status].is_object(),
                "{path} documents {status}"
            );
        }
    }
    assert!(doc["paths"]["/api/v1/receipts/{code}/check"]["post"]["responses"]["409"].is_object());
}

/// Each documented pattern accepts exactly what the validation accepts, on the written forms
/// people use and on the edge cases around them.
#[test]
fn documented_patterns_agree_with_the_validation() {
    let doc = doc();
    let phone = pattern(&body_field(&doc, "phone"));
    let phones = [
        "0708374149",
        "0708 374 149",
        "0708-374-149",
        "+254708374149",
        "+254 708 374 149",
        "254708374149",
        "708374149",
        "  0708374149  ",
        "\t0110123456\n",
        "+254110123456",
        "-0708374149",
        "0708374149 -",
        "+ 254 708374149",
        "",
        " ",
        "+0708374149",
        "+708374149",
        "0208374149",
        "07083741490",
        "070837414",
        "2540708374149",
        "254708374",
        "0708\t374149",
        "0708374149x",
        "+-254708374149",
        "- \t0708374149",
        "\u{a0}0708374149",
        "٠708374149",
        "254 1 2345 6789",
        "1234567890",
        "+2547083741499",
    ];
    for p in phones {
        assert_eq!(phone.is_match(p), Msisdn::parse(p).is_ok(), "phone {p:?}");
    }
    let filter = pattern(&list_param(&doc, "phone"));
    for p in phones {
        let accepted = p.trim().is_empty() || Msisdn::parse(p).is_ok();
        assert_eq!(filter.is_match(p), accepted, "phone filter {p:?}");
    }

    let reference = pattern(&body_field(&doc, "reference"));
    for r in [
        "INV0042",
        " INV0042 ",
        "A",
        "ABCDEFGHIJKL",
        "ABCDEFGHIJKLM",
        "  ABCDEFGHIJKL  ",
        "a b",
        "A-1/2:3+4_5.",
        "",
        "   ",
        "INV#1",
        "Café",
        "A\tB",
        "\tA\n",
        "A\u{2003}",
    ] {
        assert_eq!(
            reference.is_match(r),
            AccountReference::parse(r).is_ok(),
            "reference {r:?}"
        );
    }

    let description = pattern(&body_field(&doc, "description"));
    let long = "d".repeat(100);
    let too_long = "d".repeat(101);
    let padded = format!("  {long}\u{3000}");
    for d in [
        "Dance class",
        " Dance class ",
        "Café 😀 <order>",
        "",
        "  ",
        "a\u{7}b",
        "a\u{85}b",
        "\u{2003}a\u{2003}",
        "a\u{2003}b",
        "a\tb",
        long.as_str(),
        too_long.as_str(),
        padded.as_str(),
        "\u{1c}a",
    ] {
        assert_eq!(
            description.is_match(d),
            Description::parse(d).is_ok(),
            "description {d:?}"
        );
    }

    let email = pattern(&body_field(&doc, "customer_email"));
    for e in [
        "a@b.co",
        " a@b.co ",
        "first.last+tag@example.co.ke",
        "a@b",
        "a@@b.co",
        "a b@c.co",
        "@b.co",
        "a@.co",
        "a@b.co.",
        "<a@b.co>",
        "a@b.co\r\nBcc: x@y.z",
        "a,b@c.co",
        "ü@ü.ke",
        "a@b..c",
        "",
        "a@b.c@d.e",
    ] {
        assert_eq!(email.is_match(e), check_email(e).is_some(), "email {e:?}");
    }
    assert_eq!(body_field(&doc, "customer_email")["maxLength"], 254);

    // Unknown fields are refused, and the document says so.
    assert_eq!(
        doc["components"]["schemas"]["CreatePaymentRequest"]["additionalProperties"],
        json!(false)
    );
    let limit = list_param(&doc, "limit");
    assert_eq!(
        (limit["minimum"].as_i64(), limit["maximum"].as_i64()),
        (Some(1), Some(100))
    );
    let status = pattern(&list_param(&doc, "status"));
    for s in [
        "completed",
        "timed_out",
        "",
        " pending ",
        "done",
        "Completed",
    ] {
        let accepted =
            s.trim().is_empty() || mpesa_domain::PaymentStatus::parse(s.trim()).is_some();
        assert_eq!(status.is_match(s), accepted, "status {s:?}");
    }
    // A body the document calls valid is accepted by the validation.
    let example = json!({"phone": "0708374149", "amount": 10, "reference": "INV0042", "description": "Dance class", "customer_email": "customer@example.com"});
    assert!(mpesa_domain::parse_payment_request(&example, AmountBounds::default()).is_ok());
}

/// `?phone=&status=` filtered on an empty phone number and answered 422; the document called
/// those values valid. An empty filter is now no filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_list_filters_are_no_filter() {
    let gw = spawn(Backend::Sqlite).await;
    let id = gw.pay(SUCCESS, 10).await;
    let get = |query: &'static str| {
        let request = gw
            .client
            .get(gw.url(&format!("/api/v1/payments?{query}")))
            .bearer_auth(&gw.api_key);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = get("phone=&status=&reference=&cursor=").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id.as_str())
    );
    let (status, body) = get("phone=%20&status=%20pending%20").await;
    assert_eq!(status, 200, "{body}");
    // What the document refuses is still refused, with the field named.
    for (query, field) in [
        ("limit=0", "limit"),
        // Found by Schemathesis after empty filters became no filter: `limit` is an integer.
        ("limit=", "limit"),
        ("limit=101", "limit"),
        ("phone=12", "phone"),
        ("status=done", "status"),
    ] {
        let (status, body) = get(query).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}");
    }
    gw.stop().await;
}

/// An integer amount beyond any amount was answered "must be a whole number of shillings";
/// an integral float chat id was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_are_read_as_json_schema_reads_them() {
    let gw = spawn(Backend::Sqlite).await;
    let response = gw
        .client
        .post(gw.url("/api/v1/payments"))
        .bearer_auth(&gw.api_key)
        .header("content-type", "application/json")
        .body(r#"{"phone":"0708374149","amount":18446744073709551615}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "amount");
    assert_eq!(body["error"]["message"], "amount is out of range");
    // Found by Schemathesis: `137274.0` is an integer to JSON Schema, so a valid chat id.
    let (status, body) = gw
        .create_payment(
            json!({"phone": "0708374149", "amount": 79744.0, "telegram_chat_id": 137274.0}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["amount"], 79744);
    let (status, body) = gw
        .create_payment(
            json!({"phone": "0708374149", "amount": 10, "reference": "R1", "extra": true}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "extra");
    gw.stop().await;
}

/// Every route the document says needs an API key documents 401 and 503, and every route that
/// takes a JSON body documents 400, 413, 415 and 422 (CI's Schemathesis failed on the money-out
/// and C2B routes, which documented none of the 401s).
#[test]
fn every_operation_documents_the_answers_it_can_give() {
    let doc = doc();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            if op.get("security").is_some() {
                for status in ["401", "503"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} does not document {status}"
                    );
                }
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} does not document {status}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} operations documented");
    // An Account Balance answer's accounts are a list (the document said an object).
    let accounts = &doc["components"]["schemas"]["BalanceView"]["properties"]["accounts"];
    assert!(
        accounts.to_string().contains("array"),
        "accounts documented as {accounts}"
    );
}

/// What the document calls a valid C2B account or payout field is accepted by the running
/// gateway, and what it calls invalid is refused with 422 (Schemathesis found an account with
/// control characters that the document allowed, and `500.0` shillings refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_out_and_c2b_patterns_agree_with_the_api() {
    let doc = doc();
    let schema =
        |name: &str, field: &str| doc["components"]["schemas"][name]["properties"][field].clone();
    let gw = spawn(Backend::Sqlite).await;
    let post = |path: &'static str, body: Value| {
        let request = gw
            .client
            .post(gw.url(path))
            .bearer_auth(&gw.api_key)
            .json(&body);
        async move {
            let r = request.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let long = "x".repeat(64);
    let too_long = "x".repeat(65);
    let texts = [
        "INV0042",
        "  INV 42 ",
        "Café 😀 <b>",
        "",
        "   ",
        "\t",
        "a\u{7}b",
        "a\u{85}b",
        "\u{2003}a\u{2003}",
        "a\tb",
        "\u{1c}a",
        "ab",
        "a",
        long.as_str(),
        too_long.as_str(),
    ];

    let account = pattern(&schema("NewC2bAccount", "account"));
    let path_account = pattern(
        &doc["paths"]["/api/v1/c2b/accounts/{account}"]["delete"]["parameters"][0]["schema"],
    );
    for a in texts {
        let (status, body) = post("/api/v1/c2b/accounts", json!({ "account": a })).await;
        assert!(matches!(status, 200 | 201 | 422), "{a:?}: {status} {body}");
        assert_eq!(account.is_match(a), status != 422, "account {a:?}: {body}");
        assert_eq!(path_account.is_match(a), account.is_match(a), "{a:?}");
    }

    let payout = |remarks: &str, occasion: Option<&str>, purpose: &str, amount: Value| {
        json!({"phone": "0708374149", "amount": amount, "purpose": purpose,
               "remarks": remarks, "occasion": occasion})
    };
    let remarks = pattern(&schema("CreatePayoutBody", "remarks"));
    let occasion = pattern(&schema("CreatePayoutBody", "occasion"));
    let purpose = pattern(&schema("CreatePayoutBody", "purpose"));
    for t in texts.iter().filter(|t| t.chars().count() <= 101) {
        let (status, body) = post("/api/v1/payouts", payout(t, None, "business", json!(10))).await;
        assert!(matches!(status, 202 | 422), "{t:?}: {status} {body}");
        assert_eq!(remarks.is_match(t), status == 202, "remarks {t:?}: {body}");
        let (status, body) = post(
            "/api/v1/payouts",
            payout("Rider", Some(t), "business", json!(10)),
        )
        .await;
        assert_eq!(
            occasion.is_match(t),
            status == 202,
            "occasion {t:?}: {body}"
        );
    }
    for p in ["business", " salary ", "promotion\n", "Salary", "gift", ""] {
        let (status, body) = post("/api/v1/payouts", payout("Rider", None, p, json!(10))).await;
        assert_eq!(purpose.is_match(p), status == 202, "purpose {p:?}: {body}");
    }
    // JSON Schema's integers include 500.0; so do the gateway's amounts.
    let (status, body) = post(
        "/api/v1/payouts",
        payout("Rider", None, "business", json!(500.0)),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["amount"], 500);
    let (status, body) = post(
        "/api/v1/payouts",
        payout("Rider", None, "business", json!(10.5)),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("amount")),
        "{body}"
    );
    gw.stop().await;
}
