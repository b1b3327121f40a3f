//! M-Pesa Express: STK Push, its outcome and callback, and STK Query.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use daraja::stk_password;
use daraja::wire::{
    StkCallback, StkPushRequest, StkPushResponse, StkQueryRequest, StkQueryResponse, WireCode,
};
use mpesa_domain::Cents;

use super::{admit, answer, held_back};
use crate::callback_sender::Outgoing;
use crate::config::{LongReferences, PendingQueryAnswer};
use crate::errors::ApiError;
use crate::faults::{CallbackFaults, Flow};
use crate::journal::CallbackKind;
use crate::ledger::{PaymentKind, PaymentRecord};
use crate::scenarios::{Resolution, StkOutcome};
use crate::state::{StkStatus, StkTransaction};
use crate::validation::{
    Fields, is_callback_url, is_shortcode, is_timestamp, json_object, msisdn, typed,
};
use crate::{Simulator, ids, lock};
use daraja::endpoint::Api;

pub(crate) async fn push(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(accept_push(&sim, &headers, &body).await)
}

pub(crate) async fn query(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The payment's `slow_query_ms`, when the body names one the simulator knows.
    let delay = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| Some(v.get("CheckoutRequestID")?.as_str()?.to_owned()))
        .and_then(|id| sim.stk_transaction(&id))
        .map_or(0, |tx| {
            lock(&sim.inner.faults)
                .for_flow(Flow::Stk, Some(&tx.phone))
                .slow_query_ms
        });
    held_back(answer(answer_query(&sim, &headers, &body)), delay)
}

/// The fields of a push, checked in Daraja's order.
struct PushFields {
    short_code: String,
    transaction_type: String,
    amount: i64,
    party_b: String,
    phone: mpesa_domain::Msisdn,
    callback_url: String,
    account_reference: String,
}

/// The documented limits (stk.md, "AccountReference and TransactionDesc").
const ACCOUNT_REFERENCE_MAX: usize = 12;
const TRANSACTION_DESC_MAX: usize = 13;
/// "The whole prompt text must stay under 182 characters or the callback fails with `1025`".
const PROMPT_MAX_CHARS: usize = 182;

fn check_push_fields(sim: &Simulator, f: &Fields) -> Result<PushFields, ApiError> {
    let invalid = ApiError::invalid_field;
    let config = sim.config();
    let short_code = f
        .text("BusinessShortCode")
        .filter(|s| is_shortcode(s))
        .ok_or_else(|| invalid("BusinessShortCode"))?;
    f.text("Password").ok_or_else(|| invalid("Password"))?;
    f.text("Timestamp")
        .filter(|t| is_timestamp(t) && timestamp_is_current(sim, t))
        .ok_or_else(|| invalid("Timestamp"))?;
    let transaction_type = f
        .text("TransactionType")
        .ok_or_else(|| invalid("TransactionType"))?;
    let amount = f
        .whole_amount("Amount", config.lenient_amounts)
        .filter(|a| *a <= config.max_amount)
        .ok_or_else(|| invalid("Amount"))?;
    f.text("PartyA")
        .and_then(|p| msisdn(&p))
        .ok_or_else(|| invalid("PartyA"))?;
    let party_b = f
        .text("PartyB")
        .filter(|p| is_shortcode(p))
        .ok_or_else(|| invalid("PartyB"))?;
    let phone = f
        .text("PhoneNumber")
        .and_then(|p| msisdn(&p))
        .ok_or_else(|| invalid("PhoneNumber"))?;
    let callback_url = f
        .text("CallBackURL")
        .filter(|u| is_callback_url(u, config.production()))
        .ok_or_else(|| invalid("CallBackURL"))?;
    let (reference_max, desc_max) = match config.long_references {
        LongReferences::Refuse => (ACCOUNT_REFERENCE_MAX, TRANSACTION_DESC_MAX),
        // Accepted: a prompt that grows too long fails later, with 1025.
        LongReferences::PromptLimit => (usize::MAX, usize::MAX),
    };
    let account_reference = f
        .bounded_text("AccountReference", 1, reference_max)
        .ok_or_else(|| invalid("AccountReference"))?;
    if f.has("TransactionDesc") && f.bounded_text("TransactionDesc", 1, desc_max).is_none() {
        return Err(invalid("TransactionDesc"));
    }
    Ok(PushFields {
        short_code,
        transaction_type,
        amount,
        party_b,
        phone,
        callback_url,
        account_reference,
    })
}

