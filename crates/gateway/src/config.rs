//! Configuration from the environment (and a `.env` file in the working directory).
//!
//! Every name in DESIGN.md's table is read here, including the aliases both source documents
//! used (`MPESA_SHORTCODE`, `MPESA_PASSKEY`, the FastAPI document's `DB_*` MySQL settings, and
//! the Django document's `EMAIL_HOST`… settings when `SMTP_URL` is unset). Secrets are kept as
//! `SecretString` and only ever shown masked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

pub use daraja::{Environment, TransactionType};
use mpesa_domain::AmountBounds;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Safaricom's published sandbox Lipa na M-Pesa Online shortcode and passkey (public test values).
pub use daraja::config::{SANDBOX_PASSKEY, SANDBOX_SHORTCODE};
/// The credentials the built-in simulator accepts when none are configured (`serve --sandbox`).
pub const SIMULATOR_CONSUMER_KEY: &str = "sandbox-consumer-key";
pub const SIMULATOR_CONSUMER_SECRET: &str = "sandbox-consumer-secret";

pub const DEFAULT_DATABASE_URL: &str = "sqlite://mpesa-gateway.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct DarajaSettings {
    pub environment: Environment,
    /// `MPESA_API_BASE_URL`: the simulator or a test double instead of Safaricom.
    pub base_url: Option<Url>,
    pub consumer_key: String,
    pub consumer_secret: SecretString,
    pub shortcode: String,
    pub passkey: SecretString,
    pub transaction_type: TransactionType,
    pub party_b: String,
    pub initiator_name: Option<String>,
    pub initiator_password: Option<SecretString>,
    pub certificate_path: Option<String>,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TelegramSettings {
    pub bot_token: SecretString,
    pub admin_chat_id: Option<i64>,
    pub api_base: Url,
    /// `TELEGRAM_WEBHOOK_SECRET`: when set, updates come by webhook instead of long polling.
    pub webhook_secret: Option<SecretString>,
    /// `TELEGRAM_WEBHOOK_URL`: where Telegram posts updates in webhook mode; by default
    /// `<MPESA_CALLBACK_URL>/telegram/webhook`.
    pub webhook_url: Option<Url>,
    /// `TELEGRAM_POLL_TIMEOUT`: how long one long poll (`getUpdates`) may wait (1s to 50s).
    pub poll_timeout: Duration,
    /// `TELEGRAM_POLL_LEASE`: how long the poller's lease lasts unrenewed; after a crash, how
    /// long until another instance sharing the database polls instead.
    pub poll_lease: Duration,
}

#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `smtp://user:pass@host:port` (STARTTLS when offered… see the outbox) or `smtps://…`.
    pub smtp_url: SecretString,
    pub from: String,
    pub admin_email: Option<String>,
    /// `SMTP_CA_FILE`: a PEM file of extra CAs to trust (a private relay's own CA).
    pub ca_file: Option<std::path::PathBuf>,
}

/// The outbox worker: retry schedules, lease and timeouts.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// `OUTBOX_RETRY_WEBHOOK`, `OUTBOX_RETRY_EMAIL`, `OUTBOX_RETRY_TELEGRAM`.
    pub schedules: crate::outbox::RetrySchedules,
    /// `OUTBOX_LEASE`: how long a claimed event is this instance's; after a crash, how long
    /// until another instance (or the restarted one) takes it over.
    pub lease: Duration,
    /// `OUTBOX_POLL_INTERVAL`: how often an idle worker looks for retries that came due.
    pub poll_interval: Duration,
    /// `WEBHOOK_TIMEOUT`: one webhook attempt, connection included.
    pub webhook_timeout: Duration,
    /// `SMTP_TIMEOUT`: each SMTP command.
    pub smtp_timeout: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            schedules: crate::outbox::RetrySchedules::default(),
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
            webhook_timeout: Duration::from_secs(10),
            smtp_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
pub struct WebhookSettings {
    pub url: Url,
    pub secret: SecretString,
}

