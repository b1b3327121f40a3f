//! The initiator APIs: B2C (v3, v1), Transaction Status, Account Balance, Reversal. Each is
//! acknowledged at once with `ResponseCode "0"`; the verdict (credential, balance, receipt)
//! comes later as a `Result` to ResultURL, or to QueueTimeOutURL as a fault.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use daraja::wire::{
    AccountBalanceRequest, B2cRequest, InitiatorResponse, KeyValue, OneOrMany, ReferenceData,
    ResultBody, ResultEnvelope, ResultParameters, ReversalRequest, TransactionStatusRequest,
    WireCode, WireValue,
};
use mpesa_domain::Cents;

use super::{admit, answer};
use crate::callback_sender::Outgoing;
use crate::credential::CredentialVerdict;
use crate::errors::ApiError;
use crate::faults::{CallbackFaults, Flow};
use crate::journal::CallbackKind;
use crate::ledger::{LedgerRefusal, PaymentKind, PaymentRecord};
use crate::validation::{Fields, is_callback_url, is_shortcode, json_object, msisdn, typed};
use crate::{Simulator, ids, lock};
use daraja::endpoint::Api;

const B2C_COMMANDS: [&str; 3] = ["BusinessPayment", "SalaryPayment", "PromotionPayment"];
const INTERNAL_B2C_QUEUE: &str =
    "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit";
const INTERNAL_BALANCE_QUEUE: &str =
    "https://internalsandbox.safaricom.co.ke/mpesa/abresults/v1/submit";
const INTERNAL_REVERSAL_QUEUE: &str =
    "https://internalsandbox.safaricom.co.ke/mpesa/reversalresults/v1/submit";
const INTERNAL_STATUS_QUEUE: &str =
    "https://internalsandbox.safaricom.co.ke/mpesa/tsresults/v1/submit";
const PROCESSED: &str = "The service request is processed successfully.";
const CUSTOMER_NAME: &str = "JOHN DOE";

pub(crate) async fn b2c_v3(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(accept_b2c(&sim, &headers, &body, true))
}

pub(crate) async fn b2c_v1(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(accept_b2c(&sim, &headers, &body, false))
}

pub(crate) async fn transaction_status(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(accept_transaction_status(&sim, &headers, &body))
}

pub(crate) async fn account_balance(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(accept_account_balance(&sim, &headers, &body))
}

pub(crate) async fn reversal(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(accept_reversal(&sim, &headers, &body))
}

/// Where a result goes, and how it misbehaves.
struct ResultTarget {
    result_url: String,
    queue_timeout_url: String,
    faults: CallbackFaults,
    originator_conversation_id: String,
    conversation_id: String,
}

/// `ResultURL` and `QueueTimeOutURL`, both required, both following the callback-URL rules.
fn result_urls(sim: &Simulator, f: &Fields) -> Result<(), ApiError> {
    let production = sim.config().production();
    f.text("QueueTimeOutURL")
        .filter(|u| is_callback_url(u, production))
        .ok_or_else(|| ApiError::invalid_field("QueueTimeOutURL"))?;
    f.text("ResultURL")
        .filter(|u| is_callback_url(u, production))
        .ok_or_else(|| ApiError::invalid_field("ResultURL"))?;
    Ok(())
}

fn optional_text(f: &Fields, names: &[&'static str], max: usize) -> Result<(), ApiError> {
    for name in names {
        if f.text(name).is_some_and(|t| t.chars().count() > max) {
            return Err(ApiError::invalid_field(name));
        }
    }
    Ok(())
}

/// The acknowledgement, and the result produced in the background after the result delay.
fn acknowledge<F>(sim: &Simulator, target: ResultTarget, produce: F) -> Response
where
    F: FnOnce(&Simulator, &ResultTarget, DateTime<Utc>) -> ResultEnvelope + Send + 'static,
{
    let ack = InitiatorResponse::accepted(
        target.originator_conversation_id.clone(),
        target.conversation_id.clone(),
    );
    let background = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(background.config().result_delay).await;
        let envelope = produce(&background, &target, background.now());
        send_result(&background, &target, envelope).await;
    });
    Json(ack).into_response()
}

