//! `GET /oauth/v1/generate?grant_type=client_credentials` (Basic auth): the access token.

use serde::{Deserialize, Serialize};

use super::common::LooseString;

/// The path of the token endpoint, with its only supported grant.
pub const TOKEN_PATH: &str = "/oauth/v1/generate?grant_type=client_credentials";

/// `{"access_token": "...", "expires_in": "3599"}`. `expires_in` is a string on the live
/// service and a number in the 2025 docs; both are read.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<LooseString>,
}

impl TokenResponse {
    /// Lifetime in seconds, if the answer states a usable one.
    pub fn expires_in_secs(&self) -> Option<u64> {
        self.expires_in
            .as_ref()
            .and_then(|e| e.as_str().trim().parse().ok())
    }
}

/// Never prints the token.
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_as_string_or_number() {
        let s: TokenResponse =
            serde_json::from_str(r#"{"access_token":"abc","expires_in":"3599"}"#).unwrap();
        let n: TokenResponse =
            serde_json::from_str(r#"{"access_token":"abc","expires_in":3599}"#).unwrap();
        assert_eq!(s.expires_in_secs(), Some(3599));
        assert_eq!(n.expires_in_secs(), Some(3599));
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"access_token":"abc","expires_in":"3599"}"#
        );
        assert!(!format!("{s:?}").contains("abc"));
    }
}
