//! Webhooks to the merchant's application: where, the signing secret, private destinations.

use secrecy::SecretString;
use url::Url;

use super::reader::{Reader, parse};
use super::{ConfigError, Source, mask_url};

#[derive(Clone)]
pub struct WebhookSettings {
    pub url: Url,
    pub secret: SecretString,
}

/// The URL may carry a token in its query: show it masked.
impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &mask_url(self.url.as_str()))
            .finish_non_exhaustive()
    }
}

/// `None` (webhooks off) without `WEBHOOK_URL`.
pub(super) fn read<S: Source>(r: &Reader<S>) -> Result<Option<WebhookSettings>, ConfigError> {
    let url = r.read("WEBHOOK_URL", |v| {
        let url = parse::url(v)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be http or https".to_owned());
        }
        Ok(url)
    })?;
    let Some(url) = url else {
        return Ok(None);
    };
    let secret = r
        .read("WEBHOOK_SECRET", |v| {
            if v.len() < 16 {
                return Err("use at least 16 characters".to_owned());
            }
            Ok(SecretString::from(v))
        })?
        .ok_or(ConfigError::Missing {
            name: "WEBHOOK_SECRET",
            hint: " (when WEBHOOK_URL is set)",
        })?;
    Ok(Some(WebhookSettings { url, secret }))
}

pub(super) fn allow_private<S: Source>(r: &Reader<S>) -> Result<bool, ConfigError> {
    r.read_or_default("WEBHOOK_ALLOW_PRIVATE", parse::boolean)
}