async fn send_result(sim: &Simulator, target: &ResultTarget, mut envelope: ResultEnvelope) {
    if target.faults.string_result_code {
        let r = &mut envelope.result;
        r.result_code = WireCode::text(r.result_code.as_text().into_owned());
        r.result_type = r
            .result_type
            .take()
            .map(|t| WireCode::text(t.as_text().into_owned()));
    }
    let (kind, url, envelope) = if target.faults.queue_timeout {
        // The request "expired in the queue": the caller learns nothing more (the shape of this
        // notification is not documented; see the README).
        let r = &envelope.result;
        let notice = ResultEnvelope {
            result: ResultBody {
                result_type: Some(WireCode::number(1)),
                result_code: WireCode::number(100_000_001),
                result_desc: "The request timed out in the queue.".into(),
                originator_conversation_id: r.originator_conversation_id.clone(),
                conversation_id: r.conversation_id.clone(),
                transaction_id: None,
                result_parameters: None,
                reference_data: None,
            },
        };
        (
            CallbackKind::QueueTimeout,
            target.queue_timeout_url.clone(),
            notice,
        )
    } else {
        (CallbackKind::Result, target.result_url.clone(), envelope)
    };
    let body = serde_json::to_string(&envelope).expect("a result serializes");
    sim.deliver(
        Outgoing {
            kind,
            url,
            reference: target.conversation_id.clone(),
            body,
        },
        &target.faults,
    )
    .await;
}

/// A numeric code as a number, anything else (`R000001`, `SFC_IC0003`) as text.
fn code(value: &str) -> WireCode {
    value
        .parse::<i64>()
        .map_or_else(|_| WireCode::text(value), WireCode::number)
}

fn one_reference(key: &str, value: &str) -> Option<ReferenceData> {
    Some(ReferenceData {
        reference_item: OneOrMany::One(KeyValue::new(key, WireValue::string(value))),
    })
}

fn failure(
    target: &ResultTarget,
    at: DateTime<Utc>,
    result_code: &str,
    desc: &str,
    queue: &str,
) -> ResultEnvelope {
    ResultEnvelope {
        result: ResultBody {
            result_type: Some(WireCode::number(0)),
            result_code: code(result_code),
            result_desc: desc.into(),
            originator_conversation_id: target.originator_conversation_id.clone(),
            conversation_id: target.conversation_id.clone(),
            transaction_id: Some(ids::placeholder_receipt(at)),
            result_parameters: None,
            reference_data: one_reference("QueueTimeoutURL", queue),
        },
    }
}

fn parameters(items: Vec<KeyValue>) -> Option<ResultParameters> {
    Some(ResultParameters {
        result_parameter: OneOrMany::Many(items),
    })
}

/// `None` when the initiator's credential is good; else the result code and description.
/// After `lock_initiator_after` consecutive failures the initiator is locked (`8006`) until
/// the simulator is reset.
fn credential_problem(
    sim: &Simulator,
    initiator: &str,
    credential: &str,
) -> Option<(&'static str, &'static str)> {
    let limit = sim.config().lock_initiator_after.max(1);
    if lock(&sim.inner.initiator)
        .failures
        .get(initiator)
        .is_some_and(|n| *n >= limit)
    {
        return Some(("8006", "The security credential is locked."));
    }
    // The RSA work happens outside any lock.
    let verdict = sim.inner.credentials.check(initiator, credential);
    let mut store = lock(&sim.inner.initiator);
    let failures = store.failures.entry(initiator.to_owned()).or_default();
    match verdict {
        CredentialVerdict::Valid => {
            *failures = 0;
            None
        }
        CredentialVerdict::Invalid => {
            *failures += 1;
            tracing::info!(
                initiator,
                failures = *failures,
                "initiator credential refused"
            );
            Some(("2001", "The initiator information is invalid."))
        }
    }
}

