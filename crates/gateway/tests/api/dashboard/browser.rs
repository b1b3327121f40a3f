//! The dashboard in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini). A person signs in, finds a payment made through the API and
//! the simulator, filters, opens it and its callback, retries a dead-lettered webhook, creates
//! and revokes an API key, has a form without its CSRF token refused, and signs out.
//!
//! Every page is photographed at desktop width and at 360 px wide into
//! `target/dashboard-screenshots/` (overwritten each run), and at 360 px the page must not
//! scroll sideways.
//!
//! Chromium and chromedriver are required: without them this test FAILS, naming the packages.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use mpesa_storage::Backend;
use serde_json::json;
use tokio::process::{Child, Command};

use super::*;

const INSTALL: &str = "apt-get install -y chromium chromium-driver";
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE_WIDTH: u32 = 360;

/// The first of these that exists: an absolute path, or a name looked up on `PATH`.
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

fn free_port() -> u16 {
    mpesa_harness::process::free_port().unwrap()
}

/// `target/<name>` (e.g. `dashboard-screenshots`), emptied of the previous run's pictures (once
/// per run: a second browser of the same test adds to it).
fn screenshot_dir(name: &str) -> PathBuf {
    static EMPTIED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut emptied = EMPTIED.lock().unwrap_or_else(|e| e.into_inner());
    if emptied.iter().any(|n| n == name) {
        return dir;
    }
    emptied.push(name.to_owned());
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "png") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    dir
}

