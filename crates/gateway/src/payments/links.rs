//! Payment links: creating, listing and disabling them, and starting a payment through one (the
//! pay page's one operation). A link's payment is an ordinary payment made by [`Payments`],
//! carrying `payment_link_id`; storage settles a single-use link when that payment completes
//! (and holds a second one for review).

use std::sync::Arc;

use mpesa_domain::link::{ACCOUNT_LEN, account_number};
use mpesa_domain::{
    AccountReference, Amount, AmountBounds, Description, Lang, LinkAmount, LinkStatus, Msisdn,
};
use mpesa_storage::{
    LinkTotals, NewPaymentLink, Page, PageRequest, Payment, PaymentFilter, PaymentLink, RateLimit,
    Storage, StorageError,
};
use serde_json::Value;
use url::Url;

use crate::clock::Clock;
use crate::config::PayPageLimits;
use crate::ids::{new_id, random_token};
use crate::payments::{
    NewPaymentRequest, Origin, PaymentError, Payments, PushOutcome, PushWhen, StartPayment,
    StartRefused, Started,
};

/// A link request whose every field has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLinkRequest {
    pub title: String,
    pub amount: LinkAmount,
    pub reference: Option<AccountReference>,
    pub description: Option<String>,
    pub single_use: bool,
    pub expires_at: Option<i64>,
    pub language: Option<Lang>,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("no such payment link")]
    NotFound,
}

/// Why the pay page could not start a payment.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The link is paid, expired or disabled.
    #[error("the link is {0}")]
    Closed(LinkStatus),
    /// A prompt to this phone is still open.
    #[error("a payment prompt is already open on this phone")]
    PhoneBusy,
    /// A single-use link has a prompt open to another phone.
    #[error("a payment through this single-use link is already in progress")]
    LinkBusy,
    /// One of the limits is reached until `retry_at` (Unix ms, on the service's clock, which
    /// read `now` when it judged).
    #[error("too many payment prompts")]
    TooMany { retry_at: i64, now: i64 },
    #[error(transparent)]
    Payment(#[from] PaymentError),
}

/// The link service: cheap to clone, shared by the API, the dashboard, the CLI and the pay page.
/// Managing links needs only the database; [`PaymentLinks::pay`] is handed the payment service.
#[derive(Clone)]
pub struct PaymentLinks {
    storage: Arc<dyn Storage>,
    /// `PUBLIC_URL` (or the callback base URL): `/pay/{slug}` is joined to it.
    base_url: Url,
    bounds: AmountBounds,
    limits: PayPageLimits,
    /// "Now" for a link's expiry (whether it takes payments) and its stored times.
    clock: Clock,
}

impl PaymentLinks {
    pub fn new(
        storage: Arc<dyn Storage>,
        base_url: Url,
        bounds: AmountBounds,
        limits: PayPageLimits,
    ) -> Self {
        PaymentLinks {
            storage,
            base_url,
            bounds,
            limits,
            clock: Clock::system(),
        }
    }

    /// The service reading the time from `clock` (the payment service's; tests move it).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// What a link is now (active, paid, expired, disabled), on the service's clock.
    pub fn status(&self, link: &PaymentLink) -> LinkStatus {
        link.status_at(self.clock.now_ms())
    }

    /// Parses a link request ([`parse_link_request`]) with this service's amount bounds, an
    /// expiry required to be after now on its clock.
    pub fn parse_request(&self, v: &Value) -> Result<NewLinkRequest, (String, String)> {
        parse_link_request(v, self.bounds, self.clock.now_ms())
    }

    /// The service as the configuration says: `PUBLIC_URL`, else `MPESA_CALLBACK_URL`, else the
    /// listen address.
    pub fn for_config(config: &crate::config::Config, storage: Arc<dyn Storage>) -> Self {
        let base_url = config
            .links
            .public_url
            .clone()
            .or_else(|| config.public_url.clone())
            .unwrap_or_else(|| {
                Url::parse(&format!("http://{}/", config.listen)).expect("an address forms a URL")
            });
        PaymentLinks::new(storage, base_url, config.amount_bounds, config.links.limits)
    }

    /// Where customers open the link.
    pub fn url(&self, link: &PaymentLink) -> String {
        self.base_url
            .join(&format!("pay/{}", link.slug))
            .map(|u| u.to_string())
            .unwrap_or_else(|_| format!("/pay/{}", link.slug))
    }

    pub fn amount_bounds(&self) -> AmountBounds {
        self.bounds
    }

