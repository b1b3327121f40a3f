//! Payment links: what a link asks for, the short account number a customer types at the
//! paybill, and which state a link is in at a given time. Pure: the random bytes and the clock
//! are arguments.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::money::{Amount, AmountBounds, AmountError};
use crate::payment::{PaymentStatus, ReviewReason};
use crate::state_machine::{ReviewChange, Transition, TransitionKind};

/// Where a link is. `Expired` is reached by time alone: a link stored `active` whose
/// `expires_at` has passed reads as expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    Active,
    /// A single-use link whose payment completed.
    Paid,
    Expired,
    Disabled,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Active => "active",
            LinkStatus::Paid => "paid",
            LinkStatus::Expired => "expired",
            LinkStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            LinkStatus::Active,
            LinkStatus::Paid,
            LinkStatus::Expired,
            LinkStatus::Disabled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// The status as people see it at `now`: an active link past its expiry is expired.
    pub fn at(self, expires_at: Option<i64>, now: i64) -> LinkStatus {
        match (self, expires_at) {
            (LinkStatus::Active, Some(at)) if at <= now => LinkStatus::Expired,
            (s, _) => s,
        }
    }
}

impl fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a link asks the customer to pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAmount {
    Fixed(Amount),
    /// The customer types an amount from `min` to `max`, both included.
    Range {
        min: Amount,
        max: Amount,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkAmountError {
    #[error("give either amount or amount_min and amount_max, not both")]
    Both,
    #[error("give amount, or amount_min and amount_max")]
    Neither,
    #[error("{0}")]
    Amount(#[from] AmountError),
    #[error("amount_min must not be above amount_max")]
    Inverted,
}

impl LinkAmount {
    /// From the stored or requested columns: a fixed amount, or a range (an open side takes
    /// the gateway's bound).
    pub fn new(
        fixed: Option<i64>,
        min: Option<i64>,
        max: Option<i64>,
        bounds: AmountBounds,
    ) -> Result<Self, LinkAmountError> {
        match (fixed, min, max) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(LinkAmountError::Both),
            (Some(a), None, None) => Ok(LinkAmount::Fixed(Amount::new(a, bounds)?)),
            (None, None, None) => Err(LinkAmountError::Neither),
            (None, min, max) => {
                let min = Amount::new(min.unwrap_or(bounds.min), bounds)?;
                let max = Amount::new(max.unwrap_or(bounds.max), bounds)?;
                if min.shillings() > max.shillings() {
                    return Err(LinkAmountError::Inverted);
                }
                Ok(LinkAmount::Range { min, max })
            }
        }
    }

    /// The amount to charge: the fixed one (whatever was typed), or the typed one within the
    /// range. `None` when the typed amount is missing or outside the range.
    pub fn charge(self, typed: Option<i64>) -> Option<Amount> {
        match self {
            LinkAmount::Fixed(a) => Some(a),
            LinkAmount::Range { min, max } => {
                let t = typed?;
                (min.shillings()..=max.shillings())
                    .contains(&t)
                    .then(|| Amount::from_stored(t))
            }
        }
    }

    /// `(amount, amount_min, amount_max)` as stored.
    pub fn columns(self) -> (Option<i64>, Option<i64>, Option<i64>) {
        match self {
            LinkAmount::Fixed(a) => (Some(a.shillings()), None, None),
            LinkAmount::Range { min, max } => (None, Some(min.shillings()), Some(max.shillings())),
        }
    }
}

/// Characters of an account number: capitals and digits that cannot be taken for one another
/// when read aloud, written by hand or typed on a phone (no 0/O/D/Q, 1/I/L, 2/Z, 5/S, 8/B, U/V).
pub const ACCOUNT_ALPHABET: &[u8] = b"ACEFGHJKMNPRTWXY34679";
/// Long enough that guessing an open link's account is hopeless (21^7 ≈ 1.8 × 10^9), short
/// enough to type at the paybill.
pub const ACCOUNT_LEN: usize = 7;

/// An account number from random bytes (one per character; uniform enough: 256 % 21 is small
/// and the number is not a secret, the slug is).
pub fn account_number(random: &[u8; ACCOUNT_LEN]) -> String {
    random
        .iter()
        .map(|b| ACCOUNT_ALPHABET[usize::from(*b) % ACCOUNT_ALPHABET.len()] as char)
        .collect()
}

/// What a customer typed as the account (a C2B BillRefNumber), as an account number would be
/// written: capitals, without spaces, dashes or dots. `None` when it cannot be one of ours.
pub fn normalize_account(typed: &str) -> Option<String> {
    let s: String = typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (s.len() == ACCOUNT_LEN && s.bytes().all(|b| ACCOUNT_ALPHABET.contains(&b))).then_some(s)
}

/// The language of the customer's pages and receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    #[default]
    En,
    Sw,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Sw => "sw",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "sw" => Some(Lang::Sw),
            _ => None,
        }
    }

    /// The first of `Accept-Language`'s languages (by weight) that we speak, if any.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut choices: Vec<(f32, Lang)> = header
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';');
                let tag = pieces.next()?.trim().to_ascii_lowercase();
                let primary = tag.split('-').next()?;
                let lang = Lang::parse(primary)?;
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q=").map(str::to_owned))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q > 0.0).then_some((q, lang))
            })
            .collect();
        // Stable: of equal weights, the first written wins.
        choices.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        choices.first().map(|(_, l)| *l)
    }
}

