//! The command line: `mpesa-gateway <command>`.

pub mod admin;
pub mod api_keys;
pub mod c2b;
pub mod config_check;
pub mod links;
pub mod money_out;
pub mod notify;
pub mod outbox;
pub mod pay;
pub mod payments;

use std::net::SocketAddr;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "mpesa-gateway",
    version,
    about = "A self-hosted M-Pesa payments gateway",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: HTTP server, reconciler, outbox worker, Telegram bot when configured.
    Serve {
        /// Also run the built-in Daraja simulator in-process and use it (no Safaricom account needed).
        #[arg(long)]
        sandbox: bool,
    },
    /// Run the Daraja simulator alone.
    Sandbox {
        #[arg(long, default_value = "127.0.0.1:8001", env = "SANDBOX_LISTEN")]
        listen: SocketAddr,
    },
    /// Apply database migrations to DATABASE_URL and exit.
    Migrate,
    /// Start a payment through a running gateway and follow it to its final state.
    Pay(pay::PayArgs),
    /// C2B (customers paying the paybill or till): register the URLs, recover lost confirmations.
    C2b {
        #[command(subcommand)]
        command: c2b::C2bCommand,
    },
    /// Look at payments in the database.
    Payments {
        #[command(subcommand)]
        command: payments::PaymentsCommand,
    },
    /// Payouts (B2C): pay an M-Pesa number through the running gateway; list and show them.
    Payouts {
        #[command(subcommand)]
        command: money_out::PayoutsCommand,
    },
    /// Ask M-Pesa for the balances (Account Balance) through the running gateway, and print
    /// the last answers.
    Balance(money_out::GatewayArgs),
    /// Payment links: pages where customers pay (and their account numbers at the paybill).
    Links {
        #[command(subcommand)]
        command: links::LinksCommand,
    },
    /// Merchant API keys.
    #[command(name = "api-keys")]
    ApiKeys {
        #[command(subcommand)]
        command: api_keys::ApiKeysCommand,
    },
    /// Dashboard users.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// The outbox: notifications waiting, delivered and dead-lettered.
    Outbox {
        #[command(subcommand)]
        command: outbox::OutboxCommand,
    },
    /// Notifications: send a test message on a channel.
    Notify {
        #[command(subcommand)]
        command: notify::NotifyCommand,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Exit 0 when the gateway at --url answers /health with 200 (for container health checks).
    Healthcheck {
        #[arg(
            long,
            env = "MPESA_GATEWAY_URL",
            default_value = "http://127.0.0.1:8000"
        )]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets masked) and test each connection.
    Check {
        /// Check as `serve --sandbox` would run.
        #[arg(long)]
        sandbox: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}
