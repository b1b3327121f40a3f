//! The secrets Daraja asks for, computed:
//! * the STK `Password` and `Timestamp`: `base64(BusinessShortCode + Passkey + Timestamp)` with
//!   the timestamp in East Africa Time, both from one reading of the clock;
//! * the `SecurityCredential` of the initiator APIs: the initiator's raw password encrypted with
//!   RSA PKCS#1 v1.5 under the public key of Safaricom's encryption certificate, base64.
//!
//! Safaricom's public certificates ship in `certs/`: the sandbox one (`apicrypt.safaricom.co.ke`)
//! and the production one (`apigee.apicaller.safaricom.co.ke`). Both are long expired and still in
//! use; only their public keys matter, so validity dates are never checked.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use rsa::{Pkcs1v15Encrypt, RsaPublicKey};
use secrecy::{ExposeSecret as _, SecretString};
use x509_cert::Certificate;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode as _, DecodePem as _, Encode as _};

use crate::clock::eat_timestamp;
use crate::redact::REDACTED;

/// Safaricom's sandbox encryption certificate (`SandboxCertificate.cer`).
pub const SANDBOX_CERTIFICATE_PEM: &str = include_str!("../certs/SandboxCertificate.cer");
/// Safaricom's production encryption certificate (`ProductionCertificate.cer`).
pub const PRODUCTION_CERTIFICATE_PEM: &str = include_str!("../certs/ProductionCertificate.cer");

/// The STK `Password` and the `Timestamp` it was made with.
#[derive(Clone, PartialEq, Eq)]
pub struct StkPassword {
    /// Decodes to shortcode + passkey + timestamp: as secret as the passkey.
    pub password: String,
    pub timestamp: String,
}

impl fmt::Debug for StkPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StkPassword")
            .field("password", &REDACTED)
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

/// `base64(shortcode + passkey + timestamp)`: plain concatenation, standard base64 with padding.
pub fn stk_password(shortcode: &str, passkey: &str, timestamp: &str) -> String {
    STANDARD.encode(format!("{shortcode}{passkey}{timestamp}"))
}

/// Password and Timestamp for one instant (the caller reads the clock once and passes it here,
/// so both fields always agree).
pub fn stk_password_at(
    shortcode: &str,
    passkey: &SecretString,
    instant: DateTime<Utc>,
) -> StkPassword {
    let timestamp = eat_timestamp(instant);
    StkPassword {
        password: stk_password(shortcode, passkey.expose_secret(), &timestamp),
        timestamp,
    }
}

/// Problems with a certificate or with encryption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    #[error("could not read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("not a PEM or DER X.509 certificate or RSA public key: {0}")]
    Parse(String),
    #[error("the key is not an RSA public key: {0}")]
    NotRsa(String),
    #[error("RSA encryption failed: {0}")]
    Encrypt(String),
}

/// The RSA public key that initiator passwords are encrypted with.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionCertificate {
    key: RsaPublicKey,
    subject_common_name: Option<String>,
}

impl fmt::Debug for EncryptionCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionCertificate")
            .field("subject_common_name", &self.subject_common_name)
            .field("key_bits", &self.key_bits())
            .finish()
    }
}

/// `commonName`, 2.5.4.3.
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

impl EncryptionCertificate {
    /// Safaricom's sandbox certificate, CN `apicrypt.safaricom.co.ke`.
    pub fn sandbox() -> Self {
        Self::from_pem_or_der(SANDBOX_CERTIFICATE_PEM.as_bytes())
            .expect("the bundled sandbox certificate parses")
    }

    /// Safaricom's production certificate, CN `apigee.apicaller.safaricom.co.ke`.
    pub fn production() -> Self {
        Self::from_pem_or_der(PRODUCTION_CERTIFICATE_PEM.as_bytes())
            .expect("the bundled production certificate parses")
    }

    /// A certificate or public key file: PEM (`CERTIFICATE`, `PUBLIC KEY`, `RSA PUBLIC KEY`) or DER.
    pub fn from_file(path: &Path) -> Result<Self, SecurityError> {
        let bytes = std::fs::read(path).map_err(|e| SecurityError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_pem_or_der(&bytes)
    }

    /// Any certificate or RSA public key, PEM or DER. The simulator uses this with its own key.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, SecurityError> {
        let text = std::str::from_utf8(bytes).ok().map(str::trim_start);
        match text {
            Some(pem) if pem.starts_with("-----BEGIN") => Self::from_pem(pem),
            _ => Self::from_der(bytes),
        }
    }

