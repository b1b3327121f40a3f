//! Safaricom-facing callbacks, under a secret path (`/callbacks/{secret}/…`): no API key (Daraja
//! sends none), so the path is the credential, and a success is settled only when it matches the
//! payment we asked for (see the state machine).
//!
//! Safaricom gets `{"ResultCode":0,"ResultDesc":"Accepted"}` only after the raw body and its
//! effect are committed. An unparseable body is stored too and answered 400. A wrong secret gets
//! 404 and a log line, and nothing is stored (so strangers cannot fill the database).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mpesa_storage::{CallbackKind, CallbackOutcome, IncomingCallback};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::callbacks::{IngestError, Prepared, parse_c2b, parse_stk};
use crate::ids::{new_id, now_ms, secrets_equal};
use crate::money_out::CallbackDoor;
use crate::payments::c2b::{CONFIRMATION_PREPARE_WITHIN, VALIDATION_DECIDE_WITHIN};
use crate::state::AppState;
use daraja::wire::C2bValidationAnswer;
use mpesa_domain::c2b::C2bPath;

/// Headers worth keeping with a raw callback (never cookies or authorization).
const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "user-agent",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "host",
];

/// The TCP peer's address, when the server was started with connect info.
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| *a),
        ))
    }
}

/// Daraja's acknowledgement, as bytes made once (it answers every callback).
fn accepted() -> Response {
    const ACCEPTED: &str = r#"{"ResultCode":0,"ResultDesc":"Accepted"}"#;
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        ACCEPTED,
    )
        .into_response()
}

fn refused(status: StatusCode, desc: &str) -> Response {
    (status, Json(json!({ "ResultCode": 1, "ResultDesc": desc }))).into_response()
}

pub async fn stk(
    state: State<AppState>,
    path: Path<String>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    receive(state, path, peer, headers, body, CallbackKind::Stk).await
}

pub async fn c2b_validation(
    state: State<AppState>,
    path: Path<String>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    receive(
        state,
        path,
        peer,
        headers,
        body,
        CallbackKind::C2bValidation,
    )
    .await
}

pub async fn c2b_confirmation(
    state: State<AppState>,
    path: Path<String>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    receive(
        state,
        path,
        peer,
        headers,
        body,
        CallbackKind::C2bConfirmation,
    )
    .await
}

pub async fn pull_notice(
    state: State<AppState>,
    path: Path<String>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    receive(state, path, peer, headers, body, CallbackKind::Pull).await
}

/// `/callbacks/{secret}/result/{api}` (and the older `/callbacks/{secret}/b2c/result`): the
/// `Result` of a B2C, Reversal, Transaction Status or Account Balance request. The request is
/// found by the ids in the body, whatever the path says.
pub async fn initiator_result(
    state: State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    initiator(state, params, peer, headers, body, CallbackDoor::Result).await
}

/// `/callbacks/{secret}/timeout/{api}` (and `/callbacks/{secret}/timeout`): Daraja's notice that
/// a request expired in its queue.
pub async fn initiator_timeout(
    state: State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    initiator(
        state,
        params,
        peer,
        headers,
        body,
        CallbackDoor::QueueTimeout,
    )
    .await
}

