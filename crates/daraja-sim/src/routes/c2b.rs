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
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{admit, answer};
use crate::callback_sender::{Outgoing, PostOutcome};
use crate::config::{C2bMsisdnModes, MsisdnMode};
use crate::errors::ApiError;
use crate::errors::SimError;
use crate::faults::{CallbackFaults, Flow};
use crate::journal::{CallbackKind, DeliveryOutcome};
use crate::ledger::{PaymentKind, PaymentRecord};
use crate::state::{C2bApiVersion, C2bRegistration, PullRegistration, StkTransaction};
use crate::validation::{is_callback_url, is_shortcode, json_object, msisdn, typed};
use crate::{Simulator, ids, lock};
use daraja::endpoint::Api;

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
    admit(sim, Api::C2bRegisterUrl, headers)?;
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
    admit(sim, Api::C2bSimulate, headers)?;
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
    let payment = CustomerPayment {
        short_code,
        phone: payer.as_str().to_owned(),
        amount,
        account: request.bill_ref_number,
        till: command == "CustomerBuyGoodsOnline",
        version: Some(version),
        first_name: None,
        faults: CallbackFaults::default(),
    };
    tracing::info!(short_code = %payment.short_code, phone = %payer.masked(), amount, "C2B payment simulated");
    let background = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(background.config().callback_delay).await;
        receive_payment(&background, payment).await;
    });
    Ok(Json(C2bResponse::accepted(
        sim.inner.ids.gateway_id(),
        "Accept the service request successfully.",
    ))
    .into_response())
}

/// A customer paying a paybill (with an account number) or a till (without), as from the
/// M-Pesa menu. What C2B simulate does, and what tests inject with
/// [`Simulator::pay_c2b`] or `POST /simulator/c2b/pay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerPayment {
    /// The paybill or till paid (default `600000`).
    #[serde(default = "default_c2b_short_code")]
    pub short_code: String,
    /// The payer, in any form `Msisdn` accepts (default Safaricom's test number).
    #[serde(default = "default_payer")]
    pub phone: String,
    /// Whole shillings.
    pub amount: i64,
    /// The account number typed for a paybill (`BillRefNumber`); ignored for a till.
    #[serde(default)]
    pub account: Option<String>,
    /// A Buy Goods payment to a till (`"Buy Goods"`, empty `BillRefNumber`).
    #[serde(default)]
    pub till: bool,
    /// Which registration notifies (its version decides the `MSISDN` form); default: the
    /// latest registration of the shortcode.
    #[serde(default)]
    pub version: Option<C2bApiVersion>,
    /// `FirstName` as M-Pesa reports it (default `JOHN`): any text, hostile included.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Faults for this payment only, on top of the global, number and `c2b` ones.
    #[serde(default)]
    pub faults: CallbackFaults,
}

fn default_c2b_short_code() -> String {
    crate::config::SANDBOX_C2B_SHORTCODE.to_owned()
}

fn default_payer() -> String {
    crate::scenarios::SUCCESS_NUMBER.to_owned()
}

impl CustomerPayment {
    /// A paybill payment of `amount` shillings to `short_code` with account `account`, from
    /// Safaricom's test number.
    pub fn paybill(short_code: impl Into<String>, account: impl Into<String>, amount: i64) -> Self {
        CustomerPayment {
            short_code: short_code.into(),
            phone: default_payer(),
            amount,
            account: Some(account.into()),
            till: false,
            version: None,
            first_name: None,
            faults: CallbackFaults::default(),
        }
    }

    /// A Buy Goods payment of `amount` shillings to the till `till`.
    pub fn till(till: impl Into<String>, amount: i64) -> Self {
        CustomerPayment {
            account: None,
            till: true,
            ..Self::paybill(till, "", amount)
        }
    }

    /// From another phone number.
    pub fn from_phone(mut self, phone: impl Into<String>) -> Self {
        self.phone = phone.into();
        self
    }

    /// With faults for this payment only (e.g. `suppress` to lose its confirmation).
    pub fn with_faults(mut self, faults: CallbackFaults) -> Self {
        self.faults = faults;
        self
    }
}

/// What became of a customer payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct C2bOutcome {
    /// The receipt (`TransID`); also set when validation refused the payment (the validation
    /// request carried it).
    pub trans_id: String,
    pub short_code: String,
    pub amount: i64,
    #[serde(flatten)]
    pub status: C2bStatus,
    /// What the validation answer attached, echoed in the confirmation.
    pub third_party_trans_id: String,
}

