//! The Daraja client: one shared token, typed calls, and the rule that a POST which may have
//! reached Daraja is never sent again by this client.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use mpesa_domain::{Amount, AmountBounds};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::api::{
    AccountBalanceParams, Api, B2cParams, C2bAccepted, C2bRegisterParams, C2bSimulateParams,
    C2bVersion, InitiatorAccepted, PullPage, PullQueryParams, PullRegisterParams, PullRegistered,
    ReversalParams, StkPushAccepted, StkPushParams, StkQueryAnswer, StkQueryResult,
    TransactionStatusParams,
};
use crate::clock::{Clock, SystemClock};
use crate::config::{DarajaConfig, Environment};
use crate::error::{ConfigError, DarajaError, InvalidRequest};
use crate::install_crypto_provider;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::security::{EncryptionCertificate, SecurityCredential, stk_password_at};
use crate::token::{AccessToken, TokenManager};
use crate::transport::{Transport, decode};
use crate::validate::check_callback_url;
use crate::wire::paths::{
    ACCOUNT_BALANCE_PATH, B2C_V3_PATH, C2B_REGISTER_URL_V1_PATH, C2B_REGISTER_URL_V2_PATH,
    C2B_SIMULATE_V1_PATH, C2B_SIMULATE_V2_PATH, PULL_QUERY_PATH, PULL_REGISTER_PATH, REVERSAL_PATH,
    STK_PUSH_PATH, STK_QUERY_PATH, TRANSACTION_STATUS_PATH,
};
use crate::wire::pull::{PULL_ALREADY_OR_EMPTY, PULL_DATE_FORMAT, PULL_SUCCESS};
use crate::wire::{
    AccountBalanceRequest, B2cRequest, C2bResponse, C2bSimulateRequest, InitiatorResponse,
    LooseString, PullQueryRequest, PullQueryResponse, PullRegisterRequest, PullRegisterResponse,
    RegisterUrlRequest, ReversalRequest, StkPushRequest, StkPushResponse, StkQueryRequest,
    StkQueryResponse, TransactionStatusRequest, WireValue,
};

/// `500.001.1001` answers to STK Query that mean "no outcome yet".
const STILL_PROCESSING_CODE: &str = "500.001.1001";

/// The Daraja client. Cheap to clone (one `Arc` inside), `Send + Sync`: keep one per
/// deployment, e.g. in axum's shared state, so every call shares one access token.
#[derive(Clone)]
pub struct DarajaClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: DarajaConfig,
    transport: Transport,
    tokens: TokenManager,
    certificate: EncryptionCertificate,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for DarajaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DarajaClient")
            .field("environment", &self.inner.config.environment)
            .field("base_url", &self.inner.transport.base_url().as_str())
            .field("shortcode", &self.inner.config.shortcode)
            .finish_non_exhaustive()
    }
}

