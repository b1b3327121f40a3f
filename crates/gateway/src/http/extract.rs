//! Extractors the API's routes share.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use crate::http::error::ApiError;

/// The longest record id there is (`pay_…`, `rfd_…`, `po_…`, `pl_…`): a longer one names
/// nothing, and is answered 404 without asking the database.
pub const MAX_ID_LEN: usize = 64;

/// An `{id}` path segment naming one kind of record.
macro_rules! record_id {
    ($(#[$doc:meta])* $name:ident, $not_found:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub String);

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
                match Path::<String>::from_request_parts(parts, state).await {
                    Ok(Path(id)) if id.len() <= MAX_ID_LEN => Ok($name(id)),
                    _ => Err(ApiError::NotFound($not_found)),
                }
            }
        }
    };
}

record_id!(
    /// The `{id}` of a payment's path.
    PaymentId,
    "no such payment"
);
record_id!(
    /// The `{id}` of a refund's path.
    RefundId,
    "no such refund"
);
record_id!(
    /// The `{id}` of a payout's path.
    PayoutId,
    "no such payout"
);
