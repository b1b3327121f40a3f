//! The outbox through the real binary: killed mid-delivery and restarted, `notify test`,
//! `config check`, and the README's verification recipes run with python3 and node.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mpesa_harness::process::{ManagedProcess, ProcessSpec, free_port};
use mpesa_storage::{OutboxStatus, Storage};
use serde_json::json;

use crate::outbox_receivers::*;
use crate::support::SUCCESS;

const BIN: &str = env!("CARGO_BIN_EXE_mpesa-gateway");

/// The binary with only the variables given (and PATH), in `dir` (so no stray `.env` is read).
fn gateway_command(dir: &Path, env: &[(&str, String)]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

async fn open(url: &str) -> std::sync::Arc<dyn Storage> {
    let s = mpesa_storage::connect(url, &Default::default())
        .await
        .unwrap();
    s.migrate().await.unwrap();
    s
}

/// `serve --sandbox` killed with SIGKILL while the receiver holds the webhook open; after the
/// restart the event is delivered with the same id, once the dead instance's lease lapsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_delivery_and_restarted_loses_nothing() {
    daraja::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let storage = open(&db_url).await;
    let (api_key, record) = mpesa_gateway::http::auth::generate_api_key("kill-test", None);
    storage.create_api_key(&record).await.unwrap();

    let receiver = WebhookReceiver::start().await;
    receiver.set_mode(WebhookMode::Hold);
    let mut spec = ProcessSpec::new(Path::new(BIN), dir.path(), &["serve", "--sandbox"])
        .log_to(dir.path().join("gateway.log"));
    for (k, v) in [
        ("DATABASE_URL", db_url.clone()),
        ("WEBHOOK_URL", receiver.url.clone()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
        ("OUTBOX_LEASE", "2s".to_owned()),
        ("OUTBOX_POLL_INTERVAL", "100ms".to_owned()),
        ("WEBHOOK_TIMEOUT", "30s".to_owned()),
        ("DARAJA_SIM_CALLBACK_DELAY_MS", "50".to_owned()),
        ("RUST_LOG", "debug,sqlx=warn,hyper=warn,h2=warn".to_owned()),
    ] {
        spec = spec.env(k, v);
    }
    let client = reqwest::Client::new();

    let mut gateway = ManagedProcess::gateway(spec, free_port().unwrap())
        .await
        .unwrap();
    let base = gateway.base.clone();
    let created: serde_json::Value = client
        .post(format!("{base}/api/v1/payments"))
        .bearer_auth(&api_key)
        .json(&json!({"phone": SUCCESS, "amount": 75, "reference": "KILL1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payment_id = created["id"].as_str().expect("a payment").to_owned();
    eventually("the webhook is in flight", Duration::from_secs(20), || {
        let n = receiver.hits().len();
        async move { n == 1 }
    })
    .await;
    gateway.kill9().unwrap(); // SIGKILL: no shutdown, no record of the attempt.

    let event = storage
        .outbox_for_payment(&payment_id)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(event.status, OutboxStatus::Pending);
    assert_eq!(event.attempts, 0, "the killed attempt left no record");
    let lease_until = event.lease_until.expect("claimed by the killed instance");
    assert_eq!(receiver.hits()[0].event_id, event.id);

    receiver.set_mode(WebhookMode::Ok);
    gateway.restart().unwrap();
    gateway
        .wait_ready("/health", Duration::from_secs(60))
        .await
        .unwrap();
    eventually(
        "delivered after the restart",
        Duration::from_secs(20),
        || {
            let s = storage.clone();
            let id = event.id.clone();
            async move {
                s.get_outbox_event(&id).await.unwrap().unwrap().status == OutboxStatus::Delivered
            }
        },
    )
    .await;
    let attempts = storage.outbox_attempts(&event.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(
        attempts[0].started_at >= lease_until,
        "taken over only after the lease lapsed"
    );
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2);
    assert!(
        hits.iter().all(|h| h.event_id == event.id),
        "the same id both times"
    );
    assert_eq!(hits[0].body, hits[1].body);
    assert!(hits[1].signature_is_valid(WEBHOOK_SECRET));

    // A graceful stop of the restarted one.
    let exit = gateway
        .terminate()
        .expect("it stops by itself within 15 s of SIGTERM");
    assert!(exit.success(), "{exit}");

    // Both runs' stderr, appended.
    let logs = gateway.log();
    assert!(logs.contains("outbox worker started"), "{logs}");
    assert!(
        !logs.contains(WEBHOOK_SECRET),
        "the webhook secret is in the logs"
    );
    storage.close().await;
}

/// `notify test` sends one real message per channel with the current configuration, and
/// `config check` tests each connection; neither shows a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_and_config_check_use_the_real_channels() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start().await;
    let telegram = TelegramDouble::start(&[]).await;
    let smtp = SmtpServer::start(SmtpTls::StartTls, Some(("shop", SMTP_PASSWORD))).await;
    let env = vec![
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("gw.db").display()),
        ),
        ("WEBHOOK_URL", receiver.url.clone()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN.to_owned()),
        ("TELEGRAM_API_BASE", telegram.uri()),
        ("ADMIN_CHAT_ID", ADMIN_CHAT.to_string()),
        (
            "SMTP_URL",
            format!(
                "smtp://shop:{SMTP_PASSWORD}@127.0.0.1:{}?tls=required",
                smtp.port
            ),
        ),
        ("SMTP_CA_FILE", test_tls().ca.display().to_string()),
        ("EMAIL_FROM", "shop@example.com".to_owned()),
        ("ADMIN_EMAIL", "admin@example.com".to_owned()),
    ];
    let run = |args: &[&str]| {
        let out = gateway_command(dir.path(), &env)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for secret in [WEBHOOK_SECRET, SMTP_PASSWORD, "test-bot-token-value"] {
            assert!(!text.contains(secret), "{args:?} shows a secret: {text}");
        }
        (out.status.code(), text)
    };

    let (code, text) = run(&["notify", "test", "--channel", "webhook"]);
    assert_eq!(code, Some(0), "{text}");
    let hits = receiver.hits();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].signature_is_valid(WEBHOOK_SECRET));
    assert_eq!(hits[0].json()["type"], "test");
    assert_eq!(hits[0].json()["id"], hits[0].event_id.as_str());

    let (code, text) = run(&["notify", "test", "--channel", "telegram"]);
    assert_eq!(code, Some(0), "{text}");
    let sent = telegram.messages_to(ADMIN_CHAT).await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0]["text"].as_str().unwrap().contains("test message"));

    let (code, text) = run(&["notify", "test", "--channel", "email"]);
    assert_eq!(code, Some(0), "{text}");
    let mail = smtp.mail();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].rcpt_to, vec!["admin@example.com".to_owned()]);
    assert!(mail[0].over_tls && mail[0].auth_user.as_deref() == Some("shop"));

    receiver.set_mode(WebhookMode::Status(500));
    let (code, text) = run(&["notify", "test", "--channel", "webhook"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("NOT delivered") && text.contains("HTTP 500"),
        "{text}"
    );

    let (code, text) = run(&["config", "check", "--sandbox"]);
    assert_eq!(code, Some(0), "{text}");
    for line in [
        "[ok]   smtp",
        "[ok]   telegram: getMe: the bot is @shop_bot",
        "[ok]   webhook",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert_eq!(receiver.hits().len(), 2, "config check sends no webhook");
}

fn readme_block(language: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md at the workspace root");
    let start = readme
        .find("<!-- webhooks:start -->")
        .expect("webhooks:start marker");
    let end = readme
        .find("<!-- webhooks:end -->")
        .expect("webhooks:end marker");
    let section = &readme[start..end];
    let fence = format!("```{language}\n");
    let from = section
        .find(&fence)
        .unwrap_or_else(|| panic!("a {language} block"))
        + fence.len();
    let to = from + section[from..].find("```").unwrap();
    section[from..to].to_owned()
}

/// Runs `program file` and returns its trimmed stdout; a missing interpreter fails the test
/// with its name.
fn run_script(program: &str, file: &Path, env: &[(&str, String)]) -> String {
    let out = Command::new(program)
        .arg(file)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is needed to run the README's webhook recipe ({e}); install it")
        });
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The README's Python and JavaScript verification recipes accept the gateway's signatures
/// and refuse tampered, wrongly keyed and replayed ones.
#[tokio::test]
async fn readme_verification_recipes_accept_our_signatures() {
    let receiver = WebhookReceiver::start().await;
    let sender = mpesa_gateway::outbox::webhook_sender::WebhookSender::new(
        receiver.url.parse().unwrap(),
        secrecy::SecretString::from(WEBHOOK_SECRET),
        true,
        Duration::from_secs(5),
    )
    .unwrap();
    let body = json!({"id": "evt_readme", "type": "payment.completed", "created": 1,
        "data": {"reference": "Ünïcode & <tags>", "amount": 10}})
    .to_string();
    use mpesa_gateway::outbox::Delivery;
    assert!(matches!(
        sender
            .post(
                "evt_readme",
                body.as_bytes(),
                mpesa_gateway::ids::now_ms() / 1000
            )
            .await,
        Delivery::Delivered { .. }
    ));
    let hit = receiver.hits().remove(0);
    let header = hit.header("mpesa-gateway-signature").to_owned();
    let old = mpesa_gateway::outbox::webhook_sender::signature_header(
        WEBHOOK_SECRET.as_bytes(),
        mpesa_gateway::ids::now_ms() / 1000 - 3600,
        body.as_bytes(),
    );

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good_body = write("good.json", &String::from_utf8_lossy(&hit.body));
    let bad_body = write("bad.json", &body.replace("10", "1000"));
    let python = write(
        "verify.py",
        &(readme_block("python")
            + "\nimport os\nprint(verify_signature(os.environ['SECRET'], os.environ['HEADER'], open(os.environ['BODY_FILE'], 'rb').read()))\n"),
    );
    let node = write(
        "verify.js",
        &(readme_block("javascript")
            + "\nconst fs = require('node:fs');\nconsole.log(verifySignature(process.env.SECRET, process.env.HEADER, fs.readFileSync(process.env.BODY_FILE)) ? 'True' : 'False');\n"),
    );
    let cases = [
        (WEBHOOK_SECRET, header.as_str(), &good_body, "True"),
        (WEBHOOK_SECRET, header.as_str(), &bad_body, "False"),
        (
            "whsec_another_secret_000",
            header.as_str(),
            &good_body,
            "False",
        ),
        (WEBHOOK_SECRET, old.as_str(), &good_body, "False"),
        (WEBHOOK_SECRET, "t=abc,v1=zz", &good_body, "False"),
    ];
    for (program, script) in [("python3", &python), ("node", &node)] {
        for (secret, header, body_file, expected) in &cases {
            let got = run_script(
                program,
                script,
                &[
                    ("SECRET", secret.to_string()),
                    ("HEADER", header.to_string()),
                    ("BODY_FILE", body_file.display().to_string()),
                ],
            );
            assert_eq!(&got, expected, "{program} with {secret} {header}");
        }
    }
}
