//! The simulator driven by Safaricom's own Node library, npm `mpesa-node` 0.1.3 (pinned in
//! `scripts/package.json` and its lockfile): OAuth, STK Push and Query, C2B Register
//! URL and simulate (v1), B2C (v1), Transaction Status, Account Balance and Reversal, with the
//! initiator password encrypted by the library's own RSA code under the simulator's
//! certificate (strict credential mode). Each call runs `node tests/conformance/mpesa-node.js`;
//! the test asserts what the library received and what the simulator sent back to the hooks.
//!
//! Needs `node` and the package, which `./scripts/test` installs into `target/test-tools/node`.
//! Without them the test fails and says so; it never skips.

mod common;

use common::*;
use daraja::wire::{C2bPayment, ResultEnvelope, StkCallback};
use daraja_sim::{
    CallbackKind, CredentialMode, SANDBOX_INITIATOR_PASSWORD, SANDBOX_PASSKEY,
    SIMULATOR_CERTIFICATE_PEM, SimConfig,
};
use serde_json::Value;

const KEY: &str = "mpesa-node-key";
const INSTALL: &str = "run ./scripts/test once (it installs node's test packages, scripts/package.json, into target/test-tools/node; needs nodejs and npm)";
const SECRET: &str = "mpesa-node-secret";

struct NodeClient {
    envs: Vec<(&'static str, String)>,
    _cert: tempfile_path::TempCert,
}

/// The simulator's TEST certificate in a file, for the library's `certPath`.
mod tempfile_path {
    pub struct TempCert(pub std::path::PathBuf);
    impl Drop for TempCert {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl NodeClient {
    fn new(server: &SimServer, receiver: &Receiver) -> NodeClient {
        let node_path = test_node_path();
        let found = std::process::Command::new("node")
            .args(["-e", "require.resolve('mpesa-node')"])
            .env("NODE_PATH", &node_path)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "npm package mpesa-node is not installed: {INSTALL}");
        let cert = std::env::temp_dir().join(format!(
            "daraja-sim-cert-{}-{}.pem",
            std::process::id(),
            server.addr.port()
        ));
        std::fs::write(&cert, SIMULATOR_CERTIFICATE_PEM).unwrap();
        NodeClient {
            envs: vec![
                ("DARAJA_BASE_URL", server.base_url.clone()),
                ("RECEIVER_URL", receiver.base_url.clone()),
                ("CERT_PATH", cert.display().to_string()),
                ("CONSUMER_KEY", KEY.into()),
                ("CONSUMER_SECRET", SECRET.into()),
                ("INITIATOR_PASSWORD", SANDBOX_INITIATOR_PASSWORD.into()),
                ("PASSKEY", SANDBOX_PASSKEY.into()),
                ("NODE_PATH", node_path),
            ],
            _cert: tempfile_path::TempCert(cert),
        }
    }

