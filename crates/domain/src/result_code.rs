//! What Daraja's result codes mean for a payment.
//!
//! `ResultCode` arrives as a number in callbacks and as a string in STK Query answers, and some
//! codes are not numeric at all (`SFC_IC0003`). It is kept as normalised text and decided on by
//! value, never by the free-text `ResultDesc`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::payment::FinalOutcome;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResultCode(String);

/// What a callback's result code settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackVerdict {
    Final(FinalOutcome),
}

/// What an STK Query answer's result code tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryVerdict {
    Final(FinalOutcome),
    /// `4999`, or a code we do not know: ask again later. Treating an unknown code as final has
    /// booked paid orders as failed for others.
    StillProcessing,
}

/// Codes that end a payment unsuccessfully (docs and observed).
const FINAL_FAILURES: &[&str] = &[
    "1",
    "2",
    "3",
    "4",
    "8",
    "17",
    "26",
    "1001",
    "1025",
    "9999",
    "2001",
    "2028",
    "8006",
    "SFC_IC0003",
];

impl ResultCode {
    pub const SUCCESS: &'static str = "0";
    pub const STILL_PROCESSING: &'static str = "4999";

    /// Normalises `0`, `"0"`, `" 0 "` and `"0000"`-free forms to one text.
    pub fn new(raw: impl AsRef<str>) -> Self {
        let t = raw.as_ref().trim();
        // Numeric codes are compared by value: "01" and "1" are the same code.
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            let stripped = t.trim_start_matches('0');
            return ResultCode(if stripped.is_empty() {
                "0".into()
            } else {
                stripped.into()
            });
        }
        ResultCode(t.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_success(&self) -> bool {
        self.0 == Self::SUCCESS
    }

    fn final_outcome(&self) -> Option<FinalOutcome> {
        match self.0.as_str() {
            "0" => Some(FinalOutcome::Completed),
            "1032" => Some(FinalOutcome::Cancelled),
            "1037" | "1019" => Some(FinalOutcome::TimedOut),
            code if FINAL_FAILURES.contains(&code) => Some(FinalOutcome::Failed),
            _ => None,
        }
    }

    /// A callback is Safaricom's final word: an unknown non-zero code is a failure.
    pub fn callback_verdict(&self) -> CallbackVerdict {
        CallbackVerdict::Final(self.final_outcome().unwrap_or(FinalOutcome::Failed))
    }

    /// A query answer may be provisional: unknown codes mean "ask again".
    pub fn query_verdict(&self) -> QueryVerdict {
        match self.final_outcome() {
            Some(outcome) => QueryVerdict::Final(outcome),
            None => QueryVerdict::StillProcessing,
        }
    }

    /// A short reason a customer or an admin can read.
    pub fn describe(&self) -> &'static str {
        match self.0.as_str() {
            "0" => "paid",
            "1" => "insufficient M-Pesa balance",
            "2" => "amount below the M-Pesa minimum",
            "3" => "amount above the M-Pesa maximum",
            "4" => "would exceed the daily M-Pesa limit",
            "8" => "would exceed the maximum M-Pesa balance",
            "17" => "same amount sent to this number too recently; wait two minutes",
            "26" => "M-Pesa is busy; try again later",
            "1001" => "another M-Pesa session is open on the phone; try again in a minute",
            "1019" => "the payment request expired",
            "1025" | "9999" => "the payment prompt could not be sent",
            "1032" => "cancelled on the phone",
            "1037" => "the phone could not be reached or did not answer",
            "2001" => "wrong M-Pesa PIN",
            "2028" | "SFC_IC0003" => "this shortcode is not set up for this kind of payment",
            "8006" => "the M-Pesa PIN is locked",
            "4999" => "still being processed",
            _ => "declined by M-Pesa",
        }
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ResultCode {
    fn from(s: &str) -> Self {
        ResultCode::new(s)
    }
}

impl From<i64> for ResultCode {
    fn from(n: i64) -> Self {
        ResultCode::new(n.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_strings_are_one_code() {
        assert_eq!(ResultCode::from(0), ResultCode::from("0"));
        assert_eq!(ResultCode::from("1032"), ResultCode::from(1032));
        assert_eq!(ResultCode::from(" 1 "), ResultCode::from("01"));
        assert_eq!(ResultCode::from("SFC_IC0003").as_str(), "SFC_IC0003");
    }

    #[test]
    fn callbacks_are_final_queries_may_not_be() {
        use FinalOutcome::*;
        let cases = [
            ("0", Completed, QueryVerdict::Final(Completed)),
            ("1", Failed, QueryVerdict::Final(Failed)),
            ("1032", Cancelled, QueryVerdict::Final(Cancelled)),
            ("1037", TimedOut, QueryVerdict::Final(TimedOut)),
            ("1019", TimedOut, QueryVerdict::Final(TimedOut)),
            ("2001", Failed, QueryVerdict::Final(Failed)),
            ("SFC_IC0003", Failed, QueryVerdict::Final(Failed)),
            ("4999", Failed, QueryVerdict::StillProcessing),
            ("12345", Failed, QueryVerdict::StillProcessing),
        ];
        for (code, cb, q) in cases {
            let code = ResultCode::from(code);
            assert_eq!(
                code.callback_verdict(),
                CallbackVerdict::Final(cb),
                "{code}"
            );
            assert_eq!(code.query_verdict(), q, "{code}");
        }
    }
}
