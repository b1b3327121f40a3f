//! What the gateway hands to the client and gets back: typed parameters (already checked where
//! the domain has a type for it) and typed answers.

use std::fmt;

use mpesa_domain::{
    AccountReference, Amount, AmountBounds, Msisdn, QueryReport, ResultCode, TransactionDesc,
};
use url::Url;

pub use crate::config::C2bVersion;
pub use crate::endpoint::Api;
use crate::error::InvalidRequest;
use crate::redact::url_origin;
use crate::validate::parse_callback_url;

/// `Debug` that shows URLs by their origin only: their paths carry the gateway's secret token.
macro_rules! debug_hiding_url_paths {
    ($ty:ident { $($field:ident),* } urls { $($url:ident),* }) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    $(.field(stringify!($url), &url_origin(self.$url.as_str())))*
                    .finish()
            }
        }
    };
}

debug_hiding_url_paths!(StkPushParams { phone, amount, account_reference, transaction_desc } urls { callback_url });
debug_hiding_url_paths!(C2bRegisterParams { short_code, response_type, version } urls { confirmation_url, validation_url });
debug_hiding_url_paths!(B2cParams { originator_conversation_id, command, amount, phone, remarks, occasion } urls { result_url, queue_timeout_url });
debug_hiding_url_paths!(TransactionStatusParams { transaction_id, original_conversation_id, party_a, identifier_type, remarks, occasion } urls { result_url, queue_timeout_url });
debug_hiding_url_paths!(AccountBalanceParams { party_a, identifier_type, remarks } urls { result_url, queue_timeout_url });
debug_hiding_url_paths!(PullRegisterParams { short_code, nominated_number } urls { callback_url });
debug_hiding_url_paths!(ReversalParams { transaction_id, amount, receiver_party, remarks, occasion } urls { result_url, queue_timeout_url });

/// An STK Push. `AccountReference` (≤ 12 safe characters) is refused when too long, never
/// truncated; `TransactionDesc` (≤ 13) is derived by the gateway from the merchant's description
/// (see [`TransactionDesc::derive_from`]).
#[derive(Clone, PartialEq, Eq)]
pub struct StkPushParams {
    pub phone: Msisdn,
    pub amount: Amount,
    pub account_reference: AccountReference,
    pub transaction_desc: TransactionDesc,
    pub callback_url: Url,
}

impl StkPushParams {
    /// Builds the parameters from what a person typed, refusing each bad field with its own
    /// error: the phone in any accepted form (`07…`, `+254…`), a whole number of shillings
    /// within `bounds`, a reference of at most 12 safe characters, any description (the
    /// `TransactionDesc` is derived from it), and a callback URL Daraja accepts.
    pub fn from_text(
        phone: &str,
        amount: &str,
        account_reference: &str,
        description: &str,
        callback_url: &str,
        bounds: AmountBounds,
        production: bool,
    ) -> Result<Self, InvalidRequest> {
        Ok(StkPushParams {
            phone: Msisdn::parse(phone)?,
            amount: Amount::parse(amount, bounds)?,
            account_reference: AccountReference::parse(account_reference)
                .map_err(InvalidRequest::AccountReference)?,
            transaction_desc: TransactionDesc::derive_from(description),
            callback_url: parse_callback_url(callback_url, production).map_err(|problem| {
                InvalidRequest::Url {
                    field: "CallBackURL",
                    problem,
                }
            })?,
        })
    }
}

/// Daraja accepted the push: the prompt is on its way to the phone. Nothing is paid yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkPushAccepted {
    pub merchant_request_id: String,
    pub checkout_request_id: String,
    pub response_code: String,
    pub response_description: String,
    pub customer_message: String,
}

/// What an STK Query learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StkQueryAnswer {
    /// Daraja returned a `ResultCode` (HTTP 200). `4999` and codes nobody knows still mean
    /// "processing" (`ResultCode::query_verdict` decides).
    Result(StkQueryResult),
    /// HTTP 500 `500.001.1001` "The transaction is being processed" (or its empty-message
    /// variant): no outcome yet, ask again later.
    StillProcessing {
        request_id: String,
        error_code: String,
        error_message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkQueryResult {
    pub result_code: ResultCode,
    pub result_desc: String,
    pub merchant_request_id: Option<String>,
    pub checkout_request_id: Option<String>,
    pub response_code: Option<String>,
    pub response_description: Option<String>,
}

impl StkQueryAnswer {
    /// The answer as the payment rules see it: "still processing" becomes `4999`.
    pub fn to_report(&self) -> QueryReport {
        match self {
            StkQueryAnswer::Result(r) => QueryReport {
                result_code: r.result_code.clone(),
                result_desc: r.result_desc.clone(),
            },
            StkQueryAnswer::StillProcessing { error_message, .. } => QueryReport {
                result_code: ResultCode::new(ResultCode::STILL_PROCESSING),
                result_desc: if error_message.is_empty() {
                    "The transaction is being processed".into()
                } else {
                    error_message.clone()
                },
            },
        }
    }
}

/// What M-Pesa does with a payment when the ValidationURL does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum C2bResponseType {
    Completed,
    Cancelled,
}