/// In the strict timestamp mode (`timestamp_max_skew`), a `Timestamp` must be within the skew
/// of East Africa Time now: a server that formats UTC is three hours off.
fn timestamp_is_current(sim: &Simulator, timestamp: &str) -> bool {
    let Some(max_skew) = sim.config().timestamp_max_skew else {
        return true;
    };
    let Some(at_ms) = daraja::parse_eat_timestamp(timestamp) else {
        return false;
    };
    let skew_ms = (sim.now().timestamp_millis() - at_ms).unsigned_abs();
    u128::from(skew_ms) <= max_skew.as_millis()
}

/// What the customer's phone would show; its template is the simulator's guess, its limit is
/// documented.
fn prompt_text(sim: &Simulator, short_code: &str, amount: i64, account_reference: &str) -> String {
    let name = sim
        .config()
        .shortcode(short_code)
        .map_or("TEST BUSINESS", |s| s.name.as_str());
    format!(
        "Do you want to pay KES {amount} to {name} for account {account_reference}? Enter your M-PESA PIN to confirm."
    )
}

/// Product assignment (stk.md, "TransactionType, paybill vs till"): a paybill push names the
/// paybill as `PartyB`; a Buy Goods push names a till of the store number. A wrong combination
/// is accepted and fails in the callback: `2028` for the paybill case, `SFC_IC0003` "The
/// operator does not exist." for a till that is not one.
fn product_assignment(sim: &Simulator, fields: &PushFields) -> Option<StkOutcome> {
    match fields.transaction_type.as_str() {
        "CustomerPayBillOnline" if fields.party_b == fields.short_code => None,
        "CustomerPayBillOnline" => Some(StkOutcome::not_permitted()),
        "CustomerBuyGoodsOnline" => {
            let is_till = sim
                .config()
                .shortcode(&fields.short_code)
                .is_some_and(|s| s.tills.contains(&fields.party_b));
            (!is_till).then(StkOutcome::operator_missing)
        }
        // Daraja accepts any TransactionType and fails the payment afterwards.
        _ => Some(StkOutcome::not_permitted()),
    }
}

/// Shortcode known, then `Password == base64(BusinessShortCode + Passkey + Timestamp)`.
fn check_merchant(
    sim: &Simulator,
    short_code: &str,
    password: &str,
    timestamp: &str,
) -> Result<(), ApiError> {
    let passkey = sim
        .config()
        .shortcode(short_code)
        .and_then(|s| s.passkey.as_deref())
        .ok_or_else(|| ApiError::merchant("Merchant does not exist"))?;
    if password != stk_password(short_code, passkey, timestamp) {
        return Err(ApiError::merchant("Wrong credentials"));
    }
    Ok(())
}

