//! C2B: payments customers make from their own M-Pesa menu (paybill, till) become payments.
//!
//! A report (a confirmation, a Pull Transactions record, a Transaction Status result) is made
//! ready outside the writing transaction ([`Payments::prepare_c2b`]: the phone a hashed MSISDN
//! belongs to, the chat linked to it) and decided inside it ([`decide_c2b`]), against the
//! payment that already holds its receipt, if any: storage's unique receipt makes a `TransID`
//! settle once, whatever the path, the copies or the instances. The rules are in
//! `mpesa_domain::c2b`.

use mpesa_domain::c2b::{self, C2bDecision, C2bPath, C2bReport, PayerMsisdn, StkCouldBe};
use mpesa_domain::{Msisdn, PaymentStatus, Transition, decision};
use mpesa_storage::{
    CallbackDecision, CallbackOutcome, Payment, PaymentChannel, PaymentSource, StorageError,
};
use serde_json::json;

use crate::ids::new_id;
use crate::payments::service::update_for;
use crate::payments::{NotificationPlan, Payments, after_transition};

/// A C2B report ready for the transaction that books it.
#[derive(Debug, Clone)]
pub struct PreparedC2b {
    pub report: C2bReport,
    pub path: C2bPath,
    /// What the rules say when the receipt is not booked yet.
    pub verdict: C2bDecision,
    /// The payment row before its completing transition, when the verdict books.
    pub base: Option<Payment>,
}

