//! Payment links and the public pay page: the public address of `/pay/{slug}`, the business
//! name customers see, and how many STK prompts the page may start.

use std::time::Duration;

use url::Url;

use super::reader::{Reader, parse};
use super::{ConfigError, Source};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    /// `PUBLIC_URL`: where customers reach the pay page (default `MPESA_CALLBACK_URL`).
    pub public_url: Option<Url>,
    /// `BUSINESS_NAME`: shown at the top of the pay page and on receipts.
    pub business_name: Option<String>,
    pub limits: PayPageLimits,
}

/// How many STK prompts the pay page starts per window, counted in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayPageLimits {
    pub per_phone: i64,
    pub per_link: i64,
    pub per_address: i64,
    pub window: Duration,
}

pub(super) fn read<S: Source>(r: &Reader<S>) -> Result<LinkSettings, ConfigError> {
    let public_url = r.read("PUBLIC_URL", |v| {
        let u = parse::url(v)?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err("must start with http:// or https://".into());
        }
        // A base URL: `/pay/…` is joined to it.
        let mut u = u;
        if !u.path().ends_with('/') {
            u.set_path(&format!("{}/", u.path()));
        }
        Ok(u)
    })?;
    let business_name = r
        .string("BUSINESS_NAME")
        .map(|n| n.chars().take(80).collect());
    let count = |name: &'static str| {
        r.read_or_default(name, |v| match parse::from_str::<i64>("a count")(v)? {
            n if n >= 1 => Ok(n),
            _ => Err("at least 1".to_owned()),
        })
    };
    Ok(LinkSettings {
        public_url,
        business_name,
        limits: PayPageLimits {
            per_phone: count("PAY_PAGE_LIMIT_PER_PHONE")?,
            per_link: count("PAY_PAGE_LIMIT_PER_LINK")?,
            per_address: count("PAY_PAGE_LIMIT_PER_ADDRESS")?,
            window: r.read_or_default(
                "PAY_PAGE_LIMIT_WINDOW",
                parse::duration_at_least(Duration::from_secs(1)),
            )?,
        },
    })
}
