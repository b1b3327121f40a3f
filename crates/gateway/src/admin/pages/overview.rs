//! `GET /admin/`: today's and the last 7 days' money, how payments ended, a chart of daily
//! volume, and what needs a person (held payments, dead-lettered notifications, payments
//! waiting too long).

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use mpesa_domain::{PaymentStatus, ResultCode};
use mpesa_storage::{
    OutboxFilter, OutboxStatus, PageRequest, PaymentChannel, PaymentFilter, PaymentStats,
};

use crate::admin::chart::{self, Chart};
use crate::admin::error::AdminError;
use crate::admin::format::{self, DAY_MS};
use crate::admin::layout::{self, Layout, Section};
use crate::admin::pages::render;
use crate::admin::pages::{OutboxRow, PaymentRow};
use crate::admin::params::Params;
use crate::admin::session::Admin;
use crate::ids::now_ms;
use crate::state::AppState;

const CHART_DAYS: i64 = 14;
const ATTENTION_ROWS: u32 = 10;

pub struct Totals {
    pub requested: String,
    pub completed_count: String,
    pub completed_amount: String,
    pub success_rate: String,
    pub open: String,
}

impl From<&PaymentStats> for Totals {
    fn from(s: &PaymentStats) -> Self {
        let count = |status: PaymentStatus| s.by_status.get(status.as_str()).map_or(0, |t| t.count);
        let requested: i64 = s.by_status.values().map(|t| t.count).sum();
        let completed = count(PaymentStatus::Completed);
        let finished: i64 = mpesa_domain::payment::ALL_STATUSES
            .iter()
            .filter(|st| st.is_final())
            .map(|st| count(*st))
            .sum();
        Totals {
            requested: format::thousands(requested),
            completed_count: format::count(completed, "payment", "payments"),
            completed_amount: format::money(
                s.by_status
                    .get(PaymentStatus::Completed.as_str())
                    .map_or(0, |t| t.amount),
            ),
            success_rate: if finished == 0 {
                "no finished payments".to_owned()
            } else {
                format!("{:.0}%", completed as f64 * 100.0 / finished as f64)
            },
            open: format::thousands(
                count(PaymentStatus::Initiated) + count(PaymentStatus::Pending),
            ),
        }
    }
}

pub struct StatusRow {
    pub label: String,
    pub badge: String,
    pub count: String,
    pub amount: String,
    pub href: String,
}

pub struct FailureRow {
    pub code: String,
    pub reason: &'static str,
    pub count: String,
}

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct OverviewPage {
    layout: Layout,
    today: Totals,
    week: Totals,
    by_status: Vec<StatusRow>,
    by_channel: Vec<StatusRow>,
    failures: Vec<FailureRow>,
    chart: Chart,
    held: Vec<PaymentRow>,
    held_count_week: String,
    waiting: Vec<PaymentRow>,
    waiting_after: String,
    dead: Vec<OutboxRow>,
    dead_count: String,
    outbox_pending: String,
    balance: Option<BalanceTile>,
}

/// The last Account Balance answers, and whether the B2C account covers what awaits approval.
pub struct BalanceTile {
    pub rows: Vec<BalanceRow>,
    pub warning: Option<String>,
    pub awaiting: Option<String>,
}

pub struct BalanceRow {
    pub label: String,
    /// `Utility Account KSh 12,000 · Working Account KSh 0`, or what is known instead.
    pub accounts: String,
    /// `answered 06 Dec 2026 18:40:01.123 EAT`, or why there is no answer.
    pub when: String,
}

/// Reads the balance tile; `None` when there is no initiator to ask with.
async fn balance_tile(state: &AppState) -> Result<Option<BalanceTile>, AdminError> {
    let money_out = &state.money_out;
    if !money_out.initiator.configured() {
        return Ok(None);
    }
    let b2c = money_out.payouts.settings().b2c_short_code.clone();
    let (latest, awaiting) = tokio::try_join!(
        money_out.balances.latest(),
        money_out.payouts.reads().awaiting_approval_total(),
    )?;
    let when = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| format!("{} EAT", format::when(t.timestamp_millis())))
    };
    let mut utility = None;
    let rows = latest
        .iter()
        .map(|b| {
            let is_b2c = b2c.as_deref() == Some(b.short_code.as_str());
            let accounts: Vec<(String, i64)> = b
                .accounts
                .as_ref()
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            (
                                x["name"].as_str().unwrap_or("Account").to_owned(),
                                x["available_cents"].as_i64().unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if is_b2c {
                utility = accounts
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("Utility Account"))
                    .map(|(_, c)| *c);
            }
            BalanceRow {
                label: format!(
                    "{} {}",
                    if is_b2c { "B2C" } else { "Paybill/till" },
                    b.short_code
                ),
                // Accounts that hold nothing are left out (a paybill lists five).
                accounts: match (accounts.is_empty(), accounts.iter().any(|(_, c)| *c != 0)) {
                    (true, _) => "No answer yet".to_owned(),
                    (false, false) => "every account KSh 0".to_owned(),
                    (false, true) => accounts
                        .iter()
                        .filter(|(_, c)| *c != 0)
                        .map(|(n, c)| format!("{n} {}", super::payouts::cents(*c)))
                        .collect::<Vec<_>>()
                        .join(" · "),
                },
                when: match (when(&b.answered_at), &b.last_error, when(&b.asked_at)) {
                    (_, Some(error), _) => format!("Last question failed: {error}"),
                    (Some(answered), _, _) => format!("Answered {answered}"),
                    (None, _, Some(asked)) => format!("Asked {asked}, no answer yet"),
                    (None, _, None) => "Never asked".to_owned(),
                },
            }
        })
        .collect();
    let warning = match (awaiting, utility) {
        (0, _) => None,
        (total, Some(cents)) if cents < total.saturating_mul(100) => Some(format!(
            "The B2C account holds {}: it cannot cover the {} of payouts awaiting approval.",
            super::payouts::cents(cents),
            format::money(total)
        )),
        (total, None) if b2c.is_some() => Some(format!(
            "{} of payouts await approval and the B2C balance is not known: ask again.",
            format::money(total)
        )),
        _ => None,
    };
    Ok(Some(BalanceTile {
        rows,
        warning,
        awaiting: (awaiting > 0).then(|| format::money(awaiting)),
    }))
}