async fn initiator(
    State(state): State<AppState>,
    params: Vec<(String, String)>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    door: CallbackDoor,
) -> Response {
    let secret = params
        .iter()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let kind = match door {
        CallbackDoor::Result => CallbackKind::InitiatorResult,
        CallbackDoor::QueueTimeout => CallbackKind::Timeout,
    };
    let incoming = match admit(&state, &secret, &peer, &headers, body, kind) {
        Ok(i) => i,
        Err(answer) => return *answer,
    };
    let parse_error = daraja::ResultEnvelope::parse(&incoming.body)
        .err()
        .map(|e| e.to_string());
    let callback_id = incoming.id.clone();
    match state.money_out.initiator.receive(incoming, door).await {
        Ok(ingested) => {
            match ingested.outcome {
                CallbackOutcome::Unmatched => {
                    tracing::warn!(%callback_id, "initiator result for no request of ours kept as unmatched")
                }
                CallbackOutcome::Unparseable => {
                    tracing::warn!(%callback_id, error = ?parse_error, "unparseable initiator result stored")
                }
                outcome => {
                    tracing::debug!(%callback_id, outcome = outcome.as_str(), request_id = ?ingested.request.as_ref().map(|r| &r.id), "initiator result stored")
                }
            }
            if parse_error.is_some() {
                refused(
                    StatusCode::BAD_REQUEST,
                    "Rejected: the body could not be parsed; it was stored",
                )
            } else {
                accepted()
            }
        }
        Err(e) => {
            tracing::error!(%callback_id, error = %e, "initiator result NOT stored; answering an error so it is not acknowledged");
            refused(StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable")
        }
    }
}

/// The secret path checked and the body read: the callback as it will be stored, or the
/// answer that refuses it.
fn admit(
    state: &AppState,
    secret: &str,
    peer: &PeerAddr,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    kind: CallbackKind,
) -> Result<IncomingCallback, Box<Response>> {
    let remote_addr = peer.0.map(|a| a.ip().to_string());
    if !secrets_equal(secret, state.callback_secret.expose_secret()) {
        state.metrics.inc(
            "mpesa_gateway_callbacks_rejected_total",
            &[("reason", "wrong_secret")],
        );
        tracing::warn!(remote = ?remote_addr, kind = kind.as_str(), "callback with a wrong secret path refused");
        return Err(Box::new(
            (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": { "code": "not_found", "message": "not found" } })),
            )
                .into_response(),
        ));
    }
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            state.metrics.inc(
                "mpesa_gateway_callbacks_rejected_total",
                &[("reason", "unreadable_body")],
            );
            tracing::warn!(remote = ?remote_addr, status = %rejection.status(), "callback body refused");
            return Err(Box::new(refused(
                rejection.status(),
                "Rejected: body too large or unreadable",
            )));
        }
    };
    Ok(IncomingCallback {
        id: new_id("cb"),
        kind,
        received_at: now_ms(),
        remote_addr,
        headers: kept_headers(headers),
        body: body.to_vec(),
        checkout_request_id: None,
        receipt: None,
        parse_error: None,
    })
}

fn kept_headers(headers: &HeaderMap) -> String {
    let kept: BTreeMap<String, String> = headers
        .iter()
        .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes())
                    .chars()
                    .take(512)
                    .collect(),
            )
        })
        .collect();
    serde_json::to_string(&kept).unwrap_or_else(|_| "{}".into())
}

