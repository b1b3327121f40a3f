//! Signing in and out, and the session that proves who is asking.
//!
//! A session is a row in the database (the SHA-256 of its token, the user, a CSRF token, an
//! expiry 12 hours after sign-in); the browser holds the token in a cookie scoped to `/admin`,
//! `HttpOnly`, `SameSite=Lax` (links from a Telegram alert still open the page signed in; every
//! POST needs the CSRF token anyway) and `Secure` when the gateway is served over https.
//!
//! Passwords are Argon2 hashes (`mpesa-gateway admin create-user`), verified on a blocking
//! thread. An unknown username is verified against a dummy hash, so it costs the same time as a
//! wrong password, and both get the same message.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use mpesa_storage::AdminSession;

use crate::admin::csrf::{self, ActionForm};
use crate::admin::error::AdminError;
use crate::admin::layout::{self, Layout};
use crate::admin::params::Params;
use crate::admin::rate_limit;
use crate::ids::{now_ms, random_token, sha256_hex};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "mpg_session";
/// The sign-in form's double-submit CSRF cookie.
pub const SIGN_IN_COOKIE: &str = "mpg_sign_in";
pub const SESSION_LIFETIME_MS: i64 = 12 * 3_600_000;
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
        match state
            .storage
            .find_session(&sha256_hex(token), now_ms())
            .await?
        {
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
        && state
            .storage
            .find_session(&sha256_hex(token), now_ms())
            .await?
            .is_some()
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

/// A PHC hash of a random password with the same parameters as real ones: what an unknown
/// username is checked against, so that it takes as long as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| crate::cli::admin::hash_password(&random_token(24)).unwrap_or_default());

fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
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
    // Counted as a failure until the password proves right (see `rate_limit`).
    let counted_as = (
        rate_limit::normalise(&username),
        address.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
    );
    let now = now_ms();
    if let Some(retry_at) = state
        .storage
        .begin_sign_in(
            &counted_as.0,
            &counted_as.1,
            now,
            now - rate_limit::ADDRESS_WINDOW.as_millis() as i64,
            &|failures| rate_limit::decide(failures, now),
        )
        .await?
    {
        tracing::warn!(remote = ?address, "dashboard sign-in refused: too many failed attempts");
        return Err(AdminError::TooManyAttempts {
            retry_after: Duration::from_millis((retry_at - now).max(1_000) as u64),
        });
    }

    let user = if username.len() <= 64 {
        state.storage.find_admin_user(&username).await?
    } else {
        None
    };
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let verified = tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let ok = verify_password(&password, phc.as_deref().unwrap_or(DUMMY_HASH.as_str()));
        known && ok
    })
    .await
    .map_err(|e| AdminError::Internal(format!("password check: {e}")))?;
    let Some(user) = user.filter(|_| verified) else {
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
    };
    state
        .storage
        .clear_sign_in_failures(&counted_as.0, &counted_as.1)
        .await?;

    // A new token at every sign-in (no session fixation); an older session of this browser ends.
    if let Some(old) = cookie(&parts.headers, SESSION_COOKIE) {
        state.storage.delete_session(&sha256_hex(old)).await?;
    }
    let now = now_ms();
    let token = random_token(43);
    state
        .storage
        .create_session(&AdminSession {
            token_hash: sha256_hex(&token),
            user_id: user.id.clone(),
            username: user.username.clone(),
            csrf_token: random_token(32),
            created_at: now,
            expires_at: now + SESSION_LIFETIME_MS,
        })
        .await?;
    if let Err(error) = state.storage.delete_expired_sessions(now).await {
        tracing::warn!(%error, "could not delete expired dashboard sessions");
    }
    let forget_before = now - rate_limit::FORGET_AFTER.as_millis() as i64;
    if let Err(error) = state
        .storage
        .delete_sign_in_failures_before(forget_before)
        .await
    {
        tracing::warn!(%error, "could not forget old sign-in failures");
    }
    tracing::info!(username = %user.username, remote = ?address, "dashboard sign-in");
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
        state.storage.delete_session(&sha256_hex(token)).await?;
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
    fn passwords_verify_against_their_hash_only() {
        let hash = crate::cli::admin::hash_password("correct horse battery").unwrap();
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("anything", "not a hash"));
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
