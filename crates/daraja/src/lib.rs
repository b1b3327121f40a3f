//! The Safaricom M-Pesa Daraja client of mpesa-gateway, and Daraja's wire types.
//!
//! * [`wire`]: every request, response, error envelope and callback exactly as Safaricom sends
//!   and expects it, `Serialize + Deserialize`, shared with the simulator (`crates/daraja-sim`).
//! * [`DarajaClient`]: STK Push and Query, C2B Register URL (v1/v2) and simulate, B2C v3,
//!   Transaction Status, Account Balance, Reversal, Pull Transactions (register and query).
//!   Cheap to clone, `Send + Sync`.
//! * The OAuth token (inside the client): one shared token, refreshed before it expires, one
//!   token request however many callers wait, and one retry of a call that Daraja refused for
//!   its token. [`DarajaClient::check_credentials`] fetches it for `config check`.
//! * [`security`]: the STK Password/Timestamp (East Africa Time, one clock reading) and the
//!   initiator `SecurityCredential` (RSA PKCS#1 v1.5 with Safaricom's bundled certificates).
//! * [`validate`]: Daraja's callback-URL rules.
//!
//! # What is checked before anything is sent
//! * Phone numbers are [`Msisdn`](mpesa_domain::Msisdn)s (`07…`, `+254…` normalised to
//!   `2547…`/`2541…`).
//! * Amounts are whole shillings within the configured [`AmountBounds`](mpesa_domain::AmountBounds)
//!   (B2C has its own bounds, 10–250,000 by default).
//! * `AccountReference` has at most 12 safe characters and is **refused**, never truncated,
//!   when longer ([`AccountReference`](mpesa_domain::AccountReference)). `TransactionDesc` has at
//!   most 13: the gateway **derives** it from the merchant's description with
//!   [`TransactionDesc::derive_from`](mpesa_domain::TransactionDesc::derive_from) (the whole
//!   description is kept in the gateway's records).
//! * Callback URLs follow Daraja's rules: https in production, no whitespace, none of the words
//!   M-PESA/mpesa/Safaricom/exe/exec/cmd/sql/query in any case ([`validate`]).
//!
//! Each failure is its own [`InvalidRequest`] variant naming the Daraja field.
//!
//! # Failures and retries
//! [`DarajaError`] tells a refusal (Daraja's envelope, with `errorCode` and `errorMessage`) from
//! an unreadable answer, a timeout, a broken connection and a connection never made ("not
//! sent"). [`DarajaError::may_have_been_processed`] is true when a POST may have reached Daraja
//! with an unknown outcome; the client never sends such a POST again (the gateway asks STK Query
//! or Transaction Status). The only retry is after an invalid-token refusal, which Daraja gives
//! before processing anything.
//!
//! # Logs
//! Each call is logged at `debug` with the API, the duration and the outcome. Secrets, tokens,
//! passwords and full phone numbers are never logged ([`Msisdn::masked`](mpesa_domain::Msisdn::masked));
//! a token quoted back by Daraja (`401.002.01 … Invalid Access Token - <token>`) is blanked out
//! of the error.

pub mod api;
pub mod client;
pub mod clock;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod metrics;
pub mod redact;
pub mod security;
mod token;
mod transport;
pub mod validate;
pub mod wire;

pub use api::{
    AccountBalanceParams, Api, B2cCommand, B2cParams, C2bAccepted, C2bRegisterParams,
    C2bResponseType, C2bSimulateParams, C2bVersion, IdentifierType, InitiatorAccepted, PullPage,
    PullQueryParams, PullRegisterParams, PullRegistered, ReversalParams, StkPushAccepted,
    StkPushParams, StkQueryAnswer, StkQueryResult, TransactionStatusParams,
};
pub use client::DarajaClient;
pub use clock::{Clock, ManualClock, SystemClock, eat_timestamp, parse_eat_timestamp};
pub use config::{CertificateSource, DarajaConfig, Environment, TransactionType};
pub use error::{CallbackParseError, ConfigError, DarajaError, InvalidRequest, error_chain};
pub use metrics::{CallCount, MetricsSnapshot};
pub use security::{
    EncryptionCertificate, SecurityCredential, SecurityError, StkPassword, stk_password,
    stk_password_at,
};
pub use token::{SharedToken, SharedTokenError, SharedTokenStore};
pub use validate::{UrlProblem, check_callback_url, parse_callback_url};
pub use wire::{C2bPayment, ResultEnvelope, StkCallback};

/// Installs rustls' `ring` crypto provider for the process, once; a provider installed earlier
/// (by us or anyone) is left in place. reqwest is built without a provider of its own, so this
/// must run before any HTTP client is built; [`DarajaClient::new`] calls it.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error only means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
