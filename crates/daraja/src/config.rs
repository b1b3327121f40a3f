//! How the client is configured. Secrets are `secrecy::SecretString`: `Debug` prints
//! `[REDACTED]` for them, and they are exposed only where a request is built.

use std::path::PathBuf;
use std::time::Duration;

use mpesa_domain::AmountBounds;
use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

use crate::error::ConfigError;
use crate::security::EncryptionCertificate;

pub const SANDBOX_BASE_URL: &str = "https://sandbox.safaricom.co.ke";
pub const PRODUCTION_BASE_URL: &str = "https://api.safaricom.co.ke";
/// The public Lipa na M-Pesa Online shortcode of the sandbox.
pub const SANDBOX_SHORTCODE: &str = "174379";
/// The public sandbox passkey of shortcode 174379 (published by Safaricom).
pub const SANDBOX_PASSKEY: &str =
    "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919";

/// Which Daraja.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    #[default]
    Sandbox,
    Production,
}

impl Environment {
    pub fn base_url(self) -> &'static str {
        match self {
            Environment::Sandbox => SANDBOX_BASE_URL,
            Environment::Production => PRODUCTION_BASE_URL,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "sandbox",
            Environment::Production => "production",
        }
    }
}

/// STK `TransactionType` (and C2B simulate `CommandID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransactionType {
    /// Paybill: `PartyB` is the shortcode.
    #[default]
    CustomerPayBillOnline,
    /// Till: `BusinessShortCode` is the store/head-office number that owns the passkey and
    /// `PartyB` is the till number.
    CustomerBuyGoodsOnline,
}

impl TransactionType {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionType::CustomerPayBillOnline => "CustomerPayBillOnline",
            TransactionType::CustomerBuyGoodsOnline => "CustomerBuyGoodsOnline",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "CustomerPayBillOnline" => Some(TransactionType::CustomerPayBillOnline),
            "CustomerBuyGoodsOnline" => Some(TransactionType::CustomerBuyGoodsOnline),
            _ => None,
        }
    }
}

/// Which certificate encrypts the initiator password.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CertificateSource {
    /// Safaricom's certificate for the configured environment (sandbox for a base-URL override
    /// in the sandbox environment).
    #[default]
    ForEnvironment,
    Sandbox,
    Production,
    /// A `.cer`/PEM/DER file; overrides the bundled certificates.
    File(PathBuf),
    /// A certificate or RSA public key in PEM or DER (e.g. the simulator's own key).
    Pem(Vec<u8>),
}

/// Everything the client needs.
#[derive(Debug, Clone)]
pub struct DarajaConfig {
    pub environment: Environment,
    /// Overrides the environment's base URL (the simulator, a test double).
    pub base_url: Option<Url>,
    pub consumer_key: SecretString,
    pub consumer_secret: SecretString,
    /// `BusinessShortCode`: the paybill, or for tills the store number that owns the passkey.
    pub shortcode: String,
    pub passkey: SecretString,
    pub transaction_type: TransactionType,
    /// The till number for `CustomerBuyGoodsOnline`; the shortcode for paybills.
    pub party_b: Option<String>,
    /// The B2C/initiator shortcode (`PartyA` of B2C, Transaction Status, Account Balance,
    /// Reversal); defaults to `shortcode`.
    pub initiator_shortcode: Option<String>,
    pub initiator_name: Option<String>,
    pub initiator_password: Option<SecretString>,
    pub certificate: CertificateSource,
    pub c2b_version: C2bVersion,
    pub connect_timeout: Duration,
    /// The whole request, answer included. A push that times out is not retried.
    pub request_timeout: Duration,
    /// Accepted STK amounts (`AMOUNT_MIN`, `AMOUNT_MAX`).
    pub amount_bounds: AmountBounds,
    /// Accepted B2C amounts (Daraja: 10 to 250,000).
    pub b2c_amount_bounds: AmountBounds,
    /// Refresh the token this long before it expires (shortened to half the lifetime for
    /// short-lived tokens).
    pub token_refresh_margin: Duration,
}

