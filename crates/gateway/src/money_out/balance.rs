//! Account Balance: asked on demand through the initiator layer; the answer comes by callback,
//! so what is shown is the last answer and when it came.

use mpesa_domain::RequestStatus;
use mpesa_storage::{InitiatorRequest, StorageError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::initiator::{Ask, Initiator, InitiatorError};
use crate::ids::rfc3339;

pub const PURPOSE: &str = "balance";

#[derive(Clone)]
pub struct Balances {
    initiator: Initiator,
    /// The shortcodes asked about: the B2C account, and the paybill/till that receives.
    short_codes: Vec<String>,
}

/// One account in an Account Balance answer (the shape `initiator::result_fields` stores).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BalanceAccount {
    #[schema(example = "Utility Account")]
    pub name: String,
    #[schema(example = "KES")]
    pub currency: String,
    /// Cents: 150000 is KSh 1,500.
    pub current_cents: i64,
    pub available_cents: i64,
}

/// The last answer about one shortcode's accounts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BalanceView {
    pub short_code: String,
    /// `Working Account`, `Utility Account`… as Safaricom names them.
    #[schema(value_type = Option<Vec<BalanceAccount>>)]
    pub accounts: Option<Value>,
    /// When the last answer came.
    pub answered_at: Option<String>,
    /// When it was last asked, and what became of that question.
    pub asked_at: Option<String>,
    pub last_request_status: Option<String>,
    pub last_error: Option<String>,
}

impl Balances {
    pub fn new(initiator: Initiator, short_codes: Vec<String>) -> Self {
        let mut short_codes = short_codes;
        short_codes.dedup();
        Balances {
            initiator,
            short_codes,
        }
    }

    pub fn short_codes(&self) -> &[String] {
        &self.short_codes
    }

    /// Asks Account Balance for every shortcode; the answers come by callback.
    pub async fn ask(&self) -> Result<Vec<InitiatorRequest>, InitiatorError> {
        let mut asked = Vec::new();
        for code in &self.short_codes {
            asked.push(
                self.initiator
                    .submit(
                        PURPOSE,
                        Some(code),
                        Ask::AccountBalance {
                            party_a: Some(code.clone()),
                        },
                    )
                    .await?,
            );
        }
        Ok(asked)
    }

    /// The last answer for each shortcode.
    pub async fn latest(&self) -> Result<Vec<BalanceView>, StorageError> {
        let mut out = Vec::new();
        for code in &self.short_codes {
            let requests = self.initiator.requests_for(PURPOSE, code).await?;
            let answered = requests
                .iter()
                .rev()
                .find(|r| r.status == RequestStatus::Completed && r.result.is_some());
            let last = requests.last();
            out.push(BalanceView {
                short_code: code.clone(),
                accounts: answered
                    .and_then(|r| r.result.as_deref())
                    .and_then(|r| serde_json::from_str::<Value>(r).ok())
                    .map(|v| v["accounts"].clone()),
                answered_at: answered.and_then(|r| r.finalized_at).map(rfc3339),
                asked_at: last.map(|r| rfc3339(r.created_at)),
                last_request_status: last.map(|r| r.status.as_str().to_owned()),
                last_error: last
                    .filter(|r| r.status == RequestStatus::Failed)
                    .and_then(|r| r.result_desc.clone()),
            });
        }
        Ok(out)
    }

    /// The available balance of the B2C utility account in the last answer, in cents.
    pub async fn b2c_utility_cents(
        &self,
        b2c_short_code: &str,
    ) -> Result<Option<i64>, StorageError> {
        Ok(self
            .latest()
            .await?
            .into_iter()
            .find(|b| b.short_code == b2c_short_code)
            .and_then(|b| b.accounts)
            .and_then(|a| {
                a.as_array()?
                    .iter()
                    .find(|x| {
                        x["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case("Utility Account"))
                    })
                    .and_then(|x| x["available_cents"].as_i64())
            }))
    }
}
