//! `GET /admin/outbox`: dead-lettered and pending notifications (or one status, paged);
//! `GET /admin/outbox/{id}`: one event, its payload and every delivery attempt;
//! `POST /admin/outbox/{id}/retry`: put a dead (or blocked) event back in the queue.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use mpesa_storage::{OutboxFilter, OutboxStatus, PageRequest};

use crate::admin::csrf::ActionForm;
use crate::admin::error::AdminError;
use crate::admin::format;
use crate::admin::layout::{self, Layout, Section};
use crate::admin::pages::render;
use crate::admin::pages::{Fact, OutboxRow, destination, facts, path_segment, payment_href};
use crate::admin::params::{Params, query_string};
use crate::admin::session::Admin;
use crate::outbox::queue::{OutboxQueue, Retry};
use crate::state::AppState;

const PAGE_SIZE: u32 = 50;
/// Counts are read as a bounded page of ids, never a COUNT over the table (delivered events
/// pile up for ever): past this many, the page says "99+".
pub const COUNT_CAP: u32 = 99;
const STATUSES: [OutboxStatus; 4] = [
    OutboxStatus::Dead,
    OutboxStatus::Pending,
    OutboxStatus::Blocked,
    OutboxStatus::Delivered,
];

pub struct StatusList {
    pub heading: String,
    pub id: &'static str,
    pub rows: Vec<OutboxRow>,
    pub more_href: Option<String>,
    pub more_text: &'static str,
    pub empty: &'static str,
}

pub struct Tab {
    pub label: String,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "admin/outbox.html")]
struct OutboxPage {
    layout: Layout,
    tabs: Vec<Tab>,
    counts: Vec<(String, String)>,
    sections: Vec<StatusList>,
    first_href: Option<String>,
}

fn empty_text(status: OutboxStatus) -> &'static str {
    match status {
        OutboxStatus::Dead => "Nothing is dead-lettered.",
        OutboxStatus::Pending => "Nothing is waiting to be sent.",
        OutboxStatus::Blocked => "No destination refuses us.",
        OutboxStatus::Delivered => "Nothing has been delivered yet.",
    }
}

fn heading(status: OutboxStatus) -> &'static str {
    match status {
        OutboxStatus::Dead => "Dead-lettered",
        OutboxStatus::Pending => "Pending",
        OutboxStatus::Blocked => "Blocked",
        OutboxStatus::Delivered => "Delivered",
    }
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let queue = &state.outbox;
    let status = match params.get("status") {
        None => None,
        Some(s) => Some(OutboxStatus::parse(s).ok_or_else(|| {
            AdminError::BadRequest("Status: choose one of the listed statuses.".into())
        })?),
    };
    let cursor = params
        .text("cursor", "The page link")
        .map_err(AdminError::BadRequest)?;
    let (pending_count, dead_count, blocked_count) = tokio::try_join!(
        bounded_count(queue, OutboxStatus::Pending),
        bounded_count(queue, OutboxStatus::Dead),
        bounded_count(queue, OutboxStatus::Blocked),
    )?;
    // Without a status: what needs looking at, dead first then pending, a page of each.
    let shown: Vec<OutboxStatus> = match status {
        Some(s) => vec![s],
        None => vec![OutboxStatus::Dead, OutboxStatus::Pending],
    };
    let mut sections = Vec::new();
    for s in shown {
        let found = queue
            .list(
                &OutboxFilter {
                    status: Some(s),
                    channel: None,
                },
                &PageRequest {
                    limit: PAGE_SIZE,
                    cursor: if status.is_some() {
                        cursor.clone()
                    } else {
                        None
                    },
                },
            )
            .await?;
        sections.push(StatusList {
            heading: heading(s).to_owned(),
            id: s.as_str(),
            rows: found.items.iter().map(OutboxRow::from).collect(),
            more_href: found.next_cursor.map(|c| {
                format!(
                    "/admin/outbox?{}",
                    query_string([("status", s.as_str()), ("cursor", c.as_str())])
                )
            }),
            more_text: if status.is_some() {
                "Next page"
            } else {
                "More"
            },
            empty: empty_text(s),
        });
    }
    let count_of = |s: OutboxStatus| match s {
        OutboxStatus::Pending => format!(" ({pending_count})"),
        OutboxStatus::Dead => format!(" ({dead_count})"),
        OutboxStatus::Blocked => format!(" ({blocked_count})"),
        OutboxStatus::Delivered => String::new(),
    };
    let mut tabs = vec![Tab {
        label: "Needs attention".into(),
        href: "/admin/outbox".into(),
        current: status.is_none(),
    }];
    tabs.extend(STATUSES.iter().map(|s| Tab {
        label: format!("{}{}", heading(*s), count_of(*s)),
        href: format!("/admin/outbox?status={}", s.as_str()),
        current: status == Some(*s),
    }));
    let page = OutboxPage {
        layout: Layout::new("Outbox", Section::Outbox, &admin.session),
        tabs,
        counts: vec![
            ("Pending".into(), pending_count),
            ("Dead-lettered".into(), dead_count),
            ("Blocked".into(), blocked_count),
        ],
        sections,
        first_href: match (status, &cursor) {
            (Some(s), Some(_)) => Some(format!("/admin/outbox?status={}", s.as_str())),
            _ => None,
        },
    };
    render(&page)
}

