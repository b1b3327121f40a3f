//! C2B: what a payment the customer made on their own (paybill, till) does to our books, and how
//! a validation request is judged. Pure: the Daraja crate parses the wire form, the gateway
//! stores what these rules answer.
//!
//! The rules that keep money safe:
//! * a receipt (`TransID`) settles one payment, whatever path reports it (confirmation, Pull
//!   Transactions, Transaction Status) and however often: a receipt we already hold is a
//!   duplicate and changes nothing;
//! * only money paid to a shortcode we serve is booked; the rest is kept and flagged;
//! * the MSISDN is kept as Safaricom gave it (a number, a SHA-256 hex digest, or masked) and
//!   becomes the payment's phone only when it is a number, or a digest of a phone we know;
//! * a validation answer books nothing: only a confirmation (or a recovery) does.

use sha2::{Digest, Sha256};

use crate::money::{Amount, Cents};
use crate::payment::{FinalOutcome, PaymentStatus};
use crate::phone::Msisdn;
use crate::result_code::ResultCode;
use crate::state_machine::{ReviewChange, Transition, TransitionKind};

/// The longest account number stored on a payment (Safaricom's are up to 20 characters; longer
/// hostile input is cut, the raw body keeps it whole).
pub const MAX_ACCOUNT_LEN: usize = 64;

/// The MSISDN field of a C2B report, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayerMsisdn {
    /// A full number (older shortcodes, the sandbox).
    Number(Msisdn),
    /// A lower-case SHA-256 hex digest of the 12-digit number.
    Sha256(String),
    /// Masked (`2547 ***** 126`) or anything else: kept as text, never matched.
    Masked(String),
    Absent,
}

impl PayerMsisdn {
    pub fn classify(reported: &str) -> Self {
        let trimmed = reported.trim();
        if trimmed.is_empty() {
            return PayerMsisdn::Absent;
        }
        if trimmed.len() == 64 && trimmed.chars().all(|c| c.is_ascii_hexdigit()) {
            return PayerMsisdn::Sha256(trimmed.to_ascii_lowercase());
        }
        if trimmed.chars().all(|c| c.is_ascii_digit() || c == '+')
            && let Ok(n) = Msisdn::parse(trimmed)
        {
            return PayerMsisdn::Number(n);
        }
        PayerMsisdn::Masked(trimmed.chars().take(64).collect())
    }

    /// The text stored as given (`payer_msisdn`).
    pub fn as_given(&self) -> Option<String> {
        match self {
            PayerMsisdn::Number(n) => Some(n.as_str().to_owned()),
            PayerMsisdn::Sha256(h) => Some(h.clone()),
            PayerMsisdn::Masked(m) => Some(m.clone()),
            PayerMsisdn::Absent => None,
        }
    }

    /// The phone number, when the report is one.
    pub fn number(&self) -> Option<&Msisdn> {
        match self {
            PayerMsisdn::Number(n) => Some(n),
            _ => None,
        }
    }

    /// The known phone whose SHA-256 digest this report is, if any (a number matches itself).
    pub fn match_known<'a>(&self, known: impl IntoIterator<Item = &'a Msisdn>) -> Option<Msisdn> {
        match self {
            PayerMsisdn::Number(n) => Some(n.clone()),
            PayerMsisdn::Sha256(digest) => known
                .into_iter()
                .find(|phone| &sha256_hex(phone.as_str()) == digest)
                .cloned(),
            _ => None,
        }
    }
}

/// SHA-256 of a phone's 12-digit form, lower-case hex (the form Safaricom sends).
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A C2B payment as reported by a confirmation, a Pull Transactions record, or a Transaction
/// Status result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2bReport {
    /// `TransID`: the M-Pesa receipt.
    pub receipt: String,
    pub amount: Cents,
    /// `BillRefNumber` trimmed (empty for Buy Goods).
    pub account_reference: String,
    pub business_short_code: String,
    pub payer_name: Option<String>,
    pub msisdn: PayerMsisdn,
    /// `TransTime` (East Africa Time) as Unix milliseconds.
    pub transaction_time_ms: Option<i64>,
    /// `Pay Bill`, `Buy Goods`…
    pub transaction_type: String,
}

impl C2bReport {
    /// Whether a text field holds a NUL character. No M-Pesa field holds one, and PostgreSQL
    /// cannot store one in text: looked up or booked, such a report fails every time.
    pub fn holds_a_nul(&self) -> bool {
        [
            Some(self.receipt.as_str()),
            Some(self.account_reference.as_str()),
            Some(self.business_short_code.as_str()),
            Some(self.transaction_type.as_str()),
            self.payer_name.as_deref(),
            self.msisdn.as_given().as_deref(),
        ]
        .into_iter()
        .flatten()
        .any(|text| text.contains('\0'))
    }
}

