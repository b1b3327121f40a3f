//! Email over SMTP (lettre, rustls): the customer's receipt ("Payment Complete") and the
//! admin's mail about failed payments and payments held for review.
//!
//! `SMTP_URL` decides the transport: `smtps://host[:465]` is implicit TLS; `smtp://host[:587]`
//! upgrades with STARTTLS when the server offers it, `?tls=required` insists on STARTTLS and
//! `?tls=none` never uses TLS (a relay on loopback). `SMTP_CA_FILE` adds a private relay's CA.
//! The `Message-ID` is made from the event id, the same on every attempt, so mail clients drop
//! the rare repeat. A 5xx for the recipient dead-letters the event at once (with the server's
//! answer); 4xx answers and connection trouble are retried. The password is never logged: it is
//! only inside the transport's credentials, and errors are lettre's, which do not quote it.

use std::path::Path;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mpesa_storage::OutboxEvent;
use secrecy::ExposeSecret;
use url::Url;

use super::Delivery;
use super::message::{Notification, PaymentFacts, clip, headline, ksh};
use crate::config::EmailSettings;

#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error("SMTP_URL: {0}")]
    Url(String),
    #[error("EMAIL_FROM: {0}")]
    From(String),
    #[error("SMTP_CA_FILE {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("SMTP TLS: {0}")]
    Tls(String),
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
    /// `smtp://…?tls=required`: STARTTLS or no mail.
    StartTlsRequired,
    /// `smtp://`: STARTTLS when offered.
    StartTlsOpportunistic,
    /// `smtp://…?tls=none`.
    Plain,
}

impl SmtpSecurity {
    pub fn describe(self) -> &'static str {
        match self {
            SmtpSecurity::ImplicitTls => "implicit TLS",
            SmtpSecurity::StartTlsRequired => "STARTTLS (required)",
            SmtpSecurity::StartTlsOpportunistic => "STARTTLS when offered",
            SmtpSecurity::Plain => "no TLS",
        }
    }
}

/// The parts of `SMTP_URL`.
#[derive(Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl SmtpTarget {
    pub fn parse(raw: &str) -> Result<Self, EmailSetupError> {
        let url = Url::parse(raw).map_err(|e| EmailSetupError::Url(format!("not a URL ({e})")))?;
        let host = url
            .host_str()
            .ok_or_else(|| EmailSetupError::Url("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.to_ascii_lowercase());
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtps", _) => SmtpSecurity::ImplicitTls,
            ("smtp", None | Some("opportunistic")) => SmtpSecurity::StartTlsOpportunistic,
            ("smtp", Some("required" | "starttls")) => SmtpSecurity::StartTlsRequired,
            ("smtp", Some("none" | "off")) => SmtpSecurity::Plain,
            ("smtp", Some(other)) => {
                return Err(EmailSetupError::Url(format!(
                    "tls={other}: use required, opportunistic or none"
                )));
            }
            (other, _) => {
                return Err(EmailSetupError::Url(format!(
                    "scheme {other}: use smtp:// or smtps://"
                )));
            }
        };
        let port = url.port().unwrap_or(match security {
            SmtpSecurity::ImplicitTls => 465,
            _ => 587,
        });
        let decode = |s: &str| {
            percent_decode(s).map_err(|_| EmailSetupError::Url("bad percent-encoding".into()))
        };
        let username = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url.password().map(decode).transpose()?;
        Ok(SmtpTarget {
            host,
            port,
            security,
            username,
            password,
        })
    }
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The right-hand side of our Message-IDs.
    message_id_domain: String,
    target: SmtpTarget,
}

impl EmailSender {
    pub fn new(settings: &EmailSettings, timeout: Duration) -> Result<Self, EmailSetupError> {
        daraja::install_crypto_provider();
        let target = SmtpTarget::parse(settings.smtp_url.expose_secret())?;
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| EmailSetupError::From(format!("not an address ({e})")))?;
        let message_id_domain = from.email.domain().to_owned();
        let tls = match target.security {
            SmtpSecurity::Plain => Tls::None,
            security => {
                let mut builder = TlsParameters::builder(target.host.clone());
                if let Some(path) = &settings.ca_file {
                    builder = builder.add_root_certificate(read_ca(path)?);
                }
                let params = builder
                    .build_rustls()
                    .map_err(|e| EmailSetupError::Tls(e.to_string()))?;
                match security {
                    SmtpSecurity::ImplicitTls => Tls::Wrapper(params),
                    SmtpSecurity::StartTlsRequired => Tls::Required(params),
                    _ => Tls::Opportunistic(params),
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&target.host)
            .port(target.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(user) = &target.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                target.password.clone().unwrap_or_default(),
            ));
        }
        Ok(EmailSender {
            transport: builder.build(),
            from,
            message_id_domain,
            target,
        })
    }

    pub fn target(&self) -> &SmtpTarget {
        &self.target
    }

    /// Connects, greets and says NOOP (`config check`); sends nothing.
    pub async fn check_connection(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the server did not answer NOOP".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Builds the message a row stands for.
    pub fn build_message(&self, event: &OutboxEvent) -> Result<Message, String> {
        let notification = Notification::parse(&event.payload)?;
        let to: Mailbox = event
            .destination
            .parse()
            .map_err(|e| format!("{:?} is not an email address ({e})", event.destination))?;
        let content = render(&event.event_type, &notification)?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(content.subject)
            .message_id(Some(format!("<{}@{}>", event.id, self.message_id_domain)))
            .date_now()
            .multipart(MultiPart::alternative_plain_html(
                content.text,
                content.html,
            ))
            .map_err(|e| format!("cannot build the message: {e}"))
    }
}