fn party_name(sim: &Simulator, short_code: &str) -> String {
    let name = sim
        .config()
        .shortcode(short_code)
        .map_or("TEST BUSINESS", |s| s.name.as_str());
    format!("{short_code} - {name}")
}

fn accept_b2c(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &Bytes,
    v3: bool,
) -> Result<Response, ApiError> {
    admit(sim, Api::B2c, headers)?;
    let f = json_object(headers, body, || ApiError::invalid_field("InitiatorName"))?;
    let invalid = ApiError::invalid_field;
    let given_id = if v3 {
        Some(
            f.bounded_text("OriginatorConversationID", 1, 100)
                .ok_or_else(|| invalid("OriginatorConversationID"))?,
        )
    } else {
        None
    };
    f.text("InitiatorName")
        .ok_or_else(|| invalid("InitiatorName"))?;
    f.text("SecurityCredential")
        .ok_or_else(|| invalid("SecurityCredential"))?;
    f.text("CommandID")
        .filter(|c| B2C_COMMANDS.contains(&c.as_str()))
        .ok_or_else(|| invalid("CommandID"))?;
    f.whole_amount("Amount", sim.config().lenient_amounts)
        .ok_or_else(|| invalid("Amount"))?;
    f.text("PartyA")
        .filter(|p| is_shortcode(p))
        .ok_or_else(|| invalid("PartyA"))?;
    f.text("PartyB").ok_or_else(|| invalid("PartyB"))?;
    f.bounded_text("Remarks", 2, 100)
        .ok_or_else(|| invalid("Remarks"))?;
    result_urls(sim, &f)?;
    optional_text(&f, &["Occassion", "Occasion"], 100)?;
    let request: B2cRequest = typed(body)?;
    let amount = f
        .whole_amount("Amount", sim.config().lenient_amounts)
        .unwrap_or_default();

    let originator_conversation_id = match given_id {
        Some(id) => {
            let mut store = lock(&sim.inner.initiator);
            if store.originator_ids.contains(&id) {
                return Err(ApiError::new(
                    500,
                    "500.002.1001",
                    "Duplicate OriginatorConversationID.",
                ));
            }
            store.originator_ids.insert(id.clone(), ());
            id
        }
        None => sim.inner.ids.gateway_id(),
    };
    let target = ResultTarget {
        result_url: request.result_url.clone(),
        queue_timeout_url: request.queue_timeout_url.clone(),
        faults: lock(&sim.inner.faults).for_flow(Flow::B2c, Some(request.party_b.as_str())),
        originator_conversation_id,
        conversation_id: ids::conversation_id(sim.now()),
    };
    tracing::info!(conversation_id = %target.conversation_id, amount, "B2C payment accepted");
    Ok(acknowledge(sim, target, move |sim, target, at| {
        pay_out(sim, target, at, &request, amount)
    }))
}