/// How a C2B payment reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum C2bPath {
    Confirmation,
    /// Pull Transactions found it: its confirmation was lost.
    Pull,
    /// A Transaction Status check found it.
    Status,
}

impl C2bPath {
    /// `recovered_by` of a payment booked this way.
    pub fn recovered_by(self) -> Option<&'static str> {
        match self {
            C2bPath::Confirmation => None,
            C2bPath::Pull => Some("pull"),
            C2bPath::Status => Some("status"),
        }
    }

    fn transition_kind(self) -> TransitionKind {
        match self {
            C2bPath::Confirmation => TransitionKind::C2bConfirmation,
            C2bPath::Pull => TransitionKind::C2bPull,
            C2bPath::Status => TransitionKind::C2bStatus,
        }
    }
}

/// What a C2B report does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum C2bDecision {
    /// Book a new `completed` payment: this is the transition that completes it.
    Book(Box<Transition>),
    /// The receipt is already booked (on a payment of either channel): nothing changes.
    Duplicate,
    /// Paid to a shortcode this gateway does not serve: keep the report, book nothing.
    NotOurShortCode,
    /// The amount is not whole shillings (Daraja's are): kept for a person, not booked on a
    /// guess.
    UnbookableAmount,
    /// An STK payment still open could be this very payment (an STK push to a shortcode with
    /// C2B URLs also sends a confirmation, with the same receipt): wait until that payment is
    /// settled by its callback or STK Query, then decide again (a duplicate if it took this
    /// receipt, a new payment otherwise).
    AwaitStk,
    /// An STK payment completed without its receipt (STK Query says a push was paid, not with
    /// which receipt) could be this very payment: booking the report too would count one payment
    /// twice, so it is kept for a person, who can tell from the statement, and not booked.
    ReceiptlessStk,
}

/// Which STK payment of ours could be the payment a C2B report describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StkCouldBe {
    /// None: the report is a payment of its own.
    Nothing,
    /// One still open: wait until it is settled.
    Open,
    /// One completed with no receipt (by STK Query): it may well be this one.
    CompletedWithoutReceipt,
}

/// Decides what a C2B report does, given whether its receipt is already booked and which
/// shortcodes this gateway serves.
pub fn on_c2b_report(
    report: &C2bReport,
    path: C2bPath,
    receipt_booked: bool,
    served_short_codes: &[&str],
    stk: StkCouldBe,
) -> C2bDecision {
    if receipt_booked {
        return C2bDecision::Duplicate;
    }
    if !served_short_codes.contains(&report.business_short_code.trim()) {
        return C2bDecision::NotOurShortCode;
    }
    if whole_shillings(report.amount).is_none() {
        return C2bDecision::UnbookableAmount;
    }
    match stk {
        StkCouldBe::Open => return C2bDecision::AwaitStk,
        StkCouldBe::CompletedWithoutReceipt => return C2bDecision::ReceiptlessStk,
        StkCouldBe::Nothing => {}
    }
    let mut t = Transition::new(path.transition_kind(), PaymentStatus::Completed);
    t.result_code = Some(ResultCode::from("0"));
    t.result_desc = Some(match path {
        C2bPath::Confirmation => "C2B confirmation".to_owned(),
        C2bPath::Pull => "recovered by Pull Transactions".to_owned(),
        C2bPath::Status => "recovered by Transaction Status".to_owned(),
    });
    t.mpesa_receipt_number = Some(report.receipt.clone());
    t.transaction_date_ms = report.transaction_time_ms;
    t.review = ReviewChange::Keep;
    t.notify = Some(FinalOutcome::Completed);
    C2bDecision::Book(Box::new(t))
}

/// Whether an open STK payment (its account reference, amount and phone) could be the payment a
/// C2B report describes: the same account (trimmed, any case), or none reported (Buy Goods: a
/// till has no account number), the same amount, and a phone the report does not contradict (a
/// masked or hashed MSISDN that fits, or none).
pub fn stk_could_be(
    report: &C2bReport,
    stk_reference: &str,
    stk_amount: Amount,
    stk_phone: Option<&Msisdn>,
) -> bool {
    let same_account = report.account_reference.trim().is_empty()
        || account_key(stk_reference) == account_key(&report.account_reference);
    let same_amount = whole_shillings(report.amount) == Some(stk_amount);
    let phone_fits = match (stk_phone, report.msisdn.as_given()) {
        (Some(phone), Some(given)) => phone.matches_reported(&given) != Some(false),
        _ => true,
    };
    same_account && same_amount && phone_fits
}

