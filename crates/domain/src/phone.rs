//! Kenyan M-Pesa phone numbers (MSISDNs).
//!
//! Daraja accepts only `254` followed by nine digits, and only Safaricom's mobile ranges
//! `2547…` and `2541…`. People type numbers as `0712 345 678`, `+254-712-345678`,
//! `712345678` or `254712345678`; all of them normalise to `254712345678` here, and anything
//! else is refused with a reason a person can read.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A normalised Kenyan mobile number: exactly `2547XXXXXXXX` or `2541XXXXXXXX`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msisdn(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number may contain only digits, spaces, dashes and a leading +")]
    InvalidCharacters,
    #[error("phone number has the wrong number of digits for a Kenyan mobile number")]
    WrongLength,
    #[error("not a Kenyan M-Pesa number: it must start 07, 01, +2547, +2541, 2547 or 2541")]
    NotKenyanMobile,
}

impl Msisdn {
    /// Parses any of the accepted written forms into the 12-digit form Daraja wants.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        let mut digits = String::with_capacity(12);
        for (i, c) in trimmed.char_indices() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' => {}
                '+' if i == 0 => {}
                _ => return Err(PhoneError::InvalidCharacters),
            }
        }
        // A `+` is only meaningful before a country code.
        if trimmed.starts_with('+') && !digits.starts_with("254") {
            return Err(PhoneError::NotKenyanMobile);
        }
        let subscriber = match digits.len() {
            12 if digits.starts_with("254") => &digits[3..],
            10 if digits.starts_with('0') => &digits[1..],
            9 if !digits.starts_with('0') => &digits[..],
            0 => return Err(PhoneError::Empty),
            _ => {
                let looks_kenyan = digits.starts_with("254") || digits.starts_with('0');
                return Err(if looks_kenyan || digits.len() > 12 {
                    PhoneError::WrongLength
                } else {
                    PhoneError::NotKenyanMobile
                });
            }
        };
        if trimmed.starts_with('+') && digits.len() != 12 {
            return Err(PhoneError::WrongLength);
        }
        match subscriber.as_bytes()[0] {
            b'7' | b'1' => Ok(Msisdn(format!("254{subscriber}"))),
            _ => Err(PhoneError::NotKenyanMobile),
        }
    }

    /// The 12-digit form, e.g. `254708374149`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The nine digits after the country code, e.g. `708374149` (the tail of a CheckoutRequestID).
    pub fn subscriber_number(&self) -> &str {
        &self.0[3..]
    }

    /// The form used in logs: country code and network prefix, then the last three digits,
    /// e.g. `2547*****149`. Phone numbers are personal data and never logged whole.
    pub fn masked(&self) -> String {
        format!("{}*****{}", &self.0[..4], &self.0[9..])
    }

    /// Whether a number as Safaricom reported it refers to this number. Daraja sends the full
    /// number, a masked one (`2547 ***** 126`, `25470****149`) or a SHA-256 hash of the
    /// 12-digit form; `None` means the report cannot be compared at all.
    pub fn matches_reported(&self, reported: &str) -> Option<bool> {
        let compact: String = reported.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.is_empty() {
            return None;
        }
        if compact.len() == 64 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
            let ours = hex::encode(Sha256::digest(self.0.as_bytes()));
            return Some(ours.eq_ignore_ascii_case(&compact));
        }
        if compact.contains('*') {
            let head: String = compact.chars().take_while(|c| *c != '*').collect();
            let tail: String = compact
                .chars()
                .rev()
                .take_while(|c| *c != '*')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if head.is_empty() && tail.is_empty() {
                return None;
            }
            return Some(self.0.starts_with(&head) && self.0.ends_with(&tail));
        }
        match Msisdn::parse(&compact) {
            Ok(other) => Some(other == *self),
            Err(_) => Some(false),
        }
    }
}

/// A CheckoutRequestID for logs. Safaricom's ids end with the customer's 9-digit subscriber
/// number (`ws_CO_23052022122137653708374149`), so logging one whole would log the phone number:
/// like [`Msisdn::masked`], only the last three digits of it are kept.
pub fn mask_checkout_request_id(id: &str) -> String {
    let n = id.len();
    if n >= 15 && id.is_ascii() && id[n - 9..].bytes().all(|b| b.is_ascii_digit()) {
        format!("{}******{}", &id[..n - 9], &id[n - 3..])
    } else {
        id.to_owned()
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `Debug` masks the number so that a stray `{:?}` in a log line leaks nothing.
impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Msisdn({})", self.masked())
    }
}

impl std::str::FromStr for Msisdn {
    type Err = PhoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Msisdn::parse(s)
    }
}

