//! The simulator driven by PyPI's `mpesakit` 2.2.0 (pinned in `scripts/requirements-test.txt`):
//! OAuth, STK Push and Query, C2B Register URL, B2C, Transaction Status, Account Balance and
//! Reversal through its client; and the callbacks and results the simulator sent checked by
//! mpesakit's own callback models: they read the STK callback, the C2B confirmation and the
//! Account Balance result, and refuse the B2C, Transaction Status and Reversal results in
//! Daraja's documented shapes (their models expect other nesting and types: library bugs,
//! pinned here so a change on either side shows). mpesakit has no C2B simulate: the payment is injected with
//! `Simulator::pay_c2b` (Safaricom's Node library covers simulate in `tests/mpesa_node.rs`).
//!
//! mpesakit encrypts `password + timestamp` as its SecurityCredential (b2c-and-results.md,
//! "Disagreements": treated as a bug): the simulator's lenient mode accepts it, and this test
//! shows that strict mode answers it `2001`, as Daraja would.
//!
//! Needs the package, which `./scripts/test` installs into `target/test-tools/python`; without it
//! the test fails and says so.

mod common;

use common::*;
use daraja_sim::{
    CallbackKind, CredentialMode, CustomerPayment, SANDBOX_INITIATOR_PASSWORD, SANDBOX_PASSKEY,
    SimConfig,
};
use serde_json::Value;

const KEY: &str = "mpesakit-key";
const SECRET: &str = "mpesakit-secret";
const INSTALL: &str = "run ./scripts/test once (it installs scripts/requirements-test.txt into target/test-tools/python), or python3 -m pip install -r scripts/requirements-test.txt";

struct Kit {
    envs: Vec<(&'static str, String)>,
}

impl Kit {
    async fn new(server: &SimServer, receiver: &Receiver) -> Kit {
        let kit = Kit {
            envs: vec![
                ("DARAJA_BASE_URL", server.base_url.clone()),
                ("RECEIVER_URL", receiver.base_url.clone()),
                ("CONSUMER_KEY", KEY.into()),
                ("CONSUMER_SECRET", SECRET.into()),
                ("INITIATOR_PASSWORD", SANDBOX_INITIATOR_PASSWORD.into()),
                ("PASSKEY", SANDBOX_PASSKEY.into()),
            ],
        };
        let probe = std::process::Command::new(test_python())
            .args(["-c", "import mpesakit"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}): {INSTALL}"));
        assert!(
            probe.status.success(),
            "PyPI package mpesakit is not installed: {INSTALL}"
        );
        kit
    }

    async fn run(&self, args: &[&str]) -> Value {
        run_client(
            &test_python(),
            "mpesakit_client.py",
            args,
            &self.envs,
            None,
            INSTALL,
        )
        .await
    }

    /// What mpesakit's own callback model makes of a body the simulator sent: `{"ok", "data"}`
    /// or `{"ok": false, "error"}`.
    async fn try_parse(&self, kind: &str, body: &str) -> Value {
        run_client(
            &test_python(),
            "mpesakit_client.py",
            &["parse", kind],
            &self.envs,
            Some(body.to_owned()),
            INSTALL,
        )
        .await
    }

