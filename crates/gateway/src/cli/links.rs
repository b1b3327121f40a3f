//! `mpesa-gateway links create|list|disable`: payment links from the command line, through the
//! same link service as the API and the dashboard.

use mpesa_storage::{PageRequest, PaymentLink};
use serde_json::{Map, json};

use crate::ids::eat_display;
use crate::payments::PaymentLinks;

#[derive(Debug, clap::Subcommand)]
pub enum LinksCommand {
    /// Create a payment link and print its address and account number.
    Create {
        /// What is paid for, shown to the customer.
        #[arg(long)]
        title: String,
        /// A fixed amount in whole shillings.
        #[arg(long, conflicts_with_all = ["min", "max"])]
        amount: Option<i64>,
        /// The smallest amount a customer may choose (with --max, or alone).
        #[arg(long)]
        min: Option<i64>,
        /// The largest amount a customer may choose.
        #[arg(long)]
        max: Option<i64>,
        /// The reference on the customer's phone (1–12 characters); default the account number.
        #[arg(long)]
        reference: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Close the link once it is paid.
        #[arg(long)]
        single_use: bool,
        /// When it closes, RFC 3339 (e.g. 2026-12-31T23:59:00+03:00).
        #[arg(long)]
        expires: Option<String>,
        /// The pay page's language, en or sw (default: the customer's browser).
        #[arg(long)]
        language: Option<String>,
    },
    /// List links, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Disable a link by id: its page says so and its account number no longer pays it.
    Disable { id: String },
}

pub async fn run(links: &PaymentLinks, command: LinksCommand) -> anyhow::Result<()> {
    match command {
        LinksCommand::Create {
            title,
            amount,
            min,
            max,
            reference,
            description,
            single_use,
            expires,
            language,
        } => {
            let mut body = Map::new();
            body.insert("title".into(), json!(title));
            for (name, value) in [("amount", amount), ("amount_min", min), ("amount_max", max)] {
                if let Some(v) = value {
                    body.insert(name.into(), json!(v));
                }
            }
            for (name, value) in [
                ("reference", reference),
                ("description", description),
                ("expires_at", expires),
                ("language", language),
            ] {
                if let Some(v) = value {
                    body.insert(name.into(), json!(v));
                }
            }
            body.insert("single_use".into(), json!(single_use));
            let request = links
                .parse_request(&body.into())
                .map_err(|(field, message)| anyhow::anyhow!("{}: {message}", flag(&field)))?;
            let link = links.create(request).await?;
            println!("{}", links.url(&link));
            eprintln!(
                "Payment link {} created; at the paybill its account number is {}.",
                link.id, link.account_number
            );
        }
        LinksCommand::List { limit } => {
            let page = links
                .list(&PageRequest {
                    limit: limit.clamp(1, 500),
                    cursor: None,
                })
                .await?;
            println!(
                "{:<35}  {:<8}  {:<8}  {:<18}  {:<24}  title / address",
                "id", "status", "account", "amount", "created (EAT)"
            );
            for l in &page.items {
                println!(
                    "{:<35}  {:<8}  {:<8}  {:<18}  {:<24}  {}\n{:>107}{}",
                    l.id,
                    links.status(l).as_str(),
                    l.account_number,
                    amount_text(l),
                    eat_display(l.created_at),
                    l.title,
                    "",
                    links.url(l)
                );
            }
        }
        LinksCommand::Disable { id } => {
            let link = links.disable(&id).await.map_err(|e| match e {
                crate::payments::links::LinkError::NotFound => {
                    anyhow::anyhow!("no payment link {id:?}")
                }
                other => other.into(),
            })?;
            eprintln!("Payment link {} is {}.", link.id, links.status(&link));
        }
    }
    Ok(())
}

fn flag(field: &str) -> String {
    match field {
        "amount_min" => "--min".into(),
        "amount_max" => "--max".into(),
        "expires_at" => "--expires".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

fn amount_text(l: &PaymentLink) -> String {
    match (l.amount, l.amount_min, l.amount_max) {
        (Some(a), _, _) => format!("KSh {a}"),
        (None, Some(min), Some(max)) => format!("KSh {min}-{max}"),
        _ => String::new(),
    }
}
