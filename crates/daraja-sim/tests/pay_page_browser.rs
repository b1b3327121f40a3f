//! The simulator's pay page in a real browser (Debian's headless Chromium through chromedriver,
//! with fantoccini), nested under `/sandbox` as in `serve --sandbox`: a person pays the paybill
//! as a customer, sees the receipt, and the registered ConfirmationURL gets the payment.
//! The page is photographed into `target/simulator-screenshots/`.
//!
//! Chromium and chromedriver are required: without them this test FAILS, naming the packages.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use daraja::{C2bRegisterParams, C2bResponseType, C2bVersion};
use daraja_sim::{SimConfig, Simulator};
use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::process::Command;

const INSTALL: &str = "apt-get install -y chromium chromium-driver";

fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates.iter().find_map(|c| {
        let candidate = Path::new(c);
        if candidate.is_absolute() {
            return candidate.is_file().then(|| candidate.to_path_buf());
        }
        std::env::split_paths(&path)
            .map(|dir| dir.join(c))
            .find(|p| p.is_file())
    })
}

async fn wait_until_ready(webdriver: &str) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{webdriver}/status")).send().await
            && let Ok(status) = r.json::<serde_json::Value>().await
            && status["value"]["ready"] == true
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not become ready at {webdriver}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_pays_the_paybill_from_the_simulators_page() {
    let sim = Simulator::new(SimConfig::for_tests()).unwrap();
    let server = start_with(sim, Some("/sandbox")).await;
    let receiver = Receiver::start().await;
    client(&server)
        .c2b_register_urls(&C2bRegisterParams {
            short_code: Some("600000".into()),
            response_type: C2bResponseType::Completed,
            confirmation_url: url::Url::parse(&receiver.url("confirm")).unwrap(),
            validation_url: url::Url::parse(&receiver.url("validate")).unwrap(),
            version: Some(C2bVersion::V2),
        })
        .await
        .unwrap();

    let driver_path = find_program(&["chromedriver", "/usr/lib/chromium/chromedriver"])
        .unwrap_or_else(|| panic!("chromedriver was not found ({INSTALL})"));
    let chromium = find_program(&["/usr/lib/chromium/chromium", "chromium", "chromium-browser"])
        .unwrap_or_else(|| panic!("Chromium was not found ({INSTALL})"));
    let profile = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _driver = Command::new(&driver_path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} ({INSTALL})", driver_path.display()));
    let webdriver = format!("http://127.0.0.1:{port}");
    wait_until_ready(&webdriver).await;
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--window-size=1024,800",
                format!("--user-data-dir={}", profile.path().join("profile").display())]
        }
    });
    let browser = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&webdriver)
        .await
        .unwrap_or_else(|e| panic!("Chromium did not start under chromedriver: {e}"));

    browser
        .goto(&format!("{}/simulator/pay", server.base_url))
        .await
        .unwrap();
    assert_eq!(
        browser.title().await.unwrap(),
        "Daraja simulator: pay as a customer"
    );
    let account = browser
        .find(Locator::Css("input[name=account]"))
        .await
        .unwrap();
    account.clear().await.unwrap();
    account.send_keys("HOUSE 12").await.unwrap();
    let amount = browser
        .find(Locator::Css("input[name=amount]"))
        .await
        .unwrap();
    amount.clear().await.unwrap();
    amount.send_keys("250").await.unwrap();
    browser
        .find(Locator::Id("pay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let receipt = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("receipt"))
        .await
        .expect("the page shows the receipt")
        .text()
        .await
        .unwrap();
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        "/sandbox/simulator/c2b/pay"
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/simulator-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join("pay.png"), browser.screenshot().await.unwrap()).unwrap();

    // From the answer page, the form pays again.
    let amount = browser
        .find(Locator::Css("input[name=amount]"))
        .await
        .unwrap();
    amount.clear().await.unwrap();
    amount.send_keys("60").await.unwrap();
    browser
        .find(Locator::Id("pay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The old page shows a receipt too: wait until the new page shows another one (while it
    // loads, the element may be missing or stale).
    let second = loop {
        let shown = match browser.find(Locator::Id("receipt")).await {
            Ok(element) => element.text().await.ok(),
            Err(_) => None,
        };
        if let Some(shown) = shown.filter(|s| *s != receipt) {
            break shown;
        }
        assert!(tokio::time::Instant::now() < deadline, "no second payment");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(server.sim.payment(&second).unwrap().amount, 60);

    let payment = server.sim.payment(&receipt).expect("the money moved");
    assert_eq!(
        (payment.amount, payment.reference.as_deref()),
        (250, Some("HOUSE 12"))
    );
    let receipt_text = receipt.clone();
    let confirmation = receiver
        .wait_for(1, move |r| {
            r.path == "/hooks/confirm" && r.json()["TransID"] == receipt_text.as_str()
        })
        .await
        .remove(0)
        .json();
    assert_eq!(confirmation["TransID"], receipt.as_str());
    assert_eq!(confirmation["BillRefNumber"], "HOUSE 12");
    browser.close().await.unwrap();
}