fn read_ca(path: &Path) -> Result<Certificate, EmailSetupError> {
    let err = |reason: String| EmailSetupError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    Certificate::from_pem(&pem).map_err(|e| err(e.to_string()))
}

impl super::Sender for EmailSender {
    async fn send(&self, event: &OutboxEvent) -> Delivery {
        let message = match self.build_message(event) {
            Ok(m) => m,
            Err(error) => return Delivery::Permanent { error, code: None },
        };
        match self.transport.send(message).await {
            Ok(response) => Delivery::Delivered {
                code: Some(i32::from(u16::from(response.code()))),
            },
            Err(error) => classify(&error),
        }
    }
}

/// Authentication refusals are the gateway's configuration, not the recipient: retried, so
/// fixing `SMTP_URL` and restarting delivers them.
const AUTH_CODES: [u16; 4] = [530, 534, 535, 538];

fn classify(error: &lettre::transport::smtp::Error) -> Delivery {
    let code = error.status().map(u16::from);
    let text = error.to_string();
    match code {
        Some(c) if error.is_permanent() && !AUTH_CODES.contains(&c) => Delivery::Permanent {
            error: text,
            code: Some(i32::from(c)),
        },
        _ => Delivery::Failed {
            error: text,
            code: code.map(i32::from),
            after: None,
        },
    }
}

pub struct EmailContent {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The subject, text and HTML of a row.
pub fn render(event_type: &str, n: &Notification) -> Result<EmailContent, String> {
    match n.kind.as_str() {
        "customer_receipt" => Ok(receipt(n.payment()?)),
        "admin_alert" | "review_alert" => {
            let p = n.payment()?;
            let reason = n.reason.as_deref().or(p.review_reason.as_deref());
            Ok(admin_alert(
                event_type,
                p,
                (n.kind == "review_alert").then_some(reason).flatten(),
            ))
        }
        // A ready text (refunds, payouts): the first line is the subject.
        "notice" => {
            let text = clip(n.message.as_deref().unwrap_or(""), 2000);
            Ok(EmailContent {
                subject: clip(text.lines().next().unwrap_or("mpesa-gateway"), 120),
                html: format!("<p>{}</p>", escape(&text).replace('\n', "<br>")),
                text,
            })
        }
        "test" => {
            let text = n
                .message
                .clone()
                .unwrap_or_else(|| "Email delivery from mpesa-gateway works.".into());
            Ok(EmailContent {
                subject: "mpesa-gateway test message".into(),
                html: format!("<p>{}</p>", escape(&text)),
                text,
            })
        }
        other => Err(format!("unknown email notification kind {other:?}")),
    }
}

/// Rows of (label, value): the text part lists them, the HTML part tables them.
fn rows_to_content(subject: String, intro: &str, rows: &[(&str, String)]) -> EmailContent {
    let mut text = format!("{intro}\n\n");
    let mut html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2>{}</h2><p>{}</p><table>",
        escape(&subject),
        escape(intro)
    );
    for (label, value) in rows {
        text.push_str(&format!("{label}: {value}\n"));
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape(label),
            escape(value)
        ));
    }
    html.push_str("</table></body></html>");
    EmailContent {
        subject,
        text,
        html,
    }
}

fn receipt(p: &PaymentFacts) -> EmailContent {
    let w = p.receipt_words();
    let mut rows = vec![
        (
            w.receipt_number,
            p.mpesa_receipt_number.clone().unwrap_or_default(),
        ),
        (w.amount, ksh(p.amount)),
        (w.date, p.mpesa_time().unwrap_or_else(|| w.not_given.into())),
        (w.reference, clip(&p.reference, 200)),
    ];
    if !p.description.is_empty() {
        rows.push((w.paid_for, clip(&p.description, 200)));
    }
    rows_to_content(w.subject.into(), w.thanks_line, &rows)
}