    async fn parse(&self, kind: &str, body: &str) -> Value {
        let parsed = self.try_parse(kind, body).await;
        assert_eq!(
            parsed["ok"], true,
            "mpesakit refuses the {kind} body {body}: {parsed}"
        );
        parsed["data"].clone()
    }
}

/// A code as text, whether mpesakit's model made it a number or kept a string.
fn code(v: &Value) -> String {
    v.to_string().trim_matches('"').to_owned()
}

fn ok(answer: &Value) -> &Value {
    assert_eq!(answer["ok"], true, "{answer}");
    &answer["data"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpesakit_runs_every_api_and_its_models_are_checked_against_what_the_simulator_sends() {
    let server = start(SimConfig::for_tests().accept_credentials(KEY, SECRET)).await;
    let receiver = Receiver::start().await;
    let kit = Kit::new(&server, &receiver).await;

    assert_eq!(ok(&kit.run(&["oauth"]).await)["access_token_length"], 28);

    // STK Push and its callback, read by mpesakit's model.
    let pushed = kit.run(&["push", "254708374149", "10"]).await;
    let data = ok(&pushed);
    assert_eq!(code(&data["ResponseCode"]), "0", "{data}");
    let checkout = data["CheckoutRequestID"].as_str().unwrap().to_owned();
    let callback = receiver.stk_callback(&checkout).await;
    let parsed = kit
        .parse("stk", std::str::from_utf8(&callback.body).unwrap())
        .await;
    assert_eq!(parsed["Body"]["stkCallback"]["ResultCode"], 0, "{parsed}");
    assert_eq!(
        parsed["Body"]["stkCallback"]["CheckoutRequestID"],
        checkout.as_str()
    );

    let queried = kit.run(&["query", &checkout]).await;
    assert_eq!(code(&ok(&queried)["ResultCode"]), "0");

    // C2B Register URL (v1), a paybill payment, and the confirmation read by mpesakit.
    let registered = kit.run(&["c2bRegister"]).await;
    assert_eq!(
        ok(&registered)["ResponseCode"]
            .to_string()
            .trim_matches('"'),
        "0"
    );
    let paid = server
        .sim
        .pay_c2b(CustomerPayment::paybill("600000", "KIT1", 75))
        .await
        .unwrap();
    let confirmation = server
        .sim
        .callbacks()
        .into_iter()
        .find(|c| c.kind == CallbackKind::C2bConfirmation && c.reference == paid.trans_id)
        .expect("confirmation sent");
    let parsed = kit.parse("c2b", confirmation.body_text()).await;
    assert_eq!(parsed["TransID"], paid.trans_id.as_str());
    assert_eq!(parsed["BillRefNumber"], "KIT1");

    // The initiator APIs: accepted, and each result in Daraja's documented shape
    // (b2c-and-results.md), which our client parses. mpesakit's own result model reads the
    // Account Balance result; its B2C and Transaction Status models expect
    // `ResultParameters` to be a list, where Daraja sends `{"ResultParameter": [...]}` (lines
    // 203–214 and 320–336): a library bug, pinned here.
    let result = |answer: Value| {
        let sim = server.sim.clone();
        async move {
            let data = ok(&answer).clone();
            assert_eq!(code(&data["ResponseCode"]), "0", "{data}");
            let conversation = data["ConversationID"].as_str().unwrap().to_owned();
            let record = sim.wait_for_result(&conversation, WAIT).await.unwrap();
            assert_eq!(record.kind, CallbackKind::Result);
            let envelope =
                daraja::wire::ResultEnvelope::parse(record.body_text().as_bytes()).unwrap();
            assert!(
                envelope.result.result_code.is_success(),
                "{}",
                record.body_text()
            );
            record.body_text().to_owned()
        }
    };
    let b2c = result(
        kit.run(&["b2c", "kit-payout-1", "254708374149", "100"])
            .await,
    )
    .await;
    let status = result(kit.run(&["status", &paid.trans_id]).await).await;
    for (kind, body) in [("b2c", &b2c), ("status", &status)] {
        let refused = kit.try_parse(kind, body).await;
        assert_eq!(refused["ok"], false, "{refused}");
        let error = refused["error"].as_str().unwrap();
        assert!(
            error.contains("ResultParameters") && error.contains("valid list"),
            "{error}"
        );
    }
    let balance = result(kit.run(&["balance"]).await).await;
    let parsed = kit.parse("balance", &balance).await;
    assert_eq!(code(&parsed["Result"]["ResultCode"]), "0", "{parsed}");
    // Its Reversal model wants `ResultCode` and every `Value` as strings, where Daraja's sample
    // (lines 440–467) has numbers: refused too.
    let reversal = result(kit.run(&["reversal", &paid.trans_id, "75"]).await).await;
    let refused = kit.try_parse("reversal", &reversal).await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("Result.ResultCode"),
        "{refused}"
    );
    assert!(reversal.contains(&paid.trans_id), "{reversal}");

    // Strict mode reads the credential: mpesakit's `password + timestamp` is not the password.
    let strict = start(
        SimConfig {
            credential_mode: CredentialMode::Strict,
            ..SimConfig::for_tests()
        }
        .accept_credentials(KEY, SECRET),
    )
    .await;
    let strict_kit = Kit::new(&strict, &receiver).await;
    let answer = strict_kit
        .run(&["b2c", "kit-payout-2", "254708374149", "100"])
        .await;
    let conversation = ok(&answer)["ConversationID"].as_str().unwrap().to_owned();
    let record = strict
        .sim
        .wait_for_result(&conversation, WAIT)
        .await
        .unwrap();
    let body: Value = serde_json::from_str(record.body_text()).unwrap();
    assert_eq!(body["Result"]["ResultCode"], 2001, "{body}");
}
