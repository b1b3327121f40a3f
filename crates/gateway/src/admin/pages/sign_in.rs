//! `GET/POST /admin/sign-in` and `POST /admin/sign-out`: making and ending a session.
//!
//! Passwords are Argon2 hashes (`mpesa-gateway admin create-user`), checked by the accounts
//! service ([`crate::accounts::Accounts::sign_in`]) on a blocking thread. An unknown username
//! costs the same time as a wrong password, and both get the same message.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};

use crate::accounts::{SESSION_LIFETIME_MS, SignIn};
use crate::admin::csrf::{self, ActionForm};
use crate::admin::error::AdminError;
use crate::admin::layout::{self, Layout};
use crate::admin::params::Params;
use crate::admin::session::{SESSION_COOKIE, SIGN_IN_COOKIE, cookie, safe_next, set_cookie};
use crate::http::client_addr::rate_limit_key;
use crate::ids::random_token;
use crate::state::AppState;

const SIGN_IN_FORM_LIFETIME_SECS: i64 = 3_600;

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
            address.map(rate_limit_key).as_deref(),
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
