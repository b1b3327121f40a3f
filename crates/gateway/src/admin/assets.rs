//! The dashboard's one stylesheet, compiled into the binary and served under a name carrying a
//! hash of its content: browsers may keep it for a year, and a new build gets a new name.

use std::sync::LazyLock;

use crate::ids::sha256_hex;

/// Served by `pages::stylesheet`.
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
