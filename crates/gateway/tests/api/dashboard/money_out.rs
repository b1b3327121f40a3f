//! Money going out on the dashboard, over plain HTTP against a gateway and its simulator: the
//! Payouts page (create, approve by another admin, refused for the admin who asked, reject), the
//! Refund button's confirmation page and its refusals, and the overview's balance tile with its
//! warning. The CLI's `payouts`, `payments refund` and `balance` run as the real binary.

use std::time::Duration;

use daraja_sim::config::InitialBalances;
use mpesa_domain::Cents;
use mpesa_gateway::accounts::hash_password;
use mpesa_gateway::ids::{new_id, now_ms};
use mpesa_storage::{AdminUser, Backend, Payout, PayoutStatus, RefundStatus};

use super::browser::Browser;
use super::*;
use crate::on_every_backend;

const B2C: &str = "/mpesa/b2c/v3/paymentrequest";
const REVERSAL: &str = "/mpesa/reversal/v1/request";
const BALANCE: &str = "/mpesa/accountbalance/v1/query";
const WAIT: Duration = Duration::from_secs(20);
/// The second admin.
const OTHER: &str = "baraka";
/// A third admin, who records a refund's outcome by hand for others to check.
const THIRD: &str = "chebet";

async fn add_user(gw: &TestGateway, username: &str) {
    gw.storage()
        .upsert_admin_user(&AdminUser {
            id: new_id("usr"),
            username: username.into(),
            password_hash: hash_password(PASSWORD).unwrap(),
            created_at: now_ms(),
        })
        .await
        .unwrap();
}

async fn signed_in_as(gw: &TestGateway, username: &str) -> AdminClient {
    let client = AdminClient::new(gw);
    let answer = client.sign_in(username, PASSWORD).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    client
}

/// The value of the hidden field `name` on a page.
fn hidden(body: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden {name} on the page"))
        + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_owned()
}

fn daraja_requests(gw: &TestGateway, path: &str) -> usize {
    gw.sim()
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .count()
}

/// The payout id in a `/admin/payouts/{id}?notice=…` redirect.
fn payout_id(location: &str) -> String {
    location
        .strip_prefix("/admin/payouts/")
        .and_then(|rest| rest.split('?').next())
        .unwrap_or_else(|| panic!("not a payout's page: {location}"))
        .to_owned()
}

async fn wait_for_payout(gw: &TestGateway, id: &str, status: PayoutStatus) -> Payout {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let p = gw.storage().get_payout(id).await.unwrap().unwrap();
        if p.status == status {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "payout {id} is {:?} after {WAIT:?}, waiting for {status:?}",
            p.status
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn payout_form<'a>(csrf: &'a str, amount: &'a str, remarks: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("phone", "0708 374 149"),
        ("amount", amount),
        ("purpose", "business"),
        ("remarks", remarks),
    ]
}

/// A gateway whose payouts above KSh 1,000 wait for approval (at most KSh 5,000 each), whose
/// simulated B2C account holds `utility` cents.
async fn payout_gateway(backend: Backend, utility: i64) -> TestGateway {
    let mut options = Options::new(backend)
        .env("PAYOUT_APPROVAL_ABOVE", "1000")
        .env("PAYOUT_MAX_AMOUNT", "5000");
    options.sim.initial_balances = InitialBalances {
        utility: Cents(utility),
        ..InitialBalances::default()
    };
    let gw = spawn_with(options).await;
    add_admin(&gw).await;
    add_user(&gw, OTHER).await;
    gw
}

on_every_backend!(
    payouts_are_made_approved_by_another_admin_and_rejected,
    a_held_payout_and_refund_get_their_outcome_recorded_on_the_dashboard,
    a_contradicted_payout_and_refund_are_acknowledged_once_on_the_dashboard,
    a_late_result_lifts_the_hold_and_leaves_nothing_to_acknowledge,
);

