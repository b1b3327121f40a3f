//! Daraja's JSON exactly as Safaricom sends and expects it.
//!
//! Every request, response, error envelope and callback type here implements both `Serialize`
//! and `Deserialize`, so the client and the simulator (`crates/daraja-sim`) share one definition
//! and cannot drift:
//! * serializing gives Safaricom's shapes byte for byte where it matters: the STK callback's
//!   `ResultCode` as a number and the STK Query's as a string, the callback `Amount` as a decimal
//!   number (`1.00`), the valueless `{"Name":"Balance"}` item, and the misspelt keys
//!   `OriginatorCoversationID`, `RecieverIdentifierType` and `Occassion`;
//! * deserializing is tolerant of real payloads: codes, amounts and shortcodes as numbers or
//!   strings, `ResultParameter`/`ReferenceItem` as an object or an array, items without `Value`,
//!   masked or hashed MSISDNs, and unknown extra fields;
//! * money is never parsed through `f64`: amounts are kept as their JSON text ([`WireValue`]) and
//!   read with `mpesa_domain::Cents::parse`.
//!
//! Parse callbacks from the raw bytes (`StkCallback::parse`, `C2bPayment::parse`,
//! `ResultEnvelope::parse`), not through a `serde_json::Value`, which would lose the original
//! digits of amounts.

pub mod c2b;
pub mod common;
pub mod initiator;
pub mod oauth;
pub mod pull;
pub mod result;
pub mod stk;

pub use c2b::{
    C2bConfirmation, C2bPayment, C2bRejection, C2bResponse, C2bSimulateRequest,
    C2bValidationAnswer, C2bValidationRequest, RegisterUrlRequest, confirmation_answer,
};
pub use common::{
    CallbackAnswer, ErrorEnvelope, KeyValue, LooseString, NameValue, OneOrMany, WireCode, WireValue,
};
pub use initiator::{
    AccountBalanceRequest, B2cRequest, InitiatorResponse, ReversalRequest, TransactionStatusRequest,
};
pub use oauth::TokenResponse;
pub use pull::{
    PullQueryRequest, PullQueryResponse, PullRegisterRequest, PullRegisterResponse, PullTransaction,
};
pub use result::{
    AccountBalance, AccountBalances, B2cPayout, ReferenceData, ResultBody, ResultEnvelope,
    ResultParameters, ReversalDetails, TransactionStatusDetails, parse_account_balance,
};
pub use stk::{
    CallbackMetadata, StkCallback, StkCallbackBody, StkCallbackData, StkPushRequest,
    StkPushResponse, StkQueryRequest, StkQueryResponse,
};

/// Every endpoint path, relative to the base URL.
pub mod paths {
    pub use super::c2b::{
        C2B_REGISTER_URL_V1_PATH, C2B_REGISTER_URL_V2_PATH, C2B_SIMULATE_V1_PATH,
        C2B_SIMULATE_V2_PATH,
    };
    pub use super::initiator::{
        ACCOUNT_BALANCE_PATH, B2C_V1_PATH, B2C_V3_PATH, REVERSAL_PATH, TRANSACTION_STATUS_PATH,
    };
    pub use super::oauth::TOKEN_PATH;
    pub use super::pull::{PULL_QUERY_PATH, PULL_REGISTER_PATH};
    pub use super::stk::{STK_PUSH_PATH, STK_QUERY_PATH};
}
