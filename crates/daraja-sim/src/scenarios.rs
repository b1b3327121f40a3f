//! What happens to an STK push, chosen by the customer's phone number.
//!
//! | number | outcome |
//! | --- | --- |
//! | 254708374149 | success (0), Safaricom's sandbox test number |
//! | 254700000001 | insufficient funds (1) |
//! | 254700001032 | cancelled by the user (1032) |
//! | 254700001037 | no answer (1037) after the prompt timeout |
//! | 254700002001 | wrong PIN (2001) |
//! | 254700000000 | success, but the callback is never sent (only STK Query can resolve it) |
//! | 254700000002 | success, callback delivered twice |
//! | 254700000003 | success, callback delivered late (after the late delay) |
//! | 254700001019 | transaction expired (1019) |
//! | 254700000017 | rule limited (17) |
//! | 254700002028 | not permitted by product assignment (2028) |
//! | 254700009003 | `"SFC_IC0003"`, a string result code |
//! | any other valid number | the configured default (success) |
//!
//! The other parts of the project (and their README) depend on the first eight numbers.

use serde::Serialize;

use crate::faults::CallbackFaults;

/// Safaricom's sandbox test number: success.
pub const SUCCESS_NUMBER: &str = "254708374149";
pub const INSUFFICIENT_FUNDS_NUMBER: &str = "254700000001";
pub const CANCELLED_NUMBER: &str = "254700001032";
pub const NO_ANSWER_NUMBER: &str = "254700001037";
pub const WRONG_PIN_NUMBER: &str = "254700002001";
/// Success whose callback is never sent.
pub const NO_CALLBACK_NUMBER: &str = "254700000000";
/// Success whose callback is sent twice.
pub const DUPLICATE_CALLBACK_NUMBER: &str = "254700000002";
/// Success whose callback is sent after the late delay.
pub const LATE_CALLBACK_NUMBER: &str = "254700000003";
pub const EXPIRED_NUMBER: &str = "254700001019";
pub const RULE_LIMITED_NUMBER: &str = "254700000017";
pub const NOT_PERMITTED_NUMBER: &str = "254700002028";
pub const OPERATOR_MISSING_NUMBER: &str = "254700009003";
/// B2C: a recipient who is not a registered M-Pesa customer (result `2040`).
pub const UNREGISTERED_RECIPIENT_NUMBER: &str = "254700002040";

/// An STK result: the code (`"0"`, `"1032"`, `"SFC_IC0003"`) and its description as Safaricom
/// writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StkOutcome {
    pub result_code: String,
    pub result_desc: String,
}

impl StkOutcome {
    pub fn new(result_code: impl Into<String>, result_desc: impl Into<String>) -> Self {
        StkOutcome {
            result_code: result_code.into(),
            result_desc: result_desc.into(),
        }
    }

    pub fn success() -> Self {
        Self::new("0", "The service request is processed successfully.")
    }

    pub fn insufficient_funds() -> Self {
        Self::new("1", "The balance is insufficient for the transaction.")
    }

    pub fn cancelled() -> Self {
        Self::new("1032", "Request cancelled by user")
    }

    pub fn no_answer() -> Self {
        Self::new("1037", "No response from user.")
    }

    pub fn wrong_pin() -> Self {
        Self::new("2001", "The initiator information is invalid.")
    }

    pub fn expired() -> Self {
        Self::new("1019", "Transaction has expired.")
    }

    pub fn rule_limited() -> Self {
        Self::new("17", "Rule limited.")
    }

    /// `1025`: the push could not be sent (a prompt longer than 182 characters).
    pub fn push_failed() -> Self {
        Self::new("1025", "An error occurred while sending a push request.")
    }

    pub fn not_permitted() -> Self {
        Self::new(
            "2028",
            "The request is not permitted according to product assignment.",
        )
    }

    pub fn operator_missing() -> Self {
        Self::new("SFC_IC0003", "The operator does not exist.")
    }

    pub fn is_success(&self) -> bool {
        self.result_code == "0"
    }
}

/// When the outcome is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// After the callback delay: the customer acted.
    AfterCallbackDelay,
    /// After the prompt timeout: nobody answered.
    AfterPromptTimeout,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scenario {
    pub msisdn: String,
    pub outcome: StkOutcome,
    pub resolution: Resolution,
    /// How its callback misbehaves (on top of any faults set).
    pub callback: CallbackFaults,
    pub description: String,
}

impl Scenario {
    pub fn new(msisdn: &str, outcome: StkOutcome, description: &str) -> Self {
        Scenario {
            msisdn: msisdn.to_owned(),
            outcome,
            resolution: Resolution::AfterCallbackDelay,
            callback: CallbackFaults::default(),
            description: description.to_owned(),
        }
    }
}

