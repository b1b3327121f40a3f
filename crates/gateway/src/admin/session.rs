//! The session that proves who is asking: the [`Admin`] extractor and the cookies (the sign-in
//! and sign-out pages that make and end sessions are `pages::sign_in`).
//!
//! A session is a row in the database (the SHA-256 of its token, the user, a CSRF token, an
//! expiry 12 hours after sign-in); the browser holds the token in a cookie scoped to `/admin`,
//! `HttpOnly`, `SameSite=Lax` (links from a Telegram alert still open the page signed in; every
//! POST needs the CSRF token anyway) and `Secure` when the gateway is served over https.
//!
//! Passwords are Argon2 hashes (`mpesa-gateway admin create-user`), checked by the accounts
//! service ([`crate::accounts::Accounts::sign_in`]) on a blocking thread. An unknown username
//! costs the same time as a wrong password, and both get the same message.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use mpesa_storage::AdminSession;

use crate::admin::error::AdminError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "mpg_session";
/// The sign-in form's double-submit CSRF cookie.
pub const SIGN_IN_COOKIE: &str = "mpg_sign_in";

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
pub(crate) fn set_cookie(
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