    pub async fn create(&self, req: NewLinkRequest) -> Result<PaymentLink, LinkError> {
        let (amount, amount_min, amount_max) = req.amount.columns();
        // Several candidates: one is nearly always free, and a crowded space costs no retry.
        let account_candidates = (0..8)
            .map(|_| {
                let mut bytes = [0u8; ACCOUNT_LEN];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
                account_number(&bytes)
            })
            .collect();
        let link = self
            .storage
            .create_payment_link(&NewPaymentLink {
                id: new_id("pl"),
                slug: random_token(22),
                account_candidates,
                title: req.title,
                amount,
                amount_min,
                amount_max,
                reference: req.reference.map(|r| r.as_str().to_owned()),
                description: req.description.filter(|d| !d.is_empty()),
                single_use: req.single_use,
                expires_at: req.expires_at,
                language: req.language,
                created_at: self.clock.now_ms(),
            })
            .await?;
        tracing::info!(link_id = %link.id, account_number = %link.account_number, "payment link created");
        Ok(link)
    }

    pub async fn get(&self, id: &str) -> Result<PaymentLink, LinkError> {
        if id.len() > 64 {
            return Err(LinkError::NotFound);
        }
        self.storage
            .get_payment_link(id)
            .await?
            .ok_or(LinkError::NotFound)
    }

    /// The link a pay page address names. Slugs are ours: anything else is no link.
    pub async fn by_slug(&self, slug: &str) -> Result<PaymentLink, LinkError> {
        if slug.is_empty() || slug.len() > 64 || !slug.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(LinkError::NotFound);
        }
        self.storage
            .find_payment_link_by_slug(slug)
            .await?
            .ok_or(LinkError::NotFound)
    }

    pub async fn list(&self, page: &PageRequest) -> Result<Page<PaymentLink>, LinkError> {
        Ok(self.storage.list_payment_links(page).await?)
    }

    pub async fn disable(&self, id: &str) -> Result<PaymentLink, LinkError> {
        if id.len() > 64 {
            return Err(LinkError::NotFound);
        }
        let link = self
            .storage
            .disable_payment_link(id, self.clock.now_ms())
            .await?
            .ok_or(LinkError::NotFound)?;
        tracing::info!(link_id = %link.id, status = %link.status, "payment link disabled");
        Ok(link)
    }

    pub async fn totals(&self, id: &str) -> Result<LinkTotals, LinkError> {
        Ok(self.storage.payment_link_totals(id).await?)
    }

    /// The link's payments, newest first.
    pub async fn payments_of(&self, id: &str, limit: u32) -> Result<Vec<Payment>, LinkError> {
        let filter = PaymentFilter {
            payment_link_id: Some(id.to_owned()),
            ..PaymentFilter::default()
        };
        let page = PageRequest {
            limit,
            cursor: None,
        };
        Ok(self.storage.list_payments(&filter, &page).await?.items)
    }

    /// One of this link's payments, for its status page: `None` for any payment of another
    /// link (the page tells nothing about other payments).
    pub async fn payment_of(
        &self,
        link: &PaymentLink,
        payment_id: &str,
    ) -> Result<Option<Payment>, LinkError> {
        if payment_id.len() > 64 {
            return Ok(None);
        }
        Ok(self
            .storage
            .get_payment(payment_id)
            .await?
            .filter(|p| p.payment_link_id.as_deref() == Some(link.id.as_str())))
    }

    /// Starts a payment through a link: the link must be open, no prompt may be open on the
    /// phone, and the limits per phone, link and client (`client`: its address as
    /// `http::client_addr::rate_limit_key` counts it) must allow one more prompt.
    /// The payment service has storage check the last two in the transaction that stores the
    /// payment (so they hold across instances), then sends the push once.
    #[allow(clippy::too_many_arguments)]
    pub async fn pay(
        &self,
        payments: &Payments,
        link: &PaymentLink,
        phone: Msisdn,
        amount: Amount,
        customer_email: Option<String>,
        lang: Lang,
        client: &str,
    ) -> Result<Payment, PayError> {
        let now = self.clock.now_ms();
        let status = link.status_at(now);
        if status != LinkStatus::Active {
            return Err(PayError::Closed(status));
        }
        let window_ms = self.limits.window.as_millis() as i64;
        let limits = vec![
            RateLimit {
                bucket: format!("pay:phone:{}", phone.as_str()),
                limit: self.limits.per_phone,
                window_ms,
            },
            RateLimit {
                bucket: format!("pay:link:{}", link.id),
                limit: self.limits.per_link,
                window_ms,
            },
            RateLimit {
                bucket: format!("pay:address:{}", clip(client, 64)),
                limit: self.limits.per_address,
                window_ms,
            },
        ];
        // Now and then, forget counters of windows gone by (one in 64 prompts is plenty).
        if rand::random::<u8>() < 4
            && let Err(error) = self
                .storage
                .delete_rate_limits_before(now - window_ms)
                .await
        {
            tracing::warn!(%error, "could not forget old pay page counters");
        }
        let reference = link_reference(link);
        let description = Description::parse(&clip(&link.title, 99))
            .unwrap_or_else(|_| Description::parse("Payment link").expect("valid"));
        let request = NewPaymentRequest {
            phone: phone.clone(),
            amount,
            reference: Some(reference),
            description: Some(description),
            customer_email,
            telegram_chat_id: None,
            // The merchant's; the customer's language has its own place.
            metadata: None,
            payment_link_id: Some(link.id.clone()),
            customer_language: Some(lang),
        };
        // The payment service's rules, checked by storage as it stores the payment: one open
        // prompt per phone (whichever instance or door opened it), then these limits.
        let start = StartPayment {
            request,
            origin: Origin::PayPage {
                link_id: link.id.clone(),
                single_use: link.single_use,
            },
            idempotency: None,
            push: PushWhen::Now,
            limits,
        };
        Ok(match payments.start(start).await? {
            Started::Pushed(
                PushOutcome::Accepted(p)
                | PushOutcome::Unknown { payment: p, .. }
                | PushOutcome::Refused { payment: p, .. },
            ) => p,
            Started::Refused(StartRefused::OpenPayment(_)) => return Err(PayError::PhoneBusy),
            // Closed since it was read: paid through another door, or expired, or disabled.
            Started::Refused(StartRefused::LinkTaken(None)) => {
                let status = self
                    .storage
                    .get_payment_link(&link.id)
                    .await
                    .map_err(PaymentError::Storage)?
                    .map_or(LinkStatus::Disabled, |l| l.status_at(now));
                return Err(PayError::Closed(status));
            }
            Started::Refused(StartRefused::LinkTaken(Some(_))) => {
                return Err(PayError::LinkBusy);
            }
            Started::Refused(StartRefused::Limited { retry_at }) => {
                tracing::info!(link_id = %link.id, phone = %phone.masked(), "pay page limit reached");
                return Err(PayError::TooMany { retry_at, now });
            }
            // No idempotency key is given and no request time: none of these can come back.
            other => {
                return Err(PaymentError::Storage(StorageError::Database(format!(
                    "unexpected answer to a pay page payment: {other:?}"
                )))
                .into());
            }
        })
    }
}

