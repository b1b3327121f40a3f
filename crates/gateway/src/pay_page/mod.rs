//! The public pay page of a payment link, `/pay/{slug}`: one more door to the payment service.
//!
//! * `GET /pay/{slug}`: the business, the title, the amount (or a field within the link's
//!   range), a phone field and **Pay**; the paybill/till and the link's account number below.
//! * `POST /pay/{slug}`: a plain form POST (refused when the browser says another site sent it,
//!   `Sec-Fetch-Site: cross-site`); [`PaymentLinks::pay`] checks the link, the phone's open
//!   prompt and the limits, and has the payment service store and push it; then a 303 to the
//!   status page.
//! * `GET /pay/{slug}/p/{payment_id}`: follows the payment in the customer's words. Without
//!   JavaScript it refreshes itself (`<noscript>` meta refresh); with it, the one same-origin
//!   script asks `…/state` and reloads when the state moves.
//!
//! Server-rendered (askama, every value escaped), one small stylesheet, no inline script or
//! style (the CSP says so), frames denied. English and Swahili: the switch (`?lang=`), else the
//! link's language, else the browser's `Accept-Language`. The page tells nothing about payments
//! other than the one its address names, and names it only by its unguessable link and id.

pub mod words;

use std::net::SocketAddr;
use std::sync::LazyLock;

use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use mpesa_domain::{Lang, LinkAmount, LinkStatus, Msisdn, PaymentStatus, check_email};
use mpesa_storage::{Payment, PaymentLink};

use crate::admin::params::{Fields, Params};
use crate::http::client_addr::rate_limit_key;
use crate::ids::sha256_hex;
use crate::payments::links::{LinkError, PayError, customer_lang};
use crate::state::AppState;
use words::{Words, ksh, words};

/// Like the dashboard's, plus the one same-origin script and its requests.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub const STYLESHEET: &str = include_str!("static/pay.css");
pub const SCRIPT: &str = include_str!("static/pay.js");

static STYLESHEET_PATH: LazyLock<String> =
    LazyLock::new(|| format!("/pay/static/pay.{}.css", &sha256_hex(STYLESHEET)[..12]));
static SCRIPT_PATH: LazyLock<String> =
    LazyLock::new(|| format!("/pay/static/pay.{}.js", &sha256_hex(SCRIPT)[..12]));

/// A customer's form is three short fields.
const FORM_LIMIT: usize = 4 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/pay/static/{file}", get(asset))
        .route("/pay/{slug}", get(show).post(pay))
        .route("/pay/{slug}/p/{payment_id}", get(status))
        .route("/pay/{slug}/p/{payment_id}/state", get(state_json))
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    crate::admin::set_security_headers(response.headers_mut(), CONTENT_SECURITY_POLICY);
    response
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = if STYLESHEET_PATH.strip_prefix("/pay/static/") == Some(&file) {
        (STYLESHEET, "text/css; charset=utf-8")
    } else if SCRIPT_PATH.strip_prefix("/pay/static/") == Some(&file) {
        (SCRIPT, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

/// What every pay page's frame needs.
pub struct Frame {
    pub t: &'static Words,
    pub title: String,
    pub business: String,
    pub stylesheet: &'static str,
    pub script: &'static str,
    /// The same page in the other language; empty for none.
    pub switch_href: String,
    /// Refresh by itself without JavaScript (a payment still open).
    pub refresh: bool,
}

impl Frame {
    fn new(state: &AppState, lang: Lang, title: &str, here: &str) -> Self {
        let t = words(lang);
        Frame {
            t,
            title: title.to_owned(),
            business: state.config.links.business_name.clone().unwrap_or_default(),
            stylesheet: STYLESHEET_PATH.as_str(),
            script: SCRIPT_PATH.as_str(),
            switch_href: if here.is_empty() {
                String::new()
            } else {
                format!("{here}?lang={}", t.other_lang_code)
            },
            refresh: false,
        }
    }
}

/// The paybill (or till) way to pay the same link.
pub struct Fallback {
    pub heading: &'static str,
    pub steps: &'static str,
    pub number_label: &'static str,
    pub number: String,
    pub account_label: &'static str,
    /// The link's account number (a till takes none).
    pub account: Option<String>,
    pub amount_label: &'static str,
    pub amount: Option<String>,
    pub note: &'static str,
}

fn fallback(
    state: &AppState,
    t: &'static Words,
    link: &PaymentLink,
    amount: Option<i64>,
) -> Fallback {
    let till =
        state.config.daraja.transaction_type == daraja::TransactionType::CustomerBuyGoodsOnline;
    let number = if till {
        state.config.daraja.party_b.clone().unwrap_or_default()
    } else {
        c2b_short_code(state)
    };
    Fallback {
        heading: t.fallback_heading,
        steps: if till { t.till_steps } else { t.paybill_steps },
        number_label: if till {
            t.till_number
        } else {
            t.business_number
        },
        number,
        account_label: t.account_number,
        account: (!till).then(|| link.account_number.clone()),
        amount_label: t.amount,
        amount: amount.map(ksh),
        note: t.fallback_note,
    }
}

/// The paybill customers pay on their own (`MPESA_C2B_SHORT_CODE`).
fn c2b_short_code(state: &AppState) -> String {
    state.config.c2b.short_code.clone()
}

#[derive(Template)]
#[template(path = "pay/form.html")]
struct FormPage {
    page: Frame,
    title: String,
    description: String,
    fixed_amount: Option<String>,
    range: Option<RangeField>,
    action: String,
    error: Option<String>,
    amount_value: String,
    phone_value: String,
    email_value: String,
    fallback: Fallback,
}

struct RangeField {
    min: i64,
    max: i64,
    hint: String,
}

#[derive(Template)]
#[template(path = "pay/status.html")]
struct StatusPage {
    page: Frame,
    /// `waiting`, `paid` or `failed`.
    state: &'static str,
    status_url: String,
    retry_href: String,
    waiting_text: String,
    paid_note: &'static str,
    receipt: String,
    amount: String,
    time: String,
    business: String,
    title: String,
    phone: String,
    failure: &'static str,
    fallback: Fallback,
}

#[derive(Template)]
#[template(path = "pay/message.html")]
struct MessagePage {
    page: Frame,
    heading: String,
    message: String,
    alert: bool,
    back_href: String,
}

fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "pay page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong.").into_response()
        }
    }
}

