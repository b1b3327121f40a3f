//! The real binary: `serve --sandbox` with `pay` in a second terminal, and SIGTERM.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mpesa_harness::process::{ManagedProcess, ProcessSpec, free_port};
use mpesa_storage::{CallbackOutcome, PageRequest};

const BINARY: &str = env!("CARGO_BIN_EXE_mpesa-gateway");

/// Starts `mpesa-gateway serve --sandbox` in `dir` (so its SQLite file and key file land there),
/// logging to `dir/gateway.log`, and waits for `/health`. Stopped (SIGTERM) when dropped.
async fn serve_sandbox(dir: &Path, extra_env: &[(&str, &str)]) -> ManagedProcess {
    let mut spec = ProcessSpec::new(Path::new(BINARY), dir, &["serve", "--sandbox"])
        .env("DARAJA_SIM_CALLBACK_DELAY_MS", "300")
        .env("RUST_LOG", "warn")
        .log_to(dir.join("gateway.log"));
    for (k, v) in extra_env {
        spec = spec.env(k, *v);
    }
    daraja::install_crypto_provider();
    ManagedProcess::gateway(spec, free_port().unwrap())
        .await
        .expect("the gateway becomes healthy")
}

fn pay(dir: &Path, base: &str, phone: &str) -> std::process::Output {
    Command::new(BINARY)
        .args(["pay", "--phone", phone, "--amount", "10", "--url", base])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("pay runs")
}

/// The README's first two commands: `serve --sandbox`, then `pay` with no other setup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_follows_a_sandbox_payment_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let gw = serve_sandbox(dir.path(), &[]).await;
    assert!(
        dir.path().join("mpesa-gateway.sandbox-key").exists(),
        "the key is saved for `pay`"
    );
    assert!(
        dir.path().join("mpesa-gateway.db").exists(),
        "the embedded SQLite default"
    );

    let out = pay(dir.path(), &gw.base, "0708374149");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("completed: KES 10 paid, M-Pesa receipt "),
        "{stdout}"
    );

    let out = pay(dir.path(), &gw.base, "0700001032");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cancelled payment is not success: {stdout}"
    );
    assert!(stdout.contains("cancelled"), "{stdout}");

    let out = pay(dir.path(), &gw.base, "12345");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("phone"),
        "a clear refusal"
    );
}

/// SIGTERM while callbacks stream in: every callback answered 200 is stored, the process exits
/// cleanly, and requests after it get no half-answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = serve_sandbox(
        dir.path(),
        &[("MPESA_CALLBACK_SECRET", "0123456789abcdef0123456789abcdef")],
    )
    .await;
    let url = format!("{}/callbacks/0123456789abcdef0123456789abcdef/stk", gw.base);
    let client = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    // The first acknowledgement, awaited: SIGTERM must land while callbacks are being answered,
    // not before the first one (on a busy machine the first answer can take a while).
    let (first_ack, first_ack_received) = tokio::sync::watch::channel(false);
    let post = |i: usize| {
        let client = client.clone();
        let url = url.clone();
        let first_ack = first_ack.clone();
        async move {
            let body = format!(
                r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"m","CheckoutRequestID":"ws_CO_term{i:05}","ResultCode":1032,"ResultDesc":"Request cancelled by user"}}}}}}"#
            );
            let status = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16());
            if matches!(status, Ok(200)) {
                first_ack.send_replace(true);
            }
            status
        }
    };
    for i in 0..100 {
        tasks.spawn(post(i));
    }
    let mut acked = first_ack_received.clone();
    tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|a| *a))
        .await
        .expect("a callback is acknowledged within a minute")
        .unwrap();
    // SIGTERM while requests are in flight, and more arriving after it.
    gw.sigterm().unwrap();
    for i in 100..400 {
        tasks.spawn(post(i));
    }
    let mut acknowledged = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(200) => acknowledged += 1,
            Ok(other) => assert_eq!(other, 503, "only a clear 'unavailable' while stopping"),
            Err(_) => {} // refused after the listener closed: never acknowledged
        }
    }
    let status = gw.exited(Duration::from_secs(60)).await.unwrap();
    assert!(status.success(), "exits cleanly on SIGTERM: {status:?}");
    assert!(acknowledged >= 1);
    // Every acknowledged callback is in the database.
    let storage = mpesa_storage::connect(
        &format!("sqlite://{}", dir.path().join("mpesa-gateway.db").display()),
        &Default::default(),
    )
    .await
    .unwrap();
    let mut stored = 0;
    let mut cursor = None;
    loop {
        let page = storage
            .list_callbacks(&Default::default(), &PageRequest { limit: 500, cursor })
            .await
            .unwrap();
        stored += page
            .items
            .iter()
            .filter(|c| c.outcome == CallbackOutcome::Unmatched)
            .count();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(
        stored >= acknowledged,
        "{stored} stored, {acknowledged} acknowledged"
    );
}

/// Guarantee 7: secrets and whole phone numbers never reach the logs, even at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_no_secrets_and_no_whole_phone_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("MPESA_CONSUMER_KEY", "log-test-consumer-key-4242"),
        ("MPESA_CONSUMER_SECRET", "log-test-consumer-secret-4242"),
        ("MPESA_PASS_KEY", "log-test-passkey-4242"),
        ("MPESA_CALLBACK_SECRET", "feedfacefeedfacefeedfacefeedface"),
        ("WEBHOOK_SECRET", "log-test-webhook-secret-4242"),
    ];
    let mut env: Vec<(&str, &str)> = secrets.to_vec();
    env.extend([
        ("WEBHOOK_URL", "http://127.0.0.1:9/hook"),
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
    ]);
    env.extend([
        ("RUST_LOG", "debug"),
        ("DARAJA_SIM_CALLBACK_DELAY_MS", "100"),
    ]);
    let gw = serve_sandbox(dir.path(), &env).await;
    let log_path = dir.path().join("gateway.log");
    let api_key = std::fs::read_to_string(dir.path().join("mpesa-gateway.sandbox-key"))
        .unwrap()
        .trim()
        .to_owned();
    for phone in ["0708374149", "0700001032"] {
        let out = pay(dir.path(), &gw.base, phone);
        assert!(out.status.code().is_some());
    }
    drop(gw);
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("payment created"), "the log was captured");
    for (name, value) in secrets {
        assert!(!text.contains(value), "{name} leaked into the logs");
    }
    assert!(!text.contains(&api_key), "the API key leaked into the logs");
    for whole in ["254708374149", "708374149", "254700001032"] {
        assert!(
            !text.contains(whole),
            "a whole phone number ({whole}) leaked into the logs"
        );
    }
    assert!(text.contains("2547*****149"), "masked numbers are logged");
}
