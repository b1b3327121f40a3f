//! Who hears about a refund or payout, planned inside the transaction that finalizes it (the
//! outbox): the merchant's webhook, the admin's Telegram chat and email, and for a refund the
//! customer who had a receipt by email or Telegram. Each row has a dedupe key, so writing the
//! same fact twice adds nothing.

use mpesa_storage::{Channel, NewOutboxEvent, Payment};
use serde_json::{Value, json};

use crate::ids::new_id;
use crate::outbox::message::ksh;
use crate::payments::NotificationPlan;

/// The kind of email and Telegram rows that carry a ready text (`message`), plain: the
/// renderer escapes it.
pub const NOTICE: &str = "notice";
/// The kind of Telegram rows that carry a ready message in Telegram's HTML (`message`), written
/// by the gateway with every outside value in it escaped (a receipt check's answer, which the
/// bot also sends as a reply): sent as it is, since escaping it again shows its tags as text.
pub const NOTICE_HTML: &str = "notice_html";

/// Rows for a final refund or payout: `event_type` is `refund.completed`, `payout.failed`…;
/// `subject_id` the refund or payout id; `data` its view; `admin_text` the admin's alert.
pub fn final_rows(
    plan: &NotificationPlan,
    event_type: &str,
    subject_id: &str,
    payment_id: Option<&str>,
    data: &Value,
    admin_text: &str,
    now: i64,
) -> Vec<NewOutboxEvent> {
    let mut rows = Vec::new();
    if let Some(url) = &plan.webhook_url {
        let mut r = row(
            subject_id,
            payment_id,
            Channel::Webhook,
            url,
            String::new(),
            event_type,
            now,
        );
        r.payload = json!({ "id": r.id, "type": event_type, "created": now / 1000, "data": data })
            .to_string();
        rows.push(r);
    }
    rows.extend(admin_rows(
        plan, event_type, subject_id, payment_id, admin_text, now,
    ));
    rows
}

/// The admins' alert alone, by Telegram and email (no webhook): `payout.contradicted`…
pub fn admin_rows(
    plan: &NotificationPlan,
    event_type: &str,
    subject_id: &str,
    payment_id: Option<&str>,
    admin_text: &str,
    now: i64,
) -> Vec<NewOutboxEvent> {
    let mut rows = Vec::new();
    let notice = json!({ "kind": NOTICE, "message": admin_text }).to_string();
    if plan.telegram
        && let Some(admin) = plan.admin_chat_id
    {
        rows.push(row(
            subject_id,
            payment_id,
            Channel::Telegram,
            &admin.to_string(),
            notice.clone(),
            event_type,
            now,
        ));
    }
    if plan.email
        && let Some(admin) = &plan.admin_email
    {
        rows.push(row(
            subject_id,
            payment_id,
            Channel::Email,
            admin,
            notice,
            event_type,
            now,
        ));
    }
    rows
}

/// The address of a dashboard page (`href`, e.g. `/admin/payments/pay_…`) under the gateway's
/// public URL, for an alert to link to.
pub fn dashboard_link(public_url: &url::Url, href: &str) -> String {
    public_url
        .join(href.trim_start_matches('/'))
        .map(String::from)
        .unwrap_or_else(|_| href.to_owned())
}

/// One row about `subject_id`: its dedupe key makes the same fact written twice one row.
fn row(
    subject_id: &str,
    payment_id: Option<&str>,
    channel: Channel,
    destination: &str,
    payload: String,
    event_type: &str,
    now: i64,
) -> NewOutboxEvent {
    NewOutboxEvent {
        id: new_id("evt"),
        payment_id: payment_id.map(str::to_owned),
        channel,
        event_type: event_type.to_owned(),
        destination: destination.to_owned(),
        payload,
        dedupe_key: format!(
            "{subject_id}:{}:{event_type}:{destination}",
            channel.as_str()
        ),
        created_at: now,
    }
}

/// The customer's message about a completed refund, where they had their receipt.
pub fn refund_customer_rows(
    plan: &NotificationPlan,
    refund_id: &str,
    payment: &Payment,
    now: i64,
) -> Vec<NewOutboxEvent> {
    let text = format!(
        "Your payment of {} (M-Pesa receipt {}) has been refunded to your M-Pesa.",
        ksh(payment.amount.shillings()),
        payment.mpesa_receipt_number.as_deref().unwrap_or("?")
    );
    let payload = json!({ "kind": NOTICE, "message": text }).to_string();
    let mut rows = Vec::new();
    let mut push = |channel: Channel, destination: String| {
        rows.push(NewOutboxEvent {
            id: new_id("evt"),
            payment_id: Some(payment.id.clone()),
            channel,
            event_type: "refund.receipt".into(),
            destination: destination.clone(),
            payload: payload.clone(),
            dedupe_key: format!(
                "{refund_id}:{}:refund.receipt:{destination}",
                channel.as_str()
            ),
            created_at: now,
        })
    };
    if plan.email
        && let Some(to) = &payment.customer_email
    {
        push(Channel::Email, to.clone());
    }
    if plan.telegram
        && let Some(chat) = payment.telegram_chat_id
        && Some(chat) != plan.admin_chat_id
    {
        push(Channel::Telegram, chat.to_string());
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dashboard_link_keeps_the_public_url_s_path_and_encodes_the_id() {
        let at = |base: &str, href: &str| dashboard_link(&url::Url::parse(base).unwrap(), href);
        assert_eq!(
            at("http://127.0.0.1:8000/", "/admin/payments/pay_1"),
            "http://127.0.0.1:8000/admin/payments/pay_1"
        );
        // Behind a proxy under a path, as the callbacks are.
        assert_eq!(
            at(
                "https://pay.example.com/gateway/",
                &crate::admin::pages::payment_href("pay_1/../x")
            ),
            "https://pay.example.com/gateway/admin/payments/pay_1%2F..%2Fx"
        );
    }
}