pub struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Chromium with JavaScript, photographing into `target/dashboard-screenshots`.
    pub async fn start(base: &str) -> Browser {
        Browser::launch(base, "dashboard-screenshots", true).await
    }

    /// Chromium photographing into `target/<shots>`; `javascript: false` turns pages' scripts
    /// off (WebDriver's own still run).
    pub async fn launch(base: &str, shots: &str, javascript: bool) -> Browser {
        let driver_path = find_program(&["chromedriver", "/usr/lib/chromium/chromedriver"])
            .unwrap_or_else(|| {
                panic!("chromedriver was not found: the dashboard's browser test needs Debian's chromium and chromium-driver packages ({INSTALL})")
            });
        let chromium = find_program(&["/usr/lib/chromium/chromium", "chromium", "chromium-browser"])
            .unwrap_or_else(|| {
                panic!("Chromium was not found: the dashboard's browser test needs Debian's chromium and chromium-driver packages ({INSTALL})")
            });
        let profile = tempfile::tempdir().unwrap();
        let log = profile.path().join("chromedriver.log");
        let port = free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} ({INSTALL})", driver_path.display()));
        let webdriver = format!("http://127.0.0.1:{port}");
        wait_until_ready(&webdriver).await;

        let user_data = profile.path().join("profile");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--hide-scrollbars",
                    format!("--user-data-dir={}", user_data.display()),
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                ],
                "prefs": {
                    "profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 }
                }
            }
        });
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
                panic!("Chromium did not start under chromedriver: {e}\n(last chromedriver log lines, newest first)\n{tail}")
            });
        Browser {
            client,
            base: base.to_owned(),
            shots: screenshot_dir(shots),
            _driver: driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Waits (up to 10 s) until the browser is at `path`; returns the full URL.
    pub async fn wait_for_path(&self, path: &str) -> url::Url {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.client.current_url().await.unwrap();
            if url.path() == path {
                return url;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the browser is at {url}, expected {path}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits (up to 10 s) until the address's query holds `part` (a form that answers on the
    /// same path has navigated); returns the full URL.
    pub async fn wait_for_query(&self, part: &str) -> url::Url {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.client.current_url().await.unwrap();
            if url.query().is_some_and(|q| q.contains(part)) {
                return url;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the browser is at {url}, expected a query with {part}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits (up to 10 s) until the page shows `text`; returns the page's text.
    pub async fn wait_for_text(&self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let shown = self.text().await;
            if shown.contains(text) {
                return shown;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {text:?}; it shows:\n{shown}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!(
                "no {css} on {}: {e}",
                self.client.current_url().await.unwrap()
            ),
        }
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// The visible text of the page. A page that is being replaced (a form just sent) can
    /// lose its body between finding and reading it: then the new page is read.
    pub async fn text(&self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.find("body").await.text().await {
                Ok(text) => return text,
                Err(e) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "cannot read the page: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// The page's content width, the window's inner width, the content height, and the height
    /// of the window's own frame (outer minus inner).
    async fn measure(&self) -> (u64, u64, u64, u64) {
        let v = self
            .client
            .execute(
                "const d = document.documentElement;
                 return [d.scrollWidth, window.innerWidth, d.scrollHeight, window.outerHeight - window.innerHeight];",
                vec![],
            )
            .await
            .unwrap();
        let n = |i: usize| v[i].as_u64().unwrap_or(0);
        (n(0), n(1), n(2), n(3))
    }

    /// The elements that reach past the right edge of the window (to say what broke the layout).
    async fn too_wide(&self) -> serde_json::Value {
        self.client
            .execute(
                "const w = window.innerWidth; const out = [];
                 for (const e of document.querySelectorAll('body *')) {
                   const r = e.getBoundingClientRect();
                   if (r.right > w + 0.5) out.push(e.tagName.toLowerCase() + '.' + String(e.className).split(' ').join('.') + ' right=' + Math.round(r.right));
                 }
                 return out.slice(0, 12);",
                vec![],
            )
            .await
            .unwrap_or_default()
    }

    /// Photographs the whole page at desktop width and at 360 px; at 360 px the page must fit
    /// without scrolling sideways.
    pub async fn snap(&self, name: &str) {
        for (label, width) in [("desktop", DESKTOP.0), ("360px", PHONE_WIDTH)] {
            // A short window first, so the page's height is its content's, not the window's.
            self.client.set_window_size(width, 400).await.unwrap();
            let (scroll_width, inner_width, height, frame) = self.measure().await;
            if width == PHONE_WIDTH {
                assert_eq!(
                    inner_width,
                    u64::from(PHONE_WIDTH),
                    "{name}: the window is not 360 px wide"
                );
                if scroll_width > inner_width {
                    panic!(
                        "{name} scrolls sideways at 360 px: {scroll_width} px of content in {inner_width} px; too wide: {:?}",
                        self.too_wide().await
                    );
                }
            }
            // The whole page in one picture: the window as tall as the page.
            let tall = u32::try_from(height + frame)
                .unwrap_or(8000)
                .clamp(600, 8000);
            self.client.set_window_size(width, tall).await.unwrap();
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(self.shots.join(format!("{name}-{label}.png")), png).unwrap();
        }
        self.client
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .unwrap();
    }

    /// Whether the element is shown (not `hidden`, not `display: none`).
    pub async fn is_displayed(&self, css: &str) -> bool {
        self.find(css).await.is_displayed().await.unwrap()
    }

    pub async fn close(self) {
        self.client.close().await.unwrap();
    }
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
async fn a_person_walks_through_the_dashboard() {
    let mut options = Options::new(Backend::Sqlite)
        .env("RECONCILE_AFTER_SECS", "3600")
        .env("PAYMENT_EXPIRES_AFTER_SECS", "7200");
    for (name, value) in undeliverable_webhooks() {
        options = options.env(name, &value);
    }
    let gw = spawn_with(options).await;
    add_admin(&gw).await;
    let storage = gw.storage();

    // A payment through the API, completed by the simulator's callback; one that fails; one
    // held for review; a callback for no payment and one that is not JSON.
    let (status, body) = gw
        .create_payment(json!({ "phone": "0708 374 149", "amount": 1500, "reference": "SHOP-1", "description": "Two bags of rice" }))
        .await;
    assert_eq!(status, 201, "{body}");
    let paid = body["id"].as_str().unwrap().to_owned();
    let receipt = gw
        .wait_for_status(&paid, "completed", Duration::from_secs(10))
        .await
        .mpesa_receipt_number
        .unwrap();
    let failed = gw.pay(INSUFFICIENT_FUNDS, 300).await;
    gw.wait_for_status(&failed, "failed", Duration::from_secs(10))
        .await;
    let held = held_payment(&gw, NO_CALLBACK, "HELD-7").await;
    gw.post_stk_callback(&stk_failure(
        "ws_CO_0000_unknown",
        1032,
        "Request cancelled by user",
    ))
    .await;
    let (s, _) = gw
        .post_stk_callback(b"{\"Body\": {\"stkCallback\": trunc")
        .await;
    assert_eq!(s, 400);
    // Webhooks to a closed port: dead-lettered after two attempts.
    let dead = wait_for_dead_event(&gw).await;

    let b = Browser::start(&gw.base).await;

    // Signed out: sent to sign in, and brought back afterwards.
    b.goto("/admin/payments").await;
    let url = b.wait_for_path("/admin/sign-in").await;
    assert_eq!(url.query(), Some("next=%2Fadmin%2Fpayments"));
    b.find("label[for=username]").await;
    b.snap("01-sign-in").await;
    b.type_into("#username", ADMIN).await;
    b.type_into("#password", PASSWORD).await;
    b.click("form[action='/admin/sign-in'] button[type=submit]")
        .await;
    b.wait_for_path("/admin/payments").await;
    let text = b.text().await;
    assert!(
        text.contains("SHOP-1") && text.contains("254708374149"),
        "{text}"
    );
    b.snap("03-payments").await;

    // The overview: money in and what needs a person.
    b.goto("/admin/").await;
    let text = b.text().await;
    for expected in [
        "Needs attention",
        "HELD-7",
        "Dead-lettered notifications",
        "KSh 1,500",
    ] {
        assert!(
            text.contains(expected),
            "overview lacks {expected}:\n{text}"
        );
    }
    b.find("svg.chart title").await;
    b.snap("02-overview").await;

    // Filter: completed payments with this reference.
    b.goto("/admin/payments").await;
    b.find("#f-status")
        .await
        .select_by_value("completed")
        .await
        .unwrap();
    b.type_into("#f-reference", "SHOP-1").await;
    b.click("form[role=search] button[type=submit]").await;
    let url = b.wait_for_query("status=completed").await;
    let query = url.query().unwrap_or_default().to_owned();
    assert!(
        query.contains("status=completed") && query.contains("reference=SHOP-1"),
        "{query}"
    );
    let text = b.text().await;
    assert!(
        text.contains("SHOP-1") && !text.contains("HELD-7"),
        "{text}"
    );
    b.snap("04-payments-filtered").await;

    // Open it: its whole story, its callback pretty-printed.
    b.click(&format!("table a[href='/admin/payments/{paid}']"))
        .await;
    b.wait_for_path(&format!("/admin/payments/{paid}")).await;
    let text = b.text().await;
    for expected in [
        receipt.as_str(),
        "Payment request stored",
        "Daraja accepted the STK push",
        "Callback received (Applied)",
        "\"MpesaReceiptNumber\"",
        "Webhook queued: payment.completed",
        "Webhook attempt 1: failed",
    ] {
        assert!(
            text.contains(expected),
            "payment page lacks {expected}:\n{text}"
        );
    }
    b.snap("05-payment").await;
    let callback = storage.callbacks_for_payment(&paid).await.unwrap()[0]
        .id
        .clone();
    b.click(&format!("a[href='/admin/callbacks/{callback}']"))
        .await;
    b.wait_for_path(&format!("/admin/callbacks/{callback}"))
        .await;
    assert!(b.text().await.contains("\"CheckoutRequestID\""));
    b.snap("06-callback").await;

    // The raw inbox, unmatched and unparseable ones included.
    b.goto("/admin/callbacks").await;
    let text = b.text().await;
    for expected in ["Unmatched", "Unparseable", "ws_CO_0000_unknown", "Applied"] {
        assert!(
            text.contains(expected),
            "callbacks page lacks {expected}:\n{text}"
        );
    }
    b.snap("07-callbacks").await;

    b.goto(&format!("/admin/payments/{held}")).await;
    let text = b.text().await;
    assert!(
        text.contains("Held for review") && text.contains("Settle payment"),
        "{text}"
    );
    b.find("label[for=note]").await;
    b.snap("08-payment-held").await;

    // The outbox: retry the dead-lettered webhook.
    b.goto("/admin/outbox").await;
    assert!(b.text().await.contains("Dead-lettered"));
    b.snap("09-outbox").await;
    let attempts_before = storage.outbox_attempts(&dead.id).await.unwrap().len();
    b.click(&format!(
        "form[action='/admin/outbox/{}/retry'] button",
        dead.id
    ))
    .await;
    b.wait_for_path(&format!("/admin/outbox/{}", dead.id)).await;
    b.wait_for_text("The event is back in the queue").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while storage.outbox_attempts(&dead.id).await.unwrap().len() <= attempts_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retried event was not attempted again"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    b.client.refresh().await.unwrap();
    b.find("table.stack").await;
    b.snap("10-outbox-event").await;

    // API keys: create one (shown once), use it, revoke it.
    b.goto("/admin/api-keys").await;
    b.type_into("#key-name", "till-2").await;
    b.click("form[action='/admin/api-keys'] button[type=submit]")
        .await;
    let secret = b.find("#new-key").await.text().await.unwrap();
    assert!(secret.starts_with("mpg_"), "{secret}");
    b.snap("11-api-key-created").await;
    assert_eq!(
        gw.api_status_with_key(&secret).await,
        200,
        "the new key works"
    );
    let key_id = storage
        .list_api_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "till-2")
        .unwrap()
        .id;
    b.goto("/admin/api-keys").await;
    assert!(
        !b.source().await.contains(&secret),
        "a key is shown only once"
    );
    b.click(&format!(
        "form[action='/admin/api-keys/{key_id}/revoke'] button"
    ))
    .await;
    b.wait_for_query("notice=key_revoked").await;
    b.wait_for_text("The API key was revoked").await;
    assert_eq!(
        gw.api_status_with_key(&secret).await,
        401,
        "the revoked key is refused"
    );
    b.snap("12-api-keys").await;

    // A form whose CSRF token was taken out is refused.
    b.client
        .execute(
            "document.querySelector(\"form[action='/admin/api-keys'] input[name=csrf]\").remove();",
            vec![],
        )
        .await
        .unwrap();
    b.type_into("#key-name", "no-token").await;
    b.click("form[action='/admin/api-keys'] button[type=submit]")
        .await;
    b.wait_for_text("Form not accepted").await;
    assert!(
        storage
            .list_api_keys()
            .await
            .unwrap()
            .iter()
            .all(|k| k.name != "no-token")
    );
    b.snap("13-csrf-refused").await;

    // Settings: the configuration, secrets masked.
    b.goto("/admin/settings").await;
    let source = b.source().await;
    assert!(source.contains("WEBHOOK_SECRET") && source.contains("masked"));
    assert!(
        !source.contains("whsec_dashboard_test_0123456789"),
        "a secret on the page"
    );
    b.snap("14-settings").await;

    // Sign out: back to the sign-in page, and the dashboard is closed again.
    b.click(".sign-out button").await;
    b.wait_for_path("/admin/sign-in").await;
    b.wait_for_text("You have signed out.").await;
    b.snap("15-signed-out").await;
    b.goto("/admin/").await;
    b.wait_for_path("/admin/sign-in").await;
    assert_eq!(b.path().await, "/admin/sign-in");
    b.close().await;
    gw.stop().await;
}
