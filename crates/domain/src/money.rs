//! Money. Payments are asked for in whole Kenyan shillings (Daraja refuses fractions); amounts that
//! Safaricom reports back (`1`, `1.0`, `"5.00"`) are kept exactly as integer cents. No floats.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A payment amount in whole Kenyan shillings, at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(i64);

/// An exact amount in cents (hundredths of a shilling), as reported by Safaricom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cents(pub i64);

/// The amounts this deployment accepts, in whole shillings (`AMOUNT_MIN`, `AMOUNT_MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmountBounds {
    pub min: i64,
    pub max: i64,
}

impl Default for AmountBounds {
    /// KES 1 to KES 250,000: Daraja's documented limits for one M-Pesa Express payment.
    fn default() -> Self {
        AmountBounds {
            min: 1,
            max: 250_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be a whole number of shillings")]
    NotWhole,
    #[error("amount must be at least KSh {min}")]
    TooSmall { min: i64 },
    #[error("amount must be at most KSh {max}")]
    TooLarge { max: i64 },
    #[error("amount is not a number")]
    NotANumber,
}

impl Amount {
    /// Checks a whole-shilling amount against the configured bounds.
    pub fn new(shillings: i64, bounds: AmountBounds) -> Result<Self, AmountError> {
        if shillings < bounds.min.max(1) {
            return Err(AmountError::TooSmall {
                min: bounds.min.max(1),
            });
        }
        if shillings > bounds.max {
            return Err(AmountError::TooLarge { max: bounds.max });
        }
        Ok(Amount(shillings))
    }

    /// Parses a decimal text (`"10"`, `"10.00"`) that must be a whole number of shillings.
    pub fn parse(text: &str, bounds: AmountBounds) -> Result<Self, AmountError> {
        let cents = Cents::parse(text).ok_or(AmountError::NotANumber)?;
        if cents.0 % 100 != 0 {
            return Err(AmountError::NotWhole);
        }
        Amount::new(cents.0 / 100, bounds)
    }

    /// An amount already checked elsewhere, e.g. read back from storage.
    pub fn from_stored(shillings: i64) -> Self {
        Amount(shillings)
    }

    pub fn shillings(self) -> i64 {
        self.0
    }

    pub fn cents(self) -> Cents {
        Cents(self.0 * 100)
    }
}

impl fmt::Display for Amount {
    /// `KSh 1,250` (see [`ksh`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&ksh(self.0))
    }
}

/// `KSh 1,250`: how every page, message, receipt and alert writes an amount of shillings.
pub fn ksh(shillings: i64) -> String {
    format!("KSh {}", group_thousands(shillings))
}

impl Cents {
    /// Parses a decimal number written as text: `1`, `1.0`, `1.00`, `-1980.00`, `10500.5`.
    /// More than two decimals are accepted only when the extra digits are zeros, so nothing is
    /// rounded silently. Exponents and anything else are refused.
    pub fn parse(text: &str) -> Option<Cents> {
        let t = text.trim();
        let (negative, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (whole, frac) = match t.split_once('.') {
            Some((w, f)) => (w, f),
            None => (t, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if whole.len() > 15 {
            return None;
        }
        let whole_value: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let (kept, extra) = frac.split_at(frac.len().min(2));
        if extra.bytes().any(|b| b != b'0') {
            return None;
        }
        let frac_value: i64 = match kept.len() {
            0 => 0,
            1 => kept.parse::<i64>().ok()? * 10,
            _ => kept.parse().ok()?,
        };
        let value = whole_value.checked_mul(100)?.checked_add(frac_value)?;
        Some(Cents(if negative { -value } else { value }))
    }

    /// Whether this is exactly the given whole-shilling amount.
    pub fn equals(self, amount: Amount) -> bool {
        self == amount.cents()
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// `12,345`, `-1,000`.
pub fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bounds_are_enforced() {
        let b = AmountBounds { min: 10, max: 1000 };
        assert_eq!(Amount::new(9, b), Err(AmountError::TooSmall { min: 10 }));
        assert_eq!(
            Amount::new(1001, b),
            Err(AmountError::TooLarge { max: 1000 })
        );
        assert_eq!(Amount::new(10, b).unwrap().shillings(), 10);
        assert_eq!(
            Amount::new(0, AmountBounds { min: 0, max: 5 }),
            Err(AmountError::TooSmall { min: 1 })
        );
    }

    #[test]
    fn whole_shillings_only() {
        let b = AmountBounds::default();
        assert_eq!(Amount::parse("10.50", b), Err(AmountError::NotWhole));
        assert_eq!(Amount::parse("10.00", b).unwrap().shillings(), 10);
        assert_eq!(Amount::parse("1e3", b), Err(AmountError::NotANumber));
    }

    #[test]
    fn cents_from_every_shape_safaricom_sends() {
        assert_eq!(Cents::parse("1"), Some(Cents(100)));
        assert_eq!(Cents::parse("1.0"), Some(Cents(100)));
        assert_eq!(Cents::parse("1.00"), Some(Cents(100)));
        assert_eq!(Cents::parse("10500.00"), Some(Cents(1_050_000)));
        assert_eq!(Cents::parse("-1980.00"), Some(Cents(-198_000)));
        assert_eq!(Cents::parse("32009.9"), Some(Cents(3_200_990)));
        assert_eq!(Cents::parse("5.000"), Some(Cents(500)));
        assert_eq!(Cents::parse("5.001"), None);
        assert_eq!(Cents::parse("1e2"), None);
        assert_eq!(Cents::parse(""), None);
        assert_eq!(Cents::parse("."), None);
        assert_eq!(Cents::parse("abc"), None);
        assert_eq!(Cents::parse("99999999999999999999"), None);
    }

    #[test]
    fn display() {
        assert_eq!(Amount::from_stored(1_250).to_string(), "KSh 1,250");
        assert_eq!(Amount::from_stored(250_000).to_string(), "KSh 250,000");
        assert_eq!(Amount::from_stored(10).to_string(), "KSh 10");
        assert_eq!(ksh(-1_500), "KSh -1,500");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(Cents(-198_000).to_string(), "-1980.00");
    }

    proptest! {
        #[test]
        fn cents_round_trip(v in -10_000_000_000i64..10_000_000_000i64) {
            prop_assert_eq!(Cents::parse(&Cents(v).to_string()), Some(Cents(v)));
        }
    }
}