fn accept_language(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}

fn link_path(link: &PaymentLink) -> String {
    format!("/pay/{}", link.slug)
}

fn message(
    state: &AppState,
    lang: Lang,
    status: StatusCode,
    heading: &str,
    text: String,
    here: &str,
    back_href: String,
) -> Response {
    let page = MessagePage {
        page: Frame::new(state, lang, heading, here),
        heading: heading.to_owned(),
        message: text,
        alert: status.is_client_error() && status != StatusCode::NOT_FOUND,
        back_href,
    };
    render(status, &page)
}

/// The answer for a slug that names no link, and for trouble on our side.
fn trouble(state: &AppState, lang: Lang, e: LinkError) -> Response {
    let t = words(lang);
    match e {
        LinkError::NotFound => message(
            state,
            lang,
            StatusCode::NOT_FOUND,
            t.no_such_link_heading,
            t.no_such_link.into(),
            "",
            String::new(),
        ),
        LinkError::Storage(error) => {
            tracing::warn!(%error, "pay page: storage");
            message(
                state,
                lang,
                StatusCode::SERVICE_UNAVAILABLE,
                t.too_many_heading,
                t.something_wrong.into(),
                "",
                String::new(),
            )
        }
    }
}

fn closed(state: &AppState, lang: Lang, link: &PaymentLink, status: LinkStatus) -> Response {
    let t = words(lang);
    let text = match status {
        LinkStatus::Paid => t.link_paid,
        LinkStatus::Expired => t.link_expired,
        _ => t.link_disabled,
    };
    message(
        state,
        lang,
        StatusCode::GONE,
        t.closed_heading,
        text.into(),
        &link_path(link),
        String::new(),
    )
}

struct Entered<'a> {
    amount: &'a str,
    phone: &'a str,
    email: &'a str,
}

fn form_page(
    state: &AppState,
    lang: Lang,
    link: &PaymentLink,
    error: Option<String>,
    entered: Entered<'_>,
) -> FormPage {
    let t = words(lang);
    let bounds = state.links.amount_bounds();
    let amount = LinkAmount::new(link.amount, link.amount_min, link.amount_max, bounds).ok();
    let (fixed, range) = match amount {
        Some(LinkAmount::Fixed(a)) => (Some(a.shillings()), None),
        Some(LinkAmount::Range { min, max }) => (
            None,
            Some(RangeField {
                min: min.shillings(),
                max: max.shillings(),
                hint: format!("{} – {}", ksh(min.shillings()), ksh(max.shillings())),
            }),
        ),
        None => (None, None),
    };
    FormPage {
        page: Frame::new(state, lang, &link.title, &link_path(link)),
        title: link.title.clone(),
        description: link.description.clone().unwrap_or_default(),
        fixed_amount: fixed.map(ksh),
        range,
        action: link_path(link),
        error,
        amount_value: entered.amount.to_owned(),
        phone_value: entered.phone.to_owned(),
        email_value: entered.email.to_owned(),
        fallback: fallback(state, t, link, fixed),
    }
}