/// The URL may carry a token in its query: show it masked.
impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &mask_url(self.url.as_str()))
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `HTTP_HEADER_READ_TIMEOUT`, `HTTP_IDLE_TIMEOUT`, `HTTP_MAX_CONNECTIONS`,
    /// `HTTP_SHUTDOWN_GRACE`.
    pub http: crate::http::server::ServerLimits,
    pub database_url: SecretString,
    pub database_max_connections: u32,
    /// The public base URL Safaricom calls back (`MPESA_CALLBACK_URL`); when unset, the gateway
    /// uses `http://<listen address>/`.
    pub public_url: Option<Url>,
    pub callback_secret: Option<SecretString>,
    pub daraja: DarajaSettings,
    /// Run the built-in Daraja simulator in-process and point the client at it.
    pub sandbox: bool,
    pub reconcile_after: Duration,
    pub payment_expires_after: Duration,
    /// `RECONCILE_KEEP_ASKING_SECS`: how long Daraja is asked about a payment whose queries get
    /// no answer (then it is held for a person).
    pub reconcile_keep_asking: Duration,
    pub amount_bounds: AmountBounds,
    pub telegram: Option<TelegramSettings>,
    pub email: Option<EmailSettings>,
    pub webhook: Option<WebhookSettings>,
    pub webhook_allow_private: bool,
    pub outbox: OutboxSettings,
    pub log_format: LogFormat,
    /// Secure cookies for the dashboard (set when the public URL is https).
    pub secure_cookies: bool,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` / `Forwarded` name the client.
    pub trusted_proxies: crate::http::client_addr::TrustedProxies,
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

struct Reader<S> {
    source: S,
}

impl<S: Source> Reader<S> {
    /// The first of the names that is set to something other than blanks.
    fn first(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names.iter().find_map(|n| {
            self.source
                .get(n)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(|v| (*n, v))
        })
    }

    fn string(&self, names: &[&'static str]) -> Option<String> {
        self.first(names).map(|(_, v)| v)
    }

    fn parse<T: std::str::FromStr>(
        &self,
        names: &[&'static str],
        what: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.first(names) {
            None => Ok(None),
            Some((name, v)) => v.parse().map(Some).map_err(|_| ConfigError::Invalid {
                name,
                reason: format!("expected {what}, got {v:?}"),
            }),
        }
    }

    fn bool(&self, names: &[&'static str]) -> Result<Option<bool>, ConfigError> {
        match self.first(names) {
            None => Ok(None),
            Some((name, v)) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(Some(true)),
                "0" | "false" | "no" | "off" => Ok(Some(false)),
                _ => Err(ConfigError::Invalid {
                    name,
                    reason: format!("expected true or false, got {v:?}"),
                }),
            },
        }
    }

    fn url(&self, names: &[&'static str]) -> Result<Option<Url>, ConfigError> {
        match self.first(names) {
            None => Ok(None),
            Some((name, v)) => Url::parse(&v).map(Some).map_err(|e| ConfigError::Invalid {
                name,
                reason: format!("not a URL ({e})"),
            }),
        }
    }
}

impl Config {
    /// Reads the configuration. `sandbox` is `serve --sandbox`: the in-process simulator and
    /// its default credentials.
    pub fn from_source(source: impl Source, sandbox: bool) -> Result<Config, ConfigError> {
        let r = Reader { source };

        let listen: SocketAddr = r
            .parse(&["GATEWAY_LISTEN"], "an address like 127.0.0.1:8000")?
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default listen address"));

        let database_url = match r.string(&["DATABASE_URL"]) {
            Some(url) => url,
            None => mysql_url_from_parts(&r)?.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
        };

        let environment = match r.first(&["MPESA_ENVIRONMENT"]) {
            None => Environment::Sandbox,
            Some((name, v)) => match v.to_ascii_lowercase().as_str() {
                "sandbox" => Environment::Sandbox,
                "production" | "live" => Environment::Production,
                _ => {
                    return Err(ConfigError::Invalid {
                        name,
                        reason: format!("expected sandbox or production, got {v:?}"),
                    });
                }
            },
        };
        if sandbox && environment == Environment::Production {
            return Err(ConfigError::Invalid {
                name: "MPESA_ENVIRONMENT",
                reason: "--sandbox runs the simulator; it cannot be combined with production"
                    .into(),
            });
        }

        let base_url = r.url(&["MPESA_API_BASE_URL"])?;
        let (consumer_key, consumer_secret) = match (
            r.string(&["MPESA_CONSUMER_KEY"]),
            r.string(&["MPESA_CONSUMER_SECRET"]),
        ) {
            (Some(k), Some(s)) => (k, SecretString::from(s)),
            (None, None) if sandbox => (
                SIMULATOR_CONSUMER_KEY.to_owned(),
                SecretString::from(SIMULATOR_CONSUMER_SECRET),
            ),
            (None, _) => {
                return Err(ConfigError::Missing {
                    name: "MPESA_CONSUMER_KEY",
                    hint: " (from your Daraja app; or run `serve --sandbox` to use the built-in simulator)",
                });
            }
            (_, None) => {
                return Err(ConfigError::Missing {
                    name: "MPESA_CONSUMER_SECRET",
                    hint: " (from your Daraja app; or run `serve --sandbox` to use the built-in simulator)",
                });
            }
        };

        let shortcode = match r.first(&["MPESA_BUSINESS_SHORT_CODE", "MPESA_SHORTCODE"]) {
            Some((name, v)) => {
                if !(5..=7).contains(&v.len()) || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ConfigError::Invalid {
                        name,
                        reason: "a shortcode is 5 to 7 digits".into(),
                    });
                }
                v
            }
            None if environment == Environment::Sandbox => SANDBOX_SHORTCODE.to_owned(),
            None => {
                return Err(ConfigError::Missing {
                    name: "MPESA_BUSINESS_SHORT_CODE",
                    hint: "",
                });
            }
        };
        let passkey = match r.string(&["MPESA_PASS_KEY", "MPESA_PASSKEY"]) {
            Some(v) => SecretString::from(v),
            None if environment == Environment::Sandbox => SecretString::from(SANDBOX_PASSKEY),
            None => {
                return Err(ConfigError::Missing {
                    name: "MPESA_PASS_KEY",
                    hint: " (emailed by Safaricom at go-live)",
                });
            }
        };
        let transaction_type = match r.first(&["MPESA_TRANSACTION_TYPE"]) {
            None => TransactionType::CustomerPayBillOnline,
            Some((_, v)) if v == "CustomerPayBillOnline" => TransactionType::CustomerPayBillOnline,
            Some((_, v)) if v == "CustomerBuyGoodsOnline" => {
                TransactionType::CustomerBuyGoodsOnline
            }
            Some((name, v)) => {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!(
                        "expected CustomerPayBillOnline or CustomerBuyGoodsOnline, got {v:?}"
                    ),
                });
            }
        };
        let party_b = match r.first(&["MPESA_PARTY_B", "MPESA_TILL_NUMBER"]) {
            Some((name, v)) => {
                if !(5..=8).contains(&v.len()) || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ConfigError::Invalid {
                        name,
                        reason: "a till or paybill number is 5 to 8 digits".into(),
                    });
                }
                v
            }
            None if transaction_type == TransactionType::CustomerBuyGoodsOnline => {
                return Err(ConfigError::Missing {
                    name: "MPESA_PARTY_B",
                    hint: " (the till number; MPESA_BUSINESS_SHORT_CODE is the store number that owns the passkey)",
                });
            }
            None => shortcode.clone(),
        };

        let public_url = match r.url(&["MPESA_CALLBACK_URL"])? {
            Some(u) => {
                if environment == Environment::Production && u.scheme() != "https" {
                    return Err(ConfigError::Invalid {
                        name: "MPESA_CALLBACK_URL",
                        reason: "Safaricom calls back only over https in production".into(),
                    });
                }
                if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                    return Err(ConfigError::Invalid {
                        name: "MPESA_CALLBACK_URL",
                        reason: "expected an http(s) base URL".into(),
                    });
                }
                // A base URL: the callback paths are joined under it.
                let mut u = u;
                if !u.path().ends_with('/') {
                    let path = format!("{}/", u.path());
                    u.set_path(&path);
                }
                u.set_query(None);
                Some(u)
            }
            None if environment == Environment::Production => {
                return Err(ConfigError::Missing {
                    name: "MPESA_CALLBACK_URL",
                    hint: " (the public https base URL at which Safaricom reaches this gateway)",
                });
            }
            None => None,
        };

        let reconcile_after =
            Duration::from_secs(r.parse(&["RECONCILE_AFTER_SECS"], "seconds")?.unwrap_or(60));
        let payment_expires_after = Duration::from_secs(
            r.parse(&["PAYMENT_EXPIRES_AFTER_SECS"], "seconds")?
                .unwrap_or(300),
        );
        if payment_expires_after.is_zero() {
            return Err(ConfigError::Invalid {
                name: "PAYMENT_EXPIRES_AFTER_SECS",
                reason: "must be above 0".into(),
            });
        }
        let reconcile_keep_asking = Duration::from_secs(
            r.parse(&["RECONCILE_KEEP_ASKING_SECS"], "seconds")?
                .unwrap_or(86_400),
        );
        let min = r.parse(&["AMOUNT_MIN"], "whole shillings")?.unwrap_or(1i64);
        let max = r
            .parse(&["AMOUNT_MAX"], "whole shillings")?
            .unwrap_or(250_000i64);
        if min < 1 || max < min {
            return Err(ConfigError::Invalid {
                name: "AMOUNT_MIN",
                reason: format!("need 1 <= AMOUNT_MIN <= AMOUNT_MAX, got {min} and {max}"),
            });
        }

        let telegram = match r.string(&["TELEGRAM_BOT_TOKEN"]) {
            None => None,
            Some(token) => Some(TelegramSettings {
                bot_token: SecretString::from(token),
                admin_chat_id: r.parse(
                    &["ADMIN_CHAT_ID", "TELEGRAM_ADMIN_CHAT_ID"],
                    "a Telegram chat id",
                )?,
                api_base: r
                    .url(&["TELEGRAM_API_BASE"])?
                    .unwrap_or_else(|| Url::parse("https://api.telegram.org").expect("static URL")),
                webhook_secret: telegram_webhook_secret(&r)?,
                webhook_url: r.url(&["TELEGRAM_WEBHOOK_URL"])?,
                poll_timeout: duration_within(
                    &r,
                    "TELEGRAM_POLL_TIMEOUT",
                    Duration::from_secs(30),
                    Duration::from_secs(1)..=Duration::from_secs(50),
                )?,
                poll_lease: duration_within(
                    &r,
                    "TELEGRAM_POLL_LEASE",
                    Duration::from_secs(60),
                    Duration::from_secs(1)..=Duration::from_secs(3600),
                )?,
            }),
        };

        let email = match smtp_url(&r)? {
            None => None,
            Some(smtp_url) => Some(EmailSettings {
                smtp_url,
                from: r.string(&["EMAIL_FROM", "DEFAULT_FROM_EMAIL"]).ok_or(
                    ConfigError::Missing {
                        name: "EMAIL_FROM",
                        hint: " (when SMTP_URL is set)",
                    },
                )?,
                admin_email: r.string(&["ADMIN_EMAIL"]),
                ca_file: r.string(&["SMTP_CA_FILE"]).map(Into::into),
            }),
        };

        let webhook = match (r.url(&["WEBHOOK_URL"])?, r.string(&["WEBHOOK_SECRET"])) {
            (None, _) => None,
            (Some(url), Some(secret)) => {
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(ConfigError::Invalid {
                        name: "WEBHOOK_URL",
                        reason: "must be http or https".into(),
                    });
                }
                if secret.len() < 16 {
                    return Err(ConfigError::Invalid {
                        name: "WEBHOOK_SECRET",
                        reason: "use at least 16 characters".into(),
                    });
                }
                Some(WebhookSettings {
                    url,
                    secret: SecretString::from(secret),
                })
            }
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    name: "WEBHOOK_SECRET",
                    hint: " (when WEBHOOK_URL is set)",
                });
            }
        };

        let log_format = match r.first(&["LOG_FORMAT"]) {
            None => LogFormat::Text,
            Some((_, v)) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some((_, v)) if v.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some((name, v)) => {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("expected text or json, got {v:?}"),
                });
            }
        };

        let trusted_proxies = match r.first(&["TRUSTED_PROXIES"]) {
            None => Default::default(),
            Some((name, v)) => crate::http::client_addr::TrustedProxies::parse(&v)
                .map_err(|reason| ConfigError::Invalid { name, reason })?,
        };

        Ok(Config {
            listen,
            trusted_proxies,
            http: http_limits(&r)?,
            database_url: SecretString::from(database_url),
            database_max_connections: r
                .parse(&["DATABASE_MAX_CONNECTIONS"], "a number")?
                .unwrap_or(10),
            secure_cookies: public_url.as_ref().is_some_and(|u| u.scheme() == "https"),
            public_url,
            callback_secret: match r.first(&["MPESA_CALLBACK_SECRET"]) {
                None => None,
                Some((name, v)) => {
                    check_callback_secret(&v)
                        .map_err(|reason| ConfigError::Invalid { name, reason })?;
                    Some(SecretString::from(v))
                }
            },
            daraja: DarajaSettings {
                environment,
                base_url,
                consumer_key,
                consumer_secret,
                shortcode,
                passkey,
                transaction_type,
                party_b,
                initiator_name: r.string(&["MPESA_INITIATOR_NAME"]),
                initiator_password: r
                    .string(&["MPESA_INITIATOR_PASSWORD"])
                    .map(SecretString::from),
                certificate_path: r.string(&["MPESA_CERTIFICATE_PATH"]),
                request_timeout: Duration::from_secs(
                    r.parse(&["MPESA_TIMEOUT_SECS"], "seconds")?.unwrap_or(30),
                ),
            },
            sandbox,
            reconcile_after,
            payment_expires_after,
            reconcile_keep_asking,
            amount_bounds: AmountBounds { min, max },
            telegram,
            email,
            webhook,
            webhook_allow_private: r.bool(&["WEBHOOK_ALLOW_PRIVATE"])?.unwrap_or(false),
            outbox: outbox_settings(&r)?,
            log_format,
        })
    }

    /// Reads only what commands that touch the database need (`payments`, `api-keys`, `admin`,
    /// `migrate`): no Daraja credentials required.
    pub fn database_url_from(source: impl Source) -> Result<SecretString, ConfigError> {
        let r = Reader { source };
        Ok(SecretString::from(match r.string(&["DATABASE_URL"]) {
            Some(url) => url,
            None => mysql_url_from_parts(&r)?.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
        }))
    }

    /// The effective configuration as (name, value) rows with every secret masked, for
    /// `config check` and the dashboard's settings page.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let d = &self.daraja;
        let mut rows = vec![
            ("GATEWAY_LISTEN", self.listen.to_string()),
            (
                "HTTP_HEADER_READ_TIMEOUT",
                format!("{:?}", self.http.header_read_timeout),
            ),
            ("HTTP_IDLE_TIMEOUT", format!("{:?}", self.http.idle_timeout)),
            (
                "HTTP_MAX_CONNECTIONS",
                self.http.max_connections.to_string(),
            ),
            (
                "HTTP_SHUTDOWN_GRACE",
                format!("{:?}", self.http.shutdown_grace),
            ),
            ("DATABASE_URL", mask_url(self.database_url.expose_secret())),
            ("MPESA_ENVIRONMENT", d.environment.as_str().to_owned()),
            (
                "MPESA_API_BASE_URL",
                match (&d.base_url, self.sandbox) {
                    (_, true) => "built-in simulator (--sandbox)".to_owned(),
                    (Some(u), false) => u.to_string(),
                    (None, false) => "Safaricom (by environment)".to_owned(),
                },
            ),
            ("MPESA_CONSUMER_KEY", mask_visible(&d.consumer_key)),
            ("MPESA_CONSUMER_SECRET", mask(&d.consumer_secret)),
            ("MPESA_BUSINESS_SHORT_CODE", d.shortcode.clone()),
            ("MPESA_PASS_KEY", mask(&d.passkey)),
            (
                "MPESA_TRANSACTION_TYPE",
                d.transaction_type.as_str().to_owned(),
            ),
            ("MPESA_PARTY_B", d.party_b.clone()),
            (
                "MPESA_CALLBACK_URL",
                match &self.public_url {
                    Some(u) => u.to_string(),
                    None => format!("http://{}/ (from the listen address)", self.listen),
                },
            ),
            (
                "MPESA_CALLBACK_SECRET",
                match &self.callback_secret {
                    Some(s) => mask(s),
                    None => "generated once and stored in the database".into(),
                },
            ),
            (
                "MPESA_INITIATOR_NAME",
                d.initiator_name
                    .clone()
                    .unwrap_or_else(|| "(not set)".into()),
            ),
            (
                "MPESA_INITIATOR_PASSWORD",
                d.initiator_password
                    .as_ref()
                    .map(mask)
                    .unwrap_or_else(|| "(not set)".into()),
            ),
            (
                "RECONCILE_AFTER_SECS",
                self.reconcile_after.as_secs().to_string(),
            ),
            (
                "PAYMENT_EXPIRES_AFTER_SECS",
                self.payment_expires_after.as_secs().to_string(),
            ),
            (
                "RECONCILE_KEEP_ASKING_SECS",
                self.reconcile_keep_asking.as_secs().to_string(),
            ),
            ("AMOUNT_MIN", self.amount_bounds.min.to_string()),
            ("AMOUNT_MAX", self.amount_bounds.max.to_string()),
        ];
        match &self.telegram {
            Some(t) => {
                rows.push(("TELEGRAM_BOT_TOKEN", mask(&t.bot_token)));
                rows.push((
                    "ADMIN_CHAT_ID",
                    t.admin_chat_id
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "(not set)".into()),
                ));
                rows.push(("TELEGRAM_API_BASE", t.api_base.to_string()));
                rows.push((
                    "TELEGRAM_WEBHOOK_SECRET",
                    match &t.webhook_secret {
                        Some(secret) => format!("{} (webhook mode)", mask(secret)),
                        None => "(not set: long polling)".into(),
                    },
                ));
                if t.webhook_secret.is_some() {
                    rows.push((
                        "TELEGRAM_WEBHOOK_URL",
                        t.webhook_url
                            .as_ref()
                            .map(|u| mask_url(u.as_str()))
                            .unwrap_or_else(|| "(from MPESA_CALLBACK_URL)".into()),
                    ));
                } else {
                    rows.push(("TELEGRAM_POLL_TIMEOUT", format!("{:?}", t.poll_timeout)));
                    rows.push(("TELEGRAM_POLL_LEASE", format!("{:?}", t.poll_lease)));
                }
            }
            None => rows.push(("TELEGRAM_BOT_TOKEN", "(not set: Telegram off)".into())),
        }
        match &self.email {
            Some(e) => {
                rows.push(("SMTP_URL", mask_url(e.smtp_url.expose_secret())));
                rows.push(("EMAIL_FROM", e.from.clone()));
                rows.push((
                    "ADMIN_EMAIL",
                    e.admin_email.clone().unwrap_or_else(|| "(not set)".into()),
                ));
            }
            None => rows.push(("SMTP_URL", "(not set: email off)".into())),
        }
        match &self.webhook {
            Some(w) => {
                rows.push(("WEBHOOK_URL", mask_url(w.url.as_str())));
                rows.push(("WEBHOOK_SECRET", mask(&w.secret)));
            }
            None => rows.push(("WEBHOOK_URL", "(not set: webhooks off)".into())),
        }
        rows.push((
            "TRUSTED_PROXIES",
            if self.trusted_proxies.is_empty() {
                "(none: forwarding headers are ignored)".to_owned()
            } else {
                self.trusted_proxies.to_string()
            },
        ));
        rows.push((
            "WEBHOOK_ALLOW_PRIVATE",
            self.webhook_allow_private.to_string(),
        ));
        let o = &self.outbox;
        if let Some(e) = &self.email {
            rows.push((
                "SMTP_CA_FILE",
                e.ca_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(not set: the system's CAs)".into()),
            ));
        }
        rows.push(("SMTP_TIMEOUT", format!("{:?}", o.smtp_timeout)));
        rows.push(("WEBHOOK_TIMEOUT", format!("{:?}", o.webhook_timeout)));
        rows.push(("OUTBOX_RETRY_WEBHOOK", o.schedules.webhook.to_string()));
        rows.push(("OUTBOX_RETRY_EMAIL", o.schedules.email.to_string()));
        rows.push(("OUTBOX_RETRY_TELEGRAM", o.schedules.telegram.to_string()));
        rows.push(("OUTBOX_LEASE", format!("{:?}", o.lease)));
        rows.push(("OUTBOX_POLL_INTERVAL", format!("{:?}", o.poll_interval)));
        rows
    }
}

/// The outbox's schedules, lease and timeouts (durations like `500ms`, `30s`, `2m`).
fn outbox_settings<S: Source>(r: &Reader<S>) -> Result<OutboxSettings, ConfigError> {
    use crate::outbox::{RetrySchedule, schedule::parse_duration};
    let mut o = OutboxSettings::default();
    for (name, slot) in [
        ("OUTBOX_RETRY_WEBHOOK", &mut o.schedules.webhook),
        ("OUTBOX_RETRY_EMAIL", &mut o.schedules.email),
        ("OUTBOX_RETRY_TELEGRAM", &mut o.schedules.telegram),
    ] {
        if let Some((name, v)) = r.first(&[name]) {
            *slot =
                RetrySchedule::parse(&v).map_err(|reason| ConfigError::Invalid { name, reason })?;
        }
    }
    for (name, slot, min) in [
        ("OUTBOX_LEASE", &mut o.lease, Duration::from_secs(1)),
        (
            "OUTBOX_POLL_INTERVAL",
            &mut o.poll_interval,
            Duration::from_millis(10),
        ),
        (
            "WEBHOOK_TIMEOUT",
            &mut o.webhook_timeout,
            Duration::from_millis(100),
        ),
        (
            "SMTP_TIMEOUT",
            &mut o.smtp_timeout,
            Duration::from_millis(100),
        ),
    ] {
        if let Some((name, v)) = r.first(&[name]) {
            let d = parse_duration(&v).map_err(|reason| ConfigError::Invalid { name, reason })?;
            if d < min {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("at least {min:?}"),
                });
            }
            *slot = d;
        }
    }
    Ok(o)
}

/// The HTTP server's limits (see `http::server`).
fn http_limits<S: Source>(r: &Reader<S>) -> Result<crate::http::server::ServerLimits, ConfigError> {
    let defaults = crate::http::server::ServerLimits::default();
    let max_connections: usize = r
        .parse(&["HTTP_MAX_CONNECTIONS"], "a number of connections")?
        .unwrap_or(defaults.max_connections);
    if max_connections == 0 {
        return Err(ConfigError::Invalid {
            name: "HTTP_MAX_CONNECTIONS",
            reason: "must be above 0".into(),
        });
    }
    Ok(crate::http::server::ServerLimits {
        header_read_timeout: duration_within(
            r,
            "HTTP_HEADER_READ_TIMEOUT",
            defaults.header_read_timeout,
            Duration::from_millis(100)..=Duration::from_secs(600),
        )?,
        idle_timeout: duration_within(
            r,
            "HTTP_IDLE_TIMEOUT",
            defaults.idle_timeout,
            Duration::from_millis(100)..=Duration::from_secs(3600),
        )?,
        max_connections,
        shutdown_grace: duration_within(
            r,
            "HTTP_SHUTDOWN_GRACE",
            defaults.shutdown_grace,
            Duration::ZERO..=Duration::from_secs(3600),
        )?,
    })
}

/// A duration variable (`30s`, `2m`) within bounds, or its default.
fn duration_within<S: Source>(
    r: &Reader<S>,
    name: &'static str,
    default: Duration,
    bounds: std::ops::RangeInclusive<Duration>,
) -> Result<Duration, ConfigError> {
    let Some((name, v)) = r.first(&[name]) else {
        return Ok(default);
    };
    let d = crate::outbox::schedule::parse_duration(&v)
        .map_err(|reason| ConfigError::Invalid { name, reason })?;
    if !bounds.contains(&d) {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("between {:?} and {:?}", bounds.start(), bounds.end()),
        });
    }
    Ok(d)
}

/// The fewest characters a callback secret has: it is all that keeps forged callbacks out.
pub const CALLBACK_SECRET_MIN_CHARS: usize = 32;

/// A callback secret is a path segment of the URL Safaricom calls: at least
/// [`CALLBACK_SECRET_MIN_CHARS`] of `A-Z a-z 0-9 _ -`, so it is long enough not to be guessed
/// and needs no escaping (`/` or `?` made callback URLs the gateway then refused itself). The
/// reason never quotes the value.
pub fn check_callback_secret(secret: &str) -> Result<(), String> {
    let allowed = secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if secret.len() < CALLBACK_SECRET_MIN_CHARS || !allowed {
        return Err(format!(
            "use at least {CALLBACK_SECRET_MIN_CHARS} characters of A-Z a-z 0-9 _ - (e.g. the output of `openssl rand -hex 32`); the value is not shown"
        ));
    }
    Ok(())
}

/// Telegram's `secret_token`: 1 to 256 of `A-Z a-z 0-9 _ -`.
fn telegram_webhook_secret<S: Source>(r: &Reader<S>) -> Result<Option<SecretString>, ConfigError> {
    let Some((name, v)) = r.first(&["TELEGRAM_WEBHOOK_SECRET"]) else {
        return Ok(None);
    };
    if v.len() > 256
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::Invalid {
            name,
            reason: "Telegram accepts 1 to 256 letters, digits, _ and - (the value is not shown)"
                .into(),
        });
    }
    Ok(Some(SecretString::from(v)))
}

/// The FastAPI document's MySQL settings, used when `DATABASE_URL` is unset.
fn mysql_url_from_parts<S: Source>(r: &Reader<S>) -> Result<Option<String>, ConfigError> {
    let Some(host) = r.string(&["DB_HOST"]) else {
        return Ok(None);
    };
    let port: u16 = r.parse(&["DB_PORT"], "a port number")?.unwrap_or(3306);
    let user = r.string(&["DB_USER"]).unwrap_or_else(|| "root".into());
    let password = r.string(&["DB_PASSWORD"]).unwrap_or_default();
    let name = r.string(&["DB_NAME"]).ok_or(ConfigError::Missing {
        name: "DB_NAME",
        hint: " (when DB_HOST is set)",
    })?;
    let mut url = Url::parse("mysql://localhost/").expect("static URL");
    url.set_host(Some(&host))
        .map_err(|e| ConfigError::Invalid {
            name: "DB_HOST",
            reason: e.to_string(),
        })?;
    let _ = url.set_port(Some(port));
    let _ = url.set_username(&user);
    if !password.is_empty() {
        let _ = url.set_password(Some(&password));
    }
    url.set_path(&name);
    Ok(Some(url.to_string()))
}

/// `SMTP_URL`, or the Django document's `EMAIL_HOST`/`EMAIL_PORT`/`EMAIL_HOST_USER`/
/// `EMAIL_HOST_PASSWORD`/`EMAIL_USE_TLS`/`EMAIL_USE_SSL`.
fn smtp_url<S: Source>(r: &Reader<S>) -> Result<Option<SecretString>, ConfigError> {
    if let Some(u) = r.url(&["SMTP_URL"])? {
        if !matches!(u.scheme(), "smtp" | "smtps") {
            return Err(ConfigError::Invalid {
                name: "SMTP_URL",
                reason: "expected smtp://… or smtps://…".into(),
            });
        }
        return Ok(Some(SecretString::from(u.to_string())));
    }
    let Some(host) = r.string(&["EMAIL_HOST"]) else {
        return Ok(None);
    };
    let implicit_tls = r.bool(&["EMAIL_USE_SSL"])?.unwrap_or(false);
    let starttls = r.bool(&["EMAIL_USE_TLS"])?.unwrap_or(false);
    let port: u16 = r
        .parse(&["EMAIL_PORT"], "a port number")?
        .unwrap_or(if implicit_tls { 465 } else { 587 });
    let mut url = Url::parse(if implicit_tls {
        "smtps://localhost"
    } else {
        "smtp://localhost"
    })
    .expect("static URL");
    url.set_host(Some(&host))
        .map_err(|e| ConfigError::Invalid {
            name: "EMAIL_HOST",
            reason: e.to_string(),
        })?;
    let _ = url.set_port(Some(port));
    if let Some(user) = r.string(&["EMAIL_HOST_USER"]) {
        let _ = url.set_username(&user);
    }
    if let Some(pass) = r.string(&["EMAIL_HOST_PASSWORD"]) {
        let _ = url.set_password(Some(&pass));
    }
    if starttls {
        url.query_pairs_mut().append_pair("tls", "required");
    }
    Ok(Some(SecretString::from(url.to_string())))
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
        assert_eq!(c.daraja.consumer_key, SIMULATOR_CONSUMER_KEY);
        assert_eq!(c.database_url.expose_secret(), DEFAULT_DATABASE_URL);
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
}
