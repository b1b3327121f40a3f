//! `GET /admin/payments`: every payment, newest first, filtered by state, East Africa Time date
//! range, phone, reference, receipt, review flag and free-text search; keyset pages from
//! storage (no OFFSET, no COUNT), so the thousandth page is as quick as the first.
//! `GET /admin/payments.csv`: the filtered set as CSV, streamed page by page.

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use mpesa_domain::payment::ALL_STATUSES;
use mpesa_domain::{Msisdn, PaymentStatus};
use mpesa_storage::{PageRequest, PaymentChannel, PaymentFilter};

use crate::admin::error::AdminError;
use crate::admin::format::{self, DAY_MS};
use crate::admin::layout::{Layout, Section};
use crate::admin::pages::render;
use crate::admin::pages::{Choice, PaymentRow, choices};
use crate::admin::params::{Fields, Params, query_string};
use crate::admin::session::Admin;
use crate::cli::payments::{CSV_HEADER, csv_row};
use crate::ids::now_ms;
use crate::payments::Payments;
use crate::state::AppState;

pub const PAGE_SIZE: u32 = 50;
const EXPORT_PAGE: u32 = 500;

/// The filter form as the admin filled it in, to show it back.
#[derive(Default)]
pub struct FilterForm {
    pub status: String,
    pub channel: String,
    pub from: String,
    pub to: String,
    pub phone: String,
    pub reference: String,
    pub receipt: String,
    pub q: String,
    pub review: bool,
}

