//! Payment links on the dashboard: `GET /admin/links` (the list and a form to create one),
//! `POST /admin/links`, `GET /admin/links/{id}` (its address, QR code, account number, payments
//! and total), `GET /admin/links/{id}/qr.svg`, `POST /admin/links/{id}/disable`. Each handler
//! translates to and from [`crate::payments::PaymentLinks`].

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mpesa_domain::LinkStatus;
use mpesa_storage::{PageRequest, PaymentLink};
use serde_json::{Map, Value, json};

use crate::admin::csrf::ActionForm;
use crate::admin::error::AdminError;
use crate::admin::format;
use crate::admin::layout::{self, Layout, Section};
use crate::admin::pages::render;
use crate::admin::pages::{Fact, PaymentRow, facts, path_segment};
use crate::admin::params::{Fields, Params};
use crate::admin::session::Admin;

use crate::payments::PaymentLinks;
use crate::payments::links::LinkError;
use crate::state::AppState;

impl From<LinkError> for AdminError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Storage(s) => s.into(),
            LinkError::NotFound => AdminError::NotFound("There is no such payment link."),
        }
    }
}

pub struct LinkRow {
    pub href: String,
    pub title: String,
    pub amount: String,
    pub account_number: String,
    pub status: String,
    pub badge: String,
    pub kind: &'static str,
    pub created: String,
}

impl LinkRow {
    fn new(l: &PaymentLink, links: &PaymentLinks) -> Self {
        let status = links.status(l).as_str();
        LinkRow {
            href: link_href(&l.id),
            title: l.title.clone(),
            amount: amount_text(l),
            account_number: l.account_number.clone(),
            status: format::label(status),
            badge: format::badge_class(status),
            kind: if l.single_use {
                "Single use"
            } else {
                "Reusable"
            },
            created: format::when(l.created_at),
        }
    }
}

pub(crate) fn link_href(id: &str) -> String {
    format!("/admin/links/{}", path_segment(id))
}

/// `KES 1,500` or `KES 100 – KES 5,000`.
fn amount_text(l: &PaymentLink) -> String {
    match (l.amount, l.amount_min, l.amount_max) {
        (Some(a), _, _) => format::money(a),
        (None, Some(min), Some(max)) => {
            format!("{} – {}", format::money(min), format::money(max))
        }
        _ => String::new(),
    }
}

/// What the create form had, to show again with its error.
#[derive(Default)]
pub struct LinkForm {
    pub title: String,
    pub amount: String,
    pub amount_min: String,
    pub amount_max: String,
    pub reference: String,
    pub description: String,
    pub single_use: bool,
    pub expires: String,
    pub language: String,
}

#[derive(Template)]
#[template(path = "admin/links.html")]
struct LinksPage {
    layout: Layout,
    links: Vec<LinkRow>,
    next_href: String,
    form: LinkForm,
    error: Option<String>,
}

async fn list_page(
    state: &AppState,
    admin: &Admin,
    cursor: Option<String>,
) -> Result<LinksPage, AdminError> {
    let page = state.links.list(&PageRequest { limit: 50, cursor }).await?;
    Ok(LinksPage {
        layout: Layout::new("Payment links", Section::Links, &admin.session),
        links: page
            .items
            .iter()
            .map(|l| LinkRow::new(l, &state.links))
            .collect(),
        next_href: page
            .next_cursor
            .map(|c| {
                format!(
                    "/admin/links?cursor={}",
                    url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
                )
            })
            .unwrap_or_default(),
        form: LinkForm::default(),
        error: None,
    })
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let cursor = params
        .get("cursor")
        .filter(|c| c.len() <= 200)
        .map(str::to_owned);
    let mut page = list_page(&state, &admin, cursor).await?;
    page.layout = page
        .layout
        .with_notice(layout::notice(params.get("notice")));
    render(&page)
}

/// The form as the API's JSON body, so both are checked by one parser.
fn form_to_json(f: &Fields) -> Result<(Value, LinkForm), String> {
    let text = |name: &str| f.text(name, name).map(|v| v.unwrap_or_default());
    let form = LinkForm {
        title: text("title")?,
        amount: text("amount")?,
        amount_min: text("amount_min")?,
        amount_max: text("amount_max")?,
        reference: text("reference")?,
        description: text("description")?,
        single_use: f.get("single_use").is_some(),
        expires: text("expires")?,
        language: text("language")?,
    };
    let mut body = Map::new();
    body.insert("title".into(), json!(form.title));
    for (name, value) in [
        ("amount", &form.amount),
        ("amount_min", &form.amount_min),
        ("amount_max", &form.amount_max),
    ] {
        if !value.is_empty() {
            let n: i64 = value.replace(',', "").parse().map_err(|_| {
                format!(
                    "{} must be a whole number of shillings.",
                    format::label(name)
                )
            })?;
            body.insert(name.into(), json!(n));
        }
    }
    if !form.reference.is_empty() {
        body.insert("reference".into(), json!(form.reference));
    }
    if !form.description.is_empty() {
        body.insert("description".into(), json!(form.description));
    }
    body.insert("single_use".into(), json!(form.single_use));
    if !form.expires.is_empty() {
        // `<input type=datetime-local>` sends `2026-12-31T23:59` with no zone: East Africa Time.
        let with_seconds = if form.expires.len() == 16 {
            format!("{}:00", form.expires)
        } else {
            form.expires.clone()
        };
        body.insert("expires_at".into(), json!(format!("{with_seconds}+03:00")));
    }
    if matches!(form.language.as_str(), "en" | "sw") {
        body.insert("language".into(), json!(form.language));
    }
    Ok((Value::Object(body), form))
}

