//! The merchant API of payment links: create, list, show (with its payments and total), disable.
//! Each handler translates to and from [`crate::payments::PaymentLinks`].

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mpesa_storage::{LinkTotals, PageRequest, PaymentLink};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::api::{ErrorBody, json_body};
use crate::http::auth::Merchant;
use crate::http::error::ApiError;
use crate::ids::rfc3339;
use crate::payments::links::LinkError;
use crate::payments::{PaymentLinks, PaymentView};
use crate::state::AppState;

/// The body of `POST /api/v1/payment-links`: a title and either a fixed `amount` or a range
/// (`amount_min`/`amount_max`; an open side takes `AMOUNT_MIN`/`AMOUNT_MAX`). Unknown fields are
/// refused.
///
/// The example is a whole body: filled in field by field, it would give both a fixed amount and
/// a range, which is refused (422).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Term 2 fees", "amount": 1500, "reference": "INV0042",
    "single_use": true, "expires_at": "2099-12-31T23:59:00+03:00"}))]
#[allow(dead_code)] // documents the accepted body; parsing is done field by field
pub struct CreateLinkRequest {
    /// What is paid for, shown to the customer: 1 to 80 characters.
    #[schema(example = "Term 2 fees", min_length = 1, max_length = 80)]
    pub title: String,
    /// A fixed amount in whole shillings.
    #[schema(example = 1500)]
    pub amount: Option<i64>,
    pub amount_min: Option<i64>,
    pub amount_max: Option<i64>,
    /// The AccountReference of the link's STK prompts (1–12 letters, digits, spaces or
    /// `- _ . / : +`); default: the link's account number.
    #[schema(example = "INV0042")]
    pub reference: Option<String>,
    /// Shown under the title, at most 500 characters.
    pub description: Option<String>,
    /// Paid once, then closed. Default false (the link collects many payments).
    pub single_use: Option<bool>,
    /// RFC 3339; the link closes then.
    #[schema(example = "2099-12-31T23:59:00+03:00")]
    pub expires_at: Option<String>,
    /// `en` or `sw`: the pay page's language; default: the customer's browser decides.
    pub language: Option<String>,
}