async fn show(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Params(params): Params,
    headers: HeaderMap,
) -> Response {
    let switch = params.get("lang");
    let link = match state.links.by_slug(&slug).await {
        Ok(link) => link,
        Err(e) => {
            return trouble(
                &state,
                customer_lang(switch, None, accept_language(&headers)),
                e,
            );
        }
    };
    let lang = customer_lang(switch, link.language, accept_language(&headers));
    let status = state.links.status(&link);
    if status != LinkStatus::Active {
        return closed(&state, lang, &link, status);
    }
    let page = form_page(
        &state,
        lang,
        &link,
        None,
        Entered {
            amount: "",
            phone: "",
            email: "",
        },
    );
    render(StatusCode::OK, &page)
}

async fn pay(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let fields = match axum::body::to_bytes(body, FORM_LIMIT).await {
        Ok(bytes) => Fields::parse(&bytes),
        Err(_) => Fields::default(),
    };
    let switch = fields.get("lang");
    let link = match state.links.by_slug(&slug).await {
        Ok(link) => link,
        Err(e) => {
            return trouble(
                &state,
                customer_lang(switch, None, accept_language(&parts.headers)),
                e,
            );
        }
    };
    let lang = customer_lang(switch, link.language, accept_language(&parts.headers));
    let t = words(lang);
    // A form another site makes its visitors' browsers post would send prompts to phones of the
    // site's choosing, each visitor another address for the limits. Browsers say where a request
    // comes from; a client that does not say (curl, an old browser) is counted by its address.
    if parts
        .headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        let here = link_path(&link);
        return message(
            &state,
            lang,
            StatusCode::FORBIDDEN,
            t.too_many_heading,
            t.from_elsewhere.into(),
            &here,
            format!("{here}?lang={}", lang.as_str()),
        );
    }
    let status = state.links.status(&link);
    if status != LinkStatus::Active {
        return closed(&state, lang, &link, status);
    }
    let entered = Entered {
        amount: fields.raw("amount").unwrap_or_default(),
        phone: fields.raw("phone").unwrap_or_default(),
        email: fields.raw("email").unwrap_or_default(),
    };
    let clip = |s: &str, n: usize| -> String { s.chars().take(n).collect() };
    let refuse = |error: String| {
        let entered = Entered {
            amount: &clip(entered.amount, 12),
            phone: &clip(entered.phone, 20),
            email: &clip(entered.email, 254),
        };
        render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &form_page(&state, lang, &link, Some(error), entered),
        )
    };
    let bounds = state.links.amount_bounds();
    let Ok(rule) = LinkAmount::new(link.amount, link.amount_min, link.amount_max, bounds) else {
        // A link made under wider AMOUNT_MIN/MAX than today's: nothing it asks can be paid.
        return closed(&state, lang, &link, LinkStatus::Disabled);
    };
    let typed = entered.amount.trim().parse::<i64>().ok();
    let Some(amount) = rule.charge(typed) else {
        let (min, max) = match rule {
            LinkAmount::Range { min, max } => (min.shillings(), max.shillings()),
            LinkAmount::Fixed(a) => (a.shillings(), a.shillings()),
        };
        return refuse(words::amount_range(lang, min, max));
    };
    let Ok(phone) = Msisdn::parse(entered.phone) else {
        return refuse(t.bad_phone.into());
    };
    let email = match entered.email.trim() {
        "" => None,
        e => match check_email(e) {
            Some(e) => Some(e),
            None => return refuse(t.bad_email.into()),
        },
    };
    let address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| {
            rate_limit_key(
                state
                    .config
                    .trusted_proxies
                    .client_address(c.0.ip(), &parts.headers),
            )
        })
        .unwrap_or_else(|| "unknown".into());
    let here = link_path(&link);
    match state
        .links
        .pay(&state.payments, &link, phone, amount, email, lang, &address)
        .await
    {
        Ok(payment) => {
            Redirect::to(&format!("{here}/p/{}?lang={}", payment.id, lang.as_str())).into_response()
        }
        Err(PayError::Closed(status)) => closed(&state, lang, &link, status),
        Err(PayError::PhoneBusy) => message(
            &state,
            lang,
            StatusCode::CONFLICT,
            t.too_many_heading,
            t.phone_busy.into(),
            &here,
            format!("{here}?lang={}", lang.as_str()),
        ),
        Err(PayError::LinkBusy) => message(
            &state,
            lang,
            StatusCode::CONFLICT,
            t.too_many_heading,
            t.link_busy.into(),
            &here,
            format!("{here}?lang={}", lang.as_str()),
        ),
        Err(PayError::TooMany { retry_at, now }) => {
            let mut r = message(
                &state,
                lang,
                StatusCode::TOO_MANY_REQUESTS,
                t.too_many_heading,
                words::retry_after(lang, retry_at, now),
                &here,
                String::new(),
            );
            let seconds = ((retry_at - now).max(1000) / 1000).to_string();
            if let Ok(v) = HeaderValue::from_str(&seconds) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(PayError::Payment(error)) => {
            tracing::warn!(%error, link_id = %link.id, "pay page: the payment could not be started");
            message(
                &state,
                lang,
                StatusCode::SERVICE_UNAVAILABLE,
                t.too_many_heading,
                t.something_wrong.into(),
                &here,
                format!("{here}?lang={}", lang.as_str()),
            )
        }
    }
}

