//! The client against a Daraja test double nobody on this project wrote: the PyPI package
//! `daraja-mock` (a Flask app; licence CC-BY-NC-ND, so it is only run here, never copied).
//!
//! PREREQUISITE: python3 with the package installed, as `./scripts/test` does (it installs the
//! pinned `scripts/requirements-test.txt` into `target/test-tools/python` and puts it on PATH):
//!
//! ```text
//! pip install -r scripts/requirements-test.txt
//! ```
//!
//! Without it these tests FAIL (they do not skip) with a message saying so.
//!
//! How it is started: the package's `__main__` is not used; a small `python3 -c` driver builds
//! `DarajaMock()`, serves its Flask app with werkzeug on a free loopback port (port 0), prints the
//! port, and then takes commands on stdin: `stk_result <code>` calls `set_stk_result` (which is
//! Python-only, not HTTP) and `log` prints the mock's request log. The tests wait for `/health`.

use std::process::Stdio;

use base64::Engine as _;
use daraja::{
    AccountBalanceParams, B2cCommand, B2cParams, DarajaClient, DarajaConfig, DarajaError,
    IdentifierType, StkPushParams, StkQueryAnswer, TransactionStatusParams,
};
use mpesa_domain::{AccountReference, Amount, FinalOutcome, Msisdn, QueryVerdict, TransactionDesc};
use secrecy::SecretString;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use url::Url;

const INSTALL_HINT: &str = "the daraja-mock tests need python3 with the PyPI package daraja-mock: run ./scripts/test, which installs scripts/requirements-test.txt and puts it on PATH (or pip install -r scripts/requirements-test.txt)";

const DRIVER: &str = r#"
import json, logging, sys, threading
try:
    from daraja_mock import DarajaMock
    from werkzeug.serving import make_server
except Exception as e:
    print("MISSING " + repr(e), flush=True)
    sys.exit(3)
