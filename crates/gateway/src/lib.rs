//! mpesa-gateway: a self-hosted M-Pesa payments gateway.
//!
//! Where things live:
//! * [`config`]: the environment variables;
//! * [`app`]: wiring and graceful shutdown;
//! * [`http`]: the HTTP edge (merchant API, Safaricom callbacks, health, metrics, OpenAPI);
//! * [`payments`]: creating payments, sending pushes, the reconciler, notification planning,
//!   and what the doors read about payments (`payments::reads`);
//! * [`accounts`]: dashboard users, sessions and sign-in, merchant API keys, Telegram chat links;
//! * [`health`]: what `/health` and `/metrics` report;
//! * [`bot_ledger`]: the Telegram bot's handled updates and its poller's lease;
//! * [`money_out`]: refunds, payouts and balances on the initiator layer (stored before sent,
//!   sent once, results by callback, the unknown resolved by Transaction Status);
//! * [`callbacks`]: callback parsing, decisions, and group-committed ingestion;
//! * [`daraja_token`]: the Daraja access token shared by the instances through the database;
//! * [`outbox`]: delivering email, Telegram and webhook notifications;
//! * [`telegram`]: the Bot API client and the customer bot (long polling or webhook, `/pay`,
//!   the status message the outbox edits to the final state);
//! * [`cli`]: the command line.
//!
//! The payment rules are in the `mpesa-domain` crate, storage in `mpesa-storage`, the Daraja
//! client in `daraja` and the simulator in `daraja-sim`.

pub mod accounts;
pub mod admin;
pub mod app;
pub mod bot_ledger;
pub mod callbacks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daraja_token;
pub mod health;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod money_out;
pub mod outbox;
pub mod pay_page;
pub mod payments;
pub mod sandbox;
pub mod state;
pub mod telegram;
pub mod telemetry;
