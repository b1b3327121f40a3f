//! Pull Transactions: the reconciliation API that lists what a shortcode received, including
//! payments whose C2B confirmation never arrived (`shared/daraja/c2b.md`, "Pull Transactions").
//! Register once (`RequestType: "Pull"`), then query a date window page by page with
//! `OffSetValue`.

use std::fmt;

use mpesa_domain::Cents;
use serde::{Deserialize, Serialize};

use super::common::{LooseString, WireValue};
use crate::redact::{mask_phone_text, url_origin};

pub const PULL_REGISTER_PATH: &str = "/pulltransactions/v1/register";
pub const PULL_QUERY_PATH: &str = "/pulltransactions/v1/query";

/// `ResponseStatus` / `ResponseCode` of success.
pub const PULL_SUCCESS: &str = "1000";
/// Register: the shortcode was already registered. Query: no transactions in the window.
pub const PULL_ALREADY_OR_EMPTY: &str = "1001";

/// The format of `StartDate` and `EndDate` (East Africa Time).
pub const PULL_DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// `POST /pulltransactions/v1/register`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRegisterRequest {
    #[serde(rename = "ShortCode")]
    pub short_code: LooseString,
    /// Always `Pull`.
    #[serde(rename = "RequestType")]
    pub request_type: String,
    /// The MSISDN Safaricom notifies about the registration.
    #[serde(rename = "NominatedNumber")]
    pub nominated_number: LooseString,
    #[serde(rename = "CallBackURL")]
    pub callback_url: String,
}

impl fmt::Debug for PullRegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullRegisterRequest")
            .field("short_code", &self.short_code)
            .field("request_type", &self.request_type)
            .field(
                "nominated_number",
                &mask_phone_text(self.nominated_number.as_str()),
            )
            .field("callback_url", &url_origin(&self.callback_url))
            .finish()
    }
}

/// The answer to register: `ResponseStatus` `1000` "Shortcode Registered Successfully" or
/// `1001` (already registered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRegisterResponse {
    #[serde(rename = "ResponseRefID", default)]
    pub response_ref_id: String,
    #[serde(rename = "ResponseStatus", default)]
    pub response_status: LooseString,
    #[serde(rename = "ShortCode", default)]
    pub short_code: LooseString,
    #[serde(rename = "ResponseDescription", default)]
    pub response_description: String,
}

/// `POST /pulltransactions/v1/query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullQueryRequest {
    #[serde(rename = "ShortCode")]
    pub short_code: LooseString,
    /// `YYYY-MM-DD HH:mm:ss`, East Africa Time.
    #[serde(rename = "StartDate")]
    pub start_date: String,
    #[serde(rename = "EndDate")]
    pub end_date: String,
    /// The index of the first record of the page (`"0"` for the first page).
    #[serde(rename = "OffSetValue")]
    pub offset_value: LooseString,
}

/// The answer to a query: `ResponseCode` `1000` with the records, `1001` when there are none.
/// `Response` is a list holding one list of records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullQueryResponse {
    #[serde(rename = "ResponseRefID", default)]
    pub response_ref_id: String,
    #[serde(rename = "ResponseCode", default)]
    pub response_code: LooseString,
    #[serde(rename = "ResponseMessage", default)]
    pub response_message: String,
    #[serde(rename = "Response", default)]
    pub response: Vec<Vec<PullTransaction>>,
}

impl PullQueryResponse {
    /// Every record, whatever the nesting.
    pub fn transactions(&self) -> impl Iterator<Item = &PullTransaction> {
        self.response.iter().flatten()
    }
}

