//! C2B: Register URL (v1 and v2), the sandbox-only simulate call, and the validation and
//! confirmation requests M-Pesa POSTs to the registered URLs, with their answers.

use std::fmt;

use mpesa_domain::Cents;
use serde::{Deserialize, Serialize};

use super::common::{LooseString, WireCode, WireValue};
use crate::clock::parse_eat_timestamp;
use crate::error::CallbackParseError;
use crate::redact::{mask_phone_text, url_origin};

pub const C2B_REGISTER_URL_V1_PATH: &str = "/mpesa/c2b/v1/registerurl";
pub const C2B_REGISTER_URL_V2_PATH: &str = "/mpesa/c2b/v2/registerurl";
pub const C2B_SIMULATE_V1_PATH: &str = "/mpesa/c2b/v1/simulate";
pub const C2B_SIMULATE_V2_PATH: &str = "/mpesa/c2b/v2/simulate";

/// `POST /mpesa/c2b/v{1,2}/registerurl`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterUrlRequest {
    #[serde(rename = "ShortCode")]
    pub short_code: LooseString,
    /// Exactly `Completed` or `Cancelled`: what M-Pesa does when validation does not answer.
    #[serde(rename = "ResponseType")]
    pub response_type: String,
    #[serde(rename = "ConfirmationURL")]
    pub confirmation_url: String,
    #[serde(rename = "ValidationURL")]
    pub validation_url: String,
}

impl fmt::Debug for RegisterUrlRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterUrlRequest")
            .field("short_code", &self.short_code)
            .field("response_type", &self.response_type)
            .field("confirmation_url", &url_origin(&self.confirmation_url))
            .field("validation_url", &url_origin(&self.validation_url))
            .finish()
    }
}

/// The answer to Register URL and to C2B simulate. Note the misspelt `OriginatorCoversationID`;
/// older v1 answers also carry `ConversationID` and may lack `ResponseCode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct C2bResponse {
    #[serde(
        rename = "OriginatorCoversationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub originator_coversation_id: Option<String>,
    #[serde(
        rename = "ConversationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub conversation_id: Option<String>,
    #[serde(
        rename = "ResponseCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_code: Option<WireCode>,
    #[serde(rename = "ResponseDescription", default)]
    pub response_description: String,
}

impl C2bResponse {
    /// The current success answer: `ResponseCode "0"`.
    pub fn accepted(
        originator_coversation_id: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        C2bResponse {
            originator_coversation_id: Some(originator_coversation_id.into()),
            conversation_id: None,
            response_code: Some(WireCode::text("0")),
            response_description: description.into(),
        }
    }
}

/// `POST /mpesa/c2b/v{1,2}/simulate` (sandbox only). Note `Msisdn` in mixed case.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct C2bSimulateRequest {
    #[serde(rename = "ShortCode")]
    pub short_code: LooseString,
    /// `CustomerPayBillOnline` or `CustomerBuyGoodsOnline`.
    #[serde(rename = "CommandID")]
    pub command_id: String,
    #[serde(rename = "Amount")]
    pub amount: WireValue,
    #[serde(rename = "Msisdn")]
    pub msisdn: LooseString,
    /// The account number; `null` for Buy Goods.
    #[serde(rename = "BillRefNumber", default)]
    pub bill_ref_number: Option<String>,
}

impl fmt::Debug for C2bSimulateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("C2bSimulateRequest")
            .field("short_code", &self.short_code)
            .field("command_id", &self.command_id)
            .field("amount", &self.amount)
            .field("msisdn", &mask_phone_text(self.msisdn.as_str()))
            .field("bill_ref_number", &self.bill_ref_number)
            .finish()
    }
}

