//! Each channel's sender on its own, against the loopback doubles: SMTP over STARTTLS and
//! implicit TLS with a private CA, the webhook SSRF guard, redirects and timeouts.

use std::collections::BTreeMap;
use std::time::Duration;

use mpesa_gateway::config::Config;
use mpesa_gateway::outbox::email::EmailSender;
use mpesa_gateway::outbox::webhook_sender::WebhookSender;
use mpesa_gateway::outbox::{Delivery, Sender};
use mpesa_storage::{Channel, OutboxEvent, OutboxStatus};
use secrecy::SecretString;
use serde_json::json;

use crate::outbox_receivers::*;

fn event(channel: Channel, destination: &str, payload: serde_json::Value) -> OutboxEvent {
    OutboxEvent {
        id: mpesa_gateway::ids::new_id("evt"),
        payment_id: None,
        channel,
        event_type: "test".into(),
        destination: destination.into(),
        payload: payload.to_string(),
        dedupe_key: String::new(),
        status: OutboxStatus::Pending,
        attempts: 0,
        next_attempt_at: 0,
        lease_owner: None,
        lease_until: None,
        last_error: None,
        created_at: 0,
        delivered_at: None,
    }
}

fn email_sender(smtp_url: &str, ca: bool) -> EmailSender {
    let mut env = BTreeMap::new();
    env.insert("SMTP_URL".to_owned(), smtp_url.to_owned());
    env.insert("EMAIL_FROM".to_owned(), "shop@example.com".to_owned());
    if ca {
        env.insert(
            "SMTP_CA_FILE".to_owned(),
            test_tls().ca.display().to_string(),
        );
    }
    let config = Config::from_source(&env, true).unwrap();
    EmailSender::new(config.email.as_ref().unwrap(), Duration::from_secs(5)).unwrap()
}

fn test_mail() -> OutboxEvent {
    event(
        Channel::Email,
        "customer@example.com",
        json!({"kind": "test", "message": "over TLS"}),
    )
}

#[tokio::test]
async fn email_over_starttls_with_login() {
    let smtp = SmtpServer::start(SmtpTls::StartTls, Some(("shop", SMTP_PASSWORD))).await;
    let sender = email_sender(
        &format!(
            "smtp://shop:{SMTP_PASSWORD}@127.0.0.1:{}?tls=required",
            smtp.port
        ),
        true,
    );
    let mail = test_mail();
    assert_eq!(
        sender.send(&mail).await,
        Delivery::Delivered { code: Some(250) }
    );
    let got = smtp.mail();
    assert_eq!(got.len(), 1);
    assert!(got[0].over_tls, "the message went over STARTTLS");
    assert_eq!(got[0].auth_user.as_deref(), Some("shop"));
    assert_eq!(
        got[0].parsed().subject(),
        Some("mpesa-gateway test message")
    );
    assert_eq!(
        got[0].parsed().message_id(),
        Some(format!("{}@example.com", mail.id).as_str())
    );
}

#[tokio::test]
async fn email_over_implicit_tls() {
    let smtp = SmtpServer::start(SmtpTls::Implicit, Some(("shop", SMTP_PASSWORD))).await;
    let sender = email_sender(
        &format!("smtps://shop:{SMTP_PASSWORD}@127.0.0.1:{}", smtp.port),
        true,
    );
    assert!(matches!(
        sender.send(&test_mail()).await,
        Delivery::Delivered { .. }
    ));
    let got = smtp.mail();
    assert_eq!(got.len(), 1);
    assert!(got[0].over_tls);
}

