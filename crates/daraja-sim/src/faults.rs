//! Fault injection: callbacks that come twice, late, never, before the synchronous answer, with
//! string codes, to a receiver that is down, to QueueTimeOutURL; synchronous answers that are
//! slow; endpoints that answer 500/503 for the next N requests.
//!
//! Faults are set globally, per phone number, or per endpoint, at start ([`crate::SimConfig`])
//! and at runtime (`POST /simulator/faults` or [`crate::Simulator::set_faults`]). The faults
//! that apply to one payment are the scenario's own, plus the global ones, plus the number's:
//! flags add up, counts and delays take the largest.

use std::collections::BTreeMap;

use daraja::endpoint::Api;
use serde::{Deserialize, Serialize};

/// How the callbacks (and results) of a payment misbehave. Everything off is a well-behaved
/// Safaricom. JSON field names are the Rust ones; absent fields are off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackFaults {
    /// Never send the callback or result. The outcome still happens: STK Query, Transaction
    /// Status and the inspection paths see it.
    pub suppress: bool,
    /// Send each callback this many times (0 and 1 both mean once).
    pub copies: u32,
    /// Send it after the configured late delay, on top of the usual delay.
    pub late: bool,
    /// STK Push: settle the payment and deliver its callback before answering the push.
    pub before_sync_answer: bool,
    /// Answer the request synchronously only after this many milliseconds; the payment goes
    /// ahead and its callback is sent anyway (a client that gives up sees "outcome unknown").
    pub slow_answer_ms: u64,
    /// STK Query about the payment: answer only after this many milliseconds (a slow Daraja
    /// while a payment is reconciled).
    pub slow_query_ms: u64,
    /// `ResultCode` (and `ResultType`) as JSON strings (`"0"`) instead of numbers.
    pub string_result_code: bool,
    /// Act as if the receiver were down: the delivery is recorded as failed and, like
    /// Safaricom, not retried. (A receiver that is really down is recorded the same way.)
    pub receiver_down: bool,
    /// Initiator APIs: send the notification to QueueTimeOutURL instead of ResultURL; the
    /// transaction itself still executes (the outcome is unknown to the caller).
    pub queue_timeout: bool,
    /// C2B: leave `MiddleName` and `LastName` out of validation and confirmation bodies, as
    /// production captures since 2022 do.
    pub omit_c2b_names: bool,
}

impl CallbackFaults {
    /// These faults and `other` together: flags add up, numbers take the larger.
    pub fn combine(&self, other: &CallbackFaults) -> CallbackFaults {
        CallbackFaults {
            suppress: self.suppress || other.suppress,
            copies: self.copies.max(other.copies),
            late: self.late || other.late,
            before_sync_answer: self.before_sync_answer || other.before_sync_answer,
            slow_answer_ms: self.slow_answer_ms.max(other.slow_answer_ms),
            slow_query_ms: self.slow_query_ms.max(other.slow_query_ms),
            string_result_code: self.string_result_code || other.string_result_code,
            receiver_down: self.receiver_down || other.receiver_down,
            queue_timeout: self.queue_timeout || other.queue_timeout,
            omit_c2b_names: self.omit_c2b_names || other.omit_c2b_names,
        }
    }

    /// How many times each callback is sent.
    pub fn deliveries(&self) -> u32 {
        self.copies.max(1)
    }
}

/// Which requests an endpoint fault hits: every endpoint's, or one Daraja API's (named as the
/// client names it, [`Api`]). In JSON: `"any"` or the API's name (`"stk_push"`, `"b2c"`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Any,
    Only(Api),
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Any => "any",
            Endpoint::Only(api) => api.as_str(),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        if name == "any" {
            return Some(Endpoint::Any);
        }
        Api::ALL
            .into_iter()
            .find(|api| api.as_str() == name)
            .map(Endpoint::Only)
    }

    fn hits(self, api: Api) -> bool {
        self == Endpoint::Any || self == Endpoint::Only(api)
    }
}

impl From<Api> for Endpoint {
    fn from(api: Api) -> Self {
        Endpoint::Only(api)
    }
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Endpoint::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown endpoint {name:?}: \"any\" or a Daraja API ({})",
                Api::ALL.map(Api::as_str).join(", ")
            ))
        })
    }
}

/// How a failing endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureAnswer {
    /// HTTP 500 `500.003.02` "Error Occurred: Spike Arrest Violation".
    SpikeArrest,
    /// HTTP 500 `500.003.02` "System is busy. Please try again in few minutes.".
    SystemBusy,
    /// HTTP 500 `500.003.03` "Quota Violation".
    QuotaViolation,
    /// HTTP 500 `500.003.1001` "Service is currently unreachable. Please try again later.".
    ServiceUnreachable,
    /// HTTP 503 with an empty body.
    Empty503,
    /// HTTP 500 with an empty body.
    Empty500,
    /// Any status and envelope.
    Custom {
        status: u16,
        error_code: String,
        error_message: String,
    },
}

/// "The next `count` requests to `endpoint` answer `answer`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointFailure {
    pub endpoint: Endpoint,
    pub count: u32,
    pub answer: FailureAnswer,
}

/// A kind of callback, for faults that apply to one API's callbacks or results only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// STK callbacks.
    Stk,
    /// C2B validation requests and confirmations (simulated, injected, or of an STK payment).
    C2b,
    /// B2C results.
    B2c,
    TransactionStatus,
    AccountBalance,
    Reversal,
}