fn pay_out(
    sim: &Simulator,
    target: &ResultTarget,
    at: DateTime<Utc>,
    request: &B2cRequest,
    amount: i64,
) -> ResultEnvelope {
    let fail = |code: &str, desc: &str| failure(target, at, code, desc, INTERNAL_B2C_QUEUE);
    if let Some((code, desc)) =
        credential_problem(sim, &request.initiator_name, &request.security_credential)
    {
        return fail(code, desc);
    }
    let Some(customer) = msisdn(request.party_b.as_str()) else {
        return fail("SFC_IC0003", "The operator does not exist.");
    };
    // Recipients by scenario number (b2c-and-results.md, "B2C result codes").
    match customer.as_str() {
        crate::scenarios::OPERATOR_MISSING_NUMBER => {
            return fail("SFC_IC0003", "The operator does not exist.");
        }
        crate::scenarios::UNREGISTERED_RECIPIENT_NUMBER => {
            return fail(
                "2040",
                "Credit Party customer type (Unregistered or Registered Customer) can't be supported by the service.",
            );
        }
        _ => {}
    }
    if amount < sim.config().b2c_min_amount {
        return fail(
            "2",
            "Declined due to limit rule: less than the minimum transaction amount.",
        );
    }
    if amount > sim.config().max_amount {
        return fail(
            "3",
            "Declined due to limit rule: greater than the maximum transaction amount.",
        );
    }
    let short_code = request.party_a.as_str().to_owned();
    let receipt = ids::receipt(at);
    let booked = lock(&sim.inner.books).debit(PaymentRecord {
        receipt: receipt.clone(),
        kind: PaymentKind::B2c,
        short_code,
        msisdn: customer.as_str().to_owned(),
        amount,
        completed_at: at,
        originator_conversation_id: target.originator_conversation_id.clone(),
        conversation_id: target.conversation_id.clone(),
        reference: request.occasion.clone(),
        reversed_by: None,
        original_receipt: None,
        buy_goods: false,
    });
    sim.notify();
    let balances = match booked {
        Ok(b) => b,
        Err(LedgerRefusal::InsufficientFunds) => {
            return fail("1", "The balance is insufficient for the transaction.");
        }
    };
    ResultEnvelope {
        result: ResultBody {
            result_type: Some(WireCode::number(0)),
            result_code: WireCode::number(0),
            result_desc: PROCESSED.into(),
            originator_conversation_id: target.originator_conversation_id.clone(),
            conversation_id: target.conversation_id.clone(),
            transaction_id: Some(receipt.clone()),
            result_parameters: parameters(vec![
                KeyValue::new("TransactionAmount", WireValue::integer(amount)),
                KeyValue::new("TransactionReceipt", WireValue::string(&receipt)),
                KeyValue::new(
                    "ReceiverPartyPublicName",
                    WireValue::string(&format!("{} - {CUSTOMER_NAME}", customer.as_str())),
                ),
                KeyValue::new(
                    "TransactionCompletedDateTime",
                    WireValue::string(&ids::eat_dotted(at)),
                ),
                KeyValue::new(
                    "B2CUtilityAccountAvailableFunds",
                    WireValue::decimal(balances.utility),
                ),
                KeyValue::new(
                    "B2CWorkingAccountAvailableFunds",
                    WireValue::decimal(balances.working),
                ),
                KeyValue::new("B2CRecipientIsRegisteredCustomer", WireValue::string("Y")),
                KeyValue::new(
                    "B2CChargesPaidAccountAvailableFunds",
                    WireValue::decimal(balances.charges_paid),
                ),
            ]),
            reference_data: one_reference("QueueTimeoutURL", INTERNAL_B2C_QUEUE),
        },
    }
}

/// `Initiator`, `SecurityCredential` and an exact `CommandID`, the start of the three
/// non-B2C initiator requests.
fn initiator_fields(f: &Fields, command: &str) -> Result<(), ApiError> {
    let invalid = ApiError::invalid_field;
    f.text("Initiator").ok_or_else(|| invalid("Initiator"))?;
    f.text("SecurityCredential")
        .ok_or_else(|| invalid("SecurityCredential"))?;
    f.text("CommandID")
        .filter(|c| c == command)
        .ok_or_else(|| invalid("CommandID"))?;
    Ok(())
}

fn identifier_type(f: &Fields, name: &'static str, allowed: &[&str]) -> Result<(), ApiError> {
    f.text(name)
        .filter(|t| allowed.contains(&t.as_str()))
        .map(|_| ())
        .ok_or_else(|| ApiError::invalid_field(name))
}

fn plain_target(
    sim: &Simulator,
    flow: Flow,
    result_url: &str,
    queue_timeout_url: &str,
) -> ResultTarget {
    ResultTarget {
        result_url: result_url.to_owned(),
        queue_timeout_url: queue_timeout_url.to_owned(),
        faults: lock(&sim.inner.faults).for_flow(flow, None),
        originator_conversation_id: sim.inner.ids.gateway_id(),
        conversation_id: ids::conversation_id(sim.now()),
    }
}