/// The end of a customer payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum C2bStatus {
    /// Paid; the confirmation went out (unless a fault held it back) if URLs are registered.
    Completed,
    /// The ValidationURL refused it with this code; no money moved, no confirmation.
    Rejected { result_code: String },
    /// The ValidationURL did not answer in time and `ResponseType` is `Cancelled`.
    Cancelled,
}

impl C2bOutcome {
    pub fn is_completed(&self) -> bool {
        self.status == C2bStatus::Completed
    }
}

/// Checks an injected payment like M-Pesa would check the customer's input.
pub(crate) fn check_payment(sim: &Simulator, p: &CustomerPayment) -> Result<String, String> {
    if !is_shortcode(&p.short_code) {
        return Err(format!(
            "short_code {:?} must be 5 to 7 digits",
            p.short_code
        ));
    }
    if p.amount < 1 || p.amount > sim.config().max_amount {
        return Err(format!(
            "amount must be 1 to {} shillings",
            sim.config().max_amount
        ));
    }
    mpesa_domain::Msisdn::parse(&p.phone)
        .map(|m| m.as_str().to_owned())
        .map_err(|e| format!("phone: {e}"))
}

impl Simulator {
    /// A customer pays a paybill or till, now: external validation (when on for the shortcode,
    /// with its deadline and `ResponseType` fallback), booking, and the confirmation to the
    /// registered ConfirmationURL (unless a fault suppresses it). Returns once all of that is
    /// done. An input M-Pesa would not let the customer send is refused with the reason.
    pub async fn pay_c2b(&self, payment: CustomerPayment) -> Result<C2bOutcome, SimError> {
        let phone = check_payment(self, &payment).map_err(SimError::Request)?;
        Ok(receive_payment(self, CustomerPayment { phone, ..payment }).await)
    }

    /// Switches external validation on or off for a shortcode (over the configuration).
    pub fn set_c2b_validation(&self, short_code: &str, enabled: bool) {
        lock(&self.inner.c2b)
            .validation
            .insert(short_code.to_owned(), enabled);
        tracing::info!(short_code, enabled, "C2B external validation switched");
        self.notify();
    }

    /// Whether C2B payments to `short_code` are validated first.
    pub fn c2b_validation(&self, short_code: &str) -> bool {
        let overridden = lock(&self.inner.c2b).validation.get(short_code).copied();
        overridden.unwrap_or_else(|| {
            self.config()
                .shortcode(short_code)
                .is_some_and(|s| s.external_validation)
        })
    }

    /// Sets the `MSISDN` form per C2B version (full, masked or SHA-256) from now on.
    pub fn set_c2b_msisdn(&self, modes: C2bMsisdnModes) {
        lock(&self.inner.c2b).msisdn = Some(modes);
    }

    /// The `MSISDN` forms in force.
    pub fn c2b_msisdn(&self) -> C2bMsisdnModes {
        lock(&self.inner.c2b)
            .msisdn
            .unwrap_or(self.config().c2b_msisdn)
    }

    /// Shortcodes registered for Pull Transactions.
    pub fn pull_registrations(&self) -> Vec<PullRegistration> {
        let mut all: Vec<_> = lock(&self.inner.c2b).pull.values().cloned().collect();
        all.sort_by(|a, b| a.short_code.cmp(&b.short_code));
        all
    }
}

