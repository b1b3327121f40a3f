//! What a simulator is told at start: who may get tokens, which shortcodes exist, how fast things
//! happen, and which Daraja rules (sandbox or production) apply. Faults and scenarios have their
//! own modules; both can also be changed at runtime.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use daraja::{Clock, SystemClock};
use mpesa_domain::Cents;
use serde::Serialize;

use crate::errors::SimError;
use crate::faults::Faults;
use crate::scenarios::{ScenarioTable, StkOutcome};

/// The consumer key of the pair every simulator accepts (`serve --sandbox` uses it).
pub const SANDBOX_CONSUMER_KEY: &str = "sandbox-consumer-key";
/// The consumer secret of that pair. A test value with no meaning outside the simulator.
pub const SANDBOX_CONSUMER_SECRET: &str = "sandbox-consumer-secret";
/// The public Lipa na M-Pesa Online shortcode of Safaricom's sandbox.
pub const SANDBOX_SHORTCODE: &str = daraja::config::SANDBOX_SHORTCODE;
/// Its public passkey (published by Safaricom, see `Daraja's M-Pesa Express documentation`).
pub const SANDBOX_PASSKEY: &str = daraja::config::SANDBOX_PASSKEY;
/// The sandbox's C2B / B2C test shortcode ("Shortcode 1" on the test-credentials page).
pub const SANDBOX_C2B_SHORTCODE: &str = "600000";
/// The initiator every simulator knows, for B2C, Transaction Status, Account Balance, Reversal.
pub const SANDBOX_INITIATOR_NAME: &str = "testapi";
/// Its password (what a client encrypts into the `SecurityCredential`). A test value.
pub const SANDBOX_INITIATOR_PASSWORD: &str = "sandbox-initiator-password";

/// Which of Daraja's rule sets the simulator follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SimEnvironment {
    /// `http://` callback URLs allowed, C2B URLs may be registered again, C2B simulate exists.
    #[default]
    Sandbox,
    /// `https://` callback URLs only, C2B URLs registered once, no C2B simulate.
    Production,
}

/// A consumer key and secret that OAuth accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsumerCredentials {
    pub consumer_key: String,
    pub consumer_secret: String,
}

impl ConsumerCredentials {
    pub fn new(consumer_key: impl Into<String>, consumer_secret: impl Into<String>) -> Self {
        ConsumerCredentials {
            consumer_key: consumer_key.into(),
            consumer_secret: consumer_secret.into(),
        }
    }

    /// `sandbox-consumer-key` / `sandbox-consumer-secret`.
    pub fn sandbox() -> Self {
        Self::new(SANDBOX_CONSUMER_KEY, SANDBOX_CONSUMER_SECRET)
    }

    pub(crate) fn is_sandbox_pair(&self) -> bool {
        self.consumer_key == SANDBOX_CONSUMER_KEY && self.consumer_secret == SANDBOX_CONSUMER_SECRET
    }
}

impl fmt::Debug for ConsumerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = if self.is_sandbox_pair() {
            self.consumer_secret.as_str()
        } else {
            "[REDACTED]"
        };
        f.debug_struct("ConsumerCredentials")
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &secret)
            .finish()
    }
}

/// A shortcode the simulator knows.
#[derive(Clone, PartialEq, Eq)]
pub struct ShortcodeConfig {
    pub shortcode: String,
    /// The Lipa na M-Pesa Online passkey; `None`: STK Push answers "Merchant does not exist".
    pub passkey: Option<String>,
    /// Whether C2B URLs may be registered. Safaricom's STK-only sandbox shortcode 174379 cannot
    /// (Register URL answers an Apigee fault).
    pub c2b: bool,
    /// Whether C2B payments are first sent to the ValidationURL ("external validation", off
    /// unless Safaricom enabled it for the shortcode).
    pub external_validation: bool,
    /// The organisation name in result parameters (`600000 - TEST BUSINESS`) and on the STK
    /// prompt.
    pub name: String,
    /// Till numbers whose store (head office) number this is: an STK push with
    /// `CustomerBuyGoodsOnline` must name one of them as `PartyB`, and C2B Buy Goods payments
    /// may be made to them. Empty: a paybill.
    pub tills: Vec<String>,
}

