//! The gateway end to end: one test binary (one link) with a module per concern. Every test
//! starts real gateways on loopback ports with real databases (a SQLite file, or a fresh
//! PostgreSQL or MariaDB database) and the Daraja simulator.

mod support;
#[path = "../common/test_tls.rs"]
mod test_tls;

mod c2b;
mod callback_redrive;
mod callbacks_received;
mod dashboard;
mod idempotency;
mod lifecycle;
mod money_out;
mod multi_instance;
mod openapi_contract;
mod outbox;
mod outbox_channels;
mod outbox_process;
mod outbox_receivers;
mod payment_links;
mod payments;
mod receipts;
mod reconcile;
mod service;
mod shared_token;
mod telegram_bot;
mod telegram_bot_delivery;
mod telegram_fake;
