//! The `Result` body M-Pesa POSTs to `ResultURL` for B2C, Transaction Status, Account Balance and
//! Reversal, with typed views of each API's `ResultParameters`.

use mpesa_domain::{Cents, ResultCode};
use serde::{Deserialize, Serialize};

use super::common::{KeyValue, OneOrMany, WireCode, WireValue};
use crate::clock::{parse_eat_dotted, parse_eat_timestamp};
use crate::error::CallbackParseError;

/// `{"Result": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultEnvelope {
    #[serde(rename = "Result")]
    pub result: ResultBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultBody {
    /// `0` completed, `1` waiting for further messages; a number or a string.
    #[serde(
        rename = "ResultType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub result_type: Option<WireCode>,
    /// A number, a numeric string or a non-numeric string (`"R000002"`). Compare as text.
    #[serde(rename = "ResultCode")]
    pub result_code: WireCode,
    #[serde(rename = "ResultDesc", default)]
    pub result_desc: String,
    #[serde(rename = "OriginatorConversationID", default)]
    pub originator_conversation_id: String,
    #[serde(rename = "ConversationID", default)]
    pub conversation_id: String,
    /// The receipt on success; a placeholder like `SKE0000000` on failure.
    #[serde(
        rename = "TransactionID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_id: Option<String>,
    /// Absent on most failures.
    #[serde(
        rename = "ResultParameters",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub result_parameters: Option<ResultParameters>,
    #[serde(
        rename = "ReferenceData",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reference_data: Option<ReferenceData>,
}

/// `{"ResultParameter": [...]}` or `{"ResultParameter": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultParameters {
    #[serde(rename = "ResultParameter", default)]
    pub result_parameter: OneOrMany<KeyValue>,
}

/// `{"ReferenceItem": {...}}` or `{"ReferenceItem": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceData {
    #[serde(rename = "ReferenceItem", default)]
    pub reference_item: OneOrMany<KeyValue>,
}

impl ResultEnvelope {
    /// Reads a result body; it must name a conversation and carry a `ResultCode`.
    pub fn parse(body: &[u8]) -> Result<Self, CallbackParseError> {
        let envelope: ResultEnvelope =
            serde_json::from_slice(body).map_err(CallbackParseError::from_json)?;
        let r = &envelope.result;
        if r.conversation_id.trim().is_empty() && r.originator_conversation_id.trim().is_empty() {
            return Err(CallbackParseError::Missing("ConversationID"));
        }
        if r.result_code.as_text().is_empty() {
            return Err(CallbackParseError::Missing("ResultCode"));
        }
        Ok(envelope)
    }

    pub fn result_code(&self) -> ResultCode {
        self.result.result_code.to_result_code()
    }

    pub fn is_success(&self) -> bool {
        self.result.result_code.is_success()
    }

    /// A `ResultParameter`'s value, looked up by key. Valueless items give `None`.
    pub fn parameter(&self, key: &str) -> Option<&WireValue> {
        self.result
            .result_parameters
            .as_ref()?
            .result_parameter
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()
    }

    /// A `ReferenceItem`'s value, looked up by key.
    pub fn reference(&self, key: &str) -> Option<&WireValue> {
        self.result
            .reference_data
            .as_ref()?
            .reference_item
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()
    }

    fn text(&self, key: &str) -> Option<String> {
        self.parameter(key)
            .and_then(|v| v.as_text())
            .map(|t| t.into_owned())
            .filter(|t| !t.is_empty())
    }

    fn cents(&self, key: &str) -> Result<Option<Cents>, CallbackParseError> {
        match self.parameter(key) {
            None => Ok(None),
            Some(v) if v.as_text().is_none_or(|t| t.trim().is_empty()) => Ok(None),
            Some(v) => v
                .cents()
                .map(Some)
                .ok_or_else(|| CallbackParseError::InvalidAmount {
                    field: static_key(key),
                    value: v.json().chars().take(32).collect(),
                }),
        }
    }

    /// Like [`Self::cents`], for an amount that moved (never negative); balances use `cents`.
    fn moved_cents(&self, key: &str) -> Result<Option<Cents>, CallbackParseError> {
        match self.cents(key)? {
            Some(c) if c.0 < 0 => Err(CallbackParseError::InvalidAmount {
                field: static_key(key),
                value: c.to_string(),
            }),
            other => Ok(other),
        }
    }