impl ShortcodeConfig {
    /// A shortcode with a passkey that may also register C2B URLs, except Safaricom's
    /// STK-only sandbox shortcode 174379, which cannot (operations.md, sandbox test values).
    pub fn new(shortcode: impl Into<String>, passkey: Option<&str>) -> Self {
        let shortcode = shortcode.into();
        ShortcodeConfig {
            c2b: shortcode != SANDBOX_SHORTCODE,
            shortcode,
            passkey: passkey.map(str::to_owned),
            external_validation: false,
            name: "TEST BUSINESS".into(),
            tills: Vec::new(),
        }
    }

    /// Adds a till number served by this store number (`CustomerBuyGoodsOnline`).
    pub fn with_till(mut self, till: impl Into<String>) -> Self {
        let till = till.into();
        if !self.tills.contains(&till) {
            self.tills.push(till);
        }
        self
    }

    /// Sends C2B payments to the ValidationURL first ("external validation", which Safaricom
    /// switches on per shortcode on request).
    pub fn with_external_validation(mut self) -> Self {
        self.external_validation = true;
        self
    }

    /// 174379 with the public sandbox passkey, STK only.
    pub fn sandbox_stk() -> Self {
        Self::new(SANDBOX_SHORTCODE, Some(SANDBOX_PASSKEY))
    }

    /// 600000: C2B and B2C, no passkey.
    pub fn sandbox_c2b() -> Self {
        Self::new(SANDBOX_C2B_SHORTCODE, None)
    }
}

impl fmt::Debug for ShortcodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let passkey = match self.passkey.as_deref() {
            None => "none",
            Some(SANDBOX_PASSKEY) => SANDBOX_PASSKEY,
            Some(_) => "[REDACTED]",
        };
        f.debug_struct("ShortcodeConfig")
            .field("shortcode", &self.shortcode)
            .field("passkey", &passkey)
            .field("c2b", &self.c2b)
            .field("external_validation", &self.external_validation)
            .field("tills", &self.tills)
            .finish()
    }
}

/// An initiator (API operator) and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct InitiatorConfig {
    pub name: String,
    pub password: String,
}

impl InitiatorConfig {
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> Self {
        InitiatorConfig {
            name: name.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for InitiatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitiatorConfig")
            .field("name", &self.name)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// How initiator `SecurityCredential`s are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialMode {
    /// Any base64 value that decodes to 256 bytes (an RSA-2048 ciphertext) is accepted, whoever
    /// encrypted it: clients keep using Safaricom's sandbox certificate.
    #[default]
    Lenient,
    /// The value is decrypted with the simulator's own key (`keys/`) and must be the configured
    /// password of the named initiator: clients must encrypt with the simulator's certificate.
    Strict,
}

/// How STK Query answers while the prompt is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingQueryAnswer {
    /// HTTP 500 `500.001.1001` "The transaction is being processed" (the classic answer).
    #[default]
    BeingProcessed,
    /// HTTP 200 with `ResultCode "4999"` "The transaction is still under processing" (seen
    /// 2024–2026).
    ResultCode4999,
}

/// How OAuth refuses a wrong consumer key or secret (Daraja has done both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WrongCredentialsAnswer {
    /// HTTP 400 `400.008.01` "Invalid Authentication passed".
    #[default]
    Envelope,
    /// HTTP 400 with an empty body (the older behaviour).
    EmptyBody,
}

/// What happens to an STK push whose `AccountReference` (over 12 characters) or
/// `TransactionDesc` (over 13) is longer than the documented limits. `shared/daraja/stk.md`
/// ("AccountReference and TransactionDesc") establishes only that a prompt longer than 182
/// characters fails in the callback with `1025`; what Daraja does synchronously with a long
/// reference is "not established", so that is an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LongReferences {
    /// Accepted; when the prompt text would pass 182 characters the push fails with `1025`
    /// ("An error occurred while sending a push request.") in its callback. (Established.)
    #[default]
    PromptLimit,
    /// Refused at once with `400.002.02 Bad Request - Invalid AccountReference` /
    /// `Invalid TransactionDesc`. (A guess: what `mpesakit` enforces client-side.)
    Refuse,
}