/// The amount in whole shillings, when it is whole.
pub fn whole_shillings(amount: Cents) -> Option<Amount> {
    (amount.0 >= 0 && amount.0 % 100 == 0).then(|| Amount::from_stored(amount.0 / 100))
}

/// An account number as stored on a payment: trimmed, at most [`MAX_ACCOUNT_LEN`] bytes (cut on
/// a character boundary).
pub fn stored_account(bill_ref_number: &str) -> String {
    let trimmed = bill_ref_number.trim();
    let mut end = trimmed.len().min(MAX_ACCOUNT_LEN);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    trimmed[..end].to_owned()
}

/// The key under which account numbers are compared: trimmed, upper-cased (customers type
/// `inv 42`, `INV42 `…; Daraja passes it as typed).
pub fn account_key(account: &str) -> String {
    stored_account(account).to_uppercase()
}

// ---- validation ---------------------------------------------------------------------------------

/// Why a validation request is refused; each maps to one of Daraja's `C2B000xx` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum C2bRefusal {
    /// `C2B00011`
    Msisdn,
    /// `C2B00012`
    Account,
    /// `C2B00013`
    Amount,
    /// `C2B00016`
    Other,
}

impl C2bRefusal {
    pub fn code(self) -> &'static str {
        match self {
            C2bRefusal::Msisdn => "C2B00011",
            C2bRefusal::Account => "C2B00012",
            C2bRefusal::Amount => "C2B00013",
            C2bRefusal::Other => "C2B00016",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            C2bRefusal::Msisdn => "invalid MSISDN",
            C2bRefusal::Account => "invalid account number",
            C2bRefusal::Amount => "invalid amount",
            C2bRefusal::Other => "other error",
        }
    }
}

/// What the validation rules look at (the account pattern is matched by the caller, which
/// owns the compiled regex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationFacts {
    pub amount: Option<Cents>,
    pub min: Amount,
    pub max: Amount,
    pub msisdn_present: bool,
    /// `C2B_ACCOUNT_PATTERN` matched (`true` when there is no pattern).
    pub account_matches_pattern: bool,
    /// `None` when known accounts are not required; else whether the account is one.
    pub account_known: Option<bool>,
}

