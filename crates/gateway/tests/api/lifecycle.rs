//! The real binary: `serve --sandbox` with `pay` in a second terminal, and SIGTERM.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mpesa_harness::process::{ManagedProcess, ProcessSpec, free_port};
use mpesa_storage::{CallbackOutcome, PageRequest};

const BINARY: &str = env!("CARGO_BIN_EXE_mpesa-gateway");

/// Starts `mpesa-gateway serve --sandbox` in `dir` (so its SQLite file and key file land there),
/// logging to `dir/gateway.log`, and waits for `/health`. Stopped (SIGTERM) when dropped.
async fn serve_sandbox(dir: &Path, extra_env: &[(&str, &str)]) -> ManagedProcess {
    serve_sandbox_under(dir, extra_env, &[]).await
}

/// As [`serve_sandbox`], started through `launcher` (e.g. `prlimit --nofile=…`).
async fn serve_sandbox_under(
    dir: &Path,
    extra_env: &[(&str, &str)],
    launcher: &[&str],
) -> ManagedProcess {
    let mut spec = ProcessSpec::new(Path::new(BINARY), dir, &["serve", "--sandbox"])
        .under(launcher)
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
        stdout.contains("completed: KSh 10 paid, M-Pesa receipt "),
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

fn padded_callback(checkout: &str, pad: usize) -> String {
    format!(
        r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"m","CheckoutRequestID":"{checkout}","ResultCode":1032,"ResultDesc":"{}"}}}}}}"#,
        "x".repeat(pad)
    )
}

/// Sets the soft file-size limit (`RLIMIT_FSIZE`) of a running process: the gateway's disk "fills
/// up" at `bytes` per file, or has room again with `None`.
fn set_file_size_limit(pid: u32, bytes: Option<u64>) {
    let limit = bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --fsize={limit}");
}