async fn receive(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    kind: CallbackKind,
) -> Response {
    let admitted = match admit(&state, &secret, &peer, &headers, body, kind) {
        Ok(i) => i,
        Err(answer) => return *answer,
    };
    let remote_addr = admitted.remote_addr.clone();
    let body = admitted.body.as_slice();

    let mut receipt = None;
    let mut note = None;
    let (checkout_request_id, prepared, parse_error) = match kind {
        CallbackKind::Stk => {
            let parsed = parse_stk(body);
            match parsed.report {
                Ok(r) => (parsed.checkout_request_id, Some(Prepared::Stk(r)), None),
                Err(e) => (parsed.checkout_request_id, None, Some(e)),
            }
        }
        CallbackKind::C2bConfirmation => {
            let (trans_id, report) = parse_c2b(body);
            receipt = trans_id;
            match report {
                Ok(report) => match tokio::time::timeout(
                    CONFIRMATION_PREPARE_WITHIN,
                    state.payments.prepare_c2b(report, C2bPath::Confirmation),
                )
                .await
                {
                    Ok(Ok(p)) => {
                        note = p.note();
                        (None, Some(Prepared::C2b(Box::new(p))), None)
                    }
                    // Never answered with an error: M-Pesa does not send a confirmation again.
                    // Stored raw (`received`) and acknowledged; the re-drive looks it up again
                    // and books it.
                    failed => {
                        let error = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => format!("no answer within {CONFIRMATION_PREPARE_WITHIN:?}"),
                        };
                        tracing::warn!(%error, "a C2B confirmation's lookups failed; storing it raw, to be booked by the re-drive");
                        (None, None, None)
                    }
                },
                Err(e) => (None, None, Some(e)),
            }
        }
        // Other kinds are stored for audit; a body that is not JSON is still noted.
        _ => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(_) => (None, None, None),
            Err(e) => (None, None, Some(format!("the body is not valid JSON: {e}"))),
        },
    };
    let unparseable = parse_error.is_some();
    let incoming = IncomingCallback {
        checkout_request_id,
        receipt,
        parse_error: parse_error.clone().or(note),
        ..admitted
    };
    let callback_id = incoming.id.clone();
    if kind == CallbackKind::C2bValidation {
        return validation_answer(&state, incoming).await;
    }
    match state.ingestor.ingest(incoming, prepared).await {
        Ok(ingested) => {
            match ingested.outcome {
                CallbackOutcome::Unmatched => {
                    tracing::warn!(%callback_id, remote = ?remote_addr, "STK callback for an unknown CheckoutRequestID kept as unmatched")
                }
                CallbackOutcome::HeldForReview => {
                    tracing::warn!(%callback_id, payment_id = ?ingested.payment.as_ref().map(|p| &p.id), "callback held its payment for review")
                }
                CallbackOutcome::Unparseable => {
                    tracing::warn!(%callback_id, error = ?parse_error, "unparseable callback stored")
                }
                CallbackOutcome::Flagged => {
                    tracing::warn!(%callback_id, "C2B confirmation kept and flagged, not booked")
                }
                CallbackOutcome::Applied if kind == CallbackKind::C2bConfirmation => {
                    tracing::info!(%callback_id, payment_id = ?ingested.payment.as_ref().map(|p| &p.id), "C2B payment booked")
                }
                outcome => {
                    tracing::debug!(%callback_id, outcome = outcome.as_str(), "callback stored")
                }
            }
            if unparseable {
                refused(
                    StatusCode::BAD_REQUEST,
                    "Rejected: the body could not be parsed; it was stored",
                )
            } else {
                accepted()
            }
        }
        Err(IngestError::ShuttingDown) => {
            refused(StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable")
        }
        Err(IngestError::Deadline(waited)) => {
            tracing::error!(%callback_id, ?waited, "callback not committed in time; answering an error so it is not acknowledged");
            refused(StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable")
        }
        Err(IngestError::Storage(e)) => {
            tracing::error!(%callback_id, error = %e, "callback NOT stored; answering an error so it is not acknowledged");
            refused(StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable")
        }
    }
}

/// A validation request: judged by the rules (or accepted when validation is off) and answered
/// within [`VALIDATION_DECIDE_WITHIN`] whatever the database does: a decision not made in time is
/// replaced by the configured fallback, and logged. The raw request is stored alongside (a
/// validation books nothing; only the confirmation does).
async fn validation_answer(state: &AppState, incoming: IncomingCallback) -> Response {
    let started = std::time::Instant::now();
    let callback_id = incoming.id.clone();
    let report = parse_c2b(&incoming.body).1;
    let ingestor = state.ingestor.clone();
    let stored = tokio::spawn(async move { ingestor.ingest(incoming, None).await });
    let decided = match &report {
        Ok(report) => tokio::time::timeout(
            VALIDATION_DECIDE_WITHIN,
            state.payments.judge_validation(report),
        )
        .await
        .map_err(|_| "the rules could not decide in time".to_owned())
        .and_then(|r| r.map_err(|e| format!("the rules could not be read: {e}"))),
        Err(e) => Err(format!("the request could not be read: {e}")),
    };
    let (decision, how) = match decided {
        Ok(d) => (d, "rules"),
        Err(why) => {
            let fallback = state.payments.validation_fallback();
            tracing::warn!(%callback_id, %why, accepted = fallback.is_ok(), "C2B validation answered by C2B_VALIDATION_FALLBACK");
            (fallback, "fallback")
        }
    };
    // The raw request is kept; its commit is waited for only as long as the deadline allows
    // (it finishes in the background otherwise).
    let left = VALIDATION_DECIDE_WITHIN.saturating_sub(started.elapsed());
    if let Ok(Ok(Err(e))) = tokio::time::timeout(left, stored).await {
        tracing::warn!(%callback_id, error = %e, "C2B validation request not stored; answered anyway");
    }
    let answer = match decision {
        Ok(()) => C2bValidationAnswer::accept(),
        Err(refusal) => {
            tracing::info!(%callback_id, code = refusal.code(), reason = refusal.describe(), "C2B validation refused");
            C2bValidationAnswer {
                result_code: daraja::wire::WireCode::text(refusal.code()),
                result_desc: "Rejected".into(),
                third_party_trans_id: None,
            }
        }
    };
    state.metrics.inc(
        "mpesa_gateway_c2b_validations_total",
        &[
            (
                "answer",
                if answer.is_accepted() {
                    "accepted"
                } else {
                    "refused"
                },
            ),
            ("by", how),
        ],
    );
    state.metrics.observe(
        "mpesa_gateway_c2b_validation_seconds",
        &[],
        started.elapsed().as_secs_f64(),
    );
    (StatusCode::OK, Json(answer)).into_response()
}