/// Stands for the payment that paid a single-use link in notifications planned before
/// storage knows it (storage puts the id in its place): see [`on_already_paid`].
pub const PAID_BY_MARK: &str = "{paid_by}";

/// A payment in `status` completed through the single-use link `link_id`, which `paid_by` had
/// already paid (an STK push and a paybill payment both made, say): the customer paid twice.
/// The payment keeps its state and is held for review (a refund is suggested); nobody is told
/// it completed. Storage applies this with the link's row locked, as it writes the completion.
pub fn on_already_paid(status: PaymentStatus, link_id: &str, paid_by: &str) -> Transition {
    let mut t = Transition::new(TransitionKind::HeldForReview, status);
    t.review = ReviewChange::Hold(ReviewReason::LinkAlreadyPaid {
        link_id: link_id.to_owned(),
        paid_by: paid_by.to_owned(),
    });
    t
}

/// Checks a link's title: 1 to 80 characters, no control characters.
pub fn check_title(title: &str) -> Result<String, &'static str> {
    let t = title.trim();
    if t.is_empty() {
        return Err("give the link a title, such as what is being paid for");
    }
    if t.chars().count() > 80 {
        return Err("at most 80 characters");
    }
    if t.chars().any(char::is_control) {
        return Err("no control characters");
    }
    Ok(t.to_owned())
}