pub async fn create(
    State(state): State<AppState>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let refuse = |message: String, entered: LinkForm, mut page: LinksPage| {
        page.error = Some(message);
        page.form = entered;
        render(&page).map(|mut r| {
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        })
    };
    let (body, entered) = match form_to_json(&form.fields) {
        Ok(parsed) => parsed,
        Err(message) => {
            let page = list_page(&state, &form.admin, None).await?;
            return refuse(message, LinkForm::default(), page);
        }
    };
    let request = match state.links.parse_request(&body) {
        Ok(r) => r,
        Err((field, message)) => {
            let page = list_page(&state, &form.admin, None).await?;
            let label = format::label(&field);
            return refuse(format!("{label}: {message}."), entered, page);
        }
    };
    let link = state.links.create(request).await?;
    tracing::info!(link_id = %link.id, username = %form.admin.session.username, "payment link created from the dashboard");
    Ok(Redirect::to(&format!("{}?notice=link_created", link_href(&link.id))).into_response())
}

#[derive(Template)]
#[template(path = "admin/link.html")]
struct LinkPage {
    layout: Layout,
    title: String,
    status: String,
    badge: String,
    url: String,
    account_number: String,
    qr_href: String,
    facts: Vec<Fact>,
    total: String,
    completed: String,
    rows: Vec<PaymentRow>,
    disable_action: String,
    can_disable: bool,
}

pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let link = state.links.get(&id).await?;
    let (payments, totals) = tokio::try_join!(
        state.links.payments_of(&link.id, 100),
        state.links.totals(&link.id),
    )?;
    let status = state.links.status(&link);
    let page = LinkPage {
        layout: Layout::new(
            format!("Link {}", link.title),
            Section::Links,
            &admin.session,
        )
        .with_notice(layout::notice(params.get("notice"))),
        title: link.title.clone(),
        status: format::label(status.as_str()),
        badge: format::badge_class(status.as_str()),
        url: state.links.url(&link),
        account_number: link.account_number.clone(),
        qr_href: format!("{}/qr.svg", link_href(&link.id)),
        facts: facts(vec![
            ("Link id", Some(link.id.clone()), true),
            ("Amount", Some(amount_text(&link)), false),
            (
                "Use",
                Some(
                    if link.single_use {
                        "Single use: paid once, then closed"
                    } else {
                        "Reusable: collects many payments"
                    }
                    .to_owned(),
                ),
                false,
            ),
            ("STK reference", link.reference.clone(), true),
            ("Description", link.description.clone(), false),
            (
                "Expires",
                link.expires_at.map(|t| format!("{} EAT", format::when(t))),
                false,
            ),
            (
                "Page language",
                Some(
                    match link.language {
                        Some(mpesa_domain::Lang::Sw) => "Swahili",
                        Some(mpesa_domain::Lang::En) => "English",
                        None => "The customer's browser decides",
                    }
                    .to_owned(),
                ),
                false,
            ),
            ("Paid by", link.paid_payment_id.clone(), true),
            (
                "Created",
                Some(format!("{} EAT", format::when(link.created_at))),
                false,
            ),
        ]),
        total: format::money(totals.completed_amount),
        completed: format::count(
            totals.completed_count,
            "completed payment",
            "completed payments",
        ),
        rows: payments.iter().map(PaymentRow::from).collect(),
        disable_action: format!("{}/disable", link_href(&link.id)),
        can_disable: matches!(status, LinkStatus::Active | LinkStatus::Expired),
    };
    render(&page)
}

/// The link's address as a QR code (SVG, drawn here), to print at the till.
pub async fn qr(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let link = state.links.get(&id).await?;
    let svg = qr_svg(&state.links.url(&link))
        .map_err(|e| AdminError::Internal(format!("QR code: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        svg,
    )
        .into_response())
}

/// A QR code of `text` as an SVG document, black on white with its quiet zone.
pub fn qr_svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .quiet_zone(true)
        .build())
}

pub async fn disable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let link = state.links.disable(&id).await?;
    tracing::info!(link_id = %link.id, username = %form.admin.session.username, "payment link disabled from the dashboard");
    Ok(Redirect::to(&format!("{}?notice=link_disabled", link_href(&link.id))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_the_apis_body() {
        let f = Fields::parse(
            b"title=Term+2&amount=1%2C500&single_use=on&expires=2099-12-31T23%3A59&language=sw&reference=",
        );
        let (body, form) = form_to_json(&f).unwrap();
        assert_eq!(
            body,
            json!({"title": "Term 2", "amount": 1500, "single_use": true,
                   "expires_at": "2099-12-31T23:59:00+03:00", "language": "sw"})
        );
        assert!(form.single_use);
        assert!(form_to_json(&Fields::parse(b"title=x&amount=lots")).is_err());
    }

    #[test]
    fn qr_codes_are_svg() {
        let svg = qr_svg("https://pay.example.com/pay/abc").unwrap();
        assert!(svg.contains("<svg") && svg.contains("#000000"), "{svg}");
    }
}
