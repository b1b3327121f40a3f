//! M-Pesa Express: the STK Push request and answer, the STK Query request and answer, and the
//! STK callback Safaricom POSTs to `CallBackURL`.

use std::fmt;

use mpesa_domain::{CallbackReport, Cents, ResultCode, SuccessDetails};
use serde::{Deserialize, Serialize};

use super::common::{LooseString, NameValue, OneOrMany, WireCode, WireValue};
use crate::clock::parse_eat_timestamp;
use crate::error::CallbackParseError;
use crate::redact::{REDACTED, mask_phone_text, url_origin};

pub const STK_PUSH_PATH: &str = "/mpesa/stkpush/v1/processrequest";
pub const STK_QUERY_PATH: &str = "/mpesa/stkpushquery/v1/query";

/// `POST /mpesa/stkpush/v1/processrequest`. Numbers that clients send either way (`Amount`,
/// shortcodes, MSISDNs) are read in both forms; this crate sends `Amount` as a JSON integer and
/// the rest as strings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StkPushRequest {
    #[serde(rename = "BusinessShortCode")]
    pub business_short_code: LooseString,
    /// `base64(BusinessShortCode + Passkey + Timestamp)`: reveals the passkey, never logged.
    #[serde(rename = "Password")]
    pub password: String,
    #[serde(rename = "Timestamp")]
    pub timestamp: LooseString,
    /// `CustomerPayBillOnline` or `CustomerBuyGoodsOnline`.
    #[serde(rename = "TransactionType")]
    pub transaction_type: String,
    #[serde(rename = "Amount")]
    pub amount: WireValue,
    #[serde(rename = "PartyA")]
    pub party_a: LooseString,
    #[serde(rename = "PartyB")]
    pub party_b: LooseString,
    #[serde(rename = "PhoneNumber")]
    pub phone_number: LooseString,
    #[serde(rename = "CallBackURL")]
    pub callback_url: String,
    #[serde(rename = "AccountReference")]
    pub account_reference: LooseString,
    /// Optional per the 2025 docs, required by older ones: this crate always sends it.
    #[serde(
        rename = "TransactionDesc",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_desc: Option<LooseString>,
}

impl fmt::Debug for StkPushRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StkPushRequest")
            .field("business_short_code", &self.business_short_code)
            .field("password", &REDACTED)
            .field("timestamp", &self.timestamp)
            .field("transaction_type", &self.transaction_type)
            .field("amount", &self.amount)
            .field("party_a", &mask_phone_text(self.party_a.as_str()))
            .field("party_b", &self.party_b)
            .field("phone_number", &mask_phone_text(self.phone_number.as_str()))
            .field("callback_url", &url_origin(&self.callback_url))
            .field("account_reference", &self.account_reference)
            .field("transaction_desc", &self.transaction_desc)
            .finish()
    }
}

/// The synchronous answer to a push (HTTP 200). `ResponseCode "0"` means "accepted", never
/// "paid".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StkPushResponse {
    #[serde(rename = "MerchantRequestID")]
    pub merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID")]
    pub checkout_request_id: String,
    #[serde(rename = "ResponseCode")]
    pub response_code: WireCode,
    #[serde(rename = "ResponseDescription", default)]
    pub response_description: String,
    #[serde(rename = "CustomerMessage", default)]
    pub customer_message: String,
}

impl StkPushResponse {
    /// The answer as Daraja gives it for an accepted push.
    pub fn accepted(
        merchant_request_id: impl Into<String>,
        checkout_request_id: impl Into<String>,
    ) -> Self {
        let text = "Success. Request accepted for processing";
        StkPushResponse {
            merchant_request_id: merchant_request_id.into(),
            checkout_request_id: checkout_request_id.into(),
            response_code: WireCode::text("0"),
            response_description: text.into(),
            customer_message: text.into(),
        }
    }
}

