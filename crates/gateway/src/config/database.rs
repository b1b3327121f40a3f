//! The database: `DATABASE_URL`, or a MySQL server given by parts (`DB_HOST`…, the names the
//! FastAPI callback servers this gateway replaces use), and the pool size.

use url::Url;

use super::reader::{Reader, parse};
use super::{ConfigError, Source};

/// `DATABASE_URL`, else the URL the `DB_*` parts make, else the default SQLite file.
pub(super) fn url<S: Source>(r: &Reader<S>) -> Result<String, ConfigError> {
    if let Some((_, url)) = r.set("DATABASE_URL") {
        return Ok(url);
    }
    if let Some(url) = mysql_url_from_parts(r)? {
        return Ok(url);
    }
    Ok(r.string("DATABASE_URL")
        .expect("DATABASE_URL has a default"))
}

pub(super) fn max_connections<S: Source>(r: &Reader<S>) -> Result<u32, ConfigError> {
    r.read_or_default("DATABASE_MAX_CONNECTIONS", parse::from_str("a number"))
}

fn mysql_url_from_parts<S: Source>(r: &Reader<S>) -> Result<Option<String>, ConfigError> {
    let Some(host) = r.string("DB_HOST") else {
        return Ok(None);
    };
    let port: u16 = r.read_or_default("DB_PORT", parse::from_str("a port number"))?;
    let user = r.string("DB_USER").unwrap_or_default();
    let password = r.string("DB_PASSWORD").unwrap_or_default();
    let name = r.string("DB_NAME").ok_or(ConfigError::Missing {
        name: "DB_NAME",
        hint: " (when DB_HOST is set)",
    })?;
    let mut url = Url::parse("mysql://localhost/").expect("static URL");
    url.set_host(Some(&host))
        .map_err(|e| ConfigError::Invalid {
            name: "DB_HOST",
            reason: e.to_string(),
        })?;
    let _ = url.set_port(Some(port));
    let _ = url.set_username(&user);
    if !password.is_empty() {
        let _ = url.set_password(Some(&password));
    }
    url.set_path(&name);
    Ok(Some(url.to_string()))
}