impl DarajaConfig {
    /// A configuration with the documented defaults: paybill, the public sandbox shortcode and
    /// passkey in the sandbox, 10 s to connect, 30 s per request, KES 1–250,000, C2B v2.
    pub fn new(
        environment: Environment,
        consumer_key: SecretString,
        consumer_secret: SecretString,
    ) -> Self {
        DarajaConfig {
            environment,
            base_url: None,
            consumer_key,
            consumer_secret,
            shortcode: SANDBOX_SHORTCODE.into(),
            passkey: SecretString::from(SANDBOX_PASSKEY),
            transaction_type: TransactionType::CustomerPayBillOnline,
            party_b: None,
            initiator_shortcode: None,
            initiator_name: None,
            initiator_password: None,
            certificate: CertificateSource::ForEnvironment,
            c2b_version: C2bVersion::V2,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            amount_bounds: AmountBounds::default(),
            b2c_amount_bounds: AmountBounds {
                min: 10,
                max: 250_000,
            },
            token_refresh_margin: Duration::from_secs(300),
        }
    }

    /// The sandbox with its public shortcode and passkey.
    pub fn sandbox(consumer_key: SecretString, consumer_secret: SecretString) -> Self {
        Self::new(Environment::Sandbox, consumer_key, consumer_secret)
    }

    /// Any base URL (simulator, test double), sandbox rules.
    pub fn with_base_url(mut self, base_url: Url) -> Self {
        self.base_url = Some(base_url);
        self
    }

    /// The base URL calls go to.
    pub fn effective_base_url(&self) -> Url {
        self.base_url
            .clone()
            .unwrap_or_else(|| Url::parse(self.environment.base_url()).expect("a valid constant"))
    }

    /// `PartyB` of an STK push.
    pub fn effective_party_b(&self) -> &str {
        self.party_b.as_deref().unwrap_or(&self.shortcode)
    }

    pub fn effective_initiator_shortcode(&self) -> &str {
        self.initiator_shortcode
            .as_deref()
            .unwrap_or(&self.shortcode)
    }

    /// Checks the configuration and loads the encryption certificate.
    pub(crate) fn validate(&self) -> Result<EncryptionCertificate, ConfigError> {
        if self.consumer_key.expose_secret().trim().is_empty() {
            return Err(ConfigError::Empty("consumer key"));
        }
        if self.consumer_secret.expose_secret().trim().is_empty() {
            return Err(ConfigError::Empty("consumer secret"));
        }
        if self.passkey.expose_secret().trim().is_empty() {
            return Err(ConfigError::Empty("passkey"));
        }
        check_shortcode(&self.shortcode, "shortcode")?;
        // A classic cause of "Wrong credentials": sandbox values left in a production setup.
        if self.environment == Environment::Production {
            if self.shortcode == SANDBOX_SHORTCODE {
                return Err(ConfigError::SandboxValueInProduction("shortcode 174379"));
            }
            if self.passkey.expose_secret().trim() == SANDBOX_PASSKEY {
                return Err(ConfigError::SandboxValueInProduction("passkey"));
            }
        }
        if let Some(party_b) = &self.party_b {
            check_shortcode(party_b, "PartyB")?;
        }
        if let Some(code) = &self.initiator_shortcode {
            check_shortcode(code, "initiator shortcode")?;
        }
        match self.transaction_type {
            TransactionType::CustomerBuyGoodsOnline if self.party_b.is_none() => {
                return Err(ConfigError::TillRequired);
            }
            TransactionType::CustomerPayBillOnline
                if self.effective_party_b() != self.shortcode =>
            {
                return Err(ConfigError::PartyBNotShortCode);
            }
            _ => {}
        }
        let base = self.effective_base_url();
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(ConfigError::BaseUrl);
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("connect timeout"));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("request timeout"));
        }
        for bounds in [self.amount_bounds, self.b2c_amount_bounds] {
            if bounds.min < 1 || bounds.min > bounds.max {
                return Err(ConfigError::AmountBounds {
                    min: bounds.min,
                    max: bounds.max,
                });
            }
        }
        let name_set = self
            .initiator_name
            .as_deref()
            .is_some_and(|n| !n.trim().is_empty());
        let password_set = self
            .initiator_password
            .as_ref()
            .is_some_and(|p| !p.expose_secret().is_empty());
        if name_set != password_set {
            return Err(ConfigError::InitiatorIncomplete);
        }
        Ok(match &self.certificate {
            CertificateSource::ForEnvironment => match self.environment {
                Environment::Sandbox => EncryptionCertificate::sandbox(),
                Environment::Production => EncryptionCertificate::production(),
            },
            CertificateSource::Sandbox => EncryptionCertificate::sandbox(),
            CertificateSource::Production => EncryptionCertificate::production(),
            CertificateSource::File(path) => EncryptionCertificate::from_file(path)?,
            CertificateSource::Pem(bytes) => EncryptionCertificate::from_pem_or_der(bytes)?,
        })
    }
}