fn accept_transaction_status(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    admit(sim, Api::TransactionStatus, headers)?;
    let f = json_object(headers, body, || ApiError::invalid_field("Initiator"))?;
    let invalid = ApiError::invalid_field;
    initiator_fields(&f, "TransactionStatusQuery")?;
    if f.text("TransactionID").is_none() && f.text("OriginalConversationID").is_none() {
        return Err(invalid("TransactionID"));
    }
    f.text("PartyA")
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| invalid("PartyA"))?;
    identifier_type(&f, "IdentifierType", &["1", "2", "4"])?;
    result_urls(sim, &f)?;
    f.bounded_text("Remarks", 1, 100)
        .ok_or_else(|| invalid("Remarks"))?;
    optional_text(&f, &["Occasion", "Occassion"], 100)?;
    let request: TransactionStatusRequest = typed(body)?;
    let target = plain_target(
        sim,
        Flow::TransactionStatus,
        &request.result_url,
        &request.queue_timeout_url,
    );
    Ok(acknowledge(sim, target, move |sim, target, at| {
        look_up(sim, target, at, &request)
    }))
}

fn look_up(
    sim: &Simulator,
    target: &ResultTarget,
    at: DateTime<Utc>,
    request: &TransactionStatusRequest,
) -> ResultEnvelope {
    let reference = || {
        request.occasion.as_deref().map_or_else(
            || one_reference("QueueTimeoutURL", INTERNAL_STATUS_QUEUE),
            |o| one_reference("Occasion", o),
        )
    };
    let fail = |code: &str, desc: &str| ResultEnvelope {
        result: ResultBody {
            reference_data: reference(),
            ..failure(target, at, code, desc, INTERNAL_STATUS_QUEUE).result
        },
    };
    if let Some((code, desc)) =
        credential_problem(sim, &request.initiator, &request.security_credential)
    {
        return fail(code, desc);
    }
    let found = {
        let books = lock(&sim.inner.books);
        let by_receipt = request
            .transaction_id
            .as_deref()
            .and_then(|r| books.payment(r.trim()));
        by_receipt
            .or_else(|| {
                request
                    .original_conversation_id
                    .as_deref()
                    .and_then(|id| books.payment_by_originator_id(id.trim()))
            })
            .cloned()
    };
    let Some(p) = found else {
        return fail("2032", "The transaction receipt number does not exist.");
    };
    let business = party_name(sim, &p.short_code);
    let customer = format!("{} - {CUSTOMER_NAME}", p.msisdn);
    let (debit, credit, debit_account, reason) = match p.kind {
        PaymentKind::Stk | PaymentKind::C2b => (
            customer,
            business,
            "MMF Account For Customer",
            "Pay Utility with OD Online",
        ),
        PaymentKind::B2c => (
            business,
            customer,
            "Utility Account",
            "Business Payment to Customer via API",
        ),
        PaymentKind::Reversal => (business, customer, "Utility Account", "Reversal"),
    };
    let status = if p.reversed_by.is_some() {
        "Reversed"
    } else {
        "Completed"
    };
    let time =
        |t: DateTime<Utc>| WireValue::integer(ids::eat_timestamp(t).parse().unwrap_or_default());
    ResultEnvelope {
        result: ResultBody {
            result_type: Some(WireCode::number(0)),
            result_code: WireCode::number(0),
            result_desc: PROCESSED.into(),
            originator_conversation_id: target.originator_conversation_id.clone(),
            conversation_id: target.conversation_id.clone(),
            transaction_id: Some(ids::placeholder_receipt(at)),
            result_parameters: parameters(vec![
                KeyValue::new("DebitPartyName", WireValue::string(&debit)),
                KeyValue::new("CreditPartyName", WireValue::string(&credit)),
                KeyValue::new(
                    "OriginatorConversationID",
                    WireValue::string(&p.originator_conversation_id),
                ),
                KeyValue::new("InitiatedTime", time(p.completed_at)),
                KeyValue::without_value("CreditPartyCharges"),
                KeyValue::new("DebitAccountType", WireValue::string(debit_account)),
                KeyValue::without_value("TransactionReason"),
                KeyValue::new("ReasonType", WireValue::string(reason)),
                KeyValue::new("TransactionStatus", WireValue::string(status)),
                KeyValue::new("FinalisedTime", time(p.completed_at)),
                KeyValue::new("Amount", WireValue::decimal(Cents(p.amount * 100))),
                KeyValue::new("ConversationID", WireValue::string(&p.conversation_id)),
                KeyValue::new("ReceiptNo", WireValue::string(&p.receipt)),
            ]),
            reference_data: reference(),
        },
    }
}