/// The AccountReference of a link's STK pushes: the link's own reference, else its account
/// number (what a paybill payment to the link carries too).
pub fn link_reference(link: &PaymentLink) -> AccountReference {
    link.reference
        .as_deref()
        .and_then(|r| AccountReference::parse(r).ok())
        .unwrap_or_else(|| {
            AccountReference::parse(&link.account_number).expect("account numbers are references")
        })
}

/// The language a customer reads a link's page in: their switch (`?lang=`), else the link's
/// own, else their browser's, else English.
pub fn customer_lang(
    switch: Option<&str>,
    link: Option<Lang>,
    accept_language: Option<&str>,
) -> Lang {
    switch
        .and_then(Lang::parse)
        .or(link)
        .or_else(|| accept_language.and_then(Lang::from_accept_language))
        .unwrap_or_default()
}

fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Parses the body of `POST /api/v1/payment-links` (and the dashboard's form, as JSON), naming
/// the first bad field.
pub fn parse_link_request(
    v: &Value,
    bounds: mpesa_domain::AmountBounds,
    now: i64,
) -> Result<NewLinkRequest, (String, String)> {
    let bad = |field: &str, message: &str| (field.to_owned(), message.to_owned());
    let Some(obj) = v.as_object() else {
        return Err(bad("body", "a JSON object"));
    };
    const KNOWN: [&str; 9] = [
        "title",
        "amount",
        "amount_min",
        "amount_max",
        "reference",
        "description",
        "single_use",
        "expires_at",
        "language",
    ];
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(unknown, "unknown field"));
    }
    let text = |name: &str| -> Result<Option<String>, (String, String)> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(name, "a string")),
        }
    };
    let whole = |name: &str| -> Result<Option<i64>, (String, String)> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => mpesa_domain::json_whole_number(n)
                .map(Some)
                .ok_or_else(|| bad(name, "a whole number of shillings")),
            Some(_) => Err(bad(name, "a whole number of shillings")),
        }
    };
    let title = mpesa_domain::link::check_title(&text("title")?.unwrap_or_default())
        .map_err(|m| bad("title", m))?;
    let (fixed, min, max) = (whole("amount")?, whole("amount_min")?, whole("amount_max")?);
    let amount = LinkAmount::new(fixed, min, max, bounds).map_err(|e| {
        let field = match e {
            mpesa_domain::LinkAmountError::Amount(_) if fixed.is_some() => "amount",
            mpesa_domain::LinkAmountError::Both | mpesa_domain::LinkAmountError::Neither => {
                "amount"
            }
            _ => "amount_min",
        };
        (field.to_owned(), e.to_string())
    })?;
    let reference = match text("reference")?.filter(|r| !r.trim().is_empty()) {
        None => None,
        Some(r) => Some(AccountReference::parse(&r).map_err(|e| {
            bad(
                "reference",
                &format!("{e} (1 to 12 letters, digits, spaces or - _ . / : +)"),
            )
        })?),
    };
    let description = match text("description")? {
        None => None,
        Some(d) => Some(
            mpesa_domain::link::check_link_description(&d).map_err(|m| bad("description", m))?,
        ),
    };
    let single_use = match obj.get("single_use") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("single_use", "true or false")),
    };
    let expires_at = match text("expires_at")? {
        None => None,
        Some(t) => {
            let at = chrono::DateTime::parse_from_rfc3339(t.trim())
                .map_err(|_| {
                    bad(
                        "expires_at",
                        "an RFC 3339 time, e.g. 2026-12-31T23:59:00+03:00",
                    )
                })?
                .timestamp_millis();
            if at <= now {
                return Err(bad("expires_at", "in the future"));
            }
            Some(at)
        }
    };
    let language = match text("language")? {
        None => None,
        Some(l) => Some(Lang::parse(&l).ok_or_else(|| bad("language", "en or sw"))?),
    };
    Ok(NewLinkRequest {
        title,
        amount,
        reference,
        description,
        single_use,
        expires_at,
        language,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpesa_domain::AmountBounds;
    use serde_json::json;

    #[test]
    fn link_requests_are_checked_field_by_field() {
        let b = AmountBounds::default();
        let ok = parse_link_request(
            &json!({"title": " Term 2 ", "amount": 1500, "single_use": true, "language": "sw",
                    "expires_at": "2099-01-01T00:00:00+03:00", "reference": "INV7"}),
            b,
            0,
        )
        .unwrap();
        assert_eq!(ok.title, "Term 2");
        assert!(ok.single_use);
        assert_eq!(ok.language, Some(Lang::Sw));
        let field = |v: Value| {
            parse_link_request(&v, b, crate::ids::now_ms())
                .unwrap_err()
                .0
        };
        assert_eq!(field(json!({"amount": 5})), "title");
        assert_eq!(field(json!({"title": "t"})), "amount");
        assert_eq!(field(json!({"title": "t", "amount": 0})), "amount");
        assert_eq!(field(json!({"title": "t", "amount": "5"})), "amount");
        assert_eq!(
            field(json!({"title": "t", "amount_min": 9, "amount_max": 8})),
            "amount_min"
        );
        assert_eq!(
            field(json!({"title": "t", "amount": 5, "colour": 1})),
            "colour"
        );
        assert_eq!(
            field(json!({"title": "t", "amount": 5, "reference": "<script>"})),
            "reference"
        );
        assert_eq!(
            field(json!({"title": "t", "amount": 5, "expires_at": "2001-01-01T00:00:00Z"})),
            "expires_at"
        );
        assert_eq!(
            field(json!({"title": "t", "amount": 5, "language": "fr"})),
            "language"
        );
        assert_eq!(field(json!([1])), "body");
    }

    #[test]
    fn the_switch_then_the_link_then_the_browser() {
        assert_eq!(
            customer_lang(Some("sw"), Some(Lang::En), Some("en")),
            Lang::Sw
        );
        assert_eq!(customer_lang(None, Some(Lang::Sw), Some("en")), Lang::Sw);
        assert_eq!(customer_lang(Some("xx"), None, Some("sw-KE")), Lang::Sw);
        assert_eq!(customer_lang(None, None, Some("fr")), Lang::En);
    }
}