    fn eat_time(&self, key: &str) -> Option<i64> {
        let t = self.text(key)?;
        parse_eat_timestamp(&t).or_else(|| parse_eat_dotted(&t))
    }

    /// A B2C payout's details; `None` when the result is not a success. A success must name its
    /// receipt (`TransactionReceipt` or `TransactionID`).
    pub fn b2c(&self) -> Result<Option<B2cPayout>, CallbackParseError> {
        if !self.is_success() {
            return Ok(None);
        }
        let receipt = self
            .text("TransactionReceipt")
            .or_else(|| {
                self.result
                    .transaction_id
                    .clone()
                    .filter(|t| !t.trim().is_empty())
            })
            .ok_or(CallbackParseError::Missing("TransactionReceipt"))?;
        Ok(Some(B2cPayout {
            receipt,
            amount: self.moved_cents("TransactionAmount")?,
            receiver_party_public_name: self.text("ReceiverPartyPublicName"),
            completed_at_ms: self.eat_time("TransactionCompletedDateTime"),
            utility_account_available_funds: self.cents("B2CUtilityAccountAvailableFunds")?,
            working_account_available_funds: self.cents("B2CWorkingAccountAvailableFunds")?,
            charges_paid_account_available_funds: self
                .cents("B2CChargesPaidAccountAvailableFunds")?,
            recipient_is_registered_customer: self
                .text("B2CRecipientIsRegisteredCustomer")
                .map(|t| t.eq_ignore_ascii_case("Y")),
        }))
    }

    /// A Transaction Status answer's details; `None` when the query did not succeed.
    pub fn transaction_status(
        &self,
    ) -> Result<Option<TransactionStatusDetails>, CallbackParseError> {
        if !self.is_success() {
            return Ok(None);
        }
        Ok(Some(TransactionStatusDetails {
            receipt_no: self.text("ReceiptNo"),
            transaction_status: self.text("TransactionStatus"),
            amount: self.moved_cents("Amount")?,
            debit_party_name: self.text("DebitPartyName"),
            credit_party_name: self.text("CreditPartyName"),
            originator_conversation_id: self.text("OriginatorConversationID"),
            conversation_id: self.text("ConversationID"),
            initiated_at_ms: self.eat_time("InitiatedTime"),
            finalised_at_ms: self.eat_time("FinalisedTime"),
            debit_account_type: self.text("DebitAccountType"),
            reason_type: self.text("ReasonType"),
            transaction_reason: self.text("TransactionReason"),
            debit_party_charges: self.text("DebitPartyCharges"),
            credit_party_charges: self.text("CreditPartyCharges"),
        }))
    }

    /// An Account Balance answer's accounts; `None` when the query did not succeed. A success
    /// must carry a readable `AccountBalance`.
    pub fn account_balance(&self) -> Result<Option<AccountBalances>, CallbackParseError> {
        if !self.is_success() {
            return Ok(None);
        }
        let text = self
            .text("AccountBalance")
            .ok_or(CallbackParseError::Missing("AccountBalance"))?;
        Ok(Some(AccountBalances {
            accounts: parse_account_balance(&text)?,
            completed_at_ms: self.eat_time("BOCompletedTime"),
        }))
    }

    /// A Reversal's details; `None` when it did not succeed (`R000001` already reversed,
    /// `R000002` unknown receipt…).
    pub fn reversal(&self) -> Result<Option<ReversalDetails>, CallbackParseError> {
        if !self.is_success() {
            return Ok(None);
        }
        let debit_account_balance = match self.text("DebitAccountBalance") {
            Some(t) => parse_account_balance(&t)?,
            None => Vec::new(),
        };
        Ok(Some(ReversalDetails {
            transaction_id: self.result.transaction_id.clone(),
            original_transaction_id: self.text("OriginalTransactionID"),
            amount: self.moved_cents("Amount")?,
            charge: self.moved_cents("Charge")?,
            completed_at_ms: self.eat_time("TransCompletedTime"),
            credit_party_public_name: self.text("CreditPartyPublicName"),
            debit_party_public_name: self.text("DebitPartyPublicName"),
            debit_account_balance,
        }))
    }
}

// The keys passed to `cents` are literals in this file; keep the error's field `'static`.
fn static_key(key: &str) -> &'static str {
    const KEYS: &[&str] = &[
        "TransactionAmount",
        "B2CUtilityAccountAvailableFunds",
        "B2CWorkingAccountAvailableFunds",
        "B2CChargesPaidAccountAvailableFunds",
        "Amount",
        "Charge",
    ];
    KEYS.iter()
        .find(|k| **k == key)
        .copied()
        .unwrap_or("ResultParameter")
}