fn admin_alert(event_type: &str, p: &PaymentFacts, review_reason: Option<&str>) -> EmailContent {
    let subject = format!(
        "{}: {} from {} (ref {})",
        headline(event_type),
        ksh(p.amount),
        one_line(&clip(&p.payer(), 80)),
        one_line(&clip(&p.reference, 40))
    );
    let mut rows = vec![
        ("Status", p.status.clone()),
        ("Amount", ksh(p.amount)),
        ("Phone", clip(&p.payer(), 200)),
        ("Reference", clip(&p.reference, 200)),
        ("Description", clip(&p.description, 200)),
    ];
    if let Some(desc) = &p.result_desc {
        rows.push((
            "Result",
            format!(
                "{} ({})",
                clip(desc, 200),
                p.result_code.as_deref().unwrap_or("?")
            ),
        ));
    }
    if let Some(receipt) = &p.mpesa_receipt_number {
        rows.push(("M-Pesa receipt", receipt.clone()));
    }
    if let Some(note) = p.recovery_note() {
        rows.push(("Recovered", note.to_owned()));
    }
    if let Some(reason) = review_reason {
        rows.push(("Why held for review", clip(reason, 500)));
    }
    if let Some(time) = p.mpesa_time().or_else(|| p.updated_time()) {
        rows.push(("Time", time));
    }
    rows.push(("Payment", p.id.clone()));
    rows_to_content(subject, headline(event_type), &rows)
}

/// Header values must stay on one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Escapes text for HTML element content and attribute values (one implementation, in the
/// domain crate, shared with the simulator's page).
pub use mpesa_domain::escape_html as escape;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        let t = SmtpTarget::parse("smtps://u%40x:p%3Ass@mail.example.com").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.security),
            ("mail.example.com", 465, SmtpSecurity::ImplicitTls)
        );
        assert_eq!(t.username.as_deref(), Some("u@x"));
        assert_eq!(t.password.as_deref(), Some("p:ss"));
        assert!(!format!("{t:?}").contains("p:ss"));
        let t = SmtpTarget::parse("smtp://mail.example.com?tls=required").unwrap();
        assert_eq!((t.port, t.security), (587, SmtpSecurity::StartTlsRequired));
        let t = SmtpTarget::parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!((t.port, t.security), (2525, SmtpSecurity::Plain));
        let t = SmtpTarget::parse("smtp://mail.example.com:25").unwrap();
        assert_eq!(t.security, SmtpSecurity::StartTlsOpportunistic);
        assert!(SmtpTarget::parse("smtp://h?tls=maybe").is_err());
    }

    #[test]
    fn receipt_has_everything_and_escapes() {
        let p = PaymentFacts {
            amount: 1250,
            reference: "INV42".into(),
            description: "<script>alert(1)</script> & more".into(),
            mpesa_receipt_number: Some("SGA1XYZ123".into()),
            transaction_date: Some("2024-07-10T06:15:41.000Z".into()),
            ..Default::default()
        };
        let c = receipt(&p);
        assert_eq!(c.subject, "Payment Complete");
        for part in [&c.text, &c.html] {
            assert!(part.contains("SGA1XYZ123"));
            assert!(part.contains("KSh 1,250"));
            assert!(part.contains("10 Jul 2024 09:15:41 EAT"));
            assert!(part.contains("INV42"));
        }
        assert!(
            c.html
                .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more")
        );
        assert!(!c.html.contains("<script>"));
    }

    #[test]
    fn a_receipt_in_the_language_the_customer_paid_in() {
        let p = PaymentFacts {
            amount: 1500,
            reference: "K7MXR4A".into(),
            mpesa_receipt_number: Some("SGA1XYZ123".into()),
            customer_language: Some("sw".into()),
            ..Default::default()
        };
        let c = receipt(&p);
        assert_eq!(c.subject, "Malipo Yamekamilika");
        assert!(
            c.text.contains("Namba ya risiti") && c.text.contains("KSh 1,500"),
            "{}",
            c.text
        );
        let english = receipt(&PaymentFacts {
            customer_language: None,
            ..p
        });
        assert_eq!(english.subject, "Payment Complete");
    }

    #[test]
    fn subjects_stay_on_one_line() {
        let p = PaymentFacts {
            reference: "A\r\nBcc: x@evil".into(),
            ..Default::default()
        };
        let c = admin_alert("payment.failed", &p, None);
        assert!(!c.subject.contains('\n') && !c.subject.contains('\r'));
    }
}
