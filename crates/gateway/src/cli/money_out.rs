//! Money going out from the command line:
//!
//! * `payments refund ID --reason …`, `payouts create …` and `balance` ask a running gateway's
//!   API (`--url`/`MPESA_GATEWAY_URL`, `--api-key`/`MPESA_GATEWAY_API_KEY`), as `pay` does: the
//!   running gateway sends the one Daraja request, receives its result and follows it, so a
//!   command never sends money on its own. Each POST carries one `Idempotency-Key` for the
//!   command: a retry after a lost connection gets the first answer, never a second payout.
//! * `payouts list|show` read through the payouts' read operations (the dashboard's), which
//!   need only `DATABASE_URL`, as `payments list|show` do.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mpesa_domain::Msisdn;
use mpesa_storage::{PageRequest, PayoutFilter, PayoutStatus};
use serde_json::{Value, json};

use crate::ids::{eat_display, random_token};
use crate::money_out::view::{EventView, PayoutView};
use crate::money_out::{PayoutError, PayoutReads};

/// Where the running gateway is, and the API key to use.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// The gateway's base URL.
    #[arg(
        long,
        env = "MPESA_GATEWAY_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub url: String,
    /// An API key (default: the one `serve --sandbox` saved in ./mpesa-gateway.sandbox-key).
    #[arg(long, env = "MPESA_GATEWAY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Follow the request this long for its result (0: do not wait).
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
}

#[derive(Debug, clap::Args)]
pub struct RefundArgs {
    /// The payment to refund (`pay_…`): M-Pesa reverses the whole amount.
    pub id: String,
    /// Why (2 to 100 characters), kept with the refund and sent as the Reversal's remarks.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum PayoutsCommand {
    /// Pay an M-Pesa number (B2C) through the running gateway, and follow it to its end.
    Create {
        /// The recipient's number: 0712345678, +254712345678…
        #[arg(long)]
        phone: String,
        /// Whole shillings.
        #[arg(long)]
        amount: i64,
        /// business, salary or promotion.
        #[arg(long, default_value = "business")]
        purpose: String,
        /// 2 to 100 characters.
        #[arg(long)]
        remarks: String,
        #[arg(long)]
        occasion: Option<String>,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// The newest payouts, from the database.
    List {
        /// awaiting_approval, pending, completed, failed or rejected.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One payout with its timeline, from the database.
    Show { id: String },
}

/// A running gateway's merchant API.
struct Gateway {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Gateway {
    fn new(args: &GatewayArgs) -> anyhow::Result<Self> {
        daraja::install_crypto_provider();
        Ok(Gateway {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            base: args.url.trim_end_matches('/').to_owned(),
            key: super::pay::resolve_api_key(args.api_key.clone())?,
        })
    }

    /// Sends a request; a POST carries `idempotency_key` and is sent again with it when the
    /// connection failed (the gateway answers the first request's result). Refusals become
    /// errors that say what the gateway said.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.key);
            if let Some(b) = body {
                request = request.json(b);
            }
            if let Some(k) = idempotency_key {
                request = request.header("Idempotency-Key", k);
            }
            match request.send().await {
                Ok(r) => break r,
                Err(e) if attempt < 3 && idempotency_key.is_some() => {
                    eprintln!(
                        "could not reach the gateway ({e}); retrying with the same Idempotency-Key"
                    );
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("could not reach the gateway at {}", self.base));
                }
            }
        };
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .with_context(|| format!("the gateway's answer ({status}) is not JSON"))?;
        if !status.is_success() {
            let error = &value["error"];
            bail!(
                "{} ({}){}",
                error["message"].as_str().unwrap_or("refused"),
                error["code"].as_str().unwrap_or(status.as_str()),
                error["field"]
                    .as_str()
                    .map(|f| format!(" [field: {f}]"))
                    .unwrap_or_default()
            );
        }
        Ok(value)
    }

    /// GETs `path` until `done` holds or `wait` passed; the last answer.
    async fn follow(
        &self,
        path: &str,
        mut current: Value,
        wait: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = Instant::now();
        while !done(&current) && started.elapsed() < wait {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match self.call(reqwest::Method::GET, path, None, None).await {
                Ok(v) => current = v,
                Err(e) => eprintln!("{e:#}; still following"),
            }
        }
        current
    }
}

fn final_status(v: &Value) -> bool {
    matches!(
        v["status"].as_str(),
        Some("completed" | "failed" | "rejected" | "awaiting_approval")
    )
}

