//! The dashboard's one stylesheet, compiled into the binary and served under a name carrying a
//! hash of its content: browsers may keep it for a year, and a new build gets a new name.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::admin::error::AdminError;
use crate::ids::sha256_hex;

pub const STYLESHEET: &str = include_str!("static/dashboard.css");

static STYLESHEET_PATH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "/admin/static/dashboard.{}.css",
        &sha256_hex(STYLESHEET)[..12]
    )
});

/// `/admin/static/dashboard.<hash>.css`.
pub fn stylesheet_path() -> &'static str {
    STYLESHEET_PATH.as_str()
}

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