/// A successful B2C payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B2cPayout {
    pub receipt: String,
    pub amount: Option<Cents>,
    /// `"<MSISDN> - <NAME>"`: personal data.
    pub receiver_party_public_name: Option<String>,
    pub completed_at_ms: Option<i64>,
    pub utility_account_available_funds: Option<Cents>,
    pub working_account_available_funds: Option<Cents>,
    pub charges_paid_account_available_funds: Option<Cents>,
    pub recipient_is_registered_customer: Option<bool>,
}

/// What Transaction Status found. Check `transaction_status == "Completed"`, the receipt and the
/// amount before trusting a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionStatusDetails {
    pub receipt_no: Option<String>,
    pub transaction_status: Option<String>,
    pub amount: Option<Cents>,
    pub debit_party_name: Option<String>,
    pub credit_party_name: Option<String>,
    pub originator_conversation_id: Option<String>,
    pub conversation_id: Option<String>,
    pub initiated_at_ms: Option<i64>,
    pub finalised_at_ms: Option<i64>,
    pub debit_account_type: Option<String>,
    pub reason_type: Option<String>,
    pub transaction_reason: Option<String>,
    pub debit_party_charges: Option<String>,
    pub credit_party_charges: Option<String>,
}

/// The accounts of a shortcode from an Account Balance result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBalances {
    pub accounts: Vec<AccountBalance>,
    pub completed_at_ms: Option<i64>,
}

impl AccountBalances {
    pub fn account(&self, name: &str) -> Option<&AccountBalance> {
        self.accounts
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// One account: `name | currency | current | available | reserved | uncleared`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBalance {
    pub name: String,
    pub currency: String,
    pub current: Cents,
    pub available: Cents,
    pub reserved: Cents,
    pub uncleared: Cents,
}

/// A successful Reversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalDetails {
    pub transaction_id: Option<String>,
    pub original_transaction_id: Option<String>,
    pub amount: Option<Cents>,
    pub charge: Option<Cents>,
    pub completed_at_ms: Option<i64>,
    pub credit_party_public_name: Option<String>,
    pub debit_party_public_name: Option<String>,
    pub debit_account_balance: Vec<AccountBalance>,
}

/// Parses `Working Account|KES|700000.00|700000.00|0.00|0.00&Utility Account|KES|...`: accounts
/// split on `&`, fields on `|`. Amounts may be negative. A trailing `&` is tolerated.
pub fn parse_account_balance(text: &str) -> Result<Vec<AccountBalance>, CallbackParseError> {
    let mut accounts = Vec::new();
    for part in text.split('&').map(str::trim).filter(|p| !p.is_empty()) {
        let fields: Vec<&str> = part.split('|').map(str::trim).collect();
        let [name, currency, current, available, reserved, uncleared] = fields.as_slice() else {
            return Err(CallbackParseError::InvalidAccountBalance(format!(
                "expected 6 fields separated by |, found {}",
                fields.len()
            )));
        };
        let amount = |field: &str, what: &str| {
            Cents::parse(field).ok_or_else(|| {
                CallbackParseError::InvalidAccountBalance(format!(
                    "{what} of {name} is not an amount"
                ))
            })
        };
        accounts.push(AccountBalance {
            name: (*name).to_owned(),
            currency: (*currency).to_owned(),
            current: amount(current, "current balance")?,
            available: amount(available, "available balance")?,
            reserved: amount(reserved, "reserved amount")?,
            uncleared: amount(uncleared, "uncleared amount")?,
        });
    }
    if accounts.is_empty() {
        return Err(CallbackParseError::InvalidAccountBalance(
            "no accounts".into(),
        ));
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_balance_string() {
        let a = parse_account_balance(
            "Working Account|KES|700000.00|700000.00|0.00|0.00&Charges Paid Account|KES|-1540.00|-1540.00|0.00|0.00",
        )
        .unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].name, "Working Account");
        assert_eq!(a[0].available, Cents(70_000_000));
        assert_eq!(a[1].current, Cents(-154_000));
        assert!(parse_account_balance("Working Account|KES|abc|0|0|0").is_err());
        assert!(parse_account_balance("Working Account|KES|1").is_err());
        assert!(parse_account_balance("").is_err());
    }
}
