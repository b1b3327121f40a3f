//! `GET /admin/callbacks`: the raw inbox of every callback Safaricom (or anyone who knew the
//! secret path) sent, including those that matched no payment and those that could not be
//! parsed; `GET /admin/callbacks/{id}`: one callback, its headers and its body as received.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use mpesa_storage::{CallbackFilter, CallbackKind, CallbackOutcome, PageRequest};

use crate::admin::error::AdminError;
use crate::admin::format;
use crate::admin::layout::{Layout, Section};
use crate::admin::pages::render;
use crate::admin::pages::{CallbackRow, Choice, Fact, choices, facts, payment_href};
use crate::admin::params::{Params, query_string};
use crate::admin::session::Admin;
use crate::state::AppState;

const PAGE_SIZE: u32 = 50;

const OUTCOMES: [&str; 7] = [
    "applied",
    "duplicate",
    "ignored",
    "held_for_review",
    "unmatched",
    "unparseable",
    "stored",
];
const KINDS: [&str; 7] = [
    "stk",
    "c2b_validation",
    "c2b_confirmation",
    "b2c_result",
    "timeout",
    "initiator_result",
    "pull",
];

#[derive(Template)]
#[template(path = "admin/callbacks.html")]
struct CallbacksPage {
    layout: Layout,
    outcomes: Vec<Choice>,
    kinds: Vec<Choice>,
    rows: Vec<CallbackRow>,
    next_href: Option<String>,
    first_href: Option<String>,
    filtered: bool,
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let outcome = params.get("outcome").unwrap_or_default();
    let kind = params.get("kind").unwrap_or_default();
    let filter = CallbackFilter {
        outcome: match outcome {
            "" => None,
            o => Some(CallbackOutcome::parse(o).ok_or_else(|| {
                AdminError::BadRequest("Outcome: choose one of the listed outcomes.".into())
            })?),
        },
        kind: match kind {
            "" => None,
            k => Some(CallbackKind::parse(k).ok_or_else(|| {
                AdminError::BadRequest("Kind: choose one of the listed kinds.".into())
            })?),
        },
        payment_id: None,
    };
    let cursor = params
        .text("cursor", "The page link")
        .map_err(AdminError::BadRequest)?;
    let had_cursor = cursor.is_some();
    let found = state
        .payments
        .reads()
        .received_callbacks(
            &filter,
            &PageRequest {
                limit: PAGE_SIZE,
                cursor,
            },
        )
        .await?;
    let filter_query = query_string([("outcome", outcome), ("kind", kind)]);
    let page = CallbacksPage {
        layout: Layout::new("Callbacks", Section::Callbacks, &admin.session),
        outcomes: choices(OUTCOMES, Some(outcome)),
        kinds: choices(KINDS, Some(kind)),
        rows: found.items.iter().map(CallbackRow::from).collect(),
        next_href: found.next_cursor.map(|c| {
            format!(
                "/admin/callbacks?{}",
                query_string([("outcome", outcome), ("kind", kind), ("cursor", c.as_str())])
            )
        }),
        first_href: had_cursor.then(|| format!("/admin/callbacks?{filter_query}")),
        filtered: !filter_query.is_empty(),
    };
    render(&page)
}

#[derive(Template)]
#[template(path = "admin/callback.html")]
struct CallbackPage {
    layout: Layout,
    id: String,
    outcome: String,
    badge: String,
    details: Vec<Fact>,
    payment_href: String,
    payment_id: String,
    headers: String,
    body: String,
    lossy: bool,
    size: usize,
}

pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let Some(c) = state.payments.reads().received_callback(&id).await? else {
        return Err(AdminError::NotFound("There is no such callback."));
    };
    let (body, lossy) = format::body_text(&c.body);
    let page = CallbackPage {
        layout: Layout::new(
            format!("Callback {}", c.id),
            Section::Callbacks,
            &admin.session,
        ),
        id: c.id.clone(),
        outcome: format::label(c.outcome.as_str()),
        badge: format::badge_class(c.outcome.as_str()),
        details: facts(vec![
            ("Kind", Some(c.kind.as_str().to_owned()), false),
            ("Received", Some(format::when_precise(c.received_at)), false),
            ("From address", c.remote_addr.clone(), true),
            ("CheckoutRequestID", c.checkout_request_id.clone(), true),
            ("Why it was not understood", c.error.clone(), false),
        ]),
        payment_href: c
            .payment_id
            .as_deref()
            .map(payment_href)
            .unwrap_or_default(),
        payment_id: c.payment_id.clone().unwrap_or_default(),
        headers: format::pretty_json(&c.headers),
        body,
        lossy,
        size: c.body.len(),
    };
    render(&page)
}