/// What a C2B callback's `MSISDN` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsisdnMode {
    /// `2547 ***** 149`: the first four and last three digits.
    Masked,
    /// The SHA-256 of the 12-digit number, 64 lower-case hex digits.
    Sha256,
    /// The whole number (before ~2021).
    Full,
}

/// `MSISDN` form per C2B API version. The 2025 C2B FAQ: v1 hashed, v2 masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct C2bMsisdnModes {
    pub v1: MsisdnMode,
    pub v2: MsisdnMode,
}

impl Default for C2bMsisdnModes {
    fn default() -> Self {
        C2bMsisdnModes {
            v1: MsisdnMode::Sha256,
            v2: MsisdnMode::Masked,
        }
    }
}

/// The balances a shortcode starts with, in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InitialBalances {
    pub working: Cents,
    pub utility: Cents,
    pub charges_paid: Cents,
}

impl Default for InitialBalances {
    /// KES 1,000,000.00 in Utility (B2C pays from it), nothing elsewhere.
    fn default() -> Self {
        InitialBalances {
            working: Cents(0),
            utility: Cents(100_000_000),
            charges_paid: Cents(0),
        }
    }
}

/// Everything a [`crate::Simulator`] is started with. `SimConfig::default()` is what a person
/// watching `mpesa-gateway sandbox` wants (3 s callbacks, 60 s prompt timeout);
/// [`SimConfig::for_tests`] makes everything fast.
#[derive(Clone)]
pub struct SimConfig {
    pub environment: SimEnvironment,
    /// Pairs OAuth accepts. The sandbox pair is always among them (see `accept_credentials`).
    pub credentials: Vec<ConsumerCredentials>,
    pub shortcodes: Vec<ShortcodeConfig>,
    pub initiators: Vec<InitiatorConfig>,
    pub credential_mode: CredentialMode,
    /// Consecutive bad credentials after which an initiator is locked (`8006`) until reset.
    pub lock_initiator_after: u32,
    /// Outcomes by phone number.
    pub scenarios: ScenarioTable,
    /// The outcome for numbers not in the table.
    pub default_outcome: StkOutcome,
    /// Faults in force from the start.
    pub faults: Faults,
    /// From an accepted STK push (or C2B simulate) to its outcome and callback.
    pub callback_delay: Duration,
    /// How long an unanswered prompt stays open before `1037`.
    pub prompt_timeout: Duration,
    /// How much later a "late" callback is sent.
    pub late_delay: Duration,
    /// From an accepted B2C / Transaction Status / Account Balance / Reversal to its result.
    pub result_delay: Duration,
    /// How long M-Pesa waits for a C2B validation answer before applying `ResponseType`.
    pub c2b_validation_deadline: Duration,
    /// How long one callback delivery may take before it counts as failed.
    pub delivery_timeout: Duration,
    /// The real lifetime of access tokens (`expires_in` always says "3599").
    pub token_lifetime: Duration,
    /// Whether issuing a token invalidates the previous token of the same consumer key (the 2025
    /// Authorization FAQ says it does).
    pub invalidate_previous_token: bool,
    pub wrong_credentials_answer: WrongCredentialsAnswer,
    pub pending_query_answer: PendingQueryAnswer,
    /// The largest STK / C2B amount in whole shillings (Daraja: 250,000).
    pub max_amount: i64,
    /// The smallest B2C amount (Daraja: 10); below it the result is `2`.
    pub b2c_min_amount: i64,
    /// Refuse a second push to a number whose prompt is still open ("Unable to lock subscriber").
    pub lock_subscriber: bool,
    /// Daraja's rule behind result code `17`: the same amount pushed to the same phone again
    /// within this window is accepted and then fails with `17` "Rule limited." (stk.md, STK
    /// ResultCodes; operations.md, business rules: 2 minutes). Zero turns the rule off
    /// ([`SimConfig::for_tests`] does, because tests push the same number and amount often).
    pub rule_limit_window: Duration,
    /// Accept amounts written as whole-valued decimals (`1.0`, `"1.00"`). Off: only integers
    /// and plain digit strings, as Daraja ("whole numbers only").
    pub lenient_amounts: bool,
    /// Refuse an STK `Timestamp` further than this from East Africa Time now
    /// (`400.002.02 Bad Request - Invalid Timestamp`). `None` (the default) checks only its
    /// format: whether Daraja rejects a stale or UTC timestamp is "not established" (stk.md,
    /// "Password and timestamp"); this strict mode is the simulator's guess.
    pub timestamp_max_skew: Option<Duration>,
    pub long_references: LongReferences,
    pub c2b_msisdn: C2bMsisdnModes,
    /// Records per Pull Transactions page (`OffSetValue` moves by this much). Safaricom does
    /// not publish its page size.
    pub pull_page_size: usize,
    pub initial_balances: InitialBalances,
    /// How many requests and callbacks the inspection logs keep (each).
    pub log_capacity: usize,
    /// How many STK transactions and payments are kept; the oldest go first.
    pub transaction_capacity: usize,
    /// Where the simulator reads the time (token expiry, ids, timestamps).
    pub clock: Arc<dyn Clock>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            environment: SimEnvironment::Sandbox,
            credentials: vec![ConsumerCredentials::sandbox()],
            shortcodes: vec![
                ShortcodeConfig::sandbox_stk(),
                ShortcodeConfig::sandbox_c2b(),
            ],
            initiators: vec![InitiatorConfig::new(
                SANDBOX_INITIATOR_NAME,
                SANDBOX_INITIATOR_PASSWORD,
            )],
            credential_mode: CredentialMode::Lenient,
            lock_initiator_after: 3,
            scenarios: ScenarioTable::documented(),
            default_outcome: StkOutcome::success(),
            faults: Faults::default(),
            callback_delay: Duration::from_secs(3),
            prompt_timeout: Duration::from_secs(60),
            late_delay: Duration::from_secs(30),
            result_delay: Duration::from_secs(2),
            c2b_validation_deadline: Duration::from_secs(8),
            delivery_timeout: Duration::from_secs(10),
            token_lifetime: Duration::from_secs(3600),
            invalidate_previous_token: true,
            wrong_credentials_answer: WrongCredentialsAnswer::Envelope,
            pending_query_answer: PendingQueryAnswer::BeingProcessed,
            max_amount: 250_000,
            b2c_min_amount: 10,
            lock_subscriber: true,
            rule_limit_window: Duration::from_secs(120),
            lenient_amounts: false,
            timestamp_max_skew: None,
            long_references: LongReferences::PromptLimit,
            c2b_msisdn: C2bMsisdnModes::default(),
            pull_page_size: 100,
            initial_balances: InitialBalances::default(),
            log_capacity: 1_000,
            transaction_capacity: 10_000,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("environment", &self.environment)
            .field("credentials", &self.credentials)
            .field("shortcodes", &self.shortcodes)
            .field("initiators", &self.initiators)
            .field("credential_mode", &self.credential_mode)
            .field("callback_delay", &self.callback_delay)
            .field("prompt_timeout", &self.prompt_timeout)
            .field("late_delay", &self.late_delay)
            .field("result_delay", &self.result_delay)
            .field("token_lifetime", &self.token_lifetime)
            .field("invalidate_previous_token", &self.invalidate_previous_token)
            .field("max_amount", &self.max_amount)
            .finish_non_exhaustive()
    }
}

