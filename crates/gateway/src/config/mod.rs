//! Configuration from the environment (and a `.env` file in the working directory).
//!
//! Every variable is an entry of one table, [`variables::VARIABLES`] (name, aliases, default,
//! secret or not, help, section), which drives the reading, `config check`, `.env.example` and
//! the README's tables; each section's module reads its own variables into its settings. The
//! names of the payment apps this gateway replaces are accepted as aliases or alternatives:
//! `MPESA_SHORTCODE` and `MPESA_PASSKEY`, a MySQL server given as `DB_HOST`/`DB_PORT`/`DB_USER`/
//! `DB_PASSWORD`/`DB_NAME` (FastAPI callback servers), and Django's `EMAIL_HOST`… mail settings
//! when `SMTP_URL` is unset. Secrets are kept as `SecretString` and only ever shown masked.

mod c2b;
mod daraja;
mod database;
#[cfg(test)]
mod docs;
mod email;
mod links;
pub mod money_out;
mod outbox;
mod payments;
mod reader;
mod server;
mod telegram;
pub mod variables;
pub use links::{LinkSettings, PayPageLimits};
mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

pub use ::daraja::DarajaConfig;
/// Safaricom's published sandbox Lipa na M-Pesa Online shortcode and passkey (public test values).
pub use ::daraja::config::{SANDBOX_PASSKEY, SANDBOX_SHORTCODE};
pub use ::daraja::{Environment, TransactionType};
pub use c2b::{C2bFallback, C2bSettings, C2bValidation, SANDBOX_C2B_SHORT_CODE};
pub use daraja::{CALLBACK_SECRET_MIN_CHARS, check_callback_secret};
pub use email::EmailSettings;
use mpesa_domain::AmountBounds;
pub use outbox::{OutboxSettings, RetrySchedule, RetrySchedules};
pub use reader::{default_of, parse_duration};
use secrecy::{ExposeSecret, SecretString};
pub use server::{LogFormat, ServerLimits, TrustedProxies};
pub use telegram::TelegramSettings;
use url::Url;
pub use webhook::WebhookSettings;

use reader::Reader;
use variables::{Secret, VARIABLES, WhenUnset};

/// The credentials the built-in simulator accepts when none are configured (`serve --sandbox`).
pub const SIMULATOR_CONSUMER_KEY: &str = "sandbox-consumer-key";
pub const SIMULATOR_CONSUMER_SECRET: &str = "sandbox-consumer-secret";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("{name} is required{hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
}

