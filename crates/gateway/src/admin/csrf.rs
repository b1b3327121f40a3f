//! Cross-site request forgery protection.
//!
//! * Signed in: every form carries the session's CSRF token (a random value stored with the
//!   session) in a hidden `csrf` field; [`ActionForm`] refuses a POST whose token is missing or
//!   wrong with 403, before the handler runs.
//! * Signing in (no session yet): a double-submit token. The sign-in page sets a random value
//!   in an HttpOnly, `SameSite=Strict` cookie and in the form; the POST must carry both, equal.
//!   Another site can make a browser send the form, but can neither read nor set the cookie.

use axum::extract::{FromRequest, FromRequestParts, Request};

use crate::admin::error::AdminError;
use crate::admin::params::Fields;
use crate::admin::session::Admin;
use crate::ids::secrets_equal;
use crate::state::AppState;

/// Dashboard forms are a few fields; anything larger is not one of ours.
pub const FORM_LIMIT: usize = 16 * 1024;

/// The name of the hidden field that carries the token.
pub const FIELD: &str = "csrf";

/// A POSTed form from a signed-in admin whose CSRF token matched.
pub struct ActionForm {
    pub admin: Admin,
    pub fields: Fields,
}

impl FromRequest<AppState> for ActionForm {
    type Rejection = AdminError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, AdminError> {
        let (mut parts, body) = request.into_parts();
        let admin = Admin::from_request_parts(&mut parts, state).await?;
        let fields = read_form(body).await?;
        if !token_matches(fields.raw(FIELD), &admin.session.csrf_token) {
            tracing::warn!(
                username = %admin.session.username,
                path = %parts.uri.path(),
                "dashboard form refused: missing or wrong CSRF token"
            );
            return Err(AdminError::CsrfRejected);
        }
        Ok(ActionForm { admin, fields })
    }
}

/// Reads a urlencoded form body of at most [`FORM_LIMIT`] bytes.
pub async fn read_form(body: axum::body::Body) -> Result<Fields, AdminError> {
    let bytes = axum::body::to_bytes(body, FORM_LIMIT)
        .await
        .map_err(|_| AdminError::BadRequest("The form was too large or unreadable.".into()))?;
    Ok(Fields::parse(&bytes))
}

/// Constant-time comparison of a submitted token with the expected one.
pub fn token_matches(submitted: Option<&str>, expected: &str) -> bool {
    match submitted {
        Some(token) => !expected.is_empty() && secrets_equal(token, expected),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn tokens_must_be_present_and_equal() {
        assert!(token_matches(Some("abc"), "abc"));
        assert!(!token_matches(Some("abd"), "abc"));
        assert!(!token_matches(None, "abc"));
        assert!(
            !token_matches(Some(""), ""),
            "an empty expected token never matches"
        );
    }
}