/// `POST /mpesa/stkpushquery/v1/query`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StkQueryRequest {
    #[serde(rename = "BusinessShortCode")]
    pub business_short_code: LooseString,
    #[serde(rename = "Password")]
    pub password: String,
    #[serde(rename = "Timestamp")]
    pub timestamp: LooseString,
    #[serde(rename = "CheckoutRequestID")]
    pub checkout_request_id: String,
}

impl fmt::Debug for StkQueryRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StkQueryRequest")
            .field("business_short_code", &self.business_short_code)
            .field("password", &REDACTED)
            .field("timestamp", &self.timestamp)
            .field("checkout_request_id", &self.checkout_request_id)
            .finish()
    }
}

/// An STK Query answer that carries a result (HTTP 200). `ResultCode` is a string here
/// (`"0"`, `"1032"`, `"4999"` while still processing). No amount, receipt or phone is returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StkQueryResponse {
    #[serde(
        rename = "ResponseCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_code: Option<WireCode>,
    #[serde(
        rename = "ResponseDescription",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_description: Option<String>,
    #[serde(
        rename = "MerchantRequestID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub merchant_request_id: Option<String>,
    #[serde(
        rename = "CheckoutRequestID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub checkout_request_id: Option<String>,
    #[serde(rename = "ResultCode")]
    pub result_code: WireCode,
    #[serde(rename = "ResultDesc", default)]
    pub result_desc: String,
}

impl StkQueryResponse {
    /// The answer as the live service gives it, including its "successsfully" (sic).
    pub fn with_result(
        merchant_request_id: impl Into<String>,
        checkout_request_id: impl Into<String>,
        result_code: &str,
        result_desc: impl Into<String>,
    ) -> Self {
        StkQueryResponse {
            response_code: Some(WireCode::text("0")),
            response_description: Some(
                "The service request has been accepted successsfully".into(),
            ),
            merchant_request_id: Some(merchant_request_id.into()),
            checkout_request_id: Some(checkout_request_id.into()),
            result_code: WireCode::text(result_code),
            result_desc: result_desc.into(),
        }
    }
}

/// What Safaricom POSTs to `CallBackURL`: `{"Body": {"stkCallback": {...}}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StkCallback {
    #[serde(rename = "Body")]
    pub body: StkCallbackBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StkCallbackBody {
    #[serde(rename = "stkCallback")]
    pub stk_callback: StkCallbackData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StkCallbackData {
    #[serde(rename = "MerchantRequestID", default)]
    pub merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID")]
    pub checkout_request_id: String,
    /// A JSON number (`0`, `1032`), sometimes a string (`"SFC_IC0003"`).
    #[serde(rename = "ResultCode")]
    pub result_code: WireCode,
    #[serde(rename = "ResultDesc", default)]
    pub result_desc: String,
    /// Present only for `ResultCode` 0.
    #[serde(
        rename = "CallbackMetadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub callback_metadata: Option<CallbackMetadata>,
}

/// `{"Item": [{"Name": "Amount", "Value": 1.00}, {"Name": "Balance"}, ...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackMetadata {
    #[serde(rename = "Item", default)]
    pub items: OneOrMany<NameValue>,
}

impl StkCallback {
    /// Reads a callback body and checks what the gateway relies on: a `CheckoutRequestID`, a
    /// `ResultCode`, and for a success (`ResultCode` 0) a `MpesaReceiptNumber`. Unknown fields,
    /// missing items, items without `Value` and number-or-string codes are all accepted.
    pub fn parse(body: &[u8]) -> Result<Self, CallbackParseError> {
        Ok(Self::parse_with_report(body)?.0)
    }

    /// [`StkCallback::parse`], with the report it was checked by (made once: the gateway's
    /// callback path needs both).
    pub fn parse_with_report(body: &[u8]) -> Result<(Self, CallbackReport), CallbackParseError> {
        let callback: StkCallback =
            serde_json::from_slice(body).map_err(CallbackParseError::from_json)?;
        let report = callback.to_report()?;
        Ok((callback, report))
    }

    pub fn data(&self) -> &StkCallbackData {
        &self.body.stk_callback
    }

