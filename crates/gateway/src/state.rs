//! The state shared by every request handler and background worker: the configuration and the
//! services. The doors reach the database and Daraja only through these services (no handler is
//! handed storage or the Daraja client, and the command line builds the services it needs; the
//! test `no_door_reaches_storage_or_daraja` below checks it).

use std::ops::Deref;
use std::sync::Arc;

use secrecy::SecretString;

use crate::accounts::Accounts;
use crate::callbacks::CallbackIngestor;
use crate::config::Config;
use crate::health::{DependencyHealth, HealthChecks};
use crate::metrics::Metrics;
use crate::money_out::MoneyOut;
use crate::payments::Payments;

#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

pub struct StateInner {
    pub config: Config,
    pub payments: Payments,
    /// Payment links and the pay page's one operation.
    pub links: crate::payments::PaymentLinks,
    /// Refunds, payouts, balances and the initiator layer under them.
    pub money_out: MoneyOut,
    pub ingestor: CallbackIngestor,
    pub metrics: Arc<Metrics>,
    pub health: Arc<DependencyHealth>,
    /// `/health` and `/metrics`: the database asked now, Daraja's call counts.
    pub health_checks: HealthChecks,
    /// Dashboard users and sessions, merchant API keys, Telegram chat links.
    pub accounts: Accounts,
    /// The secret path segment of the callback URLs.
    pub callback_secret: SecretString,
    /// The outbox as the dashboard shows it: lists, counts, attempts, retry.
    pub outbox: crate::outbox::OutboxQueue,
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The doors: the ways in, which translate to and from the services.
    const DOORS: [&str; 5] = [
        "src/http",
        "src/admin",
        "src/pay_page",
        "src/telegram",
        "src/cli",
    ];

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// What in `text` reaches storage or Daraja past the services: the `Storage` trait named
    /// (`mpesa_storage::Storage`, in a `use` list too, or `dyn Storage`), a `state.storage` or
    /// `state.daraja` field, or a `.storage()` accessor. Whitespace is ignored, so a chain
    /// split over lines is seen.
    fn reaches_past_the_services(text: &str) -> Vec<String> {
        let code: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let ident = |c: char| c.is_alphanumeric() || c == '_';
        let mut found = Vec::new();
        for pattern in [
            "state.storage",
            "state.daraja",
            ".storage()",
            "dynStorage",
            "mpesa_storage::Storage",
        ] {
            let whole_word = code
                .match_indices(pattern)
                .any(|(at, _)| !code[at + pattern.len()..].starts_with(ident));
            if whole_word {
                found.push(pattern.to_owned());
            }
        }
        for (at, open) in code.match_indices("mpesa_storage::{") {
            let list = &code[at + open.len()..];
            let list = &list[..list.find('}').unwrap_or(list.len())];
            if list
                .split(',')
                .any(|name| name == "Storage" || name.starts_with("Storageas"))
            {
                found.push("mpesa_storage::{Storage}".to_owned());
            }
        }
        found
    }

    #[test]
    fn the_finder_sees_each_way_past_the_services() {
        for reaching in [
            "let s = state.storage.clone();",
            "state\n        .storage\n        .get_payment(id)",
            "state.daraja.metrics()",
            "self.initiator.storage().list()",
            "use mpesa_storage::Storage;",
            "use mpesa_storage::{Payment, Storage, StorageError};",
            "use mpesa_storage::{\n    Payment,\n    Storage,\n};",
            "fn f(s: &dyn Storage) {}",
            "storage: Arc<dyn   Storage>,",
        ] {
            assert!(
                !reaches_past_the_services(reaching).is_empty(),
                "not seen: {reaching}"
            );
        }
        for fine in [
            "use mpesa_storage::{Payment, StorageError};",
            "impl From<mpesa_storage::StorageError> for ApiError {}",
            "state.config.daraja.shortcode",
            "state.payments.find(id)",
            "tracing::warn!(%error, \"pay page: storage\");",
        ] {
            assert_eq!(
                reaches_past_the_services(fine),
                Vec::<String>::new(),
                "{fine}"
            );
        }
    }

    /// No door holds storage or the Daraja client: each reads and writes through a service
    /// operation (issue 12: the doors only translate).
    #[test]
    fn no_door_reaches_storage_or_daraja() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for door in DOORS {
            sources(&root.join(door), &mut files);
        }
        assert!(files.len() > 40, "the doors' sources were not found");
        let mut offenders = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for what in reaches_past_the_services(&text) {
                offenders.push(format!(
                    "{}: {what}",
                    file.strip_prefix(root).unwrap().display()
                ));
            }
        }
        assert!(
            offenders.is_empty(),
            "doors reaching storage or Daraja directly (give the operation a home in a service):\n{}",
            offenders.join("\n")
        );
    }
}
