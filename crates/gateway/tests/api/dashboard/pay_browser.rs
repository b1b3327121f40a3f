//! Payment links in a real browser (headless Chromium through chromedriver): an admin creates a
//! link on the dashboard and sees its QR code; a customer opens it, pays with the simulator's
//! success number and sees the receipt; a cancelled prompt shows the way to pay at the paybill;
//! the page in Swahili; too many prompts; a single-use link paid at the paybill with its
//! account number; a disabled link; and the whole payment again with
//! JavaScript off (the status page refreshes itself).
//!
//! Every page is photographed at desktop width and 360 px into `target/pay-page-screenshots/`,
//! and at 360 px none may scroll sideways.

use std::time::Duration;

use mpesa_storage::Backend;

use super::browser::Browser;
use super::*;

const SHOTS: &str = "pay-page-screenshots";

/// Waits (up to 10 s) until the browser is on a payment's status page of `link_path`.
async fn wait_for_status_page(b: &Browser, link_path: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let path = b.path().await;
        if path.starts_with(&format!("{link_path}/p/pay_")) {
            return path;
        }
        assert!(tokio::time::Instant::now() < deadline, "still at {path}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn pay(b: &Browser, link_path: &str, phone: &str, amount: Option<&str>) -> String {
    b.goto(link_path).await;
    if let Some(a) = amount {
        b.type_into("#amount-field", a).await;
    }
    b.type_into("#phone", phone).await;
    b.click("#pay").await;
    wait_for_status_page(b, link_path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_is_made_on_the_dashboard_and_paid_in_a_browser() {
    let gw = spawn_with(
        Options::new(Backend::Sqlite)
            .env("BUSINESS_NAME", "Amani Dance School")
            .env("PAY_PAGE_LIMIT_PER_LINK", "3"),
    )
    .await;
    add_admin(&gw).await;
    let b = Browser::launch(&gw.base, SHOTS, true).await;

    // The admin signs in and creates a link.
    b.goto("/admin/links").await;
    b.wait_for_path("/admin/sign-in").await;
    b.type_into("#username", ADMIN).await;
    b.type_into("#password", PASSWORD).await;
    b.click("form[action='/admin/sign-in'] button[type=submit]")
        .await;
    b.wait_for_path("/admin/links").await;
    b.snap("01-dashboard-links-empty").await;
    b.type_into("#link-title", "Term 2 fees").await;
    b.type_into("#link-amount", "1500").await;
    b.type_into("#link-description", "Ballet, Saturdays 9:00")
        .await;
    b.click("form[action='/admin/links'] button[type=submit]")
        .await;
    b.wait_for_text("The payment link was created").await;
    let link_admin = b.path().await;
    assert!(link_admin.starts_with("/admin/links/pl_"), "{link_admin}");
    assert!(b.is_displayed("img.qr").await);
    let url = b.find("#link-url").await.text().await.unwrap();
    let account = b.find("#link-account").await.text().await.unwrap();
    let link_path = url::Url::parse(&url).unwrap().path().to_owned();
    b.snap("02-dashboard-link-created").await;
    // The QR code itself is an SVG drawn by the gateway.
    let qr = crate::payment_links::customer()
        .get(gw.url(&format!("{link_admin}/qr.svg")))
        .send()
        .await
        .unwrap();
    assert_eq!(qr.status(), 303, "the QR code is for signed-in admins only");

    // A customer opens it, pays with the success number and sees the receipt.
    b.goto(&link_path).await;
    let text = b.text().await;
    for expected in [
        "Amani Dance School",
        "Term 2 fees",
        "KSh 1,500",
        account.as_str(),
        "Pay Bill",
    ] {
        assert!(
            text.contains(expected),
            "pay page lacks {expected}:\n{text}"
        );
    }
    b.snap("03-pay-form").await;
    pay(&b, &link_path, "0708 374 149", None).await;
    let text = b.wait_for_text("Payment received").await;
    let receipt = gw
        .storage()
        .list_payments(&Default::default(), &Default::default())
        .await
        .unwrap()
        .items[0]
        .mpesa_receipt_number
        .clone()
        .expect("completed");
    assert!(
        text.contains(&receipt) && text.contains("KSh 1,500") && text.contains("EAT"),
        "{text}"
    );
    assert!(
        b.is_displayed("#print").await,
        "the script shows the print button"
    );
    b.snap("05-pay-receipt").await;

    // A range link: a prompt that never gets an answer waits; a cancelled one offers the paybill.
    let range = crate::payment_links::link(
        &gw,
        serde_json::json!({ "title": "Donation", "amount_min": 50, "amount_max": 5000 }),
    )
    .await;
    let range_path = crate::payment_links::page_path(&range);
    pay(&b, &range_path, NO_CALLBACK, Some("250")).await;
    b.wait_for_text("Check your phone").await;
    b.snap("04-pay-waiting").await;
    pay(&b, &range_path, CANCELLED, Some("300")).await;
    let text = b.wait_for_text("You cancelled the payment").await;
    for expected in [
        "Try again",
        "Or pay from your M-Pesa menu",
        range["account_number"].as_str().unwrap(),
        "KSh 300",
    ] {
        assert!(
            text.contains(expected),
            "cancelled page lacks {expected}:\n{text}"
        );
    }
    b.snap("06-pay-cancelled").await;
    b.click("#try-again").await;
    b.wait_for_path(&range_path).await;

    // Swahili by the switch.
    b.click("a.lang").await;
    b.wait_for_query("lang=sw").await;
    let text = b.wait_for_text("Lipa").await;
    assert!(
        text.contains("Namba ya akaunti") && text.contains("Kiasi"),
        "{text}"
    );
    b.snap("07-pay-form-swahili").await;

    // A third prompt through this link is one too many (PAY_PAGE_LIMIT_PER_LINK=3).
    pay(&b, &range_path, INSUFFICIENT_FUNDS, Some("60")).await;
    b.goto(&range_path).await;
    b.type_into("#amount-field", "70").await;
    b.type_into("#phone", "254711000777").await;
    b.click("#pay").await;
    b.wait_for_text("Try again after").await;
    b.snap("08-pay-too-many").await;

    // A single-use link paid at the paybill with its account number: its page says it is paid.
    let invoice = crate::payment_links::link(
        &gw,
        serde_json::json!({ "title": "Invoice 9", "amount": 800, "single_use": true }),
    )
    .await;
    let invoice_path = crate::payment_links::page_path(&invoice);
    b.goto(&invoice_path).await;
    let account_shown = b.find("#account-number").await.text().await.unwrap();
    assert_eq!(account_shown, invoice["account_number"].as_str().unwrap());
    gw.sim()
        .pay_c2b(daraja_sim::CustomerPayment::paybill(
            "600000",
            &account_shown,
            800,
        ))
        .await
        .unwrap();
    b.goto(&invoice_path).await;
    b.wait_for_text("This link has been paid").await;
    b.snap("09-pay-link-paid-at-the-paybill").await;

    // The dashboard shows what the link collected; disabling closes its page.
    b.goto(&link_admin).await;
    let text = b.text().await;
    assert!(
        text.contains("KSh 1,500") && text.contains("1 completed payment"),
        "{text}"
    );
    assert!(text.contains(&receipt), "{text}");
    b.snap("10-dashboard-link-paid").await;

    // JavaScript off: the same payment, the status page refreshing itself.
    let nojs = Browser::launch(&gw.base, SHOTS, false).await;
    pay(&nojs, &link_path, "0708374149", None).await;
    let text = nojs.wait_for_text("Payment received").await;
    assert!(text.contains("KSh 1,500"), "{text}");
    assert!(!nojs.is_displayed("#print").await, "no script ran");
    nojs.snap("11-pay-receipt-without-javascript").await;
    nojs.close().await;

    b.goto(&link_admin).await;
    b.click("form[action$='/disable'] button").await;
    b.wait_for_text("The link is disabled").await;
    b.goto(&link_path).await;
    b.wait_for_text("no longer in use").await;
    b.snap("12-pay-link-disabled").await;
    b.goto("/admin/links").await;
    b.snap("13-dashboard-links").await;
    b.close().await;
    gw.stop().await;
}
