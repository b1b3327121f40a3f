//! Wiring: from a [`Config`] to a running gateway (HTTP server, callback committer, reconciler,
//! outbox worker, Telegram bot), and a graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;

use daraja::DarajaClient;
use mpesa_storage::{ConnectOptions, Storage};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::callbacks::CallbackIngestor;
use crate::clock::Clock;
use crate::config::Config;
use crate::health::DependencyHealth;
use crate::http;
use crate::ids::{new_id, random_hex};
use crate::metrics::Metrics;
use crate::outbox::{Deliverers, OutboxWorker};
use crate::payments::{NotificationPlan, Payments, reconciler};
use crate::state::{AppState, StateInner};

/// How long the stop waits for the database connections to close.
const STORAGE_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The settings key under which a generated callback secret is kept.
pub const CALLBACK_SECRET_SETTING: &str = "callback_secret";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Storage(#[from] mpesa_storage::StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("Daraja client: {0}")]
    Daraja(#[from] daraja::ConfigError),
    #[error("{0}")]
    Config(String),
}

pub struct App {
    state: AppState,
    /// The database: the services hold it; the doors never do.
    storage: Arc<dyn Storage>,
    listener: TcpListener,
    ingestor_task: tokio::task::JoinHandle<()>,
    ingestor_closed: CancellationToken,
    simulator: Option<daraja_sim::Simulator>,
    outbox: OutboxWorker,
}

/// Opens, checks and migrates the database a configuration names.
pub async fn open_storage(
    database_url: &SecretString,
    max_connections: u32,
) -> Result<Arc<dyn Storage>, StartError> {
    let storage = mpesa_storage::connect(
        database_url.expose_secret(),
        &ConnectOptions {
            max_connections,
            ..ConnectOptions::default()
        },
    )
    .await?;
    let version = storage.check_server().await?;
    tracing::info!(backend = storage.backend().as_str(), %version, "database reachable");
    storage.migrate().await?;
    Ok(storage)
}

impl App {
    /// Connects, migrates, binds the listener and builds every part, without starting them.
    /// With `--sandbox`, the simulator is configured from the `DARAJA_SIM_*` variables.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let sim = if config.sandbox {
            let sim = sandbox_simulator_config(&config)
                .apply_env(|name| std::env::var(name).ok())
                .map_err(|e| StartError::Config(e.to_string()))?;
            Some(sim)
        } else {
            None
        };
        App::build_with_simulator(config, sim).await
    }

    /// As [`App::build`], with the in-process simulator's configuration given (tests).
    pub async fn build_with_simulator(
        config: Config,
        sim_config: Option<daraja_sim::SimConfig>,
    ) -> Result<App, StartError> {
        App::build_with(config, sim_config, Clock::system()).await
    }

    /// As [`App::build_with_simulator`], reading the time from `clock` (tests that move time).
    pub async fn build_with(
        mut config: Config,
        sim_config: Option<daraja_sim::SimConfig>,
        clock: Clock,
    ) -> Result<App, StartError> {
        daraja::install_crypto_provider();
        let storage = open_storage(&config.database_url, config.database_max_connections).await?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let local = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        config.listen = local;
        let public_url = config.public_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{local}/")).expect("socket address forms a URL")
        });

        let callback_secret = match &config.callback_secret {
            Some(s) => s.clone(),
            None => {
                let stored = storage
                    .put_setting_if_absent(
                        CALLBACK_SECRET_SETTING,
                        &generate_callback_secret(),
                        crate::ids::now_ms(),
                    )
                    .await?;
                crate::config::check_callback_secret(&stored).map_err(|reason| {
                    StartError::Config(format!(
                        "the callback secret stored in the database (setting {CALLBACK_SECRET_SETTING}): {reason}; set MPESA_CALLBACK_SECRET instead"
                    ))
                })?;
                SecretString::from(stored)
            }
        };
        let callback_url = public_url
            .join(&format!(
                "callbacks/{}/stk",
                callback_secret.expose_secret()
            ))
            .map_err(|e| {
                StartError::Config(format!(
                    "MPESA_CALLBACK_URL cannot carry the callback path: {e}"
                ))
            })?;

        let simulator = match (config.sandbox, sim_config) {
            (true, sim_config) => {
                let sim = daraja_sim::Simulator::new(
                    sim_config.unwrap_or_else(|| sandbox_simulator_config(&config)),
                )
                .map_err(|e| StartError::Config(format!("simulator: {e}")))?;
                config.daraja.base_url = Some(
                    Url::parse(&format!("http://{local}/sandbox/"))
                        .expect("socket address forms a URL"),
                );
                Some(sim)
            }
            (false, _) => None,
        };
        let daraja = DarajaClient::new(config.daraja.clone())?;
        // One token for every instance on this database (Daraja invalidates the previous one).
        daraja.share_tokens_through(Arc::new(
            crate::daraja_token::DatabaseTokenStore::for_client(storage.clone(), &daraja),
        ));

        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(DependencyHealth::default());
        let outbox_wake = Arc::new(Notify::new());
        let plan = NotificationPlan::from_config(&config);
        let payments = Payments::new(
            storage.clone(),
            daraja.clone(),
            crate::payments::service::Settings {
                callback_url,
                amount_bounds: config.amount_bounds,
                reconcile_after_ms: config.reconcile_after.as_millis() as i64,
                expires_after_ms: config.payment_expires_after.as_millis() as i64,
                keep_asking_ms: config.reconcile_keep_asking.as_millis() as i64,
                c2b: config.c2b.clone(),
            },
            plan.clone(),
            metrics.clone(),
            outbox_wake.clone(),
            health.clone(),
        )
        .with_clock(clock.clone());
        let links = crate::payments::PaymentLinks::for_config(&config, storage.clone())
            .with_clock(clock.clone());
        let money_out = {
            let callback_base = public_url
                .join(&format!("callbacks/{}/", callback_secret.expose_secret()))
                .map_err(|e| {
                    StartError::Config(format!(
                        "MPESA_CALLBACK_URL cannot carry the callback path: {e}"
                    ))
                })?;
            let settings = config.money_out.clone();
            let initiator = crate::money_out::Initiator::new(
                storage.clone(),
                daraja.clone(),
                crate::money_out::InitiatorSettings {
                    callback_base,
                    policy: mpesa_domain::initiator::ResolvePolicy {
                        result_wait_ms: settings.result_wait.as_millis() as i64,
                        keep_asking_ms: settings.keep_asking.as_millis() as i64,
                    },
                },
                clock.clone(),
            )
            .with_wake(outbox_wake.clone());
            let mut short_codes = Vec::new();
            if let Some(b2c) = &settings.b2c_short_code {
                short_codes.push(b2c.clone());
            }
            short_codes.push(config.daraja.shortcode.clone());
            crate::money_out::MoneyOut {
                refunds: crate::money_out::Refunds::new(
                    storage.clone(),
                    initiator.clone(),
                    config.daraja.shortcode.clone(),
                    plan.clone(),
                    public_url.clone(),
                ),
                payouts: crate::money_out::Payouts::new(
                    storage.clone(),
                    initiator.clone(),
                    settings,
                    plan.clone(),
                    public_url.clone(),
                ),
                balances: crate::money_out::Balances::new(initiator.clone(), short_codes),
                receipts: crate::money_out::ReceiptChecks::new(
                    storage.clone(),
                    initiator.clone(),
                    payments.clone(),
                    plan.clone(),
                ),
                initiator,
            }
        };
        let outbox = OutboxWorker {
            storage: storage.clone(),
            deliverers: Deliverers::from_config(&config, storage.clone(), clock.clone())
                .map_err(|e| StartError::Config(e.to_string()))?,
            schedules: config.outbox.schedules.clone(),
            owner: String::new(),
            metrics: metrics.clone(),
            health: health.clone(),
            wake: outbox_wake.clone(),
            lease: config.outbox.lease,
            poll_interval: config.outbox.poll_interval,
            clock: clock.clone(),
        };
        let ingestor_closed = CancellationToken::new();
        let (ingestor, ingestor_task) =
            CallbackIngestor::start(payments.clone(), ingestor_closed.clone());
        let instance_id = new_id("gw");
        let accounts = crate::accounts::Accounts::new(storage.clone());
        let telegram_bot = match &config.telegram {
            Some(t) => {
                let webhook_url = match (&t.webhook_secret, &t.webhook_url) {
                    (None, _) => None,
                    (Some(_), Some(url)) => Some(url.clone()),
                    (Some(_), None) => Some(public_url.join("telegram/webhook").map_err(|e| {
                        StartError::Config(format!(
                            "MPESA_CALLBACK_URL cannot carry the Telegram webhook path: {e}"
                        ))
                    })?),
                };
                Some(Arc::new(
                    crate::telegram::Bot::new(
                        t,
                        webhook_url,
                        crate::telegram::BotServices {
                            accounts: accounts.clone(),
                            ledger: crate::bot_ledger::BotLedger::new(storage.clone()),
                            status_messages: crate::payments::StatusMessages::new(storage.clone()),
                            payments: payments.clone(),
                            receipts: money_out.receipts.clone(),
                            metrics: metrics.clone(),
                            instance_id: instance_id.clone(),
                        },
                    )
                    .map_err(|e| StartError::Config(format!("Telegram client: {e}")))?,
                ))
            }
            None => None,
        };
        let outbox = OutboxWorker {
            owner: instance_id.clone(),
            ..outbox
        };
        let state = AppState::new(StateInner {
            config,
            health_checks: crate::health::HealthChecks::new(
                storage.clone(),
                daraja,
                metrics.clone(),
                instance_id.clone(),
            ),
            accounts,
            outbox: crate::outbox::OutboxQueue::new(storage.clone(), outbox_wake),
            payments,
            links,
            money_out,
            ingestor,
            metrics,
            health,
            callback_secret,
            telegram_bot,
            instance_id,
            started_at: std::time::Instant::now(),
        });
        Ok(App {
            state,
            storage,
            listener,
            ingestor_task,
            ingestor_closed,
            simulator,
            outbox,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.state.config.listen
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// The database the services use (for the command line and tests; no door is handed it).
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    pub fn simulator(&self) -> Option<&daraja_sim::Simulator> {
        self.simulator.as_ref()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, finishes in-flight requests,
    /// stops the workers, commits what the callback committer holds and closes the database.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let App {
            state,
            storage,
            listener,
            ingestor_task,
            ingestor_closed,
            simulator,
            outbox,
        } = self;
        let mut router = http::router(state.clone());
        if let Some(sim) = &simulator {
            for mount in crate::http::simulator::MOUNTS {
                router = router.nest(
                    mount,
                    sim.router().layer(axum::middleware::from_fn_with_state(
                        state.clone(),
                        crate::http::simulator::guard_simulator,
                    )),
                );
            }
        }
        let mut workers = tokio::task::JoinSet::new();
        {
            let (payments, health, stop) = (
                state.payments.clone(),
                state.health.clone(),
                shutdown.clone(),
            );
            workers.spawn(supervise(
                "reconciler",
                state.health.clone(),
                shutdown.clone(),
                move || reconciler::run(payments.clone(), health.clone(), stop.clone()),
            ));
        }
        {
            let (initiator, health, stop) = (
                state.money_out.initiator.clone(),
                state.health.clone(),
                shutdown.clone(),
            );
            workers.spawn(supervise(
                "resolver",
                state.health.clone(),
                shutdown.clone(),
                move || {
                    crate::money_out::resolver::run(initiator.clone(), health.clone(), stop.clone())
                },
            ));
        }
        {
            let (refunds, payouts, health, stop) = (
                state.money_out.refunds.clone(),
                state.money_out.payouts.clone(),
                state.health.clone(),
                shutdown.clone(),
            );
            workers.spawn(supervise(
                "money-out sweep",
                state.health.clone(),
                shutdown.clone(),
                move || {
                    crate::money_out::resolver::sweep_orphans(
                        refunds.clone(),
                        payouts.clone(),
                        health.clone(),
                        stop.clone(),
                    )
                },
            ));
        }
        {
            let stop = shutdown.clone();
            workers.spawn(supervise(
                "outbox",
                state.health.clone(),
                shutdown.clone(),
                move || outbox.clone().run(stop.clone()),
            ));
        }
        if let (Some(bot), Some(telegram)) = (&state.telegram_bot, &state.config.telegram) {
            if bot.webhook.is_some() {
                workers.spawn(crate::telegram::webhook_receiver::register(
                    bot.clone(),
                    shutdown.clone(),
                ));
            } else {
                let poller = crate::telegram::poller::Poller::new(
                    bot.clone(),
                    crate::bot_ledger::BotLedger::new(storage.clone()),
                    state.health.clone(),
                    state.instance_id.clone(),
                    telegram.poll_timeout,
                    telegram.poll_lease,
                );
                workers.spawn(poller.run(shutdown.clone()));
            }
        }

        if let Some(interval) = state.config.c2b.pull_interval {
            workers.spawn(crate::payments::c2b::run_pull_schedule(
                state.payments.clone(),
                state.instance_id.clone(),
                interval,
                shutdown.clone(),
            ));
        }
        if simulator.is_some() {
            // `serve --sandbox`: the simulator learns where to send C2B confirmations, as
            // `c2b register` tells Daraja, so paying the paybill works at once.
            let payments = state.payments.clone();
            workers.spawn(async move {
                let registration = payments.c2b_registration(
                    daraja::C2bResponseType::Completed,
                    daraja::C2bVersion::V2,
                );
                match payments.register_c2b(&registration).await {
                    Ok(_) => tracing::info!(short_code = %registration.short_code, "C2B URLs registered with the simulator"),
                    Err(error) => tracing::warn!(%error, "could not register the C2B URLs with the simulator"),
                }
            });
        }
        tracing::info!(listen = %state.config.listen, sandbox = state.config.sandbox, "mpesa-gateway listening");
        let result =
            http::server::serve(listener, router, state.config.http, shutdown.clone()).await;
        shutdown.cancel();
        while workers.join_next().await.is_some() {}
        drop(state);
        // No request is in flight any more: the committer finishes its queue and stops.
        ingestor_closed.cancel();
        let _ = ingestor_task.await;
        // Every write the gateway answered for is committed by now. A connection still waiting
        // on the database (a statement of an abandoned task, stuck behind a lock) would hold
        // the close until the database lets go; the process is ending, and the server rolls
        // back what such a connection had open.
        if tokio::time::timeout(STORAGE_CLOSE_GRACE, storage.close())
            .await
            .is_err()
        {
            tracing::warn!("stopping with database connections still busy; they are dropped");
        }
        tracing::info!("mpesa-gateway stopped");
        result
    }
}