/// How many events have this status, up to [`COUNT_CAP`] (`"99+"` beyond).
pub async fn bounded_count(
    queue: &OutboxQueue,
    status: OutboxStatus,
) -> Result<String, mpesa_storage::StorageError> {
    Ok(match queue.count_up_to(status, COUNT_CAP).await? {
        Some(n) => n.to_string(),
        None => format!("{COUNT_CAP}+"),
    })
}

pub struct AttemptRow {
    pub attempt: i32,
    pub started: String,
    pub result: String,
    pub badge: String,
    pub code: String,
    pub duration: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "admin/outbox_event.html")]
struct EventPage {
    layout: Layout,
    id: String,
    status: String,
    badge: String,
    details: Vec<Fact>,
    payment_href: String,
    payment_id: String,
    payload: String,
    attempts: Vec<AttemptRow>,
    retryable: bool,
    retry_action: String,
}

pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let Some((e, attempts)) = state.outbox.event(&id).await? else {
        return Err(AdminError::NotFound("There is no such outbox event."));
    };
    let page = EventPage {
        layout: Layout::new(
            format!("Outbox event {}", e.id),
            Section::Outbox,
            &admin.session,
        )
        .with_notice(layout::notice(params.get("notice"))),
        id: e.id.clone(),
        status: format::label(e.status.as_str()),
        badge: format::badge_class(e.status.as_str()),
        details: facts(vec![
            ("Channel", Some(e.channel.as_str().to_owned()), false),
            ("Type", Some(e.event_type.clone()), true),
            ("Destination", Some(destination(&e)), true),
            ("Attempts so far", Some(e.attempts.to_string()), false),
            (
                "Next attempt",
                (e.status == OutboxStatus::Pending)
                    .then(|| format::when_precise(e.next_attempt_at)),
                false,
            ),
            ("Last error", e.last_error.clone(), false),
            ("Created", Some(format::when_precise(e.created_at)), false),
            ("Delivered", e.delivered_at.map(format::when_precise), false),
        ]),
        payment_href: e
            .payment_id
            .as_deref()
            .map(payment_href)
            .unwrap_or_default(),
        payment_id: e.payment_id.clone().unwrap_or_default(),
        payload: format::pretty_json(&e.payload),
        attempts: attempts
            .iter()
            .map(|a| AttemptRow {
                attempt: a.attempt,
                started: format::when_precise(a.started_at),
                result: format::label(&a.result),
                badge: format::badge_class(match a.result.as_str() {
                    "failed" => "failed",
                    other => other,
                }),
                code: a.response_code.map(|c| c.to_string()).unwrap_or_default(),
                duration: format!("{} ms", a.duration_ms),
                error: a.error.clone().unwrap_or_default(),
            })
            .collect(),
        retryable: matches!(e.status, OutboxStatus::Dead | OutboxStatus::Blocked),
        retry_action: format!("/admin/outbox/{}/retry", path_segment(&e.id)),
    };
    render(&page)
}

pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let requeued = match state.outbox.retry(&id).await? {
        Retry::NoSuchEvent => {
            return Err(AdminError::NotFound("There is no such outbox event."));
        }
        Retry::Requeued => true,
        Retry::NotDead => false,
    };
    if requeued {
        tracing::info!(event_id = %id, username = %form.admin.session.username, "outbox event re-queued from the dashboard");
    }
    let notice = if requeued { "retried" } else { "not_dead" };
    Ok(Redirect::to(&format!(
        "/admin/outbox/{}?notice={notice}",
        path_segment(&id)
    ))
    .into_response())
}
