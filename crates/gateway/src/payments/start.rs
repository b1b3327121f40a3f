//! Starting a payment: the one operation behind the merchant API, the dashboard, the Telegram
//! bot and the pay page. The doors only translate their input into a [`StartPayment`] and
//! [`Started`] into their answer; the rules are here: the idempotency key (a retry gets the
//! first answer, or resumes the first request's payment), one open prompt per phone for the
//! doors customers use, no prompt for a request made long ago, the generated reference.

use mpesa_domain::{AccountReference, Amount, Description, Lang, Msisdn, PaymentStatus};
use mpesa_storage::{
    CreatePaymentResult, KeyClaim, NewPayment, Payment, PaymentSource, RateLimit, StartRules,
    StoredResponse,
};
use serde_json::json;

use super::idempotency::{IdempotencyKey, answer};
use super::service::{PaymentError, Payments, PushOutcome, refusal};
use super::view::PaymentView;
use crate::ids::{new_id, random_token};

/// A request made this long ago starts no payment: a prompt for something the customer asked
/// for long ago (a `/pay` sent while the bot was down, say) would surprise them.
pub const STALE_AFTER_MS: i64 = 10 * 60 * 1000;

/// A payment request whose every field has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPaymentRequest {
    pub phone: Msisdn,
    pub amount: Amount,
    /// Generated (`PAY…`) when absent.
    pub reference: Option<AccountReference>,
    /// `Payment <reference>` when absent.
    pub description: Option<Description>,
    pub customer_email: Option<String>,
    pub telegram_chat_id: Option<i64>,
    pub metadata: Option<serde_json::Value>,
    /// The payment link it is made through (the pay page's payments).
    pub payment_link_id: Option<String>,
    /// The language the customer chose (the pay page's), for their receipts.
    pub customer_language: Option<Lang>,
}

/// Who asked, through which door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The merchant API, with the API key's id.
    ApiKey(String),
    /// An admin on the dashboard.
    Dashboard { username: String },
    /// A customer's Telegram chat; `sent_at_ms` is when they sent the command.
    TelegramChat {
        chat_id: i64,
        sent_at_ms: Option<i64>,
    },
    /// The public pay page of a payment link.
    PayPage { link_id: String, single_use: bool },
}

impl Origin {
    pub fn source(&self) -> PaymentSource {
        match self {
            Origin::ApiKey(_) => PaymentSource::Api,
            Origin::Dashboard { .. } => PaymentSource::Dashboard,
            Origin::TelegramChat { .. } => PaymentSource::Telegram,
            Origin::PayPage { .. } => PaymentSource::PayPage,
        }
    }

    fn api_key_id(&self) -> Option<String> {
        match self {
            Origin::ApiKey(id) => Some(id.clone()),
            _ => None,
        }
    }

    /// Doors that customers use start one prompt at a time per phone; the merchant API and the
    /// dashboard decide for themselves.
    fn one_open_per_phone(&self) -> bool {
        matches!(self, Origin::TelegramChat { .. } | Origin::PayPage { .. })
    }

    /// A single-use link takes one prompt at a time, and none once paid: two prompts to two
    /// phones could both be paid.
    fn one_open_per_link(&self) -> bool {
        matches!(
            self,
            Origin::PayPage {
                single_use: true,
                ..
            }
        )
    }

    /// An API client retrying gets the first answer again (HTTP semantics); the other doors
    /// resume the first request's payment instead ([`Started::Again`]).
    fn replays_answers(&self) -> bool {
        matches!(self, Origin::ApiKey(_))
    }

    fn sent_at_ms(&self) -> Option<i64> {
        match self {
            Origin::TelegramChat { sent_at_ms, .. } => *sent_at_ms,
            _ => None,
        }
    }
}

/// When the push is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushWhen {
    /// At once, in [`Payments::start`].
    Now,
    /// By the door, with [`Payments::send_push`], once it has shown the customer where the
    /// payment's status will be (the bot's status message must exist before the prompt, so
    /// that a payment without one was never pushed).
    ByDoor,
}