impl DarajaClient {
    /// Checks the configuration, loads the encryption certificate and builds the HTTP client
    /// (installing the rustls crypto provider first).
    pub fn new(config: DarajaConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// As [`DarajaClient::new`], reading time from `clock` (tests pin or move it).
    pub fn with_clock(config: DarajaConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        install_crypto_provider();
        let certificate = config.validate()?;
        let transport = Transport::new(
            config.effective_base_url(),
            config.connect_timeout,
            config.request_timeout,
        )
        .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        let metrics = Arc::new(Metrics::default());
        let tokens = TokenManager::new(
            config.consumer_key.clone(),
            config.consumer_secret.clone(),
            clock.clone(),
            config.token_refresh_margin,
            metrics.clone(),
            config.request_timeout,
        );
        Ok(DarajaClient {
            inner: Arc::new(Inner {
                config,
                transport,
                tokens,
                certificate,
                clock,
                metrics,
            }),
        })
    }

    pub fn config(&self) -> &DarajaConfig {
        &self.inner.config
    }

    /// The clock the client reads (token lifetimes, STK timestamps): a token store shared
    /// through [`DarajaClient::share_tokens_through`] reads it too, so a refresh lease is
    /// measured against the same time as the token's expiry.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// Shares the access token with the deployment's other instances through `store` (their
    /// database), so that they cost one token request per token lifetime between them instead
    /// of knocking each other's tokens out. Call once, before the first call to Daraja.
    pub fn share_tokens_through(&self, store: Arc<dyn crate::token::SharedTokenStore>) {
        self.inner.tokens.share_through(store);
    }

    pub fn environment(&self) -> Environment {
        self.inner.config.environment
    }

    pub fn base_url(&self) -> &Url {
        self.inner.transport.base_url()
    }

    /// The configured encryption certificate (for `config check`).
    pub fn encryption_certificate(&self) -> &EncryptionCertificate {
        &self.inner.certificate
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    fn production(&self) -> bool {
        self.inner.config.environment == Environment::Production
    }

    /// Gets an access token (from the cache if fresh): proves the consumer key and secret work.
    pub async fn check_credentials(&self) -> Result<(), DarajaError> {
        self.inner
            .tokens
            .get(&self.inner.transport)
            .await
            .map(|_| ())
    }

    /// Asks the customer's phone to pay (M-Pesa Express). `Ok` means Daraja accepted the push,
    /// not that anything was paid. On an error for which `may_have_been_processed()` is true the
    /// push must not be sent again: resolve it with [`DarajaClient::stk_query`].
    pub async fn stk_push(&self, params: &StkPushParams) -> Result<StkPushAccepted, DarajaError> {
        let config = &self.inner.config;
        let amount = within(params.amount, config.amount_bounds)?;
        check_url("CallBackURL", &params.callback_url, self.production())?;
        // One reading of the clock for both Password and Timestamp.
        let password = stk_password_at(&config.shortcode, &config.passkey, self.inner.clock.now());
        let request = StkPushRequest {
            business_short_code: LooseString::from(config.shortcode.as_str()),
            password: password.password,
            timestamp: LooseString(password.timestamp),
            transaction_type: config.transaction_type.as_str().to_owned(),
            amount: WireValue::integer(amount.shillings()),
            party_a: LooseString::from(params.phone.as_str()),
            party_b: LooseString::from(config.effective_party_b()),
            phone_number: LooseString::from(params.phone.as_str()),
            callback_url: params.callback_url.as_str().to_owned(),
            account_reference: LooseString::from(params.account_reference.as_str()),
            transaction_desc: Some(LooseString::from(params.transaction_desc.as_str())),
        };
        tracing::debug!(api = Api::StkPush.as_str(), phone = %params.phone.masked(), amount = amount.shillings(), "sending STK push");
        let response: StkPushResponse = self.call(Api::StkPush, STK_PUSH_PATH, &request).await?;
        if !response.response_code.is_success() {
            return Err(refused_in_body(
                Api::StkPush,
                &response.response_code,
                &response.response_description,
            ));
        }
        if response.checkout_request_id.trim().is_empty() {
            return Err(DarajaError::Malformed {
                api: Api::StkPush,
                status: 200,
                reason: "empty CheckoutRequestID".into(),
            });
        }
        Ok(StkPushAccepted {
            merchant_request_id: response.merchant_request_id,
            checkout_request_id: response.checkout_request_id,
            response_code: response.response_code.as_text().into_owned(),
            response_description: response.response_description,
            customer_message: response.customer_message,
        })
    }

    /// Asks Daraja where a push stands. "Being processed" (HTTP 500 `500.001.1001`, also with an
    /// empty message) is an answer, not an error; "The transaction does not Exist" is a refusal.
    pub async fn stk_query(
        &self,
        checkout_request_id: &str,
    ) -> Result<StkQueryAnswer, DarajaError> {
        let checkout_request_id = checkout_request_id.trim();
        if checkout_request_id.is_empty() {
            return Err(InvalidRequest::Missing {
                field: "CheckoutRequestID",
            }
            .into());
        }
        let config = &self.inner.config;
        let password = stk_password_at(&config.shortcode, &config.passkey, self.inner.clock.now());
        let request = StkQueryRequest {
            business_short_code: LooseString::from(config.shortcode.as_str()),
            password: password.password,
            timestamp: LooseString(password.timestamp),
            checkout_request_id: checkout_request_id.to_owned(),
        };
        match self
            .call::<_, StkQueryResponse>(Api::StkQuery, STK_QUERY_PATH, &request)
            .await
        {
            Ok(r) => {
                let result_code = r.result_code.to_result_code();
                if result_code.as_str().is_empty() {
                    return Err(DarajaError::Malformed {
                        api: Api::StkQuery,
                        status: 200,
                        reason: "empty ResultCode".into(),
                    });
                }
                Ok(StkQueryAnswer::Result(StkQueryResult {
                    result_code,
                    result_desc: r.result_desc,
                    merchant_request_id: r.merchant_request_id,
                    checkout_request_id: r.checkout_request_id,
                    response_code: r.response_code.map(|c| c.as_text().into_owned()),
                    response_description: r.response_description,
                }))
            }
            Err(DarajaError::Refused {
                error_code,
                error_message,
                request_id,
                ..
            }) if error_code == STILL_PROCESSING_CODE && means_still_processing(&error_message) => {
                Ok(StkQueryAnswer::StillProcessing {
                    request_id,
                    error_code,
                    error_message,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Registers the C2B confirmation and validation URLs (v1 or v2, per the parameters or the
    /// configuration).
    pub async fn c2b_register_urls(
        &self,
        params: &C2bRegisterParams,
    ) -> Result<C2bAccepted, DarajaError> {
        let production = self.production();
        check_url("ConfirmationURL", &params.confirmation_url, production)?;
        check_url("ValidationURL", &params.validation_url, production)?;
        let request = RegisterUrlRequest {
            short_code: LooseString::from(
                params
                    .short_code
                    .as_deref()
                    .unwrap_or(&self.inner.config.shortcode),
            ),
            response_type: params.response_type.as_str().to_owned(),
            confirmation_url: params.confirmation_url.as_str().to_owned(),
            validation_url: params.validation_url.as_str().to_owned(),
        };
        let path = match params.version.unwrap_or(self.inner.config.c2b_version) {
            C2bVersion::V1 => C2B_REGISTER_URL_V1_PATH,
            C2bVersion::V2 => C2B_REGISTER_URL_V2_PATH,
        };
        let response: C2bResponse = self.call(Api::C2bRegisterUrl, path, &request).await?;
        c2b_accepted(Api::C2bRegisterUrl, response)
    }

    /// Simulates a customer payment (sandbox only; refused before sending in production).
    pub async fn c2b_simulate(
        &self,
        params: &C2bSimulateParams,
    ) -> Result<C2bAccepted, DarajaError> {
        if self.production() {
            return Err(InvalidRequest::NotInProduction(Api::C2bSimulate).into());
        }
        let amount = within(params.amount, self.inner.config.amount_bounds)?;
        let request = C2bSimulateRequest {
            short_code: LooseString::from(
                params
                    .short_code
                    .as_deref()
                    .unwrap_or(&self.inner.config.shortcode),
            ),
            command_id: params.command.as_str().to_owned(),
            amount: WireValue::integer(amount.shillings()),
            msisdn: LooseString::from(params.phone.as_str()),
            bill_ref_number: params.bill_ref_number.clone(),
        };
        let path = match params.version.unwrap_or(self.inner.config.c2b_version) {
            C2bVersion::V1 => C2B_SIMULATE_V1_PATH,
            C2bVersion::V2 => C2B_SIMULATE_V2_PATH,
        };
        let response: C2bResponse = self.call(Api::C2bSimulate, path, &request).await?;
        c2b_accepted(Api::C2bSimulate, response)
    }

    /// Pays a customer (B2C v3). Never resent after an unknown outcome: Daraja refuses a repeated
    /// `OriginatorConversationID`, and Transaction Status finds the payout by it.
    pub async fn b2c(&self, params: &B2cParams) -> Result<InitiatorAccepted, DarajaError> {
        let (initiator, credential) = self.initiator()?;
        let amount = within(params.amount, self.inner.config.b2c_amount_bounds)?;
        text_length(
            "OriginatorConversationID",
            &params.originator_conversation_id,
            1,
            100,
        )?;
        text_length("Remarks", &params.remarks, 2, 100)?;
        optional_length("Occassion", params.occasion.as_deref(), 100)?;
        self.check_result_urls(&params.result_url, &params.queue_timeout_url)?;
        let request = B2cRequest {
            originator_conversation_id: Some(params.originator_conversation_id.trim().to_owned()),
            initiator_name: initiator,
            security_credential: credential.expose().to_owned(),
            command_id: params.command.as_str().to_owned(),
            amount: WireValue::integer(amount.shillings()),
            party_a: LooseString::from(self.inner.config.effective_initiator_shortcode()),
            party_b: LooseString::from(params.phone.as_str()),
            remarks: params.remarks.trim().to_owned(),
            queue_timeout_url: params.queue_timeout_url.as_str().to_owned(),
            result_url: params.result_url.as_str().to_owned(),
            occasion: params.occasion.clone(),
        };
        tracing::debug!(api = Api::B2c.as_str(), phone = %params.phone.masked(), amount = amount.shillings(), "sending B2C payout");
        let response: InitiatorResponse = self.call(Api::B2c, B2C_V3_PATH, &request).await?;
        initiator_accepted(Api::B2c, response)
    }

    /// Asks for the status of a transaction, by receipt or by OriginatorConversationID.
    pub async fn transaction_status(
        &self,
        params: &TransactionStatusParams,
    ) -> Result<InitiatorAccepted, DarajaError> {
        let (initiator, credential) = self.initiator()?;
        let transaction_id = non_empty(params.transaction_id.as_deref());
        let original_conversation_id = non_empty(params.original_conversation_id.as_deref());
        if transaction_id.is_none() && original_conversation_id.is_none() {
            return Err(InvalidRequest::Missing {
                field: "TransactionID",
            }
            .into());
        }
        text_length("Remarks", &params.remarks, 2, 100)?;
        optional_length("Occasion", params.occasion.as_deref(), 100)?;
        self.check_result_urls(&params.result_url, &params.queue_timeout_url)?;
        let request = TransactionStatusRequest {
            initiator,
            security_credential: credential.expose().to_owned(),
            command_id: "TransactionStatusQuery".into(),
            transaction_id,
            original_conversation_id,
            party_a: LooseString::from(
                params
                    .party_a
                    .as_deref()
                    .unwrap_or(self.inner.config.effective_initiator_shortcode()),
            ),
            identifier_type: LooseString::from(params.identifier_type.as_str()),
            result_url: params.result_url.as_str().to_owned(),
            queue_timeout_url: params.queue_timeout_url.as_str().to_owned(),
            remarks: params.remarks.trim().to_owned(),
            occasion: params.occasion.clone(),
        };
        let response: InitiatorResponse = self
            .call(Api::TransactionStatus, TRANSACTION_STATUS_PATH, &request)
            .await?;
        initiator_accepted(Api::TransactionStatus, response)
    }

    /// Asks for the balances of a shortcode's accounts.
    pub async fn account_balance(
        &self,
        params: &AccountBalanceParams,
    ) -> Result<InitiatorAccepted, DarajaError> {
        let (initiator, credential) = self.initiator()?;
        text_length("Remarks", &params.remarks, 2, 100)?;
        self.check_result_urls(&params.result_url, &params.queue_timeout_url)?;
        let request = AccountBalanceRequest {
            initiator,
            security_credential: credential.expose().to_owned(),
            command_id: "AccountBalance".into(),
            party_a: LooseString::from(
                params
                    .party_a
                    .as_deref()
                    .unwrap_or(self.inner.config.effective_initiator_shortcode()),
            ),
            identifier_type: LooseString::from(params.identifier_type.as_str()),
            remarks: params.remarks.trim().to_owned(),
            queue_timeout_url: params.queue_timeout_url.as_str().to_owned(),
            result_url: params.result_url.as_str().to_owned(),
        };
        let response: InitiatorResponse = self
            .call(Api::AccountBalance, ACCOUNT_BALANCE_PATH, &request)
            .await?;
        initiator_accepted(Api::AccountBalance, response)
    }

    /// Reverses a payment our shortcode received.
    pub async fn reversal(
        &self,
        params: &ReversalParams,
    ) -> Result<InitiatorAccepted, DarajaError> {
        let (initiator, credential) = self.initiator()?;
        let transaction_id = params.transaction_id.trim();
        if transaction_id.is_empty() {
            return Err(InvalidRequest::Missing {
                field: "TransactionID",
            }
            .into());
        }
        if !transaction_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(InvalidRequest::Format {
                field: "TransactionID",
                reason: "must be letters and digits",
            }
            .into());
        }
        text_length("Remarks", &params.remarks, 2, 100)?;
        optional_length("Occasion", params.occasion.as_deref(), 100)?;
        self.check_result_urls(&params.result_url, &params.queue_timeout_url)?;
        let request = ReversalRequest {
            initiator,
            security_credential: credential.expose().to_owned(),
            command_id: "TransactionReversal".into(),
            transaction_id: transaction_id.to_owned(),
            amount: WireValue::integer(params.amount.shillings().max(1)),
            receiver_party: LooseString::from(
                params
                    .receiver_party
                    .as_deref()
                    .unwrap_or(self.inner.config.effective_initiator_shortcode()),
            ),
            reciever_identifier_type: LooseString::from("11"),
            result_url: params.result_url.as_str().to_owned(),
            queue_timeout_url: params.queue_timeout_url.as_str().to_owned(),
            remarks: params.remarks.trim().to_owned(),
            occasion: params.occasion.clone(),
        };
        let response: InitiatorResponse = self.call(Api::Reversal, REVERSAL_PATH, &request).await?;
        initiator_accepted(Api::Reversal, response)
    }

    /// Registers the shortcode for Pull Transactions. `1001` (already registered) is a success
    /// too: the goal is to be registered.
    pub async fn pull_register(
        &self,
        params: &PullRegisterParams,
    ) -> Result<PullRegistered, DarajaError> {
        check_url("CallBackURL", &params.callback_url, self.production())?;
        let request = PullRegisterRequest {
            short_code: LooseString::from(
                params
                    .short_code
                    .as_deref()
                    .unwrap_or(&self.inner.config.shortcode),
            ),
            request_type: "Pull".into(),
            nominated_number: LooseString::from(params.nominated_number.as_str()),
            callback_url: params.callback_url.as_str().to_owned(),
        };
        let response: PullRegisterResponse = self
            .call(Api::PullRegister, PULL_REGISTER_PATH, &request)
            .await?;
        let status = response.response_status.as_str().trim();
        if status != PULL_SUCCESS && status != PULL_ALREADY_OR_EMPTY {
            return Err(refused_in_body(
                Api::PullRegister,
                &crate::wire::WireCode::text(status),
                &response.response_description,
            ));
        }
        Ok(PullRegistered {
            already_registered: status == PULL_ALREADY_OR_EMPTY,
            response_ref_id: response.response_ref_id,
            response_description: response.response_description,
        })
    }

    /// One page of what the shortcode received between `start` and `end` (sent as East Africa
    /// Time). Ask again with `offset` + the records read until a page comes back empty.
    pub async fn pull_query(&self, params: &PullQueryParams) -> Result<PullPage, DarajaError> {
        if params.end < params.start {
            return Err(InvalidRequest::Format {
                field: "EndDate",
                reason: "must not be before StartDate",
            }
            .into());
        }
        let eat = |t: chrono::DateTime<chrono::Utc>| {
            t.with_timezone(&crate::clock::eat())
                .format(PULL_DATE_FORMAT)
                .to_string()
        };
        let request = PullQueryRequest {
            short_code: LooseString::from(
                params
                    .short_code
                    .as_deref()
                    .unwrap_or(&self.inner.config.shortcode),
            ),
            start_date: eat(params.start),
            end_date: eat(params.end),
            offset_value: LooseString(params.offset.to_string()),
        };
        let response: PullQueryResponse =
            self.call(Api::PullQuery, PULL_QUERY_PATH, &request).await?;
        match response.response_code.as_str().trim() {
            PULL_SUCCESS => Ok(PullPage {
                transactions: response.transactions().cloned().collect(),
                response_ref_id: response.response_ref_id,
            }),
            PULL_ALREADY_OR_EMPTY => Ok(PullPage {
                response_ref_id: response.response_ref_id,
                transactions: Vec::new(),
            }),
            other => Err(refused_in_body(
                Api::PullQuery,
                &crate::wire::WireCode::text(other),
                &response.response_message,
            )),
        }
    }

    /// A `SecurityCredential` for the configured initiator password and certificate.
    pub fn security_credential(&self) -> Result<SecurityCredential, DarajaError> {
        self.initiator().map(|(_, credential)| credential)
    }

    fn initiator(&self) -> Result<(String, SecurityCredential), DarajaError> {
        let config = &self.inner.config;
        let (Some(name), Some(password)) = (
            config.initiator_name.as_deref(),
            config.initiator_password.as_ref(),
        ) else {
            return Err(InvalidRequest::InitiatorNotConfigured.into());
        };
        if name.trim().is_empty() || password.expose_secret().is_empty() {
            return Err(InvalidRequest::InitiatorNotConfigured.into());
        }
        Ok((
            name.trim().to_owned(),
            self.inner.certificate.security_credential(password)?,
        ))
    }

    fn check_result_urls(
        &self,
        result_url: &Url,
        queue_timeout_url: &Url,
    ) -> Result<(), InvalidRequest> {
        check_url("ResultURL", result_url, self.production())?;
        check_url("QueueTimeOutURL", queue_timeout_url, self.production())
    }

    /// One API call: a token, the POST, and on an invalid-token refusal one more token and one
    /// more POST (safe: Daraja refused the first before processing it). Nothing else is retried.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        api: Api,
        path: &str,
        body: &Req,
    ) -> Result<Resp, DarajaError> {
        let token = self.inner.tokens.get(&self.inner.transport).await?;
        match self.post_once(api, path, body, &token).await {
            Err(e) if e.is_invalid_token() => {
                tracing::debug!(
                    api = api.as_str(),
                    error_code = e.error_code().unwrap_or(""),
                    "access token refused; retrying once with a new token"
                );
                self.inner.tokens.invalidate(token.generation);
                let token = self.inner.tokens.get(&self.inner.transport).await?;
                self.post_once(api, path, body, &token).await
            }
            other => other,
        }
    }

    async fn post_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        api: Api,
        path: &str,
        body: &Req,
        token: &AccessToken,
    ) -> Result<Resp, DarajaError> {
        let transport = &self.inner.transport;
        let started = Instant::now();
        let token_text = token.value.expose_secret();
        let request = transport
            .http
            .post(transport.url(path))
            .bearer_auth(token_text)
            .json(body);
        let result = match transport.send(api, request).await {
            Ok(answer) => decode(api, &answer, Some(token_text)),
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.outcome_label(),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => {
                tracing::debug!(api = api.as_str(), duration_ms, outcome = %outcome, "daraja call")
            }
            Err(e) => tracing::debug!(
                api = api.as_str(),
                duration_ms,
                outcome = %outcome,
                may_have_been_processed = e.may_have_been_processed(),
                error = %e,
                "daraja call failed"
            ),
        }
        self.inner.metrics.call_finished(api, outcome);
        result
    }
}

fn within(amount: Amount, bounds: AmountBounds) -> Result<Amount, InvalidRequest> {
    Ok(Amount::new(amount.shillings(), bounds)?)
}

fn check_url(field: &'static str, url: &Url, production: bool) -> Result<(), InvalidRequest> {
    check_callback_url(url, production).map_err(|problem| InvalidRequest::Url { field, problem })
}

fn text_length(
    field: &'static str,
    text: &str,
    min: usize,
    max: usize,
) -> Result<(), InvalidRequest> {
    let t = text.trim();
    let n = t.chars().count();
    if n < min || n > max {
        return Err(InvalidRequest::Length { field, min, max });
    }
    if t.chars().any(char::is_control) {
        return Err(InvalidRequest::Format {
            field,
            reason: "must not contain control characters",
        });
    }
    Ok(())
}

fn optional_length(
    field: &'static str,
    text: Option<&str>,
    max: usize,
) -> Result<(), InvalidRequest> {
    match text {
        Some(t) => text_length(field, t, 1, max),
        None => Ok(()),
    }
}

fn non_empty(text: Option<&str>) -> Option<String> {
    text.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn means_still_processing(message: &str) -> bool {
    let m = message.trim().to_ascii_lowercase();
    m.is_empty() || m.contains("being processed")
}

/// A 200 answer whose `ResponseCode` is not `0`.
fn refused_in_body(api: Api, code: &crate::wire::WireCode, description: &str) -> DarajaError {
    DarajaError::Refused {
        api,
        status: 200,
        request_id: String::new(),
        error_code: code.as_text().into_owned(),
        error_message: description.to_owned(),
    }
}

fn c2b_accepted(api: Api, response: C2bResponse) -> Result<C2bAccepted, DarajaError> {
    if let Some(code) = &response.response_code
        && !code.is_success()
    {
        return Err(refused_in_body(api, code, &response.response_description));
    }
    Ok(C2bAccepted {
        originator_conversation_id: response.originator_coversation_id,
        conversation_id: response.conversation_id,
        response_code: response.response_code.map(|c| c.as_text().into_owned()),
        response_description: response.response_description,
    })
}

fn initiator_accepted(
    api: Api,
    response: InitiatorResponse,
) -> Result<InitiatorAccepted, DarajaError> {
    if !response.response_code.is_success() {
        return Err(refused_in_body(
            api,
            &response.response_code,
            &response.response_description,
        ));
    }
    Ok(InitiatorAccepted {
        originator_conversation_id: response.originator_conversation_id,
        conversation_id: response.conversation_id,
        response_code: response.response_code.as_text().into_owned(),
        response_description: response.response_description,
    })
}