    pub fn checkout_request_id(&self) -> &str {
        &self.body.stk_callback.checkout_request_id
    }

    pub fn merchant_request_id(&self) -> &str {
        &self.body.stk_callback.merchant_request_id
    }

    pub fn result_code(&self) -> ResultCode {
        self.body.stk_callback.result_code.to_result_code()
    }

    /// A `CallbackMetadata` item's value, looked up by name (never by position).
    pub fn metadata_value(&self, name: &str) -> Option<&WireValue> {
        self.body
            .stk_callback
            .callback_metadata
            .as_ref()?
            .items
            .iter()
            .find(|item| item.name == name)?
            .value
            .as_ref()
    }

    /// The callback as the payment rules see it. `TransactionDate` (East Africa Time) becomes
    /// Unix milliseconds, `PhoneNumber` stays the text Safaricom reported (full, masked or
    /// hashed), and `Amount` is exact, non-negative cents, or `None` when missing, unreadable or
    /// negative (the rules then hold the payment for review rather than settle it).
    pub fn to_report(&self) -> Result<CallbackReport, CallbackParseError> {
        let data = &self.body.stk_callback;
        if data.checkout_request_id.trim().is_empty() {
            return Err(CallbackParseError::Missing("CheckoutRequestID"));
        }
        let result_code = data.result_code.to_result_code();
        if result_code.as_str().is_empty() {
            return Err(CallbackParseError::Missing("ResultCode"));
        }
        let success = if result_code.is_success() {
            let receipt = self
                .metadata_value("MpesaReceiptNumber")
                .and_then(|v| v.as_text())
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .ok_or(CallbackParseError::MissingReceipt)?;
            // A receipt is 10 characters. One that storage cannot keep (over 64, or a NUL
            // PostgreSQL refuses in text) would fail every attempt to apply the callback.
            if receipt.chars().count() > 64 || receipt.contains('\0') {
                return Err(CallbackParseError::InvalidReceipt);
            }
            Some(SuccessDetails {
                receipt,
                // A negative amount is no payment: unreadable, so the payment is held.
                amount: self
                    .metadata_value("Amount")
                    .and_then(WireValue::cents)
                    .filter(|c| c.0 >= 0),
                phone: self
                    .metadata_value("PhoneNumber")
                    .and_then(|v| v.as_text())
                    .map(|t| t.into_owned())
                    .filter(|t| !t.trim().is_empty()),
                transaction_date_ms: self
                    .metadata_value("TransactionDate")
                    .and_then(|v| v.as_text())
                    .and_then(|t| parse_eat_timestamp(&t)),
            })
        } else {
            None
        };
        Ok(CallbackReport {
            result_code,
            result_desc: data.result_desc.clone(),
            success,
        })
    }

    /// A success callback in the shape Safaricom sends: `Amount` as a decimal number (`1.00`),
    /// the valueless `{"Name":"Balance"}` item, `TransactionDate` and `PhoneNumber` as numbers.
    pub fn success(
        merchant_request_id: impl Into<String>,
        checkout_request_id: impl Into<String>,
        amount: Cents,
        receipt: &str,
        transaction_date: &str,
        phone: &str,
    ) -> Self {
        let number_or_string = |text: &str| match text.parse::<i64>() {
            Ok(n) => WireValue::integer(n),
            Err(_) => WireValue::string(text),
        };
        let items = vec![
            NameValue::new("Amount", WireValue::decimal(amount)),
            NameValue::new("MpesaReceiptNumber", WireValue::string(receipt)),
            NameValue::without_value("Balance"),
            NameValue::new("TransactionDate", number_or_string(transaction_date)),
            NameValue::new("PhoneNumber", number_or_string(phone)),
        ];
        StkCallback {
            body: StkCallbackBody {
                stk_callback: StkCallbackData {
                    merchant_request_id: merchant_request_id.into(),
                    checkout_request_id: checkout_request_id.into(),
                    result_code: WireCode::Number(0),
                    result_desc: "The service request is processed successfully.".into(),
                    callback_metadata: Some(CallbackMetadata {
                        items: OneOrMany::Many(items),
                    }),
                },
            },
        }
    }

