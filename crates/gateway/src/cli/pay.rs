//! `mpesa-gateway pay`: start a payment through a running gateway's API and follow it, with a
//! live status line, until it is final. Exits 0 only when it completed.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::ids::random_token;

/// Where `serve --sandbox` writes the API key it made, so `pay` works with no setup.
pub const SANDBOX_KEY_FILE: &str = "mpesa-gateway.sandbox-key";

#[derive(Debug, clap::Args)]
pub struct PayArgs {
    /// The customer's number: 0712345678, +254712345678… (with --c2b: the payer, default the
    /// simulator's test number).
    #[arg(long, required_unless_present = "c2b")]
    pub phone: Option<String>,
    /// Pay the paybill as a customer would from their phone (C2B), through the simulator of a
    /// `serve --sandbox` gateway, and watch the payment arrive.
    #[arg(long)]
    pub c2b: bool,
    /// With --c2b: the account number typed (BillRefNumber).
    #[arg(long, requires = "c2b")]
    pub account: Option<String>,
    /// Whole shillings.
    #[arg(long)]
    pub amount: i64,
    #[arg(long)]
    pub reference: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Email the receipt here when the payment completes.
    #[arg(long)]
    pub email: Option<String>,
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
    /// Give up following after this long (the payment itself is unaffected).
    #[arg(long, default_value_t = 420)]
    pub wait_secs: u64,
}