impl SimConfig {
    /// The defaults, also accepting `consumer_key`/`consumer_secret` (the configured
    /// `MPESA_CONSUMER_KEY`/`MPESA_CONSUMER_SECRET`).
    pub fn with_credentials(
        consumer_key: impl Into<String>,
        consumer_secret: impl Into<String>,
    ) -> Self {
        SimConfig::default().accept_credentials(consumer_key, consumer_secret)
    }

    /// Fast timings for tests: callbacks after 10 ms, prompt timeout and late delay 300 ms,
    /// results after 10 ms, C2B validation deadline 1 s, deliveries time out after 5 s, and no
    /// rule-`17` window (tests push the same number and amount many times; set
    /// `rule_limit_window` to test the rule).
    pub fn for_tests() -> Self {
        SimConfig {
            rule_limit_window: Duration::ZERO,
            callback_delay: Duration::from_millis(10),
            prompt_timeout: Duration::from_millis(300),
            late_delay: Duration::from_millis(300),
            result_delay: Duration::from_millis(10),
            c2b_validation_deadline: Duration::from_secs(1),
            delivery_timeout: Duration::from_secs(5),
            ..SimConfig::default()
        }
    }

    /// Also accept this consumer key and secret.
    pub fn accept_credentials(
        mut self,
        consumer_key: impl Into<String>,
        consumer_secret: impl Into<String>,
    ) -> Self {
        let pair = ConsumerCredentials::new(consumer_key, consumer_secret);
        if !self.credentials.contains(&pair) {
            self.credentials.push(pair);
        }
        self
    }