/// The payment's phone with its middle hidden (a C2B payer's may be unknown).
fn masked(p: &Payment) -> String {
    p.phone
        .as_ref()
        .map(|m| words::masked_phone(m.as_str()))
        .unwrap_or_default()
}

/// `waiting`, `paid` or `failed`: all a customer needs to know of a payment.
fn customer_state(p: &Payment) -> &'static str {
    match p.status {
        PaymentStatus::Initiated | PaymentStatus::Pending => "waiting",
        PaymentStatus::Completed => "paid",
        _ => "failed",
    }
}

async fn find_payment(
    state: &AppState,
    slug: &str,
    payment_id: &str,
) -> Result<(PaymentLink, Payment), LinkError> {
    let link = state.links.by_slug(slug).await?;
    let payment = state
        .links
        .payment_of(&link, payment_id)
        .await?
        .ok_or(LinkError::NotFound)?;
    Ok((link, payment))
}

async fn status(
    State(state): State<AppState>,
    Path((slug, payment_id)): Path<(String, String)>,
    Params(params): Params,
    headers: HeaderMap,
) -> Response {
    let switch = params.get("lang");
    let (link, p) = match find_payment(&state, &slug, &payment_id).await {
        Ok(found) => found,
        Err(e) => {
            return trouble(
                &state,
                customer_lang(switch, None, accept_language(&headers)),
                e,
            );
        }
    };
    // The language they paid in comes before the link's and the browser's.
    let lang = customer_lang(
        switch,
        p.customer_language.or(link.language),
        accept_language(&headers),
    );
    let t = words(lang);
    let here = format!("{}/p/{}", link_path(&link), p.id);
    let customer_state = customer_state(&p);
    let mut page = Frame::new(&state, lang, &link.title, &here);
    page.refresh = customer_state == "waiting";
    let waiting_text = match lang {
        Lang::En => format!(
            "Enter your M-Pesa PIN on the prompt sent to {} to pay {}.",
            masked(&p),
            ksh(p.amount.shillings())
        ),
        Lang::Sw => format!(
            "Weka PIN yako ya M-Pesa kwenye ombi lililotumwa kwa {} ili kulipa {}.",
            masked(&p),
            ksh(p.amount.shillings())
        ),
    };
    let page = StatusPage {
        page,
        state: customer_state,
        status_url: format!("{here}/state"),
        retry_href: format!("{}?lang={}", link_path(&link), lang.as_str()),
        waiting_text,
        paid_note: if p.needs_review {
            t.held_note
        } else {
            t.received_note
        },
        receipt: p.mpesa_receipt_number.clone().unwrap_or_default(),
        amount: ksh(p.amount.shillings()),
        time: words::eat_time(
            p.transaction_date
                .or(p.finalized_at)
                .unwrap_or(p.updated_at),
        ),
        business: state.config.links.business_name.clone().unwrap_or_default(),
        title: link.title.clone(),
        phone: masked(&p),
        failure: words::failure(t, p.status, p.result_code.as_deref()),
        fallback: fallback(&state, t, &link, Some(p.amount.shillings())),
    };
    render(StatusCode::OK, &page)
}

async fn state_json(
    State(state): State<AppState>,
    Path((slug, payment_id)): Path<(String, String)>,
) -> Response {
    match find_payment(&state, &slug, &payment_id).await {
        Ok((_, p)) => {
            axum::Json(serde_json::json!({ "state": customer_state(&p) })).into_response()
        }
        Err(LinkError::NotFound) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "state": "unknown" })),
        )
            .into_response(),
        Err(LinkError::Storage(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "state": "unknown" })),
        )
            .into_response(),
    }
}