    /// Runs one operation and returns what the library got: `{"ok", "status", "data"}`.
    async fn run(&self, args: &[&str]) -> Value {
        run_client("node", "mpesa-node.js", args, &self.envs, None, INSTALL).await
    }
}

fn ok(answer: &Value) -> &Value {
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["status"], 200, "{answer}");
    &answer["data"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safaricoms_node_library_runs_every_api_against_the_simulator() {
    let config = SimConfig {
        credential_mode: CredentialMode::Strict,
        ..SimConfig::for_tests()
    }
    .accept_credentials(KEY, SECRET);
    let server = start(config).await;
    let receiver = Receiver::start().await;
    let node = NodeClient::new(&server, &receiver);

    // OAuth: a 28-character token, `expires_in` the string "3599".
    let token = node.run(&["oauth"]).await;
    let data = ok(&token);
    assert_eq!(data["access_token"].as_str().unwrap().len(), 28);
    assert_eq!(data["expires_in"], "3599");

    // STK Push: the library formats its Timestamp from UTC and sends a 20-character
    // TransactionDesc; Daraja's documented checks pass both.
    let pushed = node.run(&["push", "254708374149", "10"]).await;
    let data = ok(&pushed);
    assert_eq!(data["ResponseCode"], "0");
    assert_eq!(
        data["ResponseDescription"],
        "Success. Request accepted for processing"
    );
    let checkout = data["CheckoutRequestID"].as_str().unwrap().to_owned();
    assert!(checkout.starts_with("ws_CO_") && checkout.ends_with("708374149"));
    let callback = StkCallback::parse(&receiver.stk_callback(&checkout).await.body).unwrap();
    assert!(callback.result_code().is_success());
    let sent = server
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/mpesa/stkpush/v1/processrequest")
        .unwrap();
    let sent: Value = serde_json::from_str(sent.body.get()).unwrap();
    assert_eq!(sent["TransactionDesc"], "Lipa na mpesa online");

    // STK Query after the outcome: ResultCode "0" as a string.
    server
        .sim
        .wait_for_stk_outcome(&checkout, WAIT)
        .await
        .unwrap();
    let queried = node.run(&["query", &checkout]).await;
    let data = ok(&queried);
    assert_eq!(data["ResultCode"], "0");
    assert_eq!(data["CheckoutRequestID"], checkout.as_str());

    // C2B Register URL (v1) and simulate (v1): the confirmation carries the account and a
    // SHA-256 MSISDN (v1, 2025 FAQ).
    let registered = node.run(&["c2bRegister"]).await;
    let data = ok(&registered);
    assert_eq!(data["ResponseCode"], "0");
    assert!(data["OriginatorCoversationID"].is_string(), "{data}");
    let simulated = node
        .run(&["c2bSimulate", "254708374149", "75", "NODE1"])
        .await;
    assert_eq!(ok(&simulated)["ResponseCode"], "0");
    let confirmation = receiver
        .wait_for(1, |r| {
            r.path == "/hooks/confirm" && r.json()["BillRefNumber"] == "NODE1"
        })
        .await
        .remove(0);
    let c2b = C2bPayment::parse(&confirmation.body).unwrap();
    assert_eq!(c2b.msisdn.as_str().len(), 64);
    assert_eq!(confirmation.json()["TransAmount"], "75.00");
    let receipt = c2b.trans_id.clone();

    // The initiator APIs, with the library's own RSA encryption checked in strict mode.
    let result_for = |answer: Value| {
        let sim = server.sim.clone();
        async move {
            let data = ok(&answer).clone();
            assert_eq!(data["ResponseCode"], "0", "{data}");
            let conversation = data["ConversationID"].as_str().unwrap().to_owned();
            let record = sim.wait_for_result(&conversation, WAIT).await.unwrap();
            assert_eq!(record.kind, CallbackKind::Result);
            assert!(record.delivered(), "{record:?}");
            let envelope = ResultEnvelope::parse(record.body_text().as_bytes()).unwrap();
            (
                envelope,
                serde_json::from_str::<Value>(record.body_text()).unwrap(),
            )
        }
    };
    let (b2c, raw) = result_for(node.run(&["b2c", "254708374149", "100"]).await).await;
    assert!(b2c.result.result_code.is_success(), "{raw}");
    assert!(raw.to_string().contains("B2CUtilityAccountAvailableFunds"));

    let (status, raw) = result_for(node.run(&["status", &receipt]).await).await;
    assert!(status.result.result_code.is_success(), "{raw}");
    assert!(raw.to_string().contains(&receipt), "{raw}");

    let (balance, raw) = result_for(node.run(&["balance"]).await).await;
    assert_eq!(
        raw["Result"]["ResultCode"], "0",
        "Account Balance codes are strings"
    );
    assert!(balance.result.result_code.is_success());
    assert!(raw.to_string().contains("Utility Account|KES|"), "{raw}");

    let (reversal, raw) = result_for(node.run(&["reversal", &receipt, "75"]).await).await;
    assert!(reversal.result.result_code.is_success(), "{raw}");
    assert!(raw.to_string().contains(&receipt), "{raw}");
    let (again, raw) = result_for(node.run(&["reversal", &receipt, "75"]).await).await;
    assert_eq!(again.result.result_code.as_text(), "R000001", "{raw}");
}