/// Issue 11, item 1: the SQLite file's disk fills up (here a file-size limit on the gateway's
/// process, with SIGXFSZ ignored, so a write past it fails as on a full disk). A COMMIT then
/// failed and left the single writer connection believing a transaction was open: after space
/// came back every write still failed until a restart, while `/health` said `healthy`. Now
/// `/health` answers 503 naming the database writes, the API answers 503 (not 500), and the
/// gateway recovers by itself when space returns; every callback answered 200 is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_survived_on_sqlite() {
    const SECRET: &str = "diskfull0123456789abcdef01234567";
    let dir = tempfile::tempdir().unwrap();
    // `trap '' XFSZ` before exec: an ignored signal stays ignored in the gateway, so a write
    // past the limit fails with EFBIG instead of killing it. Its logs go to the same full disk:
    // a log line that cannot be written must not cost an answer.
    let mut gw = serve_sandbox_under(
        dir.path(),
        &[("MPESA_CALLBACK_SECRET", SECRET)],
        &["sh", "-c", "trap '' XFSZ; exec \"$0\" \"$@\""],
    )
    .await;
    let base = gw.base.clone();
    let pid = gw.pid().expect("running");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let health = || async {
        let r = client.get(format!("{base}/health")).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.json::<serde_json::Value>().await.ok()?))
    };
    let url = format!("{base}/callbacks/{SECRET}/stk");
    let post = |i: usize| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(padded_callback(&format!("ws_CO_full{i:05}"), 40_000))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let mut acknowledged = Vec::new();
    assert_eq!(post(0).await, 200);
    acknowledged.push(0);

    // The disk is full: each file may grow by a few KiB at most.
    let size = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let largest = size("mpesa-gateway.db").max(size("mpesa-gateway.db-wal"));
    set_file_size_limit(pid, Some(largest + 8 * 1024));
    let mut refused = None;
    for i in 1..200 {
        match post(i).await {
            200 => acknowledged.push(i),
            status => {
                refused = Some(status);
                break;
            }
        }
    }
    assert_eq!(
        refused,
        Some(503),
        "a callback the gateway cannot store is refused with 503"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Some((503, body)) = health().await {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "/health kept answering 200 while writes failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(body["database"], "connected", "reads still work: {body}");
    assert_eq!(body["database_writes"]["status"], "failing", "{body}");
    let api_key = std::fs::read_to_string(dir.path().join("mpesa-gateway.sandbox-key")).unwrap();
    let created = client
        .post(format!("{base}/api/v1/payments"))
        .bearer_auth(api_key.trim())
        .json(&serde_json::json!({"phone": "0708374149", "amount": 10}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(
        created, 503,
        "a payment that cannot be stored is 503, not 500"
    );

    // Space returns: the gateway recovers by itself.
    set_file_size_limit(pid, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(health().await, Some((200, _))) {
        assert!(
            Instant::now() < deadline,
            "/health did not recover after space returned: {:?}",
            health().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 200..205 {
        assert_eq!(post(i).await, 200, "callbacks are stored again");
        acknowledged.push(i);
    }
    gw.sigterm().unwrap();
    let exit = gw.exited(Duration::from_secs(60)).await.unwrap();
    assert!(exit.success(), "{exit:?}");
    let storage = mpesa_storage::connect(
        &format!("sqlite://{}", dir.path().join("mpesa-gateway.db").display()),
        &Default::default(),
    )
    .await
    .unwrap();
    let stored: std::collections::BTreeSet<String> = storage
        .list_callbacks(
            &Default::default(),
            &PageRequest {
                limit: 500,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.checkout_request_id)
        .collect();
    for i in acknowledged {
        assert!(
            stored.contains(&format!("ws_CO_full{i:05}")),
            "callback {i} was answered 200 but is not stored"
        );
    }
}

/// Opens a connection and sends the start of a request head, never its end.
fn half_head(base: &str) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    stream
        .write_all(b"POST /callbacks/x/stk HTTP/1.1\r\nHost: gateway\r\n")
        .unwrap();
    stream
}

/// Whether the server closed `stream` within `within` (reads until EOF or a reset).
fn closed_within(stream: &mut std::net::TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Issue 11, item 4: a client that trickles its request head (one header line every 200 ms) or
/// sends nothing held its connection forever. Now both are cut off at HTTP_HEADER_READ_TIMEOUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_or_silent_client_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let gw = serve_sandbox(dir.path(), &[("HTTP_HEADER_READ_TIMEOUT", "1s")]).await;
    let base = gw.base.clone();
    let (trickled, silent) = tokio::task::spawn_blocking(move || {
        let mut silent = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
        let mut trickling = half_head(&base);
        let mut writer = trickling.try_clone().unwrap();
        let trickle = std::thread::spawn(move || {
            for i in 0..100 {
                if writer
                    .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                    .is_err()
                {
                    return i;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            100
        });
        let trickled = closed_within(&mut trickling, Duration::from_secs(15));
        let silent = closed_within(&mut silent, Duration::from_secs(15));
        drop(trickling);
        let lines = trickle.join().unwrap();
        (trickled && lines < 100, silent)
    })
    .await
    .unwrap();
    assert!(trickled, "the trickling client was never cut off");
    assert!(silent, "the silent client was never cut off");
    // The gateway still serves.
    let r = reqwest::get(format!("{}/health", gw.base)).await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Issue 11, item 4: with a file-descriptor limit of 256, 300 connections that trickle their
/// heads made accept fail (`Too many open files`) and Safaricom's callbacks went unanswered.
/// Now the connection cap stays under the limit, stalled heads are cut off, and a real callback
/// is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_gets_through_a_flood_of_stalled_connections() {
    const SECRET: &str = "capacity0123456789abcdef01234567";
    let dir = tempfile::tempdir().unwrap();
    let gw = serve_sandbox_under(
        dir.path(),
        &[
            ("MPESA_CALLBACK_SECRET", SECRET),
            ("HTTP_HEADER_READ_TIMEOUT", "2s"),
        ],
        &["prlimit", "--nofile=256:256", "--"],
    )
    .await;
    let base = gw.base.clone();
    let flood: Vec<std::net::TcpStream> =
        tokio::task::spawn_blocking(move || (0..300).map(|_| half_head(&base)).collect::<Vec<_>>())
            .await
            .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let answer = client
        .post(format!("{}/callbacks/{SECRET}/stk", gw.base))
        .header("content-type", "application/json")
        .body(
            r#"{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"ws_CO_flood1","ResultCode":1032,"ResultDesc":"Request cancelled by user"}}}"#,
        )
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(
        answer.ok(),
        Some(200),
        "the callback behind the flood was not answered"
    );
    drop(flood);
}

/// Issue 11, item 4: one half-sent request head delayed the exit after SIGTERM until its client
/// gave up (44 s). Now the process exits within HTTP_SHUTDOWN_GRACE (here 1 s, with a
/// header-read timeout far longer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_half_sent_head_exits_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = serve_sandbox(
        dir.path(),
        &[
            ("HTTP_HEADER_READ_TIMEOUT", "300s"),
            ("HTTP_SHUTDOWN_GRACE", "1s"),
        ],
    )
    .await;
    let half = half_head(&gw.base);
    // Connections are accepted in order: once a later one is answered, the half one is open
    // on the server too.
    let r = reqwest::get(format!("{}/health", gw.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    let signalled = Instant::now();
    gw.sigterm().unwrap();
    let deadline = signalled + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = gw.try_exited().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 15 s after SIGTERM with a half-sent head open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
    drop(half);
}

/// Issue 11, item 9: restarting `serve --sandbox` after deleting `mpesa-gateway.sandbox-key`
/// exited 2 with `conflict: api_keys.name`; it now makes a new key and `pay` works with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_restarted_without_its_key_file_makes_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let first = serve_sandbox(dir.path(), &[]).await;
    let key_file = dir.path().join("mpesa-gateway.sandbox-key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();
    drop(first);
    std::fs::remove_file(&key_file).unwrap();
    let second = serve_sandbox(dir.path(), &[]).await;
    let new_key = std::fs::read_to_string(&key_file).expect("a new key file");
    assert_ne!(new_key, old_key);
    let out = pay(dir.path(), &second.base, "0708374149");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 11, item 9: two `serve --sandbox` on one shared database failed at the second's start
/// (the same key name). Both run, each with its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sandboxes_share_one_database() {
    let db = mpesa_harness::database::TestDatabase::postgres().await;
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve_sandbox(a_dir.path(), &[("DATABASE_URL", db.url())]).await;
    let b = serve_sandbox(b_dir.path(), &[("DATABASE_URL", db.url())]).await;
    for (dir, gw) in [(&a_dir, &a), (&b_dir, &b)] {
        let out = pay(dir.path(), &gw.base, "0708374149");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Issue 11, item 7: a callback secret that is short or not URL-safe stops the start, naming
/// the variable (`ab/cd` made callback URLs the gateway then refused itself).
#[test]
fn a_bad_callback_secret_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for secret in ["ab/cd", "ab?cd", "x"] {
        let mut child = Command::new(BINARY)
            .args(["serve", "--sandbox"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GATEWAY_LISTEN", "127.0.0.1:0")
            .env("MPESA_CALLBACK_SECRET", secret)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{secret}: the gateway started with it");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(2), "{secret}");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            stderr.contains("MPESA_CALLBACK_SECRET"),
            "{secret}: {stderr}"
        );
    }
}

/// With a small connection cap taken up by stalled heads, a real callback waits for a place
/// (the stalled ones are cut off at the header-read timeout) and is answered: the cap never
/// turns a callback away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_waits_for_a_place_under_a_small_connection_cap() {
    const SECRET: &str = "smallcap0123456789abcdef01234567";
    let dir = tempfile::tempdir().unwrap();
    let gw = serve_sandbox(
        dir.path(),
        &[
            ("MPESA_CALLBACK_SECRET", SECRET),
            ("HTTP_MAX_CONNECTIONS", "4"),
            ("HTTP_HEADER_READ_TIMEOUT", "1s"),
        ],
    )
    .await;
    let base = gw.base.clone();
    let mut stalled =
        tokio::task::spawn_blocking(move || (0..4).map(|_| half_head(&base)).collect::<Vec<_>>())
            .await
            .unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{}/callbacks/{SECRET}/stk", gw.base))
        .header("content-type", "application/json")
        .body(
            r#"{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"ws_CO_cap1","ResultCode":1032,"ResultDesc":"Request cancelled by user"}}}"#,
        )
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(answer.ok(), Some(200));
    // The stalled ones were cut off to make room.
    let cut = tokio::task::spawn_blocking(move || {
        stalled
            .iter_mut()
            .map(|s| closed_within(s, Duration::from_secs(10)))
            .filter(|closed| *closed)
            .count()
    })
    .await
    .unwrap();
    assert_eq!(cut, 4);
}
