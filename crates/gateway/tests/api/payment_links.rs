//! Payment links end to end: the API's routes and errors, the public pay page over plain HTTP
//! (no JavaScript: forms, redirects, the self-refreshing status page), the single-use rule, the
//! rate limits shared by instances, and Swahili. The browser walk is in
//! `dashboard/pay_browser.rs`.

use std::sync::Arc;
use std::time::Duration;

use mpesa_domain::PaymentStatus;
use mpesa_domain::link::ACCOUNT_ALPHABET;
use mpesa_gateway::clock::{Clock, ManualClock};
use mpesa_harness::database::TestDatabase;
use mpesa_storage::{Backend, Channel};
use reqwest::redirect::Policy;
use serde_json::{Value, json};

use crate::dashboard::{escaped, quiet_gateway, undeliverable_webhooks};
use crate::on_every_backend;
use crate::support::*;

on_every_backend!(links_are_created_listed_shown_and_disabled);

/// `POST /api/v1/payment-links` with the test key.
pub async fn create_link(gw: &TestGateway, body: Value) -> (u16, Value) {
    let r = gw
        .client
        .post(gw.url("/api/v1/payment-links"))
        .bearer_auth(&gw.api_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A link that must be created; returns its body.
pub async fn link(gw: &TestGateway, body: Value) -> Value {
    let (status, link) = create_link(gw, body).await;
    assert_eq!(status, 201, "{link}");
    link
}

async fn api_get(gw: &TestGateway, path: &str) -> (u16, Value) {
    let r = gw
        .client
        .get(gw.url(path))
        .bearer_auth(&gw.api_key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The path of a link's page, from its `url`.
pub fn page_path(link: &Value) -> String {
    let url = url::Url::parse(link["url"].as_str().unwrap()).unwrap();
    url.path().to_owned()
}

/// A browser-less customer: no redirects followed, so each answer is seen.
pub fn customer() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

pub async fn page(
    client: &reqwest::Client,
    gw: &TestGateway,
    path: &str,
    lang: Option<&str>,
) -> Answer {
    let mut r = client.get(gw.url(path));
    if let Some(l) = lang {
        r = r.header("accept-language", l);
    }
    let r = r.send().await.unwrap();
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

/// Posts the pay form; returns the answer (a 303 to the status page when it worked).
pub async fn pay_form(
    client: &reqwest::Client,
    gw: &TestGateway,
    path: &str,
    fields: &[(&str, &str)],
) -> Answer {
    let r = client.post(gw.url(path)).form(fields).send().await.unwrap();
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

/// Pays through the page; returns the status page's path (without the query) and the payment id.
pub async fn pay_ok(
    gw: &TestGateway,
    path: &str,
    phone: &str,
    amount: Option<&str>,
) -> (String, String) {
    let mut fields = vec![("phone", phone)];
    if let Some(a) = amount {
        fields.push(("amount", a));
    }
    let a = pay_form(&customer(), gw, path, &fields).await;
    assert_eq!(a.status, 303, "{}", a.body);
    let location = a.headers["location"].to_str().unwrap().to_owned();
    let status_path = location.split('?').next().unwrap().to_owned();
    let id = status_path.rsplit('/').next().unwrap().to_owned();
    assert!(id.starts_with("pay_"), "{location}");
    (status_path, id)
}

/// Waits until the page's state endpoint says `state`.
async fn wait_for_state(gw: &TestGateway, status_path: &str, state: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = customer()
            .get(gw.url(&format!("{status_path}/state")))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        if body["state"] == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "state is {body}, waiting for {state}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn links_are_created_listed_shown_and_disabled(backend: Backend) {
    let gw = spawn(backend).await;
    let created = gw
        .client
        .post(gw.url("/api/v1/payment-links"))
        .bearer_auth(&gw.api_key)
        .json(
            &json!({ "title": "Term 2 fees", "amount": 1500, "single_use": true,
                        "reference": "INV42", "expires_at": "2099-01-01T00:00:00+03:00" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let one: Value = created.json().await.unwrap();
    let id = one["id"].as_str().unwrap();
    assert!(id.starts_with("pl_"), "{one}");
    assert_eq!(location, format!("/api/v1/payment-links/{id}"));
    assert_eq!(one["status"], "active");
    assert_eq!(one["amount"], 1500);
    assert_eq!(one["single_use"], true);
    assert_eq!(one["expires_at"], "2098-12-31T21:00:00.000Z");
    let account = one["account_number"].as_str().unwrap();
    assert_eq!(account.len(), 7);
    assert!(
        account.bytes().all(|b| ACCOUNT_ALPHABET.contains(&b)),
        "{account}"
    );
    let url = one["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/pay/", gw.base)), "{url}");
    let slug = url.rsplit('/').next().unwrap();
    assert!(
        slug.len() >= 22 && slug.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{slug}"
    );

    let range = link(
        &gw,
        json!({ "title": "Donation", "amount_min": 50, "amount_max": 5000, "language": "sw" }),
    )
    .await;
    assert_eq!(
        (range["amount_min"].clone(), range["amount_max"].clone()),
        (json!(50), json!(5000))
    );
    assert_eq!(range["language"], "sw");
    assert_ne!(range["account_number"], one["account_number"]);

    // Every refusal names its field; nothing is stored.
    for (body, field) in [
        (json!({ "amount": 5 }), "title"),
        (json!({ "title": "x" }), "amount"),
        (
            json!({ "title": "x", "amount": 5, "amount_max": 9 }),
            "amount",
        ),
        (json!({ "title": "x", "amount": 0 }), "amount"),
        (json!({ "title": "x", "amount": 250_001 }), "amount"),
        (json!({ "title": "x", "amount": 1.5 }), "amount"),
        (
            json!({ "title": "x", "amount_min": 90, "amount_max": 10 }),
            "amount_min",
        ),
        (
            json!({ "title": "x", "amount": 5, "reference": "way too long a reference" }),
            "reference",
        ),
        (
            json!({ "title": "x", "amount": 5, "single_use": "yes" }),
            "single_use",
        ),
        (
            json!({ "title": "x", "amount": 5, "expires_at": "tomorrow" }),
            "expires_at",
        ),
        (
            json!({ "title": "x", "amount": 5, "expires_at": "2001-01-01T00:00:00Z" }),
            "expires_at",
        ),
        (
            json!({ "title": "x", "amount": 5, "language": "fr" }),
            "language",
        ),
        (
            json!({ "title": "x", "amount": 5, "colour": "red" }),
            "colour",
        ),
        (json!({ "title": "a\u{0007}b", "amount": 5 }), "title"),
    ] {
        let (status, err) = create_link(&gw, body.clone()).await;
        assert_eq!(status, 422, "{body} → {err}");
        assert_eq!(err["error"]["field"], field, "{body} → {err}");
    }
    let no_key = gw
        .client
        .post(gw.url("/api/v1/payment-links"))
        .json(&json!({ "title": "x", "amount": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let text = gw
        .client
        .post(gw.url("/api/v1/payment-links"))
        .bearer_auth(&gw.api_key)
        .body("title=x")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    let broken = gw
        .client
        .post(gw.url("/api/v1/payment-links"))
        .bearer_auth(&gw.api_key)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);

    // Listed newest first, in pages.
    let (status, list) = api_get(&gw, "/api/v1/payment-links?limit=1").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"][0]["id"], range["id"]);
    let cursor = list["next_cursor"].as_str().unwrap();
    let (_, rest) = api_get(
        &gw,
        &format!("/api/v1/payment-links?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(rest["data"][0]["id"], one["id"]);
    for bad in ["limit=0", "limit=x", "cursor=nonsense", "colour=red"] {
        let (status, _) = api_get(&gw, &format!("/api/v1/payment-links?{bad}")).await;
        assert_eq!(status, 422, "{bad}");
    }
    let unauthenticated = gw
        .client
        .get(gw.url("/api/v1/payment-links"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    // Shown with its payments and total (none yet).
    let (status, shown) = api_get(&gw, &format!("/api/v1/payment-links/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown["account_number"], one["account_number"]);
    assert_eq!(shown["payments"], json!([]));
    assert_eq!(
        shown["total"],
        json!({ "completed_count": 0, "completed_amount": 0, "payment_count": 0 })
    );
    let long = "x".repeat(65);
    for missing in ["pl_nope", long.as_str()] {
        let (status, err) = api_get(&gw, &format!("/api/v1/payment-links/{missing}")).await;
        assert_eq!(status, 404, "{err}");
    }

    // Disabled: the API says so, the page says so, the account number pays nothing more.
    let disable = |path: String| {
        let (client, url, key) = (gw.client.clone(), gw.url(&path), gw.api_key.clone());
        async move {
            let r = client.post(url).bearer_auth(key).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, disabled) = disable(format!("/api/v1/payment-links/{id}/disable")).await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["status"], "disabled");
    let (status, again) = disable(format!("/api/v1/payment-links/{id}/disable")).await;
    assert_eq!((status, again["status"].clone()), (200, json!("disabled")));
    let (status, _) = disable("/api/v1/payment-links/pl_nope/disable".into()).await;
    assert_eq!(status, 404);
    let closed = page(&customer(), &gw, &page_path(&one), None).await;
    assert_eq!(closed.status, 410);
    assert!(closed.body.contains("no longer in use"), "{}", closed.body);
    assert!(
        gw.storage()
            .find_open_payment_link_by_account(account, mpesa_gateway::ids::now_ms())
            .await
            .unwrap()
            .is_none()
    );
    let paid_anyway = pay_form(&customer(), &gw, &page_path(&one), &[("phone", SUCCESS)]).await;
    assert_eq!(paid_anyway.status, 410);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_pays_on_the_page_without_javascript_and_the_webhook_names_the_link() {
    let mut options = Options::new(Backend::Sqlite).env("BUSINESS_NAME", "Amani <Dance> School");
    for (name, value) in undeliverable_webhooks() {
        options = options.env(name, &value);
    }
    let gw = spawn_with(options).await;
    let l = link(
        &gw,
        json!({ "title": "Term 2 <script>alert(1)</script>", "amount": 1500,
                "description": "Ballet & tap \"beginners\"" }),
    )
    .await;
    let path = page_path(&l);
    let account = l["account_number"].as_str().unwrap();

    let form = page(&customer(), &gw, &path, Some("en-GB,en;q=0.9")).await;
    assert_eq!(form.status, 200);
    let h = &form.headers;
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let body = &form.body;
    assert!(!body.contains("<script>alert"), "a title is escaped");
    for hostile in [
        "Term 2 <script>alert(1)</script>",
        "Amani <Dance> School",
        "Ballet & tap \"beginners\"",
    ] {
        assert!(
            body.contains(&escaped(hostile)),
            "{hostile} escaped: {body}"
        );
    }
    assert!(body.contains("KSh 1,500"), "{body}");
    assert!(
        body.contains(account),
        "the paybill fallback names the account"
    );
    assert!(
        !body.contains(" style=") && !body.contains("<script>"),
        "no inline script or style"
    );
    // The stylesheet and script are served under their hashed names.
    for asset in ["stylesheet\" href=\"", "<script src=\""] {
        let start = body.find(asset).unwrap() + asset.len();
        let href = &body[start..start + body[start..].find('"').unwrap()];
        let a = page(&customer(), &gw, href, None).await;
        assert_eq!(a.status, 200, "{href}");
        assert!(
            a.headers["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
    }

    // Pay with the simulator's success number: a 303 to the status page, which follows it.
    let (status_path, payment_id) = pay_ok(&gw, &path, "0708 374 149", None).await;
    let waiting = page(&customer(), &gw, &status_path, None).await;
    assert_eq!(waiting.status, 200);
    if waiting.body.contains("Check your phone") {
        assert!(
            waiting.body.contains("http-equiv=\"refresh\""),
            "refreshes itself without JavaScript"
        );
        assert!(waiting.body.contains("0708 ••• 149"), "{}", waiting.body);
    }
    wait_for_state(&gw, &status_path, "paid").await;
    let receipt_page = page(&customer(), &gw, &status_path, None).await;
    let p = gw
        .storage()
        .get_payment(&payment_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.status, PaymentStatus::Completed);
    assert_eq!(p.payment_link_id.as_deref(), l["id"].as_str());
    assert_eq!(p.source.as_str(), "pay_page");
    let receipt = p.mpesa_receipt_number.clone().unwrap();
    for expected in [
        "Payment received",
        receipt.as_str(),
        "KSh 1,500",
        "EAT",
        escaped("Amani <Dance> School").as_str(),
    ] {
        assert!(
            receipt_page.body.contains(expected),
            "receipt lacks {expected}:\n{}",
            receipt_page.body
        );
    }
    assert!(
        !receipt_page.body.contains("http-equiv=\"refresh\""),
        "a final page stays still"
    );

    // The link shows it and its total; the webhook names the link.
    let (_, shown) = api_get(
        &gw,
        &format!("/api/v1/payment-links/{}", l["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(shown["payments"][0]["id"], payment_id);
    assert_eq!(shown["payments"][0]["payment_link_id"], l["id"]);
    assert_eq!(shown["total"]["completed_amount"], 1500);
    let (_, payment) = api_get(&gw, &format!("/api/v1/payments/{payment_id}")).await;
    assert_eq!(payment["payment_link_id"], l["id"]);
    let webhook = gw
        .storage()
        .outbox_for_payment(&payment_id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.channel == Channel::Webhook && e.event_type == "payment.completed")
        .expect("a payment.completed webhook");
    let payload: Value = serde_json::from_str(&webhook.payload).unwrap();
    assert_eq!(payload["data"]["payment_link_id"], l["id"], "{payload}");

    // A reusable link takes the next customer too.
    assert_eq!(page(&customer(), &gw, &path, None).await.status, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_speaks_swahili_by_switch_link_or_browser() {
    let gw = spawn(Backend::Sqlite).await;
    let plain = link(
        &gw,
        json!({ "title": "Ada", "amount_min": 100, "amount_max": 2000 }),
    )
    .await;
    let swahili = link(
        &gw,
        json!({ "title": "Ada", "amount": 300, "language": "sw" }),
    )
    .await;
    let c = customer();
    let en = page(&c, &gw, &page_path(&plain), Some("en-US,en;q=0.9")).await;
    assert!(
        en.body.contains("<html lang=\"en\">") && en.body.contains(">Pay<"),
        "{}",
        en.body
    );
    assert!(en.body.contains("KSh 100 – KSh 2,000"), "{}", en.body);
    let by_browser = page(&c, &gw, &page_path(&plain), Some("sw-KE,sw;q=0.9,en;q=0.5")).await;
    assert!(
        by_browser.body.contains("<html lang=\"sw\">") && by_browser.body.contains(">Lipa<"),
        "{}",
        by_browser.body
    );
    let by_link = page(&c, &gw, &page_path(&swahili), Some("en-US")).await;
    assert!(
        by_link.body.contains("Lipa kwa M-Pesa") || by_link.body.contains(">Lipa<"),
        "{}",
        by_link.body
    );
    assert!(
        by_link.body.contains("Namba ya akaunti"),
        "{}",
        by_link.body
    );
    let switched = page(
        &c,
        &gw,
        &format!("{}?lang=en", page_path(&swahili)),
        Some("sw"),
    )
    .await;
    assert!(
        switched.body.contains(">Pay<"),
        "the switch wins: {}",
        switched.body
    );
    assert!(
        switched.body.contains("?lang=sw"),
        "and offers the way back"
    );

    // A refusal in Swahili: an amount outside the range.
    let refused = pay_form(
        &c,
        &gw,
        &page_path(&plain),
        &[("phone", SUCCESS), ("amount", "5000"), ("lang", "sw")],
    )
    .await;
    assert_eq!(refused.status, 422);
    assert!(
        refused
            .body
            .contains("Weka kiasi kati ya KSh 100 na KSh 2,000."),
        "{}",
        refused.body
    );
    // A bad phone in English, the typed values kept (escaped).
    let refused = pay_form(
        &c,
        &gw,
        &page_path(&plain),
        &[("phone", "<b>12</b>"), ("amount", "150")],
    )
    .await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.body.contains("Enter a Safaricom number"),
        "{}",
        refused.body
    );
    assert!(
        refused
            .body
            .contains(&format!("value=\"{}\"", escaped("<b>12</b>"))),
        "{}",
        refused.body
    );

    // Paid in Swahili: the receipt too.
    let (status_path, _) = pay_ok(&gw, &page_path(&swahili), SUCCESS, None).await;
    wait_for_state(&gw, &status_path, "paid").await;
    let receipt = page(&c, &gw, &status_path, None).await;
    assert!(
        receipt.body.contains("Malipo yamepokelewa") && receipt.body.contains("Risiti ya M-Pesa"),
        "{}",
        receipt.body
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prompt_offers_another_try_and_the_paybill() {
    let gw = spawn(Backend::Sqlite).await;
    let l = link(&gw, json!({ "title": "Uniform", "amount": 700 })).await;
    let c = customer();
    for (phone, words) in [
        (CANCELLED, "You cancelled the payment"),
        (INSUFFICIENT_FUNDS, "balance is not enough"),
        (WRONG_PIN, "PIN entered was wrong"),
        (NO_ANSWER, "not answered in time"),
    ] {
        let (status_path, _) = pay_ok(&gw, &page_path(&l), phone, None).await;
        wait_for_state(&gw, &status_path, "failed").await;
        let failed = page(&c, &gw, &status_path, None).await;
        assert!(failed.body.contains(words), "{phone}: {}", failed.body);
        assert!(failed.body.contains("Try again"), "{}", failed.body);
        assert!(
            failed.body.contains(l["account_number"].as_str().unwrap()),
            "{}",
            failed.body
        );
        assert!(failed.body.contains("Pay Bill"), "{}", failed.body);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_tells_nothing_of_other_payments_and_one_prompt_per_phone() {
    let gw = quiet_gateway(Backend::Sqlite, &[]).await;
    let a = link(&gw, json!({ "title": "A", "amount": 100 })).await;
    let b = link(&gw, json!({ "title": "B", "amount": 100 })).await;
    let (status_path, payment_id) = pay_ok(&gw, &page_path(&a), SUCCESS, None).await;
    // The same payment under the other link's address: nothing.
    let other = page(
        &customer(),
        &gw,
        &format!("{}/p/{payment_id}", page_path(&b)),
        None,
    )
    .await;
    assert_eq!(other.status, 404);
    let state = customer()
        .get(gw.url(&format!("{}/p/{payment_id}/state", page_path(&b))))
        .send()
        .await
        .unwrap();
    assert_eq!(state.status(), 404);
    // A payment made through the API is not a link's.
    let api_payment = gw.pay("254711000222", 10).await;
    let api = page(
        &customer(),
        &gw,
        &format!("{}/p/{api_payment}", page_path(&a)),
        None,
    )
    .await;
    assert_eq!(api.status, 404);
    for nonsense in ["/pay/", "/pay/nope", "/pay/%3Cscript%3E", "/pay/a/p/b"] {
        let r = page(&customer(), &gw, nonsense, None).await;
        assert!(matches!(r.status, 404), "{nonsense}: {}", r.status);
        assert!(!r.body.contains("<script>"), "{nonsense}");
    }
    // The prompt is still open on the phone: a second one is refused, on any link.
    let busy = pay_form(&customer(), &gw, &page_path(&b), &[("phone", SUCCESS)]).await;
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert!(
        busy.body.contains("already waiting on this phone"),
        "{}",
        busy.body
    );
    assert!(!busy.body.contains(&payment_id), "names no payment");
    let waiting = page(&customer(), &gw, &status_path, None).await;
    assert!(
        waiting.body.contains("Check your phone")
            && waiting.body.contains("data-state=\"waiting\"")
    );
    gw.stop().await;
}

/// A single-use link takes one prompt at a time: a second phone is told someone is paying it
/// (no second push), as two prompts open at once could both be paid. It used to push to both.
/// Paid twice all the same (the paybill while the prompt was open, then the prompt), the second
/// payment is held for review and its customer told it will be checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_link_takes_one_prompt_and_a_second_payment_is_held() {
    let gw = quiet_gateway(Backend::Sqlite, &[]).await;
    gw.c2b_registered().await;
    let l = link(
        &gw,
        json!({ "title": "Invoice 42", "amount": 250, "single_use": true }),
    )
    .await;
    let path = page_path(&l);
    let pushes = || {
        gw.sim()
            .requests()
            .iter()
            .filter(|r| r.path.contains("stkpush/v1/processrequest"))
            .count()
    };
    // A form another site made a visitor's browser post: refused, nothing pushed.
    let forged = customer()
        .post(gw.url(&path))
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("phone", SUCCESS)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let text = forged.text().await.unwrap();
    assert!(text.contains("sent from another website"), "{text}");
    assert_eq!(pushes(), 0);
    let (prompt_path, prompted) = pay_ok(&gw, &path, SUCCESS, None).await;
    assert_eq!(pushes(), 1);
    let busy = pay_form(&customer(), &gw, &path, &[("phone", "254711000333")]).await;
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert!(
        busy.body.contains("Someone is paying this now"),
        "{}",
        busy.body
    );
    assert_eq!(pushes(), 1, "no second prompt");

    // Meanwhile someone pays at the paybill with the link's account number: that pays it.
    let account = l["account_number"].as_str().unwrap().to_owned();
    let (s, _) = gw
        .post_c2b_confirmation(&crate::c2b::confirmation(
            "SHK1FIRST1",
            "600000",
            &account,
            "250.00",
            // Another phone than the prompt's: not that prompt's own payment.
            "254711000444",
            "WANJIRU",
        ))
        .await;
    assert_eq!(s, 200);
    let by_paybill = gw.payment_by_receipt("SHK1FIRST1").await;
    let storage = gw.storage();
    let link_after = storage
        .get_payment_link(l["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link_after.status.as_str(), "paid");
    assert_eq!(
        link_after.paid_payment_id.as_deref(),
        Some(by_paybill.id.as_str())
    );
    let closed = page(&customer(), &gw, &path, None).await;
    assert_eq!(closed.status, 410);
    assert!(
        closed.body.contains("This link has been paid"),
        "{}",
        closed.body
    );

    // Then the prompt is answered too: paid twice.
    let checkout = storage
        .get_payment(&prompted)
        .await
        .unwrap()
        .unwrap()
        .checkout_request_id
        .unwrap();
    let (s, _) = gw
        .post_stk_callback(&stk_success(&checkout, "250", SUCCESS, "SHK2SECOND"))
        .await;
    assert_eq!(s, 200);
    let held = storage.get_payment(&prompted).await.unwrap().unwrap();
    assert_eq!(
        held.status,
        PaymentStatus::Completed,
        "the money did arrive"
    );
    assert!(held.needs_review, "never silently accepted");
    assert!(
        held.review_reason
            .as_deref()
            .unwrap()
            .contains("refund suggested"),
        "{:?}",
        held.review_reason
    );
    assert!(
        !storage
            .get_payment(&by_paybill.id)
            .await
            .unwrap()
            .unwrap()
            .needs_review
    );
    // The customer who paid second is told it will be checked.
    let told = page(&customer(), &gw, &prompt_path, None).await;
    assert!(
        told.body.contains("refund you if you paid twice"),
        "{}",
        told.body
    );
    // The API shows both, and the total counts the money that came in.
    let (_, shown) = api_get(
        &gw,
        &format!("/api/v1/payment-links/{}", l["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(shown["status"], "paid");
    assert_eq!(shown["paid_payment_id"], by_paybill.id.as_str());
    assert_eq!(shown["total"]["completed_count"], 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_are_limited_per_phone_and_per_link() {
    let gw = spawn_with(
        Options::new(Backend::Sqlite)
            .env("PAY_PAGE_LIMIT_PER_PHONE", "2")
            .env("PAY_PAGE_LIMIT_PER_LINK", "3")
            .env("PAY_PAGE_LIMIT_PER_ADDRESS", "100"),
    )
    .await;
    // Per phone: two prompts (each answered: cancelled), then a wait.
    let a = link(
        &gw,
        json!({ "title": "A", "amount_min": 10, "amount_max": 1000 }),
    )
    .await;
    for amount in ["11", "12"] {
        let (status_path, _) = pay_ok(&gw, &page_path(&a), CANCELLED, Some(amount)).await;
        wait_for_state(&gw, &status_path, "failed").await;
    }
    let limited = pay_form(
        &customer(),
        &gw,
        &page_path(&a),
        &[("phone", CANCELLED), ("amount", "13")],
    )
    .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    assert!(
        limited.body.contains("Try again after") && limited.body.contains("EAT"),
        "{}",
        limited.body
    );
    let payments_of_phone = gw
        .storage()
        .list_payments(
            &mpesa_storage::PaymentFilter {
                phone: Some(CANCELLED.into()),
                ..Default::default()
            },
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        payments_of_phone.items.len(),
        2,
        "the refused one was not stored, not pushed"
    );

    // Per link: three prompts through one link from three phones, then a wait for anyone.
    let b = link(&gw, json!({ "title": "B", "amount": 20 })).await;
    for phone in [INSUFFICIENT_FUNDS, WRONG_PIN, NO_ANSWER] {
        pay_ok(&gw, &page_path(&b), phone, None).await;
    }
    let limited = pay_form(&customer(), &gw, &page_path(&b), &[("phone", SUCCESS)]).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    // Another link is not limited by it.
    let c = link(&gw, json!({ "title": "C", "amount": 20 })).await;
    pay_ok(&gw, &page_path(&c), SUCCESS, None).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_per_address_hold_across_instances() {
    let db = Arc::new(TestDatabase::new(Backend::Postgres).await);
    let start = |db: Arc<TestDatabase>| async move {
        let mut options = Options::new(Backend::Postgres)
            .env("PAY_PAGE_LIMIT_PER_ADDRESS", "2")
            .env("RECONCILE_AFTER_SECS", "3600")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "7200");
        options.database = Some(db);
        options.sim.faults.global = daraja_sim::faults::CallbackFaults {
            suppress: true,
            ..Default::default()
        };
        spawn_with(options).await
    };
    let one = start(db.clone()).await;
    let two = start(db.clone()).await;
    let l = link(&one, json!({ "title": "Shared", "amount": 50 })).await;
    let path = page_path(&l);
    pay_ok(&one, &path, "254711000401", None).await;
    pay_ok(&two, &path, "254711000402", None).await;
    for gw in [&one, &two] {
        let limited = pay_form(&customer(), gw, &path, &[("phone", "254711000403")]).await;
        assert_eq!(limited.status, 429, "{}", limited.body);
    }
    one.stop().await;
    two.stop().await;
}

/// Customers behind a trusted proxy whose addresses come from one IPv6 /64 share the limit per
/// address: a subscriber draws fresh addresses from its block at will, so a fresh address of
/// the same block is not a fresh limit. Another block is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_of_one_ipv6_block_share_the_limit_per_address() {
    let mut options = Options::new(Backend::Sqlite)
        .env("PAY_PAGE_LIMIT_PER_ADDRESS", "2")
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .env("RECONCILE_AFTER_SECS", "3600")
        .env("PAYMENT_EXPIRES_AFTER_SECS", "7200");
    options.sim.faults.global = daraja_sim::faults::CallbackFaults {
        suppress: true,
        ..Default::default()
    };
    let gw = spawn_with(options).await;
    let l = link(&gw, json!({ "title": "Block", "amount": 50 })).await;
    let path = page_path(&l);
    let from = |address: &str| {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", address.parse().unwrap());
        reqwest::Client::builder()
            .redirect(Policy::none())
            .default_headers(headers)
            .build()
            .unwrap()
    };
    let tries = [
        ("2001:db8:7:1::10", "254711000501", 303),
        ("2001:db8:7:1::11", "254711000502", 303),
        ("2001:db8:7:1:abcd::12", "254711000503", 429),
        ("2001:db8:7:2::10", "254711000504", 303),
    ];
    for (address, phone, expected) in tries {
        let answer = pay_form(&from(address), &gw, &path, &[("phone", phone)]).await;
        assert_eq!(answer.status, expected, "{address}: {}", answer.body);
    }
    gw.stop().await;
}

/// Runs `mpesa-gateway links …` on the gateway's database.
fn links_command(gw: &TestGateway, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mpesa-gateway"))
        .arg("links")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", gw.database.url())
        .env("PUBLIC_URL", &gw.base)
        .output()
        .expect("mpesa-gateway links runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_made_listed_and_disabled_from_the_command_line() {
    let gw = spawn(Backend::Sqlite).await;
    let made = links_command(
        &gw,
        &[
            "create",
            "--title",
            "Bus fare",
            "--min",
            "50",
            "--max",
            "500",
            "--single-use",
            "--language",
            "sw",
        ],
    );
    let err = String::from_utf8_lossy(&made.stderr);
    assert!(made.status.success(), "{err}");
    let url = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    assert!(url.starts_with(&format!("{}/pay/", gw.base)), "{url}");
    // The running gateway serves the link the command made, in the link's language.
    let path = url::Url::parse(&url).unwrap().path().to_owned();
    let shown = page(&customer(), &gw, &path, Some("en")).await;
    assert_eq!(shown.status, 200);
    assert!(
        shown.body.contains("Bus fare") && shown.body.contains(">Lipa<"),
        "{}",
        shown.body
    );
    let id = err
        .split_whitespace()
        .find(|w| w.starts_with("pl_"))
        .unwrap()
        .to_owned();
    let account = err
        .trim_end()
        .trim_end_matches('.')
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    assert!(shown.body.contains(&account), "{account}");

    let listed = links_command(&gw, &["list"]);
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && out.contains(&id) && out.contains(&url),
        "{out}"
    );

    let refused = links_command(&gw, &["create", "--title", "No amount"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--amount"),
        "names the flag"
    );
    let refused = links_command(
        &gw,
        &["create", "--title", "x", "--amount", "5", "--min", "1"],
    );
    assert!(
        !refused.status.success(),
        "clap refuses a fixed amount with a range"
    );

    let disabled = links_command(&gw, &["disable", &id]);
    assert!(
        disabled.status.success(),
        "{}",
        String::from_utf8_lossy(&disabled.stderr)
    );
    assert_eq!(page(&customer(), &gw, &path, None).await.status, 410);
    let missing = links_command(&gw, &["disable", "pl_nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no payment link"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paybill_payment_to_the_account_number_settles_the_link_once() {
    let gw = spawn_with(
        Options::new(Backend::Sqlite)
            .env("C2B_VALIDATION", "rules")
            .env("C2B_REQUIRE_KNOWN_ACCOUNT", "true")
            .env("RECONCILE_AFTER_SECS", "3600")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "7200"),
    )
    .await;
    gw.c2b_registered().await;
    gw.sim().set_c2b_validation("600000", true);
    let l = link(
        &gw,
        json!({ "title": "Invoice 7", "amount": 400, "single_use": true }),
    )
    .await;
    let account = l["account_number"].as_str().unwrap().to_owned();
    let path = page_path(&l);
    // The prompt went unanswered; the page shows the paybill and the account number.
    let (status_path, stk) = pay_ok(&gw, &path, NO_CALLBACK, None).await;
    let waiting = page(&customer(), &gw, &status_path, None).await;
    assert!(
        waiting.body.contains("600000") && waiting.body.contains(&account),
        "{}",
        waiting.body
    );

    // The customer pays the paybill, typing the account in lower case with a space: the link's
    // open account is known to validation, and the confirmation settles the link.
    let typed = format!("{} {}", account[..3].to_lowercase(), &account[3..]);
    let outcome = gw
        .sim()
        .pay_c2b(daraja_sim::CustomerPayment::paybill("600000", &typed, 400))
        .await
        .unwrap();
    let c2b = gw.payment_by_receipt(&outcome.trans_id).await;
    assert_eq!(
        c2b.payment_link_id.as_deref(),
        l["id"].as_str(),
        "tied to the link"
    );
    assert!(!c2b.needs_review);
    let storage = gw.storage();
    let paid = storage
        .get_payment_link(l["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paid.status.as_str(), "paid");
    assert_eq!(paid.paid_payment_id.as_deref(), Some(c2b.id.as_str()));
    assert_eq!(page(&customer(), &gw, &path, None).await.status, 410);

    // The STK prompt is answered after all: paid twice, so the second is held, refund suggested.
    let checkout = storage
        .get_payment(&stk)
        .await
        .unwrap()
        .unwrap()
        .checkout_request_id
        .unwrap();
    let (s, _) = gw
        .post_stk_callback(&stk_success(&checkout, "400", NO_CALLBACK, "SHK7LATE01"))
        .await;
    assert_eq!(s, 200);
    let late = storage.get_payment(&stk).await.unwrap().unwrap();
    assert_eq!(late.status, PaymentStatus::Completed);
    assert!(late.needs_review, "never silently accepted");
    assert!(late.review_reason.unwrap().contains(&c2b.id));

    // A second paybill payment to the same account: the link is closed, so it is an ordinary
    // C2B payment (and validation no longer knows the account).
    let again = gw
        .sim()
        .pay_c2b(daraja_sim::CustomerPayment::paybill(
            "600000", &account, 400,
        ))
        .await
        .unwrap();
    assert!(
        matches!(again.status, daraja_sim::C2bStatus::Rejected { .. }),
        "a closed link's account is refused by validation: {:?}",
        again.status
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paybill_payments_pay_a_link_only_while_it_is_open_and_for_its_amount() {
    let gw = quiet_gateway(Backend::Sqlite, &[]).await;
    gw.c2b_registered().await;
    let l = link(
        &gw,
        json!({ "title": "Deposit", "amount_min": 100, "amount_max": 900, "single_use": true }),
    )
    .await;
    let account = l["account_number"].as_str().unwrap().to_owned();
    // Two confirmations for the link's account arrive (two people paid it): the first settles it.
    let body = |id: &str| {
        crate::c2b::confirmation(
            id,
            "600000",
            &account,
            "250.00",
            "2547 ***** 149",
            "WANJIRU",
        )
    };
    let (s, _) = gw.post_c2b_confirmation(&body("SHK1AAAAAA")).await;
    assert_eq!(s, 200);
    let first = gw.payment_by_receipt("SHK1AAAAAA").await;
    assert_eq!(first.payment_link_id.as_deref(), l["id"].as_str());
    assert!(!first.needs_review);
    // The second is booked (the money arrived) as the paid link's second payment: held for a
    // person, refund suggested, as when the prompt is answered after a paybill payment. It used
    // to be an ordinary C2B payment that nobody was told about.
    let (s, _) = gw.post_c2b_confirmation(&body("SHK2BBBBBB")).await;
    assert_eq!(s, 200);
    let second = gw.payment_by_receipt("SHK2BBBBBB").await;
    assert_eq!(second.payment_link_id.as_deref(), l["id"].as_str());
    assert!(second.needs_review, "{second:?}");
    assert!(
        second
            .review_reason
            .as_deref()
            .is_some_and(|r| r.contains("already paid")),
        "{second:?}"
    );
    assert_eq!(second.reference, account);
    let link_now = gw
        .storage()
        .get_payment_link(l["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        link_now.paid_payment_id.as_deref(),
        Some(first.id.as_str()),
        "still paid by the first"
    );
    // An amount outside the link's range does not pay it either.
    let l2 = link(&gw, json!({ "title": "Fee", "amount": 300 })).await;
    let account2 = l2["account_number"].as_str().unwrap().to_owned();
    let (s, _) = gw
        .post_c2b_confirmation(&crate::c2b::confirmation(
            "SHK3CCCCCC",
            "600000",
            &account2,
            "299.00",
            "254708374149",
            "A",
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        gw.payment_by_receipt("SHK3CCCCCC").await.payment_link_id,
        None
    );
    gw.stop().await;
}

/// A link with an expiry takes payments until the gateway's clock passes it, then none: its
/// page says it has expired and refuses the form (no prompt goes out), and a paybill payment to
/// its account number is booked as an ordinary C2B payment, not the link's. The clock is moved
/// an hour on instead of the test waiting for an expiry of seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_stops_taking_payments_when_the_clock_passes_its_expiry() {
    let time = Arc::new(ManualClock::new(chrono::Utc::now()));
    let gw = spawn_with(Options::new(Backend::Sqlite).clock(Clock::manual(time.clone()))).await;
    gw.c2b_registered().await;
    let expires_at = chrono::Utc::now() + chrono::Duration::hours(1);
    let l = link(
        &gw,
        json!({ "title": "School trip", "amount_min": 100, "amount_max": 900,
                "expires_at": expires_at.to_rfc3339() }),
    )
    .await;
    let (path, link_id) = (page_path(&l), l["id"].as_str().unwrap().to_owned());
    let account = l["account_number"].as_str().unwrap().to_owned();
    let paybill = |receipt: &str| {
        crate::c2b::confirmation(
            receipt,
            "600000",
            &account,
            "300.00",
            "254708374149",
            "ACHIENG",
        )
    };
    let links = &gw.state.links;

    // Before its expiry: the page offers the form, a prompt goes out, the paybill pays it.
    assert_eq!(page(&customer(), &gw, &path, None).await.status, 200);
    let (_, paid) = pay_ok(&gw, &path, SUCCESS, Some("250")).await;
    gw.wait_for_status(&paid, "completed", Duration::from_secs(15))
        .await;
    let (s, _) = gw.post_c2b_confirmation(&paybill("SHK4DDDDDD")).await;
    assert_eq!(s, 200);
    let at_the_paybill = gw.payment_by_receipt("SHK4DDDDDD").await;
    assert_eq!(
        at_the_paybill.payment_link_id.as_deref(),
        Some(link_id.as_str())
    );
    assert_eq!(links.payments_of(&link_id, 50).await.unwrap().len(), 2);

    let (_, before) = api_get(&gw, &format!("/api/v1/payment-links/{link_id}")).await;
    assert_eq!(before["status"], "active", "{before}");
    time.advance(chrono::Duration::minutes(61));
    let (status, after) = api_get(&gw, &format!("/api/v1/payment-links/{link_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        after["status"], "expired",
        "the API tells the link's state on the gateway's clock, as the pay page does: {after}"
    );
    let shown = page(&customer(), &gw, &path, None).await;
    assert_eq!(shown.status, 410, "{}", shown.body);
    assert!(shown.body.contains("has expired"), "{}", shown.body);
    let refused = pay_form(
        &customer(),
        &gw,
        &path,
        &[("phone", "0711222333"), ("amount", "250")],
    )
    .await;
    assert_eq!(refused.status, 410, "{}", refused.body);
    assert!(refused.body.contains("has expired"), "{}", refused.body);
    let (s, _) = gw.post_c2b_confirmation(&paybill("SHK5EEEEEE")).await;
    assert_eq!(s, 200);
    let after = gw.payment_by_receipt("SHK5EEEEEE").await;
    assert_eq!(
        after.payment_link_id, None,
        "an expired link takes no payment"
    );
    assert_eq!(after.reference, account);
    assert_eq!(
        links.payments_of(&link_id, 50).await.unwrap().len(),
        2,
        "nothing more was paid through the link"
    );
    let stk_pushes = gw
        .sim()
        .requests()
        .iter()
        .filter(|r| r.path == "/mpesa/stkpush/v1/processrequest")
        .count();
    assert_eq!(stk_pushes, 1, "no prompt after the expiry");
    gw.stop().await;
}

/// Issue 15's "held for review, never silently accepted", as people hear it: the prompt's
/// success arrives after a paybill payment already paid the single-use link. The merchant gets
/// `payment.held_for_review` (with `needs_review: true`), the admin "held for review, refund
/// suggested"; nobody hears "completed" and the customer gets no "paid" receipt for it. When an
/// admin settles it after all, the merchant hears `payment.completed` then, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_second_payment_is_not_announced_as_completed() {
    use crate::outbox::{ADMIN_EMAIL, CUSTOMER_EMAIL, Destinations, wait_outbox_idle};
    use crate::outbox_receivers::{ADMIN_CHAT, eventually};
    let d = Destinations::start().await;
    let gw = spawn_with(d.options(Backend::Sqlite, "200ms,200ms,200ms")).await;
    gw.c2b_registered().await;
    let storage = gw.storage();
    let l = link(
        &gw,
        json!({ "title": "Invoice 9", "amount": 250, "single_use": true }),
    )
    .await;
    let link_id = l["id"].as_str().unwrap().to_owned();
    let account = l["account_number"].as_str().unwrap().to_owned();
    // The prompt goes unanswered for now; the customer left an email for the receipt.
    let asked = pay_form(
        &customer(),
        &gw,
        &page_path(&l),
        &[("phone", NO_CALLBACK), ("email", CUSTOMER_EMAIL)],
    )
    .await;
    assert_eq!(asked.status, 303, "{}", asked.body);
    let location = asked.headers["location"].to_str().unwrap().to_owned();
    let stk_id = location
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    // They pay the paybill instead: that pays the link.
    let (s, _) = gw
        .post_c2b_confirmation(&crate::c2b::confirmation(
            "SHK9PAYBIL",
            "600000",
            &account,
            "250.00",
            // Another number (a relative's phone): not the prompt's own confirmation.
            "2547 ***** 149",
            "WANJIRU",
        ))
        .await;
    assert_eq!(s, 200);
    let c2b = gw.payment_by_receipt("SHK9PAYBIL").await;
    assert_eq!(c2b.payment_link_id.as_deref(), Some(link_id.as_str()));
    // Then the prompt is answered after all: paid twice.
    let checkout = storage
        .get_payment(&stk_id)
        .await
        .unwrap()
        .unwrap()
        .checkout_request_id
        .unwrap();
    let (s, _) = gw
        .post_stk_callback(&stk_success(&checkout, "250", NO_CALLBACK, "SHK9PROMPT"))
        .await;
    assert_eq!(s, 200);
    let held = storage.get_payment(&stk_id).await.unwrap().unwrap();
    assert_eq!(held.status, PaymentStatus::Completed);
    assert!(held.needs_review);

    let metrics = gw
        .client
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mpesa_gateway_payments_held_for_review_total 1"),
        "counted as a hold: {}",
        metrics
            .lines()
            .filter(|l| l.contains("held_for_review"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let rows = storage.outbox_for_payment(&stk_id).await.unwrap();
    assert!(
        rows.iter()
            .all(|e| e.event_type != "payment.completed" && e.event_type != "receipt"),
        "a held payment is announced as completed to nobody: {rows:#?}"
    );
    let hook = rows
        .iter()
        .find(|e| e.channel == Channel::Webhook)
        .expect("the merchant hears of it");
    assert_eq!(hook.event_type, "payment.held_for_review");
    let body: Value = serde_json::from_str(&hook.payload).unwrap();
    assert_eq!(body["type"], "payment.held_for_review");
    assert_eq!(body["data"]["id"], stk_id.as_str());
    assert_eq!(body["data"]["needs_review"], true, "{body}");
    assert_eq!(body["data"]["payment_link_id"], link_id.as_str());
    let reason = body["data"]["review_reason"].as_str().unwrap();
    assert!(
        reason.contains("refund suggested") && reason.contains(&c2b.id),
        "{reason}"
    );
    assert_eq!(
        Some(reason),
        held.review_reason.as_deref(),
        "the webhook says what the API says"
    );
    assert!(
        rows.iter()
            .any(|e| e.channel == Channel::Email && e.destination == ADMIN_EMAIL),
        "the admin's email hears of it: {rows:#?}"
    );
    assert!(
        !rows.iter().any(|e| e.destination == CUSTOMER_EMAIL),
        "no receipt says it was paid: {rows:#?}"
    );

    wait_outbox_idle(storage.as_ref()).await;
    let delivered = |kind: &str| {
        d.webhook
            .delivered()
            .iter()
            .filter(|h| h.json()["type"] == kind)
            .count()
    };
    assert_eq!(delivered("payment.held_for_review"), 1);
    assert_eq!(
        delivered("payment.completed"),
        1,
        "the paybill payment only"
    );
    let about_held: Vec<String> = d
        .telegram
        .messages_to(ADMIN_CHAT)
        .await
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .filter(|t| t.contains(&stk_id))
        .collect();
    assert_eq!(about_held.len(), 1, "{about_held:#?}");
    assert!(
        about_held[0].contains("held for review") && about_held[0].contains("refund suggested"),
        "{}",
        about_held[0]
    );
    assert!(
        !about_held[0].contains("Payment completed"),
        "{}",
        about_held[0]
    );
    assert!(
        d.smtp
            .mail()
            .iter()
            .all(|m| !m.rcpt_to.contains(&CUSTOMER_EMAIL.to_owned())),
        "no receipt email"
    );

    // The dashboard: each payment names the link it came through, and the link lists both.
    crate::dashboard::add_admin(&gw).await;
    let admin = crate::dashboard::AdminClient::signed_in(&gw).await;
    let shown = admin.get(&format!("/admin/payments/{stk_id}")).await;
    assert_eq!(shown.status, 200);
    assert!(
        shown
            .body
            .contains(&format!("<a href=\"/admin/links/{link_id}\">Invoice 9</a>")),
        "{}",
        shown.body
    );
    let link_page = admin.get(&format!("/admin/links/{link_id}")).await;
    for id in [&stk_id, &c2b.id] {
        assert!(
            link_page.body.contains(&format!("/admin/payments/{id}")),
            "{id}: {}",
            link_page.body
        );
    }

    // An admin decides the customer meant to pay twice: now the merchant hears it completed.
    gw.state
        .payments
        .admin_decide(
            &stk_id,
            mpesa_gateway::payments::AdminDecision::Settle,
            "a second child's fees",
            None,
            "wanjiku",
        )
        .await
        .unwrap()
        .expect("it was held");
    let rows = storage.outbox_for_payment(&stk_id).await.unwrap();
    let completed: Vec<_> = rows
        .iter()
        .filter(|e| e.channel == Channel::Webhook && e.event_type == "payment.completed")
        .collect();
    assert_eq!(completed.len(), 1, "{rows:#?}");
    let body: Value = serde_json::from_str(&completed[0].payload).unwrap();
    assert_eq!(body["data"]["needs_review"], false);
    eventually(
        "the settled payment's webhook",
        Duration::from_secs(15),
        || {
            let n = delivered("payment.completed");
            async move { n == 2 }
        },
    )
    .await;
    gw.stop().await;
}

/// The customer's language is the gateway's, not the merchant's metadata: a merchant whose
/// metadata looks like the pay page's gets no Swahili receipt, and a Swahili customer on the
/// pay page gets one without anything written into the payment's metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_speak_the_customers_language_which_metadata_cannot_set() {
    use crate::outbox::{Destinations, wait_outbox_idle};
    let d = Destinations::start().await;
    let gw = spawn_with(d.options(Backend::Sqlite, "200ms,200ms,200ms")).await;
    let storage = gw.storage();
    let (status, created) = gw
        .create_payment(json!({
            "phone": SUCCESS, "amount": 10, "reference": "M1",
            "customer_email": "api-customer@example.com",
            "metadata": { "pay_page": { "lang": "sw" } }
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let api_id = created["id"].as_str().unwrap().to_owned();
    gw.wait_for_status(&api_id, "completed", Duration::from_secs(10))
        .await;

    let l = link(&gw, json!({ "title": "Ada", "amount": 300 })).await;
    let paid = pay_form(
        &customer(),
        &gw,
        &page_path(&l),
        &[
            ("phone", SUCCESS),
            ("email", "mteja@example.com"),
            ("lang", "sw"),
        ],
    )
    .await;
    assert_eq!(paid.status, 303, "{}", paid.body);
    let location = paid.headers["location"].to_str().unwrap().to_owned();
    let status_path = location.split('?').next().unwrap().to_owned();
    let page_id = status_path.rsplit('/').next().unwrap().to_owned();
    wait_for_state(&gw, &status_path, "paid").await;

    let (_, shown) = api_get(&gw, &format!("/api/v1/payments/{page_id}")).await;
    assert_eq!(
        shown["metadata"],
        Value::Null,
        "the merchant's metadata is theirs: {shown}"
    );
    assert_eq!(shown["customer_language"], "sw", "{shown}");
    let (_, shown) = api_get(&gw, &format!("/api/v1/payments/{api_id}")).await;
    assert_eq!(shown["metadata"]["pay_page"]["lang"], "sw", "kept as given");
    assert_eq!(shown["customer_language"], Value::Null, "{shown}");

    wait_outbox_idle(storage.as_ref()).await;
    let subject_to = |to: &str| {
        d.smtp
            .mail()
            .iter()
            .find(|m| m.rcpt_to == vec![to.to_owned()])
            .map(|m| m.parsed().subject().unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("no mail to {to}"))
    };
    assert_eq!(subject_to("api-customer@example.com"), "Payment Complete");
    assert_eq!(subject_to("mteja@example.com"), "Malipo Yamekamilika");
    // Without the switch in its address, the status page still speaks the customer's language.
    let again = page(&customer(), &gw, &status_path, Some("en")).await;
    assert!(again.body.contains("Malipo yamepokelewa"), "{}", again.body);
    gw.stop().await;
}

/// One open prompt per phone holds across instances: two gateways on one PostgreSQL database,
/// each asked at the same moment to push to the same phone, push once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_open_prompt_per_phone_holds_across_instances() {
    let db = Arc::new(TestDatabase::new(Backend::Postgres).await);
    let start = |db: Arc<TestDatabase>| async move {
        let mut options = Options::new(Backend::Postgres)
            .env("PAY_PAGE_LIMIT_PER_PHONE", "100")
            .env("PAY_PAGE_LIMIT_PER_LINK", "1000")
            .env("PAY_PAGE_LIMIT_PER_ADDRESS", "1000")
            .env("RECONCILE_AFTER_SECS", "3600")
            .env("PAYMENT_EXPIRES_AFTER_SECS", "7200");
        options.database = Some(db);
        options.sim.faults.global = daraja_sim::faults::CallbackFaults {
            suppress: true,
            ..Default::default()
        };
        spawn_with(options).await
    };
    let one = start(db.clone()).await;
    let two = start(db.clone()).await;
    let l = link(&one, json!({ "title": "Shared", "amount": 50 })).await;
    let path = page_path(&l);
    const PHONES: usize = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..PHONES {
        let phone = format!("2547110005{i:02}");
        for gw in [&one, &two] {
            let url = gw.url(&path);
            let phone = phone.clone();
            tasks.spawn(async move {
                let r = customer()
                    .post(url)
                    .form(&[("phone", phone.as_str())])
                    .send()
                    .await
                    .unwrap();
                (phone, r.status().as_u16())
            });
        }
    }
    let mut answers = std::collections::BTreeMap::<String, Vec<u16>>::new();
    while let Some(answer) = tasks.join_next().await {
        let (phone, status) = answer.unwrap();
        answers.entry(phone).or_default().push(status);
    }
    let storage = one.storage();
    for (phone, mut statuses) in answers {
        statuses.sort();
        assert_eq!(statuses, [303, 409], "{phone}: one prompt, one refusal");
        let stored = storage
            .list_payments(
                &mpesa_storage::PaymentFilter {
                    phone: Some(phone.clone()),
                    ..Default::default()
                },
                &Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(stored.items.len(), 1, "{phone}: one payment, one push");
    }
    one.stop().await;
    two.stop().await;
}
