//! `GET /admin/static/{file}`: the dashboard's stylesheet ([`crate::admin::assets`]).

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::admin::assets::{STYLESHEET, stylesheet_path};
use crate::admin::error::AdminError;

/// `GET /admin/static/{file}`: the stylesheet under its current name only.
pub async fn serve(Path(file): Path<String>) -> Result<Response, AdminError> {
    if stylesheet_path().strip_prefix("/admin/static/") != Some(file.as_str()) {
        return Err(AdminError::NotFound("There is no such file."));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        STYLESHEET,
    )
        .into_response())
}
