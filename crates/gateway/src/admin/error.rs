//! The one error type of the dashboard: every failure becomes a readable HTML page with the
//! right status (or, for a visitor who is not signed in, a redirect to the sign-in page).
//! Internal details are logged, never shown.

use std::time::Duration;

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use mpesa_storage::StorageError;

use crate::accounts::AccountError;
use crate::admin::layout::Layout;
use crate::payments::PaymentError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No valid session: GETs are sent to sign in and come back to `next` afterwards.
    #[error("sign in first")]
    SignInRequired { next: Option<String> },
    /// A POST without the right CSRF token.
    #[error("the form was not accepted")]
    CsrfRejected,
    #[error("{0}")]
    NotFound(&'static str),
    /// Bad input in a link or form; the message is ours, safe to show.
    #[error("{0}")]
    BadRequest(String),
    #[error("too many sign-in attempts")]
    TooManyAttempts { retry_after: Duration },
    #[error("the database is unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl From<StorageError> for AdminError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InvalidInput(message) => AdminError::BadRequest(format!(
                "That link or form is not valid ({message}). Start again from the first page."
            )),
            StorageError::NotFound => AdminError::NotFound("There is no such record."),
            StorageError::Unavailable(m) => AdminError::Unavailable(m),
            other => AdminError::Internal(other.to_string()),
        }
    }
}

impl From<AccountError> for AdminError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Storage(s) => s.into(),
            AccountError::PasswordCheck(e) => AdminError::Internal(format!("password check: {e}")),
            AccountError::Refused(why) => AdminError::BadRequest(why),
        }
    }
}

impl From<PaymentError> for AdminError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::Storage(s) => s.into(),
            PaymentError::NotFound => AdminError::NotFound("There is no such payment."),
            other => AdminError::Internal(other.to_string()),
        }
    }
}

impl From<askama::Error> for AdminError {
    fn from(e: askama::Error) -> Self {
        AdminError::Internal(format!("template: {e}"))
    }
}

#[derive(Template)]
#[template(path = "admin/error.html")]
struct ErrorPage {
    layout: Layout,
    heading: &'static str,
    message: String,
}

impl AdminError {
    fn status(&self) -> StatusCode {
        match self {
            AdminError::SignInRequired { .. } => StatusCode::SEE_OTHER,
            AdminError::CsrfRejected => StatusCode::FORBIDDEN,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (heading, message) = match &self {
            AdminError::SignInRequired { next } => {
                let target = match next {
                    Some(next) => format!(
                        "/admin/sign-in?next={}",
                        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                    ),
                    None => "/admin/sign-in".to_owned(),
                };
                return Redirect::to(&target).into_response();
            }
            AdminError::CsrfRejected => (
                "Form not accepted",
                "This form was not accepted because its security token is missing or out of date. Go back, reload the page and try again."
                    .to_owned(),
            ),
            AdminError::NotFound(what) => ("Not found", (*what).to_owned()),
            AdminError::BadRequest(message) => ("That did not work", message.clone()),
            AdminError::TooManyAttempts { retry_after } => (
                "Too many sign-in attempts",
                format!(
                    "Too many sign-in attempts. Wait {} and try again.",
                    super::format::minutes(*retry_after)
                ),
            ),
            AdminError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "dashboard: database unavailable");
                (
                    "Try again shortly",
                    "The database cannot be reached right now. Try again in a moment.".to_owned(),
                )
            }
            AdminError::Internal(detail) => {
                tracing::error!(error = %detail, "dashboard: internal error");
                (
                    "Something went wrong",
                    "Something went wrong on our side; it has been logged. Try again, or look at the gateway's logs."
                        .to_owned(),
                )
            }
        };
        let status = self.status();
        let page = ErrorPage {
            layout: Layout::bare(heading),
            heading,
            message,
        };
        let mut response = match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "dashboard: the error page did not render");
                (status, heading).into_response()
            }
        };
        if let AdminError::TooManyAttempts { retry_after } = &self {
            let seconds = retry_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
