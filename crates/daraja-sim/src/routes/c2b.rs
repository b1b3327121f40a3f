//! C2B: Register URL (v1, v2), simulate (v1, v2), and the validation and confirmation calls a
//! payment makes to the registered URLs.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use daraja::wire::{
    C2bPayment, C2bResponse, C2bSimulateRequest, C2bValidationAnswer, LooseString,
    RegisterUrlRequest, WireValue,
};
use mpesa_domain::Cents;
use sha2::{Digest, Sha256};

use super::{admit, answer};
use crate::callbacks::{Outgoing, PostOutcome};
use crate::config::MsisdnMode;
use crate::errors::ApiError;
use crate::faults::{CallbackFaults, Endpoint};
use crate::journal::{CallbackKind, DeliveryOutcome};
use crate::ledger::{PaymentKind, PaymentRecord};
use crate::state::{C2bApiVersion, C2bRegistration, StkTransaction};
use crate::validation::{is_callback_url, is_shortcode, json_object, msisdn, typed};
use crate::{Simulator, ids, lock};

const COMMANDS: [&str; 2] = ["CustomerPayBillOnline", "CustomerBuyGoodsOnline"];

pub(crate) async fn register_v1(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(register(&sim, &headers, &body, C2bApiVersion::V1))
}

pub(crate) async fn register_v2(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(register(&sim, &headers, &body, C2bApiVersion::V2))
}

pub(crate) async fn simulate_v1(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(simulate(&sim, &headers, &body, C2bApiVersion::V1))
}

pub(crate) async fn simulate_v2(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(simulate(&sim, &headers, &body, C2bApiVersion::V2))
}

fn register(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &Bytes,
    version: C2bApiVersion,
) -> Result<Response, ApiError> {
    admit(sim, Endpoint::C2bRegisterUrl, headers)?;
    let f = json_object(headers, body, ApiError::c2b_bad_request)?;
    let production = sim.config().production();
    let short_code = f
        .text("ShortCode")
        .filter(|s| is_shortcode(s))
        .ok_or_else(ApiError::c2b_bad_request)?;
    // Exactly `Completed` or `Cancelled`: sentence case, correctly spelt.
    f.text("ResponseType")
        .filter(|t| t == "Completed" || t == "Cancelled")
        .ok_or_else(ApiError::c2b_bad_request)?;
    f.text("ConfirmationURL")
        .filter(|u| is_callback_url(u, production))
        .ok_or_else(ApiError::c2b_bad_request)?;
    f.text("ValidationURL")
        .filter(|u| is_callback_url(u, production))
        .ok_or_else(ApiError::c2b_bad_request)?;
    let request: RegisterUrlRequest = typed(body)?;

    if sim.config().shortcode(&short_code).is_some_and(|s| !s.c2b) {
        // What the sandbox answers for its STK-only shortcode 174379.
        return Err(ApiError::apigee_fault(
            "Execution of ServiceCallout SCO-AddURLVault failed. Reason: ResponseCode 409 is treated as error",
        ));
    }
    {
        let mut c2b = lock(&sim.inner.c2b);
        if production && c2b.get(&short_code, version).is_some() {
            return Err(ApiError::new(
                500,
                "500.003.1001",
                "Urls are already registered.",
            ));
        }
        c2b.put(C2bRegistration {
            short_code: short_code.clone(),
            version,
            response_type: request.response_type,
            confirmation_url: request.confirmation_url,
            validation_url: request.validation_url,
            registered_at: sim.now(),
        });
    }
    sim.notify();
    tracing::info!(short_code = %short_code, ?version, "C2B URLs registered");
    Ok(Json(C2bResponse::accepted(sim.inner.ids.gateway_id(), "Success")).into_response())
}

