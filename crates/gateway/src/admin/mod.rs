//! The admin dashboard under `/admin/`: server-rendered pages (askama templates in
//! `templates/admin/`), no JavaScript, one small stylesheet.
//!
//! Where things live:
//! * [`session`]: the session cookie and the [`session::Admin`] extractor;
//! * [`csrf`]: the token every form carries, and the [`csrf::ActionForm`] extractor that checks it;
//! * [`layout`]: every page's frame; [`error`]: the one error type of these pages, rendered as
//!   an HTML page in that frame;
//! * [`pages`]: one module per page (signing in and out in `pages::sign_in`, the stylesheet in
//!   `pages::stylesheet`), and [`pages::render`]; [`chart`] draws the overview's SVG chart;
//! * [`assets`]: the stylesheet's content-hashed name.
//!
//! The modules form layers, none importing one above it: `assets` → `layout` → `error` →
//! `session` → `csrf` → `pages`.
//!
//! Every answer carries the security headers of [`security_headers`]. Every state change is a
//! POST checked against the session's CSRF token; a GET never changes anything.

pub mod assets;
pub mod chart;
pub mod csrf;
pub mod error;
pub mod format;
pub mod layout;
pub mod pages;
pub mod params;
pub mod session;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::state::AppState;

pub use error::AdminError;

/// `Content-Security-Policy` of every dashboard answer: nothing inline, nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(pages::overview::show))
        .route("/admin/", get(pages::overview::show))
        .route(
            "/admin/sign-in",
            get(pages::sign_in::sign_in_form).post(pages::sign_in::sign_in),
        )
        .route("/admin/sign-out", post(pages::sign_in::sign_out))
        .route("/admin/payments", get(pages::payments::list))
        .route("/admin/payments.csv", get(pages::payments::export_csv))
        .route("/admin/payments/{id}", get(pages::payment::show))
        .route("/admin/payments/{id}/query", post(pages::payment::query))
        .route("/admin/payments/{id}/decide", post(pages::payment::decide))
        .route("/admin/receipts/check", post(pages::receipts::check))
        .route("/admin/receipts/{code}", get(pages::receipts::show))
        .route(
            "/admin/payments/{id}/refund",
            get(pages::refund::confirm).post(pages::refund::request),
        )
        .route(
            "/admin/payments/{id}/refund/settle",
            post(pages::refund::settle),
        )
        .route(
            "/admin/payments/{id}/refund/acknowledge",
            post(pages::refund::acknowledge),
        )
        .route(
            "/admin/payouts",
            get(pages::payouts::list).post(pages::payouts::create),
        )
        .route("/admin/payouts/{id}", get(pages::payouts::show))
        .route("/admin/payouts/{id}/approve", post(pages::payouts::approve))
        .route("/admin/payouts/{id}/reject", post(pages::payouts::reject))
        .route("/admin/payouts/{id}/settle", post(pages::payouts::settle))
        .route(
            "/admin/payouts/{id}/acknowledge",
            post(pages::payouts::acknowledge),
        )
        .route("/admin/balance", post(pages::overview::ask_balance))
        .route(
            "/admin/links",
            get(pages::links::list).post(pages::links::create),
        )
        .route("/admin/links/{id}", get(pages::links::show))
        .route("/admin/links/{id}/qr.svg", get(pages::links::qr))
        .route("/admin/links/{id}/disable", post(pages::links::disable))
        .route("/admin/callbacks", get(pages::received_callbacks::list))
        .route(
            "/admin/callbacks/{id}",
            get(pages::received_callbacks::show),
        )
        .route("/admin/outbox", get(pages::outbox::list))
        .route("/admin/outbox/{id}", get(pages::outbox::show))
        .route("/admin/outbox/{id}/retry", post(pages::outbox::retry))
        .route(
            "/admin/api-keys",
            get(pages::api_keys::list).post(pages::api_keys::create),
        )
        .route("/admin/api-keys/{id}/revoke", post(pages::api_keys::revoke))
        .route("/admin/users", get(pages::users::list))
        .route(
            "/admin/users/{username}/sign-out",
            post(pages::users::sign_out_everywhere),
        )
        .route("/admin/users/{username}/remove", post(pages::users::remove))
        .route("/admin/settings", get(pages::settings::show))
        .route("/admin/static/{file}", get(pages::stylesheet::serve))
        // Unknown dashboard paths get the dashboard's own 404 page, not the API's JSON.
        .route("/admin/{*rest}", get(not_found).post(not_found))
        .layer(middleware::from_fn(security_headers))
}

async fn not_found() -> AdminError {
    AdminError::NotFound("There is no such page.")
}

/// Sets the dashboard's security headers on every answer, errors and redirects included.
/// `Cache-Control: no-store` unless the handler chose otherwise (the hashed stylesheet).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    set_security_headers(response.headers_mut(), CONTENT_SECURITY_POLICY);
    response
}

/// The security headers of every page (the dashboard's and the pay page's), with `csp`.
pub fn set_security_headers(headers: &mut axum::http::HeaderMap, csp: &'static str) {
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, csp);
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(
        headers,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        headers,
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
}

#[cfg(test)]
mod tests {
    /// The dashboard's own modules, lowest first: each may import only those before it (an
    /// import circle made the error page, the frame and the session hard to read apart).
    const LAYERS: [&str; 9] = [
        "assets", "format", "params", "chart", "layout", "error", "session", "csrf", "pages",
    ];

    /// The modules at or above `LAYERS[at]` that `text` names as `crate::admin::<module>`.
    fn imports_from_above(at: usize, text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (i, prefix) in text.match_indices("crate::admin::") {
            let named: String = text[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if LAYERS[at] != named
                && LAYERS
                    .iter()
                    .position(|l| *l == named)
                    .is_some_and(|l| l >= at)
            {
                found.push(named);
            }
        }
        found
    }

    #[test]
    fn each_module_imports_only_the_layers_below_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin");
        let mut wrong = Vec::new();
        for (at, module) in LAYERS.iter().enumerate() {
            let file = match *module {
                "pages" => dir.join("pages/mod.rs"),
                _ => dir.join(format!("{module}.rs")),
            };
            let text = std::fs::read_to_string(&file).unwrap();
            for named in imports_from_above(at, &text) {
                wrong.push(format!("{module} imports {named}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:?}");
    }

    #[test]
    fn an_import_from_a_layer_above_is_seen() {
        let layout = LAYERS.iter().position(|l| *l == "layout").unwrap();
        assert_eq!(
            imports_from_above(layout, "use crate::admin::session::Admin;"),
            ["session"]
        );
        assert_eq!(
            imports_from_above(layout, "use crate::admin::{assets, layout::Section};"),
            Vec::<String>::new()
        );
    }
}
