//! The initiator APIs: B2C (v3 and legacy v1), Transaction Status, Account Balance and Reversal.
//! Each is acknowledged synchronously ([`InitiatorResponse`]); the outcome arrives later at
//! `ResultURL` as a [`super::result::ResultEnvelope`].

use std::fmt;

use serde::{Deserialize, Serialize};

use super::common::{LooseString, WireCode, WireValue};
use crate::redact::{REDACTED, mask_phone_text};

pub const B2C_V3_PATH: &str = "/mpesa/b2c/v3/paymentrequest";
pub const B2C_V1_PATH: &str = "/mpesa/b2c/v1/paymentrequest";
pub const TRANSACTION_STATUS_PATH: &str = "/mpesa/transactionstatus/v1/query";
pub const ACCOUNT_BALANCE_PATH: &str = "/mpesa/accountbalance/v1/query";
pub const REVERSAL_PATH: &str = "/mpesa/reversal/v1/request";

/// `POST /mpesa/b2c/v3/paymentrequest`. `OriginatorConversationID` is ours and guards against
/// paying twice (a repeat is refused with `500.002.1001`). Note `InitiatorName` (the other APIs
/// say `Initiator`) and `Occassion` (sic, as in the v3 docs; `Occasion` is read too).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct B2cRequest {
    /// Required for v3, absent for v1.
    #[serde(
        rename = "OriginatorConversationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub originator_conversation_id: Option<String>,
    #[serde(rename = "InitiatorName")]
    pub initiator_name: String,
    #[serde(rename = "SecurityCredential")]
    pub security_credential: String,
    /// `BusinessPayment`, `SalaryPayment` or `PromotionPayment`.
    #[serde(rename = "CommandID")]
    pub command_id: String,
    #[serde(rename = "Amount")]
    pub amount: WireValue,
    #[serde(rename = "PartyA")]
    pub party_a: LooseString,
    #[serde(rename = "PartyB")]
    pub party_b: LooseString,
    #[serde(rename = "Remarks")]
    pub remarks: String,
    #[serde(rename = "QueueTimeOutURL")]
    pub queue_timeout_url: String,
    #[serde(rename = "ResultURL")]
    pub result_url: String,
    #[serde(
        rename = "Occassion",
        alias = "Occasion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub occasion: Option<String>,
}

impl fmt::Debug for B2cRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("B2cRequest")
            .field(
                "originator_conversation_id",
                &self.originator_conversation_id,
            )
            .field("initiator_name", &self.initiator_name)
            .field("security_credential", &REDACTED)
            .field("command_id", &self.command_id)
            .field("amount", &self.amount)
            .field("party_a", &self.party_a)
            .field("party_b", &mask_phone_text(self.party_b.as_str()))
            .field("remarks", &self.remarks)
            .field("occasion", &self.occasion)
            .finish_non_exhaustive()
    }
}

/// `POST /mpesa/transactionstatus/v1/query`. Give `TransactionID` (the receipt) or
/// `OriginalConversationID` (the OriginatorConversationID of the transaction sought).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionStatusRequest {
    #[serde(rename = "Initiator")]
    pub initiator: String,
    #[serde(rename = "SecurityCredential")]
    pub security_credential: String,
    /// `TransactionStatusQuery`.
    #[serde(rename = "CommandID")]
    pub command_id: String,
    #[serde(
        rename = "TransactionID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_id: Option<String>,
    #[serde(
        rename = "OriginalConversationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub original_conversation_id: Option<String>,
    #[serde(rename = "PartyA")]
    pub party_a: LooseString,
    /// `"4"` shortcode, `"2"` till, `"1"` MSISDN.
    #[serde(rename = "IdentifierType")]
    pub identifier_type: LooseString,
    #[serde(rename = "ResultURL")]
    pub result_url: String,
    #[serde(rename = "QueueTimeOutURL")]
    pub queue_timeout_url: String,
    #[serde(rename = "Remarks")]
    pub remarks: String,
    #[serde(
        rename = "Occasion",
        alias = "Occassion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub occasion: Option<String>,
}

impl fmt::Debug for TransactionStatusRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionStatusRequest")
            .field("initiator", &self.initiator)
            .field("security_credential", &REDACTED)
            .field("transaction_id", &self.transaction_id)
            .field("original_conversation_id", &self.original_conversation_id)
            .field("party_a", &self.party_a)
            .field("identifier_type", &self.identifier_type)
            .finish_non_exhaustive()
    }
}

