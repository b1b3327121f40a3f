//! `/simulator/…` controls a person or a test uses to play the customer and the operator: pay a
//! paybill or till (JSON, or the form on `/simulator/pay`), switch C2B external validation and
//! `MSISDN` forms, set balances.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use mpesa_domain::{Cents, escape_html as escape};
use serde::Deserialize;
use serde_json::json;

use super::c2b::{C2bStatus, CustomerPayment, check_payment};
use crate::config::C2bMsisdnModes;
use crate::ledger::Balances;
use crate::{Simulator, lock};

fn unprocessable(message: impl Into<String>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"error": message.into()})),
    )
        .into_response()
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// `POST /simulator/c2b/pay`: a customer pays now. JSON (a [`CustomerPayment`]) answers JSON
/// (a [`crate::C2bOutcome`]); the page's form answers a page.
pub(crate) async fn pay(
    State(sim): State<Simulator>,
    OriginalUri(original): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if is_form(&headers) {
        let page = match payment_from_form(&body) {
            Ok(payment) => match check_payment(&sim, &payment) {
                Ok(phone) => {
                    let outcome = sim
                        .pay_c2b(CustomerPayment { phone, ..payment })
                        .await
                        .map_err(|e| e.to_string());
                    match outcome {
                        Ok(o) => {
                            let status = match &o.status {
                                C2bStatus::Completed => "completed".to_owned(),
                                C2bStatus::Rejected { result_code } => {
                                    format!("rejected by validation ({result_code})")
                                }
                                C2bStatus::Cancelled => {
                                    "cancelled (validation did not answer in time)".to_owned()
                                }
                            };
                            format!(
                                "<p>Paid KES {} to {}: receipt <strong id=\"receipt\">{}</strong>, {}.</p>",
                                o.amount,
                                escape(&o.short_code),
                                escape(&o.trans_id),
                                escape(&status)
                            )
                        }
                        Err(e) => format!("<p class=\"error\">{}</p>", escape(&e)),
                    }
                }
                Err(e) => format!("<p class=\"error\">{}</p>", escape(&e)),
            },
            Err(e) => format!("<p class=\"error\">{}</p>", escape(&e)),
        };
        return Html(page_html(&sim, original.path(), &page)).into_response();
    }
    let payment: CustomerPayment = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return unprocessable(format!("not a payment: {e}")),
    };
    match sim.pay_c2b(payment).await {
        Ok(outcome) => Json(outcome).into_response(),
        Err(e) => unprocessable(e.to_string()),
    }
}

fn payment_from_form(body: &[u8]) -> Result<CustomerPayment, String> {
    let mut payment = CustomerPayment::paybill(crate::config::SANDBOX_C2B_SHORTCODE, "", 0);
    payment.account = None;
    for (key, value) in url::form_urlencoded::parse(body) {
        let value = value.trim().to_owned();
        match key.as_ref() {
            "short_code" if !value.is_empty() => payment.short_code = value,
            "phone" if !value.is_empty() => payment.phone = value,
            "account" if !value.is_empty() => payment.account = Some(value),
            "amount" => {
                payment.amount = value
                    .parse()
                    .map_err(|_| "amount must be a whole number of shillings".to_owned())?;
            }
            "till" => payment.till = value == "on" || value == "true",
            _ => {}
        }
    }
    Ok(payment)
}

/// `GET /simulator/pay`: a page where a person pays the paybill or a till as a customer.
pub(crate) async fn pay_page(
    State(sim): State<Simulator>,
    OriginalUri(original): OriginalUri,
) -> Html<String> {
    let action = format!("{}/c2b/pay", original.path().trim_end_matches("/pay"));
    Html(page_html(&sim, &action, ""))
}