/// One request to start a payment.
#[derive(Debug, Clone)]
pub struct StartPayment {
    pub request: NewPaymentRequest,
    pub origin: Origin,
    pub idempotency: Option<IdempotencyKey>,
    pub push: PushWhen,
    /// Limits counted, one hit each, in the transaction that stores the payment (after the
    /// one-open-prompt rule): the pay page's per phone, link and client address.
    pub limits: Vec<RateLimit>,
}

/// Why a payment was not started.
#[derive(Debug, Clone, PartialEq)]
pub enum StartRefused {
    /// Another payment to this phone is still open (for doors that allow one at a time).
    OpenPayment(Box<Payment>),
    /// The request was made longer ago than [`STALE_AFTER_MS`].
    Stale,
    /// One of [`StartPayment::limits`] is full until then (Unix ms).
    Limited { retry_at: i64 },
    /// A single-use link is paid (`None`), or this payment through it is still open.
    LinkTaken(Option<Box<Payment>>),
}

/// What came of a [`StartPayment`].
// Returned once per request and matched on at once: boxing the push's outcome would only add
// noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Started {
    /// Stored, then pushed ([`PushWhen::Now`]): what came of the push. Its answer
    /// ([`start_answer`]) is remembered for the key.
    Pushed(PushOutcome),
    /// Stored, not pushed yet ([`PushWhen::ByDoor`]).
    Stored(Box<Payment>),
    /// The same request again, answered before: this answer again.
    Answered(StoredResponse),
    /// The same request again, from a door that resumes rather than replays: its payment.
    Again(Box<Payment>),
    /// The same request again while its payment is still `initiated`: the first request is
    /// running, or its process died before the push's outcome was known (it is never pushed
    /// again; the reconciler resolves it).
    InProgress {
        payment_id: String,
    },
    /// The key was used with another request.
    KeyReused,
    Refused(StartRefused),
}

/// The answer of a start whose push was tried, as the API gives it and the key remembers it:
/// `201` with the payment, or `502 daraja_refused` with the payment (now `rejected`).
pub fn start_answer(outcome: &PushOutcome) -> StoredResponse {
    match outcome {
        PushOutcome::Accepted(p) | PushOutcome::Unknown { payment: p, .. } => {
            answer(201, &PaymentView::from(p))
        }
        PushOutcome::Refused { payment, error } => {
            let (code, message) = refusal(error);
            // The shape of every API error body (`http::error`), with the payment.
            answer(
                502,
                &json!({ "error": {
                    "code": "daraja_refused",
                    "message": format!("Daraja refused the request: {message}"),
                    "daraja_error_code": code,
                    "payment": PaymentView::from(payment),
                }}),
            )
        }
    }
}