    /// A failure callback (no `CallbackMetadata`), e.g. `WireCode::number(1032)`,
    /// "Request cancelled by user".
    pub fn failure(
        merchant_request_id: impl Into<String>,
        checkout_request_id: impl Into<String>,
        result_code: WireCode,
        result_desc: impl Into<String>,
    ) -> Self {
        StkCallback {
            body: StkCallbackBody {
                stk_callback: StkCallbackData {
                    merchant_request_id: merchant_request_id.into(),
                    checkout_request_id: checkout_request_id.into(),
                    result_code,
                    result_desc: result_desc.into(),
                    callback_metadata: None,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS_SUCCESS: &str = r#"{"Body":{"stkCallback":{"MerchantRequestID":"2654-4b64-97ff-b827b542881d3130","CheckoutRequestID":"ws_CO_10072024091526171708374149","ResultCode":0,"ResultDesc":"The service request is processed successfully.","CallbackMetadata":{"Item":[{"Name":"Amount","Value":1.00},{"Name":"MpesaReceiptNumber","Value":"SGA1XYZ123"},{"Name":"Balance"},{"Name":"TransactionDate","Value":20240710091541},{"Name":"PhoneNumber","Value":254708374149}]}}}}"#;

    #[test]
    fn built_success_serializes_exactly_like_the_docs_sample() {
        let built = StkCallback::success(
            "2654-4b64-97ff-b827b542881d3130",
            "ws_CO_10072024091526171708374149",
            Cents(100),
            "SGA1XYZ123",
            "20240710091541",
            "254708374149",
        );
        assert_eq!(serde_json::to_string(&built).unwrap(), DOCS_SUCCESS);
        let parsed = StkCallback::parse(DOCS_SUCCESS.as_bytes()).unwrap();
        assert_eq!(parsed, built);
    }

    #[test]
    fn failure_has_a_numeric_code_and_no_metadata() {
        let built = StkCallback::failure(
            "m",
            "ws_CO_1",
            WireCode::number(1032),
            "Request cancelled by user",
        );
        assert_eq!(
            serde_json::to_string(&built).unwrap(),
            r#"{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"ws_CO_1","ResultCode":1032,"ResultDesc":"Request cancelled by user"}}}"#
        );
    }

    /// Found by the `stk_callback` fuzz target's invariant: `"Amount": -1.00` was read as a
    /// payment of minus one shilling.
    #[test]
    fn a_receipt_storage_cannot_keep_is_refused() {
        let long = "S".repeat(65);
        for receipt in [long.as_str(), "SGA1\\u0000XYZ"] {
            let body = DOCS_SUCCESS.replace("SGA1XYZ123", receipt);
            assert!(
                matches!(
                    StkCallback::parse(body.as_bytes()),
                    Err(CallbackParseError::InvalidReceipt)
                ),
                "{receipt}"
            );
        }
        let longest = DOCS_SUCCESS.replace("SGA1XYZ123", &"S".repeat(64));
        assert!(StkCallback::parse(longest.as_bytes()).is_ok());
    }

    #[test]
    fn a_negative_amount_is_unreadable() {
        let body = DOCS_SUCCESS.replace(r#""Value":1.00"#, r#""Value":-1.00"#);
        let report = StkCallback::parse(body.as_bytes())
            .unwrap()
            .to_report()
            .unwrap();
        let success = report.success.unwrap();
        assert_eq!(success.receipt, "SGA1XYZ123");
        assert_eq!(success.amount, None);
    }

    #[test]
    fn query_result_code_is_a_string() {
        let q = StkQueryResponse::with_result(
            "m",
            "ws_CO_1",
            "0",
            "The service request is processed successfully.",
        );
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(json["ResultCode"], serde_json::json!("0"));
        assert_eq!(json["ResponseCode"], serde_json::json!("0"));
    }
}
