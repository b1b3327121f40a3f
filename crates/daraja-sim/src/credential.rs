//! Initiator `SecurityCredential`s: checked leniently (any RSA-2048-sized base64 value) or
//! strictly (decrypted with the simulator's own TEST key and compared with the initiator's
//! password). The key pair ships in `keys/`; it protects nothing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};

use crate::config::{CredentialMode, InitiatorConfig};
use crate::errors::SimError;

/// The simulator's TEST certificate (self-signed, CN `daraja-sim.invalid`): what a client
/// encrypts initiator passwords with for `strict` mode.
pub const SIMULATOR_CERTIFICATE_PEM: &str = include_str!("../keys/simulator-certificate.pem");
/// The simulator's TEST private key. Public on purpose; it has no value.
pub const SIMULATOR_PRIVATE_KEY_PEM: &str = include_str!("../keys/simulator-private-key.pem");

/// What a credential check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialVerdict {
    Valid,
    /// Wrong initiator, wrong password, wrong key or not a credential at all: `2001`.
    Invalid,
}

#[derive(Debug)]
pub(crate) struct CredentialChecker {
    mode: CredentialMode,
    key: RsaPrivateKey,
    initiators: Vec<InitiatorConfig>,
}

impl CredentialChecker {
    pub(crate) fn new(
        mode: CredentialMode,
        initiators: Vec<InitiatorConfig>,
    ) -> Result<Self, SimError> {
        let key = RsaPrivateKey::from_pkcs8_pem(SIMULATOR_PRIVATE_KEY_PEM)
            .map_err(|e| SimError::Key(e.to_string()))?;
        Ok(CredentialChecker {
            mode,
            key,
            initiators,
        })
    }

    /// Checks one credential. Strict mode costs one RSA-2048 decryption (a millisecond or two);
    /// it runs in the background task that produces the result, never while answering.
    pub(crate) fn check(&self, initiator: &str, credential: &str) -> CredentialVerdict {
        let Ok(ciphertext) = STANDARD.decode(credential.trim()) else {
            return CredentialVerdict::Invalid;
        };
        if ciphertext.len() != 256 {
            return CredentialVerdict::Invalid;
        }
        // Lenient mode forgives how the password was encrypted, never a user that does not
        // exist: "wrong user → 20/2001" (b2c-and-results.md, simulator behaviour).
        if !self.initiators.iter().any(|i| i.name == initiator) {
            return CredentialVerdict::Invalid;
        }
        match self.mode {
            CredentialMode::Lenient => CredentialVerdict::Valid,
            CredentialMode::Strict => {
                let Ok(plain) = self.key.decrypt(Pkcs1v15Encrypt, &ciphertext) else {
                    return CredentialVerdict::Invalid;
                };
                let known = self
                    .initiators
                    .iter()
                    .any(|i| i.name == initiator && i.password.as_bytes() == plain.as_slice());
                if known {
                    CredentialVerdict::Valid
                } else {
                    CredentialVerdict::Invalid
                }
            }
        }
    }

    /// A credential for `password` under the simulator's key, as a client would make it.
    pub(crate) fn encrypt(&self, password: &str) -> String {
        let public = RsaPublicKey::from(&self.key);
        let ciphertext = public
            .encrypt(&mut rand::rngs::OsRng, Pkcs1v15Encrypt, password.as_bytes())
            .expect("a short password fits an RSA-2048 block");
        STANDARD.encode(ciphertext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn initiators() -> Vec<InitiatorConfig> {
        vec![InitiatorConfig::new("testapi", "pw-1")]
    }

    #[test]
    fn strict_mode_decrypts_what_the_daraja_client_encrypts_with_the_shipped_certificate() {
        let checker = CredentialChecker::new(CredentialMode::Strict, initiators()).unwrap();
        let cert =
            daraja::EncryptionCertificate::from_pem_or_der(SIMULATOR_CERTIFICATE_PEM.as_bytes())
                .unwrap();
        assert_eq!(cert.key_bits(), 2048);
        let good = cert
            .security_credential(&SecretString::from("pw-1"))
            .unwrap();
        assert_eq!(
            checker.check("testapi", good.expose()),
            CredentialVerdict::Valid
        );
        assert_eq!(
            checker.check("someone", good.expose()),
            CredentialVerdict::Invalid
        );
        let wrong = cert
            .security_credential(&SecretString::from("pw-2"))
            .unwrap();
        assert_eq!(
            checker.check("testapi", wrong.expose()),
            CredentialVerdict::Invalid
        );
        // Encrypted for Safaricom's sandbox certificate: the simulator cannot read it.
        let safaricom = daraja::EncryptionCertificate::sandbox()
            .security_credential(&SecretString::from("pw-1"))
            .unwrap();
        assert_eq!(
            checker.check("testapi", safaricom.expose()),
            CredentialVerdict::Invalid
        );
        assert_eq!(
            checker.check("testapi", &checker.encrypt("pw-1")),
            CredentialVerdict::Valid
        );
    }

    #[test]
    fn lenient_mode_wants_only_the_right_size() {
        let checker = CredentialChecker::new(CredentialMode::Lenient, initiators()).unwrap();
        let safaricom = daraja::EncryptionCertificate::sandbox()
            .security_credential(&SecretString::from("x"))
            .unwrap();
        assert_eq!(
            checker.check("testapi", safaricom.expose()),
            CredentialVerdict::Valid
        );
        assert_eq!(
            checker.check("nobody", safaricom.expose()),
            CredentialVerdict::Invalid,
            "an initiator that does not exist is refused in lenient mode too"
        );
        assert_eq!(
            checker.check("testapi", "c2VjcmV0"),
            CredentialVerdict::Invalid
        );
        assert_eq!(
            checker.check("anyone", "not base64!"),
            CredentialVerdict::Invalid
        );
    }
}
