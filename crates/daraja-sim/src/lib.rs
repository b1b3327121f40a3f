//! A Safaricom Daraja simulator that behaves like Safaricom, for mpesa-gateway's tests, its
//! benchmark and its `serve --sandbox` / `sandbox` commands.
//!
//! * The same endpoints, JSON and errors as Daraja: OAuth, STK Push and Query, C2B Register URL
//!   (v1, v2) and simulate, B2C (v1, v3), Transaction Status, Account Balance, Reversal. Every
//!   answer and callback is a `daraja::wire` type, so the client and the simulator cannot drift.
//! * Requests are checked in Daraja's order (token → JSON → fields → shortcode → password →
//!   subscriber lock) and refused with Daraja's envelopes and HTTP statuses.
//! * Outcomes are chosen by the customer's phone number ([`scenarios`]); callbacks go to the
//!   `CallBackURL` after a delay, shaped exactly like Safaricom's.
//! * Faults ([`faults`]) make callbacks duplicate, late, missing, early, string-coded or
//!   undeliverable, answers slow, and endpoints fail; set them at start, in Rust
//!   ([`Simulator::set_faults`]) or over HTTP (`POST /simulator/faults`).
//! * Everything it received and sent is inspectable under `/simulator/…`, in ring buffers of
//!   a fixed size.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use daraja_sim::{SimConfig, Simulator};
//! let sim = Simulator::new(SimConfig::for_tests())?;
//! // In-process, nested under a prefix (the gateway's `serve --sandbox`):
//! let app: axum::Router = axum::Router::new().nest("/sandbox", sim.router());
//! // Or alone (`mpesa-gateway sandbox --listen ADDR`):
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! tokio::spawn(sim.clone().serve(listener, std::future::pending()));
//! # let _ = app; Ok(()) }
//! ```
//!
//! Module map: [`config`] (start-up settings), [`scenarios`] (outcomes by phone number),
//! [`faults`] (fault injection), `routes/` (one module per Daraja product and the inspection
//! paths), `callbacks` (delivery), `ledger` (balances and receipts), `state` (tokens,
//! transactions, registrations), `credential` (SecurityCredential), `ids` (Safaricom's id
//! formats), `errors` (Daraja's error envelopes), [`journal`] (the request and callback logs).

pub mod config;
pub mod faults;
pub mod journal;
pub mod scenarios;

mod callback_sender;
mod credential;
mod errors;
mod ids;
mod ledger;
mod routes;
mod state;
mod validation;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub use config::{
    C2bMsisdnModes, ConsumerCredentials, CredentialMode, InitialBalances, InitiatorConfig,
    LongReferences, MsisdnMode, PendingQueryAnswer, SANDBOX_C2B_SHORTCODE, SANDBOX_CONSUMER_KEY,
    SANDBOX_CONSUMER_SECRET, SANDBOX_INITIATOR_NAME, SANDBOX_INITIATOR_PASSWORD, SANDBOX_PASSKEY,
    SANDBOX_SHORTCODE, ShortcodeConfig, SimConfig, SimEnvironment, WrongCredentialsAnswer,
};
pub use credential::{SIMULATOR_CERTIFICATE_PEM, SIMULATOR_PRIVATE_KEY_PEM};
pub use errors::{SimError, WaitTimeout};
pub use faults::{CallbackFaults, Endpoint, EndpointFailure, FailureAnswer, Faults, Flow};
pub use journal::{CallbackKind, CallbackRecord, DeliveryOutcome, RequestRecord};
pub use ledger::{Balances, PaymentKind, PaymentRecord};
pub use routes::c2b::{C2bOutcome, C2bStatus, CustomerPayment};
pub use scenarios::UNREGISTERED_RECIPIENT_NUMBER;
pub use scenarios::{Resolution, Scenario, ScenarioTable, StkOutcome};
pub use state::{C2bApiVersion, C2bRegistration, PullRegistration, StkStatus, StkTransaction};

use credential::CredentialChecker;
use ids::IdGenerator;
use journal::Ring;
use ledger::Books;
use state::{C2bStore, InitiatorStore, StkStore, TokenStore};