fn simulate(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &Bytes,
    version: C2bApiVersion,
) -> Result<Response, ApiError> {
    if sim.config().production() {
        // "Simulation is not supported" in production: the endpoint does not exist there.
        return Err(ApiError::new(404, "404.003.01", "Resource not found"));
    }
    admit(sim, Endpoint::C2bSimulate, headers)?;
    let f = json_object(headers, body, || ApiError::invalid_field("ShortCode"))?;
    let invalid = ApiError::invalid_field;
    let short_code = f
        .text("ShortCode")
        .filter(|s| is_shortcode(s))
        .ok_or_else(|| invalid("ShortCode"))?;
    let command = f
        .text("CommandID")
        .filter(|c| COMMANDS.contains(&c.as_str()))
        .ok_or_else(|| invalid("CommandID"))?;
    let amount = f
        .whole_amount("Amount", sim.config().lenient_amounts)
        .filter(|a| *a <= sim.config().max_amount)
        .ok_or_else(|| invalid("Amount"))?;
    let payer = f
        .text("Msisdn")
        .and_then(|m| msisdn(&m))
        .ok_or_else(|| invalid("Msisdn"))?;
    // Up to 20 characters; empty or null for Buy Goods.
    if f.text("BillRefNumber")
        .is_some_and(|b| b.chars().count() > 20)
    {
        return Err(invalid("BillRefNumber"));
    }
    let request: C2bSimulateRequest = typed(body)?;
    let payment = IncomingPayment {
        short_code,
        buy_goods: command == "CustomerBuyGoodsOnline",
        amount,
        payer: payer.as_str().to_owned(),
        bill_ref_number: request.bill_ref_number.unwrap_or_default(),
        version: Some(version),
    };
    let faults = lock(&sim.inner.faults).for_number(payer.as_str());
    tracing::info!(short_code = %payment.short_code, phone = %payer.masked(), amount, "C2B payment simulated");
    let background = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(background.config().callback_delay).await;
        receive_payment(&background, payment, &faults).await;
    });
    Ok(Json(C2bResponse::accepted(
        sim.inner.ids.gateway_id(),
        "Accept the service request successfully.",
    ))
    .into_response())
}

/// A customer payment to a shortcode.
struct IncomingPayment {
    short_code: String,
    buy_goods: bool,
    amount: i64,
    payer: String,
    bill_ref_number: String,
    version: Option<C2bApiVersion>,
}

/// Validation (when enabled, with its deadline and `ResponseType` fallback), booking, then the
/// confirmation.
async fn receive_payment(sim: &Simulator, payment: IncomingPayment, faults: &CallbackFaults) {
    let now = sim.now();
    let receipt = ids::receipt(now);
    let registration = lock(&sim.inner.c2b).for_payment(&payment.short_code, payment.version);
    let validation = sim
        .config()
        .shortcode(&payment.short_code)
        .is_some_and(|s| s.external_validation);
    let mut third_party_trans_id = String::new();
    if let (Some(reg), true) = (&registration, validation) {
        let body = payment_body(sim, &payment, reg.version, &receipt, now, None, "", faults);
        match validate(sim, reg, &receipt, &body).await {
            Validation::Accepted { reference } => third_party_trans_id = reference,
            Validation::Rejected => return,
            Validation::NoAnswer if reg.response_type == "Completed" => {}
            Validation::NoAnswer => {
                tracing::info!(trans_id = %receipt, "C2B validation unanswered; ResponseType Cancelled cancels the payment");
                return;
            }
        }
    }
    let balances = lock(&sim.inner.books).credit(PaymentRecord {
        receipt: receipt.clone(),
        kind: PaymentKind::C2b,
        short_code: payment.short_code.clone(),
        msisdn: payment.payer.clone(),
        amount: payment.amount,
        completed_at: now,
        originator_conversation_id: sim.inner.ids.gateway_id(),
        conversation_id: ids::conversation_id(now),
        reference: Some(payment.bill_ref_number.clone()),
        reversed_by: None,
        original_receipt: None,
    });
    sim.notify();
    let Some(reg) = registration else {
        tracing::info!(trans_id = %receipt, "C2B payment completed; no URLs registered, nobody notified");
        return;
    };
    let body = payment_body(
        sim,
        &payment,
        reg.version,
        &receipt,
        now,
        Some(balances.utility),
        &third_party_trans_id,
        faults,
    );
    let body = serde_json::to_string(&body).expect("a C2B payment serializes");
    sim.deliver(
        Outgoing {
            kind: CallbackKind::C2bConfirmation,
            url: reg.confirmation_url.clone(),
            reference: receipt,
            body,
        },
        faults,
    )
    .await;
}

enum Validation {
    Accepted { reference: String },
    Rejected,
    NoAnswer,
}

/// Asks the ValidationURL, waiting at most the deadline (about 8 s at Safaricom).
async fn validate(
    sim: &Simulator,
    reg: &C2bRegistration,
    receipt: &str,
    body: &C2bPayment,
) -> Validation {
    let out = Outgoing {
        kind: CallbackKind::C2bValidation,
        url: reg.validation_url.clone(),
        reference: receipt.to_owned(),
        body: serde_json::to_string(body).expect("a C2B payment serializes"),
    };
    match sim
        .post_json(&out.url, &out.body, sim.config().c2b_validation_deadline)
        .await
    {
        PostOutcome::Answered { status, body } => {
            let outcome = if (200..300).contains(&status) {
                DeliveryOutcome::Delivered
            } else {
                DeliveryOutcome::Rejected
            };
            sim.record_callback(&out, 1, outcome, Some(status), None, Some(&body));
            match serde_json::from_slice::<C2bValidationAnswer>(&body) {
                Ok(a) if (200..300).contains(&status) && a.is_accepted() => Validation::Accepted {
                    reference: a.third_party_trans_id.unwrap_or_default(),
                },
                Ok(a) if (200..300).contains(&status) => {
                    tracing::info!(trans_id = %receipt, code = %a.result_code, "C2B payment rejected by validation");
                    Validation::Rejected
                }
                _ => Validation::NoAnswer,
            }
        }
        PostOutcome::Failed(error) => {
            sim.record_callback(&out, 1, DeliveryOutcome::Failed, None, Some(error), None);
            Validation::NoAnswer
        }
    }
}