async fn accept_push(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    admit(sim, Api::StkPush, headers)?;
    let f = json_object(headers, body, || {
        ApiError::invalid_field("BusinessShortCode")
    })?;
    let fields = check_push_fields(sim, &f)?;
    let request: StkPushRequest = typed(body)?;
    check_merchant(
        sim,
        &fields.short_code,
        &request.password,
        request.timestamp.as_str(),
    )?;

    let config = sim.config();
    let phone = fields.phone.as_str().to_owned();
    let scenario = config.scenarios.lookup(&phone);
    let (scenario_outcome, scenario_resolution, scenario_faults, scenario_name) = match scenario {
        Some(s) => (
            s.outcome.clone(),
            s.resolution,
            s.callback.clone(),
            s.msisdn.clone(),
        ),
        None => (
            config.default_outcome.clone(),
            Resolution::AfterCallbackDelay,
            CallbackFaults::default(),
            "default".into(),
        ),
    };
    // Checks that fail the payment after it was accepted, before the customer could act.
    let refused_early = product_assignment(sim, &fields).or_else(|| {
        let prompt = prompt_text(
            sim,
            &fields.short_code,
            fields.amount,
            &fields.account_reference,
        );
        (prompt.chars().count() > PROMPT_MAX_CHARS).then(StkOutcome::push_failed)
    });
    let faults =
        scenario_faults.combine(&lock(&sim.inner.faults).for_flow(Flow::Stk, Some(&phone)));

    let merchant_request_id = sim.inner.ids.gateway_id();
    let (checkout_request_id, outcome, resolution) = {
        let mut stk = lock(&sim.inner.stk);
        if config.lock_subscriber && stk.open_prompt(&phone).is_some() {
            return Err(ApiError::merchant(
                "Unable to lock subscriber, a transaction is already in process for the current subscriber",
            ));
        }
        let limited = stk
            .note_push(&phone, fields.amount, sim.now(), config.rule_limit_window)
            .then(StkOutcome::rule_limited);
        let (outcome, resolution) = match refused_early.or(limited) {
            Some(o) => (o, Resolution::AfterCallbackDelay),
            None => (scenario_outcome, scenario_resolution),
        };
        // Two pushes in the same millisecond would share an id: take the next free millisecond.
        let mut at = sim.now();
        let mut id = ids::checkout_request_id(at, fields.phone.subscriber_number());
        while stk.transactions.contains(&id) {
            at += chrono::Duration::milliseconds(1);
            id = ids::checkout_request_id(at, fields.phone.subscriber_number());
        }
        stk.insert(
            StkTransaction {
                checkout_request_id: id.clone(),
                merchant_request_id: merchant_request_id.clone(),
                business_short_code: fields.short_code.clone(),
                party_b: fields.party_b.clone(),
                transaction_type: fields.transaction_type.clone(),
                phone: phone.clone(),
                amount: fields.amount,
                account_reference: fields.account_reference.clone(),
                callback_url: fields.callback_url.clone(),
                created_at: sim.now(),
                scenario: scenario_name.clone(),
                status: StkStatus::Pending,
            },
            config.lock_subscriber,
        );
        (id, outcome, resolution)
    };
    sim.notify();
    tracing::info!(
        checkout_request_id = %mpesa_domain::mask_checkout_request_id(&checkout_request_id),
        phone = %fields.phone.masked(),
        amount = fields.amount,
        scenario = %mpesa_domain::Msisdn::parse(&scenario_name).map(|m| m.masked()).unwrap_or_else(|_| scenario_name.to_string()),
        "STK push accepted"
    );

    let response = StkPushResponse::accepted(merchant_request_id, checkout_request_id.clone());
    if faults.before_sync_answer {
        // The callback reaches the receiver before the push is answered.
        let early = CallbackFaults {
            late: false,
            ..faults.clone()
        };
        settle_and_call_back(sim, &checkout_request_id, &outcome, &early).await;
    } else {
        let delay = match resolution {
            Resolution::AfterCallbackDelay => config.callback_delay,
            Resolution::AfterPromptTimeout => config.prompt_timeout,
        };
        let sim = sim.clone();
        let id = checkout_request_id.clone();
        let background_faults = faults.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            settle_and_call_back(&sim, &id, &outcome, &background_faults).await;
        });
    }
    Ok(held_back(Json(response), faults.slow_answer_ms))
}

/// Gives the push its outcome (receipt and ledger for a success), then sends the STK callback
/// and, if the shortcode has C2B URLs registered, the C2B confirmation of a success.
async fn settle_and_call_back(
    sim: &Simulator,
    checkout_request_id: &str,
    outcome: &StkOutcome,
    faults: &CallbackFaults,
) {
    let Some(tx) = settle(sim, checkout_request_id, outcome) else {
        return;
    };
    let callback = callback_body(&tx, outcome, faults);
    let body = serde_json::to_string(&callback).expect("an STK callback serializes");
    sim.deliver(
        Outgoing {
            kind: CallbackKind::StkCallback,
            url: tx.callback_url.clone(),
            reference: tx.checkout_request_id.clone(),
            body,
        },
        faults,
    )
    .await;
    if let Some(receipt) = tx.receipt() {
        super::c2b::confirm_stk_payment(sim, &tx, receipt, faults).await;
    }
}

