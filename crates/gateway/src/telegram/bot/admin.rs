//! The admin chat's `/stats` and `/pending`.

use mpesa_domain::PaymentStatus;
use mpesa_storage::{PageRequest, Payment, PaymentFilter};

use super::{Bot, BotError};
use crate::ids::{eat_display, now_ms};
use crate::outbox::message::{clip, ksh};
use crate::telegram::escape_html;

/// How many payments `/pending` lists.
const PENDING_LEN: usize = 15;

impl Bot {
    pub(super) async fn stats(&self, chat: i64) -> Result<(), BotError> {
        let now = now_ms();
        let stats = self
            .payments
            .reads()
            .stats(mpesa_domain::eat::day_start(now), now + 1)
            .await?;
        let get = |s: PaymentStatus| stats.by_status.get(s.as_str()).cloned().unwrap_or_default();
        let completed = get(PaymentStatus::Completed);
        let unsuccessful: i64 = [
            PaymentStatus::Failed,
            PaymentStatus::Cancelled,
            PaymentStatus::TimedOut,
            PaymentStatus::Rejected,
        ]
        .into_iter()
        .map(|s| get(s).count)
        .sum();
        let open = get(PaymentStatus::Initiated).count + get(PaymentStatus::Pending).count;
        let total: i64 = stats.by_status.values().map(|t| t.count).sum();
        let finished = completed.count + unsuccessful;
        let rate = if finished == 0 {
            "no finished payments yet".to_owned()
        } else {
            format!(
                "{}% of {finished} finished",
                (completed.count * 100 + finished / 2) / finished
            )
        };
        let lines = [
            "📊 <b>Today</b> (since 00:00 EAT)".to_owned(),
            format!("Payments: {total}"),
            format!(
                "✅ Completed: {} · <b>{}</b>",
                completed.count,
                ksh(completed.amount)
            ),
            format!(
                "❌ Failed: {} · 🚫 Cancelled: {} · ⌛ Timed out: {} · ⚠️ Rejected: {}",
                get(PaymentStatus::Failed).count,
                get(PaymentStatus::Cancelled).count,
                get(PaymentStatus::TimedOut).count,
                get(PaymentStatus::Rejected).count
            ),
            format!("⏳ In progress: {open}"),
            format!("Success rate: {rate}"),
            format!("🔎 Held for review: {}", stats.needs_review),
        ];
        self.reply(chat, lines.join("\n"), None).await
    }

    pub(super) async fn pending(&self, chat: i64) -> Result<(), BotError> {
        let page = PageRequest {
            limit: PENDING_LEN as u32 + 1,
            cursor: None,
        };
        let mut found: Vec<Payment> = Vec::new();
        for filter in [
            PaymentFilter {
                status: Some(PaymentStatus::Pending),
                ..Default::default()
            },
            PaymentFilter {
                status: Some(PaymentStatus::Initiated),
                ..Default::default()
            },
            PaymentFilter {
                needs_review: Some(true),
                ..Default::default()
            },
        ] {
            for p in self.payments.reads().list(&filter, &page).await?.items {
                if !found.iter().any(|f| f.id == p.id) {
                    found.push(p);
                }
            }
        }
        found.sort_by_key(|p| std::cmp::Reverse(p.created_at));
        let text = if found.is_empty() {
            "✅ Nothing is waiting or held for review.".to_owned()
        } else {
            let more = found.len().saturating_sub(PENDING_LEN);
            let mut lines = vec!["⏳ <b>Waiting or held for review</b>".to_owned()];
            for p in found.iter().take(PENDING_LEN) {
                lines.push(format!(
                    "• <b>{}</b> · {} · {} · {} since {}\n  <code>{}</code>",
                    ksh(p.amount.shillings()),
                    escape_html(&clip(&p.reference, 40)),
                    escape_html(&clip(&p.payer(), 40)),
                    p.status.as_str(),
                    eat_display(p.created_at),
                    escape_html(&p.id),
                ));
                if p.needs_review {
                    lines.push(format!(
                        "  🔎 {}",
                        escape_html(&clip(p.review_reason.as_deref().unwrap_or("held"), 200))
                    ));
                }
            }
            if more > 0 {
                lines.push(format!("…and more: see the dashboard ({more}+)."));
            }
            lines.join("\n")
        };
        self.reply(chat, text, None).await
    }
}
