//! Signing in and out, and the session that proves who is asking.
//!
//! A session is a row in the database (the SHA-256 of its token, the user, a CSRF token, an
//! expiry 12 hours after sign-in); the browser holds the token in a cookie scoped to `/admin`,
//! `HttpOnly`, `SameSite=Lax` (links from a Telegram alert still open the page signed in; every
//! POST needs the CSRF token anyway) and `Secure` when the gateway is served over https.
//!
//! Passwords are Argon2 hashes (`mpesa-gateway admin create-user`), checked by the accounts
//! service ([`crate::accounts::Accounts::sign_in`]) on a blocking thread. An unknown username
//! costs the same time as a wrong password, and both get the same message.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use mpesa_storage::AdminSession;

use crate::accounts::{SESSION_LIFETIME_MS, SignIn};
use crate::admin::csrf::{self, ActionForm};
use crate::admin::error::AdminError;
use crate::admin::layout::{self, Layout};
use crate::admin::params::Params;
use crate::ids::random_token;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "mpg_session";
/// The sign-in form's double-submit CSRF cookie.
pub const SIGN_IN_COOKIE: &str = "mpg_sign_in";
const SIGN_IN_FORM_LIFETIME_SECS: i64 = 3_600;

/// A signed-in admin, from a valid session cookie. GETs without one are redirected to sign in
/// (and brought back afterwards); other requests are redirected without coming back.
pub struct Admin {
    pub session: AdminSession,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        let next = if parts.method == Method::GET {
            parts
                .uri
                .path_and_query()
                .and_then(|p| safe_next(p.as_str()))
        } else {
            None
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|t| t.len() <= 128) else {
            return Err(AdminError::SignInRequired { next });
        };
        match state.accounts.session(token).await? {
            Some(session) => Ok(Admin { session }),
            None => Err(AdminError::SignInRequired { next }),
        }
    }
}

/// A value of the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value. `max_age_secs = 0` deletes the cookie.
fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: i64,
    same_site: &str,
    secure: bool,
) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite={same_site}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).expect("cookie values are letters and digits")
}

/// Where to go after signing in: a dashboard path of ours, never another site (`//evil`) or
/// the sign-in page itself.
pub fn safe_next(next: &str) -> Option<String> {
    let ok = next.len() <= 512
        && (next == "/admin" || next.starts_with("/admin/"))
        && !next.starts_with("/admin/sign-")
        && !next.contains("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    ok.then(|| next.to_owned())
}

#[derive(Template)]
#[template(path = "admin/sign_in.html")]
struct SignInPage {
    layout: Layout,
    csrf_token: String,
    next: String,
    username: String,
    error: Option<&'static str>,
}

/// Renders the sign-in form with a fresh double-submit token in the page and in a cookie.
fn sign_in_page(
    state: &AppState,
    status: StatusCode,
    next: Option<String>,
    username: &str,
    error: Option<&'static str>,
    notice: Option<&'static str>,
) -> Result<Response, AdminError> {
    let token = random_token(32);
    let page = SignInPage {
        layout: Layout::bare("Sign in").with_notice(notice),
        csrf_token: token.clone(),
        next: next.unwrap_or_default(),
        username: username.chars().take(64).collect(),
        error,
    };
    let cookie = set_cookie(
        SIGN_IN_COOKIE,
        &token,
        "/admin/sign-in",
        SIGN_IN_FORM_LIFETIME_SECS,
        "Strict",
        state.config.secure_cookies,
    );
    Ok((
        status,
        AppendHeaders([(header::SET_COOKIE, cookie)]),
        Html(page.render()?),
    )
        .into_response())
}

/// `GET /admin/sign-in`.
pub async fn sign_in_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let next = params.get("next").and_then(safe_next);
    if let Some(token) = cookie(&headers, SESSION_COOKIE).filter(|t| t.len() <= 128)
        && state.accounts.session(token).await?.is_some()
    {
        return Ok(Redirect::to(next.as_deref().unwrap_or("/admin/")).into_response());
    }
    sign_in_page(
        &state,
        StatusCode::OK,
        next,
        "",
        None,
        layout::notice(params.get("notice")),
    )
}