impl Serialize for Msisdn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Msisdn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Msisdn::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_written_form_normalises_to_the_same_number() {
        for input in [
            "0708374149",
            "0708 374 149",
            "0708-374-149",
            "+254708374149",
            "+254 708 374 149",
            "254708374149",
            "708374149",
            "  0708374149  ",
        ] {
            assert_eq!(
                Msisdn::parse(input).unwrap().as_str(),
                "254708374149",
                "{input}"
            );
        }
        assert_eq!(
            Msisdn::parse("0110123456").unwrap().as_str(),
            "254110123456"
        );
        assert_eq!(
            Msisdn::parse("+254110123456").unwrap().as_str(),
            "254110123456"
        );
    }

    #[test]
    fn refuses_what_is_not_a_kenyan_mobile_number() {
        assert_eq!(Msisdn::parse(""), Err(PhoneError::Empty));
        assert_eq!(Msisdn::parse("   "), Err(PhoneError::Empty));
        assert_eq!(
            Msisdn::parse("0708x74149"),
            Err(PhoneError::InvalidCharacters)
        );
        assert_eq!(Msisdn::parse("07083741490"), Err(PhoneError::WrongLength));
        assert_eq!(Msisdn::parse("070837414"), Err(PhoneError::WrongLength));
        assert_eq!(
            Msisdn::parse("0208374149"),
            Err(PhoneError::NotKenyanMobile)
        );
        assert_eq!(
            Msisdn::parse("+447911123456"),
            Err(PhoneError::NotKenyanMobile)
        );
        assert_eq!(
            Msisdn::parse("255708374149"),
            Err(PhoneError::NotKenyanMobile)
        );
        assert_eq!(
            Msisdn::parse("254208374149"),
            Err(PhoneError::NotKenyanMobile)
        );
        assert_eq!(Msisdn::parse("2547083741"), Err(PhoneError::WrongLength));
        assert_eq!(
            Msisdn::parse("07+08374149"),
            Err(PhoneError::InvalidCharacters)
        );
        assert_eq!(
            Msisdn::parse("+0708374149"),
            Err(PhoneError::NotKenyanMobile)
        );
    }

    #[test]
    fn checkout_ids_are_masked_for_logs() {
        assert_eq!(
            mask_checkout_request_id("ws_CO_23052022122137653708374149"),
            "ws_CO_23052022122137653******149"
        );
        assert_eq!(mask_checkout_request_id("ws_CO_short"), "ws_CO_short");
        assert_eq!(
            mask_checkout_request_id("ws_CO_DMZ_123212312_2342347678234"),
            "ws_CO_DMZ_123212312_2342******234"
        );
    }

    #[test]
    fn masks_for_logs() {
        let m = Msisdn::parse("0708374149").unwrap();
        assert_eq!(m.masked(), "2547*****149");
        assert!(!format!("{m:?}").contains("708374"));
    }

    #[test]
    fn compares_with_full_masked_and_hashed_reports() {
        let m = Msisdn::parse("0708374149").unwrap();
        assert_eq!(m.matches_reported("254708374149"), Some(true));
        assert_eq!(m.matches_reported("254708374148"), Some(false));
        assert_eq!(m.matches_reported("2547 ***** 149"), Some(true));
        assert_eq!(m.matches_reported("25470****149"), Some(true));
        assert_eq!(m.matches_reported("2547 ***** 126"), Some(false));
        let hash = hex::encode(Sha256::digest(b"254708374149"));
        assert_eq!(m.matches_reported(&hash), Some(true));
        assert_eq!(m.matches_reported(&hash.to_uppercase()), Some(true));
        let other = hex::encode(Sha256::digest(b"254708374148"));
        assert_eq!(m.matches_reported(&other), Some(false));
        assert_eq!(m.matches_reported(""), None);
        assert_eq!(m.matches_reported("*****"), None);
    }

    fn subscriber() -> impl Strategy<Value = String> {
        (prop::sample::select(vec!['7', '1']), "[0-9]{8}")
            .prop_map(|(p, rest)| format!("{p}{rest}"))
    }

    proptest! {
        #[test]
        fn all_accepted_forms_agree(sub in subscriber(), sep in prop::sample::select(vec!["", " ", "-"])) {
            let spaced = |s: &str| -> String {
                s.chars().enumerate().flat_map(|(i, c)| {
                    if i > 0 && i % 3 == 0 { vec![sep.chars().next(), Some(c)] } else { vec![Some(c)] }
                }).flatten().collect()
            };
            let expected = format!("254{sub}");
            let forms = [
                format!("0{sub}"),
                format!("+254{sub}"),
                format!("254{sub}"),
                sub.clone(),
                spaced(&format!("0{sub}")),
                format!("+{}", spaced(&format!("254{sub}"))),
            ];
            for form in forms {
                let parsed = Msisdn::parse(&form).unwrap();
                prop_assert_eq!(parsed.as_str(), expected.as_str());
            }
        }

        #[test]
        fn anything_accepted_is_twelve_digits_in_a_mobile_range(input in ".{0,20}") {
            if let Ok(m) = Msisdn::parse(&input) {
                prop_assert_eq!(m.as_str().len(), 12);
                prop_assert!(m.as_str().starts_with("2547") || m.as_str().starts_with("2541"));
                prop_assert!(m.as_str().bytes().all(|b| b.is_ascii_digit()));
                // Normalising is idempotent.
                prop_assert_eq!(Msisdn::parse(m.as_str()).unwrap(), m);
            }
        }

        #[test]
        fn other_prefixes_are_refused(first in prop::sample::select(vec!['0','2','3','4','5','6','8','9']), rest in "[0-9]{8}") {
            let sub = format!("{first}{rest}");
            for form in [format!("0{sub}"), format!("254{sub}"), format!("+254{sub}")] {
                let refused = Msisdn::parse(&form).is_err();
                prop_assert!(refused, "accepted {}", form);
            }
        }
    }
}
