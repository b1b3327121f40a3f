//! C2B: the paybill or till customers pay on their own, how validation requests are judged, and
//! how often Daraja is asked for what no confirmation brought (Pull Transactions).

use std::time::Duration;

use super::reader::{Reader, parse};
use super::{ConfigError, Source};

/// The simulator's C2B shortcode: the sandbox's STK shortcode (174379) cannot take C2B.
pub const SANDBOX_C2B_SHORT_CODE: &str = "600000";

/// `C2B_VALIDATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum C2bValidation {
    /// Accept every validation request (and record that it came).
    Off,
    /// Judge it by the account pattern, the amount bounds and the known accounts.
    Rules,
}

/// What a validation request gets when the rules cannot decide in time (a slow database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum C2bFallback {
    Accept,
    Refuse,
}

#[derive(Debug, Clone)]
pub struct C2bSettings {
    /// `MPESA_C2B_SHORT_CODE`: the paybill or till this gateway serves.
    pub short_code: String,
    pub validation: C2bValidation,
    /// `C2B_ACCOUNT_PATTERN`, anchored and case-insensitive.
    pub account_pattern: Option<regex::Regex>,
    pub require_known_account: bool,
    pub validation_fallback: C2bFallback,
    /// `PULL_TRANSACTIONS_INTERVAL`; `None` is off.
    pub pull_interval: Option<Duration>,
}

pub(super) fn read<S: Source>(
    r: &Reader<S>,
    sandbox: bool,
    business_short_code: &str,
) -> Result<C2bSettings, ConfigError> {
    let short_code = match r.read(
        "MPESA_C2B_SHORT_CODE",
        parse::digits(5..=8, "a paybill or till number is 5 to 8 digits"),
    )? {
        Some(v) => v,
        None if sandbox => SANDBOX_C2B_SHORT_CODE.to_owned(),
        None => business_short_code.to_owned(),
    };
    let validation = r.read_or_default("C2B_VALIDATION", |v| {
        match v.to_ascii_lowercase().as_str() {
            "off" => Ok(C2bValidation::Off),
            "rules" => Ok(C2bValidation::Rules),
            _ => Err(format!("expected off or rules, got {v:?}")),
        }
    })?;
    let account_pattern = r.read("C2B_ACCOUNT_PATTERN", |v| {
        regex::RegexBuilder::new(&format!("^(?:{v})$"))
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("not a regular expression ({e})"))
    })?;
    let require_known_account = r.read_or_default("C2B_REQUIRE_KNOWN_ACCOUNT", parse::boolean)?;
    let validation_fallback = r.read_or_default("C2B_VALIDATION_FALLBACK", |v| {
        match v.to_ascii_lowercase().as_str() {
            "accept" => Ok(C2bFallback::Accept),
            "refuse" => Ok(C2bFallback::Refuse),
            _ => Err(format!("expected accept or refuse, got {v:?}")),
        }
    })?;
    let pull_interval = r.read_or_default("PULL_TRANSACTIONS_INTERVAL", |v| {
        if v.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        parse::duration_at_least(Duration::from_secs(60))(v).map(Some)
    })?;
    Ok(C2bSettings {
        short_code,
        validation,
        account_pattern,
        require_known_account,
        validation_fallback,
        pull_interval,
    })
}