/// The scenario table: outcomes by phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScenarioTable {
    entries: Vec<Scenario>,
}

impl Default for ScenarioTable {
    fn default() -> Self {
        Self::documented()
    }
}

impl ScenarioTable {
    /// The table in this module's documentation and the crate README.
    pub fn documented() -> Self {
        let entries = vec![
            Scenario::new(
                SUCCESS_NUMBER,
                StkOutcome::success(),
                "success (0): Safaricom's sandbox test number",
            ),
            Scenario::new(
                INSUFFICIENT_FUNDS_NUMBER,
                StkOutcome::insufficient_funds(),
                "insufficient funds (1)",
            ),
            Scenario::new(
                CANCELLED_NUMBER,
                StkOutcome::cancelled(),
                "cancelled by the user (1032)",
            ),
            Scenario {
                resolution: Resolution::AfterPromptTimeout,
                ..Scenario::new(
                    NO_ANSWER_NUMBER,
                    StkOutcome::no_answer(),
                    "no answer (1037) after the prompt timeout",
                )
            },
            Scenario::new(
                WRONG_PIN_NUMBER,
                StkOutcome::wrong_pin(),
                "wrong PIN (2001)",
            ),
            Scenario {
                callback: CallbackFaults {
                    suppress: true,
                    ..CallbackFaults::default()
                },
                ..Scenario::new(
                    NO_CALLBACK_NUMBER,
                    StkOutcome::success(),
                    "success, but the callback is never sent (only STK Query can resolve it)",
                )
            },
            Scenario {
                callback: CallbackFaults {
                    copies: 2,
                    ..CallbackFaults::default()
                },
                ..Scenario::new(
                    DUPLICATE_CALLBACK_NUMBER,
                    StkOutcome::success(),
                    "success, callback delivered twice",
                )
            },
            Scenario {
                callback: CallbackFaults {
                    late: true,
                    ..CallbackFaults::default()
                },
                ..Scenario::new(
                    LATE_CALLBACK_NUMBER,
                    StkOutcome::success(),
                    "success, callback delivered late (after the late delay)",
                )
            },
            Scenario::new(
                EXPIRED_NUMBER,
                StkOutcome::expired(),
                "transaction expired (1019)",
            ),
            Scenario::new(
                RULE_LIMITED_NUMBER,
                StkOutcome::rule_limited(),
                "rule limited (17)",
            ),
            Scenario::new(
                NOT_PERMITTED_NUMBER,
                StkOutcome::not_permitted(),
                "not permitted by product assignment (2028)",
            ),
            Scenario::new(
                OPERATOR_MISSING_NUMBER,
                StkOutcome::operator_missing(),
                "\"SFC_IC0003\": a string result code",
            ),
        ];
        ScenarioTable { entries }
    }

    /// A table with no rows: every number gets the default outcome.
    pub fn empty() -> Self {
        ScenarioTable {
            entries: Vec::new(),
        }
    }

    /// Adds a row, replacing any row for the same number.
    pub fn insert(&mut self, scenario: Scenario) {
        self.entries.retain(|s| s.msisdn != scenario.msisdn);
        self.entries.push(scenario);
    }

    pub fn lookup(&self, msisdn: &str) -> Option<&Scenario> {
        self.entries.iter().find(|s| s.msisdn == msisdn)
    }

    pub fn entries(&self) -> &[Scenario] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_numbers_other_parts_of_the_project_rely_on() {
        let t = ScenarioTable::documented();
        let code = |n: &str| t.lookup(n).unwrap().outcome.result_code.clone();
        assert_eq!(code("254708374149"), "0");
        assert_eq!(code("254700000001"), "1");
        assert_eq!(code("254700001032"), "1032");
        assert_eq!(code("254700001037"), "1037");
        assert_eq!(
            t.lookup("254700001037").unwrap().resolution,
            Resolution::AfterPromptTimeout
        );
        assert_eq!(code("254700002001"), "2001");
        assert!(t.lookup("254700000000").unwrap().callback.suppress);
        assert_eq!(t.lookup("254700000002").unwrap().callback.copies, 2);
        assert!(t.lookup("254700000003").unwrap().callback.late);
        assert!(t.lookup("254712345678").is_none());
        for s in t.entries() {
            assert_eq!(
                mpesa_domain::Msisdn::parse(&s.msisdn).unwrap().as_str(),
                s.msisdn,
                "{}",
                s.msisdn
            );
        }
    }
}
