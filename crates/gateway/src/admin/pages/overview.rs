//! `GET /admin/`: today's and the last 7 days' money, how payments ended, a chart of daily
//! volume, and what needs a person (held payments, dead-lettered notifications, payments
//! waiting too long).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use mpesa_domain::{PaymentStatus, ResultCode};
use mpesa_storage::{
    OutboxFilter, OutboxStatus, PageRequest, PaymentChannel, PaymentFilter, PaymentStats,
};

use crate::admin::chart::{self, Chart};
use crate::admin::error::AdminError;
use crate::admin::format::{self, DAY_MS};
use crate::admin::layout::{Layout, Section, render};
use crate::admin::pages::{OutboxRow, PaymentRow};
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
}

pub async fn show(State(state): State<AppState>, admin: Admin) -> Result<Response, AdminError> {
    let storage = &state.storage;
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
    let (today, week, volume, held, pending, initiated, dead, pending_events) = tokio::try_join!(
        storage.payment_stats(today_start, tomorrow),
        storage.payment_stats(week_start, tomorrow),
        storage.daily_volume(today_start - (CHART_DAYS - 1) * DAY_MS, tomorrow),
        storage.list_payments(&held_filter, &attention),
        storage.list_payments(&pending_filter, &attention),
        storage.list_payments(&initiated_filter, &attention),
        storage.list_outbox(&dead_filter, &dead_page),
        super::outbox::bounded_count(storage.as_ref(), OutboxStatus::Pending),
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
        layout: Layout::new("Overview", Section::Overview, &admin),
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
    };
    render(&page)
}
