//! One token for several instances (clients) through a [`SharedTokenStore`], against wiremock
//! playing Daraja, whose token endpoint numbers its tokens and whose other endpoints accept
//! only the newest one (Daraja's FAQ: each token request invalidates the previous token).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use daraja::{DarajaClient, SharedToken, SharedTokenError, SharedTokenStore};
use secrecy::ExposeSecret as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What the instances share (their database, in the gateway).
#[derive(Default)]
struct Shared {
    token: Mutex<Option<SharedToken>>,
    lease: Mutex<Option<(usize, DateTime<Utc>)>>,
    down: AtomicBool,
}

/// One instance's view of it.
struct InstanceStore {
    shared: Arc<Shared>,
    me: usize,
}

impl InstanceStore {
    fn check(&self) -> Result<(), SharedTokenError> {
        if self.shared.down.load(Ordering::SeqCst) {
            Err(SharedTokenError("database unreachable".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl SharedTokenStore for InstanceStore {
    async fn load(&self) -> Result<Option<SharedToken>, SharedTokenError> {
        self.check()?;
        Ok(self.shared.token.lock().unwrap().clone())
    }
    async fn begin_refresh(&self, until: DateTime<Utc>) -> Result<bool, SharedTokenError> {
        self.check()?;
        let mut lease = self.shared.lease.lock().unwrap();
        match *lease {
            Some((owner, expires)) if owner != self.me && expires > Utc::now() => Ok(false),
            _ => {
                *lease = Some((self.me, until));
                Ok(true)
            }
        }
    }
    async fn publish(&self, token: &SharedToken) -> Result<(), SharedTokenError> {
        self.check()?;
        *self.shared.token.lock().unwrap() = Some(token.clone());
        Ok(())
    }
    async fn end_refresh(&self) -> Result<(), SharedTokenError> {
        self.check()?;
        let mut lease = self.shared.lease.lock().unwrap();
        if lease.is_some_and(|(owner, _)| owner == self.me) {
            *lease = None;
        }
        Ok(())
    }
}

/// Daraja: numbered tokens, and queries accepted only with the newest.
#[derive(Clone, Default)]
struct Daraja {
    issued: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

struct Issue(Daraja);
impl Respond for Issue {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.issued.fetch_add(1, Ordering::SeqCst) + 1;
        token_answer(&format!("tok-{n}")).set_delay(Duration::from_millis(50))
    }
}

struct OnlyNewest(Daraja);
impl Respond for OnlyNewest {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let newest = format!("Bearer tok-{}", self.0.issued.load(Ordering::SeqCst));
        let sent = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if sent == Some(newest.as_str()) {
            query_result("0", "The service request is processed successfully.")
        } else {
            self.0.refused.fetch_add(1, Ordering::SeqCst);
            envelope(404, "404.001.03", "Invalid Access Token")
        }
    }
}

async fn daraja() -> (MockServer, Daraja) {
    let server = MockServer::start().await;
    let daraja = Daraja::default();
    token_request()
        .respond_with(Issue(daraja.clone()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mpesa/stkpushquery/v1/query"))
        .respond_with(OnlyNewest(daraja.clone()))
        .mount(&server)
        .await;
    (server, daraja)
}

fn instances(server: &MockServer, shared: &Arc<Shared>, n: usize) -> Vec<DarajaClient> {
    (0..n)
        .map(|me| {
            let mut config = config(server);
            config.request_timeout = Duration::from_secs(2);
            let client = DarajaClient::new(config).unwrap();
            client.share_tokens_through(Arc::new(InstanceStore {
                shared: shared.clone(),
                me,
            }));
            client
        })
        .collect()
}

fn token_requests(clients: &[DarajaClient]) -> u64 {
    clients.iter().map(|c| c.metrics().token_requests).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_make_one_token_request_between_them() {
    let (server, daraja) = daraja().await;
    let shared = Arc::new(Shared::default());
    let clients = instances(&server, &shared, 3);
    let mut calls = tokio::task::JoinSet::new();
    for round in 0..30 {
        let c = clients[round % 3].clone();
        calls.spawn(async move { c.stk_query("ws_CO_1").await });
    }
    for call in calls.join_all().await {
        call.unwrap();
    }
    assert_eq!(token_requests(&clients), 1);
    assert_eq!(daraja.issued.load(Ordering::SeqCst), 1);
    assert_eq!(daraja.refused.load(Ordering::SeqCst), 0, "no call refused");
    let stored = shared.token.lock().unwrap().clone().unwrap();
    assert_eq!((stored.value.expose_secret(), stored.serial), ("tok-1", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_shared_token_is_replaced_once_for_every_instance() {
    let (server, daraja) = daraja().await;
    let shared = Arc::new(Shared::default());
    let clients = instances(&server, &shared, 3);
    for c in &clients {
        c.stk_query("ws_CO_1").await.unwrap();
    }
    assert_eq!(token_requests(&clients), 1);
    // Someone else asks for a token of this consumer key: tok-1 is no longer valid.
    reqwest::Client::new()
        .get(format!(
            "{}/oauth/v1/generate?grant_type=client_credentials",
            server.uri()
        ))
        .basic_auth(CONSUMER_KEY, Some(CONSUMER_SECRET))
        .send()
        .await
        .unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for round in 0..30 {
        let c = clients[round % 3].clone();
        calls.spawn(async move { c.stk_query("ws_CO_1").await });
    }
    for call in calls.join_all().await {
        call.unwrap();
    }
    assert_eq!(
        token_requests(&clients),
        2,
        "one more token for all three instances"
    );
    assert_eq!(
        daraja.issued.load(Ordering::SeqCst),
        3,
        "tok-1, the stranger's, tok-3"
    );
    // Each instance had tok-1 cached: each may see it refused once (its calls in flight then).
    let refused = daraja.refused.load(Ordering::SeqCst);
    assert!(refused <= 30, "{refused}");
    assert_eq!(shared.token.lock().unwrap().as_ref().unwrap().serial, 2);
    // Calls now go through at the first attempt.
    let before = daraja.refused.load(Ordering::SeqCst);
    for c in &clients {
        c.stk_query("ws_CO_1").await.unwrap();
    }
    assert_eq!(daraja.refused.load(Ordering::SeqCst), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_leaves_each_instance_a_token_of_its_own() {
    let (server, _daraja) = daraja().await;
    let shared = Arc::new(Shared::default());
    shared.down.store(true, Ordering::SeqCst);
    let clients = instances(&server, &shared, 1);
    clients[0].stk_query("ws_CO_1").await.unwrap();
    assert_eq!(token_requests(&clients), 1);
    assert!(shared.token.lock().unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_lease_left_by_a_dead_instance_lapses() {
    let (server, _daraja) = daraja().await;
    let shared = Arc::new(Shared::default());
    // Instance 99 took the lease and died.
    *shared.lease.lock().unwrap() = Some((99, Utc::now() + chrono::Duration::milliseconds(600)));
    let clients = instances(&server, &shared, 2);
    let started = Instant::now();
    let (a, b) = tokio::join!(
        clients[0].stk_query("ws_CO_1"),
        clients[1].stk_query("ws_CO_1")
    );
    a.unwrap();
    b.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "waited for the lease to lapse"
    );
    assert_eq!(token_requests(&clients), 1, "then one of them refreshed");
}