/// Validation (when enabled, with its deadline and `ResponseType` fallback), booking, then the
/// confirmation.
pub(crate) async fn receive_payment(sim: &Simulator, payment: CustomerPayment) -> C2bOutcome {
    let now = sim.now();
    let receipt = ids::receipt(now);
    let faults = lock(&sim.inner.faults)
        .for_flow(Flow::C2b, Some(&payment.phone))
        .combine(&payment.faults);
    let registration = lock(&sim.inner.c2b).for_payment(&payment.short_code, payment.version);
    let outcome = |status: C2bStatus, third_party_trans_id: String| C2bOutcome {
        trans_id: receipt.clone(),
        short_code: payment.short_code.clone(),
        amount: payment.amount,
        status,
        third_party_trans_id,
    };
    let mut third_party_trans_id = String::new();
    if let (Some(reg), true) = (&registration, sim.c2b_validation(&payment.short_code)) {
        let body = payment_body(sim, &payment, reg.version, &receipt, now, None, "", &faults);
        match validate(sim, reg, &receipt, &body).await {
            Validation::Accepted { reference } => third_party_trans_id = reference,
            Validation::Rejected { result_code } => {
                return outcome(C2bStatus::Rejected { result_code }, String::new());
            }
            Validation::NoAnswer if reg.response_type == "Completed" => {}
            Validation::NoAnswer => {
                tracing::info!(trans_id = %receipt, "C2B validation unanswered; ResponseType Cancelled cancels the payment");
                return outcome(C2bStatus::Cancelled, String::new());
            }
        }
    }
    let balances = lock(&sim.inner.books).credit(PaymentRecord {
        receipt: receipt.clone(),
        kind: PaymentKind::C2b,
        short_code: payment.short_code.clone(),
        msisdn: payment.phone.clone(),
        amount: payment.amount,
        completed_at: now,
        originator_conversation_id: sim.inner.ids.gateway_id(),
        conversation_id: ids::conversation_id(now),
        reference: Some(bill_ref_number(&payment)),
        reversed_by: None,
        original_receipt: None,
        buy_goods: payment.till,
    });
    sim.notify();
    let Some(reg) = registration else {
        tracing::info!(trans_id = %receipt, "C2B payment completed; no URLs registered, nobody notified");
        return outcome(C2bStatus::Completed, third_party_trans_id);
    };
    let body = payment_body(
        sim,
        &payment,
        reg.version,
        &receipt,
        now,
        Some(balances.utility),
        &third_party_trans_id,
        &faults,
    );
    let body = serde_json::to_string(&body).expect("a C2B payment serializes");
    sim.deliver(
        Outgoing {
            kind: CallbackKind::C2bConfirmation,
            url: reg.confirmation_url.clone(),
            reference: receipt.clone(),
            body,
        },
        &faults,
    )
    .await;
    outcome(C2bStatus::Completed, third_party_trans_id)
}

/// The account number as the confirmation carries it: empty for Buy Goods.
fn bill_ref_number(payment: &CustomerPayment) -> String {
    if payment.till {
        String::new()
    } else {
        payment.account.clone().unwrap_or_default()
    }
}

enum Validation {
    Accepted { reference: String },
    Rejected { result_code: String },
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
                    Validation::Rejected {
                        result_code: a.result_code.as_text().into_owned(),
                    }
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
    payment: &CustomerPayment,
    version: C2bApiVersion,
    receipt: &str,
    at: chrono::DateTime<chrono::Utc>,
    balance_after: Option<Cents>,
    third_party_trans_id: &str,
    faults: &CallbackFaults,
) -> C2bPayment {
    let modes = sim.c2b_msisdn();
    let mode = match version {
        C2bApiVersion::V1 => modes.v1,
        C2bApiVersion::V2 => modes.v2,
    };
    let name = |n: &str| (!faults.omit_c2b_names).then(|| n.to_owned());
    C2bPayment {
        transaction_type: if payment.till {
            "Buy Goods"
        } else {
            "Pay Bill"
        }
        .into(),
        trans_id: receipt.to_owned(),
        trans_time: LooseString(ids::eat_timestamp(at)),
        trans_amount: WireValue::string(&Cents(payment.amount * 100).to_string()),
        business_short_code: LooseString(payment.short_code.clone()),
        bill_ref_number: Some(bill_ref_number(payment)),
        invoice_number: Some(String::new()),
        org_account_balance: Some(WireValue::string(
            &balance_after.map(|c| c.to_string()).unwrap_or_default(),
        )),
        third_party_trans_id: Some(third_party_trans_id.to_owned()),
        msisdn: LooseString(reported_msisdn(&payment.phone, mode)),
        first_name: Some(payment.first_name.clone().unwrap_or_else(|| "JOHN".into())),
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
    let payment = CustomerPayment {
        short_code: tx.business_short_code.clone(),
        phone: tx.phone.clone(),
        amount: tx.amount,
        account: Some(tx.account_reference.clone()),
        till: tx.transaction_type == "CustomerBuyGoodsOnline",
        version: Some(reg.version),
        first_name: None,
        faults: CallbackFaults::default(),
    };
    let faults = &faults.combine(&lock(&sim.inner.faults).for_flow(Flow::C2b, None));
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
