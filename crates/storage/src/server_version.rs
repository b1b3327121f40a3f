//! The oldest servers we run on, and the check that refuses older ones.
//!
//! * PostgreSQL 12: `GENERATED … AS IDENTITY`, `FOR UPDATE SKIP LOCKED`, `ON CONFLICT`, and
//!   the oldest release still seeing fixes when this was written.
//! * MySQL 8.0.1 / MariaDB 10.6: the first releases with `FOR UPDATE SKIP LOCKED`, which lets
//!   several gateway instances claim work from one database without waiting on each other.
//! * SQLite 3.35: the bundled library is newer; 3.35 is the floor for the SQL used here.

use crate::Result;
use crate::error::StorageError;

pub(crate) const MIN_POSTGRES: (u32, u32, u32) = (12, 0, 0);
pub(crate) const MIN_MYSQL: (u32, u32, u32) = (8, 0, 1);
pub(crate) const MIN_MARIADB: (u32, u32, u32) = (10, 6, 0);
pub(crate) const MIN_SQLITE: (u32, u32, u32) = (3, 35, 0);

/// The leading `major.minor.patch` of a version text (missing parts are 0).
pub(crate) fn parse(text: &str) -> Option<(u32, u32, u32)> {
    let numeric: String = text
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().transpose().ok()?.unwrap_or(0);
    let patch = parts.next().transpose().ok()?.unwrap_or(0);
    Some((major, minor, patch))
}

fn refuse(product: &str, found: &str, min: (u32, u32, u32)) -> StorageError {
    StorageError::Unsupported(format!(
        "{product} {found} is too old: mpesa-gateway needs {product} {}.{}.{} or newer",
        min.0, min.1, min.2
    ))
}

fn at_least(
    product: &str,
    text: &str,
    found: Option<(u32, u32, u32)>,
    min: (u32, u32, u32),
) -> Result<()> {
    match found {
        Some(v) if v >= min => Ok(()),
        Some(_) => Err(refuse(product, text, min)),
        None => Err(StorageError::Unsupported(format!(
            "cannot read the {product} version {text:?}"
        ))),
    }
}

/// `server_version_num` is e.g. `150020` for 15.20 (`120005` for 12.5).
pub(crate) fn check_postgres(version_num: &str, text: &str) -> Result<()> {
    let found = version_num
        .trim()
        .parse::<u32>()
        .ok()
        .map(|n| (n / 10_000, n % 10_000, 0));
    at_least("PostgreSQL", text, found, MIN_POSTGRES)
}

/// `SELECT VERSION()`: `8.0.36`, `10.11.6-MariaDB-0+deb12u1`, or through an old proxy
/// `5.5.5-10.11.6-MariaDB`.
pub(crate) fn check_mysql(text: &str) -> Result<()> {
    if text.contains("MariaDB") {
        let version = text.strip_prefix("5.5.5-").unwrap_or(text);
        at_least("MariaDB", text, parse(version), MIN_MARIADB)
    } else {
        at_least("MySQL", text, parse(text), MIN_MYSQL)
    }
}

pub(crate) fn check_sqlite(text: &str) -> Result<()> {
    at_least("SQLite", text, parse(text), MIN_SQLITE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_and_old_ones_refused() {
        assert_eq!(parse("10.11.19-MariaDB-0+deb12u1"), Some((10, 11, 19)));
        assert_eq!(parse("8.0"), Some((8, 0, 0)));
        assert_eq!(parse("x"), None);
        assert!(check_postgres("150020", "15.20").is_ok());
        assert!(check_postgres("120000", "12.0").is_ok());
        assert!(
            matches!(check_postgres("110022", "11.22"), Err(StorageError::Unsupported(m)) if m.contains("12.0.0"))
        );
        assert!(check_mysql("10.11.19-MariaDB-0+deb12u1").is_ok());
        assert!(check_mysql("5.5.5-10.6.0-MariaDB").is_ok());
        assert!(check_mysql("10.5.23-MariaDB").is_err());
        assert!(check_mysql("8.0.36").is_ok());
        assert!(check_mysql("8.0.0").is_err());
        assert!(check_mysql("5.7.44").is_err());
        assert!(check_sqlite("3.35.0").is_ok());
        assert!(check_sqlite("3.34.1").is_err());
    }
}
