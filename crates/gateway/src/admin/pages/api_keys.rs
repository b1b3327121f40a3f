//! `GET /admin/api-keys`: the merchant API keys; `POST /admin/api-keys`: create one (shown once,
//! on the answer to that POST, never stored or shown again: only its hash is kept);
//! `POST /admin/api-keys/{id}/revoke`: revoke one.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mpesa_storage::StorageError;

use crate::admin::csrf::ActionForm;
use crate::admin::error::AdminError;
use crate::admin::format;
use crate::admin::layout::{self, Layout, Section};
use crate::admin::pages::path_segment;
use crate::admin::pages::render;
use crate::admin::params::Params;
use crate::admin::session::Admin;
use crate::state::AppState;

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub status: &'static str,
    pub badge: &'static str,
    pub revoked: String,
    pub revoke_action: String,
}

/// A key just created: its secret, on this one page.
pub struct NewKey {
    pub name: String,
    pub secret: String,
}

#[derive(Template)]
#[template(path = "admin/api_keys.html")]
struct ApiKeysPage {
    layout: Layout,
    keys: Vec<KeyRow>,
    created: Option<NewKey>,
    error: Option<String>,
    name: String,
}

async fn page(
    state: &AppState,
    admin: &Admin,
    notice: Option<&'static str>,
) -> Result<ApiKeysPage, AdminError> {
    let mut keys = state.accounts.api_keys().await?;
    // Active keys first, newest first within each group.
    keys.sort_by(|a, b| {
        a.revoked_at
            .is_some()
            .cmp(&b.revoked_at.is_some())
            .then(b.created_at.cmp(&a.created_at))
    });
    Ok(ApiKeysPage {
        layout: Layout::new("API keys", Section::ApiKeys, &admin.session).with_notice(notice),
        keys: keys
            .iter()
            .map(|k| KeyRow {
                id: k.id.clone(),
                name: k.name.clone(),
                prefix: format!("{}…", k.prefix),
                created: format::when(k.created_at),
                last_used: k
                    .last_used_at
                    .map(format::when)
                    .unwrap_or_else(|| "never".into()),
                status: if k.revoked_at.is_some() {
                    "Revoked"
                } else {
                    "Active"
                },
                badge: if k.revoked_at.is_some() {
                    "badge s-revoked"
                } else {
                    "badge s-active"
                },
                revoked: k.revoked_at.map(format::when).unwrap_or_default(),
                revoke_action: format!("/admin/api-keys/{}/revoke", path_segment(&k.id)),
            })
            .collect(),
        created: None,
        error: None,
        name: String::new(),
    })
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(params): Params,
) -> Result<Response, AdminError> {
    render(&page(&state, &admin, layout::notice(params.get("notice"))).await?)
}

/// Why a key name is refused, if it is. Names must not look like key ids either: revoking
/// goes by id *or* name, and one key's name must never revoke another key.
fn check_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("Give the key a name, such as the application that will use it.")
    } else if name.chars().count() > 64 {
        Some("The name is too long (at most 64 characters).")
    } else if name.chars().any(char::is_control) {
        Some("The name cannot hold control characters.")
    } else if name.starts_with("key_") {
        Some("The name cannot start with key_ (that is how key ids start).")
    } else {
        None
    }
}

pub async fn create(
    State(state): State<AppState>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let name = form.fields.get("name").unwrap_or_default().to_owned();
    let refuse = |message: String, name: String, page: ApiKeysPage| {
        let page = ApiKeysPage {
            error: Some(message),
            name,
            ..page
        };
        render(&page).map(|mut r| {
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        })
    };
    if let Some(problem) = check_name(&name) {
        let page = page(&state, &form.admin, None).await?;
        return refuse(problem.to_owned(), name.chars().take(64).collect(), page);
    }
    let made_by = format!("admin:{}", form.admin.session.username);
    let (secret, record) = match state.accounts.create_api_key(&name, Some(made_by)).await {
        Ok(created) => created,
        Err(StorageError::Conflict(_)) => {
            let page = page(&state, &form.admin, None).await?;
            return refuse(
                "A key with this name exists already; choose another name.".into(),
                name,
                page,
            );
        }
        Err(other) => return Err(other.into()),
    };
    tracing::info!(key_id = %record.id, name = %record.name, username = %form.admin.session.username, "API key created from the dashboard");
    let mut page = page(&state, &form.admin, None).await?;
    page.created = Some(NewKey {
        name: record.name,
        secret,
    });
    let mut response = render(&page)?;
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    // Only ids are revoked here (never a name that happens to equal the text).
    let revoked = state.accounts.revoke_api_key_by_id(&id).await?;
    if revoked {
        tracing::info!(key_id = %id, username = %form.admin.session.username, "API key revoked from the dashboard");
    }
    let notice = if revoked {
        "key_revoked"
    } else {
        "key_not_found"
    };
    Ok(Redirect::to(&format!("/admin/api-keys?notice={notice}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn key_names_are_checked() {
        assert!(check_name("shop-web").is_none());
        assert!(check_name("").is_some());
        assert!(check_name("key_0123").is_some());
        assert!(check_name("a\u{7}b").is_some());
        assert!(check_name(&"x".repeat(65)).is_some());
    }
}
