//! `mpesa-gateway c2b …`: register this gateway's C2B URLs with Daraja, and recover payments
//! whose confirmation never came (Pull Transactions).

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use daraja::{C2bResponseType, C2bVersion, DarajaError, UrlProblem};
use mpesa_domain::Msisdn;

use crate::app::App;
use crate::config::Config;
use crate::payments::Payments;
use crate::payments::c2b::Registration;

#[derive(Debug, Subcommand)]
pub enum C2bCommand {
    /// Register this gateway's confirmation and validation URLs for MPESA_C2B_SHORT_CODE.
    Register {
        /// What M-Pesa does with a payment when the validation URL does not answer in time.
        #[arg(long, value_enum, default_value_t = ResponseType::Completed)]
        response_type: ResponseType,
        /// Use the v1 Register URL API (v2 by default): the version must match the C2B product
        /// of the Daraja app.
        #[arg(long)]
        v1: bool,
    },
    /// Ask Pull Transactions what the shortcode received and book what no confirmation brought.
    Pull {
        /// How far back to look: 30m, 6h, 1d (at most 1d).
        #[arg(long, default_value = "1h")]
        since: String,
        /// Register the shortcode for Pull Transactions first (once), naming the number Safaricom
        /// tells about it.
        #[arg(long, value_name = "PHONE")]
        register: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResponseType {
    Completed,
    Cancelled,
}

/// Runs the command; returns whether it did what it was asked.
pub async fn run(mut config: Config, command: C2bCommand) -> anyhow::Result<bool> {
    // A command next to a running gateway: its URLs are those of the configured listen
    // address (or MPESA_CALLBACK_URL), but it listens on no fixed port.
    if config.public_url.is_none() {
        config.public_url = Some(url::Url::parse(&format!("http://{}/", config.listen))?);
    }
    config.listen = "127.0.0.1:0".parse().expect("a socket address");
    let production = config.daraja.environment == daraja::Environment::Production;
    let app = App::build(config).await.context("could not start")?;
    let payments = app.state().payments.clone();
    match command {
        C2bCommand::Register { response_type, v1 } => {
            let registration = payments.c2b_registration(
                match response_type {
                    ResponseType::Completed => C2bResponseType::Completed,
                    ResponseType::Cancelled => C2bResponseType::Cancelled,
                },
                if v1 { C2bVersion::V1 } else { C2bVersion::V2 },
            );
            Ok(register(&payments, &registration, production).await)
        }
        C2bCommand::Pull { since, register } => {
            if let Some(phone) = register {
                let phone =
                    Msisdn::parse(&phone).map_err(|e| anyhow::anyhow!("--register: {e}"))?;
                let answer = payments.pull_register(phone).await?;
                println!(
                    "Pull Transactions: {} ({})",
                    if answer.already_registered {
                        "already registered"
                    } else {
                        "registered"
                    },
                    answer.response_description
                );
            }
            let since = crate::config::parse_duration(&since)
                .map_err(|e| anyhow::anyhow!("--since: {e}"))?
                .min(std::time::Duration::from_secs(24 * 3600));
            let end = chrono::Utc::now();
            let start = end - chrono::Duration::from_std(since)?;
            let summary = match payments.pull_transactions(start, end).await {
                Ok(s) => s,
                Err(e) => {
                    println!("Pull Transactions failed: {e}");
                    if let crate::payments::PaymentError::Daraja(d) = &e
                        && d.http_status() == Some(401)
                    {
                        println!(
                            "  Only live shortcodes registered for Pull Transactions can query it: run with --register PHONE once."
                        );
                    }
                    return Ok(false);
                }
            };
            println!(
                "Pull Transactions {} → {}: {} listed, {} already booked, {} recovered",
                start.format("%Y-%m-%d %H:%M:%S UTC"),
                end.format("%Y-%m-%d %H:%M:%S UTC"),
                summary.listed,
                summary.already_booked,
                summary.recovered.len()
            );
            for receipt in &summary.recovered {
                println!("  recovered {receipt}: its confirmation never came");
            }
            for (receipt, why) in &summary.skipped {
                println!("  left {receipt}: {why}");
            }
            Ok(true)
        }
    }
}

/// A URL as shown: the secret path segment hidden.
fn shown(url: &url::Url) -> String {
    let mut segments: Vec<String> = url
        .path_segments()
        .map(|s| s.map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(i) = segments.iter().position(|s| s == "callbacks")
        && let Some(secret) = segments.get_mut(i + 1)
    {
        *secret = "…".to_owned();
    }
    format!(
        "{}://{}/{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        segments.join("/")
    )
}

/// Why a C2B URL would be refused by Daraja, or `None` when it would pass: the rules of
/// `c2b register` (and `config check`).
pub fn url_refusal(url: &url::Url, production: bool) -> Option<String> {
    daraja::check_callback_url(url, production)
        .err()
        .map(|problem| match problem {
            UrlProblem::ForbiddenWord(word) => format!(
                "the URL contains \"{word}\", a word Daraja refuses in C2B URLs (with mpesa, safaricom, exe, exec, cmd, sql, query…): serve the gateway under another host or path"
            ),
            UrlProblem::HttpsRequired => {
                "production URLs must be https:// (set MPESA_CALLBACK_URL to an https address)".to_owned()
            }
            other => format!("the URL {other}"),
        })
}

async fn register(payments: &Payments, r: &Registration, production: bool) -> bool {
    println!(
        "C2B Register URL ({}) for shortcode {}, ResponseType {}:",
        match r.version {
            C2bVersion::V1 => "v1",
            C2bVersion::V2 => "v2",
        },
        r.short_code,
        r.response_type.as_str()
    );
    println!("  ConfirmationURL {}", shown(&r.confirmation_url));
    println!("  ValidationURL   {}", shown(&r.validation_url));
    for url in [&r.confirmation_url, &r.validation_url] {
        if let Some(why) = url_refusal(url, production) {
            println!("not sent: {why}");
            return false;
        }
    }
    match payments.register_c2b(r).await {
        Ok(answer) => {
            println!(
                "Daraja answered: {} (OriginatorCoversationID {})",
                answer.response_description,
                answer.originator_conversation_id.as_deref().unwrap_or("-")
            );
            if production {
                println!(
                    "Production registration is one-time: to change these URLs later, ask Safaricom (apisupport@safaricom.co.ke) or delete them on the Daraja portal first."
                );
            }
            true
        }
        Err(error) => {
            println!("Daraja refused: {error}");
            if let DarajaError::UnexpectedStatus { body_excerpt, .. } = &error
                && !body_excerpt.is_empty()
            {
                println!("  its answer: {body_excerpt}");
            }
            if let Some(hint) = explain(&error, r) {
                println!("  {hint}");
            }
            false
        }
    }
}

/// What the answers that stop people in production mean.
fn explain(error: &DarajaError, r: &Registration) -> Option<String> {
    let message = error
        .error_message()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let text = match error {
        DarajaError::UnexpectedStatus { body_excerpt, .. } => format!("{error} {body_excerpt}"),
        other => other.to_string(),
    }
    .to_ascii_lowercase();
    if message.contains("already registered") {
        return Some("This shortcode already has URLs. In production they are registered once: ask Safaricom (apisupport@safaricom.co.ke) to delete them, or delete them on the Daraja portal (Self Services → URL Management), then register again.".into());
    }
    if message.contains("duplicate notification info") {
        return Some(
            "The URLs exist on Safaricom's older broker platform: have them deleted there first."
                .into(),
        );
    }
    if text.contains("addurlvault") || text.contains("409") {
        return Some(format!(
            "Shortcode {} cannot take C2B URLs: the sandbox's Lipa na M-Pesa Online shortcode 174379 is for STK Push only (use 600000 in the sandbox), or URLs are already present.",
            r.short_code
        ));
    }
    if error.error_code() == Some("401.003.01") || text.contains("apiproduct") {
        return Some(format!(
            "The Daraja app's C2B product does not match {}: try {}.",
            match r.version {
                C2bVersion::V1 => "v1",
                C2bVersion::V2 => "v2",
            },
            match r.version {
                C2bVersion::V1 => "without --v1",
                C2bVersion::V2 => "--v1",
            }
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_words_are_named_before_sending() {
        let url =
            url::Url::parse("https://pay.example.com/mpesa/callbacks/s/c2b/confirmation").unwrap();
        let why = url_refusal(&url, true).unwrap();
        assert!(why.contains("\"mpesa\""), "{why}");
        let http = url::Url::parse("http://pay.example.com/callbacks/s/c2b/confirmation").unwrap();
        assert!(url_refusal(&http, true).unwrap().contains("https"));
        assert_eq!(url_refusal(&http, false), None);
    }

    #[test]
    fn the_secret_is_not_shown() {
        let url = url::Url::parse("https://pay.example.com/callbacks/SeCrEt123/c2b/confirmation")
            .unwrap();
        assert_eq!(
            shown(&url),
            "https://pay.example.com/callbacks/…/c2b/confirmation"
        );
    }
}