    /// Adds (or replaces) a shortcode.
    pub fn with_shortcode(mut self, shortcode: ShortcodeConfig) -> Self {
        self.shortcodes
            .retain(|s| s.shortcode != shortcode.shortcode);
        self.shortcodes.push(shortcode);
        self
    }

    /// Adds (or replaces) an initiator.
    pub fn with_initiator(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        let initiator = InitiatorConfig::new(name, password);
        self.initiators.retain(|i| i.name != initiator.name);
        self.initiators.push(initiator);
        self
    }

    /// Reads settings from environment-style variables (`lookup` is `std::env::var` in a
    /// binary), each optional:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `DARAJA_SIM_ENVIRONMENT` | `sandbox` or `production` |
    /// | `DARAJA_SIM_CALLBACK_DELAY_MS` | from push to outcome and callback |
    /// | `DARAJA_SIM_PROMPT_TIMEOUT_MS` | until an unanswered prompt gives `1037` |
    /// | `DARAJA_SIM_LATE_DELAY_MS` | extra delay of late callbacks |
    /// | `DARAJA_SIM_RESULT_DELAY_MS` | until B2C/status/balance/reversal results |
    /// | `DARAJA_SIM_TOKEN_LIFETIME_SECS` | real lifetime of access tokens |
    /// | `DARAJA_SIM_INVALIDATE_PREVIOUS_TOKEN` | `true`/`false` |
    /// | `DARAJA_SIM_CREDENTIAL_MODE` | `lenient` or `strict` |
    /// | `DARAJA_SIM_MAX_AMOUNT` | largest amount in shillings |
    /// | `DARAJA_SIM_NO_CALLBACKS` | `true`: never send any callback or result |
    /// | `DARAJA_SIM_LOCK_SUBSCRIBER` | `false`: accept a push to a number whose prompt is open |
    /// | `DARAJA_SIM_PENDING_QUERY` | `being_processed` or `4999` |
    /// | `DARAJA_SIM_RULE_LIMIT_SECS` | window of the rule-`17` check (0: off) |
    /// | `DARAJA_SIM_AMOUNTS` | `strict` (whole numbers only) or `lenient` (`1.0`, `"1.00"`) |
    /// | `DARAJA_SIM_TIMESTAMP_MAX_SKEW_SECS` | refuse STK timestamps further than this from EAT |
    /// | `DARAJA_SIM_LONG_REFERENCES` | `prompt_limit` (1025 past 182 characters) or `refuse` |
    /// | `DARAJA_SIM_C2B_VALIDATION` | shortcodes with external validation on, comma-separated |
    pub fn apply_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SimError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let millis = |name: &'static str| -> Result<Option<Duration>, SimError> {
            get(name)
                .map(|v| {
                    v.parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|_| SimError::Setting { name, value: v })
                })
                .transpose()
        };
        let flag = |name: &'static str| -> Result<Option<bool>, SimError> {
            get(name)
                .map(|v| match v.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" => Ok(false),
                    _ => Err(SimError::Setting { name, value: v }),
                })
                .transpose()
        };
        if let Some(v) = get("DARAJA_SIM_ENVIRONMENT") {
            self.environment = match v.to_ascii_lowercase().as_str() {
                "sandbox" => SimEnvironment::Sandbox,
                "production" => SimEnvironment::Production,
                _ => {
                    return Err(SimError::Setting {
                        name: "DARAJA_SIM_ENVIRONMENT",
                        value: v,
                    });
                }
            };
        }
        if let Some(d) = millis("DARAJA_SIM_CALLBACK_DELAY_MS")? {
            self.callback_delay = d;
        }
        if let Some(d) = millis("DARAJA_SIM_PROMPT_TIMEOUT_MS")? {
            self.prompt_timeout = d;
        }
        if let Some(d) = millis("DARAJA_SIM_LATE_DELAY_MS")? {
            self.late_delay = d;
        }
        if let Some(d) = millis("DARAJA_SIM_RESULT_DELAY_MS")? {
            self.result_delay = d;
        }
        if let Some(v) = get("DARAJA_SIM_TOKEN_LIFETIME_SECS") {
            let secs = v
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or(SimError::Setting {
                    name: "DARAJA_SIM_TOKEN_LIFETIME_SECS",
                    value: v,
                })?;
            self.token_lifetime = Duration::from_secs(secs);
        }
        if let Some(b) = flag("DARAJA_SIM_INVALIDATE_PREVIOUS_TOKEN")? {
            self.invalidate_previous_token = b;
        }
        if let Some(v) = get("DARAJA_SIM_CREDENTIAL_MODE") {
            self.credential_mode = match v.to_ascii_lowercase().as_str() {
                "lenient" => CredentialMode::Lenient,
                "strict" => CredentialMode::Strict,
                _ => {
                    return Err(SimError::Setting {
                        name: "DARAJA_SIM_CREDENTIAL_MODE",
                        value: v,
                    });
                }
            };
        }
        if let Some(v) = get("DARAJA_SIM_MAX_AMOUNT") {
            self.max_amount =
                v.parse::<i64>()
                    .ok()
                    .filter(|m| *m >= 1)
                    .ok_or(SimError::Setting {
                        name: "DARAJA_SIM_MAX_AMOUNT",
                        value: v,
                    })?;
        }
        if let Some(b) = flag("DARAJA_SIM_NO_CALLBACKS")? {
            self.faults.global.suppress = b;
        }
        if let Some(b) = flag("DARAJA_SIM_LOCK_SUBSCRIBER")? {
            self.lock_subscriber = b;
        }
        if let Some(v) = get("DARAJA_SIM_PENDING_QUERY") {
            self.pending_query_answer = match v.to_ascii_lowercase().as_str() {
                "being_processed" | "500" => PendingQueryAnswer::BeingProcessed,
                "4999" | "result_code_4999" => PendingQueryAnswer::ResultCode4999,
                _ => {
                    return Err(SimError::Setting {
                        name: "DARAJA_SIM_PENDING_QUERY",
                        value: v,
                    });
                }
            };
        }
        let seconds = |name: &'static str| -> Result<Option<Duration>, SimError> {
            get(name)
                .map(|v| {
                    v.parse::<u64>()
                        .map(Duration::from_secs)
                        .map_err(|_| SimError::Setting { name, value: v })
                })
                .transpose()
        };
        if let Some(d) = seconds("DARAJA_SIM_RULE_LIMIT_SECS")? {
            self.rule_limit_window = d;
        }
        if let Some(d) = seconds("DARAJA_SIM_TIMESTAMP_MAX_SKEW_SECS")? {
            self.timestamp_max_skew = Some(d);
        }
        if let Some(v) = get("DARAJA_SIM_AMOUNTS") {
            self.lenient_amounts = match v.to_ascii_lowercase().as_str() {
                "strict" => false,
                "lenient" => true,
                _ => {
                    return Err(SimError::Setting {
                        name: "DARAJA_SIM_AMOUNTS",
                        value: v,
                    });
                }
            };
        }
        if let Some(v) = get("DARAJA_SIM_LONG_REFERENCES") {
            self.long_references = match v.to_ascii_lowercase().as_str() {
                "prompt_limit" => LongReferences::PromptLimit,
                "refuse" => LongReferences::Refuse,
                _ => {
                    return Err(SimError::Setting {
                        name: "DARAJA_SIM_LONG_REFERENCES",
                        value: v,
                    });
                }
            };
        }
        if let Some(v) = get("DARAJA_SIM_C2B_VALIDATION") {
            for code in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if !crate::validation::is_shortcode(code) {
                    return Err(SimError::Setting {
                        name: "DARAJA_SIM_C2B_VALIDATION",
                        value: v.clone(),
                    });
                }
                match self.shortcodes.iter_mut().find(|s| s.shortcode == code) {
                    Some(s) => s.external_validation = true,
                    None => self
                        .shortcodes
                        .push(ShortcodeConfig::new(code, None).with_external_validation()),
                }
            }
        }
        Ok(self)
    }

    /// Checks that the configuration can work.
    pub(crate) fn validate(&self) -> Result<(), SimError> {
        if self.credentials.is_empty() {
            return Err(SimError::Config(
                "at least one consumer key and secret must be accepted".into(),
            ));
        }
        for s in &self.shortcodes {
            if !crate::validation::is_shortcode(&s.shortcode) {
                return Err(SimError::Config(format!(
                    "shortcode {:?} must be 5 to 7 digits",
                    s.shortcode
                )));
            }
        }
        if self.max_amount < 1 {
            return Err(SimError::Config("max_amount must be at least 1".into()));
        }
        if self.token_lifetime.is_zero() {
            return Err(SimError::Config(
                "token_lifetime must be greater than zero".into(),
            ));
        }
        if self.log_capacity == 0 || self.transaction_capacity == 0 {
            return Err(SimError::Config(
                "log_capacity and transaction_capacity must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn shortcode(&self, code: &str) -> Option<&ShortcodeConfig> {
        self.shortcodes.iter().find(|s| s.shortcode == code)
    }

    pub(crate) fn production(&self) -> bool {
        self.environment == SimEnvironment::Production
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_settings_are_read_and_checked() {
        let vars = [
            ("DARAJA_SIM_CALLBACK_DELAY_MS", "25"),
            ("DARAJA_SIM_NO_CALLBACKS", "true"),
            ("DARAJA_SIM_ENVIRONMENT", "production"),
            ("DARAJA_SIM_LOCK_SUBSCRIBER", "false"),
        ];
        let lookup = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        };
        let config = SimConfig::default().apply_env(lookup).unwrap();
        assert_eq!(config.callback_delay, Duration::from_millis(25));
        assert!(config.faults.global.suppress);
        assert_eq!(config.environment, SimEnvironment::Production);
        assert!(!config.lock_subscriber);
        assert!(SimConfig::default().lock_subscriber);
        let bad = SimConfig::default()
            .apply_env(|n| (n == "DARAJA_SIM_MAX_AMOUNT").then(|| "lots".to_string()));
        assert!(matches!(
            bad,
            Err(SimError::Setting {
                name: "DARAJA_SIM_MAX_AMOUNT",
                ..
            })
        ));
    }

    #[test]
    fn the_sandbox_stk_shortcode_stays_stk_only_however_it_is_configured() {
        assert!(!ShortcodeConfig::new(SANDBOX_SHORTCODE, Some("another-passkey")).c2b);
        assert!(!ShortcodeConfig::sandbox_stk().c2b);
        assert!(ShortcodeConfig::new("600000", None).c2b);
        let config = SimConfig::default().with_shortcode(ShortcodeConfig::new(
            SANDBOX_SHORTCODE,
            Some(SANDBOX_PASSKEY),
        ));
        assert!(!config.shortcode(SANDBOX_SHORTCODE).unwrap().c2b);
    }

    #[test]
    fn debug_hides_secrets_that_are_not_the_public_test_values() {
        let config = SimConfig::with_credentials("real-key", "real-secret-value")
            .with_shortcode(ShortcodeConfig::new("5432109", Some("real-passkey-value")))
            .with_initiator("ops", "real-initiator-password");
        let printed = format!("{config:?}");
        for secret in [
            "real-secret-value",
            "real-passkey-value",
            "real-initiator-password",
        ] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
        assert!(printed.contains(SANDBOX_CONSUMER_SECRET));
    }
}