#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `HTTP_HEADER_READ_TIMEOUT`, `HTTP_IDLE_TIMEOUT`, `HTTP_MAX_CONNECTIONS`,
    /// `HTTP_SHUTDOWN_GRACE`.
    pub http: ServerLimits,
    pub database_url: SecretString,
    pub database_max_connections: u32,
    /// The public base URL Safaricom calls back (`MPESA_CALLBACK_URL`); when unset, the gateway
    /// uses `http://<listen address>/`.
    pub public_url: Option<Url>,
    pub callback_secret: Option<SecretString>,
    /// The Daraja client's configuration, as read (`serve --sandbox` points its base URL at the
    /// in-process simulator once it listens).
    pub daraja: DarajaConfig,
    /// Run the built-in Daraja simulator in-process and point the client at it.
    pub sandbox: bool,
    pub reconcile_after: Duration,
    pub payment_expires_after: Duration,
    /// `RECONCILE_KEEP_ASKING_SECS`: how long Daraja is asked about a payment whose queries get
    /// no answer (then it is held for a person).
    pub reconcile_keep_asking: Duration,
    pub amount_bounds: AmountBounds,
    /// Refunds, payouts, balance and the initiator layer.
    pub money_out: money_out::MoneyOutSettings,
    /// The paybill or till customers pay on their own, validation, Pull Transactions.
    pub c2b: C2bSettings,
    pub telegram: Option<TelegramSettings>,
    pub email: Option<EmailSettings>,
    pub webhook: Option<WebhookSettings>,
    pub webhook_allow_private: bool,
    pub outbox: OutboxSettings,
    pub log_format: LogFormat,
    /// Secure cookies for the dashboard (set when the public URL is https).
    pub secure_cookies: bool,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` / `Forwarded` name the client.
    pub trusted_proxies: TrustedProxies,
    /// Payment links and the pay page (`PUBLIC_URL`, `BUSINESS_NAME`, `PAY_PAGE_LIMIT_*`).
    pub links: links::LinkSettings,
}

/// Debug output is the masked description: a stray `{:?}` must not leak a secret.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.describe()).finish()
    }
}

/// Where values come from: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

impl<S: Source + ?Sized> Source for &S {
    fn get(&self, name: &str) -> Option<String> {
        (**self).get(name)
    }
}

/// Reads `.env` in the working directory into the environment, without overriding what is set.
pub fn load_dotenv() {
    let _ = dotenvy::dotenv();
}

/// The value of the variable `name` or of one of its aliases, as the table lists them (blank is
/// unset; no default): for code that reads a variable outside [`Config`].
pub fn lookup(source: impl Source, name: &'static str) -> Option<String> {
    Reader::new(source).set(name).map(|(_, v)| v)
}

impl Config {
    /// Reads the configuration. `sandbox` is `serve --sandbox`: the in-process simulator and
    /// its default credentials.
    pub fn from_source(source: impl Source, sandbox: bool) -> Result<Config, ConfigError> {
        let r = Reader::new(source);
        let listen = server::listen(&r)?;
        let database_url = database::url(&r)?;
        let payments = payments::read(&r)?;
        let mut daraja = daraja::read(&r, sandbox, payments.amount_bounds)?;
        let c2b = c2b::read(&r, sandbox, &daraja.client.shortcode)?;
        let money_out = money_out::read(&r, sandbox)?;
        if let Some(b2c) = &money_out.b2c_short_code {
            daraja.client.initiator_shortcode = Some(b2c.clone());
        }
        Ok(Config {
            listen,
            http: server::limits(&r)?,
            trusted_proxies: server::trusted_proxies(&r)?,
            database_url: SecretString::from(database_url),
            database_max_connections: database::max_connections(&r)?,
            secure_cookies: daraja
                .public_url
                .as_ref()
                .is_some_and(|u| u.scheme() == "https"),
            public_url: daraja.public_url,
            callback_secret: daraja.callback_secret,
            daraja: daraja.client,
            sandbox,
            reconcile_after: payments.reconcile_after,
            payment_expires_after: payments.payment_expires_after,
            reconcile_keep_asking: payments.reconcile_keep_asking,
            amount_bounds: payments.amount_bounds,
            money_out,
            c2b,
            telegram: telegram::read(&r)?,
            email: email::read(&r)?,
            webhook: webhook::read(&r)?,
            webhook_allow_private: webhook::allow_private(&r)?,
            outbox: outbox::read(&r)?,
            log_format: server::log_format(&r)?,
            links: links::read(&r)?,
        })
    }

    /// Reads only what commands that touch the database need (`payments`, `api-keys`, `admin`,
    /// `migrate`): no Daraja credentials required.
    pub fn database_url_from(source: impl Source) -> Result<SecretString, ConfigError> {
        database::url(&Reader::new(source)).map(SecretString::from)
    }

    /// The effective configuration as (name, value) rows with every secret masked, for
    /// `config check` and the dashboard's settings page: one row per variable of the table that
    /// has a `show`, in the table's order.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        VARIABLES
            .iter()
            .filter_map(|var| {
                let shown = match (var.show?)(self) {
                    Some(value) => match var.secret {
                        Secret::No => value,
                        Secret::Yes => mask(&SecretString::from(value)),
                        Secret::InUrl => mask_url(&value),
                        Secret::Identifier => mask_visible(&value),
                    },
                    None => match var.when_unset {
                        WhenUnset::Means(what) if !what.is_empty() => {
                            // "none (required with X)" reads as "(not set: required with X)".
                            let what = what
                                .strip_prefix("none (")
                                .and_then(|w| w.strip_suffix(')'))
                                .unwrap_or(what);
                            format!("(not set: {})", what.replace('`', ""))
                        }
                        _ => "(not set)".to_owned(),
                    },
                };
                Some((var.name, shown))
            })
            .collect()
    }
}

