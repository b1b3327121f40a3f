//! Money going out: the B2C shortcode, the payout guardrails, and how long the initiator layer
//! waits for results and asks Transaction Status.

use std::time::Duration;

use super::reader::{Reader, parse};
use super::{ConfigError, Source};

/// The simulator's B2C shortcode (`serve --sandbox` uses it when none is set).
pub const SANDBOX_B2C_SHORT_CODE: &str = "600000";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyOutSettings {
    /// `MPESA_B2C_SHORT_CODE`: payouts are off without it (and an initiator).
    pub b2c_short_code: Option<String>,
    /// `PAYOUT_MAX_AMOUNT`, whole shillings.
    pub payout_max_amount: i64,
    /// `PAYOUT_DAILY_LIMIT` per East Africa Time day, whole shillings.
    pub payout_daily_limit: Option<i64>,
    /// `PAYOUT_APPROVAL_ABOVE`: payouts above it wait for an admin.
    pub payout_approval_above: Option<i64>,
    /// `INITIATOR_RESULT_WAIT_SECS`: how long a result may take before Transaction Status is
    /// asked (a read is given up).
    pub result_wait: Duration,
    /// `INITIATOR_KEEP_ASKING_SECS`: how long Transaction Status is asked about a refund or
    /// payout whose outcome is unknown; then a person decides.
    pub keep_asking: Duration,
}

fn shillings(v: &str) -> Result<i64, String> {
    match v.trim().parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected whole shillings (1 or more), got {v:?}")),
    }
}

pub(super) fn read<S: Source>(
    r: &Reader<S>,
    sandbox: bool,
) -> Result<MoneyOutSettings, ConfigError> {
    let b2c_short_code = match r.read(
        "MPESA_B2C_SHORT_CODE",
        parse::digits(5..=7, "a shortcode is 5 to 7 digits"),
    )? {
        Some(v) => Some(v),
        None if sandbox => Some(SANDBOX_B2C_SHORT_CODE.to_owned()),
        None => None,
    };
    let result_wait =
        Duration::from_secs(r.read_or_default("INITIATOR_RESULT_WAIT_SECS", |v| {
            match parse::from_str::<u64>("seconds")(v)? {
                0 => Err("must be above 0".to_owned()),
                secs => Ok(secs),
            }
        })?);
    Ok(MoneyOutSettings {
        b2c_short_code,
        payout_max_amount: r.read_or_default("PAYOUT_MAX_AMOUNT", shillings)?,
        payout_daily_limit: r.read("PAYOUT_DAILY_LIMIT", shillings)?,
        payout_approval_above: r.read("PAYOUT_APPROVAL_ABOVE", shillings)?,
        result_wait,
        keep_asking: Duration::from_secs(
            r.read_or_default("INITIATOR_KEEP_ASKING_SECS", parse::from_str("seconds"))?,
        ),
    })
}
