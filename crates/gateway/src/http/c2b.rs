//! C2B in the merchant API: the account numbers customers may pay to when validation requires a
//! known account (`C2B_REQUIRE_KNOWN_ACCOUNT`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::api::{ErrorBody, json_body};
use crate::http::auth::Merchant;
use crate::http::error::ApiError;
use crate::ids::{now_ms, rfc3339};
use crate::state::AppState;

/// An account number customers may pay to.
#[derive(Debug, Serialize, ToSchema)]
pub struct C2bAccountView {
    #[schema(example = "INV0042")]
    pub account: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct C2bAccountList {
    pub data: Vec<C2bAccountView>,
}

/// The body of `POST /api/v1/c2b/accounts`.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewC2bAccount {
    /// 1 to 64 characters; matched trimmed and in any letter case.
    #[schema(
        example = "INV0042",
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,62}[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub account: String,
}

fn account_of(text: &str) -> Result<String, ApiError> {
    let account = text.trim();
    if account.is_empty() || account.chars().count() > 64 || account.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "account",
            "1 to 64 characters without control characters",
        ));
    }
    Ok(account.to_owned())
}

/// Register an account number customers may pay to.
#[utoipa::path(
    post, path = "/api/v1/c2b/accounts", tag = "c2b",
    request_body = NewC2bAccount,
    responses((status = 201, body = C2bAccountView), (status = 200, description = "Already registered", body = C2bAccountView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn add_account(
    State(state): State<AppState>,
    _merchant: Merchant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<C2bAccountView>), ApiError> {
    let value = json_body(&headers, body)?;
    let request: NewC2bAccount = serde_json::from_value(value)
        .map_err(|e| ApiError::validation("account", e.to_string()))?;
    let account = account_of(&request.account)?;
    let now = now_ms();
    let added = state.payments.add_known_account(&account, now).await?;
    Ok((
        if added {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(C2bAccountView {
            account,
            created_at: rfc3339(now),
        }),
    ))
}

/// The registered account numbers.
#[utoipa::path(
    get, path = "/api/v1/c2b/accounts", tag = "c2b",
    responses((status = 200, body = C2bAccountList), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list_accounts(
    State(state): State<AppState>,
    _merchant: Merchant,
) -> Result<Json<C2bAccountList>, ApiError> {
    let accounts = state.payments.known_accounts().await?;
    Ok(Json(C2bAccountList {
        data: accounts
            .into_iter()
            .map(|a| C2bAccountView {
                account: a.account,
                created_at: rfc3339(a.created_at),
            })
            .collect(),
    }))
}

/// Remove an account number.
#[utoipa::path(
    delete, path = "/api/v1/c2b/accounts/{account}", tag = "c2b",
    params(("account" = String, Path, description = "The account number", pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,62}[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn remove_account(
    State(state): State<AppState>,
    _merchant: Merchant,
    Path(account): Path<String>,
) -> Result<StatusCode, ApiError> {
    let account = account_of(&account)?;
    if state.payments.remove_known_account(&account).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such account"))
    }
}