/// Returns whether the payment completed.
pub async fn run(args: PayArgs) -> anyhow::Result<bool> {
    if args.c2b {
        return pay_paybill(args).await;
    }
    let key = api_key(&args)?;
    daraja::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let base = args.url.trim_end_matches('/');
    let mut body =
        json!({ "phone": args.phone.clone().unwrap_or_default(), "amount": args.amount });
    if let Some(r) = &args.reference {
        body["reference"] = json!(r);
    }
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    if let Some(e) = &args.email {
        body["customer_email"] = json!(e);
    }
    // One key for this command: if the POST must be sent again, the gateway answers the first
    // request's result instead of pushing twice.
    let idempotency_key = format!("cli-{}", random_token(24));
    let mut attempt = 0;
    let response = loop {
        attempt += 1;
        let sent = client
            .post(format!("{base}/api/v1/payments"))
            .bearer_auth(&key)
            .header("Idempotency-Key", &idempotency_key)
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(r) => break r,
            Err(e) if attempt < 3 => {
                eprintln!(
                    "could not reach the gateway ({e}); retrying with the same Idempotency-Key"
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("could not reach the gateway at {base}"));
            }
        }
    };
    let status = response.status();
    let payment: Value = response
        .json()
        .await
        .context("the gateway's answer is not JSON")?;
    if !status.is_success() {
        let error = &payment["error"];
        let code = error["daraja_error_code"]
            .as_str()
            .or(error["code"].as_str())
            .unwrap_or("error");
        bail!(
            "{} ({code}){}",
            error["message"].as_str().unwrap_or("refused"),
            error["field"]
                .as_str()
                .map(|f| format!(" [field: {f}]"))
                .unwrap_or_default()
        );
    }
    let id = payment["id"]
        .as_str()
        .context("no payment id in the answer")?
        .to_owned();
    let live = std::io::stderr().is_terminal();
    println!(
        "payment {id}: {} from {}",
        mpesa_domain::ksh(payment["amount"].as_i64().unwrap_or_default()),
        payment["phone"].as_str().unwrap_or("")
    );
    let started = Instant::now();
    let mut last_status = String::new();
    let mut current = payment;
    loop {
        let st = current["status"].as_str().unwrap_or("unknown").to_owned();
        let line = status_line(&current, started.elapsed());
        if live {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if st != last_status {
            eprintln!("{line}");
        }
        last_status = st.clone();
        if !matches!(st.as_str(), "initiated" | "pending") {
            if live {
                eprintln!();
            }
            return Ok(finish(&current));
        }
        if started.elapsed() > Duration::from_secs(args.wait_secs) {
            if live {
                eprintln!();
            }
            bail!(
                "still {st} after {} s; follow it with `mpesa-gateway payments show {id}`",
                args.wait_secs
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        match client
            .get(format!("{base}/api/v1/payments/{id}"))
            .bearer_auth(&key)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => current = r.json().await.unwrap_or(current),
            Ok(r) => eprintln!(
                "\nthe gateway answered {} while following the payment",
                r.status()
            ),
            Err(e) => eprintln!("\ncould not reach the gateway ({e}); still following"),
        }
    }
}

fn status_line(p: &Value, elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    match p["status"].as_str().unwrap_or("unknown") {
        "initiated" => format!("… initiated: sending the request to M-Pesa ({secs}s)"),
        "pending" => format!("… pending: waiting for the customer to enter their PIN ({secs}s)"),
        "completed" => format!(
            "✔ completed: receipt {}",
            p["mpesa_receipt_number"]
                .as_str()
                .unwrap_or("(not yet known)")
        ),
        other => format!("✘ {other}: {}", p["result_desc"].as_str().unwrap_or("")),
    }
}

fn finish(p: &Value) -> bool {
    let completed = p["status"] == "completed";
    if completed {
        println!(
            "completed: {} paid, M-Pesa receipt {}",
            mpesa_domain::ksh(p["amount"].as_i64().unwrap_or_default()),
            p["mpesa_receipt_number"]
                .as_str()
                .unwrap_or("(not yet known)")
        );
    } else {
        println!(
            "{}: {} (result code {})",
            p["status"].as_str().unwrap_or("unknown"),
            p["result_desc"].as_str().unwrap_or(""),
            p["result_code"].as_str().unwrap_or("-")
        );
    }
    if p["needs_review"] == true {
        println!(
            "held for review: {}",
            p["review_reason"].as_str().unwrap_or("")
        );
    }
    completed
}

/// `pay --c2b`: the customer pays the paybill on the simulator of a `serve --sandbox` gateway;
/// the gateway gets the confirmation and books a C2B payment, found here by its receipt.
async fn pay_paybill(args: PayArgs) -> anyhow::Result<bool> {
    let key = api_key(&args)?;
    daraja::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = args.url.trim_end_matches('/');
    let mut body =
        json!({ "amount": args.amount, "account": args.account.clone().unwrap_or_default() });
    if let Some(phone) = &args.phone {
        body["phone"] = json!(phone);
    }
    let response = client
        .post(format!("{base}/sandbox/simulator/c2b/pay"))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("could not reach the gateway at {base}"))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        bail!(
            "no simulator at {base}/sandbox: --c2b pays through a gateway started with `serve --sandbox`"
        );
    }
    let status = response.status();
    let outcome: Value = response
        .json()
        .await
        .context("the simulator's answer is not JSON")?;
    if !status.is_success() {
        bail!("the simulator refused the payment: {outcome}");
    }
    let receipt = outcome["trans_id"].as_str().unwrap_or_default().to_owned();
    println!(
        "paid {} to paybill {} (account {:?}): M-Pesa receipt {receipt}, {}",
        mpesa_domain::ksh(args.amount),
        outcome["short_code"].as_str().unwrap_or("?"),
        args.account.as_deref().unwrap_or(""),
        outcome["status"].as_str().unwrap_or("?")
    );
    if outcome["status"] != "completed" {
        println!(
            "validation refused it ({}): nothing is booked",
            outcome["result_code"].as_str().unwrap_or("cancelled")
        );
        return Ok(false);
    }
    let started = Instant::now();
    loop {
        let found: Value = client
            .get(format!("{base}/api/v1/payments"))
            .query(&[("receipt", receipt.as_str())])
            .bearer_auth(&key)
            .send()
            .await?
            .json()
            .await
            .unwrap_or(Value::Null);
        if let Some(p) = found["data"].as_array().and_then(|d| d.first()) {
            println!(
                "the gateway booked it: payment {} ({}, channel {}, account {})",
                p["id"].as_str().unwrap_or(""),
                p["status"].as_str().unwrap_or(""),
                p["channel"].as_str().unwrap_or(""),
                p["account_reference"].as_str().unwrap_or("")
            );
            return Ok(p["status"] == "completed");
        }
        if started.elapsed() > Duration::from_secs(args.wait_secs.min(60)) {
            bail!(
                "no payment with receipt {receipt} yet: is the confirmation URL registered (`serve --sandbox` does it)?"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn api_key(args: &PayArgs) -> anyhow::Result<String> {
    resolve_api_key(args.api_key.clone())
}

/// The API key given, or the one `serve --sandbox` saved.
pub fn resolve_api_key(given: Option<String>) -> anyhow::Result<String> {
    match given {
        Some(k) => Ok(k),
        None => std::fs::read_to_string(SANDBOX_KEY_FILE).map(|k| k.trim().to_owned()).map_err(|_| {
            anyhow::anyhow!("no API key: pass --api-key or set MPESA_GATEWAY_API_KEY (create one with `mpesa-gateway api-keys create --name NAME`)")
        }),
    }
}
