//! What the integration tests share: a simulator on a loopback port, a small axum receiver for
//! callbacks, the project's own Daraja client pointed at the simulator, and raw HTTP helpers
//! for requests the client would refuse to send.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use daraja::{CertificateSource, DarajaClient, DarajaConfig};
use daraja_sim::{
    SANDBOX_CONSUMER_KEY, SANDBOX_CONSUMER_SECRET, SANDBOX_INITIATOR_PASSWORD,
    SIMULATOR_CERTIFICATE_PEM, SimConfig, Simulator,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

/// Long enough for anything these tests wait for; a hang fails instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(10);

pub const SHORTCODE: &str = "174379";
pub const PASSKEY: &str = daraja_sim::SANDBOX_PASSKEY;

/// A simulator serving on `127.0.0.1:<random port>`, stopped when dropped.
pub struct SimServer {
    pub sim: Simulator,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>` (plus the nesting prefix, if any).
    pub base_url: String,
    _stop: oneshot::Sender<()>,
}

pub async fn start(config: SimConfig) -> SimServer {
    start_with(
        Simulator::new(config).expect("valid simulator config"),
        None,
    )
    .await
}

/// Serves the simulator nested under `prefix` (like `serve --sandbox`), or alone.
pub async fn start_with(sim: Simulator, prefix: Option<&str>) -> SimServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let base_url = match prefix {
        Some(p) => {
            let app = Router::new().nest(p, sim.router());
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
            format!("http://{addr}{p}")
        }
        None => {
            tokio::spawn(sim.clone().serve(listener, async {
                let _ = stopped.await;
            }));
            format!("http://{addr}")
        }
    };
    SimServer {
        sim,
        addr,
        base_url,
        _stop: stop,
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("callback body is JSON")
    }
}

/// How the receiver answers C2B validation requests (`/hooks/validate`).
#[derive(Debug, Clone)]
pub enum ValidationReply {
    Accept {
        reference: Option<String>,
    },
    Reject(&'static str),
    /// Answers after this long (beyond the simulator's deadline).
    Slow(Duration),
}

#[derive(Clone)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    changed: watch::Sender<usize>,
    validation: Arc<Mutex<ValidationReply>>,
}

/// A small callback receiver: every POST to `/hooks/{name}` is kept and answered
/// `{"ResultCode":0,"ResultDesc":"Accepted"}`.
pub struct Receiver {
    pub base_url: String,
    state: ReceiverState,
    _stop: oneshot::Sender<()>,
}

async fn receive(
    State(state): State<ReceiverState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let path = format!("/hooks/{name}");
    if name == "validate" {
        let reply = state.validation.lock().unwrap().clone();
        if let ValidationReply::Slow(d) = &reply {
            tokio::time::sleep(*d).await;
        }
        record(&state, path, body);
        return match reply {
            ValidationReply::Accept { reference: Some(r) } => axum::Json(
                json!({"ResultCode": "0", "ResultDesc": "Accepted", "ThirdPartyTransID": r}),
            )
            .into_response(),
            ValidationReply::Reject(code) => {
                axum::Json(json!({"ResultCode": code, "ResultDesc": "Rejected"})).into_response()
            }
            _ => axum::Json(json!({"ResultCode": "0", "ResultDesc": "Accepted"})).into_response(),
        };
    }
    record(&state, path, body);
    (
        StatusCode::OK,
        axum::Json(json!({"ResultCode": 0, "ResultDesc": "Accepted"})),
    )
        .into_response()
}

fn record(state: &ReceiverState, path: String, body: Bytes) {
    let mut received = state.received.lock().unwrap();
    received.push(Received { path, body });
    let n = received.len();
    drop(received);
    state.changed.send_replace(n);
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = ReceiverState {
            received: Arc::default(),
            changed: watch::channel(0).0,
            validation: Arc::new(Mutex::new(ValidationReply::Accept { reference: None })),
        };
        let app = Router::new()
            .route("/hooks/{name}", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Receiver {
            base_url: format!("http://{addr}"),
            state,
            _stop: stop,
        }
    }

    /// `http://127.0.0.1:<port>/hooks/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/hooks/{name}", self.base_url)
    }

    pub fn set_validation(&self, reply: ValidationReply) {
        *self.state.validation.lock().unwrap() = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until `count` received requests match, without polling.
    pub async fn wait_for(
        &self,
        count: usize,
        matches: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        let mut changes = self.state.changed.subscribe();
        let waiting = async {
            loop {
                let found: Vec<_> = self.received().into_iter().filter(|r| matches(r)).collect();
                if found.len() >= count {
                    return found;
                }
                changes.changed().await.unwrap();
            }
        };
        tokio::time::timeout(WAIT, waiting)
            .await
            .expect("the receiver got what was expected in time")
    }

    /// Waits for the STK callback of `checkout_request_id`.
    pub async fn stk_callback(&self, checkout_request_id: &str) -> Received {
        let id = checkout_request_id.to_owned();
        self.wait_for(1, move |r| {
            r.json()["Body"]["stkCallback"]["CheckoutRequestID"] == id.as_str()
        })
        .await
        .remove(0)
    }
}

/// The project's Daraja client, pointed at the simulator, with the simulator's certificate for
/// initiator credentials.
pub fn client(server: &SimServer) -> DarajaClient {
    client_with(
        server,
        SANDBOX_CONSUMER_KEY,
        SANDBOX_CONSUMER_SECRET,
        |_| {},
    )
}

pub fn client_with(
    server: &SimServer,
    key: &str,
    secret: &str,
    tweak: impl FnOnce(&mut DarajaConfig),
) -> DarajaClient {
    let mut config = DarajaConfig::sandbox(SecretString::from(key), SecretString::from(secret))
        .with_base_url(url::Url::parse(&server.base_url).unwrap());
    config.initiator_name = Some(daraja_sim::SANDBOX_INITIATOR_NAME.into());
    config.initiator_password = Some(SecretString::from(SANDBOX_INITIATOR_PASSWORD));
    config.initiator_shortcode = Some(daraja_sim::SANDBOX_C2B_SHORTCODE.into());
    config.certificate = CertificateSource::Pem(SIMULATOR_CERTIFICATE_PEM.as_bytes().to_vec());
    config.request_timeout = Duration::from_secs(5);
    tweak(&mut config);
    DarajaClient::new(config).expect("valid client config")
}

pub fn http() -> reqwest::Client {
    daraja::install_crypto_provider();
    reqwest::Client::new()
}

/// A token straight from OAuth.
pub async fn token(server: &SimServer) -> String {
    token_for(server, SANDBOX_CONSUMER_KEY, SANDBOX_CONSUMER_SECRET).await
}

pub async fn token_for(server: &SimServer, key: &str, secret: &str) -> String {
    let response = http()
        .get(format!(
            "{}/oauth/v1/generate?grant_type=client_credentials",
            server.base_url
        ))
        .basic_auth(key, Some(secret))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A status and a body (JSON, or `Value::Null` when empty, or a string when not JSON).
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// `(status, errorCode, errorMessage)` of a Daraja error envelope.
    pub fn error(&self) -> (u16, &str, &str) {
        (
            self.status,
            self.body["errorCode"].as_str().unwrap_or("<none>"),
            self.body["errorMessage"].as_str().unwrap_or("<none>"),
        )
    }
}

async fn read(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Answer { status, body }
}

/// POSTs a JSON body with a bearer token.
pub async fn post_json(server: &SimServer, path: &str, token: &str, body: &Value) -> Answer {
    read(
        http()
            .post(format!("{}{path}", server.base_url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// POSTs raw bytes with a content type and optional token.
pub async fn post_raw(
    server: &SimServer,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &'static str,
) -> Answer {
    let mut request = http()
        .post(format!("{}{path}", server.base_url))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    read(request.send().await.unwrap()).await
}

pub async fn get(server: &SimServer, path: &str) -> Answer {
    read(
        http()
            .get(format!("{}{path}", server.base_url))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `base64(shortcode + passkey + timestamp)`.
pub fn password(shortcode: &str, passkey: &str, timestamp: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{shortcode}{passkey}{timestamp}"))
}

/// A valid STK Push body for `phone`, calling back to `callback_url`.
pub fn push_body(phone: &str, amount: i64, callback_url: &str) -> Value {
    let timestamp = "20260101120000";
    json!({
        "BusinessShortCode": SHORTCODE,
        "Password": password(SHORTCODE, PASSKEY, timestamp),
        "Timestamp": timestamp,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": amount,
        "PartyA": phone,
        "PartyB": SHORTCODE,
        "PhoneNumber": phone,
        "CallBackURL": callback_url,
        "AccountReference": "INV0042",
        "TransactionDesc": "Order 42"
    })
}

/// STK Push parameters for the project's client.
pub fn push_params(phone: &str, amount: i64, callback_url: &str) -> daraja::StkPushParams {
    daraja::StkPushParams::from_text(
        phone,
        &amount.to_string(),
        "INV0042",
        "Order 42",
        callback_url,
        Default::default(),
        false,
    )
    .expect("valid push parameters")
}

/// `tests/conformance`: the third-party clients' scripts.
pub fn conformance_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

/// `target/test-tools`, where `scripts/test` installs the pinned Python and npm test packages
/// (`scripts/requirements-test.txt`, `scripts/package.json`).
pub fn test_tools_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target")
        });
    target.join("test-tools")
}

/// The test packages' `python3`: `target/test-tools/python`'s when `scripts/test` made it, else
/// the one on `PATH` (which `scripts/test` puts first anyway).
pub fn test_python() -> String {
    let venv = test_tools_dir().join("python/bin/python3");
    if venv.is_file() {
        venv.display().to_string()
    } else {
        "python3".to_owned()
    }
}

/// `NODE_PATH` with `target/test-tools/node/node_modules` (the npm test packages) first.
pub fn test_node_path() -> String {
    let ours = test_tools_dir()
        .join("node/node_modules")
        .display()
        .to_string();
    match std::env::var("NODE_PATH") {
        Ok(p) if !p.is_empty() => format!("{ours}:{p}"),
        _ => ours,
    }
}

/// Runs a third-party client's script once (off the runtime's threads), with `stdin` as its
/// standard input, and reads the one JSON line it prints. `install` names the install command
/// given when the program cannot run.
pub async fn run_client(
    program: &str,
    script: &str,
    args: &[&str],
    envs: &[(&'static str, String)],
    stdin: Option<String>,
    install: &'static str,
) -> Value {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut command = Command::new(program);
    command
        .current_dir(conformance_dir())
        .arg(script)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let described = format!("{program} {script} {args:?}");
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn()?;
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(input.as_bytes())?;
        }
        drop(child.stdin.take());
        child.wait_with_output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run {program} ({e}): {install}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{described} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{described} printed no JSON ({e}): {stdout}"))
}
