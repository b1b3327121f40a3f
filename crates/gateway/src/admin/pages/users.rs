//! `GET /admin/users`: the dashboard's users; `POST /admin/users/{username}/sign-out`: end every
//! session of one (as `mpesa-gateway admin sign-out-everywhere`); `POST
//! /admin/users/{username}/remove`: remove one and their sessions (as `admin delete-user`).
//! Passwords are set with `mpesa-gateway admin create-user`, which also ends the user's sessions.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use crate::admin::csrf::ActionForm;
use crate::admin::error::AdminError;
use crate::admin::format;
use crate::admin::layout::{self, Layout, Section};
use crate::admin::pages::path_segment;
use crate::admin::pages::render;
use crate::admin::params::Params;
use crate::admin::session::Admin;
use crate::state::AppState;

pub struct UserRow {
    pub username: String,
    pub created: String,
    pub is_you: bool,
    pub sign_out_action: String,
    pub remove_action: String,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserRow>,
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let users = state.accounts.admin_users().await?;
    let page = UsersPage {
        layout: Layout::new("Users", Section::Users, &admin.session)
            .with_notice(layout::notice(params.get("notice"))),
        users: users
            .iter()
            .map(|u| UserRow {
                username: u.username.clone(),
                created: format::when(u.created_at),
                is_you: u.username == admin.session.username,
                sign_out_action: format!("/admin/users/{}/sign-out", path_segment(&u.username)),
                remove_action: format!("/admin/users/{}/remove", path_segment(&u.username)),
            })
            .collect(),
    };
    render(&page)
}

/// Ends every session of the user; yours too, when it is you (then you sign in again).
pub async fn sign_out_everywhere(
    State(state): State<AppState>,
    Path(username): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let Some(ended) = state.accounts.sign_out_everywhere(&username).await? else {
        return Ok(Redirect::to("/admin/users?notice=user_not_found").into_response());
    };
    tracing::info!(%username, ended, by = %form.admin.session.username, "dashboard sessions ended from the dashboard");
    if username == form.admin.session.username {
        return Ok(Redirect::to("/admin/sign-in?notice=signed_out").into_response());
    }
    Ok(Redirect::to("/admin/users?notice=signed_out_everywhere").into_response())
}

/// Removes another user and their sessions. Not yourself: the last admin could lock everyone out.
pub async fn remove(
    State(state): State<AppState>,
    Path(username): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    if username == form.admin.session.username {
        return Ok(Redirect::to("/admin/users?notice=not_yourself").into_response());
    }
    let notice = if state.accounts.remove_admin_user(&username).await? {
        tracing::info!(%username, by = %form.admin.session.username, "dashboard user removed from the dashboard");
        "user_removed"
    } else {
        "user_not_found"
    };
    Ok(Redirect::to(&format!("/admin/users?notice={notice}")).into_response())
}