/// `payments refund ID --reason …`; returns whether the refund completed (or, without
/// waiting, was accepted).
pub async fn refund(args: RefundArgs) -> anyhow::Result<bool> {
    let gw = Gateway::new(&args.gateway)?;
    let key = format!("cli-{}", random_token(24));
    let refund = gw
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/payments/{}/refund", encode(&args.id)),
            Some(&json!({ "reason": args.reason })),
            Some(&key),
        )
        .await?;
    let id = refund["id"].as_str().unwrap_or_default().to_owned();
    println!(
        "refund {id}: {} back to the customer for payment {} (receipt {})",
        mpesa_domain::ksh(refund["amount"].as_i64().unwrap_or_default()),
        refund["payment_id"].as_str().unwrap_or_default(),
        refund["payment_receipt"].as_str().unwrap_or_default()
    );
    if args.gateway.wait_secs == 0 {
        println!(
            "pending: follow it with `mpesa-gateway payments show {}`",
            args.id
        );
        return Ok(true);
    }
    let done = gw
        .follow(
            &format!("/api/v1/refunds/{}", encode(&id)),
            refund,
            Duration::from_secs(args.gateway.wait_secs),
            final_status,
        )
        .await;
    Ok(print_outcome("refund", &done, "reversal_receipt"))
}

/// Says how a refund or payout ended; whether it completed (a payout awaiting approval is
/// where it should be).
fn print_outcome(what: &str, v: &Value, receipt_field: &str) -> bool {
    match v["status"].as_str().unwrap_or("unknown") {
        "completed" => {
            println!(
                "completed: M-Pesa receipt {}{}",
                v[receipt_field].as_str().unwrap_or("(not given)"),
                v["recipient_name"]
                    .as_str()
                    .map(|n| format!(", received by {n}"))
                    .unwrap_or_default()
            );
            true
        }
        "awaiting_approval" => {
            println!(
                "awaiting approval: an admin approves or rejects it on the dashboard (Payouts)"
            );
            true
        }
        "pending" => {
            let (command, id) = match v["payment_id"].as_str() {
                Some(payment) => ("payments", payment),
                None => ("payouts", v["id"].as_str().unwrap_or_default()),
            };
            println!(
                "still pending: the gateway follows the {what} (Transaction Status when its result does not come); see `mpesa-gateway {command} show {id}`"
            );
            true
        }
        other => {
            println!(
                "{other}: {} (result code {})",
                v["result_desc"]
                    .as_str()
                    .or(v["decision_note"].as_str())
                    .unwrap_or(""),
                v["result_code"].as_str().unwrap_or("-")
            );
            false
        }
    }
}

/// `payouts create …` through the API.
pub async fn create_payout(command: PayoutsCommand) -> anyhow::Result<bool> {
    let PayoutsCommand::Create {
        phone,
        amount,
        purpose,
        remarks,
        occasion,
        gateway,
    } = command
    else {
        bail!("not a payouts create command");
    };
    let gw = Gateway::new(&gateway)?;
    let mut body =
        json!({ "phone": phone, "amount": amount, "purpose": purpose, "remarks": remarks });
    if let Some(o) = occasion {
        body["occasion"] = json!(o);
    }
    let key = format!("cli-{}", random_token(24));
    let payout = gw
        .call(
            reqwest::Method::POST,
            "/api/v1/payouts",
            Some(&body),
            Some(&key),
        )
        .await?;
    let id = payout["id"].as_str().unwrap_or_default().to_owned();
    println!(
        "payout {id}: {} to {} ({})",
        mpesa_domain::ksh(payout["amount"].as_i64().unwrap_or_default()),
        payout["phone"].as_str().unwrap_or_default(),
        payout["status"].as_str().unwrap_or_default()
    );
    if gateway.wait_secs == 0 {
        return Ok(true);
    }
    let done = gw
        .follow(
            &format!("/api/v1/payouts/{}", encode(&id)),
            payout,
            Duration::from_secs(gateway.wait_secs),
            final_status,
        )
        .await;
    Ok(print_outcome("payout", &done, "receipt"))
}