/// `POST /mpesa/accountbalance/v1/query`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBalanceRequest {
    #[serde(rename = "Initiator")]
    pub initiator: String,
    #[serde(rename = "SecurityCredential")]
    pub security_credential: String,
    /// `AccountBalance`.
    #[serde(rename = "CommandID")]
    pub command_id: String,
    #[serde(rename = "PartyA")]
    pub party_a: LooseString,
    #[serde(rename = "IdentifierType")]
    pub identifier_type: LooseString,
    #[serde(rename = "Remarks")]
    pub remarks: String,
    #[serde(rename = "QueueTimeOutURL")]
    pub queue_timeout_url: String,
    #[serde(rename = "ResultURL")]
    pub result_url: String,
}

impl fmt::Debug for AccountBalanceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountBalanceRequest")
            .field("initiator", &self.initiator)
            .field("security_credential", &REDACTED)
            .field("party_a", &self.party_a)
            .field("identifier_type", &self.identifier_type)
            .finish_non_exhaustive()
    }
}

/// `POST /mpesa/reversal/v1/request`. `RecieverIdentifierType` is misspelt on purpose: the
/// correctly spelt key is refused with `400.002.02 Bad Request - Invalid RecieverIdentifierType`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalRequest {
    #[serde(rename = "Initiator")]
    pub initiator: String,
    #[serde(rename = "SecurityCredential")]
    pub security_credential: String,
    /// `TransactionReversal`.
    #[serde(rename = "CommandID")]
    pub command_id: String,
    /// The receipt of the payment to reverse.
    #[serde(rename = "TransactionID")]
    pub transaction_id: String,
    #[serde(rename = "Amount")]
    pub amount: WireValue,
    /// Our own shortcode (the one that received the money).
    #[serde(rename = "ReceiverParty")]
    pub receiver_party: LooseString,
    /// `"11"` in the current docs.
    #[serde(rename = "RecieverIdentifierType")]
    pub reciever_identifier_type: LooseString,
    #[serde(rename = "ResultURL")]
    pub result_url: String,
    #[serde(rename = "QueueTimeOutURL")]
    pub queue_timeout_url: String,
    #[serde(rename = "Remarks")]
    pub remarks: String,
    #[serde(
        rename = "Occasion",
        alias = "Occassion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub occasion: Option<String>,
}

impl fmt::Debug for ReversalRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReversalRequest")
            .field("initiator", &self.initiator)
            .field("security_credential", &REDACTED)
            .field("transaction_id", &self.transaction_id)
            .field("amount", &self.amount)
            .field("receiver_party", &self.receiver_party)
            .finish_non_exhaustive()
    }
}

/// The synchronous acknowledgement of every initiator API (HTTP 200). `ResponseCode "0"` only
/// means "queued"; the verdict comes in the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitiatorResponse {
    #[serde(rename = "OriginatorConversationID", default)]
    pub originator_conversation_id: String,
    #[serde(rename = "ConversationID", default)]
    pub conversation_id: String,
    #[serde(rename = "ResponseCode")]
    pub response_code: WireCode,
    #[serde(rename = "ResponseDescription", default)]
    pub response_description: String,
}

impl InitiatorResponse {
    pub fn accepted(
        originator_conversation_id: impl Into<String>,
        conversation_id: impl Into<String>,
    ) -> Self {
        InitiatorResponse {
            originator_conversation_id: originator_conversation_id.into(),
            conversation_id: conversation_id.into(),
            response_code: WireCode::text("0"),
            response_description: "Accept the service request successfully.".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversal_uses_the_misspelt_key_and_b2c_the_v3_occassion() {
        let reversal = ReversalRequest {
            initiator: "apiop37".into(),
            security_credential: "c2VjcmV0".into(),
            command_id: "TransactionReversal".into(),
            transaction_id: "PDU91HIVIT".into(),
            amount: WireValue::integer(200),
            receiver_party: "603021".into(),
            reciever_identifier_type: "11".into(),
            result_url: "https://example.com/r".into(),
            queue_timeout_url: "https://example.com/t".into(),
            remarks: "Payment reversal".into(),
            occasion: None,
        };
        let json = serde_json::to_value(&reversal).unwrap();
        assert_eq!(json["RecieverIdentifierType"], "11");
        assert!(json.get("ReceiverIdentifierType").is_none());
        assert!(!format!("{reversal:?}").contains("c2VjcmV0"));

        let b2c: B2cRequest = serde_json::from_str(
            r#"{"OriginatorConversationID":"x","InitiatorName":"testapi","SecurityCredential":"s","CommandID":"BusinessPayment","Amount":10,"PartyA":600997,"PartyB":254708374149,"Remarks":"Refund order 42","QueueTimeOutURL":"https://e/t","ResultURL":"https://e/r","Occasion":"Refund"}"#,
        )
        .unwrap();
        assert_eq!(b2c.occasion.as_deref(), Some("Refund"));
        let json = serde_json::to_value(&b2c).unwrap();
        assert_eq!(json["Occassion"], "Refund");
        assert_eq!(json["PartyB"], "254708374149");
    }
}
