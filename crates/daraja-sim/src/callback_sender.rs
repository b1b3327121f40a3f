//! Delivering callbacks and results: one POST per copy, recorded with its outcome, never
//! retried (Safaricom does not retry failed callbacks).

use std::time::Duration;

use axum::body::Bytes;

use crate::faults::CallbackFaults;
use crate::journal::{CallbackKind, CallbackRecord, DeliveryOutcome, kept_body};
use crate::{Simulator, lock};

/// A callback about to be sent.
pub(crate) struct Outgoing {
    pub(crate) kind: CallbackKind,
    pub(crate) url: String,
    /// `CheckoutRequestID`, `TransID` or `ConversationID`.
    pub(crate) reference: String,
    /// The exact JSON text (made from a `daraja::wire` type).
    pub(crate) body: String,
}

/// What the receiver did with one POST.
pub(crate) enum PostOutcome {
    Answered { status: u16, body: Bytes },
    Failed(String),
}

impl Simulator {
    /// Sends `out` as the faults say: not at all, late, several times, or to a receiver that is
    /// "down". Returns once every copy is recorded.
    pub(crate) async fn deliver(&self, out: Outgoing, faults: &CallbackFaults) {
        if faults.suppress {
            self.record_callback(
                &out,
                1,
                DeliveryOutcome::Suppressed,
                None,
                Some("not sent: suppressed".into()),
                None,
            );
            return;
        }
        if faults.late {
            tokio::time::sleep(self.config().late_delay).await;
        }
        for copy in 1..=faults.deliveries() {
            if faults.receiver_down {
                self.record_callback(
                    &out,
                    copy,
                    DeliveryOutcome::ReceiverDown,
                    None,
                    Some("receiver down (simulated)".into()),
                    None,
                );
                continue;
            }
            match self
                .post_json(&out.url, &out.body, self.config().delivery_timeout)
                .await
            {
                PostOutcome::Answered { status, body } => {
                    let outcome = if (200..300).contains(&status) {
                        DeliveryOutcome::Delivered
                    } else {
                        DeliveryOutcome::Rejected
                    };
                    self.record_callback(&out, copy, outcome, Some(status), None, Some(&body));
                }
                PostOutcome::Failed(error) => {
                    self.record_callback(
                        &out,
                        copy,
                        DeliveryOutcome::Failed,
                        None,
                        Some(error),
                        None,
                    );
                }
            }
        }
    }

    /// One POST of a JSON body, with a deadline.
    pub(crate) async fn post_json(&self, url: &str, body: &str, deadline: Duration) -> PostOutcome {
        let request = self
            .inner
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(deadline)
            .body(body.to_owned());
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(body) => PostOutcome::Answered { status, body },
                    Err(e) => PostOutcome::Failed(format!("answer could not be read: {e}")),
                }
            }
            Err(e) if e.is_timeout() => {
                PostOutcome::Failed(format!("no answer within {deadline:?}"))
            }
            Err(e) if e.is_connect() => {
                PostOutcome::Failed(format!("could not connect: {}", root_cause(&e)))
            }
            Err(e) => PostOutcome::Failed(root_cause(&e)),
        }
    }

    pub(crate) fn record_callback(
        &self,
        out: &Outgoing,
        copy: u32,
        outcome: DeliveryOutcome,
        http_status: Option<u16>,
        error: Option<String>,
        answer: Option<&[u8]>,
    ) {
        tracing::info!(
            kind = ?out.kind,
            reference = %mpesa_domain::mask_checkout_request_id(&out.reference),
            copy,
            outcome = ?outcome,
            http_status,
            error = error.as_deref().unwrap_or(""),
            "simulator callback"
        );
        let time = self.now();
        lock(&self.inner.callbacks).push_with(|seq| CallbackRecord {
            seq,
            time,
            kind: out.kind,
            url: out.url.clone(),
            reference: out.reference.clone(),
            copy,
            body: kept_body(out.body.as_bytes()),
            outcome,
            http_status,
            error,
            answer: answer.map(kept_body),
        });
        self.notify();
    }
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}
