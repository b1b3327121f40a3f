//! `/`, `/health` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ids::{now_ms, rfc3339};
use crate::state::AppState;

pub async fn index(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "service": "mpesa-gateway",
        "version": env!("CARGO_PKG_VERSION"),
        "status": "running",
        "environment": state.config.daraja.environment.as_str(),
        "sandbox": state.config.sandbox,
        "endpoints": {
            "health": "/health",
            "metrics": "/metrics",
            "openapi": "/api/openapi.json",
            "payments": "/api/v1/payments",
            "stk_callback": "/callbacks/{secret}/stk",
            "admin": "/admin/",
            "simulator": if state.config.sandbox { Some("/sandbox/simulator") } else { None },
        }
    }))
}

/// 200 when the database answers reads and commits writes; 503 when either fails, saying which.
/// Other dependencies are reported as last seen (the gateway keeps working without them:
/// notifications wait in the outbox).
pub async fn health(State(state): State<AppState>) -> Response {
    let db = state.health_checks.database().await;
    let database_ok = db.ok();
    let dependency = |name: &'static str, enabled: bool| {
        if enabled {
            json!(state.health.state(name))
        } else {
            json!({ "status": "disabled" })
        }
    };
    let mut body = json!({
        "status": if database_ok { "healthy" } else { "unhealthy" },
        "timestamp": rfc3339(now_ms()),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started_at.elapsed().as_secs(),
        "database": if db.reachable { "connected" } else { "unreachable" },
        "database_writes": match &db.writes {
            Ok(()) => json!({ "status": "ok" }),
            Err(error) => json!({ "status": "failing", "error": error }),
        },
        "database_backend": db.backend,
        "reconciler": dependency("reconciler", true),
        "outbox_worker": dependency("outbox", true),
        "daraja": dependency("daraja", true),
        "telegram": dependency("telegram", state.config.telegram.is_some()),
        "smtp": dependency("smtp", state.config.email.is_some()),
        "webhook": dependency("webhook", state.config.webhook.is_some()),
        "outbox": db.outbox.map(|c| json!({ "pending": c.pending, "due": c.due, "dead": c.dead, "blocked": c.blocked, "delivered": c.delivered })),
    });
    // On a Galera node: its state, and why it is not served from when it is not.
    if let Some(cluster) = db.cluster {
        body["galera"] = json!({
            "node": cluster.node,
            "state": cluster.state,
            "cluster_status": cluster.cluster_status,
            "cluster_size": cluster.cluster_size,
            "serving": cluster.serving,
            "reason": (!cluster.serving).then(|| cluster.refusal()),
        });
    }
    let status = if database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.health_checks.metrics_text(),
    )
        .into_response()
}