fn accept_account_balance(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    admit(sim, Api::AccountBalance, headers)?;
    let f = json_object(headers, body, || ApiError::invalid_field("Initiator"))?;
    let invalid = ApiError::invalid_field;
    initiator_fields(&f, "AccountBalance")?;
    f.text("PartyA")
        .filter(|p| is_shortcode(p))
        .ok_or_else(|| invalid("PartyA"))?;
    identifier_type(&f, "IdentifierType", &["1", "2", "4"])?;
    f.bounded_text("Remarks", 1, 100)
        .ok_or_else(|| invalid("Remarks"))?;
    result_urls(sim, &f)?;
    let request: AccountBalanceRequest = typed(body)?;
    let target = plain_target(
        sim,
        Flow::AccountBalance,
        &request.result_url,
        &request.queue_timeout_url,
    );
    Ok(acknowledge(sim, target, move |sim, target, at| {
        balance(sim, target, at, &request)
    }))
}

fn balance(
    sim: &Simulator,
    target: &ResultTarget,
    at: DateTime<Utc>,
    request: &AccountBalanceRequest,
) -> ResultEnvelope {
    // Account Balance results carry ResultType and ResultCode as strings.
    let as_text = |mut e: ResultEnvelope| {
        e.result.result_type = Some(WireCode::text("0"));
        e.result.result_code = WireCode::text(e.result.result_code.as_text().into_owned());
        e
    };
    if let Some((code, desc)) =
        credential_problem(sim, &request.initiator, &request.security_credential)
    {
        return as_text(failure(target, at, code, desc, INTERNAL_BALANCE_QUEUE));
    }
    let balances = sim.balances(request.party_a.as_str());
    ResultEnvelope {
        result: ResultBody {
            result_type: Some(WireCode::text("0")),
            result_code: WireCode::text("0"),
            result_desc: "The service request is processed successfully".into(),
            originator_conversation_id: target.originator_conversation_id.clone(),
            conversation_id: target.conversation_id.clone(),
            transaction_id: Some(ids::placeholder_receipt(at)),
            result_parameters: parameters(vec![
                KeyValue::new(
                    "AccountBalance",
                    WireValue::string(&balances.account_balance_text()),
                ),
                KeyValue::new(
                    "BOCompletedTime",
                    WireValue::string(&ids::eat_timestamp(at)),
                ),
            ]),
            reference_data: one_reference("QueueTimeoutURL", INTERNAL_BALANCE_QUEUE),
        },
    }
}

fn accept_reversal(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    admit(sim, Api::Reversal, headers)?;
    let f = json_object(headers, body, || ApiError::invalid_field("Initiator"))?;
    let invalid = ApiError::invalid_field;
    initiator_fields(&f, "TransactionReversal")?;
    f.text("TransactionID")
        .filter(|t| t.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| invalid("TransactionID"))?;
    f.whole_amount("Amount", sim.config().lenient_amounts)
        .ok_or_else(|| invalid("Amount"))?;
    f.text("ReceiverParty")
        .filter(|p| is_shortcode(p))
        .ok_or_else(|| invalid("ReceiverParty"))?;
    // The misspelt key is the one Daraja reads; the correct spelling is refused.
    identifier_type(&f, "RecieverIdentifierType", &["1", "2", "4", "11"])?;
    result_urls(sim, &f)?;
    f.bounded_text("Remarks", 2, 100)
        .ok_or_else(|| invalid("Remarks"))?;
    optional_text(&f, &["Occasion", "Occassion"], 100)?;
    let request: ReversalRequest = typed(body)?;
    let target = plain_target(
        sim,
        Flow::Reversal,
        &request.result_url,
        &request.queue_timeout_url,
    );
    Ok(acknowledge(sim, target, move |sim, target, at| {
        reverse(sim, target, at, &request)
    }))
}