impl C2bResponseType {
    pub fn as_str(self) -> &'static str {
        match self {
            C2bResponseType::Completed => "Completed",
            C2bResponseType::Cancelled => "Cancelled",
        }
    }
}

/// C2B Register URL.
#[derive(Clone, PartialEq, Eq)]
pub struct C2bRegisterParams {
    /// Defaults to the configured shortcode.
    pub short_code: Option<String>,
    pub response_type: C2bResponseType,
    pub confirmation_url: Url,
    pub validation_url: Url,
    /// Defaults to the configured version.
    pub version: Option<C2bVersion>,
}

/// C2B simulate (sandbox only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2bSimulateParams {
    pub short_code: Option<String>,
    pub command: crate::config::TransactionType,
    pub amount: Amount,
    pub phone: Msisdn,
    /// The account number; none for Buy Goods.
    pub bill_ref_number: Option<String>,
    pub version: Option<C2bVersion>,
}

/// Register URL and simulate were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2bAccepted {
    /// From the misspelt `OriginatorCoversationID`.
    pub originator_conversation_id: Option<String>,
    pub conversation_id: Option<String>,
    pub response_code: Option<String>,
    pub response_description: String,
}

/// B2C `CommandID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B2cCommand {
    BusinessPayment,
    SalaryPayment,
    PromotionPayment,
}

impl B2cCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            B2cCommand::BusinessPayment => "BusinessPayment",
            B2cCommand::SalaryPayment => "SalaryPayment",
            B2cCommand::PromotionPayment => "PromotionPayment",
        }
    }
}

/// `IdentifierType` of Transaction Status and Account Balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentifierType {
    Msisdn,
    TillNumber,
    #[default]
    ShortCode,
}

impl IdentifierType {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierType::Msisdn => "1",
            IdentifierType::TillNumber => "2",
            IdentifierType::ShortCode => "4",
        }
    }
}

/// A B2C v3 payout. `originator_conversation_id` is ours and unique per payout: Daraja refuses a
/// repeat (`500.002.1001`), which is what makes a payout safe to resolve after a timeout.
#[derive(Clone, PartialEq, Eq)]
pub struct B2cParams {
    pub originator_conversation_id: String,
    pub command: B2cCommand,
    pub amount: Amount,
    pub phone: Msisdn,
    /// 2–100 characters.
    pub remarks: String,
    /// Up to 100 characters.
    pub occasion: Option<String>,
    pub result_url: Url,
    pub queue_timeout_url: Url,
}

/// Transaction Status: by receipt, by OriginatorConversationID, or both.
#[derive(Clone, PartialEq, Eq)]
pub struct TransactionStatusParams {
    pub transaction_id: Option<String>,
    pub original_conversation_id: Option<String>,
    /// Defaults to the initiator shortcode.
    pub party_a: Option<String>,
    pub identifier_type: IdentifierType,
    pub remarks: String,
    pub occasion: Option<String>,
    pub result_url: Url,
    pub queue_timeout_url: Url,
}

/// Account Balance of a shortcode (it can only query itself).
#[derive(Clone, PartialEq, Eq)]
pub struct AccountBalanceParams {
    pub party_a: Option<String>,
    pub identifier_type: IdentifierType,
    pub remarks: String,
    pub result_url: Url,
    pub queue_timeout_url: Url,
}

/// Reversal of a C2B or STK payment that our shortcode received.
#[derive(Clone, PartialEq, Eq)]
pub struct ReversalParams {
    /// The receipt of the payment to reverse.
    pub transaction_id: String,
    pub amount: Amount,
    /// Defaults to the initiator shortcode.
    pub receiver_party: Option<String>,
    pub remarks: String,
    pub occasion: Option<String>,
    pub result_url: Url,
    pub queue_timeout_url: Url,
}

/// An initiator API request was queued; its result will come to `ResultURL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiatorAccepted {
    pub originator_conversation_id: String,
    pub conversation_id: String,
    pub response_code: String,
    pub response_description: String,
}

/// Pull Transactions registration (once per shortcode).
#[derive(Clone, PartialEq, Eq)]
pub struct PullRegisterParams {
    /// Defaults to the configured C2B shortcode.
    pub short_code: Option<String>,
    /// The number Safaricom tells about the registration.
    pub nominated_number: Msisdn,
    pub callback_url: Url,
}

/// Pull Transactions registration was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRegistered {
    /// `1001`: the shortcode was registered before (still a success).
    pub already_registered: bool,
    pub response_ref_id: String,
    pub response_description: String,
}

/// One page of Pull Transactions: what the shortcode received between `start` and `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullQueryParams {
    /// Defaults to the configured C2B shortcode.
    pub short_code: Option<String>,
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
    /// Index of the first record: 0, then the number of records already read.
    pub offset: u32,
}

/// A page of Pull Transactions; empty when Daraja has none (`1001`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullPage {
    pub response_ref_id: String,
    pub transactions: Vec<crate::wire::PullTransaction>,
}