/// A new callback secret: 32 random bytes as 64 hex digits, well within the rule of
/// `config::check_callback_secret`.
pub fn generate_callback_secret() -> String {
    random_hex(32)
}

/// Runs a background worker until `shutdown`, and starts it again (after a second) if it ever
/// panics: a reconciler or outbox worker that died would leave payments unresolved and
/// notifications unsent, with no one the wiser. The panic is logged and shown on `/health`.
async fn supervise<F, Fut>(
    name: &'static str,
    health: Arc<DependencyHealth>,
    shutdown: CancellationToken,
    start: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let outcome = tokio::spawn(start()).await;
        match outcome {
            Err(e) if e.is_panic() && !shutdown.is_cancelled() => {
                tracing::error!(
                    worker = name,
                    "background worker panicked; starting it again"
                );
                health.failing(name, "the worker panicked and was started again");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
            _ => return,
        }
    }
}

/// The simulator `serve --sandbox` runs: it accepts the configured credentials, shortcode and
/// passkey besides its defaults.
pub fn sandbox_simulator_config(config: &Config) -> daraja_sim::SimConfig {
    let d = &config.daraja;
    // A buy-goods setup's till belongs to the store number; a configured initiator exists.
    let mut shortcode =
        daraja_sim::ShortcodeConfig::new(d.shortcode.clone(), Some(d.passkey.expose_secret()));
    if d.effective_party_b() != d.shortcode {
        shortcode = shortcode.with_till(d.effective_party_b().to_owned());
    }
    let mut sim = daraja_sim::SimConfig::with_credentials(
        d.consumer_key.expose_secret().to_owned(),
        d.consumer_secret.expose_secret().to_owned(),
    )
    .with_shortcode(shortcode);
    if let (Some(name), Some(password)) = (&d.initiator_name, &d.initiator_password) {
        sim = sim.with_initiator(name.clone(), password.expose_secret().to_owned());
    }
    sim
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight work");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio_util::sync::CancellationToken;

    use crate::health::DependencyHealth;

    /// A worker that panics is started again; one that returns is not.
    #[tokio::test]
    async fn a_panicked_worker_is_started_again() {
        let runs = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(DependencyHealth::default());
        let counted = runs.clone();
        super::supervise(
            "test-worker",
            health.clone(),
            CancellationToken::new(),
            move || {
                let counted = counted.clone();
                async move {
                    if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("first run fails");
                    }
                }
            },
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(health.state("test-worker").status, "failing");
    }

    #[test]
    fn a_generated_callback_secret_meets_the_rule() {
        for _ in 0..50 {
            let secret = super::generate_callback_secret();
            assert_eq!(
                crate::config::check_callback_secret(&secret),
                Ok(()),
                "{secret}"
            );
        }
    }

    fn config(pairs: &[(&str, &str)]) -> Config {
        let env: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_source(env, true).unwrap()
    }

    #[test]
    fn the_sandbox_simulator_knows_the_configured_till_and_initiator_and_keeps_174379_stk_only() {
        let sim = sandbox_simulator_config(&config(&[]));
        let stk = sim
            .shortcodes
            .iter()
            .find(|s| s.shortcode == "174379")
            .unwrap();
        assert!(!stk.c2b, "Safaricom's 174379 cannot register C2B URLs");
        assert!(stk.tills.is_empty());

        let sim = sandbox_simulator_config(&config(&[
            ("MPESA_TRANSACTION_TYPE", "CustomerBuyGoodsOnline"),
            ("MPESA_PARTY_B", "5432100"),
            ("MPESA_INITIATOR_NAME", "ops"),
            ("MPESA_INITIATOR_PASSWORD", "ops-password"),
        ]));
        let stk = sim
            .shortcodes
            .iter()
            .find(|s| s.shortcode == "174379")
            .unwrap();
        assert_eq!(stk.tills, vec!["5432100".to_owned()]);
        assert!(sim.initiators.iter().any(|i| i.name == "ops"));
    }
}