/// `set (N characters)`: a secret's presence without any of its characters.
pub fn mask(secret: &SecretString) -> String {
    format!(
        "set ({} characters, masked)",
        secret.expose_secret().chars().count()
    )
}

/// Consumer keys identify rather than authenticate; still, show only their ends.
fn mask_visible(s: &str) -> String {
    let n = s.chars().count();
    if n <= 8 {
        return "****".into();
    }
    let head: String = s.chars().take(4).collect();
    format!("{head}…({n} characters)")
}

/// A URL with its password (and any query, which may carry tokens) masked.
pub fn mask_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("****"));
            }
            if u.query().is_some() {
                u.set_query(Some("****"));
            }
            u.to_string()
        }
        Err(_) => "(unparseable URL, masked)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sandbox_needs_nothing() {
        let c = Config::from_source(env(&[]), true).unwrap();
        assert_eq!(c.daraja.shortcode, "174379");
        assert_eq!(
            c.daraja.consumer_key.expose_secret(),
            SIMULATOR_CONSUMER_KEY
        );
        assert_eq!(c.database_url.expose_secret(), "sqlite://mpesa-gateway.db");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(c.public_url, None);
        assert_eq!(c.reconcile_after, Duration::from_secs(60));
        assert_eq!(c.payment_expires_after, Duration::from_secs(300));
        assert_eq!(
            c.amount_bounds,
            AmountBounds {
                min: 1,
                max: 250_000
            }
        );
    }

    #[test]
    fn without_sandbox_credentials_are_required() {
        let err = Config::from_source(env(&[]), false).unwrap_err();
        assert!(err.to_string().contains("MPESA_CONSUMER_KEY"), "{err}");
    }

    #[test]
    fn both_documents_names_are_accepted() {
        let c = Config::from_source(
            env(&[
                ("MPESA_CONSUMER_KEY", "k"),
                ("MPESA_CONSUMER_SECRET", "s"),
                ("MPESA_SHORTCODE", "600984"),
                ("MPESA_PASSKEY", "pk"),
                ("DB_HOST", "db.internal"),
                ("DB_USER", "gw"),
                ("DB_PASSWORD", "p@ss"),
                ("DB_NAME", "mpesa"),
                ("EMAIL_HOST", "mail.example.com"),
                ("EMAIL_HOST_USER", "u"),
                ("EMAIL_HOST_PASSWORD", "secretpw"),
                ("EMAIL_USE_TLS", "true"),
                ("DEFAULT_FROM_EMAIL", "shop@example.com"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(c.daraja.shortcode, "600984");
        assert_eq!(c.daraja.passkey.expose_secret(), "pk");
        assert_eq!(
            c.database_url.expose_secret(),
            "mysql://gw:p%40ss@db.internal:3306/mpesa"
        );
        let email = c.email.unwrap();
        assert_eq!(
            email.smtp_url.expose_secret(),
            "smtp://u:secretpw@mail.example.com:587?tls=required"
        );
        assert_eq!(email.from, "shop@example.com");
    }

    #[test]
    fn production_demands_https_callbacks_and_real_credentials() {
        let base = [
            ("MPESA_ENVIRONMENT", "production"),
            ("MPESA_CONSUMER_KEY", "k"),
            ("MPESA_CONSUMER_SECRET", "s"),
            ("MPESA_BUSINESS_SHORT_CODE", "600984"),
            ("MPESA_PASS_KEY", "pk"),
        ];
        let mut e = env(&base);
        let err = Config::from_source(&e, false).unwrap_err();
        assert!(err.to_string().contains("MPESA_CALLBACK_URL"), "{err}");
        e.insert("MPESA_CALLBACK_URL".into(), "http://pay.example.com".into());
        assert!(
            Config::from_source(&e, false)
                .unwrap_err()
                .to_string()
                .contains("https")
        );
        e.insert(
            "MPESA_CALLBACK_URL".into(),
            "https://pay.example.com".into(),
        );
        let c = Config::from_source(&e, false).unwrap();
        assert!(c.secure_cookies);
        assert!(
            Config::from_source(&e, true).is_err(),
            "--sandbox with production is refused"
        );
    }

    #[test]
    fn buy_goods_needs_a_till() {
        let e = env(&[
            ("MPESA_CONSUMER_KEY", "k"),
            ("MPESA_CONSUMER_SECRET", "s"),
            ("MPESA_TRANSACTION_TYPE", "CustomerBuyGoodsOnline"),
        ]);
        assert!(
            Config::from_source(&e, false)
                .unwrap_err()
                .to_string()
                .contains("MPESA_PARTY_B")
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (k, v) in [
            ("AMOUNT_MAX", "lots"),
            ("GATEWAY_LISTEN", "localhost"),
            ("MPESA_TRANSACTION_TYPE", "BusinessBuyGoods"),
            ("WEBHOOK_ALLOW_PRIVATE", "maybe"),
            ("MPESA_SHORTCODE", "12"),
        ] {
            let err = Config::from_source(env(&[(k, v)]), true)
                .unwrap_err()
                .to_string();
            assert!(err.contains(k), "{k}: {err}");
        }
    }

    /// Issue 11, item 7: `ab/cd` and `ab?cd` made callback URLs the gateway then refused, and a
    /// one-character secret was accepted.
    #[test]
    fn the_callback_secret_is_long_and_url_safe() {
        for bad in [
            "ab/cd",
            "ab?cd",
            "x",
            &"a".repeat(31),
            &format!("{}/", "a".repeat(40)),
        ] {
            let err = Config::from_source(env(&[("MPESA_CALLBACK_SECRET", bad)]), true)
                .unwrap_err()
                .to_string();
            assert!(err.contains("MPESA_CALLBACK_SECRET"), "{err}");
            if bad.len() > 4 {
                assert!(!err.contains(bad), "the value is not quoted: {err}");
            }
        }
        let good = "Ab0_-".repeat(7);
        let c = Config::from_source(env(&[("MPESA_CALLBACK_SECRET", &good)]), true).unwrap();
        assert_eq!(c.callback_secret.unwrap().expose_secret(), good);
    }

    #[test]
    fn describe_never_shows_secrets() {
        let c = Config::from_source(
            env(&[
                ("MPESA_CONSUMER_KEY", "AbCdEfGhIjKlMnOp"),
                ("MPESA_CONSUMER_SECRET", "consumer-secret-value"),
                ("MPESA_PASS_KEY", "passkey-value-123"),
                ("DATABASE_URL", "postgres://gw:db-password-value@db/mpesa"),
                ("TELEGRAM_BOT_TOKEN", "123456:telegram-token-value"),
                ("SMTP_URL", "smtps://u:smtp-password-value@mail.example.com"),
                ("EMAIL_FROM", "a@example.com"),
                (
                    "WEBHOOK_URL",
                    "https://shop.example.com/hook?token=hook-token-value",
                ),
                ("WEBHOOK_SECRET", "webhook-secret-value-0123"),
                ("MPESA_INITIATOR_PASSWORD", "initiator-password-value"),
                (
                    "MPESA_CALLBACK_SECRET",
                    "callback-secret-value-0123456789ab",
                ),
            ]),
            false,
        )
        .unwrap();
        let text = format!("{:?}\n{:?}", c.describe(), c);
        for secret in [
            "consumer-secret-value",
            "passkey-value-123",
            "db-password-value",
            "telegram-token-value",
            "smtp-password-value",
            "hook-token-value",
            "webhook-secret-value-0123",
            "initiator-password-value",
            "callback-secret-value-0123456789ab",
            "EfGhIjKlMnOp",
        ] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
    /// A source that remembers every name asked for.
    struct Recording(
        BTreeMap<String, String>,
        std::cell::RefCell<std::collections::BTreeSet<String>>,
    );

    impl Source for Recording {
        fn get(&self, name: &str) -> Option<String> {
            self.1.borrow_mut().insert(name.to_owned());
            self.0.get(name).cloned()
        }
    }

    /// The table and the reading agree: over configurations that turn every section on (and
    /// the alternatives off), the names asked for are exactly the table's names and aliases.
    /// Every default of the table is parsed on the way (a default that does not parse fails).
    #[test]
    fn the_table_lists_exactly_what_is_read() {
        let on = [
            ("TELEGRAM_BOT_TOKEN", "123:abc"),
            ("WEBHOOK_URL", "https://shop.example.com/hook"),
            ("WEBHOOK_SECRET", "0123456789abcdef"),
        ];
        let mut asked = std::collections::BTreeSet::new();
        for (sandbox, extra) in [
            (true, &[][..]),
            (
                true,
                &[
                    ("SMTP_URL", "smtp://mail.example.com"),
                    ("EMAIL_FROM", "a@example.com"),
                ][..],
            ),
            (
                false,
                &[
                    ("MPESA_CONSUMER_KEY", "k"),
                    ("MPESA_CONSUMER_SECRET", "s"),
                    ("EMAIL_HOST", "mail.example.com"),
                    ("DEFAULT_FROM_EMAIL", "a@example.com"),
                    ("DB_HOST", "db.example.com"),
                    ("DB_NAME", "mpesa"),
                ][..],
            ),
        ] {
            let source = Recording(
                env(&on.iter().chain(extra).copied().collect::<Vec<_>>()),
                Default::default(),
            );
            Config::from_source(&source, sandbox).unwrap();
            asked.extend(source.1.into_inner());
        }
        let listed: std::collections::BTreeSet<String> = VARIABLES
            .iter()
            .filter(|v| v.read_by == variables::ReadBy::Config)
            .flat_map(|v| std::iter::once(&v.name).chain(v.aliases))
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            asked, listed,
            "names read (left) and names in the table (right)"
        );
    }

    /// Every variable the table calls secret is masked by `describe`, whatever its value.
    #[test]
    fn every_secret_of_the_table_is_masked() {
        let mut e = env(&[
            (
                "TELEGRAM_WEBHOOK_URL",
                "https://tg.example.com/hook?token=tg-url-token-value",
            ),
            ("SMTP_URL", "smtps://u:smtp-password-value@mail.example.com"),
            ("EMAIL_FROM", "a@example.com"),
            (
                "WEBHOOK_URL",
                "https://shop.example.com/hook?token=hook-token-value",
            ),
            ("DATABASE_URL", "postgres://gw:db-password-value@db/mpesa"),
        ]);
        let mut secrets = vec![
            "tg-url-token-value",
            "smtp-password-value",
            "hook-token-value",
            "db-password-value",
        ];
        for var in VARIABLES.iter().filter(|v| v.show.is_some()) {
            if matches!(var.secret, Secret::Yes | Secret::Identifier) {
                let value: &'static str = Box::leak(
                    format!("{}-value-0123456789", var.name.to_lowercase()).into_boxed_str(),
                );
                e.insert(var.name.to_owned(), value.to_owned());
                secrets.push(if var.secret == Secret::Identifier {
                    &value[4..]
                } else {
                    value
                });
            }
        }
        let c = Config::from_source(&e, false).unwrap();
        let text = format!("{:?}", c.describe());
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("TELEGRAM_BOT_TOKEN"), "{text}");
    }

    #[test]
    fn defaults_come_from_the_table() {
        let c = Config::from_source(env(&[("TELEGRAM_BOT_TOKEN", "1:x")]), true).unwrap();
        let t = c.telegram.unwrap();
        assert_eq!(t.poll_timeout, Duration::from_secs(30));
        assert_eq!(t.poll_lease, Duration::from_secs(60));
        assert_eq!(t.api_base.as_str(), "https://api.telegram.org/");
        assert_eq!(c.outbox.lease, Duration::from_secs(120));
        assert_eq!(c.outbox.schedules, crate::outbox::RetrySchedules::default());
        assert_eq!(c.daraja.request_timeout, Duration::from_secs(30));
        assert_eq!(c.database_max_connections, 10);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(default_of("AMOUNT_MAX"), Some("250000"));
    }
}