logging.getLogger("werkzeug").setLevel(logging.ERROR)
mock = DarajaMock()
server = make_server("127.0.0.1", 0, mock.app, threaded=True)
print("PORT %d" % server.port, flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
for line in sys.stdin:
    words = line.split()
    if words[:1] == ["stk_result"]:
        mock.set_stk_result(int(words[1]))
        print("OK", flush=True)
    elif words[:1] == ["log"]:
        print("LOG " + json.dumps(mock.request_log()), flush=True)
    else:
        print("ERR unknown command", flush=True)
server.shutdown()
"#;

/// A running daraja-mock, ended when dropped.
struct DarajaMock {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    base_url: Url,
}

impl DarajaMock {
    async fn start() -> Self {
        let mut child = Command::new("python3")
            .args(["-c", DRIVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start python3 ({e}); {INSTALL_HINT}"));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = stdout.next_line().await.unwrap().unwrap_or_default();
        let port = match first.strip_prefix("PORT ") {
            Some(port) => port.trim().to_owned(),
            None => panic!("daraja-mock did not start ({first}); {INSTALL_HINT}"),
        };
        let base_url = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        wait_for_health(&base_url).await;
        DarajaMock {
            _child: child,
            stdin,
            stdout,
            base_url,
        }
    }

    async fn command(&mut self, line: &str) -> String {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        self.stdout
            .next_line()
            .await
            .unwrap()
            .expect("daraja-mock exited")
    }

    async fn set_stk_result(&mut self, code: i64) {
        assert_eq!(self.command(&format!("stk_result {code}")).await, "OK");
    }

    async fn request_log(&mut self) -> Vec<Value> {
        let line = self.command("log").await;
        serde_json::from_str(line.strip_prefix("LOG ").expect("a log line")).unwrap()
    }

    fn client(&self) -> DarajaClient {
        // The mock's default credentials.
        let config = DarajaConfig::sandbox(
            SecretString::from("test_key"),
            SecretString::from("test_secret"),
        )
        .with_base_url(self.base_url.clone());
        DarajaClient::new(config).unwrap()
    }
}

/// The socket is bound before the port is printed; /health proves Flask answers.
async fn wait_for_health(base_url: &Url) {
    let http = reqwest::Client::new();
    let url = base_url.join("/health").unwrap();
    for _ in 0..50 {
        match http.get(url.clone()).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => panic!("daraja-mock /health answered {}", r.status()),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    panic!("daraja-mock never answered /health at {url}");
}

fn push_params() -> StkPushParams {
    StkPushParams {
        phone: Msisdn::parse("0708374149").unwrap(),
        amount: Amount::from_stored(1),
        account_reference: AccountReference::parse("INV0042").unwrap(),
        transaction_desc: TransactionDesc::derive_from("Order 42"),
        callback_url: Url::parse("https://example.com/hooks/stk/3f9c1d").unwrap(),
    }
}

#[tokio::test]
async fn oauth_stk_push_and_stk_query_for_every_result_code() {
    daraja::install_crypto_provider();
    let mut mock = DarajaMock::start().await;
    let client = mock.client();

    client.check_credentials().await.unwrap();
    let accepted = client.stk_push(&push_params()).await.unwrap();
    assert!(
        accepted.checkout_request_id.starts_with("ws_CO_"),
        "{accepted:?}"
    );
    assert_eq!(accepted.response_code, "0");

    let cases = [
        (0, QueryVerdict::Final(FinalOutcome::Completed)),
        (1, QueryVerdict::Final(FinalOutcome::Failed)),
        (1001, QueryVerdict::Final(FinalOutcome::Failed)),
        (1032, QueryVerdict::Final(FinalOutcome::Cancelled)),
        (1037, QueryVerdict::Final(FinalOutcome::TimedOut)),
        (2001, QueryVerdict::Final(FinalOutcome::Failed)),
        (4999, QueryVerdict::StillProcessing),
        (123456, QueryVerdict::StillProcessing),
    ];
    for (code, verdict) in cases {
        mock.set_stk_result(code).await;
        let answer = client
            .stk_query(&accepted.checkout_request_id)
            .await
            .unwrap();
        let StkQueryAnswer::Result(result) = &answer else {
            panic!("{code}: {answer:?}")
        };
        assert_eq!(result.result_code.as_str(), code.to_string());
        assert_eq!(
            answer.to_report().result_code.query_verdict(),
            verdict,
            "{code}"
        );
    }
    // One token served every call.
    assert_eq!(client.metrics().token_requests, 1);

    // What the mock received is what Daraja documents.
    let log = mock.request_log().await;
    let push = log
        .iter()
        .find(|r| r["path"] == "/mpesa/stkpush/v1/processrequest")
        .expect("the push was logged");
    let body = &push["body"];
    assert_eq!(body["BusinessShortCode"], "174379");
    assert_eq!(body["Amount"], 1);
    assert_eq!(body["PhoneNumber"], "254708374149");
    assert_eq!(body["PartyA"], "254708374149");
    assert_eq!(body["TransactionDesc"], "Order 42");
    let timestamp = body["Timestamp"].as_str().unwrap();
    assert_eq!(timestamp.len(), 14);
    let password = base64::engine::general_purpose::STANDARD
        .decode(body["Password"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(password).unwrap(),
        format!("174379{}{timestamp}", daraja::config::SANDBOX_PASSKEY)
    );
    let queries: Vec<_> = log
        .iter()
        .filter(|r| r["path"] == "/mpesa/stkpushquery/v1/query")
        .collect();
    assert_eq!(queries.len(), cases.len());
    assert!(
        queries
            .iter()
            .all(|q| q["body"]["CheckoutRequestID"] == accepted.checkout_request_id.as_str())
    );
    assert_eq!(
        log.iter()
            .filter(|r| r["path"] == "/oauth/v1/generate")
            .count(),
        1
    );
}

#[tokio::test]
async fn initiator_apis_are_acknowledged_and_unknown_paths_are_not_daraja_answers() {
    daraja::install_crypto_provider();
    let mock = DarajaMock::start().await;
    let mut config = DarajaConfig::sandbox(
        SecretString::from("test_key"),
        SecretString::from("test_secret"),
    )
    .with_base_url(mock.base_url.clone());
    config.initiator_name = Some("testapi".into());
    config.initiator_password = Some(SecretString::from("not-a-real-password"));
    config.initiator_shortcode = Some("600000".into());
    let client = DarajaClient::new(config).unwrap();
    let hook =
        |name: &str| Url::parse(&format!("https://example.com/hooks/{name}/3f9c1d")).unwrap();

    let b2c = client
        .b2c(&B2cParams {
            originator_conversation_id: "payout-1".into(),
            command: B2cCommand::BusinessPayment,
            amount: Amount::from_stored(10),
            phone: Msisdn::parse("0708374149").unwrap(),
            remarks: "Refund order 42".into(),
            occasion: None,
            result_url: hook("b2c-result"),
            queue_timeout_url: hook("b2c-timeout"),
        })
        .await
        .unwrap();
    assert!(b2c.conversation_id.starts_with("AG_"), "{b2c:?}");
    let status = client
        .transaction_status(&TransactionStatusParams {
            transaction_id: Some("SB60ABCD12".into()),
            original_conversation_id: None,
            party_a: None,
            identifier_type: IdentifierType::ShortCode,
            remarks: "Status check".into(),
            occasion: None,
            result_url: hook("status-result"),
            queue_timeout_url: hook("status-timeout"),
        })
        .await
        .unwrap();
    assert_eq!(status.response_code, "0");
    let balance = client
        .account_balance(&AccountBalanceParams {
            party_a: None,
            identifier_type: IdentifierType::ShortCode,
            remarks: "daily balance".into(),
            result_url: hook("balance-result"),
            queue_timeout_url: hook("balance-timeout"),
        })
        .await
        .unwrap();
    assert_eq!(
        balance.response_description,
        "Accept the service request successfully."
    );

    // The mock has no C2B endpoint: Flask's HTML 404 is not a Daraja envelope.
    let err = client
        .c2b_register_urls(&daraja::C2bRegisterParams {
            short_code: Some("600000".into()),
            response_type: daraja::C2bResponseType::Completed,
            confirmation_url: hook("c2b-confirm"),
            validation_url: hook("c2b-validate"),
            version: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, DarajaError::UnexpectedStatus { status: 404, .. }),
        "{err:?}"
    );
    assert!(!err.may_have_been_processed());
}
