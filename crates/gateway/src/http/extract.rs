//! Extractors the API's routes share.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use crate::http::error::ApiError;

/// The longest record id there is (`pay_…`, `rfd_…`, `po_…`, `pl_…`): a longer one names
/// nothing, and is answered 404 without asking the database.
pub const MAX_ID_LEN: usize = 64;

/// The `{id}` of a payment's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PaymentId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) if id.len() <= MAX_ID_LEN => Ok(PaymentId(id)),
            _ => Err(ApiError::NotFound("no such payment")),
        }
    }
}
