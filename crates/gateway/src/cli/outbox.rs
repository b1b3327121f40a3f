//! `mpesa-gateway outbox list|show ID|retry ID`: the notifications waiting, delivered and
//! dead-lettered, through the outbox queue's operations (as the dashboard's outbox page).

use anyhow::{Context, bail};
use mpesa_storage::{Channel, OutboxEvent, OutboxFilter, OutboxStatus, PageRequest};

use crate::config::mask_url;
use crate::ids::eat_display;
use crate::outbox::queue::{OutboxQueue, Retry};

#[derive(Debug, clap::Subcommand)]
pub enum OutboxCommand {
    /// The newest events, optionally only those with a status or on a channel.
    List {
        /// pending, delivered, dead or blocked.
        #[arg(long)]
        status: Option<String>,
        /// email, telegram or webhook.
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One event with every delivery attempt (status, error, duration).
    Show { id: String },
    /// Queue a dead-lettered (or blocked) event again, with a fresh retry schedule. Its id
    /// stays the same, so receivers can still drop a repeat.
    Retry { id: String },
}

pub async fn run(queue: &OutboxQueue, command: OutboxCommand) -> anyhow::Result<()> {
    match command {
        OutboxCommand::List {
            status,
            channel,
            limit,
        } => {
            let filter = OutboxFilter {
                status: status
                    .map(|s| {
                        OutboxStatus::parse(&s).with_context(|| {
                            format!("unknown status {s:?}: pending, delivered, dead or blocked")
                        })
                    })
                    .transpose()?,
                channel: channel
                    .map(|c| {
                        Channel::parse(&c).with_context(|| {
                            format!("unknown channel {c:?}: email, telegram or webhook")
                        })
                    })
                    .transpose()?,
            };
            let page = queue
                .list(
                    &filter,
                    &PageRequest {
                        limit,
                        cursor: None,
                    },
                )
                .await?;
            println!(
                "{:<36}  {:<8}  {:<24}  {:<9}  {:>8}  {:<24}  last error",
                "id", "channel", "type", "status", "attempts", "created (EAT)"
            );
            for e in &page.items {
                println!(
                    "{:<36}  {:<8}  {:<24}  {:<9}  {:>8}  {:<24}  {}",
                    e.id,
                    e.channel.as_str(),
                    e.event_type,
                    e.status.as_str(),
                    e.attempts,
                    eat_display(e.created_at),
                    e.last_error
                        .as_deref()
                        .map(|s| s.chars().take(80).collect::<String>())
                        .unwrap_or_default()
                );
            }
            if page.items.is_empty() {
                println!("(no events)");
            }
        }
        OutboxCommand::Show { id } => {
            let (event, attempts) = queue
                .event(&id)
                .await?
                .with_context(|| format!("no outbox event {id}"))?;
            print_event(&event);
            println!("\nattempts:");
            if attempts.is_empty() {
                println!("  (none yet)");
            }
            for a in attempts {
                println!(
                    "  #{:<3} {}  {:<9}  {:>6} ms  code {:<5}  {}",
                    a.attempt,
                    eat_display(a.started_at),
                    a.result,
                    a.duration_ms,
                    a.response_code.map(|c| c.to_string()).unwrap_or("-".into()),
                    a.error.unwrap_or_default()
                );
            }
        }
        OutboxCommand::Retry { id } => {
            let Some((event, _)) = queue.event(&id).await? else {
                bail!("no outbox event {id}");
            };
            match queue.retry(&id).await? {
                Retry::Requeued => {}
                Retry::NoSuchEvent => bail!("no outbox event {id}"),
                Retry::NotDead => bail!(
                    "event {id} is {}: only dead or blocked events can be retried",
                    event.status.as_str()
                ),
            }
            println!(
                "event {id} ({} {}) is queued again; a running gateway delivers it shortly",
                event.channel.as_str(),
                event.event_type
            );
        }
    }
    Ok(())
}

fn print_event(e: &OutboxEvent) {
    let destination = match e.channel {
        Channel::Webhook => mask_url(&e.destination),
        _ => e.destination.clone(),
    };
    for (name, value) in [
        ("id", e.id.clone()),
        ("channel", e.channel.as_str().to_owned()),
        ("type", e.event_type.clone()),
        ("status", e.status.as_str().to_owned()),
        ("payment", e.payment_id.clone().unwrap_or_default()),
        ("destination", destination),
        ("attempts", e.attempts.to_string()),
        ("created", eat_display(e.created_at)),
        ("next attempt", eat_display(e.next_attempt_at)),
        (
            "delivered",
            e.delivered_at.map(eat_display).unwrap_or_default(),
        ),
        ("last error", e.last_error.clone().unwrap_or_default()),
    ] {
        println!("{name:<13} {value}");
    }
}