#[tokio::test]
async fn email_tls_checks_the_certificate_and_errors_keep_the_password() {
    // Without SMTP_CA_FILE the private CA is not trusted: no mail, a retryable failure.
    let smtp = SmtpServer::start(SmtpTls::Implicit, Some(("shop", SMTP_PASSWORD))).await;
    let sender = email_sender(
        &format!("smtps://shop:{SMTP_PASSWORD}@127.0.0.1:{}", smtp.port),
        false,
    );
    match sender.send(&test_mail()).await {
        Delivery::Failed { error, .. } => {
            assert!(!error.contains(SMTP_PASSWORD), "{error}")
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert!(smtp.mail().is_empty());

    // A wrong password: refused (535), retried rather than dead-lettered, and not quoted.
    let sender = email_sender(
        &format!("smtps://shop:wrong-password-77@127.0.0.1:{}", smtp.port),
        true,
    );
    match sender.send(&test_mail()).await {
        Delivery::Failed { error, code, .. } => {
            assert_eq!(code, Some(535));
            assert!(!error.contains("wrong-password-77"), "{error}");
        }
        other => panic!("expected a retryable auth failure, got {other:?}"),
    }
    // STARTTLS required, but the server does not offer it: nothing is sent in the clear.
    let plain = SmtpServer::start(SmtpTls::None, None).await;
    let sender = email_sender(
        &format!("smtp://127.0.0.1:{}?tls=required", plain.port),
        true,
    );
    assert!(matches!(
        sender.send(&test_mail()).await,
        Delivery::Failed { .. }
    ));
    assert!(plain.mail().is_empty());
}

#[tokio::test]
async fn email_server_down_is_retried() {
    let smtp = SmtpServer::start(SmtpTls::None, None).await;
    smtp.set_mode(SmtpMode::Down);
    let sender = email_sender(&format!("smtp://127.0.0.1:{}?tls=none", smtp.port), false);
    assert!(matches!(
        sender.send(&test_mail()).await,
        Delivery::Failed { .. }
    ));
    smtp.set_mode(SmtpMode::TempFail);
    match sender.send(&test_mail()).await {
        Delivery::Failed { code, error, .. } => {
            assert_eq!(code, Some(451));
            assert!(error.contains("try again later"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

fn webhook_sender(url: &str, allow_private: bool, timeout: Duration) -> WebhookSender {
    WebhookSender::new(
        url.parse().unwrap(),
        SecretString::from(WEBHOOK_SECRET),
        allow_private,
        timeout,
    )
    .unwrap()
}

fn webhook_event() -> OutboxEvent {
    let id = mpesa_gateway::ids::new_id("evt");
    let mut e = event(
        Channel::Webhook,
        "",
        json!({"id": id, "type": "test", "created": 0, "data": {}}),
    );
    e.id = id;
    e
}

#[tokio::test]
async fn webhooks_to_loopback_are_refused_unless_allowed() {
    let receiver = WebhookReceiver::start().await;
    let port = receiver.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
    ] {
        match webhook_sender(&url, false, Duration::from_secs(5))
            .send(&webhook_event())
            .await
        {
            Delivery::Failed { error, code, .. } => {
                assert_eq!(code, None);
                assert!(
                    error.contains("loopback") && error.contains("WEBHOOK_ALLOW_PRIVATE"),
                    "{url}: {error}"
                );
            }
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }
    assert!(receiver.hits().is_empty(), "nothing reached the receiver");
    let allowed = webhook_sender(
        &format!("http://localhost:{port}/hook"),
        true,
        Duration::from_secs(5),
    );
    assert!(matches!(
        allowed.send(&webhook_event()).await,
        Delivery::Delivered { code: Some(200) }
    ));
    assert_eq!(receiver.hits().len(), 1);
    // `config check`'s look at the destination says the same, sending nothing.
    let guarded = webhook_sender(
        &format!("http://localhost:{port}/hook"),
        false,
        Duration::from_secs(5),
    );
    assert!(
        guarded
            .check_destination()
            .await
            .unwrap_err()
            .contains("loopback")
    );
    assert_eq!(receiver.hits().len(), 1);
}

#[tokio::test]
async fn webhook_redirects_are_not_followed_and_slow_receivers_time_out() {
    let receiver = WebhookReceiver::start().await;
    let elsewhere = WebhookReceiver::start().await;
    receiver.set_mode(WebhookMode::Redirect(elsewhere.url.clone()));
    let sender = webhook_sender(&receiver.url, true, Duration::from_millis(500));
    match sender.send(&webhook_event()).await {
        Delivery::Failed { code, error, .. } => {
            assert_eq!(code, Some(302));
            assert!(error.contains("not followed"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(elsewhere.hits().is_empty(), "the redirect was not followed");

    receiver.set_mode(WebhookMode::Hold);
    let started = std::time::Instant::now();
    match sender.send(&webhook_event()).await {
        Delivery::Failed { code, error, .. } => {
            assert_eq!(code, None);
            assert!(error.contains("no answer within"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    receiver.set_mode(WebhookMode::Status(404));
    assert!(matches!(
        sender.send(&webhook_event()).await,
        Delivery::Failed {
            code: Some(404),
            ..
        }
    ));
}