/// Checks a link's description: at most 500 characters; line breaks allowed, other control
/// characters not.
pub fn check_link_description(text: &str) -> Result<String, &'static str> {
    let t = text.trim();
    if t.chars().count() > 500 {
        return Err("at most 500 characters");
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\r') {
        return Err("no control characters");
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_paid_twice_holds_the_second_payment_in_its_state() {
        let t = on_already_paid(PaymentStatus::Completed, "pl_1", "pay_2");
        assert_eq!(t.kind, TransitionKind::HeldForReview);
        assert_eq!(t.kind.as_str(), "held_for_review", "the stored name");
        assert_eq!(t.status, PaymentStatus::Completed);
        assert_eq!(t.notify, None, "nobody is told it completed");
        assert_eq!(
            t.holds_for_review().map(ReviewReason::describe).as_deref(),
            Some(
                "paid through single-use link pl_1, which pay_2 had already paid: refund suggested"
            )
        );
        assert_eq!(
            (t.mpesa_receipt_number, t.result_code, t.checkout_request_id),
            (None, None, None),
            "it writes nothing but the hold"
        );
    }

    fn bounds() -> AmountBounds {
        AmountBounds {
            min: 1,
            max: 250_000,
        }
    }

    #[test]
    fn expiry_is_read_at_a_time() {
        assert_eq!(LinkStatus::Active.at(Some(10), 9), LinkStatus::Active);
        assert_eq!(LinkStatus::Active.at(Some(10), 10), LinkStatus::Expired);
        assert_eq!(LinkStatus::Paid.at(Some(10), 99), LinkStatus::Paid);
        assert_eq!(LinkStatus::Disabled.at(None, 99), LinkStatus::Disabled);
        for s in ["active", "paid", "expired", "disabled"] {
            assert_eq!(LinkStatus::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn amounts_fixed_or_within_a_range() {
        let fixed = LinkAmount::new(Some(1500), None, None, bounds()).unwrap();
        assert_eq!(fixed.charge(Some(1)), Some(Amount::from_stored(1500)));
        let range = LinkAmount::new(None, Some(100), Some(500), bounds()).unwrap();
        assert_eq!(range.charge(Some(100)), Some(Amount::from_stored(100)));
        assert_eq!(range.charge(Some(500)), Some(Amount::from_stored(500)));
        assert_eq!(range.charge(Some(501)), None);
        assert_eq!(range.charge(Some(99)), None);
        assert_eq!(range.charge(None), None);
        let open = LinkAmount::new(None, None, Some(700), bounds()).unwrap();
        assert_eq!(open.columns(), (None, Some(1), Some(700)));
        assert_eq!(
            LinkAmount::new(Some(1), Some(1), None, bounds()),
            Err(LinkAmountError::Both)
        );
        assert_eq!(
            LinkAmount::new(None, None, None, bounds()),
            Err(LinkAmountError::Neither)
        );
        assert_eq!(
            LinkAmount::new(None, Some(9), Some(8), bounds()),
            Err(LinkAmountError::Inverted)
        );
        assert!(LinkAmount::new(Some(0), None, None, bounds()).is_err());
        assert!(LinkAmount::new(None, None, Some(250_001), bounds()).is_err());
    }

    #[test]
    fn account_numbers_have_no_ambiguous_characters() {
        for ch in b"0O1IL2Z5S8BDQUV" {
            assert!(!ACCOUNT_ALPHABET.contains(ch), "{}", *ch as char);
        }
        let a = account_number(&[0, 1, 2, 3, 250, 255, 20]);
        assert_eq!(a.len(), ACCOUNT_LEN);
        assert!(a.bytes().all(|b| ACCOUNT_ALPHABET.contains(&b)));
        assert_eq!(normalize_account(&a.to_lowercase()), Some(a.clone()));
        let spaced = format!("{} {}", &a[..3], &a[3..]);
        assert_eq!(normalize_account(&spaced), Some(a));
        assert_eq!(normalize_account("INV0042"), None);
        assert_eq!(normalize_account("ACEFGH"), None);
    }

    #[test]
    fn languages_from_the_browser() {
        assert_eq!(
            Lang::from_accept_language("sw-KE,sw;q=0.9,en;q=0.8"),
            Some(Lang::Sw)
        );
        assert_eq!(
            Lang::from_accept_language("fr, en;q=0.5, sw;q=0.7"),
            Some(Lang::Sw)
        );
        assert_eq!(Lang::from_accept_language("en-GB"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language("fr, de"), None);
        assert_eq!(Lang::from_accept_language("sw;q=0"), None);
    }

    #[test]
    fn titles_and_descriptions() {
        assert_eq!(check_title("  Term 2 fees "), Ok("Term 2 fees".into()));
        assert!(check_title("").is_err());
        assert!(check_title(&"x".repeat(81)).is_err());
        assert!(check_title("a\u{7}").is_err());
        assert!(check_link_description("line\nline").is_ok());
        assert!(check_link_description("a\u{0}").is_err());
    }
}