/// Every fault in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// For every payment.
    pub global: CallbackFaults,
    /// For payments from / to one phone number (`2547…`, `2541…`).
    pub numbers: BTreeMap<String, CallbackFaults>,
    /// For the callbacks or results of one API, e.g. `{"reversal": {"queue_timeout": true}}`.
    pub flows: BTreeMap<Flow, CallbackFaults>,
    /// Endpoints that fail for their next requests; counts go down as they are used.
    pub endpoints: Vec<EndpointFailure>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Faults::default()
    }

    /// Sets the global faults.
    pub fn with_global(mut self, faults: CallbackFaults) -> Self {
        self.global = faults;
        self
    }

    /// Sets the faults of one phone number.
    pub fn with_number(mut self, msisdn: impl Into<String>, faults: CallbackFaults) -> Self {
        self.numbers.insert(msisdn.into(), faults);
        self
    }

    /// Makes the next `count` requests to `endpoint` answer `answer`.
    pub fn fail_next(
        mut self,
        endpoint: impl Into<Endpoint>,
        count: u32,
        answer: FailureAnswer,
    ) -> Self {
        let endpoint = endpoint.into();
        self.endpoints.push(EndpointFailure {
            endpoint,
            count,
            answer,
        });
        self
    }

    /// Sets the faults of one API's callbacks or results.
    pub fn with_flow(mut self, flow: Flow, faults: CallbackFaults) -> Self {
        self.flows.insert(flow, faults);
        self
    }

    /// The global faults plus those of `msisdn`.
    pub fn for_number(&self, msisdn: &str) -> CallbackFaults {
        match self.numbers.get(msisdn) {
            Some(f) => self.global.combine(f),
            None => self.global.clone(),
        }
    }

    /// The global faults, those of `flow`, and those of `msisdn` (when the flow has a customer).
    pub fn for_flow(&self, flow: Flow, msisdn: Option<&str>) -> CallbackFaults {
        let base = match msisdn {
            Some(m) => self.for_number(m),
            None => self.global.clone(),
        };
        match self.flows.get(&flow) {
            Some(f) => base.combine(f),
            None => base,
        }
    }

    /// Uses up one failure for a request to `api`, if any is left.
    pub(crate) fn take_endpoint_failure(&mut self, api: Api) -> Option<FailureAnswer> {
        let index = self
            .endpoints
            .iter()
            .position(|f| f.count > 0 && f.endpoint.hits(api))?;
        let failure = &mut self.endpoints[index];
        failure.count -= 1;
        let answer = failure.answer.clone();
        if failure.count == 0 {
            self.endpoints.remove(index);
        }
        Some(answer)
    }

    /// Phone-number keys in the 12-digit form, so `0700…` and `+254700…` find the same entry.
    pub(crate) fn normalised(mut self) -> Self {
        self.numbers = self
            .numbers
            .into_iter()
            .map(|(k, v)| match mpesa_domain::Msisdn::parse(&k) {
                Ok(m) => (m.as_str().to_owned(), v),
                Err(_) => (k, v),
            })
            .collect();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_failures_are_used_up() {
        let mut f = Faults::none().fail_next(Api::StkPush, 2, FailureAnswer::SpikeArrest);
        assert_eq!(f.take_endpoint_failure(Api::StkQuery), None);
        assert_eq!(
            f.take_endpoint_failure(Api::StkPush),
            Some(FailureAnswer::SpikeArrest)
        );
        assert_eq!(
            f.take_endpoint_failure(Api::StkPush),
            Some(FailureAnswer::SpikeArrest)
        );
        assert_eq!(f.take_endpoint_failure(Api::StkPush), None);
        assert!(f.endpoints.is_empty());
        let mut any = Faults::none().fail_next(Endpoint::Any, 1, FailureAnswer::Empty503);
        assert_eq!(
            any.take_endpoint_failure(Api::B2c),
            Some(FailureAnswer::Empty503)
        );
    }

    #[test]
    fn number_faults_add_to_global_ones() {
        let f = Faults::none()
            .with_global(CallbackFaults {
                copies: 2,
                ..Default::default()
            })
            .with_number(
                "0712345678",
                CallbackFaults {
                    suppress: true,
                    copies: 1,
                    ..Default::default()
                },
            )
            .normalised();
        let n = f.for_number("254712345678");
        assert!(n.suppress);
        assert_eq!(n.deliveries(), 2);
        assert!(!f.for_number("254700000009").suppress);
    }

    #[test]
    fn json_shape() {
        let f: Faults = serde_json::from_str(
            r#"{"global":{"suppress":true},"numbers":{"254708374149":{"copies":3}},"endpoints":[{"endpoint":"stk_push","count":1,"answer":"spike_arrest"},{"endpoint":"any","count":1,"answer":{"custom":{"status":500,"error_code":"500.003.1001","error_message":"x"}}}]}"#,
        )
        .unwrap();
        assert!(f.global.suppress);
        assert_eq!(f.numbers["254708374149"].copies, 3);
        assert_eq!(f.endpoints.len(), 2);
        assert_eq!(f.endpoints[0].endpoint, Endpoint::Only(Api::StkPush));
        assert_eq!(f.endpoints[1].endpoint, Endpoint::Any);
        // Every API is named in JSON as the client names it, both ways.
        for api in Api::ALL {
            let json = serde_json::to_string(&Endpoint::from(api)).unwrap();
            assert_eq!(json, format!("\"{}\"", api.as_str()));
            assert_eq!(
                serde_json::from_str::<Endpoint>(&json).unwrap(),
                Endpoint::Only(api)
            );
        }
        assert!(
            serde_json::from_str::<Faults>(
                r#"{"endpoints":[{"endpoint":"stk_pushh","count":1,"answer":"spike_arrest"}]}"#
            )
            .is_err(),
            "an unknown endpoint is refused"
        );
        assert!(
            serde_json::from_str::<Faults>(r#"{"global":{"supress":true}}"#).is_err(),
            "typos are refused"
        );
    }
}