/// A payment link. `status`: `active`, `paid` (a single-use link whose payment completed),
/// `expired` or `disabled`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinkView {
    #[schema(example = "pl_0192f3a4b5c67d8e9f00112233445566")]
    pub id: String,
    /// Where customers pay: `PUBLIC_URL/pay/{slug}`.
    pub url: String,
    /// What a customer types as the account at the paybill to pay this link.
    #[schema(example = "K7MXR4A")]
    pub account_number: String,
    #[schema(example = "active")]
    pub status: String,
    pub title: String,
    pub amount: Option<i64>,
    pub amount_min: Option<i64>,
    pub amount_max: Option<i64>,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub single_use: bool,
    pub expires_at: Option<String>,
    pub language: Option<String>,
    /// The payment that paid a single-use link.
    pub paid_payment_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl LinkView {
    pub fn new(link: &PaymentLink, links: &PaymentLinks) -> Self {
        LinkView {
            id: link.id.clone(),
            url: links.url(link),
            account_number: link.account_number.clone(),
            status: links.status(link).as_str().to_owned(),
            title: link.title.clone(),
            amount: link.amount,
            amount_min: link.amount_min,
            amount_max: link.amount_max,
            reference: link.reference.clone(),
            description: link.description.clone(),
            single_use: link.single_use,
            expires_at: link.expires_at.map(rfc3339),
            language: link.language.map(|l| l.as_str().to_owned()),
            paid_payment_id: link.paid_payment_id.clone(),
            created_at: rfc3339(link.created_at),
            updated_at: rfc3339(link.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkList {
    pub data: Vec<LinkView>,
    pub next_cursor: Option<String>,
}

/// A link with what it collected.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkDetail {
    #[serde(flatten)]
    pub link: LinkView,
    /// Its payments, newest first (at most 100).
    pub payments: Vec<PaymentView>,
    pub total: LinkTotalView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkTotalView {
    /// Completed payments and their sum in whole shillings.
    pub completed_count: i64,
    pub completed_amount: i64,
    /// Every payment made through the link, whatever became of it.
    pub payment_count: i64,
}

impl From<LinkTotals> for LinkTotalView {
    fn from(t: LinkTotals) -> Self {
        LinkTotalView {
            completed_count: t.completed_count,
            completed_amount: t.completed_amount,
            payment_count: t.payment_count,
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Storage(s) => s.into(),
            LinkError::NotFound => ApiError::NotFound("no such payment link"),
        }
    }
}

/// Create a payment link.
#[utoipa::path(
    post, path = "/api/v1/payment-links", tag = "payment links",
    request_body = CreateLinkRequest,
    responses(
        (status = 201, body = LinkView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    _merchant: Merchant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let value = json_body(&headers, body)?;
    let request = state
        .links
        .parse_request(&value)
        .map_err(|(field, message)| ApiError::validation(&field, message))?;
    let link = state.links.create(request).await?;
    let view = LinkView::new(&link, &state.links);
    let mut response = (StatusCode::CREATED, Json(&view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/payment-links/{}", link.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// List payment links, newest first.
#[utoipa::path(
    get, path = "/api/v1/payment-links", tag = "payment links",
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page", max_length = 200),
    ),
    responses((status = 200, body = LinkList), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _merchant: Merchant,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<LinkList>, ApiError> {
    if let Some(other) = params
        .keys()
        .find(|k| !matches!(k.as_str(), "limit" | "cursor"))
    {
        return Err(ApiError::validation(other, "unknown query parameter"));
    }
    let limit = match params.get("limit") {
        None => 20,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| ApiError::validation("limit", "a number from 1 to 100"))?,
    };
    let cursor = params.get("cursor").filter(|c| !c.is_empty()).cloned();
    let bad_cursor = || ApiError::validation("cursor", "not a cursor from a previous page");
    if cursor.as_ref().is_some_and(|c| c.len() > 200) {
        return Err(bad_cursor());
    }
    let page = state
        .links
        .list(&PageRequest { limit, cursor })
        .await
        .map_err(|e| match e {
            LinkError::Storage(mpesa_storage::StorageError::InvalidInput(_)) => bad_cursor(),
            other => other.into(),
        })?;
    Ok(Json(LinkList {
        data: page
            .items
            .iter()
            .map(|l| LinkView::new(l, &state.links))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Get one payment link, its payments and what they add up to.
#[utoipa::path(
    get, path = "/api/v1/payment-links/{id}", tag = "payment links",
    params(("id" = String, Path, description = "The link id, `pl_…`")),
    responses((status = 200, body = LinkDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    _merchant: Merchant,
    Path(id): Path<String>,
) -> Result<Json<LinkDetail>, ApiError> {
    let link = state.links.get(&id).await?;
    let payments = state.links.payments_of(&link.id, 100).await?;
    let total = state.links.totals(&link.id).await?;
    Ok(Json(LinkDetail {
        link: LinkView::new(&link, &state.links),
        payments: payments.iter().map(PaymentView::from).collect(),
        total: total.into(),
    }))
}

/// Disable a payment link: its page says so and its account number no longer pays it. A paid
/// or disabled link is returned as it is.
#[utoipa::path(
    post, path = "/api/v1/payment-links/{id}/disable", tag = "payment links",
    params(("id" = String, Path, description = "The link id, `pl_…`")),
    responses((status = 200, body = LinkView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn disable(
    State(state): State<AppState>,
    _merchant: Merchant,
    Path(id): Path<String>,
) -> Result<Json<LinkView>, ApiError> {
    let link = state.links.disable(&id).await?;
    Ok(Json(LinkView::new(&link, &state.links)))
}
