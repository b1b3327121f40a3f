//! The sandbox: the built-in Daraja simulator, alone (`mpesa-gateway sandbox`) or in-process
//! (`serve --sandbox`), where a new user gets an API key with no setup.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use crate::admin::session::{SESSION_COOKIE, cookie};
use crate::app::App;
use crate::cli::pay::SANDBOX_KEY_FILE;
use crate::state::AppState;

/// `serve --sandbox` mounts the simulator under `/sandbox` (where the gateway's Daraja client
/// calls it) and, for a signed-in admin's browser (the session cookie is scoped to `/admin`),
/// under `/admin/sandbox`.
pub const MOUNTS: [&str; 2] = ["/sandbox", "/admin/sandbox"];

/// The simulator's inspection and fault routes (`…/simulator…`) show the callback URLs, secret
/// included, and change how the simulator behaves: they answer only this machine (a loopback
/// client, not forwarded for someone else) or a signed-in admin (the dashboard's session
/// cookie). Daraja's own routes stay open: the gateway's client calls them.
pub async fn guard_simulator(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/simulator") {
        return next.run(request).await;
    }
    let local = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| {
            state
                .config
                .trusted_proxies
                .is_local(c.0, request.headers())
        });
    let token = cookie(request.headers(), SESSION_COOKIE)
        .filter(|t| t.len() <= 128)
        .map(str::to_owned);
    if local || signed_in_admin(&state, token).await {
        return next.run(request).await;
    }
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({"error": {
            "code": "forbidden",
            "message": "the simulator's inspection and fault routes answer only this machine or a signed-in admin: sign in at /admin/, then open /admin/sandbox/simulator",
        }})),
    )
        .into_response()
}

async fn signed_in_admin(state: &AppState, token: Option<String>) -> bool {
    let Some(token) = token else {
        return false;
    };
    matches!(state.accounts.session(&token).await, Ok(Some(_)))
}

const SANDBOX_KEY_NAME: &str = "sandbox";

/// Makes sure there is a sandbox API key, saves it where `pay` finds it, and tells the user how
/// to take a payment.
pub async fn announce(app: &App) -> anyhow::Result<()> {
    let state = app.state();
    let existing = match std::fs::read_to_string(SANDBOX_KEY_FILE) {
        Ok(k) => {
            let k = k.trim().to_owned();
            state.accounts.is_active_key(&k).await?.then_some(k)
        }
        Err(_) => None,
    };
    let key = match existing {
        Some(k) => k,
        None => {
            // The file is gone or names a key this database does not know: a new key, under a
            // name of its own. Names are unique (revoked keys keep theirs), and another
            // `serve --sandbox` sharing this database may be using its own key: nothing is
            // revoked here (`mpesa-gateway api-keys list|revoke` tidies up).
            let name = format!("{SANDBOX_KEY_NAME}-{}", crate::ids::random_token(8));
            let (secret, _) = state.accounts.create_api_key(&name).await?;
            write_private(SANDBOX_KEY_FILE, &secret)?;
            secret
        }
    };
    let addr = app.local_addr();
    // The banner goes to stdout, for the person at the terminal; logs go to stderr and never
    // carry the key.
    println!(
        "\n  mpesa-gateway is running in sandbox mode: payments go to the built-in Daraja simulator.\n\
         \n  API key (saved in ./{SANDBOX_KEY_FILE}): {key}\n\
         \n  Take a payment from a second terminal:\n      mpesa-gateway pay --phone 0708374149 --amount 10\n\
         \n  or with curl:\n      curl -s http://{addr}/api/v1/payments -H 'Authorization: Bearer {key}' \\\n           -H 'Content-Type: application/json' -d '{{\"phone\":\"0708374149\",\"amount\":10}}'\n\
         \n  Simulator: http://{addr}/sandbox/simulator   (requests it received: /sandbox/simulator/requests)\n",
    );
    Ok(())
}

fn write_private(path: &str, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")
}

/// `mpesa-gateway sandbox`: the simulator alone.
pub async fn run_standalone(listen: SocketAddr) -> anyhow::Result<()> {
    let mut config = daraja_sim::SimConfig::default();
    let var = |name| crate::config::lookup(crate::config::ProcessEnv, name);
    if let (Some(key), Some(secret)) = (var("MPESA_CONSUMER_KEY"), var("MPESA_CONSUMER_SECRET")) {
        config = config.accept_credentials(key, secret);
    }
    if let (Some(shortcode), Some(passkey)) =
        (var("MPESA_BUSINESS_SHORT_CODE"), var("MPESA_PASS_KEY"))
    {
        config = config.with_shortcode(daraja_sim::ShortcodeConfig::new(shortcode, Some(&passkey)));
    }
    let config = config.apply_env(|name| std::env::var(name).ok())?;
    let sim = daraja_sim::Simulator::new(config)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "Daraja simulator on http://{}/ (see /simulator)",
        listener.local_addr()?
    );
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        crate::app::shutdown_signal().await;
        trigger.cancel();
    });
    sim.serve(listener, shutdown.cancelled_owned()).await?;
    Ok(())
}
