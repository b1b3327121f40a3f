//! What every page's frame needs: the title, the navigation, the signed-in user and the CSRF
//! token for the sign-out form, and a notice after an action. Pages embed a [`Layout`] and
//! render with `templates/admin/base.html`.

use mpesa_storage::AdminSession;

use crate::admin::assets;

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Payments,
    Links,
    Payouts,
    Callbacks,
    Outbox,
    ApiKeys,
    Users,
    Settings,
    None,
}

const NAV: [(Section, &str, &str); 9] = [
    (Section::Overview, "Overview", "/admin/"),
    (Section::Payments, "Payments", "/admin/payments"),
    (Section::Links, "Links", "/admin/links"),
    (Section::Payouts, "Payouts", "/admin/payouts"),
    (Section::Callbacks, "Callbacks", "/admin/callbacks"),
    (Section::Outbox, "Outbox", "/admin/outbox"),
    (Section::ApiKeys, "API keys", "/admin/api-keys"),
    (Section::Users, "Users", "/admin/users"),
    (Section::Settings, "Settings", "/admin/settings"),
];

pub struct NavItem {
    pub label: &'static str,
    pub href: &'static str,
    pub current: bool,
}

pub struct Layout {
    pub title: String,
    pub stylesheet: &'static str,
    /// Set when signed in: shows the navigation and the sign-out button.
    pub username: Option<String>,
    pub csrf_token: String,
    pub nav: Vec<NavItem>,
    /// A fixed message after an action (never text from the request).
    pub notice: Option<&'static str>,
}

impl Layout {
    /// The frame of a signed-in page (`session` is `Admin::session`).
    pub fn new(title: impl Into<String>, section: Section, session: &AdminSession) -> Self {
        Layout {
            title: title.into(),
            stylesheet: assets::stylesheet_path(),
            username: Some(session.username.clone()),
            csrf_token: session.csrf_token.clone(),
            nav: NAV
                .iter()
                .map(|(s, label, href)| NavItem {
                    label,
                    href,
                    current: *s == section,
                })
                .collect(),
            notice: None,
        }
    }

    /// The frame without navigation (sign-in and error pages).
    pub fn bare(title: impl Into<String>) -> Self {
        Layout {
            title: title.into(),
            stylesheet: assets::stylesheet_path(),
            username: None,
            csrf_token: String::new(),
            nav: Vec::new(),
            notice: None,
        }
    }

    pub fn with_notice(mut self, notice: Option<&'static str>) -> Self {
        self.notice = notice;
        self
    }
}

/// The messages that `?notice=` can show after a redirect. Only these fixed texts are ever
/// shown, so the parameter cannot put words on the page.
pub fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "queried" => "Daraja was asked about this payment; its answer is on the timeline.",
        "query_failed" => {
            "Daraja could not answer the query now; the attempt is recorded on the timeline."
        }
        "not_queryable" => {
            "This payment has no CheckoutRequestID (Daraja refused its push, or its answer never came), so there is nothing to ask Daraja about."
        }
        "settled" => "The payment was settled and your note was kept on its timeline.",
        "rejected" => "The report was rejected and your note was kept on its timeline.",
        "not_held" => "This payment is not held for review; nothing was changed.",
        "receipt_in_use" => {
            "That M-Pesa receipt already belongs to another payment; nothing was changed. Check the receipt number."
        }
        "note_required" => "Write a note saying why before settling or rejecting.",
        "retried" => "The event is back in the queue and will be sent again now.",
        "not_dead" => "Only dead-lettered or blocked events can be retried; nothing was changed.",
        "key_revoked" => "The API key was revoked; requests using it are refused.",
        "key_not_found" => "No active API key matched; nothing was changed.",
        "link_created" => "The payment link was created: share its address or QR code.",
        "link_disabled" => {
            "The link is disabled: its page says so and its account number no longer pays it."
        }
        "receipt_asked" => {
            "Safaricom was asked about this receipt (Transaction Status); its answer shows here when it comes."
        }
        "refund_requested" => {
            "The refund was requested: the Reversal went to M-Pesa and its result will show here."
        }
        "payout_sent" => "The payout was stored and sent to M-Pesa; its result will show here.",
        "payout_waits" => {
            "The payout is stored and waits for approval: another admin must approve it before anything is sent."
        }
        "payout_approved" => "You approved the payout: it was sent to M-Pesa.",
        "payout_rejected" => "You rejected the payout: nothing was sent.",
        "payout_settled" => {
            "The outcome you recorded is the payout's now; your note is on its timeline."
        }
        "payout_acknowledged" => {
            "You acknowledged the contradiction: the payout is no longer held; your note is on its timeline."
        }
        "refund_acknowledged" => {
            "You acknowledged the contradiction: the refund is no longer held; your note is on the payment's timeline."
        }
        "refund_settled" => {
            "The outcome you recorded is the refund's now; your note is on the payment's timeline."
        }
        "balance_asked" => {
            "Account Balance was asked: the answers come in a few seconds; reload to see them."
        }
        "balance_failed" => {
            "Daraja could not be asked for the balance now; the last answers are still shown."
        }
        "signed_out" => "You have signed out.",
        "signed_out_everywhere" => "Every session of that user has ended.",
        "user_removed" => "The user was removed and their sessions have ended.",
        "user_not_found" => "There is no such user; nothing was changed.",
        "not_yourself" => {
            "You cannot remove yourself here: another admin can, or `mpesa-gateway admin delete-user`."
        }
        _ => return None,
    })
}