/// Sets the outcome of a pending push, once. `None` if it is unknown (evicted) or already final.
fn settle(
    sim: &Simulator,
    checkout_request_id: &str,
    outcome: &StkOutcome,
) -> Option<StkTransaction> {
    let now = sim.now();
    let receipt = outcome.is_success().then(|| ids::receipt(now));
    let tx = {
        let mut stk = lock(&sim.inner.stk);
        let tx = stk
            .transactions
            .get_mut(&checkout_request_id.to_owned())
            .filter(|t| t.is_pending())?;
        tx.status = StkStatus::Final {
            result_code: outcome.result_code.clone(),
            result_desc: outcome.result_desc.clone(),
            receipt: receipt.clone(),
            completed_at: now,
        };
        let tx = tx.clone();
        stk.release(&tx.phone, &tx.checkout_request_id);
        tx
    };
    if let Some(receipt) = receipt {
        lock(&sim.inner.books).credit(PaymentRecord {
            receipt,
            kind: PaymentKind::Stk,
            short_code: tx.business_short_code.clone(),
            msisdn: tx.phone.clone(),
            amount: tx.amount,
            completed_at: now,
            originator_conversation_id: tx.merchant_request_id.clone(),
            conversation_id: tx.checkout_request_id.clone(),
            reference: Some(tx.account_reference.clone()),
            reversed_by: None,
            original_receipt: None,
            buy_goods: tx.transaction_type == "CustomerBuyGoodsOnline",
        });
    }
    sim.notify();
    tracing::info!(
        checkout_request_id = %mpesa_domain::mask_checkout_request_id(&tx.checkout_request_id),
        result_code = %outcome.result_code,
        "STK push settled"
    );
    Some(tx)
}

/// The callback exactly as Safaricom shapes it (`daraja::wire`).
fn callback_body(
    tx: &StkTransaction,
    outcome: &StkOutcome,
    faults: &CallbackFaults,
) -> StkCallback {
    let code = match outcome.result_code.parse::<i64>() {
        Ok(n) if !faults.string_result_code => WireCode::number(n),
        _ => WireCode::text(outcome.result_code.clone()),
    };
    match &tx.status {
        StkStatus::Final {
            receipt: Some(receipt),
            completed_at,
            ..
        } => {
            let mut callback = StkCallback::success(
                tx.merchant_request_id.clone(),
                tx.checkout_request_id.clone(),
                Cents(tx.amount * 100),
                receipt,
                &ids::eat_timestamp(*completed_at),
                &tx.phone,
            );
            callback.body.stk_callback.result_code = code;
            callback
        }
        _ => StkCallback::failure(
            tx.merchant_request_id.clone(),
            tx.checkout_request_id.clone(),
            code,
            outcome.result_desc.clone(),
        ),
    }
}

fn answer_query(sim: &Simulator, headers: &HeaderMap, body: &Bytes) -> Result<Response, ApiError> {
    admit(sim, Api::StkQuery, headers)?;
    let f = json_object(headers, body, || {
        ApiError::invalid_field("BusinessShortCode")
    })?;
    let invalid = ApiError::invalid_field;
    let short_code = f
        .text("BusinessShortCode")
        .filter(|s| is_shortcode(s))
        .ok_or_else(|| invalid("BusinessShortCode"))?;
    f.text("Password").ok_or_else(|| invalid("Password"))?;
    f.text("Timestamp")
        .filter(|t| is_timestamp(t) && timestamp_is_current(sim, t))
        .ok_or_else(|| invalid("Timestamp"))?;
    f.text("CheckoutRequestID")
        .ok_or_else(|| invalid("CheckoutRequestID"))?;
    let request: StkQueryRequest = typed(body)?;
    check_merchant(
        sim,
        &short_code,
        &request.password,
        request.timestamp.as_str(),
    )?;

    let tx = sim
        .stk_transaction(&request.checkout_request_id)
        .filter(|t| t.business_short_code == short_code);
    let Some(tx) = tx else {
        return Err(ApiError::merchant("The transaction does not Exist"));
    };
    match &tx.status {
        StkStatus::Pending => match sim.config().pending_query_answer {
            PendingQueryAnswer::BeingProcessed => {
                Err(ApiError::merchant("The transaction is being processed"))
            }
            PendingQueryAnswer::ResultCode4999 => Ok(Json(StkQueryResponse::with_result(
                tx.merchant_request_id.clone(),
                tx.checkout_request_id.clone(),
                "4999",
                "The transaction is still under processing",
            ))
            .into_response()),
        },
        StkStatus::Final {
            result_code,
            result_desc,
            ..
        } => Ok(Json(StkQueryResponse::with_result(
            tx.merchant_request_id.clone(),
            tx.checkout_request_id.clone(),
            result_code,
            result_desc.clone(),
        ))
        .into_response()),
    }
}