fn reverse(
    sim: &Simulator,
    target: &ResultTarget,
    at: DateTime<Utc>,
    request: &ReversalRequest,
) -> ResultEnvelope {
    let fail = |code: &str, desc: &str| failure(target, at, code, desc, INTERNAL_REVERSAL_QUEUE);
    if let Some((code, desc)) =
        credential_problem(sim, &request.initiator, &request.security_credential)
    {
        return fail(code, desc);
    }
    let receipt = ids::receipt(at);
    let outcome = {
        let mut books = lock(&sim.inner.books);
        let original = books.payment(request.transaction_id.trim()).cloned();
        match original {
            // B2C payouts cannot be reversed through the API (B2C FAQ).
            None => Err(("R000002", "The OriginalTransactionID is invalid.")),
            Some(o) if !matches!(o.kind, PaymentKind::Stk | PaymentKind::C2b) => {
                Err(("R000002", "The OriginalTransactionID is invalid."))
            }
            Some(o) if o.short_code != request.receiver_party.as_str() => {
                Err(("R000002", "The OriginalTransactionID is invalid."))
            }
            Some(o) if o.reversed_by.is_some() => {
                Err(("R000001", "The transaction has already been reversed"))
            }
            Some(o) => {
                let booked = books.debit(PaymentRecord {
                    receipt: receipt.clone(),
                    kind: PaymentKind::Reversal,
                    short_code: o.short_code.clone(),
                    msisdn: o.msisdn.clone(),
                    amount: o.amount,
                    completed_at: at,
                    originator_conversation_id: target.originator_conversation_id.clone(),
                    conversation_id: target.conversation_id.clone(),
                    reference: None,
                    reversed_by: None,
                    original_receipt: Some(o.receipt.clone()),
                    buy_goods: false,
                });
                match booked {
                    Ok(balances) => {
                        if let Some(original) = books.payments.get_mut(&o.receipt) {
                            original.reversed_by = Some(receipt.clone());
                        }
                        Ok((o, balances))
                    }
                    Err(LedgerRefusal::InsufficientFunds) => {
                        Err(("1", "The balance is insufficient for the transaction."))
                    }
                }
            }
        }
    };
    sim.notify();
    let (original, balances) = match outcome {
        Ok(found) => found,
        Err((code, desc)) => return fail(code, desc),
    };
    ResultEnvelope {
        result: ResultBody {
            result_type: Some(WireCode::number(0)),
            result_code: WireCode::number(0),
            result_desc: PROCESSED.into(),
            originator_conversation_id: target.originator_conversation_id.clone(),
            conversation_id: target.conversation_id.clone(),
            transaction_id: Some(receipt),
            result_parameters: parameters(vec![
                KeyValue::new(
                    "DebitAccountBalance",
                    WireValue::string(&balances.utility_text()),
                ),
                KeyValue::new("Amount", WireValue::decimal(Cents(original.amount * 100))),
                KeyValue::new(
                    "TransCompletedTime",
                    WireValue::integer(ids::eat_timestamp(at).parse().unwrap_or_default()),
                ),
                KeyValue::new(
                    "OriginalTransactionID",
                    WireValue::string(&original.receipt),
                ),
                KeyValue::new("Charge", WireValue::decimal(Cents(0))),
                KeyValue::new(
                    "CreditPartyPublicName",
                    WireValue::string(&format!("{} - {CUSTOMER_NAME}", original.msisdn)),
                ),
                KeyValue::new(
                    "DebitPartyPublicName",
                    WireValue::string(&party_name(sim, &original.short_code)),
                ),
            ]),
            reference_data: one_reference("QueueTimeoutURL", INTERNAL_REVERSAL_QUEUE),
        },
    }
}