/// Accept (`Ok`) or refuse with the first rule that fails: account, then amount, then MSISDN.
pub fn validate(f: &ValidationFacts) -> Result<(), C2bRefusal> {
    if !f.account_matches_pattern || f.account_known == Some(false) {
        return Err(C2bRefusal::Account);
    }
    match f.amount.and_then(whole_shillings) {
        Some(a) if a.shillings() >= f.min.shillings() && a.shillings() <= f.max.shillings() => {}
        _ => return Err(C2bRefusal::Amount),
    }
    if !f.msisdn_present {
        return Err(C2bRefusal::Msisdn);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(short_code: &str, cents: i64) -> C2bReport {
        C2bReport {
            receipt: "RKL51ZDR4F".into(),
            amount: Cents(cents),
            account_reference: "INV42".into(),
            business_short_code: short_code.into(),
            payer_name: Some("JANE".into()),
            msisdn: PayerMsisdn::classify("2547 ***** 126"),
            transaction_time_ms: Some(1_700_000_000_000),
            transaction_type: "Pay Bill".into(),
        }
    }

    #[test]
    fn a_confirmation_to_our_shortcode_completes_a_payment_once() {
        let r = report("600000", 10_000);
        let C2bDecision::Book(t) = on_c2b_report(
            &r,
            C2bPath::Confirmation,
            false,
            &["600000"],
            StkCouldBe::Nothing,
        ) else {
            panic!("not booked")
        };
        assert_eq!(t.status, PaymentStatus::Completed);
        assert_eq!(t.mpesa_receipt_number.as_deref(), Some("RKL51ZDR4F"));
        assert_eq!(t.notify, Some(FinalOutcome::Completed));
        assert_eq!(t.transaction_date_ms, Some(1_700_000_000_000));
        assert_eq!(
            on_c2b_report(&r, C2bPath::Pull, true, &["600000"], StkCouldBe::Nothing),
            C2bDecision::Duplicate
        );
    }

    #[test]
    fn other_shortcodes_and_odd_amounts_are_not_booked() {
        assert_eq!(
            on_c2b_report(
                &report("999999", 100),
                C2bPath::Confirmation,
                false,
                &["600000"],
                StkCouldBe::Nothing
            ),
            C2bDecision::NotOurShortCode
        );
        assert_eq!(
            on_c2b_report(
                &report("600000", 150),
                C2bPath::Confirmation,
                false,
                &["600000"],
                StkCouldBe::Nothing
            ),
            C2bDecision::UnbookableAmount
        );
    }

    #[test]
    fn an_open_stk_payment_that_could_be_it_is_waited_for() {
        let r = report("600000", 10_000);
        assert_eq!(
            on_c2b_report(
                &r,
                C2bPath::Confirmation,
                false,
                &["600000"],
                StkCouldBe::Open
            ),
            C2bDecision::AwaitStk
        );
        assert_eq!(
            on_c2b_report(
                &r,
                C2bPath::Confirmation,
                false,
                &["600000"],
                StkCouldBe::CompletedWithoutReceipt
            ),
            C2bDecision::ReceiptlessStk
        );
        // Still a duplicate when the receipt is held, whatever is open.
        assert_eq!(
            on_c2b_report(
                &r,
                C2bPath::Confirmation,
                true,
                &["600000"],
                StkCouldBe::Open
            ),
            C2bDecision::Duplicate
        );
        let phone = Msisdn::parse("0708374149").unwrap();
        let other = Msisdn::parse("0711000126").unwrap();
        let hundred = Amount::from_stored(100);
        // `2547 ***** 126` fits 254711000126, not 254708374149.
        assert!(stk_could_be(&r, " inv42", hundred, Some(&other)));
        assert!(!stk_could_be(&r, "INV42", hundred, Some(&phone)));
        assert!(!stk_could_be(&r, "INV43", hundred, Some(&other)));
        assert!(!stk_could_be(
            &r,
            "INV42",
            Amount::from_stored(99),
            Some(&other)
        ));
    }

    #[test]
    fn msisdn_forms() {
        let phone = Msisdn::parse("0708374149").unwrap();
        let digest = sha256_hex("254708374149");
        assert_eq!(
            PayerMsisdn::classify("254708374149"),
            PayerMsisdn::Number(phone.clone())
        );
        let hashed = PayerMsisdn::classify(&digest.to_uppercase());
        assert_eq!(hashed, PayerMsisdn::Sha256(digest.clone()));
        assert_eq!(hashed.number(), None, "a hash is never a phone");
        assert_eq!(hashed.match_known([&phone]), Some(phone.clone()));
        let other = Msisdn::parse("0711000000").unwrap();
        assert_eq!(hashed.match_known([&other]), None);
        let masked = PayerMsisdn::classify("2547 ***** 126");
        assert_eq!(masked.as_given().as_deref(), Some("2547 ***** 126"));
        assert_eq!(masked.match_known([&phone]), None);
        assert_eq!(PayerMsisdn::classify("  "), PayerMsisdn::Absent);
    }

    #[test]
    fn accounts_are_trimmed_cut_and_compared_case_insensitively() {
        assert_eq!(account_key(" inv42 "), "INV42");
        let long = "é".repeat(40);
        let stored = stored_account(&long);
        assert!(stored.len() <= MAX_ACCOUNT_LEN && long.starts_with(&stored));
    }

    #[test]
    fn validation_rules_in_order() {
        let ok = ValidationFacts {
            amount: Some(Cents(10_000)),
            min: Amount::from_stored(1),
            max: Amount::from_stored(150_000),
            msisdn_present: true,
            account_matches_pattern: true,
            account_known: None,
        };
        assert_eq!(validate(&ok), Ok(()));
        let refused = |f: ValidationFacts| validate(&f).unwrap_err().code();
        assert_eq!(
            refused(ValidationFacts {
                account_matches_pattern: false,
                ..ok.clone()
            }),
            "C2B00012"
        );
        assert_eq!(
            refused(ValidationFacts {
                account_known: Some(false),
                ..ok.clone()
            }),
            "C2B00012"
        );
        assert_eq!(
            refused(ValidationFacts {
                amount: Some(Cents(100 * 200_000)),
                ..ok.clone()
            }),
            "C2B00013"
        );
        assert_eq!(
            refused(ValidationFacts {
                amount: Some(Cents(150)),
                ..ok.clone()
            }),
            "C2B00013"
        );
        assert_eq!(
            refused(ValidationFacts {
                msisdn_present: false,
                ..ok
            }),
            "C2B00011"
        );
    }
}
