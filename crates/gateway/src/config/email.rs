//! Email: `SMTP_URL`, or the mail server by parts under Django's names (`EMAIL_HOST`…, as the
//! Django payment apps this gateway replaces configure it), the sender and the admin's address.

use secrecy::SecretString;
use url::Url;

use super::reader::{Reader, parse};
use super::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `smtp://user:pass@host:port` (STARTTLS when offered… see the outbox) or `smtps://…`.
    pub smtp_url: SecretString,
    pub from: String,
    pub admin_email: Option<String>,
    /// `SMTP_CA_FILE`: a PEM file of extra CAs to trust (a private relay's own CA).
    pub ca_file: Option<std::path::PathBuf>,
}

/// `None` (email off) without `SMTP_URL` or `EMAIL_HOST`.
pub(super) fn read<S: Source>(r: &Reader<S>) -> Result<Option<EmailSettings>, ConfigError> {
    let Some(smtp_url) = smtp_url(r)? else {
        return Ok(None);
    };
    Ok(Some(EmailSettings {
        smtp_url,
        from: r.string("EMAIL_FROM").ok_or(ConfigError::Missing {
            name: "EMAIL_FROM",
            hint: " (when SMTP_URL is set)",
        })?,
        admin_email: r.string("ADMIN_EMAIL"),
        ca_file: r.string("SMTP_CA_FILE").map(Into::into),
    }))
}

fn smtp_url<S: Source>(r: &Reader<S>) -> Result<Option<SecretString>, ConfigError> {
    let from_url = r.read("SMTP_URL", |v| {
        let u = parse::url(v)?;
        if !matches!(u.scheme(), "smtp" | "smtps") {
            return Err("expected smtp://… or smtps://…".to_owned());
        }
        Ok(SecretString::from(u.to_string()))
    })?;
    if from_url.is_some() {
        return Ok(from_url);
    }
    let Some(host) = r.string("EMAIL_HOST") else {
        return Ok(None);
    };
    let implicit_tls = r.read_or_default("EMAIL_USE_SSL", parse::boolean)?;
    let starttls = r.read_or_default("EMAIL_USE_TLS", parse::boolean)?;
    let port: u16 = r
        .read("EMAIL_PORT", parse::from_str("a port number"))?
        .unwrap_or(if implicit_tls { 465 } else { 587 });
    let mut url = Url::parse(if implicit_tls {
        "smtps://localhost"
    } else {
        "smtp://localhost"
    })
    .expect("static URL");
    url.set_host(Some(&host))
        .map_err(|e| ConfigError::Invalid {
            name: "EMAIL_HOST",
            reason: e.to_string(),
        })?;
    let _ = url.set_port(Some(port));
    if let Some(user) = r.string("EMAIL_HOST_USER") {
        let _ = url.set_username(&user);
    }
    if let Some(pass) = r.string("EMAIL_HOST_PASSWORD") {
        let _ = url.set_password(Some(&pass));
    }
    if starttls {
        url.query_pairs_mut().append_pair("tls", "required");
    }
    Ok(Some(SecretString::from(url.to_string())))
}