/// One transaction the shortcode received. Note the lower-case keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullTransaction {
    /// The M-Pesa receipt (`TransID` of the C2B confirmation).
    #[serde(rename = "transactionId")]
    pub transaction_id: String,
    /// ISO 8601 (`2024-02-06T14:52:04Z`; some answers carry `+03:00`).
    #[serde(rename = "trxDate", default)]
    pub trx_date: String,
    #[serde(rename = "msisdn", default)]
    pub msisdn: LooseString,
    #[serde(rename = "sender", default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// `c2b-pay-bill-debit`, `c2b-buy-goods-debit`, …
    #[serde(rename = "transactiontype", default)]
    pub transaction_type: String,
    /// The account number (empty for Buy Goods).
    #[serde(rename = "billreference", default)]
    pub bill_reference: String,
    /// A decimal string, `"2697.0"`.
    #[serde(rename = "amount")]
    pub amount: WireValue,
    #[serde(rename = "organizationname", default)]
    pub organization_name: String,
}

impl fmt::Debug for PullTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullTransaction")
            .field("transaction_id", &self.transaction_id)
            .field("trx_date", &self.trx_date)
            .field("msisdn", &mask_phone_text(self.msisdn.as_str()))
            .field("transaction_type", &self.transaction_type)
            .field("bill_reference", &self.bill_reference)
            .field("amount", &self.amount)
            .finish_non_exhaustive()
    }
}

impl PullTransaction {
    /// Whether the record is money the shortcode received from a customer (`c2b-…`).
    pub fn is_customer_payment(&self) -> bool {
        self.transaction_type
            .trim()
            .to_ascii_lowercase()
            .starts_with("c2b-")
    }

    /// The payment as the rules see it, for the shortcode that was queried (Pull records do not
    /// name it). `None` when the amount is not an exact amount.
    pub fn to_report(&self, short_code: &str) -> Option<mpesa_domain::c2b::C2bReport> {
        Some(mpesa_domain::c2b::C2bReport {
            receipt: self.transaction_id.trim().to_owned(),
            amount: self.amount_cents().filter(|c| c.0 >= 0)?,
            account_reference: mpesa_domain::c2b::stored_account(&self.bill_reference),
            business_short_code: short_code.to_owned(),
            payer_name: None,
            msisdn: mpesa_domain::c2b::PayerMsisdn::classify(self.msisdn.as_str()),
            transaction_time_ms: self.trx_date_ms(),
            transaction_type: if self.transaction_type.contains("buy-goods") {
                "Buy Goods".to_owned()
            } else {
                "Pay Bill".to_owned()
            },
        })
    }

    /// The amount in cents, if it is an exact decimal.
    pub fn amount_cents(&self) -> Option<Cents> {
        self.amount.cents()
    }

    /// Unix milliseconds of `trxDate` (`Z`, an offset, or none: read as East Africa Time).
    pub fn trx_date_ms(&self) -> Option<i64> {
        let t = self.trx_date.trim();
        if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
            return Some(d.timestamp_millis());
        }
        let naive = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").ok()?;
        let eat = chrono::FixedOffset::east_opt(crate::clock::EAT_OFFSET_SECONDS)?;
        naive
            .and_local_timezone(eat)
            .single()
            .map(|d| d.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_answer_as_captured() {
        let raw = r#"{"ResponseRefID":"8bab-42cc-bb85-5056a6c01e6915928124","ResponseCode":"1000","ResponseMessage":"Success","Response":[[{"transactionId":"SB60ABCD12","trxDate":"2025-01-24T10:56:11+03:00","msisdn":254708374149,"sender":"MPESA","transactiontype":"c2b-buy-goods-debit","billreference":"","amount":"2697.0","organizationname":"VENDOR"}]]}"#;
        let answer: PullQueryResponse = serde_json::from_str(raw).unwrap();
        let t: Vec<_> = answer.transactions().collect();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].transaction_id, "SB60ABCD12");
        assert_eq!(t[0].msisdn.as_str(), "254708374149");
        assert_eq!(t[0].amount_cents(), Some(Cents(269_700)));
        assert_eq!(t[0].trx_date_ms(), Some(1_737_705_371_000));
        assert!(!format!("{:?}", t[0]).contains("708374149"));
        let z = PullTransaction {
            trx_date: "2025-01-24T07:56:11Z".into(),
            ..t[0].clone()
        };
        assert_eq!(z.trx_date_ms(), t[0].trx_date_ms());
    }
}
