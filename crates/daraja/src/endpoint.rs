//! The Daraja APIs this client calls, by name: metrics, log lines and errors say which one.

use std::fmt;

/// The Daraja APIs this client calls; names metrics and log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    OAuth,
    StkPush,
    StkQuery,
    C2bRegisterUrl,
    C2bSimulate,
    B2c,
    TransactionStatus,
    AccountBalance,
    Reversal,
    PullRegister,
    PullQuery,
}

impl Api {
    pub const ALL: [Api; 11] = [
        Api::OAuth,
        Api::StkPush,
        Api::StkQuery,
        Api::C2bRegisterUrl,
        Api::C2bSimulate,
        Api::B2c,
        Api::TransactionStatus,
        Api::AccountBalance,
        Api::Reversal,
        Api::PullRegister,
        Api::PullQuery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::OAuth => "oauth",
            Api::StkPush => "stk_push",
            Api::StkQuery => "stk_query",
            Api::C2bRegisterUrl => "c2b_register_url",
            Api::C2bSimulate => "c2b_simulate",
            Api::B2c => "b2c",
            Api::TransactionStatus => "transaction_status",
            Api::AccountBalance => "account_balance",
            Api::Reversal => "reversal",
            Api::PullRegister => "pull_register",
            Api::PullQuery => "pull_query",
        }
    }

    /// Every API but OAuth is a POST that Daraja may act on.
    pub fn is_post(self) -> bool {
        self != Api::OAuth
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