async fn payouts_are_made_approved_by_another_admin_and_rejected(backend: Backend) {
    let gw = payout_gateway(backend, 100_000_000).await;
    let amina = AdminClient::signed_in(&gw).await;
    let page = amina.get("/admin/payouts").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(r#"href="/admin/payouts" aria-current="page""#)
    );
    assert!(page.body.contains("Pay someone") && page.body.contains("No payouts match."));
    assert!(
        page.body.contains("above KSh 1,000 another admin approves"),
        "the guardrails are shown"
    );
    let csrf = page.csrf();
    let form_key = hidden(&page.body, "form_key");

    // Below the approval line: stored, sent once, paid.
    let mut form = payout_form(&csrf, "500", "Rider week 12");
    form.push(("form_key", &form_key));
    let answer = amina.post("/admin/payouts", &form).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert!(
        answer.location().ends_with("?notice=payout_sent"),
        "{}",
        answer.location()
    );
    let paid = payout_id(answer.location());
    // The same form sent again (a double click) leads to the same payout, paid once.
    let again = amina.post("/admin/payouts", &form).await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(again.location(), format!("/admin/payouts/{paid}"));
    let p = wait_for_payout(&gw, &paid, PayoutStatus::Completed).await;
    assert_eq!(p.requested_by, "admin:amina");
    assert_eq!(daraja_requests(&gw, B2C), 1);
    let page = amina.get(&format!("/admin/payouts/{paid}")).await;
    assert_eq!(page.status, 200);
    for text in [
        "KSh 500 to 254708374149",
        "Completed",
        p.receipt.as_deref().unwrap(),
        "Payout requested",
        "By amina (dashboard).",
        "B2C request stored before sending",
        "B2C request sent to M-Pesa (once)",
        "Daraja accepted the request",
        "Result received",
        "Paid",
    ] {
        assert!(page.body.contains(text), "the payout's page lacks {text:?}");
    }
    assert!(
        !page.body.contains("Approve and send"),
        "nothing to approve"
    );

    // Refused forms say why and keep what was typed; nothing is sent.
    let answer = amina
        .post("/admin/payouts", &payout_form(&csrf, "6000", "Too much"))
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .body
            .contains("Amount: above PAYOUT_MAX_AMOUNT (5000 shillings)."),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains(r#"value="Too much""#),
        "the form is kept"
    );
    let mut bad_phone = payout_form(&csrf, "100", "x y");
    bad_phone[1] = ("phone", "0708");
    let answer = amina.post("/admin/payouts", &bad_phone).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("Phone:"), "{}", answer.body);
    let answer = amina
        .post("/admin/payouts", &payout_form("wrong-token", "100", "x y"))
        .await;
    assert_eq!(answer.status, 403, "CSRF");
    assert_eq!(daraja_requests(&gw, B2C), 1);

    // Above the line: it waits; the admin who asked cannot approve it, and is told so.
    let answer = amina
        .post(
            "/admin/payouts",
            &payout_form(&csrf, "2000", "Supplier <b>March</b>"),
        )
        .await;
    assert!(
        answer.location().ends_with("?notice=payout_waits"),
        "{}",
        answer.location()
    );
    let waiting = payout_id(answer.location());
    let page = amina.get(answer.location()).await;
    assert!(page.body.contains("waits for approval"));
    assert!(
        page.body
            .contains("You asked for this payout (or made the API key it was asked with), so another admin must approve it.")
    );
    assert!(
        !page.body.contains("Approve and send") && !page.body.contains("/approve\""),
        "the admin who asked is not offered Approve: {}",
        page.body
    );
    assert!(
        page.body.contains(&escaped("Supplier <b>March</b>")),
        "escaped"
    );
    assert!(!page.body.contains("Supplier <b>"), "never raw");
    let answer = amina
        .post(
            &format!("/admin/payouts/{waiting}/approve"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert!(
        answer.body.contains(
            "Not approved: an admin cannot approve their own payout: another admin must."
        ),
        "{}",
        answer.body
    );
    assert_eq!(
        gw.storage()
            .get_payout(&waiting)
            .await
            .unwrap()
            .unwrap()
            .status,
        PayoutStatus::AwaitingApproval
    );
    assert_eq!(daraja_requests(&gw, B2C), 1, "nothing was sent");

    // One asked for with an API key she made on the dashboard is hers too: its page does not
    // offer her Approve (the server would refuse it).
    let (key, _) = gw
        .state
        .accounts
        .create_api_key("amina-tool", Some(format!("admin:{ADMIN}")))
        .await
        .unwrap();
    let by_key: serde_json::Value = gw
        .client
        .post(gw.url("/api/v1/payouts"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"phone": "0708374149", "amount": 2000, "purpose": "business", "remarks": "Via her key"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_key["status"], "awaiting_approval", "{by_key}");
    let page = amina
        .get(&format!(
            "/admin/payouts/{}",
            by_key["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        page.body.contains(
            "You asked for this payout (or made the API key it was asked with), so another admin must approve it."
        ) && !page.body.contains("Approve and send"),
        "the maker of the key is not offered Approve: {}",
        page.body
    );

    // Another admin approves it: sent, paid, and the timeline names both.
    let baraka = signed_in_as(&gw, OTHER).await;
    let page = baraka.get(&format!("/admin/payouts/{waiting}")).await;
    assert!(page.body.contains("Approve and send KSh 2,000"));
    assert!(!page.body.contains("You asked for this payout"));
    let answer = baraka
        .post(
            &format!("/admin/payouts/{waiting}/approve"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(
        answer.location(),
        format!("/admin/payouts/{waiting}?notice=payout_approved")
    );
    let p = wait_for_payout(&gw, &waiting, PayoutStatus::Completed).await;
    assert_eq!(p.decided_by.as_deref(), Some("admin:baraka"));
    assert_eq!(daraja_requests(&gw, B2C), 2);
    let page = baraka.get(&format!("/admin/payouts/{waiting}")).await;
    for text in [
        "By amina (dashboard).",
        "Approved",
        "By baraka (dashboard).",
        "Paid",
    ] {
        assert!(page.body.contains(text), "the story lacks {text:?}");
    }
    // Approving again is refused and sends nothing.
    let answer = baraka
        .post(
            &format!("/admin/payouts/{waiting}/approve"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(answer.status, 409);
    assert!(
        answer.body.contains("not awaiting approval"),
        "{}",
        answer.body
    );
    assert_eq!(daraja_requests(&gw, B2C), 2);

    // A rejection needs a note; it sends nothing and keeps the note with the admin's name.
    let answer = amina
        .post("/admin/payouts", &payout_form(&csrf, "1500", "Prize"))
        .await;
    let to_reject = payout_id(answer.location());
    let reject = format!("/admin/payouts/{to_reject}/reject");
    let csrf_b = baraka.get("/admin/payouts").await.csrf();
    let answer = baraka
        .post(&reject, &[("csrf", &csrf_b), ("note", " ")])
        .await;
    assert_eq!(answer.status, 409);
    assert!(
        answer
            .body
            .contains("Write a note saying why before rejecting.")
    );
    let answer = baraka
        .post(
            &reject,
            &[("csrf", &csrf_b), ("note", "Not this week <script>")],
        )
        .await;
    assert_eq!(
        answer.location(),
        format!("/admin/payouts/{to_reject}?notice=payout_rejected")
    );
    let p = gw.storage().get_payout(&to_reject).await.unwrap().unwrap();
    assert_eq!(p.status, PayoutStatus::Rejected);
    assert_eq!(p.decided_by.as_deref(), Some("admin:baraka"));
    let page = baraka.get(&format!("/admin/payouts/{to_reject}")).await;
    assert!(
        page.body
            .contains(&escaped("By baraka (dashboard): Not this week <script>")),
        "{}",
        page.body
    );
    assert_eq!(daraja_requests(&gw, B2C), 2);

    // The list filters by state.
    let list = amina.get("/admin/payouts?status=rejected").await;
    assert!(list.body.contains(&format!("/admin/payouts/{to_reject}")));
    assert!(!list.body.contains(&format!("/admin/payouts/{paid}")));
    let list = amina.get("/admin/payouts").await;
    for id in [&paid, &waiting, &to_reject] {
        assert!(list.body.contains(&format!("/admin/payouts/{id}")));
    }
    assert_eq!(amina.get("/admin/payouts?status=lost").await.status, 400);

    // A result that names no request is kept and shown, never applied.
    let (status, _) = gw
        .post_callback(
            "result/b2c",
            br#"{"Result":{"OriginatorConversationID":"nobody-asked-1","ResultType":0,"ResultCode":0,"ResultDesc":"The service request is processed successfully.","ConversationID":"AG_nobody","TransactionID":"NOBODY0001"}}"#,
        )
        .await;
    assert_eq!(status, 200);
    let unmatched = "/admin/callbacks?outcome=unmatched&amp;kind=initiator_result";
    assert!(
        list.body.contains(unmatched),
        "the Payouts page links to them"
    );
    let page = amina.get(&unmatched.replace("&amp;", "&")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("nobody-asked-1"), "{}", page.body);
    assert_eq!(amina.get("/admin/payouts/po_nope").await.status, 404);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refund_button_confirms_the_amount_and_says_why_it_cannot() {
    let gw = spawn(Backend::Sqlite).await;
    add_admin(&gw).await;
    let admin = AdminClient::signed_in(&gw).await;
    let paid = gw.pay(SUCCESS, 1500).await;
    gw.wait_for_status(&paid, "completed", WAIT).await;
    let payment_page = format!("/admin/payments/{paid}");
    let confirm = format!("{payment_page}/refund");

    let page = admin.get(&payment_page).await;
    assert!(
        page.body
            .contains(&format!(r#"href="{confirm}">Refund…</a>"#)),
        "a completed payment has the Refund button"
    );
    let page = admin.get(&confirm).await;
    assert_eq!(page.status, 200);
    for text in [
        "Refund KSh 1,500",
        "Send KSh 1,500 back to the customer?",
        "M-Pesa reverses the whole payment",
        r#"name="reason""#,
    ] {
        assert!(page.body.contains(text), "the confirmation lacks {text:?}");
    }
    let csrf = page.csrf();
    let form_key = hidden(&page.body, "form_key");
    // A reason is needed; nothing is sent without one.
    let answer = admin
        .post(&confirm, &[("csrf", &csrf), ("reason", "x")])
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("Reason: 2 to 100 characters"),
        "{}",
        answer.body
    );
    assert_eq!(daraja_requests(&gw, REVERSAL), 0);
    assert_eq!(
        admin
            .post(&confirm, &[("reason", "Returned goods")])
            .await
            .status,
        403,
        "CSRF"
    );

    let form = [
        ("csrf", csrf.as_str()),
        ("reason", "Returned <goods>"),
        ("form_key", form_key.as_str()),
    ];
    let answer = admin.post(&confirm, &form).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(
        answer.location(),
        format!("{payment_page}?notice=refund_requested")
    );
    // A double click: the first refund stands, nothing more is sent.
    let again = admin.post(&confirm, &form).await;
    assert_eq!(again.location(), answer.location(), "{}", again.body);
    let deadline = tokio::time::Instant::now() + WAIT;
    let refund = loop {
        let r = gw.storage().refunds_for_payment(&paid).await.unwrap();
        if r.first()
            .is_some_and(|r| r.status == RefundStatus::Completed)
        {
            break r[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refund not completed: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(refund.requested_by, "admin:amina");
    assert_eq!(refund.amount, 1500);
    assert_eq!(daraja_requests(&gw, REVERSAL), 1);
    let page = admin.get(&payment_page).await;
    for text in [
        "Refund <span class=\"badge s-completed\">Completed</span>",
        refund.id.as_str(),
        &escaped("Returned <goods>"),
        "Refund requested",
        "Reversal sent to M-Pesa",
        "Refunded: M-Pesa reversed the payment",
    ] {
        assert!(
            page.body.contains(text),
            "the payment's page lacks {text:?}"
        );
    }
    assert!(!page.body.contains("Refund…"), "refunded once: no button");

    // Refunded already: the confirmation page says so instead of asking, and a POST is refused.
    let page = admin.get(&confirm).await;
    assert!(
        page.body
            .contains(&format!("The payment is already refunded ({}).", refund.id)),
        "{}",
        page.body
    );
    assert!(!page.body.contains(r#"name="reason""#));
    let answer = admin
        .post(&confirm, &[("csrf", &csrf), ("reason", "Again")])
        .await;
    assert_eq!(answer.status, 409);
    assert!(answer.body.contains("already refunded"));
    assert_eq!(daraja_requests(&gw, REVERSAL), 1);

    // Not completed: no button, and the page says why.
    let failed = gw.pay(INSUFFICIENT_FUNDS, 300).await;
    gw.wait_for_status(&failed, "failed", WAIT).await;
    let page = admin.get(&format!("/admin/payments/{failed}")).await;
    assert!(!page.body.contains("Refund…"));
    let page = admin.get(&format!("/admin/payments/{failed}/refund")).await;
    assert!(
        page.body
            .contains("Only a completed payment can be refunded; this one is failed."),
        "{}",
        page.body
    );

    // In flight: a refund whose result has not come yet blocks a second one.
    gw.sim().update_faults(|f| {
        f.flows.insert(
            daraja_sim::Flow::Reversal,
            daraja_sim::CallbackFaults {
                suppress: true,
                ..Default::default()
            },
        );
    });
    let other = gw.pay(SUCCESS, 200).await;
    gw.wait_for_status(&other, "completed", WAIT).await;
    let confirm = format!("/admin/payments/{other}/refund");
    let answer = admin
        .post(&confirm, &[("csrf", &csrf), ("reason", "Wrong size")])
        .await;
    assert_eq!(answer.status, 303);
    let page = admin.get(&format!("/admin/payments/{other}")).await;
    assert!(
        page.body
            .contains("Refund <span class=\"badge s-pending\">Pending</span>")
    );
    let page = admin.get(&confirm).await;
    assert!(
        page.body.contains("A refund of this payment is in flight"),
        "{}",
        page.body
    );
    assert_eq!(
        admin.get("/admin/payments/pay_nope/refund").await.status,
        404
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balance_tile_shows_the_last_answers_and_warns_when_payouts_are_not_covered() {
    // The simulated B2C account holds KSh 1,000.
    let gw = payout_gateway(Backend::Sqlite, 100_000).await;
    let admin = AdminClient::signed_in(&gw).await;
    let overview = admin.get("/admin/").await;
    assert!(overview.body.contains("M-Pesa balances"));
    assert!(overview.body.contains("B2C 600000</strong>: No answer yet"));
    assert!(overview.body.contains("Never asked"));
    assert!(
        !overview.body.contains("balance-warning"),
        "nothing awaits approval"
    );

    let answer = admin
        .post("/admin/balance", &[("csrf", &overview.csrf())])
        .await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.location(), "/admin/?notice=balance_asked#balance");
    assert!(daraja_requests(&gw, BALANCE) >= 1);
    let deadline = tokio::time::Instant::now() + WAIT;
    let overview = loop {
        let page = admin.get("/admin/").await;
        if page.body.contains("Utility Account KSh 1,000") {
            break page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no balance answer shown: {}",
            page.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(overview.body.contains("Answered "));
    assert!(!overview.body.contains("balance-warning"));

    // KSh 2,000 awaits approval: more than the B2C account holds.
    let csrf = admin.get("/admin/payouts").await.csrf();
    let answer = admin
        .post("/admin/payouts", &payout_form(&csrf, "2000", "Supplier"))
        .await;
    assert!(answer.location().ends_with("?notice=payout_waits"));
    let overview = admin.get("/admin/").await;
    assert!(
        overview.body.contains(
            "The B2C account holds KSh 1,000: it cannot cover the KSh 2,000 of payouts awaiting approval."
        ),
        "{}",
        overview.body
    );
    assert!(
        overview
            .body
            .contains("KSh 2,000 of payouts await approval")
    );
    assert!(
        overview.body.len() < 13_000,
        "the overview with its balance tile stays lean (see dashboard::assets_and_unknown_pages): {} bytes",
        overview.body.len()
    );
    gw.stop().await;
}

/// Runs the binary against a running gateway (`--url`, `--api-key`) and its database.
async fn cli(gw: &TestGateway, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mpesa-gateway"))
        .args(args)
        .env("DATABASE_URL", gw.database.url())
        .env("MPESA_GATEWAY_URL", &gw.base)
        .env("MPESA_GATEWAY_API_KEY", &gw.api_key)
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("run mpesa-gateway");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pays_out_refunds_and_asks_for_the_balance() {
    let gw = payout_gateway(Backend::Sqlite, 100_000_000).await;
    let (ok, out, err) = cli(
        &gw,
        &[
            "payouts",
            "create",
            "--phone",
            "0708374149",
            "--amount",
            "700",
            "--purpose",
            "salary",
            "--remarks",
            "March salary",
            "--occasion",
            "March",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("KSh 700 to 254708374149"), "{out}");
    assert!(out.contains("completed: M-Pesa receipt "), "{out}");
    let payout = out
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    assert!(payout.starts_with("po_"), "{out}");
    assert_eq!(daraja_requests(&gw, B2C), 1, "one B2C request");

    let (ok, out, err) = cli(
        &gw,
        &[
            "payouts",
            "create",
            "--phone",
            "0708374149",
            "--amount",
            "3000",
            "--remarks",
            "Supplier",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("awaiting approval"), "{out}");
    let (ok, _, err) = cli(
        &gw,
        &[
            "payouts",
            "create",
            "--phone",
            "0708374149",
            "--amount",
            "9000",
            "--remarks",
            "Too much",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("PAYOUT_MAX_AMOUNT") && err.contains("[field: amount]"),
        "{err}"
    );
    assert_eq!(daraja_requests(&gw, B2C), 1);

    let (ok, out, err) = cli(&gw, &["payouts", "list", "--status", "completed"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&payout) && out.contains("salary"), "{out}");
    assert!(!out.contains("Supplier"), "{out}");
    let (ok, out, _) = cli(&gw, &["payouts", "list", "--status", "lost"]).await;
    assert!(!ok, "{out}");
    let (ok, out, err) = cli(&gw, &["payouts", "show", &payout]).await;
    assert!(ok, "{err}");
    for text in [
        "\"status\": \"completed\"",
        "requested",
        "sent",
        "completed",
        "March salary",
    ] {
        assert!(out.contains(text), "payouts show lacks {text:?}: {out}");
    }

    let paid = gw.pay(SUCCESS, 250).await;
    gw.wait_for_status(&paid, "completed", WAIT).await;
    let (ok, out, err) = cli(
        &gw,
        &["payments", "refund", &paid, "--reason", "Returned goods"],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("KSh 250 back to the customer"), "{out}");
    assert!(out.contains("completed: M-Pesa receipt"), "{out}");
    let (ok, _, err) = cli(&gw, &["payments", "refund", &paid, "--reason", "Again"]).await;
    assert!(!ok);
    assert!(
        err.contains("already refunded") && err.contains("(conflict)"),
        "{err}"
    );
    assert_eq!(daraja_requests(&gw, REVERSAL), 1);

    let (ok, out, err) = cli(&gw, &["balance", "--wait-secs", "20"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("600000: answered "), "{out}");
    assert!(out.contains("Utility Account"), "{out}");
    // Without waiting, what came before is shown, or that nothing came yet.
    let (ok, out, err) = cli(&gw, &["balance", "--wait-secs", "0"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("600000: "), "{out}");
    gw.stop().await;
}

/// Moves `time` through a day of asking until the requests `ids` are held for a person.
async fn held_after_a_day(
    gw: &TestGateway,
    time: &mpesa_gateway::clock::ManualClock,
    ids: &[&str],
) {
    let wait = |id: String, done: fn(&mpesa_storage::InitiatorRequest) -> bool| async move {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = gw
                .storage()
                .get_initiator_request(&id)
                .await
                .unwrap()
                .unwrap();
            if done(&r) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{r:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    time.advance(chrono::Duration::seconds(121));
    for id in ids {
        wait(id.to_string(), |r| r.attempts >= 1).await;
    }
    time.advance(chrono::Duration::seconds(86_400 - 121 - 60));
    for id in ids {
        wait(id.to_string(), |r| r.attempts >= 2).await;
    }
    time.advance(chrono::Duration::minutes(10));
    for id in ids {
        wait(id.to_string(), |r| r.needs_review).await;
    }
}

/// A gateway whose B2C, Reversal and Transaction Status results never come, on a clock the test
/// moves; a completed payment of KSh 1,500 refunded and a KSh 300 payout asked by amina, both
/// held for a person after a day of asking. Returns the gateway, the payment, the payout.
async fn held_money_gateway(backend: Backend) -> (TestGateway, String, String) {
    let time = std::sync::Arc::new(mpesa_gateway::clock::ManualClock::new(chrono::Utc::now()));
    let gw =
        spawn_with(Options::new(backend).clock(mpesa_gateway::clock::Clock::manual(time.clone())))
            .await;
    add_admin(&gw).await;
    add_user(&gw, OTHER).await;
    let paid = gw.pay(SUCCESS, 1500).await;
    gw.wait_for_status(&paid, "completed", WAIT).await;
    gw.sim().update_faults(|f| {
        for flow in [
            daraja_sim::Flow::B2c,
            daraja_sim::Flow::Reversal,
            daraja_sim::Flow::TransactionStatus,
        ] {
            f.flows.insert(
                flow,
                CallbackFaults {
                    suppress: true,
                    ..Default::default()
                },
            );
        }
    });
    let money_out = &gw.state.money_out;
    let created = money_out
        .payouts
        .create(
            mpesa_gateway::money_out::PayoutRequest {
                phone: Msisdn::parse("0708374149").unwrap(),
                amount: 300,
                purpose: mpesa_gateway::money_out::PayoutPurpose::Business,
                remarks: "Rider".into(),
                occasion: None,
            },
            &mpesa_gateway::money_out::Requester::admin(ADMIN),
            None,
        )
        .await
        .unwrap();
    let mpesa_gateway::money_out::payouts::PayoutCreated::Created(payout) = created else {
        panic!("a new payout")
    };
    let refunded = money_out
        .refunds
        .request(
            &paid,
            "Returned goods",
            &mpesa_gateway::money_out::Requester::admin(ADMIN),
            None,
        )
        .await
        .unwrap();
    let mpesa_gateway::money_out::refunds::RefundCreated::Created(refund) = refunded else {
        panic!("a new refund")
    };
    let ids = [
        payout.request_id.clone().unwrap(),
        refund.request_id.clone().unwrap(),
    ];
    held_after_a_day(&gw, &time, &[&ids[0], &ids[1]]).await;
    (gw, paid, payout.id)
}

/// The payout's page and the refund's page offer "Record the outcome" for what is held: not to
/// the admin who asked for it, not without CSRF or a note; the outcome and the note show on the
/// timeline with the admin's name.
async fn a_held_payout_and_refund_get_their_outcome_recorded_on_the_dashboard(backend: Backend) {
    let (gw, paid, payout) = held_money_gateway(backend).await;
    let page_path = format!("/admin/payouts/{payout}");
    let settle = format!("{page_path}/settle");
    let amina = AdminClient::signed_in(&gw).await;
    let page = amina.get(&page_path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Held for a person"), "{}", page.body);
    assert!(
        page.body
            .contains("You asked for this payout (or made the API key it was asked with), so another admin must record its outcome."),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains(&format!(r#"action="{settle}""#)),
        "the admin who asked is not offered the form"
    );
    let csrf = page.csrf();
    let answer = amina
        .post(
            &settle,
            &[
                ("csrf", &csrf),
                ("outcome", "completed"),
                ("receipt", "SGB2PAID01"),
                ("note", "Seen"),
            ],
        )
        .await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert!(answer.body.contains("their own payout"), "{}", answer.body);

    let baraka = signed_in_as(&gw, OTHER).await;
    let page = baraka.get(&page_path).await;
    assert!(page.body.contains("Record the outcome"), "{}", page.body);
    assert!(page.body.contains(&format!(r#"action="{settle}""#)));
    let csrf = page.csrf();
    let form = |csrf: &str, note: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("outcome".to_owned(), "completed".to_owned()),
            ("receipt".to_owned(), "sgb2paid01".to_owned()),
            ("note".to_owned(), note.to_owned()),
        ]
    };
    let post = |fields: Vec<(String, String)>| {
        let baraka = &baraka;
        let settle = settle.clone();
        async move {
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            baraka.post(&settle, &fields).await
        }
    };
    let answer = post(form("wrong-token", "Seen in the portal")).await;
    assert_eq!(answer.status, 403, "CSRF");
    let answer = post(form(&csrf, " ")).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.body.contains("Not recorded: Note:"),
        "{}",
        answer.body
    );
    assert_eq!(
        gw.storage()
            .get_payout(&payout)
            .await
            .unwrap()
            .unwrap()
            .status,
        PayoutStatus::Pending,
        "nothing was recorded"
    );
    let answer = post(form(&csrf, "Seen in the org portal <b>")).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(
        answer.location(),
        format!("{page_path}?notice=payout_settled")
    );
    let p = gw.storage().get_payout(&payout).await.unwrap().unwrap();
    assert_eq!(p.status, PayoutStatus::Completed);
    assert_eq!(p.receipt.as_deref(), Some("SGB2PAID01"));
    let page = baraka.get(answer.location()).await;
    for text in [
        "Outcome recorded by hand".to_owned(),
        escaped("By baraka (dashboard), receipt SGB2PAID01: Seen in the org portal <b>"),
    ] {
        assert!(
            page.body.contains(&text),
            "the story lacks {text:?}: {}",
            page.body
        );
    }
    assert!(!page.body.contains("Held for a person"), "no longer held");
    // Again: refused, nothing changes.
    let answer = post(form(&csrf, "again")).await;
    assert_eq!(answer.status, 409, "{}", answer.body);

    // The refund: amina asked for it too, so its page tells her another admin must record it,
    // and refuses her; baraka is offered the form and records it.
    let refund_page = format!("/admin/payments/{paid}/refund");
    let refund_settle = format!("{refund_page}/settle");
    let payment_page = amina.get(&format!("/admin/payments/{paid}")).await;
    assert!(
        payment_page.body.contains("Record the outcome…"),
        "{}",
        payment_page.body
    );
    let page = amina.get(&refund_page).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Refund held for a person"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("You asked for this refund (or made the API key it was asked with), so another admin must record its outcome."),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains(&format!(r#"action="{refund_settle}""#)),
        "the admin who asked is not offered the form"
    );
    let csrf = page.csrf();
    let answer = amina
        .post(
            &refund_settle,
            &[
                ("csrf", &csrf),
                ("outcome", "failed"),
                ("note", "Not on the statement"),
            ],
        )
        .await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert!(answer.body.contains("their own refund"), "{}", answer.body);
    assert_eq!(
        gw.storage()
            .refunds_for_payment(&paid)
            .await
            .unwrap()
            .last()
            .unwrap()
            .status,
        mpesa_storage::RefundStatus::Pending,
        "nothing was recorded"
    );
    let page = baraka.get(&refund_page).await;
    assert!(
        page.body.contains(&format!(r#"action="{refund_settle}""#)),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let answer = baraka
        .post(
            &refund_settle,
            &[("csrf", "nope"), ("outcome", "failed"), ("note", "x")],
        )
        .await;
    assert_eq!(answer.status, 403, "CSRF");
    let answer = baraka
        .post(
            &refund_settle,
            &[
                ("csrf", &csrf),
                ("outcome", "failed"),
                ("note", "Not on the statement"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(
        answer.location(),
        format!("/admin/payments/{paid}?notice=refund_settled")
    );
    let page = baraka.get(answer.location()).await;
    assert!(
        page.body.contains("By admin:baraka: Not on the statement"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Refund failed"), "{}", page.body);
    assert_eq!(daraja_requests(&gw, B2C), 1, "never sent again");
    assert_eq!(daraja_requests(&gw, REVERSAL), 1, "never sent again");
    gw.stop().await;
}

/// [`held_money_gateway`], then baraka records the payout as paid (receipt SGB2PAID01) and the
/// refund as not reversed, and M-Pesa's own results come and contradict both (the payout
/// failed, the refund went through): both are final and held for a person again. Returns the
/// gateway, the payment, the payout and the refund.
async fn contradicted_money_gateway(backend: Backend) -> (TestGateway, String, String, String) {
    let (gw, paid, payout) = held_money_gateway(backend).await;
    let money_out = &gw.state.money_out;
    money_out
        .payouts
        .settle_by_hand(
            &payout,
            mpesa_gateway::money_out::HandOutcome::Completed {
                receipt: "SGB2PAID01".into(),
            },
            "Seen in the org portal",
            OTHER,
        )
        .await
        .unwrap();
    let refund = gw
        .storage()
        .refunds_for_payment(&paid)
        .await
        .unwrap()
        .pop()
        .unwrap();
    money_out
        .refunds
        .settle_by_hand(
            &refund.id,
            mpesa_gateway::money_out::HandOutcome::Failed,
            "Not on the statement",
            THIRD,
        )
        .await
        .unwrap();
    let p = gw.storage().get_payout(&payout).await.unwrap().unwrap();
    for (api, request_id, code) in [
        ("b2c", p.request_id.unwrap(), 2001),
        ("reversal", refund.request_id.clone().unwrap(), 0),
    ] {
        let r = gw
            .storage()
            .get_initiator_request(&request_id)
            .await
            .unwrap()
            .unwrap();
        gw.post_result(api, &r, code, "SGR3VRSD01").await;
        let held = gw
            .storage()
            .get_initiator_request(&request_id)
            .await
            .unwrap()
            .unwrap();
        assert!(held.needs_review && held.status.is_final(), "{held:?}");
    }
    (gw, paid, payout, refund.id)
}

/// The heading of a final payout held after a contradiction.
const NEEDS_A_PERSON: &str =
    r#"<h2 id="held-heading">Needs a person: M-Pesa contradicts the recorded outcome</h2>"#;

/// A payout and a refund whose outcome a person recorded and M-Pesa contradicted: their pages
/// offer "Acknowledge"; it needs CSRF and a note;
/// any admin but the one who recorded the outcome may acknowledge; it lifts the hold, puts the note and the admin's name on the
/// timeline and changes nothing else (status, receipt, amount; nothing sent to Daraja); a
/// second acknowledgement is refused, and the same contradiction delivered again
/// does not hold it again, while a different answer does, to be acknowledged again. Without
/// the change the form is absent and the POST is not found.
async fn a_contradicted_payout_and_refund_are_acknowledged_once_on_the_dashboard(backend: Backend) {
    let (gw, paid, payout, refund_id) = contradicted_money_gateway(backend).await;
    // Not by the admin whose record M-Pesa contradicts.
    let money_out = &gw.state.money_out;
    match money_out.payouts.acknowledge(&payout, "Mine", OTHER).await {
        Err(mpesa_gateway::money_out::PayoutError::Refused(why)) => {
            assert!(why.contains("recorded the outcome by hand"), "{why}")
        }
        other => panic!("the admin who settled it acknowledged it: {other:?}"),
    }
    match money_out
        .refunds
        .acknowledge(&refund_id, "Mine", THIRD)
        .await
    {
        Err(mpesa_gateway::money_out::RefundError::Refused(why)) => {
            assert!(why.contains("recorded the outcome by hand"), "{why}")
        }
        other => panic!("the admin who settled it acknowledged it: {other:?}"),
    }
    let page_path = format!("/admin/payouts/{payout}");
    let acknowledge = format!("{page_path}/acknowledge");
    let amina = AdminClient::signed_in(&gw).await;
    let page = amina.get(&page_path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(NEEDS_A_PERSON), "{}", page.body);
    assert!(
        page.body.contains(&format!(r#"action="{acknowledge}""#)),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let answer = amina
        .post(
            &acknowledge,
            &[("csrf", "wrong-token"), ("note", "Settled")],
        )
        .await;
    assert_eq!(answer.status, 403, "CSRF");
    let answer = amina
        .post(&acknowledge, &[("csrf", &csrf), ("note", "  ")])
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.body.contains("Not acknowledged: Note:"),
        "{}",
        answer.body
    );
    let shown = gw.get_json(&format!("/api/v1/payouts/{payout}")).await;
    assert_eq!(shown["needs_review"], true, "{shown}");

    // amina asked for the payout; acknowledging is not deciding it: she may.
    let note = "Recipient repaid by hand <b>";
    let answer = amina
        .post(&acknowledge, &[("csrf", &csrf), ("note", note)])
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(
        answer.location(),
        format!("{page_path}?notice=payout_acknowledged")
    );
    let p = gw.storage().get_payout(&payout).await.unwrap().unwrap();
    assert_eq!(
        (p.status, p.receipt.as_deref(), p.amount),
        (PayoutStatus::Completed, Some("SGB2PAID01"), 300),
        "what the person recorded stays"
    );
    let request = gw
        .storage()
        .get_initiator_request(p.request_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            request.status,
            request.receipt.as_deref(),
            request.needs_review
        ),
        (
            mpesa_domain::RequestStatus::Completed,
            Some("SGB2PAID01"),
            false
        ),
        "{request:?}"
    );
    let shown = gw.get_json(&format!("/api/v1/payouts/{payout}")).await;
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["needs_review"].as_bool(),
            shown["receipt"].as_str()
        ),
        (Some("completed"), Some(false), Some("SGB2PAID01")),
        "{shown}"
    );
    let page = amina.get(answer.location()).await;
    for text in [
        "Contradiction acknowledged".to_owned(),
        escaped(&format!("By amina (dashboard): {note}")),
    ] {
        assert!(page.body.contains(&text), "no {text:?}: {}", page.body);
    }
    assert!(!page.body.contains(NEEDS_A_PERSON), "{}", page.body);
    assert!(!page.body.contains(&format!(r#"action="{acknowledge}""#)));
    // Once.
    let answer = amina
        .post(&acknowledge, &[("csrf", &csrf), ("note", "again")])
        .await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert!(
        answer.body.contains("acknowledged already"),
        "{}",
        answer.body
    );
    // The same contradiction delivered again is kept, and does not hold it again.
    gw.post_result("b2c", &request, 2001, "SGR3VRSD01").await;
    let shown = gw.get_json(&format!("/api/v1/payouts/{payout}")).await;
    assert_eq!(shown["needs_review"], false, "{shown}");
    // A different answer is news: paid after all, with a receipt nobody recorded. Held again
    // (what the person recorded stays), acknowledged again, and that answer repeated is kept.
    // Before, every answer after the first acknowledgement was only kept.
    gw.post_result("b2c", &request, 0, "SGB2OTHR01").await;
    let shown = gw.get_json(&format!("/api/v1/payouts/{payout}")).await;
    assert_eq!(
        (
            shown["needs_review"].as_bool(),
            shown["status"].as_str(),
            shown["receipt"].as_str()
        ),
        (Some(true), Some("completed"), Some("SGB2PAID01")),
        "{shown}"
    );
    let page = amina.get(&page_path).await;
    assert!(page.body.contains(NEEDS_A_PERSON), "{}", page.body);
    assert!(page.body.contains("SGB2OTHR01"), "{}", page.body);
    let answer = amina
        .post(
            &acknowledge,
            &[("csrf", &page.csrf()), ("note", "Second receipt checked")],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    gw.post_result("b2c", &request, 0, "SGB2OTHR01").await;
    let shown = gw.get_json(&format!("/api/v1/payouts/{payout}")).await;
    assert_eq!(shown["needs_review"], false, "{shown}");

    // The refund: its payment's page links to the form, any admin acknowledges it.
    let refund_page = format!("/admin/payments/{paid}/refund");
    let refund_acknowledge = format!("{refund_page}/acknowledge");
    let payment_page = amina.get(&format!("/admin/payments/{paid}")).await;
    assert!(
        payment_page.body.contains("Acknowledge…"),
        "{}",
        payment_page.body
    );
    let baraka = signed_in_as(&gw, OTHER).await;
    let page = baraka.get(&refund_page).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Refund needs a person"), "{}", page.body);
    assert!(
        page.body
            .contains(&format!(r#"action="{refund_acknowledge}""#)),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let answer = baraka
        .post(&refund_acknowledge, &[("csrf", "nope"), ("note", "x")])
        .await;
    assert_eq!(answer.status, 403, "CSRF");
    let answer = baraka
        .post(
            &refund_acknowledge,
            &[("csrf", &csrf), ("note", "Reversal seen; customer told")],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(
        answer.location(),
        format!("/admin/payments/{paid}?notice=refund_acknowledged")
    );
    let r = gw.storage().get_refund(&refund_id).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.reversal_receipt.as_deref()),
        (RefundStatus::Failed, None),
        "what the person recorded stays"
    );
    let shown = gw.get_json(&format!("/api/v1/refunds/{refund_id}")).await;
    assert_eq!(shown["needs_review"], false, "{shown}");
    let page = baraka.get(answer.location()).await;
    for text in [
        "Refund&#39;s contradiction acknowledged",
        "By admin:baraka: Reversal seen; customer told",
    ] {
        assert!(page.body.contains(text), "no {text:?}: {}", page.body);
    }
    assert!(!page.body.contains("Acknowledge…"), "{}", page.body);
    let answer = baraka
        .post(&refund_acknowledge, &[("csrf", &csrf), ("note", "again")])
        .await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("Not acknowledged: The contradiction was acknowledged already."),
        "{}",
        answer.body
    );
    assert_eq!(daraja_requests(&gw, B2C), 1, "never sent again");
    assert_eq!(daraja_requests(&gw, REVERSAL), 1, "never sent again");
    gw.stop().await;
}

/// A payout and a refund held for a person (no answer for a day) whose B2C and Reversal results
/// then come late: M-Pesa's result settles each and lifts its hold (nobody recorded an outcome
/// by hand, so a person has nothing left to decide). The payout's page shows no hold and offers
/// no "Acknowledge" (nor "Record the outcome"); a POST is refused by the rule. The refund's page
/// and its payment's offer no "Acknowledge" either. (Before results lifted the hold, both ended
/// final and still held, which a person could not clear.)
async fn a_late_result_lifts_the_hold_and_leaves_nothing_to_acknowledge(backend: Backend) {
    let (gw, paid, payout) = held_money_gateway(backend).await;
    // M-Pesa's result for `request_id` (`api`), a day late: it completed, with `receipt`.
    let late_result = |api: &'static str, request_id: String, receipt: &'static str| {
        let gw = &gw;
        async move {
            let request = gw
                .storage()
                .get_initiator_request(&request_id)
                .await
                .unwrap()
                .unwrap();
            gw.post_result(api, &request, 0, receipt).await;
        }
    };
    let p = gw.storage().get_payout(&payout).await.unwrap().unwrap();
    late_result("b2c", p.request_id.unwrap(), "SGB2LATE01").await;
    let p = wait_for_payout(&gw, &payout, PayoutStatus::Completed).await;
    assert_eq!(p.receipt.as_deref(), Some("SGB2LATE01"));
    let shown = gw.get_json(&format!("/api/v1/payouts/{payout}")).await;
    assert_eq!(
        shown["needs_review"], false,
        "the result lifted the hold: {shown}"
    );

    let page_path = format!("/admin/payouts/{payout}");
    let acknowledge = format!("{page_path}/acknowledge");
    let baraka = signed_in_as(&gw, OTHER).await;
    let page = baraka.get(&page_path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for absent in [
        r#"id="held-heading""#.to_owned(),
        NEEDS_A_PERSON.to_owned(),
        format!(r#"action="{acknowledge}""#),
        format!(r#"action="{page_path}/settle""#),
    ] {
        assert!(!page.body.contains(&absent), "{absent:?}: {}", page.body);
    }
    // The rule the page asked refuses it here too.
    let answer = baraka
        .post(&acknowledge, &[("csrf", &page.csrf()), ("note", "Seen")])
        .await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("contradicted the outcome recorded by hand"),
        "{}",
        answer.body
    );

    // The refund, the same way.
    let refund = gw
        .storage()
        .refunds_for_payment(&paid)
        .await
        .unwrap()
        .pop()
        .unwrap();
    late_result("reversal", refund.request_id.clone().unwrap(), "SGR3LATE01").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while gw
        .storage()
        .get_refund(&refund.id)
        .await
        .unwrap()
        .unwrap()
        .status
        != RefundStatus::Completed
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refund is not final"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let shown = gw.get_json(&format!("/api/v1/refunds/{}", refund.id)).await;
    assert_eq!(
        shown["needs_review"], false,
        "the result lifted the hold: {shown}"
    );
    let payment_page = baraka.get(&format!("/admin/payments/{paid}")).await;
    assert!(
        !payment_page.body.contains("Acknowledge…"),
        "{}",
        payment_page.body
    );
    let refund_page = format!("/admin/payments/{paid}/refund");
    let page = baraka.get(&refund_page).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        !page
            .body
            .contains(&format!(r#"action="{refund_page}/acknowledge""#)),
        "{}",
        page.body
    );
    gw.stop().await;
}

/// In Chromium: the Payouts page, a payout that waits and its refused self-approval, and the
/// Refund button's confirmation; photographed into `target/dashboard-screenshots/` (20-…).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payouts_and_a_refund_in_a_browser() {
    let gw = payout_gateway(Backend::Sqlite, 100_000).await;
    let paid = gw.pay(SUCCESS, 1500).await;
    gw.wait_for_status(&paid, "completed", WAIT).await;
    gw.state.money_out.balances.ask().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while gw
        .state
        .money_out
        .balances
        .b2c_utility_cents("600000")
        .await
        .unwrap()
        .is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "no balance answer");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let b = Browser::start(&gw.base).await;
    b.goto("/admin/payouts").await;
    b.wait_for_path("/admin/sign-in").await;
    b.type_into("#username", ADMIN).await;
    b.type_into("#password", PASSWORD).await;
    b.click("form[action='/admin/sign-in'] button[type=submit]")
        .await;
    b.wait_for_path("/admin/payouts").await;
    b.wait_for_text("Pay someone").await;
    b.snap("20-payouts-empty").await;

    b.type_into("#po-phone", "0708 374 149").await;
    b.type_into("#po-amount", "2000").await;
    b.type_into("#po-remarks", "Supplier, March").await;
    b.click("form[action='/admin/payouts'] button[type=submit]")
        .await;
    b.wait_for_query("notice=payout_waits").await;
    let text = b.wait_for_text("Awaiting approval").await;
    assert!(
        text.contains("You asked for this payout (or made the API key it was asked with), so another admin must approve it."),
        "{text}"
    );
    assert!(
        !text.contains("Approve and send"),
        "the admin who asked is not offered Approve: {text}"
    );
    b.snap("21-payout-awaiting-approval").await;
    assert_eq!(daraja_requests(&gw, B2C), 0);

    b.goto("/admin/payouts").await;
    let text = b.wait_for_text("Supplier, March").await;
    assert!(text.contains("KSh 2,000"), "{text}");
    b.snap("23-payouts-list").await;

    b.goto(&format!("/admin/payments/{paid}")).await;
    b.click("a.button.danger").await;
    b.wait_for_path(&format!("/admin/payments/{paid}/refund"))
        .await;
    let text = b
        .wait_for_text("Send KSh 1,500 back to the customer?")
        .await;
    assert!(text.contains("M-Pesa reverses the whole payment"), "{text}");
    b.snap("24-refund-confirmation").await;
    b.type_into("#reason", "Returned goods").await;
    b.click("form[action$='/refund'] button[type=submit]").await;
    b.wait_for_query("notice=refund_requested").await;
    b.wait_for_text("Refund requested").await;
    b.snap("25-payment-refund-requested").await;

    b.goto("/admin/").await;
    let text = b.wait_for_text("M-Pesa balances").await;
    assert!(
        text.contains("cannot cover the KSh 2,000 of payouts awaiting approval"),
        "{text}"
    );
    b.snap("26-overview-balance-warning").await;
    b.close().await;
    gw.stop().await;
}

/// In Chromium: a payout held for a person, its "Record the outcome" form filled in and sent by
/// an admin who did not ask for it, and the outcome on its timeline; photographed (27-…).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_payout_gets_its_outcome_recorded_in_a_browser() {
    let (gw, _, payout) = held_money_gateway(Backend::Sqlite).await;
    let page = format!("/admin/payouts/{payout}");
    let b = Browser::start(&gw.base).await;
    b.goto(&page).await;
    b.wait_for_path("/admin/sign-in").await;
    b.type_into("#username", OTHER).await;
    b.type_into("#password", PASSWORD).await;
    b.click("form[action='/admin/sign-in'] button[type=submit]")
        .await;
    b.wait_for_path(&page).await;
    let text = b.wait_for_text("Held for a person").await;
    assert!(text.contains("Record the outcome"), "{text}");
    b.snap("27-payout-held-for-a-person").await;
    b.click("#settle-form input[name=outcome][value=completed]")
        .await;
    b.type_into("#receipt", "SGB2PAID01").await;
    b.type_into("#settle-note", "Seen in the org portal").await;
    b.click("#settle-form button[type=submit]").await;
    b.wait_for_query("notice=payout_settled").await;
    let text = b.wait_for_text("Outcome recorded by hand").await;
    assert!(
        text.contains("By baraka (dashboard), receipt SGB2PAID01: Seen in the org portal"),
        "{text}"
    );
    assert!(!text.contains("Held for a person"), "{text}");
    b.snap("28-payout-settled-by-hand").await;
    b.close().await;
    assert_eq!(
        gw.storage()
            .get_payout(&payout)
            .await
            .unwrap()
            .unwrap()
            .status,
        PayoutStatus::Completed
    );
    gw.stop().await;
}

/// In Chromium: a payout whose outcome a person recorded and M-Pesa contradicted, its
/// "Acknowledge" form filled in and sent, and the acknowledgement on its timeline;
/// photographed (29-…).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contradicted_payout_is_acknowledged_in_a_browser() {
    let (gw, _, payout, _) = contradicted_money_gateway(Backend::Sqlite).await;
    let page = format!("/admin/payouts/{payout}");
    let b = Browser::start(&gw.base).await;
    b.goto(&page).await;
    b.wait_for_path("/admin/sign-in").await;
    b.type_into("#username", ADMIN).await;
    b.type_into("#password", PASSWORD).await;
    b.click("form[action='/admin/sign-in'] button[type=submit]")
        .await;
    b.wait_for_path(&page).await;
    let text = b.wait_for_text("When it is settled, acknowledge it").await;
    assert!(text.contains("Acknowledge"), "{text}");
    b.snap("29-payout-contradicted").await;
    b.type_into("#acknowledge-note", "Recipient repaid by hand")
        .await;
    b.click("#acknowledge-form button[type=submit]").await;
    b.wait_for_query("notice=payout_acknowledged").await;
    let text = b.wait_for_text("Contradiction acknowledged").await;
    assert!(
        text.contains("By amina (dashboard): Recipient repaid by hand"),
        "{text}"
    );
    assert!(
        !text.contains("When it is settled, acknowledge it"),
        "{text}"
    );
    b.snap("30-payout-contradiction-acknowledged").await;
    b.close().await;
    let p = gw.storage().get_payout(&payout).await.unwrap().unwrap();
    assert_eq!(
        (p.status, p.receipt.as_deref()),
        (PayoutStatus::Completed, Some("SGB2PAID01"))
    );
    gw.stop().await;
}