/// The page; `action` is the full path of `/simulator/c2b/pay` under whatever prefix the
/// simulator is nested (`/sandbox` in `serve --sandbox`).
fn page_html(sim: &Simulator, action: &str, message: &str) -> String {
    let overview = escape(action.trim_end_matches("/c2b/pay"));
    let action = escape(action);
    let registrations: String = sim
        .c2b_registrations()
        .iter()
        .map(|r| {
            format!(
                "<li>{} ({:?}): confirmations to {}{}</li>",
                escape(&r.short_code),
                r.version,
                // The origin only: a gateway's callback path carries its secret.
                escape(&daraja::redact::url_origin(&r.confirmation_url)),
                if sim.c2b_validation(&r.short_code) {
                    ", validated first"
                } else {
                    ""
                }
            )
        })
        .collect();
    let registrations = if registrations.is_empty() {
        "<li>none yet: register with C2B Register URL (the gateway does it by itself)</li>".into()
    } else {
        registrations
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Daraja simulator: pay as a customer</title>
<style>body{{font-family:sans-serif;max-width:40rem;margin:2rem auto}}label{{display:block;margin:.5rem 0}}.error{{color:#a00}}</style>
</head><body>
<h1>Pay as a customer</h1>
<p>What a customer does in the M-Pesa menu: Lipa na M-Pesa, pay bill (with an account number) or buy goods (a till).</p>
{message}
<form method="post" action="{action}">
<label>Paybill or till <input name="short_code" value="600000" inputmode="numeric"></label>
<label>Account number <input name="account" value="ACC1"></label>
<label>Amount (KES) <input name="amount" value="100" inputmode="numeric"></label>
<label>Phone <input name="phone" value="254708374149"></label>
<label><input type="checkbox" name="till"> Buy goods (a till: no account number)</label>
<button type="submit" id="pay">Pay</button>
</form>
<h2>Registered C2B URLs</h2><ul>{registrations}</ul>
<p><a href="{overview}">Simulator overview (JSON)</a></p>
</body></html>"#
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct C2bSettings {
    /// Shortcode → external validation on/off.
    #[serde(default)]
    validation: std::collections::BTreeMap<String, bool>,
    #[serde(default)]
    msisdn: Option<C2bMsisdnModes>,
}

/// `GET /simulator/c2b`: registrations, validation per shortcode, `MSISDN` forms, Pull.
pub(crate) async fn c2b_settings(State(sim): State<Simulator>) -> Json<serde_json::Value> {
    // (One lock at a time: `c2b_registrations` and `c2b_validation` take it too.)
    let switched: Vec<String> = lock(&sim.inner.c2b).validation.keys().cloned().collect();
    let mut codes: Vec<String> = sim
        .config()
        .shortcodes
        .iter()
        .map(|s| s.shortcode.clone())
        .chain(switched)
        .chain(sim.c2b_registrations().into_iter().map(|r| r.short_code))
        .collect();
    codes.sort();
    codes.dedup();
    let validation: serde_json::Map<String, serde_json::Value> = codes
        .into_iter()
        .map(|c| {
            let on = sim.c2b_validation(&c);
            (c, json!(on))
        })
        .collect();
    Json(json!({
        "registrations": sim.c2b_registrations(),
        "validation": validation,
        "msisdn": sim.c2b_msisdn(),
        "pull_registrations": sim.pull_registrations(),
    }))
}

/// `POST /simulator/c2b`: `{"validation": {"600000": true}, "msisdn": {"v1": "sha256",
/// "v2": "masked"}}` (each part optional).
pub(crate) async fn set_c2b_settings(State(sim): State<Simulator>, body: Bytes) -> Response {
    let settings: C2bSettings = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return unprocessable(format!("not C2B settings: {e}")),
    };
    for (code, on) in settings.validation {
        if !crate::validation::is_shortcode(&code) {
            return unprocessable(format!("{code:?} is not a shortcode"));
        }
        sim.set_c2b_validation(&code, on);
    }
    if let Some(modes) = settings.msisdn {
        sim.set_c2b_msisdn(modes);
    }
    c2b_settings(State(sim)).await.into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BalanceSetting {
    short_code: String,
    /// Whole shillings.
    utility: i64,
    #[serde(default)]
    working: i64,
    #[serde(default)]
    charges_paid: i64,
}

/// `POST /simulator/balances`: `{"short_code": "600000", "utility": 5}` (shillings).
pub(crate) async fn set_balances(State(sim): State<Simulator>, body: Bytes) -> Response {
    let b: BalanceSetting = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return unprocessable(format!("not a balance: {e}")),
    };
    if !crate::validation::is_shortcode(&b.short_code) {
        return unprocessable(format!("{:?} is not a shortcode", b.short_code));
    }
    let balances = Balances {
        working: Cents(b.working * 100),
        utility: Cents(b.utility * 100),
        charges_paid: Cents(b.charges_paid * 100),
    };
    sim.set_balances(&b.short_code, balances);
    Json(json!({"short_code": b.short_code, "balances": balances})).into_response()
}
