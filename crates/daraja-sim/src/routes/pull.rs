//! Pull Transactions (`shared/daraja/c2b.md`, "Pull Transactions"): register a shortcode once,
//! then list what it received in a date window, page by page (`OffSetValue`). The list comes
//! from the simulator's books, so it includes payments whose confirmation was suppressed.
//!
//! Safaricom's own sandbox refuses Pull for test apps (invalid token); the simulator serves it
//! so that recovery can be tested.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use daraja::wire::pull::{PULL_ALREADY_OR_EMPTY, PULL_DATE_FORMAT, PULL_SUCCESS};
use daraja::wire::{
    LooseString, PullQueryResponse, PullRegisterRequest, PullRegisterResponse, PullTransaction,
    WireValue,
};
use mpesa_domain::Cents;

use super::{admit, answer};
use crate::errors::ApiError;
use crate::ledger::PaymentKind;
use crate::state::PullRegistration;
use crate::validation::{is_callback_url, is_shortcode, json_object, msisdn, typed};
use crate::{Simulator, ids, lock};
use daraja::endpoint::Api;

pub(crate) async fn register(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(accept_register(&sim, &headers, &body))
}

pub(crate) async fn query(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(answer_query(&sim, &headers, &body))
}

fn accept_register(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    admit(sim, Api::PullRegister, headers)?;
    let f = json_object(headers, body, || ApiError::invalid_field("ShortCode"))?;
    let invalid = ApiError::invalid_field;
    let short_code = f
        .text("ShortCode")
        .filter(|s| is_shortcode(s))
        .ok_or_else(|| invalid("ShortCode"))?;
    f.text("RequestType")
        .filter(|t| t == "Pull")
        .ok_or_else(|| invalid("RequestType"))?;
    let nominated = f
        .text("NominatedNumber")
        .and_then(|n| msisdn(&n))
        .ok_or_else(|| invalid("NominatedNumber"))?;
    f.text("CallBackURL")
        .filter(|u| is_callback_url(u, sim.config().production()))
        .ok_or_else(|| invalid("CallBackURL"))?;
    let request: PullRegisterRequest = typed(body)?;
    let already = {
        let mut c2b = lock(&sim.inner.c2b);
        let already = c2b.pull.contains_key(&short_code);
        if !already {
            c2b.pull.insert(
                short_code.clone(),
                PullRegistration {
                    short_code: short_code.clone(),
                    nominated_number: nominated.as_str().to_owned(),
                    callback_url: request.callback_url,
                    registered_at: sim.now(),
                },
            );
        }
        already
    };
    sim.notify();
    let (status, description) = if already {
        (PULL_ALREADY_OR_EMPTY, "ShortCode already Registered")
    } else {
        (PULL_SUCCESS, "Shortcode Registered Successfully")
    };
    Ok(Json(PullRegisterResponse {
        response_ref_id: sim.inner.ids.gateway_id(),
        response_status: LooseString::from(status),
        short_code: LooseString(short_code),
        response_description: description.into(),
    })
    .into_response())
}

/// `YYYY-MM-DD HH:mm:ss` in East Africa Time.
fn eat_date(text: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), PULL_DATE_FORMAT).ok()?;
    naive
        .and_local_timezone(daraja::clock::eat())
        .single()
        .map(|d| d.with_timezone(&Utc))
}

fn answer_query(sim: &Simulator, headers: &HeaderMap, body: &Bytes) -> Result<Response, ApiError> {
    admit(sim, Api::PullQuery, headers)?;
    let f = json_object(headers, body, || ApiError::invalid_field("ShortCode"))?;
    let invalid = ApiError::invalid_field;
    let short_code = f
        .text("ShortCode")
        .filter(|s| is_shortcode(s))
        .ok_or_else(|| invalid("ShortCode"))?;
    let start = f
        .text("StartDate")
        .and_then(|d| eat_date(&d))
        .ok_or_else(|| invalid("StartDate"))?;
    let end = f
        .text("EndDate")
        .and_then(|d| eat_date(&d))
        .filter(|e| *e >= start)
        .ok_or_else(|| invalid("EndDate"))?;
    let offset = f
        .text("OffSetValue")
        .and_then(|o| o.parse::<usize>().ok())
        .ok_or_else(|| invalid("OffSetValue"))?;
    if !lock(&sim.inner.c2b).pull.contains_key(&short_code) {
        // What a 2026 sandbox log saw for an app not registered for Pull (oauth.md).
        return Err(ApiError::new(401, "401.001", "Invalid Access Token"));
    }
    let name = sim
        .config()
        .shortcode(&short_code)
        .map_or("TEST BUSINESS", |s| s.name.as_str())
        .to_owned();
    let page: Vec<PullTransaction> = {
        let books = lock(&sim.inner.books);
        let mut received: Vec<_> = books
            .payments
            .values_in_order()
            .filter(|p| matches!(p.kind, PaymentKind::Stk | PaymentKind::C2b))
            .filter(|p| p.short_code == short_code)
            .filter(|p| p.completed_at >= start && p.completed_at <= end)
            .collect();
        received.sort_by_key(|p| p.completed_at);
        received
            .into_iter()
            .skip(offset)
            .take(sim.config().pull_page_size.max(1))
            .map(|p| PullTransaction {
                transaction_id: p.receipt.clone(),
                trx_date: p.completed_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                msisdn: LooseString(p.msisdn.clone()),
                sender: Some("MPESA".into()),
                transaction_type: if p.buy_goods {
                    "c2b-buy-goods-debit"
                } else {
                    "c2b-pay-bill-debit"
                }
                .into(),
                bill_reference: p.reference.clone().unwrap_or_default(),
                amount: WireValue::string(&Cents(p.amount * 100).to_string()),
                organization_name: name.clone(),
            })
            .collect()
    };
    let (code, message) = if page.is_empty() {
        (PULL_ALREADY_OR_EMPTY, "No transactions found")
    } else {
        (PULL_SUCCESS, "Success")
    };
    Ok(Json(PullQueryResponse {
        response_ref_id: ids::request_id(),
        response_code: LooseString::from(code),
        response_message: message.into(),
        response: vec![page],
    })
    .into_response())
}