/// `balance`: asks Account Balance through the running gateway, waits (up to `--wait-secs`)
/// for the answers, and prints the last answer for each shortcode.
pub async fn balance(args: GatewayArgs) -> anyhow::Result<bool> {
    let gw = Gateway::new(&args)?;
    let asked = gw
        .call(reqwest::Method::POST, "/api/v1/balance", None, None)
        .await?;
    let answered = |v: &Value| {
        v["data"].as_array().is_some_and(|rows| {
            rows.iter().all(|r| {
                matches!(
                    r["last_request_status"].as_str(),
                    Some("completed" | "failed")
                )
            })
        })
    };
    let latest = gw
        .follow(
            "/api/v1/balance",
            asked,
            Duration::from_secs(args.wait_secs),
            answered,
        )
        .await;
    let rows = latest["data"].as_array().cloned().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    for r in &rows {
        let code = r["short_code"].as_str().unwrap_or("?");
        match r["accounts"].as_array() {
            Some(accounts) => {
                writeln!(
                    out,
                    "{code}: answered {}",
                    r["answered_at"].as_str().unwrap_or("?")
                )?;
                for a in accounts {
                    let cents = a["available_cents"].as_i64().unwrap_or_default();
                    writeln!(
                        out,
                        "  {:<20} {} {}.{:02}",
                        a["name"].as_str().unwrap_or("?"),
                        a["currency"].as_str().unwrap_or("KES"),
                        mpesa_domain::group_thousands(cents.div_euclid(100)),
                        cents.rem_euclid(100)
                    )?;
                }
            }
            None => writeln!(
                out,
                "{code}: no answer came yet (asked {}; the gateway keeps the answer when it comes: run `mpesa-gateway balance` again)",
                r["asked_at"].as_str().unwrap_or("?")
            )?,
        }
        if let Some(error) = r["last_error"].as_str() {
            writeln!(out, "  the last question failed: {error}")?;
        }
    }
    if rows.is_empty() {
        writeln!(out, "(no shortcode to ask about)")?;
    }
    Ok(true)
}

/// `payouts list|show`, read from the database.
pub async fn read(payouts: &PayoutReads, command: PayoutsCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        PayoutsCommand::List {
            status,
            phone,
            limit,
        } => {
            let filter = PayoutFilter {
                status: match status {
                    Some(s) => Some(PayoutStatus::parse(s.trim()).with_context(|| {
                        format!(
                            "--status: one of awaiting_approval, pending, completed, failed, rejected, not {s:?}"
                        )
                    })?),
                    None => None,
                },
                phone: match phone {
                    Some(p) => Some(
                        Msisdn::parse(&p)
                            .map_err(|e| anyhow::anyhow!("--phone: {e}"))?
                            .to_string(),
                    ),
                    None => None,
                },
            };
            let page = payouts
                .list(
                    &filter,
                    &PageRequest {
                        limit: limit.clamp(1, 500),
                        cursor: None,
                    },
                )
                .await?;
            writeln!(
                out,
                "{:<35}  {:<17}  {:>9}  {:<12}  {:<9}  {:<24}  remarks",
                "id", "status", "amount", "phone", "purpose", "created (EAT)"
            )?;
            for p in &page.items {
                let v = PayoutView::from(p);
                writeln!(
                    out,
                    "{:<35}  {:<17}  {:>9}  {:<12}  {:<9}  {:<24}  {}",
                    p.id,
                    v.status,
                    p.amount,
                    p.phone,
                    v.purpose,
                    eat_display(p.created_at),
                    p.remarks
                )?;
            }
            if page.items.is_empty() {
                writeln!(out, "(no payouts)")?;
            }
        }
        PayoutsCommand::Show { id } => {
            let p = match payouts.get(&id).await {
                Err(PayoutError::NotFound) => bail!("no payout {id}"),
                found => found?,
            };
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&payouts.view(&p.id).await?)?
            )?;
            writeln!(out, "\ntimeline:")?;
            // The payout's entries, its B2C request's and any Transaction Status question's.
            let mut events: Vec<_> = payouts
                .story(&p)
                .await?
                .into_iter()
                .map(|(e, _)| e)
                .collect();
            events.sort_by_key(|e| e.occurred_at);
            for e in &events {
                let v = EventView::from(e);
                writeln!(
                    out,
                    "  {}  {:<14} {}",
                    eat_display(e.occurred_at),
                    v.kind,
                    e.detail
                )?;
            }
        }
        PayoutsCommand::Create { .. } => bail!("payouts create goes through the gateway's API"),
    }
    Ok(())
}

/// An id as one URL path segment.
fn encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}
