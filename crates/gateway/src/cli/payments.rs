//! `mpesa-gateway payments list|show|export`: payments read through the payment service's read
//! operations (the dashboard's), which need only `DATABASE_URL`.

use std::io::Write;

use anyhow::Context;
use mpesa_domain::{Msisdn, PaymentStatus};
use mpesa_storage::{PageRequest, Payment, PaymentChannel, PaymentFilter};

use crate::cli::ExportFormat;
use crate::ids::{eat_display, rfc3339};
use crate::payments::{PaymentReads, PaymentView};

#[derive(Debug, clap::Subcommand)]
pub enum PaymentsCommand {
    /// The newest payments.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One payment with its timeline and callbacks.
    Show { id: String },
    /// Refund a completed payment (M-Pesa Reversal of the whole amount) through the running
    /// gateway, and follow the refund to its end.
    Refund(crate::cli::money_out::RefundArgs),
    /// Every payment matching the filters, as CSV or JSON on stdout.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub phone: Option<String>,
    #[arg(long)]
    pub reference: Option<String>,
    #[arg(long)]
    pub receipt: Option<String>,
    /// stk or c2b
    #[arg(long)]
    pub channel: Option<String>,
}

impl FilterArgs {
    fn to_filter(&self) -> anyhow::Result<PaymentFilter> {
        Ok(PaymentFilter {
            status: match &self.status {
                Some(s) => {
                    Some(PaymentStatus::parse(s).with_context(|| format!("unknown status {s:?}"))?)
                }
                None => None,
            },
            phone: match &self.phone {
                Some(p) => Some(
                    Msisdn::parse(p)
                        .map_err(|e| anyhow::anyhow!("--phone: {e}"))?
                        .to_string(),
                ),
                None => None,
            },
            reference: self.reference.clone(),
            receipt: self.receipt.clone(),
            channel: match &self.channel {
                Some(c) => Some(
                    PaymentChannel::parse(c)
                        .with_context(|| format!("--channel: stk or c2b, not {c:?}"))?,
                ),
                None => None,
            },
            ..PaymentFilter::default()
        })
    }
}

pub async fn run(payments: &PaymentReads, command: PaymentsCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        PaymentsCommand::List { filter, limit } => {
            let page = payments
                .list(
                    &filter.to_filter()?,
                    &PageRequest {
                        limit: limit.clamp(1, 500),
                        cursor: None,
                    },
                )
                .await?;
            writeln!(
                out,
                "{:<36}  {:<9}  {:<3}  {:>9}  {:<14}  {:<12}  {:<10}  created (EAT)",
                "id", "status", "via", "amount", "payer", "account", "receipt"
            )?;
            for p in &page.items {
                writeln!(
                    out,
                    "{:<36}  {:<9}  {:<3}  {:>9}  {:<14}  {:<12}  {:<10}  {}{}",
                    p.id,
                    p.status.as_str(),
                    p.channel.as_str(),
                    p.amount.shillings(),
                    p.payer(),
                    p.reference,
                    p.mpesa_receipt_number.as_deref().unwrap_or("-"),
                    eat_display(p.created_at),
                    if p.needs_review {
                        "  [needs review]"
                    } else {
                        ""
                    }
                )?;
            }
            if page.items.is_empty() {
                writeln!(out, "(no payments)")?;
            }
        }
        PaymentsCommand::Refund(_) => {
            anyhow::bail!("payments refund goes through the running gateway's API")
        }
        PaymentsCommand::Show { id } => {
            let record = payments
                .record(&id)
                .await?
                .with_context(|| format!("no payment {id}"))?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&PaymentView::from(&record.payment))?
            )?;
            writeln!(out, "\ntimeline:")?;
            for e in &record.events {
                writeln!(out, "  {}  {:<22} {}", eat_display(e.at), e.kind, e.detail)?;
            }
            writeln!(out, "\ncallbacks ({}):", record.callbacks.len())?;
            for c in &record.callbacks {
                writeln!(
                    out,
                    "  {}  {}  {}  {}",
                    eat_display(c.received_at),
                    c.id,
                    c.outcome.as_str(),
                    String::from_utf8_lossy(&c.body)
                )?;
            }
        }
        PaymentsCommand::Export { format, filter } => {
            let filter = filter.to_filter()?;
            let mut cursor = None;
            let mut first = true;
            if matches!(format, ExportFormat::Csv) {
                writeln!(out, "{}", CSV_HEADER.join(","))?;
            } else {
                write!(out, "[")?;
            }
            loop {
                let page = payments
                    .list(
                        &filter,
                        &PageRequest {
                            limit: 500,
                            cursor: cursor.clone(),
                        },
                    )
                    .await?;
                for p in &page.items {
                    match format {
                        ExportFormat::Csv => writeln!(out, "{}", csv_row(p))?,
                        ExportFormat::Json => {
                            if !first {
                                write!(out, ",")?;
                            }
                            write!(out, "\n{}", serde_json::to_string(&PaymentView::from(p))?)?;
                        }
                    }
                    first = false;
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            if matches!(format, ExportFormat::Json) {
                writeln!(out, "\n]")?;
            }
        }
    }
    Ok(())
}

pub const CSV_HEADER: &[&str] = &[
    "id",
    "status",
    "amount",
    "phone",
    "reference",
    "description",
    "mpesa_receipt_number",
    "result_code",
    "result_desc",
    "checkout_request_id",
    "transaction_date",
    "created_at",
    "completed_at",
    "needs_review",
    "review_reason",
    "channel",
    "business_short_code",
    "payer_name",
    "payer_msisdn",
    "recovered_by",
];

/// One CSV line. Fields are quoted when needed, and text that a spreadsheet would run as a
/// formula (`=`, `+`, `-`, `@` first, also after leading blanks) is prefixed with `'`.
pub fn csv_row(p: &Payment) -> String {
    let fields: Vec<String> = vec![
        p.id.clone(),
        p.status.as_str().into(),
        p.amount.shillings().to_string(),
        p.phone
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
        p.reference.clone(),
        p.description.clone(),
        p.mpesa_receipt_number.clone().unwrap_or_default(),
        p.result_code.clone().unwrap_or_default(),
        p.result_desc.clone().unwrap_or_default(),
        p.checkout_request_id.clone().unwrap_or_default(),
        p.transaction_date.map(rfc3339).unwrap_or_default(),
        rfc3339(p.created_at),
        p.completed_at().map(rfc3339).unwrap_or_default(),
        p.needs_review.to_string(),
        p.review_reason.clone().unwrap_or_default(),
        p.channel.as_str().into(),
        p.business_short_code.clone().unwrap_or_default(),
        p.payer_name.clone().unwrap_or_default(),
        p.payer_msisdn.clone().unwrap_or_default(),
        p.recovered_by.clone().unwrap_or_default(),
    ];
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn csv_field(raw: &str) -> String {
    let mut f = raw.to_owned();
    // Spreadsheets may trim leading blanks before they look for a formula.
    let first = f.trim_start_matches([' ', '\u{a0}', '\n']);
    if f.starts_with(['\t', '\r']) || first.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        f.insert(0, '\'');
    }
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_safe() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-2+3,x"), "\"'-2+3,x\"");
        // After leading blanks, which a spreadsheet may trim first.
        assert_eq!(csv_field("  =1+1"), "'  =1+1");
        assert_eq!(csv_field("\u{a0}@SUM(A1)"), "'\u{a0}@SUM(A1)");
        assert_eq!(csv_field("\n=1"), "\"'\n=1\"");
        assert_eq!(csv_field("a =1"), "a =1");
    }
}
