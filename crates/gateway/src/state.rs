//! The state shared by every request handler and background worker.

use std::ops::Deref;
use std::sync::Arc;

use daraja::DarajaClient;
use mpesa_storage::Storage;
use secrecy::SecretString;
use tokio::sync::Notify;

use crate::callbacks::CallbackIngestor;
use crate::config::Config;
use crate::health::DependencyHealth;
use crate::http::auth::ApiKeyCache;
use crate::metrics::Metrics;
use crate::money_out::MoneyOut;
use crate::payments::Payments;

#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

pub struct StateInner {
    pub config: Config,
    pub storage: Arc<dyn Storage>,
    pub daraja: DarajaClient,
    pub payments: Payments,
    /// Payment links and the pay page's one operation.
    pub links: crate::payments::PaymentLinks,
    /// Refunds, payouts, balances and the initiator layer under them.
    pub money_out: MoneyOut,
    pub ingestor: CallbackIngestor,
    pub metrics: Arc<Metrics>,
    pub health: Arc<DependencyHealth>,
    /// `/health`'s proof that database writes commit.
    pub write_probe: crate::health::WriteProbe,
    /// The secret path segment of the callback URLs.
    pub callback_secret: SecretString,
    pub api_keys: ApiKeyCache,
    pub outbox_wake: Arc<Notify>,
    /// The Telegram bot, when `TELEGRAM_BOT_TOKEN` is set.
    pub telegram_bot: Option<Arc<crate::telegram::Bot>>,
    /// This process, in leases and logs.
    pub instance_id: String,
    pub started_at: std::time::Instant,
}

impl AppState {
    pub fn new(inner: StateInner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.0
    }
}