/// The validation / confirmation body (`daraja::wire::C2bPayment`).
#[allow(clippy::too_many_arguments)]
fn payment_body(
    sim: &Simulator,
    payment: &IncomingPayment,
    version: C2bApiVersion,
    receipt: &str,
    at: chrono::DateTime<chrono::Utc>,
    balance_after: Option<Cents>,
    third_party_trans_id: &str,
    faults: &CallbackFaults,
) -> C2bPayment {
    let mode = match version {
        C2bApiVersion::V1 => sim.config().c2b_msisdn.v1,
        C2bApiVersion::V2 => sim.config().c2b_msisdn.v2,
    };
    let name = |n: &str| (!faults.omit_c2b_names).then(|| n.to_owned());
    C2bPayment {
        transaction_type: if payment.buy_goods {
            "Buy Goods"
        } else {
            "Pay Bill"
        }
        .into(),
        trans_id: receipt.to_owned(),
        trans_time: LooseString(ids::eat_timestamp(at)),
        trans_amount: WireValue::string(&Cents(payment.amount * 100).to_string()),
        business_short_code: LooseString(payment.short_code.clone()),
        bill_ref_number: Some(payment.bill_ref_number.clone()),
        invoice_number: Some(String::new()),
        org_account_balance: Some(WireValue::string(
            &balance_after.map(|c| c.to_string()).unwrap_or_default(),
        )),
        third_party_trans_id: Some(third_party_trans_id.to_owned()),
        msisdn: LooseString(reported_msisdn(&payment.payer, mode)),
        first_name: Some("JOHN".into()),
        middle_name: name(""),
        last_name: name(""),
    }
}

/// `MSISDN` as the C2B API version reports it.
pub(crate) fn reported_msisdn(phone: &str, mode: MsisdnMode) -> String {
    match mode {
        MsisdnMode::Full => phone.to_owned(),
        MsisdnMode::Masked => format!("{} ***** {}", &phone[..4], &phone[phone.len() - 3..]),
        MsisdnMode::Sha256 => hex::encode(Sha256::digest(phone.as_bytes())),
    }
}

/// An STK payment to a shortcode with C2B URLs also produces a C2B confirmation: the same
/// receipt, `BillRefNumber` = `AccountReference`.
pub(crate) async fn confirm_stk_payment(
    sim: &Simulator,
    tx: &StkTransaction,
    receipt: &str,
    faults: &CallbackFaults,
) {
    let Some(reg) = lock(&sim.inner.c2b).for_payment(&tx.business_short_code, None) else {
        return;
    };
    let completed_at = sim
        .payment(receipt)
        .map_or_else(|| sim.now(), |p| p.completed_at);
    let payment = IncomingPayment {
        short_code: tx.business_short_code.clone(),
        buy_goods: tx.transaction_type == "CustomerBuyGoodsOnline",
        amount: tx.amount,
        payer: tx.phone.clone(),
        bill_ref_number: tx.account_reference.clone(),
        version: Some(reg.version),
    };
    let balance = sim.balances(&tx.business_short_code).utility;
    let body = payment_body(
        sim,
        &payment,
        reg.version,
        receipt,
        completed_at,
        Some(balance),
        "",
        faults,
    );
    let body = serde_json::to_string(&body).expect("a C2B payment serializes");
    sim.deliver(
        Outgoing {
            kind: CallbackKind::C2bConfirmation,
            url: reg.confirmation_url,
            reference: receipt.to_owned(),
            body,
        },
        faults,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msisdn_forms() {
        assert_eq!(
            reported_msisdn("254708374149", MsisdnMode::Masked),
            "2547 ***** 149"
        );
        assert_eq!(
            reported_msisdn("254708374149", MsisdnMode::Full),
            "254708374149"
        );
        let hash = reported_msisdn("254708374149", MsisdnMode::Sha256);
        assert_eq!(hash.len(), 64);
        let m = mpesa_domain::Msisdn::parse("254708374149").unwrap();
        assert_eq!(m.matches_reported(&hash), Some(true));
        assert_eq!(
            m.matches_reported(&reported_msisdn("254708374149", MsisdnMode::Masked)),
            Some(true)
        );
    }
}
