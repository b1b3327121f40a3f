//! Starting gateways for tests, and talking to them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use daraja_sim::{SimConfig, Simulator};
use mpesa_gateway::app::App;
use mpesa_gateway::clock::Clock;
use mpesa_gateway::config::Config;
use mpesa_gateway::http::auth::generate_api_key;
use mpesa_gateway::state::AppState;
use mpesa_harness::database::TestDatabase;
use mpesa_storage::{Backend, Payment, Storage};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const SUCCESS: &str = "254708374149";
pub const INSUFFICIENT_FUNDS: &str = "254700000001";
pub const CANCELLED: &str = "254700001032";
pub const NO_ANSWER: &str = "254700001037";
pub const WRONG_PIN: &str = "254700002001";
pub const NO_CALLBACK: &str = "254700000000";
pub const DUPLICATE_CALLBACK: &str = "254700000002";
pub const LATE_CALLBACK: &str = "254700000003";

pub const ALL_BACKENDS: [Backend; 3] = [Backend::Sqlite, Backend::Postgres, Backend::MySql];

/// Generates one `#[tokio::test]` per backend for an `async fn(Backend)`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod every_backend {
            $(
                mod $name {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn sqlite() { super::super::$name(mpesa_storage::Backend::Sqlite).await }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn postgres() { super::super::$name(mpesa_storage::Backend::Postgres).await }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn mysql() { super::super::$name(mpesa_storage::Backend::MySql).await }
                }
            )*
        }
    };
}

pub struct Options {
    pub backend: Backend,
    /// Environment variables on top of the test defaults.
    pub env: BTreeMap<String, String>,
    /// The in-process simulator's configuration (`serve --sandbox`); ignored with `daraja_url`.
    pub sim: SimConfig,
    /// Use this Daraja (a shared simulator) instead of an in-process one.
    pub daraja_url: Option<String>,
    /// Share this database instead of creating one.
    pub database: Option<Arc<TestDatabase>>,
    /// Where the payment service, the reconciler and the outbox read the time (default: the
    /// system clock); a test holding a `ManualClock` moves time instead of waiting.
    pub clock: Option<Clock>,
}

impl Options {
    pub fn new(backend: Backend) -> Self {
        Options {
            backend,
            env: BTreeMap::new(),
            sim: SimConfig::for_tests(),
            daraja_url: None,
            database: None,
            clock: None,
        }
    }

    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }
}

pub struct TestGateway {
    pub base: String,
    pub api_key: String,
    pub state: AppState,
    /// The gateway's database, for assertions on what it stored.
    storage: Arc<dyn Storage>,
    pub sim: Option<Simulator>,
    pub database: Arc<TestDatabase>,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn(backend: Backend) -> TestGateway {
    spawn_with(Options::new(backend)).await
}

pub async fn spawn_with(options: Options) -> TestGateway {
    // `TEST_LOG=debug cargo test …` shows the gateway's logs.
    if std::env::var("TEST_LOG").is_ok() {
        mpesa_gateway::telemetry::init_filter(
            mpesa_gateway::config::LogFormat::Text,
            &std::env::var("TEST_LOG").unwrap(),
        );
    }
    let database = match options.database {
        Some(db) => db,
        None => Arc::new(TestDatabase::new(options.backend).await),
    };
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("DATABASE_URL".into(), database.url().to_owned());
    env.insert("GATEWAY_LISTEN".into(), "127.0.0.1:0".into());
    env.insert("MPESA_TIMEOUT_SECS".into(), "5".into());
    let sandbox = options.daraja_url.is_none();
    if let Some(url) = &options.daraja_url {
        env.insert("MPESA_API_BASE_URL".into(), url.clone());
        env.insert("MPESA_CONSUMER_KEY".into(), "sandbox-consumer-key".into());
        env.insert(
            "MPESA_CONSUMER_SECRET".into(),
            "sandbox-consumer-secret".into(),
        );
    }
    env.extend(options.env);
    let config = Config::from_source(&env, sandbox).expect("test configuration");
    let sim_config = sandbox.then(|| {
        options
            .sim
            .accept_credentials("sandbox-consumer-key", "sandbox-consumer-secret")
    });
    let app = App::build_with(config, sim_config, options.clock.unwrap_or_default())
        .await
        .expect("gateway starts");
    let state = app.state();
    let storage = app.storage();
    let sim = app.simulator().cloned();
    let base = format!("http://{}", app.local_addr());
    let (api_key, record) = generate_api_key(
        &format!("test-{}", mpesa_gateway::ids::random_token(6)),
        None,
    );
    storage
        .create_api_key(&record)
        .await
        .expect("store the test API key");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestGateway {
        base,
        api_key,
        state,
        storage,
        sim,
        database,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        shutdown,
        server: Some(server),
    }
}

impl TestGateway {
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    pub fn sim(&self) -> &Simulator {
        self.sim
            .as_ref()
            .expect("this gateway runs the in-process simulator")
    }