/// `POST /admin/balance`: ask Account Balance again; the answers come by callback.
pub async fn ask_balance(
    State(state): State<AppState>,
    form: crate::admin::csrf::ActionForm,
) -> Result<Response, AdminError> {
    let username = &form.admin.session.username;
    let notice = match state.money_out.balances.ask().await {
        Ok(_) => {
            tracing::info!(%username, "Account Balance asked from the dashboard");
            "balance_asked"
        }
        Err(error) => {
            tracing::warn!(%username, %error, "Account Balance could not be asked");
            "balance_failed"
        }
    };
    Ok(axum::response::Redirect::to(&format!("/admin/?notice={notice}#balance")).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let (payments, outbox) = (state.payments.reads(), &state.outbox);
    let now = now_ms();
    let today_start = format::eat_day_start(now);
    let tomorrow = today_start + DAY_MS;
    let week_start = today_start - 6 * DAY_MS;
    // Open payments older than this should have been resolved by the reconciler by now.
    let waiting_for = state.config.payment_expires_after;
    let waiting_before = now - waiting_for.as_millis() as i64;
    let attention = PageRequest {
        limit: ATTENTION_ROWS,
        cursor: None,
    };
    let open_since = |status| PaymentFilter {
        status: Some(status),
        created_to: Some(waiting_before),
        ..PaymentFilter::default()
    };
    let held_filter = PaymentFilter {
        needs_review: Some(true),
        ..PaymentFilter::default()
    };
    let (pending_filter, initiated_filter) = (
        open_since(PaymentStatus::Pending),
        open_since(PaymentStatus::Initiated),
    );
    let dead_filter = OutboxFilter {
        status: Some(OutboxStatus::Dead),
        ..OutboxFilter::default()
    };
    let dead_page = PageRequest {
        limit: super::outbox::COUNT_CAP,
        cursor: None,
    };
    let balance = balance_tile(&state).await?;
    let (today, week, volume, held, pending, initiated, dead, pending_events) = tokio::try_join!(
        payments.stats(today_start, tomorrow),
        payments.stats(week_start, tomorrow),
        payments.daily_volume(today_start - (CHART_DAYS - 1) * DAY_MS, tomorrow),
        payments.list(&held_filter, &attention),
        payments.list(&pending_filter, &attention),
        payments.list(&initiated_filter, &attention),
        outbox.list(&dead_filter, &dead_page),
        super::outbox::bounded_count(outbox, OutboxStatus::Pending),
    )?;

    let by_status = mpesa_domain::payment::ALL_STATUSES
        .iter()
        .map(|st| {
            let totals = week.by_status.get(st.as_str()).cloned().unwrap_or_default();
            StatusRow {
                label: format::label(st.as_str()),
                badge: format::badge_class(st.as_str()),
                count: format::thousands(totals.count),
                amount: format::money(totals.amount),
                href: format!(
                    "/admin/payments?status={}&from={}",
                    st.as_str(),
                    format::eat_date(week_start)
                ),
            }
        })
        .collect();
    let by_channel = [
        (PaymentChannel::Stk, "STK push"),
        (PaymentChannel::C2b, "Paybill/till (C2B)"),
    ]
    .iter()
    .map(|(channel, label)| {
        let totals = week
            .completed_by_channel
            .get(channel.as_str())
            .cloned()
            .unwrap_or_default();
        StatusRow {
            label: (*label).to_owned(),
            badge: String::new(),
            count: format::thousands(totals.count),
            amount: format::money(totals.amount),
            href: format!(
                "/admin/payments?status=completed&channel={}&from={}",
                channel.as_str(),
                format::eat_date(week_start)
            ),
        }
    })
    .collect();
    let mut failures: Vec<(String, i64)> = week.failures_by_code.clone().into_iter().collect();
    failures.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let failures = failures
        .into_iter()
        .map(|(code, count)| FailureRow {
            reason: ResultCode::new(&code).describe(),
            code,
            count: format::thousands(count),
        })
        .collect();
    let mut waiting: Vec<_> = pending.items.into_iter().chain(initiated.items).collect();
    waiting.sort_by(|a, b| b.id.cmp(&a.id));
    waiting.truncate(ATTENTION_ROWS as usize);

    let page = OverviewPage {
        layout: Layout::new("Overview", Section::Overview, &admin.session)
            .with_notice(layout::notice(params.get("notice"))),
        today: Totals::from(&today),
        week: Totals::from(&week),
        by_status,
        by_channel,
        failures,
        chart: chart::daily_volume(&volume, today_start, CHART_DAYS),
        held: held.items.iter().map(PaymentRow::from).collect(),
        held_count_week: format::thousands(week.needs_review),
        waiting: waiting.iter().map(PaymentRow::from).collect(),
        waiting_after: format::duration_words(waiting_for),
        dead_count: match dead.next_cursor {
            Some(_) => format!("{}+", dead.items.len()),
            None => dead.items.len().to_string(),
        },
        dead: dead.items.iter().take(5).map(OutboxRow::from).collect(),
        outbox_pending: pending_events,
        balance,
    };
    render(&page)
}