fn check_shortcode(code: &str, field: &'static str) -> Result<(), ConfigError> {
    if (5..=7).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ConfigError::InvalidShortCode { field })
    }
}

/// C2B API version: it must match the C2B product of the Daraja app (a mismatch is refused with
/// `401.003.01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum C2bVersion {
    V1,
    #[default]
    V2,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DarajaConfig {
        DarajaConfig::sandbox(
            SecretString::from("key-visible-nowhere"),
            SecretString::from("secret-visible-nowhere"),
        )
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut c = config();
        c.initiator_name = Some("testapi".into());
        c.initiator_password = Some(SecretString::from("initiator-pw-visible-nowhere"));
        let printed = format!("{c:?}");
        for secret in [
            "key-visible-nowhere",
            "secret-visible-nowhere",
            SANDBOX_PASSKEY,
            "initiator-pw-visible-nowhere",
        ] {
            assert!(!printed.contains(secret), "{secret} leaked in {printed}");
        }
        assert!(printed.contains("174379"));
    }

    #[test]
    fn tills_need_a_party_b_and_paybills_pay_themselves() {
        let mut c = config();
        c.transaction_type = TransactionType::CustomerBuyGoodsOnline;
        assert_eq!(c.validate().unwrap_err(), ConfigError::TillRequired);
        c.party_b = Some("5432109".into());
        assert!(c.validate().is_ok());
        c.transaction_type = TransactionType::CustomerPayBillOnline;
        assert_eq!(c.validate().unwrap_err(), ConfigError::PartyBNotShortCode);
    }

    #[test]
    fn refuses_unworkable_values() {
        let mut c = config();
        c.shortcode = "17437".into();
        assert!(c.validate().is_ok());
        c.shortcode = "1743".into();
        assert_eq!(
            c.validate().unwrap_err(),
            ConfigError::InvalidShortCode { field: "shortcode" }
        );
        let mut c = config();
        c.consumer_secret = SecretString::from(" ");
        assert_eq!(
            c.validate().unwrap_err(),
            ConfigError::Empty("consumer secret")
        );
        let mut c = config();
        c.amount_bounds = AmountBounds { min: 10, max: 5 };
        assert!(matches!(
            c.validate().unwrap_err(),
            ConfigError::AmountBounds { .. }
        ));
        let mut c = config();
        c.initiator_name = Some("testapi".into());
        assert_eq!(c.validate().unwrap_err(), ConfigError::InitiatorIncomplete);
        let mut c = config();
        c.request_timeout = Duration::ZERO;
        assert_eq!(
            c.validate().unwrap_err(),
            ConfigError::ZeroDuration("request timeout")
        );
        let mut c = config();
        c.certificate = CertificateSource::File("/nonexistent/cert.cer".into());
        assert!(matches!(
            c.validate().unwrap_err(),
            ConfigError::Certificate(_)
        ));
    }

    fn production() -> DarajaConfig {
        let mut p = config();
        p.environment = Environment::Production;
        p.shortcode = "600000".into();
        p.passkey = SecretString::from("a-production-passkey");
        p
    }

    #[test]
    fn sandbox_values_are_refused_in_production() {
        let mut p = production();
        p.shortcode = SANDBOX_SHORTCODE.into();
        assert_eq!(
            p.validate().unwrap_err(),
            ConfigError::SandboxValueInProduction("shortcode 174379")
        );
        let mut p = production();
        p.passkey = SecretString::from(SANDBOX_PASSKEY);
        assert_eq!(
            p.validate().unwrap_err(),
            ConfigError::SandboxValueInProduction("passkey")
        );
        assert!(production().validate().is_ok());
    }

    #[test]
    fn certificate_follows_the_environment() {
        let c = config();
        assert_eq!(
            c.validate().unwrap().subject_common_name(),
            Some("apicrypt.safaricom.co.ke")
        );
        let p = production();
        assert_eq!(
            p.validate().unwrap().subject_common_name(),
            Some("apigee.apicaller.safaricom.co.ke")
        );
        assert_eq!(
            p.effective_base_url().as_str(),
            "https://api.safaricom.co.ke/"
        );
    }
}