impl PreparedC2b {
    /// Why the report is kept without being booked, for the stored callback.
    pub fn note(&self) -> Option<String> {
        match &self.verdict {
            C2bDecision::NotOurShortCode => Some(format!(
                "paid to shortcode {:?}, which this gateway does not serve (MPESA_C2B_SHORT_CODE): kept, not booked",
                self.report.business_short_code
            )),
            C2bDecision::UnbookableAmount => Some(format!(
                "amount {} is not whole shillings: kept for a person, not booked",
                self.report.amount
            )),
            C2bDecision::AwaitStk => Some(
                "an open STK payment (same account, amount and phone) could be this one: decided once it is settled"
                    .to_owned(),
            ),
            C2bDecision::ReceiptlessStk => Some(
                "an STK payment completed without its receipt (by STK Query), with the same account, amount and phone, could be this one: kept for a person, not booked twice"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

impl Payments {
    /// Judges a C2B report against this gateway's shortcode and, when it books, builds the
    /// payment it becomes: the payer's phone when Safaricom gave it whole or its SHA-256 is a
    /// linked phone's, and the Telegram chat linked to that phone (for the receipt).
    pub async fn prepare_c2b(
        &self,
        report: C2bReport,
        path: C2bPath,
    ) -> Result<PreparedC2b, StorageError> {
        let served = [self.settings.c2b.short_code.as_str()];
        let stk = self.stk_could_be(&report).await?;
        let verdict = c2b::on_c2b_report(&report, path, false, &served, stk);
        let base = match &verdict {
            C2bDecision::Book(_) => Some(self.c2b_base(&report, path).await?),
            _ => None,
        };
        Ok(PreparedC2b {
            report,
            path,
            verdict,
            base,
        })
    }

    async fn c2b_base(&self, report: &C2bReport, path: C2bPath) -> Result<Payment, StorageError> {
        let phone = match &report.msisdn {
            PayerMsisdn::Sha256(_) => {
                let known: Vec<Msisdn> = self
                    .storage
                    .linked_phones()
                    .await?
                    .iter()
                    .filter_map(|p| Msisdn::parse(p).ok())
                    .collect();
                report.msisdn.match_known(&known)
            }
            other => other.number().cloned(),
        };
        let telegram_chat_id = match &phone {
            Some(p) if self.plan.telegram => self
                .storage
                .find_telegram_chat_by_phone(p.as_str())
                .await?
                .filter(|link| link.blocked_at.is_none())
                .map(|link| link.chat_id),
            _ => None,
        };
        let now = self.clock.now_ms();
        let amount = c2b::whole_shillings(report.amount)
            .ok_or_else(|| StorageError::Database("unbookable C2B amount".into()))?;
        // Paid to an open link's account number, for the amount it asks: the link's payment
        // (storage settles a single-use link with it, or holds a second one for review).
        // A single-use link already paid is named too: this is its second payment, held for a
        // person (refund suggested) as when the paybill came first and the prompt after.
        let link = match self.open_link_for(&report.account_reference).await? {
            Some(open) => Some(open),
            None => self.paid_link_for(&report.account_reference).await?,
        };
        let payment_link_id = link
            .filter(|link| {
                mpesa_domain::LinkAmount::new(
                    link.amount,
                    link.amount_min,
                    link.amount_max,
                    self.settings.amount_bounds,
                )
                .is_ok_and(|rule| rule.charge(Some(amount.shillings())) == Some(amount))
            })
            .map(|link| link.id);
        Ok(Payment {
            id: new_id("pay"),
            status: PaymentStatus::Initiated,
            phone,
            amount,
            reference: report.account_reference.clone(),
            description: match report.transaction_type.as_str() {
                "" => "C2B payment".to_owned(),
                kind => kind.to_owned(),
            },
            customer_email: None,
            telegram_chat_id,
            metadata: None,
            checkout_request_id: None,
            merchant_request_id: None,
            mpesa_receipt_number: None,
            result_code: None,
            result_desc: None,
            transaction_date: None,
            needs_review: false,
            review_reason: None,
            api_key_id: None,
            source: PaymentSource::Customer,
            query_attempts: 0,
            next_check_at: None,
            created_at: now,
            updated_at: now,
            finalized_at: None,
            // The completing transition makes it 1.
            version: 0,
            channel: PaymentChannel::C2b,
            business_short_code: Some(report.business_short_code.clone()),
            payer_name: report.payer_name.clone(),
            payer_msisdn: report.msisdn.as_given(),
            recovered_by: path.recovered_by().map(str::to_owned),
            payment_link_id,
            customer_language: None,
        })
    }
}

/// The decision for a prepared C2B report, given the payment that holds its receipt (if any):
/// a duplicate of it, or a new `completed` payment with its webhook, alerts and receipts.
pub fn decide_c2b(
    plan: &NotificationPlan,
    prepared: &PreparedC2b,
    holder: Option<&Payment>,
    source_id: &str,
    now: i64,
) -> CallbackDecision {
    if holder.is_some() {
        return CallbackDecision::only(CallbackOutcome::Duplicate);
    }
    let (C2bDecision::Book(t), Some(base)) = (&prepared.verdict, &prepared.base) else {
        return CallbackDecision::only(match prepared.verdict {
            C2bDecision::Duplicate => CallbackOutcome::Duplicate,
            // Stored, acknowledged and decided again by the re-drive until the STK payment
            // that could be it is settled.
            C2bDecision::AwaitStk => CallbackOutcome::Received,
            _ => CallbackOutcome::Flagged,
        });
    };
    let mut base = base.clone();
    base.created_at = now;
    let after = after_transition(&base, t, now);
    let mut update = update_for(
        plan,
        &base,
        decision::changed(&base.snapshot(), Transition::clone(t)),
        now,
    );
    update.event = Some(
        json!({
            "source": source_id,
            "receipt": prepared.report.receipt,
            "account_reference": prepared.report.account_reference,
            "business_short_code": prepared.report.business_short_code,
            "recovered_by": prepared.path.recovered_by(),
        })
        .to_string(),
    );
    CallbackDecision {
        outcome: CallbackOutcome::Applied,
        update: Some(update),
        outbox: Vec::new(),
        book: Some(after),
    }
}

/// What `c2b register` asks Daraja for.
#[derive(Debug, Clone)]
pub struct Registration {
    pub short_code: String,
    pub response_type: daraja::C2bResponseType,
    pub version: daraja::C2bVersion,
    pub confirmation_url: url::Url,
    pub validation_url: url::Url,
}

impl Payments {
    /// This gateway's C2B confirmation and validation URLs (under the callback secret).
    pub fn c2b_urls(&self) -> (url::Url, url::Url) {
        let base = &self.settings.callback_url;
        let join = |path: &str| {
            base.join(path)
                .expect("the callback URL takes a relative path")
        };
        (join("c2b/confirmation"), join("c2b/validation"))
    }

    /// What registering would send for the configured shortcode.
    pub fn c2b_registration(
        &self,
        response_type: daraja::C2bResponseType,
        version: daraja::C2bVersion,
    ) -> Registration {
        let (confirmation_url, validation_url) = self.c2b_urls();
        Registration {
            short_code: self.settings.c2b.short_code.clone(),
            response_type,
            version,
            confirmation_url,
            validation_url,
        }
    }

    /// Registers the URLs with Daraja (checked against its URL rules before sending).
    pub async fn register_c2b(
        &self,
        r: &Registration,
    ) -> Result<daraja::C2bAccepted, daraja::DarajaError> {
        self.daraja
            .c2b_register_urls(&daraja::C2bRegisterParams {
                short_code: Some(r.short_code.clone()),
                response_type: r.response_type,
                confirmation_url: r.confirmation_url.clone(),
                validation_url: r.validation_url.clone(),
                version: Some(r.version),
            })
            .await
    }
}

/// What one Pull Transactions run found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PullSummary {
    /// Records Daraja listed for the window.
    pub listed: usize,
    /// Receipts booked now: their confirmation never came.
    pub recovered: Vec<String>,
    /// Records whose receipt was booked already.
    pub already_booked: usize,
    /// Records left alone, with why.
    pub skipped: Vec<(String, String)>,
    /// The earliest time (Unix ms) of a record to look at again: one an open STK payment could
    /// be (decided once it is settled), or one that could not be booked now. The next run starts
    /// there, not where this one ended.
    #[serde(skip)]
    pub look_again_from: Option<i64>,
}

impl PullSummary {
    fn look_again(&mut self, at: i64) {
        self.look_again_from = Some(self.look_again_from.map_or(at, |t| t.min(at)));
    }
}

/// The setting that remembers up to when Pull Transactions has looked (Unix ms).
pub const PULL_UNTIL_SETTING: &str = "c2b.pull_until";
/// The longest window one run asks for.
const PULL_MAX_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// Records already read are read again a little, in case Daraja lists them late.
const PULL_OVERLAP_MS: i64 = 10 * 60 * 1000;

impl Payments {
    /// This gateway's Pull Transactions callback URL (Daraja's notices are stored raw).
    pub fn pull_callback_url(&self) -> url::Url {
        self.settings
            .callback_url
            .join("pull")
            .expect("the callback URL takes a relative path")
    }

    /// Registers the C2B shortcode for Pull Transactions (once; "already registered" is fine).
    pub async fn pull_register(
        &self,
        nominated_number: Msisdn,
    ) -> Result<daraja::PullRegistered, daraja::DarajaError> {
        self.daraja
            .pull_register(&daraja::PullRegisterParams {
                short_code: Some(self.settings.c2b.short_code.clone()),
                nominated_number,
                callback_url: self.pull_callback_url(),
            })
            .await
    }

    /// Asks Pull Transactions what the C2B shortcode received between `start` and `end`, page
    /// by page, and books every customer payment no confirmation brought (`recovered_by:
    /// pull`). A receipt booked already, by any path, is left as it is.
    pub async fn pull_transactions(
        &self,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<PullSummary, crate::payments::PaymentError> {
        let short_code = self.settings.c2b.short_code.clone();
        let mut summary = PullSummary::default();
        let mut offset: u32 = 0;
        loop {
            let page = self
                .daraja
                .pull_query(&daraja::PullQueryParams {
                    short_code: Some(short_code.clone()),
                    start,
                    end,
                    offset,
                })
                .await?;
            if page.transactions.is_empty() {
                break;
            }
            offset = offset.saturating_add(page.transactions.len() as u32);
            summary.listed += page.transactions.len();
            for record in &page.transactions {
                match self.recover_pulled(record, &short_code, &mut summary).await {
                    Ok(()) => {}
                    // The database out of reach: the whole run again later.
                    Err(
                        e @ crate::payments::PaymentError::Storage(StorageError::Unavailable(_)),
                    ) => {
                        return Err(e);
                    }
                    // One record that cannot be booked now does not keep the others from it;
                    // the next run looks at it again.
                    Err(error) => {
                        let receipt = record.transaction_id.trim().to_owned();
                        tracing::error!(%receipt, %error, "Pull Transactions: a record could not be booked; the next run asks again");
                        summary
                            .skipped
                            .push((receipt, format!("not booked: {error}")));
                        // Without its time it cannot be asked for again by time; pinning the
                        // window to its start would move it back a little on every run.
                        if let Some(at) = record
                            .to_report(&short_code)
                            .and_then(|r| r.transaction_time_ms)
                        {
                            summary.look_again(at);
                        }
                    }
                }
            }
            if offset >= 100_000 {
                tracing::warn!(offset, "Pull Transactions: stopping after 100,000 records");
                break;
            }
        }
        self.metrics.inc(
            "mpesa_gateway_c2b_pull_runs_total",
            &[(
                "recovered",
                if summary.recovered.is_empty() {
                    "none"
                } else {
                    "some"
                },
            )],
        );
        Ok(summary)
    }

    async fn recover_pulled(
        &self,
        record: &daraja::wire::PullTransaction,
        short_code: &str,
        summary: &mut PullSummary,
    ) -> Result<(), crate::payments::PaymentError> {
        let receipt = record.transaction_id.trim().to_owned();
        let mut skip = |why: &str| summary.skipped.push((receipt.clone(), why.to_owned()));
        if receipt.is_empty() || receipt.len() > 64 {
            skip("no usable receipt");
            return Ok(());
        }
        if !record.is_customer_payment() {
            skip("not a customer payment");
            return Ok(());
        }
        let Some(report) = record.to_report(short_code) else {
            skip("the amount is not an exact amount");
            return Ok(());
        };
        // Before any lookup: PostgreSQL refuses a NUL even in a query's parameter.
        if report.holds_a_nul() {
            skip("a text field holds a NUL character");
            return Ok(());
        }
        if self
            .storage
            .find_payment_by_receipt(&receipt)
            .await?
            .is_some()
        {
            summary.already_booked += 1;
            return Ok(());
        }
        let paid_at = report.transaction_time_ms;
        let prepared = self.prepare_c2b(report, C2bPath::Pull).await?;
        if let Some(note) = prepared.note() {
            skip(&note);
            if prepared.verdict == C2bDecision::AwaitStk
                && let Some(at) = paid_at
            {
                summary.look_again(at);
            }
            return Ok(());
        }
        let now = self.clock.now_ms();
        let decision = decide_c2b(&self.plan, &prepared, None, "pull_transactions", now);
        let (Some(book), Some(update)) = (decision.book, decision.update) else {
            return Ok(());
        };
        let (holder, ours) = self.storage.book_payment(&book, &update, now).await?;
        if ours {
            self.after_write(&holder, &update);
            tracing::warn!(payment_id = %holder.id, %receipt, "C2B confirmation never came; payment recovered by Pull Transactions");
            summary.recovered.push(receipt);
        } else {
            summary.already_booked += 1;
        }
        Ok(())
    }

    /// Whether an STK payment of ours could be the payment a report describes (an STK push to a
    /// shortcode with C2B URLs also sends a confirmation, and Pull Transactions and Transaction
    /// Status find it): one with the same account, or the same number, or (Buy Goods, which
    /// has no account) pushed in the day before it was paid, that `c2b::stk_could_be` accepts,
    /// still open, or completed by STK Query, which tells no receipt (its receipt would
    /// otherwise make the report a duplicate of it).
    async fn stk_could_be(&self, report: &C2bReport) -> Result<StkCouldBe, StorageError> {
        let account = report.account_reference.trim();
        let number = report.msisdn.number().map(|n| n.as_str().to_owned());
        // A completed push is this payment only if it was paid when the push was out: from a
        // little before it was created (clocks differ) to a day after.
        let paid_at = report
            .transaction_time_ms
            .unwrap_or_else(|| self.clock.now_ms());
        let pushed_around_then = |p: &Payment| {
            (p.created_at - 5 * 60_000..=p.created_at + 86_400_000).contains(&paid_at)
        };
        for status in [
            PaymentStatus::Pending,
            PaymentStatus::Initiated,
            PaymentStatus::Completed,
        ] {
            let by_account = (!account.is_empty()).then(|| mpesa_storage::PaymentFilter {
                status: Some(status),
                reference: Some(account.to_owned()),
                channel: Some(PaymentChannel::Stk),
                ..Default::default()
            });
            let by_number = number.clone().map(|phone| mpesa_storage::PaymentFilter {
                status: Some(status),
                phone: Some(phone),
                channel: Some(PaymentChannel::Stk),
                ..Default::default()
            });
            // Buy Goods: no account to go by, and the number masked or hashed in production:
            // the pushes made in the day before it was paid.
            let by_time = account.is_empty().then(|| mpesa_storage::PaymentFilter {
                status: Some(status),
                channel: Some(PaymentChannel::Stk),
                created_from: Some(paid_at - 86_400_000),
                created_to: Some(paid_at + 5 * 60_000),
                ..Default::default()
            });
            for filter in [by_account, by_number, by_time].into_iter().flatten() {
                let page = self
                    .storage
                    .list_payments(
                        &filter,
                        &mpesa_storage::PageRequest {
                            limit: 100,
                            cursor: None,
                        },
                    )
                    .await?;
                if page.items.iter().any(|p| {
                    (status != PaymentStatus::Completed
                        || (p.mpesa_receipt_number.is_none() && pushed_around_then(p)))
                        && (c2b::stk_could_be(report, &p.reference, p.amount, p.phone.as_ref())
                            || (filter.phone.is_some()
                                && c2b::whole_shillings(report.amount) == Some(p.amount)))
                }) {
                    return Ok(match status {
                        PaymentStatus::Completed => StkCouldBe::CompletedWithoutReceipt,
                        _ => StkCouldBe::Open,
                    });
                }
            }
        }
        Ok(StkCouldBe::Nothing)
    }

    /// One scheduled run: from where the last one stopped (a little before, at most a day
    /// back) to now; the end is remembered only when the run succeeded.
    pub async fn pull_since_last(&self) -> Result<PullSummary, crate::payments::PaymentError> {
        let now = self.clock.now_ms();
        let last = self
            .storage
            .get_setting(PULL_UNTIL_SETTING)
            .await?
            .and_then(|v| v.parse::<i64>().ok());
        let interval = self
            .settings
            .c2b
            .pull_interval
            .map_or(3_600_000, |d| d.as_millis() as i64);
        let wanted = last
            .map(|l| l - PULL_OVERLAP_MS)
            .unwrap_or(now - 2 * interval);
        let from = wanted.max(now - PULL_MAX_WINDOW_MS);
        if from > wanted {
            tracing::error!(
                from = %millis_to_utc(wanted),
                to = %millis_to_utc(from),
                "Pull Transactions: this stretch is more than a day back and is not asked for; a confirmation lost in it is found only on the M-Pesa org portal"
            );
        }
        let summary = self
            .pull_transactions(millis_to_utc(from), millis_to_utc(now))
            .await?;
        // Up to now, or up to the first record to look at again.
        let until = summary.look_again_from.map_or(now, |t| t.clamp(from, now));
        self.storage
            .put_setting(PULL_UNTIL_SETTING, &until.to_string(), now)
            .await?;
        Ok(summary)
    }
}

fn millis_to_utc(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `PULL_TRANSACTIONS_INTERVAL`: every instance wakes at the interval; the one that takes the
/// lease asks Daraja.
pub async fn run_pull_schedule(
    payments: Payments,
    owner: String,
    interval: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = payments.clock.now_ms();
        let until = now + interval.as_millis() as i64 / 2;
        match payments
            .storage
            .acquire_lease("c2b-pull", &owner, now, until)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!(%error, "Pull Transactions: could not take the lease");
                continue;
            }
        }
        match payments.pull_since_last().await {
            Ok(s) if !s.recovered.is_empty() => {
                tracing::warn!(
                    recovered = s.recovered.len(),
                    listed = s.listed,
                    "Pull Transactions recovered payments whose confirmation never came"
                )
            }
            Ok(s) => tracing::debug!(listed = s.listed, "Pull Transactions: nothing missing"),
            Err(error) => {
                tracing::warn!(%error, "Pull Transactions run failed; the next one asks again")
            }
        }
    }
}

/// How long a confirmation's lookups (an STK push it could be, a payment link, a linked phone)
/// may take before it is stored raw instead, acknowledged, and booked by the re-drive: M-Pesa
/// sends a confirmation once, and an answer that is late or an error loses it.
pub const CONFIRMATION_PREPARE_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// How long a validation decision may take before the fallback answers (Daraja waits about 8
/// seconds from when its request left; the network and its queue take some of them).
pub const VALIDATION_DECIDE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

impl Payments {
    /// Judges a validation request by `C2B_VALIDATION` (accept everything when `off`). May read
    /// the database (known accounts): callers bound it with [`VALIDATION_DECIDE_WITHIN`].
    pub async fn judge_validation(
        &self,
        report: &C2bReport,
    ) -> Result<Result<(), c2b::C2bRefusal>, StorageError> {
        let rules = &self.settings.c2b;
        if rules.validation == crate::config::C2bValidation::Off {
            return Ok(Ok(()));
        }
        let account = report.account_reference.trim();
        let account_known = if rules.require_known_account {
            Some(self.is_known_account(account).await?)
        } else {
            None
        };
        Ok(c2b::validate(&c2b::ValidationFacts {
            amount: Some(report.amount),
            min: mpesa_domain::Amount::from_stored(self.settings.amount_bounds.min),
            max: mpesa_domain::Amount::from_stored(self.settings.amount_bounds.max),
            msisdn_present: report.msisdn != PayerMsisdn::Absent,
            account_matches_pattern: rules
                .account_pattern
                .as_ref()
                .is_none_or(|p| p.is_match(account)),
            account_known,
        }))
    }

    /// Whether customers may pay to this account number (C2B_REQUIRE_KNOWN_ACCOUNT): one the
    /// merchant registered through the API. and the account numbers of open payment links.
    pub async fn is_known_account(&self, account: &str) -> Result<bool, StorageError> {
        if account.is_empty() {
            return Ok(false);
        }
        if self.storage.is_c2b_account(account).await? {
            return Ok(true);
        }
        Ok(self.open_link_for(account).await?.is_some())
    }

    /// Registers an account number customers may pay to: `true` when it was added (one that
    /// is there, in any case, changes nothing).
    pub async fn add_known_account(&self, account: &str, now: i64) -> Result<bool, StorageError> {
        self.storage.add_c2b_account(account, now).await
    }

    /// The account numbers the merchant registered.
    pub async fn known_accounts(&self) -> Result<Vec<mpesa_storage::C2bAccount>, StorageError> {
        self.storage.list_c2b_accounts().await
    }

    /// Removes a registered account number; false when it was not registered.
    pub async fn remove_known_account(&self, account: &str) -> Result<bool, StorageError> {
        self.storage.remove_c2b_account(account).await
    }

    /// The open payment link whose account number a customer typed (any case, spaces or
    /// dashes), if any.
    pub async fn open_link_for(
        &self,
        account: &str,
    ) -> Result<Option<mpesa_storage::PaymentLink>, StorageError> {
        match mpesa_domain::link::normalize_account(account) {
            Some(account) => {
                self.storage
                    .find_open_payment_link_by_account(&account, self.clock.now_ms())
                    .await
            }
            None => Ok(None),
        }
    }

    /// The single-use link with this account number paid most recently.
    async fn paid_link_for(
        &self,
        account: &str,
    ) -> Result<Option<mpesa_storage::PaymentLink>, StorageError> {
        match mpesa_domain::link::normalize_account(account) {
            Some(account) => {
                self.storage
                    .find_paid_payment_link_by_account(&account)
                    .await
            }
            None => Ok(None),
        }
    }

    /// The fallback answer when the rules cannot decide in time.
    pub fn validation_fallback(&self) -> Result<(), c2b::C2bRefusal> {
        match self.settings.c2b.validation_fallback {
            crate::config::C2bFallback::Accept => Ok(()),
            crate::config::C2bFallback::Refuse => Err(c2b::C2bRefusal::Other),
        }
    }
}

/// What booking a C2B payment found by Transaction Status did.
#[derive(Debug, Clone)]
pub enum StatusBooking {
    /// Booked now (`recovered_by: "status"`).
    Booked(Box<Payment>),
    /// The receipt was booked already, by some path: that payment.
    AlreadyBooked(Box<Payment>),
    /// Kept, not booked: why (another shortcode, an odd amount, an open STK payment that could
    /// be it), in words and as a kind.
    NotBooked { why: NotBooked, note: String },
}

/// Why a payment Transaction Status found was not booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotBooked {
    /// Paid to a shortcode this gateway does not serve.
    OtherShortCode,
    /// An open STK payment could be it: settled with it.
    AwaitStk,
    Other,
}

impl NotBooked {
    fn of(verdict: &C2bDecision) -> Self {
        match verdict {
            C2bDecision::NotOurShortCode => NotBooked::OtherShortCode,
            C2bDecision::AwaitStk => NotBooked::AwaitStk,
            _ => NotBooked::Other,
        }
    }
}

impl Payments {
    /// Books a C2B payment a Transaction Status answer found, through the same path as a
    /// confirmation or a pulled record: storage's unique receipt makes the `TransID` settle
    /// once, whichever path comes first.
    pub async fn book_from_status(&self, report: C2bReport) -> Result<StatusBooking, StorageError> {
        if let Some(p) = self
            .storage
            .find_payment_by_receipt(&report.receipt)
            .await?
        {
            return Ok(StatusBooking::AlreadyBooked(Box::new(p)));
        }
        let prepared = self.prepare_c2b(report, C2bPath::Status).await?;
        if let Some(note) = prepared.note() {
            return Ok(StatusBooking::NotBooked {
                why: NotBooked::of(&prepared.verdict),
                note,
            });
        }
        let now = self.clock.now_ms();
        let decision = decide_c2b(&self.plan, &prepared, None, "transaction_status", now);
        let (Some(book), Some(update)) = (decision.book, decision.update) else {
            return Ok(StatusBooking::NotBooked {
                why: NotBooked::of(&prepared.verdict),
                note: "not a payment this gateway books".into(),
            });
        };
        let (holder, ours) = self.storage.book_payment(&book, &update, now).await?;
        if ours {
            self.after_write(&holder, &update);
            tracing::warn!(payment_id = %holder.id, receipt = %prepared.report.receipt, "C2B confirmation never came; payment recovered by Transaction Status");
            Ok(StatusBooking::Booked(Box::new(holder)))
        } else {
            Ok(StatusBooking::AlreadyBooked(Box::new(holder)))
        }
    }

    /// The paybill or till customers pay on their own (`MPESA_C2B_SHORT_CODE`).
    pub fn c2b_short_code(&self) -> &str {
        &self.settings.c2b.short_code
    }
}