    pub fn callback_secret(&self) -> String {
        self.state.callback_secret.expose_secret().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs `mpesa-gateway ARGS` with only `PATH` and this gateway's `DATABASE_URL` set (what
    /// the commands that read or manage the database need): success, stdout, stderr.
    pub fn run_cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mpesa-gateway"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", self.database.url())
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run mpesa-gateway");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The status `GET /api/v1/payments` answers with `key` as the bearer token.
    pub async fn api_status_with_key(&self, key: &str) -> u16 {
        self.client
            .get(self.url("/api/v1/payments"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// POST /api/v1/payments; returns the HTTP status and the JSON body.
    pub async fn create_payment(&self, body: Value) -> (u16, Value) {
        self.create_payment_with_key(body, None).await
    }

    pub async fn create_payment_with_key(
        &self,
        body: Value,
        idempotency_key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(self.url("/api/v1/payments"))
            .bearer_auth(&self.api_key)
            .json(&body);
        if let Some(k) = idempotency_key {
            request = request.header("Idempotency-Key", k);
        }
        let response = request.send().await.expect("gateway answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a payment that must be accepted; returns its id.
    pub async fn pay(&self, phone: &str, amount: i64) -> String {
        let (status, body) = self
            .create_payment(json!({ "phone": phone, "amount": amount, "reference": "T1" }))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn get_payment(&self, id: &str) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/api/v1/payments/{id}")))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Waits (up to `within`) until the payment's stored status is `status`; returns it.
    pub async fn wait_for_status(&self, id: &str, status: &str, within: Duration) -> Payment {
        self.wait_for_payment(
            id,
            &format!("status {status}"),
            within,
            |p| p.status.as_str() == status,
            |_| false,
        )
        .await
    }

    /// Waits (up to `within`) until the stored payment satisfies `done`; returns it. Fails at
    /// once, naming what it saw, if `never` holds first.
    pub async fn wait_for_payment(
        &self,
        id: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&Payment) -> bool,
        never: impl Fn(&Payment) -> bool,
    ) -> Payment {
        let storage = self.storage();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let p = storage
                .get_payment(id)
                .await
                .unwrap()
                .expect("payment exists");
            if done(&p) {
                return p;
            }
            assert!(
                !never(&p),
                "payment {id} became {} (needs_review: {}) while waiting for: {what}",
                p.status,
                p.needs_review
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "payment {id} is {} (needs_review: {}) after {within:?}, waiting for: {what}",
                p.status,
                p.needs_review
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs a callback body to this gateway's STK callback path.
    pub async fn post_stk_callback(&self, body: &[u8]) -> (u16, Value) {
        self.post_callback("stk", body).await
    }

    /// POSTs a callback body to `/callbacks/{secret}/{path}`.
    pub async fn post_callback(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(&format!("/callbacks/{}/{path}", self.callback_secret())))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the gateway as a crash would: its server and workers are dropped wherever they
    /// are, nothing is finished or released. The database stays open for the next instance.
    pub async fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A Safaricom-shaped STK callback body.
pub fn stk_success(checkout_request_id: &str, amount: &str, phone: &str, receipt: &str) -> Vec<u8> {
    format!(
        r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"m-1","CheckoutRequestID":"{checkout_request_id}","ResultCode":0,"ResultDesc":"The service request is processed successfully.","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":{amount}}},{{"Name":"MpesaReceiptNumber","Value":"{receipt}"}},{{"Name":"Balance"}},{{"Name":"TransactionDate","Value":20240710091541}},{{"Name":"PhoneNumber","Value":{phone}}}]}}}}}}}}"#
    )
    .into_bytes()
}

pub fn stk_failure(checkout_request_id: &str, code: i64, desc: &str) -> Vec<u8> {
    format!(
        r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"m-1","CheckoutRequestID":"{checkout_request_id}","ResultCode":{code},"ResultDesc":"{desc}"}}}}}}"#
    )
    .into_bytes()
}

/// Sends a request the gateway refuses from its headers alone (413). The gateway answers and
/// closes without reading the body, so on a busy machine the client can still be writing when
/// the connection goes (broken pipe) and never sees the answer: that transport race is retried;
/// the answer itself is returned for the caller to check.
pub async fn send_refused_early(make: impl Fn() -> reqwest::RequestBuilder) -> reqwest::Response {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match make().send().await {
            Ok(r) => return r,
            Err(e) if attempts < 5 && e.is_request() => continue,
            Err(e) => panic!("no answer after {attempts} attempts: {e}"),
        }
    }
}
