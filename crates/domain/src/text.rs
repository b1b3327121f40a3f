//! The texts that travel to Daraja.
//!
//! Daraja limits `AccountReference` to 12 characters and `TransactionDesc` to 13, and special
//! characters (`@ # & ( )`…) are reported to make pushes fail or the prompt render badly.
//!
//! Decisions (documented in the README):
//! * `AccountReference` is the account number the customer sees and the merchant reconciles by,
//!   so it is **refused**, never truncated, when it is too long or has characters outside
//!   letters, digits, space and `- _ . / : +`.
//! * The merchant's `description` is kept whole (up to 100 characters of any printable text) in
//!   our records; the `TransactionDesc` sent to Daraja is **derived** from it: characters outside
//!   the safe set become spaces, and it is cut to 13 characters.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const ACCOUNT_REFERENCE_MAX: usize = 12;
pub const TRANSACTION_DESC_MAX: usize = 13;
pub const DESCRIPTION_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("may contain only letters, digits, spaces and - _ . / : +")]
    DisallowedCharacter,
    #[error("must not contain control characters")]
    ControlCharacter,
}

fn is_safe_for_daraja(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '/' | ':' | '+')
}

fn check_safe(text: &str, max: usize) -> Result<String, TextError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(TextError::Empty);
    }
    if t.chars().count() > max {
        return Err(TextError::TooLong { max });
    }
    if !t.chars().all(is_safe_for_daraja) {
        return Err(TextError::DisallowedCharacter);
    }
    Ok(t.to_owned())
}

/// `AccountReference`: 1–12 safe characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountReference(String);

impl AccountReference {
    pub fn parse(text: &str) -> Result<Self, TextError> {
        check_safe(text, ACCOUNT_REFERENCE_MAX).map(AccountReference)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `TransactionDesc`: 1–13 safe characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TransactionDesc(String);

impl TransactionDesc {
    pub fn parse(text: &str) -> Result<Self, TextError> {
        check_safe(text, TRANSACTION_DESC_MAX).map(TransactionDesc)
    }

    /// Derives a valid `TransactionDesc` from any text: unsafe characters become spaces, runs of
    /// spaces collapse, and the result is cut to 13 characters; `"Payment"` if nothing is left.
    pub fn derive_from(text: &str) -> Self {
        let mut out = String::with_capacity(TRANSACTION_DESC_MAX);
        let mut last_space = true;
        for c in text.chars() {
            let c = if is_safe_for_daraja(c) { c } else { ' ' };
            if c == ' ' {
                if last_space {
                    continue;
                }
                last_space = true;
            } else {
                last_space = false;
            }
            if out.chars().count() == TRANSACTION_DESC_MAX {
                break;
            }
            out.push(c);
        }
        let trimmed = out.trim();
        TransactionDesc(if trimmed.is_empty() {
            "Payment".to_owned()
        } else {
            trimmed.to_owned()
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The merchant's own description of a payment: 1–100 printable characters, any script.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    pub fn parse(text: &str) -> Result<Self, TextError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(TextError::Empty);
        }
        if t.chars().count() > DESCRIPTION_MAX {
            return Err(TextError::TooLong {
                max: DESCRIPTION_MAX,
            });
        }
        if t.chars().any(char::is_control) {
            return Err(TextError::ControlCharacter);
        }
        Ok(Description(t.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_conversions {
    ($($ty:ident),*) => {$(
        impl TryFrom<String> for $ty {
            type Error = TextError;
            fn try_from(s: String) -> Result<Self, TextError> { $ty::parse(&s) }
        }
        impl From<$ty> for String {
            fn from(v: $ty) -> String { v.0 }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(&self.0) }
        }
    )*};
}
string_conversions!(AccountReference, TransactionDesc, Description);

/// Escapes text for HTML element content and attribute values: every value that came from
/// outside (account numbers, names, Daraja's texts) goes through this before a page shows it.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_what_could_open_a_tag_or_end_an_attribute() {
        assert_eq!(
            escape_html(r#"<a href="x">O'Neil & co</a>"#),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;"
        );
    }
    use proptest::prelude::*;

    #[test]
    fn account_reference_is_refused_not_truncated() {
        assert_eq!(
            AccountReference::parse("INV0042").unwrap().as_str(),
            "INV0042"
        );
        assert_eq!(
            AccountReference::parse(" INV-42/A ").unwrap().as_str(),
            "INV-42/A"
        );
        assert_eq!(
            AccountReference::parse("ABCDEFGHIJKLM"),
            Err(TextError::TooLong { max: 12 })
        );
        assert_eq!(
            AccountReference::parse("A&B"),
            Err(TextError::DisallowedCharacter)
        );
        assert_eq!(
            AccountReference::parse("<script>"),
            Err(TextError::DisallowedCharacter)
        );
        assert_eq!(AccountReference::parse("   "), Err(TextError::Empty));
        assert_eq!(
            AccountReference::parse("résumé"),
            Err(TextError::DisallowedCharacter)
        );
    }

    #[test]
    fn transaction_desc_is_derived_safely() {
        assert_eq!(
            TransactionDesc::derive_from("Dance class (November)").as_str(),
            "Dance class N"
        );
        assert_eq!(
            TransactionDesc::derive_from("<script>alert(1)</script>").as_str(),
            "script alert"
        );
        assert_eq!(TransactionDesc::derive_from("@@@").as_str(), "Payment");
        assert_eq!(
            TransactionDesc::derive_from("Order 42").as_str(),
            "Order 42"
        );
    }

    #[test]
    fn description_keeps_any_printable_text() {
        assert_eq!(
            Description::parse("Darasa la densi 💃").unwrap().as_str(),
            "Darasa la densi 💃"
        );
        assert_eq!(
            Description::parse("<b>bold</b>").unwrap().as_str(),
            "<b>bold</b>"
        );
        assert_eq!(
            Description::parse("a\u{0}b"),
            Err(TextError::ControlCharacter)
        );
        assert_eq!(
            Description::parse(&"x".repeat(101)),
            Err(TextError::TooLong { max: 100 })
        );
    }

    proptest! {
        #[test]
        fn derived_desc_is_always_valid(text in ".{0,60}") {
            let d = TransactionDesc::derive_from(&text);
            prop_assert!(TransactionDesc::parse(d.as_str()).is_ok());
        }
    }
}
