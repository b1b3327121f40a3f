use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mpesa_gateway::app::{App, open_storage, shutdown_signal};
use mpesa_gateway::cli::{Cli, Command, ConfigCommand};
use mpesa_gateway::config::{self, Config, ProcessEnv};
use mpesa_gateway::{cli, sandbox, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    config::load_dotenv();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// 0 when the command did what it was asked, 1 when it ran but did not.
fn exit(done: bool) -> ExitCode {
    if done {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { sandbox } => {
            let config = Config::from_source(ProcessEnv, sandbox)?;
            telemetry::init(config.log_format);
            let app = App::build(config).await?;
            if sandbox {
                sandbox::announce(&app).await?;
            }
            let shutdown = CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                trigger.cancel();
            });
            app.run_until_stopped(shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sandbox { listen } => {
            telemetry::init(config::LogFormat::Text);
            sandbox::run_standalone(listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            telemetry::init(config::LogFormat::Text);
            let url = Config::database_url_from(ProcessEnv)?;
            let storage = open_storage(&url, 2).await?;
            storage.close().await;
            eprintln!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Pay(args) => Ok(if cli::pay::run(args).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }),
        Command::C2b { command } => {
            let config = Config::from_source(ProcessEnv, false)?;
            telemetry::init(config.log_format);
            Ok(if cli::c2b::run(config, command).await? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Payments {
            command: cli::payments::PaymentsCommand::Refund(args),
        } => Ok(exit(cli::money_out::refund(args).await?)),
        Command::Payouts {
            command: command @ cli::money_out::PayoutsCommand::Create { .. },
        } => Ok(exit(cli::money_out::create_payout(command).await?)),
        Command::Payouts { command } => {
            let storage = open_storage(&Config::database_url_from(ProcessEnv)?, 2).await?;
            let payouts = mpesa_gateway::money_out::PayoutReads::new(storage.clone());
            let result = cli::money_out::read(&payouts, command).await;
            storage.close().await;
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Balance(args) => Ok(exit(cli::money_out::balance(args).await?)),
        Command::Payments { command } => {
            let storage = open_storage(&Config::database_url_from(ProcessEnv)?, 2).await?;
            let payments = mpesa_gateway::payments::PaymentReads::new(storage.clone());
            let result = cli::payments::run(&payments, command).await;
            storage.close().await;
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Links { command } => {
            // The link service needs the public address and amount limits; Daraja credentials
            // are not needed to manage links.
            let config = Config::from_source(ProcessEnv, false)
                .or_else(|first| Config::from_source(ProcessEnv, true).map_err(|_| first))?;
            let storage = open_storage(&Config::database_url_from(ProcessEnv)?, 2).await?;
            let links = mpesa_gateway::payments::PaymentLinks::for_config(&config, storage.clone());
            let result = cli::links::run(&links, command).await;
            storage.close().await;
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ApiKeys { command } => {
            let storage = open_storage(&Config::database_url_from(ProcessEnv)?, 2).await?;
            let accounts = mpesa_gateway::accounts::Accounts::new(storage.clone());
            let result = cli::api_keys::run(&accounts, command).await;
            storage.close().await;
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin { command } => {
            let storage = open_storage(&Config::database_url_from(ProcessEnv)?, 2).await?;
            let accounts = mpesa_gateway::accounts::Accounts::new(storage.clone());
            let result = cli::admin::run(&accounts, command).await;
            storage.close().await;
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Outbox { command } => {
            let storage = open_storage(&Config::database_url_from(ProcessEnv)?, 2).await?;
            // No worker runs in this process: a running gateway's picks a retried event up.
            let queue =
                mpesa_gateway::outbox::OutboxQueue::new(storage.clone(), Default::default());
            let result = cli::outbox::run(&queue, command).await;
            storage.close().await;
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Notify { command } => {
            telemetry::init(config::LogFormat::Text);
            // The channels read the same with or without Daraja credentials: a deployment
            // trying its email does not need them.
            let config = Config::from_source(ProcessEnv, false)
                .or_else(|first| Config::from_source(ProcessEnv, true).map_err(|_| first))?;
            Ok(if cli::notify::run(&config, command).await? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Config {
            command: ConfigCommand::Check { sandbox },
        } => {
            let config = Config::from_source(ProcessEnv, sandbox)?;
            Ok(if cli::config_check::run(&config).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Healthcheck { url } => {
            daraja::install_crypto_provider();
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?;
            let response = client
                .get(format!("{}/health", url.trim_end_matches('/')))
                .send()
                .await
                .context("no answer")?;
            Ok(if response.status().is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