impl FilterForm {
    fn pairs(&self) -> Vec<(&str, &str)> {
        vec![
            ("status", self.status.as_str()),
            ("channel", self.channel.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("phone", self.phone.as_str()),
            ("reference", self.reference.as_str()),
            ("receipt", self.receipt.as_str()),
            ("q", self.q.as_str()),
            ("review", if self.review { "1" } else { "" }),
        ]
    }

    pub fn is_filtered(&self) -> bool {
        self.pairs().iter().any(|(_, v)| !v.is_empty())
    }
}

/// Reads the filters; the storage filter, or the messages saying what is wrong.
pub fn read_filters(params: &Fields) -> (FilterForm, Result<PaymentFilter, Vec<String>>) {
    let mut errors = Vec::new();
    let mut text = |name: &str, label: &str| match params.text(name, label) {
        Ok(v) => v.unwrap_or_default(),
        Err(message) => {
            errors.push(message);
            String::new()
        }
    };
    let form = FilterForm {
        status: text("status", "State"),
        channel: text("channel", "Channel"),
        from: text("from", "From"),
        to: text("to", "To"),
        phone: text("phone", "Phone"),
        reference: text("reference", "Reference"),
        receipt: text("receipt", "Receipt"),
        q: text("q", "Search"),
        review: params.get("review").is_some(),
    };
    let mut filter = PaymentFilter::default();
    if !form.status.is_empty() {
        match PaymentStatus::parse(&form.status) {
            Some(s) => filter.status = Some(s),
            None => errors.push("State: choose one of the listed states.".into()),
        }
    }
    if !form.channel.is_empty() {
        match PaymentChannel::parse(&form.channel) {
            Some(c) => filter.channel = Some(c),
            None => errors.push("Channel: choose STK push or paybill/till.".into()),
        }
    }
    if !form.phone.is_empty() {
        match Msisdn::parse(&form.phone) {
            Ok(phone) => filter.phone = Some(phone.as_str().to_owned()),
            Err(e) => errors.push(format!("Phone: {e}.")),
        }
    }
    let mut date = |value: &str, label: &str| -> Option<i64> {
        if value.is_empty() {
            return None;
        }
        let parsed = format::parse_eat_date(value);
        if parsed.is_none() {
            errors.push(format!("{label}: write the date as YYYY-MM-DD."));
        }
        parsed
    };
    filter.created_from = date(&form.from, "From");
    // "To" includes the whole day.
    filter.created_to = date(&form.to, "To").map(|start| start + DAY_MS);
    if let (Some(from), Some(to)) = (filter.created_from, filter.created_to)
        && from >= to
    {
        errors.push("From must be on or before To.".into());
    }
    filter.reference = (!form.reference.is_empty()).then(|| form.reference.clone());
    filter.receipt = (!form.receipt.is_empty()).then(|| form.receipt.to_uppercase());
    filter.search = (!form.q.is_empty()).then(|| form.q.clone());
    filter.needs_review = form.review.then_some(true);
    if errors.is_empty() {
        (form, Ok(filter))
    } else {
        (form, Err(errors))
    }
}

#[derive(Template)]
#[template(path = "admin/payments.html")]
struct PaymentsPage {
    layout: Layout,
    form: FilterForm,
    statuses: Vec<Choice>,
    errors: Vec<String>,
    rows: Vec<PaymentRow>,
    next_href: Option<String>,
    first_href: Option<String>,
    export_href: String,
    filtered: bool,
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let (form, filter) = read_filters(&params);
    let cursor = params
        .text("cursor", "The page link")
        .map_err(AdminError::BadRequest)?;
    let filter_query = query_string(form.pairs());
    let mut page = PaymentsPage {
        layout: Layout::new("Payments", Section::Payments, &admin.session),
        statuses: choices(
            ALL_STATUSES.iter().map(|s| s.as_str()),
            Some(form.status.as_str()),
        ),
        errors: Vec::new(),
        rows: Vec::new(),
        next_href: None,
        first_href: cursor
            .is_some()
            .then(|| format!("/admin/payments?{filter_query}")),
        export_href: format!("/admin/payments.csv?{filter_query}"),
        filtered: form.is_filtered(),
        form,
    };
    match filter {
        Err(errors) => {
            page.errors = errors;
            let mut response = render(&page)?;
            *response.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(response)
        }
        Ok(filter) => {
            let found = state
                .payments
                .reads()
                .list(
                    &filter,
                    &PageRequest {
                        limit: PAGE_SIZE,
                        cursor,
                    },
                )
                .await?;
            page.rows = found.items.iter().map(PaymentRow::from).collect();
            page.next_href = found.next_cursor.map(|c| {
                let mut pairs = page.form.pairs();
                pairs.push(("cursor", c.as_str()));
                format!("/admin/payments?{}", query_string(pairs))
            });
            render(&page)
        }
    }
}

pub async fn export_csv(
    State(state): State<AppState>,
    admin: Admin,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let filter = read_filters(&params)
        .1
        .map_err(|errors| AdminError::BadRequest(errors.join(" ")))?;
    tracing::info!(username = %admin.session.username, "payments exported as CSV from the dashboard");
    let payments = state.payments.clone();
    let header_line = Bytes::from(format!("{}\r\n", CSV_HEADER.join(",")));
    // One storage page per chunk: memory stays flat however many rows match.
    let pages = futures::stream::unfold(Some(None), move |cursor: Option<Option<String>>| {
        let payments = payments.clone();
        let filter = filter.clone();
        async move {
            let cursor = cursor?;
            match next_chunk(&payments, &filter, cursor).await {
                Ok((chunk, next)) => Some((Ok(chunk), next.map(Some))),
                Err(error) => {
                    tracing::error!(%error, "CSV export stopped: storage failed");
                    Some((Err(error), None))
                }
            }
        }
    });
    let body = futures::StreamExt::chain(
        futures::stream::once(async move { Ok::<_, mpesa_storage::StorageError>(header_line) }),
        pages,
    );
    let filename = format!(
        "attachment; filename=\"payments-{}.csv\"",
        format::eat_date(now_ms())
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&filename)
                    .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

async fn next_chunk(
    payments: &Payments,
    filter: &PaymentFilter,
    cursor: Option<String>,
) -> Result<(Bytes, Option<String>), mpesa_storage::StorageError> {
    let page = payments
        .reads()
        .list(
            filter,
            &PageRequest {
                limit: EXPORT_PAGE,
                cursor,
            },
        )
        .await?;
    let mut chunk = String::with_capacity(page.items.len() * 200);
    for p in &page.items {
        chunk.push_str(&csv_row(p));
        chunk.push_str("\r\n");
    }
    Ok((Bytes::from(chunk), page.next_cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_read_and_checked() {
        let (form, filter) = read_filters(&Fields::parse(
            b"status=failed&from=2024-07-01&to=2024-07-01&phone=0708374149&receipt=sga1&review=1",
        ));
        let filter = filter.unwrap();
        assert_eq!(filter.status, Some(PaymentStatus::Failed));
        assert_eq!(filter.phone.as_deref(), Some("254708374149"));
        assert_eq!(filter.receipt.as_deref(), Some("SGA1"));
        assert_eq!(filter.needs_review, Some(true));
        assert_eq!(
            filter.created_to.unwrap() - filter.created_from.unwrap(),
            DAY_MS
        );
        assert!(form.is_filtered());

        let (_, bad) = read_filters(&Fields::parse(
            b"status=%3Cscript%3E&from=yesterday&phone=12&to=2024-01-01",
        ));
        let errors = bad.unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(!read_filters(&Fields::default()).0.is_filtered());
    }
}