/// What M-Pesa POSTs to the ValidationURL and the ConfirmationURL: the same shape for both
/// (`OrgAccountBalance` is empty at validation). Production captures often end at `FirstName`;
/// absent members stay absent when serialized.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct C2bPayment {
    /// `"Pay Bill"` or `"Buy Goods"`.
    #[serde(rename = "TransactionType", default)]
    pub transaction_type: String,
    /// The M-Pesa receipt: the idempotency key of a confirmation.
    #[serde(rename = "TransID")]
    pub trans_id: String,
    /// `YYYYMMDDHHmmss` in East Africa Time, as a string.
    #[serde(rename = "TransTime", default)]
    pub trans_time: LooseString,
    /// A decimal string, `"5.00"`.
    #[serde(rename = "TransAmount")]
    pub trans_amount: WireValue,
    #[serde(rename = "BusinessShortCode", default)]
    pub business_short_code: LooseString,
    /// The account number the customer typed (untrusted text); empty or `null` for Buy Goods.
    #[serde(
        rename = "BillRefNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bill_ref_number: Option<String>,
    #[serde(
        rename = "InvoiceNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub invoice_number: Option<String>,
    /// The utility account balance after the payment; empty at validation.
    #[serde(
        rename = "OrgAccountBalance",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub org_account_balance: Option<WireValue>,
    /// Echo of what the validation answer returned, else empty.
    #[serde(
        rename = "ThirdPartyTransID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub third_party_trans_id: Option<String>,
    /// Full (before ~2021), masked (`2547 ***** 126`) or a SHA-256 hex digest: opaque text,
    /// never a phone number to match on.
    #[serde(rename = "MSISDN", default)]
    pub msisdn: LooseString,
    #[serde(rename = "FirstName", default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(
        rename = "MiddleName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub middle_name: Option<String>,
    #[serde(rename = "LastName", default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
}

/// The validation request M-Pesa sends before completing a payment.
pub type C2bValidationRequest = C2bPayment;
/// The confirmation M-Pesa sends after a payment completed.
pub type C2bConfirmation = C2bPayment;

impl fmt::Debug for C2bPayment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("C2bPayment")
            .field("transaction_type", &self.transaction_type)
            .field("trans_id", &self.trans_id)
            .field("trans_time", &self.trans_time)
            .field("trans_amount", &self.trans_amount)
            .field("business_short_code", &self.business_short_code)
            .field("bill_ref_number", &self.bill_ref_number)
            .field("msisdn", &mask_phone_text(self.msisdn.as_str()))
            .finish_non_exhaustive()
    }
}

impl C2bPayment {
    /// Reads a validation or confirmation body and checks what matters: a non-empty `TransID`
    /// and a `TransAmount` that is an exact, non-negative decimal amount.
    pub fn parse(body: &[u8]) -> Result<Self, CallbackParseError> {
        let payment: C2bPayment =
            serde_json::from_slice(body).map_err(CallbackParseError::from_json)?;
        if payment.trans_id.trim().is_empty() {
            return Err(CallbackParseError::Missing("TransID"));
        }
        if payment.amount().is_none() {
            return Err(CallbackParseError::InvalidAmount {
                field: "TransAmount",
                value: payment.trans_amount.json().chars().take(32).collect(),
            });
        }
        Ok(payment)
    }

    /// The amount paid, exactly; `None` when it is not an exact, non-negative amount.
    pub fn amount(&self) -> Option<Cents> {
        self.trans_amount.cents().filter(|c| c.0 >= 0)
    }

    /// The utility balance after the payment, when reported (empty at validation).
    pub fn org_account_balance(&self) -> Option<Cents> {
        self.org_account_balance.as_ref().and_then(WireValue::cents)
    }

    /// `TransTime` as Unix milliseconds.
    pub fn trans_time_ms(&self) -> Option<i64> {
        parse_eat_timestamp(self.trans_time.as_str())
    }

    /// The MSISDN field as Safaricom reported it (full, masked or hashed).
    pub fn reported_msisdn(&self) -> &str {
        self.msisdn.as_str()
    }

    /// The payment as the rules see it. `None` when the amount is not an exact amount (a body
    /// that [`C2bPayment::parse`] accepted always has one).
    pub fn to_report(&self) -> Option<mpesa_domain::c2b::C2bReport> {
        Some(mpesa_domain::c2b::C2bReport {
            receipt: self.trans_id.trim().to_owned(),
            amount: self.amount()?,
            account_reference: mpesa_domain::c2b::stored_account(
                self.bill_ref_number.as_deref().unwrap_or_default(),
            ),
            business_short_code: self.business_short_code.as_str().trim().to_owned(),
            payer_name: self
                .first_name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| n.chars().take(100).collect()),
            msisdn: mpesa_domain::c2b::PayerMsisdn::classify(self.msisdn.as_str()),
            transaction_time_ms: self.trans_time_ms(),
            transaction_type: self.transaction_type.chars().take(64).collect(),
        })
    }
}

/// The gateway's answer to a validation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct C2bValidationAnswer {
    /// `"0"` accepts; a `C2B000xx` code rejects and picks the customer's SMS.
    #[serde(rename = "ResultCode")]
    pub result_code: WireCode,
    #[serde(rename = "ResultDesc")]
    pub result_desc: String,
    /// Our own reference, echoed back in the confirmation's `ThirdPartyTransID`.
    #[serde(
        rename = "ThirdPartyTransID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub third_party_trans_id: Option<String>,
}