/// A running simulator's state and its handle: cheap to clone (one `Arc`), `Send + Sync`.
/// Clones share everything, so a test keeps one clone while the router serves another.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: SimConfig,
    pub(crate) ids: IdGenerator,
    /// Sends callbacks and results.
    pub(crate) http: reqwest::Client,
    pub(crate) credentials: CredentialChecker,
    pub(crate) tokens: Mutex<TokenStore>,
    pub(crate) stk: Mutex<StkStore>,
    pub(crate) c2b: Mutex<C2bStore>,
    pub(crate) initiator: Mutex<InitiatorStore>,
    pub(crate) books: Mutex<Books>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) requests: Mutex<Ring<RequestRecord>>,
    pub(crate) callbacks: Mutex<Ring<CallbackRecord>>,
    /// Bumped on every change worth waiting for, so tests await events instead of sleeping.
    pub(crate) events: watch::Sender<u64>,
}

/// Locks a part of the state. A panic elsewhere cannot leave these half-changed in a way that
/// matters to a simulator, so a poisoned lock is simply taken over.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// A simulator with this configuration. Builds the HTTP client that sends callbacks
    /// (installing rustls' crypto provider first) and loads the simulator's key.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        config.validate()?;
        daraja::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.delivery_timeout)
            // Safaricom does not follow redirects with a POST body; neither do we.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("daraja-sim/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SimError::HttpClient(e.to_string()))?;
        let credentials =
            CredentialChecker::new(config.credential_mode, config.initiators.clone())?;
        let (events, _) = watch::channel(0);
        let inner = Inner {
            ids: IdGenerator::default(),
            http,
            credentials,
            tokens: Mutex::new(TokenStore::new()),
            stk: Mutex::new(StkStore::new(config.transaction_capacity)),
            c2b: Mutex::new(C2bStore::default()),
            initiator: Mutex::new(InitiatorStore::new(
                config.transaction_capacity.max(100_000),
            )),
            books: Mutex::new(Books::new(
                config.initial_balances,
                config.transaction_capacity,
            )),
            faults: Mutex::new(config.faults.clone().normalised()),
            requests: Mutex::new(Ring::new(config.log_capacity)),
            callbacks: Mutex::new(Ring::new(config.log_capacity)),
            events,
            config,
        };
        Ok(Simulator {
            inner: Arc::new(inner),
        })
    }

    /// The Daraja endpoints and the `/simulator/…` inspection paths. Works alone and nested
    /// under a prefix (`Router::new().nest("/sandbox", sim.router())`); the Daraja client's base
    /// URL is then `http://<listen>/sandbox`.
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// Serves [`Simulator::router`] on `listener` until `shutdown` completes (for
    /// `mpesa-gateway sandbox --listen ADDR`).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "Daraja simulator listening");
        }
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.inner.config.clock.now()
    }

    /// Wakes everyone waiting in `wait_until`.
    pub(crate) fn notify(&self) {
        self.inner.events.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The faults in force (endpoint failures show how many are left).
    pub fn faults(&self) -> Faults {
        lock(&self.inner.faults).clone()
    }

    /// Replaces every fault.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.inner.faults) = faults.normalised();
        tracing::info!("simulator faults replaced");
    }

    /// Changes the faults in place, e.g. `sim.update_faults(|f| f.global.suppress = true)`.
    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        let mut faults = lock(&self.inner.faults);
        change(&mut faults);
        *faults = std::mem::take(&mut *faults).normalised();
    }

    /// The requests received, oldest first (the newest `log_capacity`).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner.requests).snapshot()
    }

    /// The callbacks and results sent (or deliberately not sent), oldest first.
    pub fn callbacks(&self) -> Vec<CallbackRecord> {
        lock(&self.inner.callbacks).snapshot()
    }

    pub fn stk_transaction(&self, checkout_request_id: &str) -> Option<StkTransaction> {
        lock(&self.inner.stk)
            .transactions
            .get(&checkout_request_id.to_owned())
            .cloned()
    }

    /// STK transactions, oldest first.
    pub fn stk_transactions(&self) -> Vec<StkTransaction> {
        lock(&self.inner.stk)
            .transactions
            .values_in_order()
            .cloned()
            .collect()
    }

    /// Payments that moved money (STK, C2B, B2C, reversals), oldest first.
    pub fn payments(&self) -> Vec<PaymentRecord> {
        lock(&self.inner.books)
            .payments
            .values_in_order()
            .cloned()
            .collect()
    }

    pub fn payment(&self, receipt: &str) -> Option<PaymentRecord> {
        lock(&self.inner.books).payment(receipt).cloned()
    }

    /// A shortcode's balances (a shortcode never used shows its initial balances).
    pub fn balances(&self, short_code: &str) -> Balances {
        lock(&self.inner.books).balances(short_code)
    }

    /// Sets a shortcode's balances, e.g. a Utility account too low for the next B2C payout or
    /// reversal (result `1`).
    pub fn set_balances(&self, short_code: &str, balances: Balances) {
        lock(&self.inner.books).set_balances(short_code, balances);
        self.notify();
    }

    pub fn c2b_registrations(&self) -> Vec<C2bRegistration> {
        lock(&self.inner.c2b).all()
    }

    /// Forgets transactions, payments, balances, registrations, used OriginatorConversationIDs,
    /// initiator lockouts, both logs and every fault (back to those of the configuration).
    /// Access tokens stay valid, so connected clients carry on.
    pub fn reset(&self) {
        lock(&self.inner.stk).clear();
        lock(&self.inner.books).clear();
        lock(&self.inner.c2b).clear();
        lock(&self.inner.initiator).clear();
        lock(&self.inner.requests).clear();
        lock(&self.inner.callbacks).clear();
        *lock(&self.inner.faults) = self.inner.config.faults.clone().normalised();
        tracing::info!("simulator reset");
        self.notify();
    }

    /// A `SecurityCredential` for `password`, encrypted with the simulator's TEST certificate
    /// (what `strict` mode expects).
    pub fn security_credential(&self, password: &str) -> String {
        self.inner.credentials.encrypt(password)
    }

    /// Waits until `check` finds something, re-checking whenever the simulator's state changes
    /// (a request answered, a payment settled, a callback recorded). No polling, no sleeping.
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&Simulator) -> Option<T>,
    ) -> Result<T, WaitTimeout> {
        let mut changes = self.inner.events.subscribe();
        let waiting = async {
            loop {
                if let Some(found) = check(self) {
                    return found;
                }
                // The sender lives as long as `self`: `changed` cannot fail here.
                let _ = changes.changed().await;
            }
        };
        tokio::time::timeout(timeout, waiting)
            .await
            .map_err(|_| WaitTimeout(timeout))
    }

    /// Waits for the first callback record that matches.
    pub async fn wait_for_callback(
        &self,
        timeout: Duration,
        matches: impl Fn(&CallbackRecord) -> bool,
    ) -> Result<CallbackRecord, WaitTimeout> {
        self.wait_until(timeout, |sim| {
            lock(&sim.inner.callbacks)
                .snapshot()
                .into_iter()
                .find(|c| matches(c))
        })
        .await
    }

    /// Waits until `count` callback records match, and returns them in order.
    pub async fn wait_for_callbacks(
        &self,
        timeout: Duration,
        count: usize,
        matches: impl Fn(&CallbackRecord) -> bool,
    ) -> Result<Vec<CallbackRecord>, WaitTimeout> {
        self.wait_until(timeout, |sim| {
            let found: Vec<_> = lock(&sim.inner.callbacks)
                .snapshot()
                .into_iter()
                .filter(|c| matches(c))
                .collect();
            (found.len() >= count).then_some(found)
        })
        .await
    }

    /// Waits until the STK callback for `checkout_request_id` was delivered (answered 2xx).
    pub async fn wait_for_stk_callback(
        &self,
        checkout_request_id: &str,
        timeout: Duration,
    ) -> Result<CallbackRecord, WaitTimeout> {
        self.wait_for_callback(timeout, |c| {
            c.kind == CallbackKind::StkCallback
                && c.reference == checkout_request_id
                && c.delivered()
        })
        .await
    }

    /// Waits until the STK push `checkout_request_id` has its outcome (whether or not a callback
    /// was sent).
    pub async fn wait_for_stk_outcome(
        &self,
        checkout_request_id: &str,
        timeout: Duration,
    ) -> Result<StkTransaction, WaitTimeout> {
        self.wait_until(timeout, |sim| {
            sim.stk_transaction(checkout_request_id)
                .filter(|t| !t.is_pending())
        })
        .await
    }

    /// Waits for the first notification about `conversation_id` (a `Result` or a queue-timeout
    /// notification), whatever became of its delivery.
    pub async fn wait_for_result(
        &self,
        conversation_id: &str,
        timeout: Duration,
    ) -> Result<CallbackRecord, WaitTimeout> {
        self.wait_for_callback(timeout, |c| {
            matches!(c.kind, CallbackKind::Result | CallbackKind::QueueTimeout)
                && c.reference == conversation_id
        })
        .await
    }
}