    fn from_pem(pem: &str) -> Result<Self, SecurityError> {
        let label = x509_cert::der::pem::decode_label(pem.as_bytes())
            .map_err(|e| SecurityError::Parse(e.to_string()))?;
        match label {
            "CERTIFICATE" => {
                let cert = Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| SecurityError::Parse(e.to_string()))?;
                Self::from_certificate(&cert)
            }
            "PUBLIC KEY" => RsaPublicKey::from_public_key_pem(pem)
                .map(Self::from_public_key)
                .map_err(|e| SecurityError::NotRsa(e.to_string())),
            "RSA PUBLIC KEY" => RsaPublicKey::from_pkcs1_pem(pem)
                .map(Self::from_public_key)
                .map_err(|e| SecurityError::NotRsa(e.to_string())),
            other => Err(SecurityError::Parse(format!(
                "unexpected PEM label {other}"
            ))),
        }
    }

    fn from_der(der: &[u8]) -> Result<Self, SecurityError> {
        if let Ok(cert) = Certificate::from_der(der) {
            return Self::from_certificate(&cert);
        }
        RsaPublicKey::from_public_key_der(der)
            .map(Self::from_public_key)
            .map_err(|e| SecurityError::Parse(e.to_string()))
    }

    fn from_certificate(cert: &Certificate) -> Result<Self, SecurityError> {
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| SecurityError::Parse(e.to_string()))?;
        let key = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| SecurityError::NotRsa(e.to_string()))?;
        let subject_common_name = cert
            .tbs_certificate
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == COMMON_NAME)
            .and_then(|atv| std::str::from_utf8(atv.value.value()).ok())
            .map(str::to_owned);
        Ok(EncryptionCertificate {
            key,
            subject_common_name,
        })
    }

    /// A bare RSA public key (no certificate around it).
    pub fn from_public_key(key: RsaPublicKey) -> Self {
        EncryptionCertificate {
            key,
            subject_common_name: None,
        }
    }

    /// The certificate subject's common name, e.g. `apicrypt.safaricom.co.ke`.
    pub fn subject_common_name(&self) -> Option<&str> {
        self.subject_common_name.as_deref()
    }

    pub fn key_bits(&self) -> usize {
        self.key.size() * 8
    }

    pub fn public_key(&self) -> &RsaPublicKey {
        &self.key
    }

    /// Encrypts the raw initiator password (PKCS#1 v1.5, random padding: a new value each time,
    /// all of them valid) and base64-encodes it.
    pub fn security_credential(
        &self,
        initiator_password: &SecretString,
    ) -> Result<SecurityCredential, SecurityError> {
        let ciphertext = self
            .key
            .encrypt(
                &mut rand::rngs::OsRng,
                Pkcs1v15Encrypt,
                initiator_password.expose_secret().as_bytes(),
            )
            .map_err(|e| SecurityError::Encrypt(e.to_string()))?;
        Ok(SecurityCredential(STANDARD.encode(ciphertext)))
    }
}

/// A `SecurityCredential`: reusable by anyone who holds it, so kept out of logs like a password.
#[derive(Clone, PartialEq, Eq)]
pub struct SecurityCredential(String);

impl SecurityCredential {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecurityCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecurityCredential({REDACTED})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SANDBOX_PASSKEY: &str =
        "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919";

    #[test]
    fn password_matches_the_published_vectors() {
        assert_eq!(
            stk_password("174379", SANDBOX_PASSKEY, "20160216165627"),
            "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMTYwMjE2MTY1NjI3"
        );
        assert_eq!(
            stk_password("174379", SANDBOX_PASSKEY, "20210628092408"),
            "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMjEwNjI4MDkyNDA4"
        );
    }

    #[test]
    fn password_at_an_instant_uses_eat() {
        use chrono::TimeZone as _;
        // 06:24:08 UTC is 09:24:08 in Nairobi.
        let instant = Utc.with_ymd_and_hms(2021, 6, 28, 6, 24, 8).unwrap();
        let p = stk_password_at("174379", &SecretString::from(SANDBOX_PASSKEY), instant);
        assert_eq!(p.timestamp, "20210628092408");
        assert_eq!(
            p.password,
            "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMjEwNjI4MDkyNDA4"
        );
        assert!(!format!("{p:?}").contains(&p.password));
    }

    #[test]
    fn bundled_certificates_are_safaricoms_rsa_2048_keys() {
        let sandbox = EncryptionCertificate::sandbox();
        assert_eq!(
            sandbox.subject_common_name(),
            Some("apicrypt.safaricom.co.ke")
        );
        assert_eq!(sandbox.key_bits(), 2048);
        let production = EncryptionCertificate::production();
        assert_eq!(
            production.subject_common_name(),
            Some("apigee.apicaller.safaricom.co.ke")
        );
        assert_eq!(production.key_bits(), 2048);
        assert_ne!(sandbox.public_key(), production.public_key());
    }

    #[test]
    fn credential_is_344_base64_characters_and_fresh_each_time() {
        let cert = EncryptionCertificate::sandbox();
        let password = SecretString::from("Safaricom999!*!");
        let a = cert.security_credential(&password).unwrap();
        let b = cert.security_credential(&password).unwrap();
        assert_eq!(a.expose().len(), 344);
        assert_eq!(STANDARD.decode(a.expose()).unwrap().len(), 256);
        assert_ne!(a, b, "PKCS#1 v1.5 padding is random");
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            EncryptionCertificate::from_pem_or_der(b"hello"),
            Err(SecurityError::Parse(_))
        ));
        assert!(
            EncryptionCertificate::from_pem_or_der(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            )
            .is_err()
        );
    }
}