/// Why a validation request is rejected; each code picks the message the customer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum C2bRejection {
    InvalidMsisdn,
    InvalidAccountNumber,
    InvalidAmount,
    InvalidKycDetails,
    InvalidShortcode,
    OtherError,
}

impl C2bRejection {
    pub fn code(self) -> &'static str {
        match self {
            C2bRejection::InvalidMsisdn => "C2B00011",
            C2bRejection::InvalidAccountNumber => "C2B00012",
            C2bRejection::InvalidAmount => "C2B00013",
            C2bRejection::InvalidKycDetails => "C2B00014",
            C2bRejection::InvalidShortcode => "C2B00015",
            C2bRejection::OtherError => "C2B00016",
        }
    }
}

impl C2bValidationAnswer {
    /// `{"ResultCode": "0", "ResultDesc": "Accepted"}`.
    pub fn accept() -> Self {
        C2bValidationAnswer {
            result_code: WireCode::text("0"),
            result_desc: "Accepted".into(),
            third_party_trans_id: None,
        }
    }

    /// Accepts and attaches our reference, which comes back as `ThirdPartyTransID`.
    pub fn accept_with_reference(reference: impl Into<String>) -> Self {
        C2bValidationAnswer {
            third_party_trans_id: Some(reference.into()),
            ..Self::accept()
        }
    }

    /// `{"ResultCode": "C2B00012", "ResultDesc": "Rejected"}` and the like.
    pub fn reject(reason: C2bRejection) -> Self {
        C2bValidationAnswer {
            result_code: WireCode::text(reason.code()),
            result_desc: "Rejected".into(),
            third_party_trans_id: None,
        }
    }

    pub fn is_accepted(&self) -> bool {
        self.result_code.is_success()
    }
}

/// The answer to a confirmation: `{"ResultCode": 0, "ResultDesc": "Success"}` (M-Pesa does not
/// act on it).
pub fn confirmation_answer() -> super::common::CallbackAnswer {
    super::common::CallbackAnswer {
        result_code: WireCode::Number(0),
        result_desc: "Success".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_answer_keeps_the_misspelt_key() {
        let json = serde_json::to_string(&C2bResponse::accepted("6e86-45dd", "Success")).unwrap();
        assert_eq!(
            json,
            r#"{"OriginatorCoversationID":"6e86-45dd","ResponseCode":"0","ResponseDescription":"Success"}"#
        );
        let old: C2bResponse = serde_json::from_str(
            r#"{"ConversationID":"AG_20190115_00007fc37fc3db6e9562","OriginatorCoversationID":"10028-4198443-1","ResponseDescription":"Accept the service request successfully."}"#,
        )
        .unwrap();
        assert_eq!(
            old.originator_coversation_id.as_deref(),
            Some("10028-4198443-1")
        );
        assert_eq!(old.response_code, None);
    }

    #[test]
    fn validation_answers() {
        assert_eq!(
            serde_json::to_string(&C2bValidationAnswer::accept()).unwrap(),
            r#"{"ResultCode":"0","ResultDesc":"Accepted"}"#
        );
        assert_eq!(
            serde_json::to_string(&C2bValidationAnswer::reject(
                C2bRejection::InvalidAccountNumber
            ))
            .unwrap(),
            r#"{"ResultCode":"C2B00012","ResultDesc":"Rejected"}"#
        );
        assert!(C2bValidationAnswer::accept_with_reference("ORD-1").is_accepted());
        assert_eq!(
            serde_json::to_string(&confirmation_answer()).unwrap(),
            r#"{"ResultCode":0,"ResultDesc":"Success"}"#
        );
    }

    #[test]
    fn simulate_request_spells_msisdn_in_mixed_case() {
        let req = C2bSimulateRequest {
            short_code: "600984".into(),
            command_id: "CustomerPayBillOnline".into(),
            amount: WireValue::integer(1),
            msisdn: "254708374149".into(),
            bill_ref_number: Some("INV0042".into()),
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(
            json,
            r#"{"ShortCode":"600984","CommandID":"CustomerPayBillOnline","Amount":1,"Msisdn":"254708374149","BillRefNumber":"INV0042"}"#
        );
        assert!(!format!("{req:?}").contains("708374149"));
        let docs: C2bSimulateRequest = serde_json::from_str(
            r#"{"ShortCode":600984,"CommandID":"CustomerPayBillOnline","Amount":1,"Msisdn":254708374149,"BillRefNumber":"INV0042"}"#,
        )
        .unwrap();
        assert_eq!(docs, req);
    }
}