impl Payments {
    /// Starts a payment: stores it as `initiated` (with its idempotency key) before anything is
    /// sent to Daraja, then pushes it (or leaves that to the door, see [`PushWhen`]).
    ///
    /// The one-open-prompt rule and the limits are checked by storage in the transaction that
    /// stores the payment ([`StartRules`]), so that instances sharing the database cannot both
    /// push to one phone.
    pub async fn start(&self, start: StartPayment) -> Result<Started, PaymentError> {
        let StartPayment {
            request,
            origin,
            idempotency,
            push,
            limits,
        } = start;
        if origin.one_open_per_phone() || origin.sent_at_ms().is_some() || !limits.is_empty() {
            // The same request again skips the rules: they held when it was first made.
            if let Some(key) = &idempotency
                && let Some(found) = self.idempotency.look_up(key).await?
            {
                return self.same_request(found, &origin, key).await;
            }
            if origin
                .sent_at_ms()
                .is_some_and(|at| at > 0 && self.clock.now_ms() - at > STALE_AFTER_MS)
            {
                return Ok(Started::Refused(StartRefused::Stale));
            }
        }
        let now = self.clock.now_ms();
        let reference = request.reference.unwrap_or_else(|| {
            AccountReference::parse(&format!("PAY{}", random_token(9).to_ascii_uppercase()))
                .expect("a generated reference is valid")
        });
        let description = request.description.unwrap_or_else(|| {
            Description::parse(&format!("Payment {}", reference.as_str()))
                .expect("a generated description is valid")
        });
        // A phone linked to a Telegram chat gets its receipt there too.
        let telegram_chat_id = match request.telegram_chat_id {
            Some(chat) => Some(chat),
            None if self.plan.telegram => self
                .storage
                .find_telegram_chat_by_phone(request.phone.as_str())
                .await?
                .filter(|link| link.blocked_at.is_none())
                .map(|link| link.chat_id),
            None => None,
        };
        let new = NewPayment {
            id: new_id("pay"),
            phone: request.phone,
            amount: request.amount,
            reference: reference.as_str().to_owned(),
            description: description.as_str().to_owned(),
            customer_email: request.customer_email,
            telegram_chat_id,
            metadata: request.metadata.map(|m| m.to_string()),
            api_key_id: origin.api_key_id(),
            source: origin.source(),
            created_at: now,
            next_check_at: now + self.settings.reconcile_after_ms,
            payment_link_id: request.payment_link_id,
            customer_language: request.customer_language,
            rules: StartRules {
                one_open_per_phone: origin.one_open_per_phone(),
                one_open_per_link: origin.one_open_per_link(),
                limits,
            },
        };
        let claim = idempotency.as_ref().map(|k| k.claim(now));
        let payment = match self.storage.create_payment(new, claim).await? {
            CreatePaymentResult::Created(p) => p,
            CreatePaymentResult::OpenPayment(open) => {
                return Ok(Started::Refused(StartRefused::OpenPayment(open)));
            }
            CreatePaymentResult::Limited { retry_at } => {
                return Ok(Started::Refused(StartRefused::Limited { retry_at }));
            }
            CreatePaymentResult::LinkTaken(open) => {
                return Ok(Started::Refused(StartRefused::LinkTaken(open)));
            }
            // The key was claimed before: nothing of this request was written.
            other => {
                let found = match other {
                    CreatePaymentResult::Replay(r) => KeyClaim::Answered(r),
                    CreatePaymentResult::InProgress { payment_id } => KeyClaim::Running {
                        record_id: payment_id,
                    },
                    _ => KeyClaim::Reused,
                };
                let key = idempotency
                    .as_ref()
                    .expect("only a request with a key finds one");
                return self.same_request(found, &origin, key).await;
            }
        };
        self.metrics.inc(
            "mpesa_gateway_payments_created_total",
            &[("source", payment.source.as_str())],
        );
        tracing::info!(payment_id = %payment.id, phone = %payment.phone.as_ref().map(|m| m.masked()).unwrap_or_default(), amount = payment.amount.shillings(), source = payment.source.as_str(), "payment created");
        if push == PushWhen::ByDoor {
            return Ok(Started::Stored(Box::new(payment)));
        }
        // The push and the answer kept for the key, together on their own task.
        let key = idempotency.filter(|_| origin.replays_answers());
        let outcome = self
            .on_own_task(move |this| async move {
                let outcome = this.push_once(payment).await?;
                if let Some(key) = &key {
                    this.idempotency
                        .remember(key, &start_answer(&outcome))
                        .await;
                }
                Ok(outcome)
            })
            .await?;
        Ok(Started::Pushed(outcome))
    }

    /// A request whose key was claimed before.
    async fn same_request(
        &self,
        found: KeyClaim,
        origin: &Origin,
        key: &IdempotencyKey,
    ) -> Result<Started, PaymentError> {
        let payment_id = match found {
            KeyClaim::Claimed => unreachable!("a claim found by another request is not ours"),
            KeyClaim::Answered(answer) => return Ok(Started::Answered(answer)),
            KeyClaim::Reused => return Ok(Started::KeyReused),
            KeyClaim::Running { record_id } => record_id,
        };
        let Some(payment) = self.storage.get_payment(&payment_id).await? else {
            // Claimed in the transaction that stores the payment: only a deleted one is missing.
            return Ok(Started::InProgress { payment_id });
        };
        if !origin.replays_answers() {
            tracing::info!(%payment_id, "the same request again; resuming its payment");
            return Ok(Started::Again(Box::new(payment)));
        }
        // The first request is still running, or its process died after storing the payment:
        // once the payment has left `initiated`, or is held for a person (no request runs for
        // it any more: its push's answer never came), its state is the answer.
        if payment.status == PaymentStatus::Initiated && !payment.needs_review {
            return Ok(Started::InProgress { payment_id });
        }
        let answer = answer(201, &PaymentView::from(&payment));
        self.idempotency.remember(key, &answer).await;
        Ok(Started::Answered(answer))
    }
}
