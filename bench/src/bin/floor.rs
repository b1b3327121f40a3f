//! The floor: a bare axum endpoint that parses the same STK callback JSON and answers like the
//! gateway, with no storage. What the gateway adds on top of it is the cost of durability.

use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    // Any POST path: the same parse-and-answer, so every scenario has its floor.
    let app = axum::Router::new().fallback(post(|body: Bytes| async move {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) if v.is_object() => (
                StatusCode::OK,
                Json(serde_json::json!({ "ResultCode": 0, "ResultDesc": "Accepted" })),
            ),
            _ => (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "ResultCode": 1, "ResultDesc": "Rejected" })),
            ),
        }
    }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