/// `POST /admin/sign-in`.
pub async fn sign_in(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, AdminError> {
    let (parts, body) = request.into_parts();
    let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| {
        state
            .config
            .trusted_proxies
            .client_address(c.0.ip(), &parts.headers)
    });
    let fields = csrf::read_form(body).await?;
    let next = fields.get("next").and_then(safe_next);
    let username = fields.get("username").unwrap_or_default().to_owned();

    if !csrf::token_matches(
        fields.raw(csrf::FIELD),
        cookie(&parts.headers, SIGN_IN_COOKIE).unwrap_or_default(),
    ) {
        tracing::warn!(remote = ?address, "dashboard sign-in refused: missing or wrong CSRF token");
        return sign_in_page(
            &state,
            StatusCode::FORBIDDEN,
            next,
            &username,
            Some(
                "This sign-in form had expired or was not sent from this site. It has been reloaded: sign in again.",
            ),
            None,
        );
    }
    let password = fields.raw("password").unwrap_or_default().to_owned();
    if username.is_empty() || password.is_empty() {
        return sign_in_page(
            &state,
            StatusCode::BAD_REQUEST,
            next,
            &username,
            Some("Enter your username and your password."),
            None,
        );
    }
    let outcome = state
        .accounts
        .sign_in(
            &username,
            password,
            address.map(|a| a.to_string()).as_deref(),
            cookie(&parts.headers, SESSION_COOKIE),
        )
        .await?;
    let (token, username) = match outcome {
        SignIn::TooManyAttempts { retry_after } => {
            tracing::warn!(remote = ?address, "dashboard sign-in refused: too many failed attempts");
            return Err(AdminError::TooManyAttempts { retry_after });
        }
        SignIn::Refused => {
            // The username is not logged: people type their password into it.
            tracing::warn!(remote = ?address, "dashboard sign-in failed");
            return sign_in_page(
                &state,
                StatusCode::UNAUTHORIZED,
                next,
                &username,
                Some("Wrong username or password."),
                None,
            );
        }
        SignIn::SignedIn { token, username } => (token, username),
    };
    tracing::info!(%username, remote = ?address, "dashboard sign-in");
    let secure = state.config.secure_cookies;
    Ok((
        AppendHeaders([
            (
                header::SET_COOKIE,
                set_cookie(
                    SESSION_COOKIE,
                    &token,
                    "/admin",
                    SESSION_LIFETIME_MS / 1000,
                    "Lax",
                    secure,
                ),
            ),
            (
                header::SET_COOKIE,
                set_cookie(SIGN_IN_COOKIE, "", "/admin/sign-in", 0, "Strict", secure),
            ),
        ]),
        Redirect::to(next.as_deref().unwrap_or("/admin/")),
    )
        .into_response())
}

/// `POST /admin/sign-out`: the session row is deleted, so the cookie is worthless even if kept.
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: ActionForm,
) -> Result<Response, AdminError> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.accounts.sign_out(token).await?;
    }
    tracing::info!(username = %form.admin.session.username, "dashboard sign-out");
    Ok((
        AppendHeaders([(
            header::SET_COOKIE,
            set_cookie(
                SESSION_COOKIE,
                "",
                "/admin",
                0,
                "Lax",
                state.config.secure_cookies,
            ),
        )]),
        Redirect::to("/admin/sign-in?notice=signed_out"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_pages_are_followed_after_sign_in() {
        assert_eq!(
            safe_next("/admin/payments?status=failed").as_deref(),
            Some("/admin/payments?status=failed")
        );
        assert_eq!(safe_next("/admin").as_deref(), Some("/admin"));
        for bad in [
            "//evil.example/admin/",
            "https://evil.example/",
            "/admin//evil.example",
            "/admin/\\evil",
            "/administrator",
            "/admin/sign-in",
            "/admin/sign-out",
            "/api/v1/payments",
            "/admin/\nx",
        ] {
            assert_eq!(safe_next(bad), None, "{bad}");
        }
    }

    #[test]
    fn cookies_are_read_from_every_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(header::COOKIE, HeaderValue::from_static("mpg_session=tok"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn session_cookies_carry_their_protections() {
        let v = set_cookie(SESSION_COOKIE, "t", "/admin", 60, "Lax", true);
        assert_eq!(
            v.to_str().unwrap(),
            "mpg_session=t; Path=/admin; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
