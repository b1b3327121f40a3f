//! Daraja: the environment, the app's credentials, the shortcode and passkey, the callback URL,
//! the initiator. Builds the client's own [`DarajaConfig`].

use std::time::Duration;

use daraja::{CertificateSource, DarajaConfig, Environment, TransactionType};
use mpesa_domain::AmountBounds;
use secrecy::SecretString;
use url::Url;

use super::reader::{Reader, parse};
use super::{
    ConfigError, SANDBOX_PASSKEY, SANDBOX_SHORTCODE, SIMULATOR_CONSUMER_KEY,
    SIMULATOR_CONSUMER_SECRET, Source,
};

pub(super) struct DarajaSection {
    pub client: DarajaConfig,
    pub public_url: Option<Url>,
    pub callback_secret: Option<SecretString>,
}

/// The simulator's initiator (public test values, like the sandbox passkey).
pub const SANDBOX_INITIATOR_NAME: &str = "testapi";
pub const SANDBOX_INITIATOR_PASSWORD: &str = "sandbox-initiator-password";

const CREDENTIALS_HINT: &str =
    " (from your Daraja app; or run `serve --sandbox` to use the built-in simulator)";

pub(super) fn read<S: Source>(
    r: &Reader<S>,
    sandbox: bool,
    amount_bounds: AmountBounds,
) -> Result<DarajaSection, ConfigError> {
    let environment = r.read_or_default("MPESA_ENVIRONMENT", |v| {
        match v.to_ascii_lowercase().as_str() {
            "sandbox" => Ok(Environment::Sandbox),
            "production" | "live" => Ok(Environment::Production),
            _ => Err(format!("expected sandbox or production, got {v:?}")),
        }
    })?;
    if sandbox && environment == Environment::Production {
        return Err(ConfigError::Invalid {
            name: "MPESA_ENVIRONMENT",
            reason: "--sandbox runs the simulator; it cannot be combined with production".into(),
        });
    }
    let production = environment == Environment::Production;

    let (consumer_key, consumer_secret) = match (
        r.string("MPESA_CONSUMER_KEY"),
        r.string("MPESA_CONSUMER_SECRET"),
    ) {
        (Some(k), Some(s)) => (k, s),
        (None, None) if sandbox => (
            SIMULATOR_CONSUMER_KEY.to_owned(),
            SIMULATOR_CONSUMER_SECRET.to_owned(),
        ),
        (None, _) => {
            return Err(ConfigError::Missing {
                name: "MPESA_CONSUMER_KEY",
                hint: CREDENTIALS_HINT,
            });
        }
        (_, None) => {
            return Err(ConfigError::Missing {
                name: "MPESA_CONSUMER_SECRET",
                hint: CREDENTIALS_HINT,
            });
        }
    };

    let shortcode = match r.read(
        "MPESA_BUSINESS_SHORT_CODE",
        parse::digits(5..=7, "a shortcode is 5 to 7 digits"),
    )? {
        Some(v) => v,
        None if !production => SANDBOX_SHORTCODE.to_owned(),
        None => {
            return Err(ConfigError::Missing {
                name: "MPESA_BUSINESS_SHORT_CODE",
                hint: "",
            });
        }
    };
    let passkey = match r.string("MPESA_PASS_KEY") {
        Some(v) => v,
        None if !production => SANDBOX_PASSKEY.to_owned(),
        None => {
            return Err(ConfigError::Missing {
                name: "MPESA_PASS_KEY",
                hint: " (emailed by Safaricom at go-live)",
            });
        }
    };
    let transaction_type = r.read_or_default("MPESA_TRANSACTION_TYPE", |v| {
        TransactionType::parse(v).ok_or_else(|| {
            format!("expected CustomerPayBillOnline or CustomerBuyGoodsOnline, got {v:?}")
        })
    })?;
    let party_b = match r.read(
        "MPESA_PARTY_B",
        parse::digits(5..=8, "a till or paybill number is 5 to 8 digits"),
    )? {
        Some(v) => v,
        None if transaction_type == TransactionType::CustomerBuyGoodsOnline => {
            return Err(ConfigError::Missing {
                name: "MPESA_PARTY_B",
                hint: " (the till number; MPESA_BUSINESS_SHORT_CODE is the store number that owns the passkey)",
            });
        }
        None => shortcode.clone(),
    };

    let public_url = match r.read("MPESA_CALLBACK_URL", |v| callback_base_url(v, production))? {
        Some(u) => Some(u),
        None if production => {
            return Err(ConfigError::Missing {
                name: "MPESA_CALLBACK_URL",
                hint: " (the public https base URL at which Safaricom reaches this gateway)",
            });
        }
        None => None,
    };

    let mut client = DarajaConfig::new(
        environment,
        SecretString::from(consumer_key),
        SecretString::from(consumer_secret),
    );
    client.base_url = r.read("MPESA_API_BASE_URL", parse::url)?;
    client.shortcode = shortcode;
    client.passkey = SecretString::from(passkey);
    client.transaction_type = transaction_type;
    client.party_b = Some(party_b);
    client.initiator_name = r.string("MPESA_INITIATOR_NAME");
    client.initiator_password = r.string("MPESA_INITIATOR_PASSWORD").map(SecretString::from);
    if sandbox && client.initiator_name.is_none() && client.initiator_password.is_none() {
        // The simulator's public test initiator: `serve --sandbox` refunds and pays out.
        client.initiator_name = Some(SANDBOX_INITIATOR_NAME.to_owned());
        client.initiator_password = Some(SecretString::from(SANDBOX_INITIATOR_PASSWORD));
    }
    if let Some(path) = r.string("MPESA_CERTIFICATE_PATH") {
        client.certificate = CertificateSource::File(path.into());
    }
    client.request_timeout =
        Duration::from_secs(r.read_or_default("MPESA_TIMEOUT_SECS", parse::from_str("seconds"))?);
    client.amount_bounds = amount_bounds;

    Ok(DarajaSection {
        client,
        public_url,
        callback_secret: r.read("MPESA_CALLBACK_SECRET", |v| {
            check_callback_secret(v).map(|()| SecretString::from(v.to_owned()))
        })?,
    })
}

/// `MPESA_CALLBACK_URL`: an http(s) base URL (https in production) that the callback paths are
/// joined under, so it ends with `/` and has no query.
fn callback_base_url(v: &str, production: bool) -> Result<Url, String> {
    let mut u = parse::url(v)?;
    if production && u.scheme() != "https" {
        return Err("Safaricom calls back only over https in production".into());
    }
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err("expected an http(s) base URL".into());
    }
    if !u.path().ends_with('/') {
        let path = format!("{}/", u.path());
        u.set_path(&path);
    }
    u.set_query(None);
    Ok(u)
}

/// The fewest characters a callback secret has: it is all that keeps forged callbacks out.
pub const CALLBACK_SECRET_MIN_CHARS: usize = 32;

/// A callback secret is a path segment of the URL Safaricom calls: at least
/// [`CALLBACK_SECRET_MIN_CHARS`] of `A-Z a-z 0-9 _ -`, so it is long enough not to be guessed
/// and needs no escaping (`/` or `?` made callback URLs the gateway then refused itself). The
/// reason never quotes the value.
pub fn check_callback_secret(secret: &str) -> Result<(), String> {
    let allowed = secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if secret.len() < CALLBACK_SECRET_MIN_CHARS || !allowed {
        return Err(format!(
            "use at least {CALLBACK_SECRET_MIN_CHARS} characters of A-Z a-z 0-9 _ - (e.g. the output of `openssl rand -hex 32`); the value is not shown"
        ));
    }
    Ok(())
}
