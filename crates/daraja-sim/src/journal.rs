//! What the simulator received and what it sent, kept in ring buffers of a fixed size so a long
//! soak test cannot grow memory.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

/// Bodies larger than this are kept as a truncated string.
const MAX_KEPT_BODY: usize = 16 * 1024;

/// A bounded log: the oldest record goes when a new one would exceed the capacity. Each record
/// gets a sequence number that keeps growing across evictions.
#[derive(Debug)]
pub(crate) struct Ring<T> {
    capacity: usize,
    items: VecDeque<T>,
    next_seq: u64,
}

impl<T: Clone> Ring<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Ring {
            capacity: capacity.max(1),
            items: VecDeque::new(),
            next_seq: 1,
        }
    }

    /// Adds a record made from its sequence number.
    pub(crate) fn push_with(&mut self, make: impl FnOnce(u64) -> T) -> T {
        let seq = self.next_seq;
        self.next_seq += 1;
        let item = make(seq);
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item.clone());
        item
    }

    pub(crate) fn snapshot(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }

    pub(crate) fn clear(&mut self) {
        self.items.clear();
    }
}

/// A body as it was: JSON kept byte for byte (so `1.00` stays `1.00`), anything else as a
/// (possibly truncated) JSON string.
pub(crate) fn kept_body(bytes: &[u8]) -> Box<RawValue> {
    if bytes.is_empty() {
        return RawValue::from_string("null".into()).expect("null is JSON");
    }
    if bytes.len() <= MAX_KEPT_BODY
        && let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(raw) = RawValue::from_string(text.trim().to_owned())
    {
        return raw;
    }
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .take(MAX_KEPT_BODY)
        .collect();
    serde_json::value::to_raw_value(&text).expect("a string is JSON")
}

/// One request the simulator answered (Daraja paths only; `/simulator/…` is not logged).
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub method: String,
    /// The Daraja path, without any prefix the simulator is nested under.
    pub path: String,
    pub query: Option<String>,
    /// The body as received (JSON kept exactly; anything else as a string).
    pub body: Box<RawValue>,
    pub status: u16,
    pub answer: Box<RawValue>,
    /// How long the answer was held back by a slow-answer fault.
    pub answer_delay_ms: u64,
}

/// What a callback was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackKind {
    /// An STK callback to `CallBackURL`.
    StkCallback,
    C2bValidation,
    C2bConfirmation,
    /// A `Result` to `ResultURL` (B2C, Transaction Status, Account Balance, Reversal).
    Result,
    /// A notification to `QueueTimeOutURL`.
    QueueTimeout,
}

/// How a delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver answered, but not 2xx. Not retried.
    Rejected,
    /// No answer: connection refused, timeout, broken connection. Not retried.
    Failed,
    /// A `receiver_down` fault: recorded as failed without sending.
    ReceiverDown,
    /// A `suppress` fault (or a never-sent scenario): deliberately not sent.
    Suppressed,
}

/// One callback or result the simulator sent (or deliberately did not send).
#[derive(Debug, Clone, Serialize)]
pub struct CallbackRecord {
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub kind: CallbackKind,
    pub url: String,
    /// `CheckoutRequestID` (STK), `TransID` (C2B) or `ConversationID` (results).
    pub reference: String,
    /// 1 for the first copy, 2 for a duplicate…
    pub copy: u32,
    pub body: Box<RawValue>,
    pub outcome: DeliveryOutcome,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    /// The receiver's answer, when there was one.
    pub answer: Option<Box<RawValue>>,
}

impl CallbackRecord {
    /// The body exactly as sent.
    pub fn body_text(&self) -> &str {
        self.body.get()
    }

    pub fn delivered(&self) -> bool {
        self.outcome == DeliveryOutcome::Delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_and_counts_on() {
        let mut r = Ring::new(2);
        for i in 0..5 {
            r.push_with(|seq| (seq, i));
        }
        assert_eq!(r.snapshot(), vec![(4, 3), (5, 4)]);
    }

    #[test]
    fn bodies_are_kept_exactly() {
        assert_eq!(kept_body(br#"{"Value":1.00}"#).get(), r#"{"Value":1.00}"#);
        assert_eq!(kept_body(b"not json").get(), r#""not json""#);
        assert_eq!(kept_body(b"").get(), "null");
        assert!(kept_body(&vec![b'x'; 100_000]).get().len() < 20_000);
    }
}
