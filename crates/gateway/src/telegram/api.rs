//! A small client for the Telegram Bot API (`POST {base}/bot{token}/{method}` with a JSON body,
//! answered `{"ok":true,"result":…}` or `{"ok":false,"error_code":…,"description":…}`).
//!
//! Every method goes through [`BotApi::call`], so new ones (getUpdates, editMessageText,
//! answerCallbackQuery, setWebhook…) are a request type, a result type and a one-line method.
//! The token is part of every URL: errors are built without the URL, and any text that could
//! still carry the token is scrubbed, so it never reaches a log or an outbox record.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

pub use super::updates::{Chat, Message, User};

/// How long one call may take (long polling callers pass their own).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BotApiError {
    /// 429: Telegram says when to try again.
    #[error("Telegram asks to wait {}s before trying again: {description}", retry_after.as_secs())]
    TooManyRequests {
        retry_after: Duration,
        description: String,
    },
    /// 403: the chat refuses the bot for good (it blocked the bot, was deactivated, or the
    /// bot was removed from it).
    #[error("Telegram refused (403): {description}")]
    Forbidden { description: String },
    /// 400: the request itself is wrong (chat not found, text that does not parse…).
    #[error("Telegram rejected the request (400): {description}")]
    BadRequest { description: String },
    /// 401 or 404: the token is wrong or revoked.
    #[error("Telegram does not accept the bot token ({code}): {description}")]
    Unauthorized { code: u16, description: String },
    /// Any other error answer (5xx…).
    #[error("Telegram answered {code}: {description}")]
    Api { code: u16, description: String },
    /// No answer: connection refused, timeout, TLS…
    #[error("Telegram unreachable: {0}")]
    Transport(String),
    #[error("unexpected answer from Telegram: {0}")]
    Decode(String),
}

impl BotApiError {
    /// An edit that would leave the message as it is (it already shows this text).
    pub fn is_not_modified(&self) -> bool {
        matches!(self, BotApiError::BadRequest { description } if description.contains("not modified"))
    }

    /// The message to edit is gone (the user deleted it) or can no longer be edited.
    pub fn is_message_gone(&self) -> bool {
        matches!(self, BotApiError::BadRequest { description }
            if description.contains("message to edit not found")
                || description.contains("message can't be edited"))
    }

    /// The HTTP-like code Telegram answered with, if it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            BotApiError::TooManyRequests { .. } => Some(429),
            BotApiError::Forbidden { .. } => Some(403),
            BotApiError::BadRequest { .. } => Some(400),
            BotApiError::Unauthorized { code, .. } | BotApiError::Api { code, .. } => Some(*code),
            BotApiError::Transport(_) | BotApiError::Decode(_) => None,
        }
    }
}

/// A chat: a numeric id, or `@username` for public channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ChatId {
    Id(i64),
    Username(String),
}

impl From<i64> for ChatId {
    fn from(id: i64) -> Self {
        ChatId::Id(id)
    }
}

impl std::str::FromStr for ChatId {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().parse::<i64>() {
            Ok(id) => ChatId::Id(id),
            Err(_) => ChatId::Username(s.trim().to_owned()),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ParseMode {
    #[serde(rename = "HTML")]
    Html,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkPreviewOptions {
    pub is_disabled: bool,
}

/// `sendMessage`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendMessage {
    pub chat_id: ChatId,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_mode: Option<ParseMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_preview_options: Option<LinkPreviewOptions>,
    /// An inline keyboard or other markup, as Telegram's JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_markup: Option<serde_json::Value>,
}

impl SendMessage {
    /// An HTML message without link previews (a reference that looks like a URL must not
    /// turn into a preview card). `html` must already be escaped (see [`super::escape_html`]).
    pub fn html(chat_id: ChatId, html: String) -> Self {
        SendMessage {
            chat_id,
            text: html,
            parse_mode: Some(ParseMode::Html),
            link_preview_options: Some(LinkPreviewOptions { is_disabled: true }),
            reply_markup: None,
        }
    }
}

/// `editMessageText`. Without `reply_markup` the message's inline keyboard is removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EditMessageText {
    pub chat_id: ChatId,
    pub message_id: i64,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_mode: Option<ParseMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_preview_options: Option<LinkPreviewOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_markup: Option<serde_json::Value>,
}

impl EditMessageText {
    /// As [`SendMessage::html`]: `html` must already be escaped.
    pub fn html(chat_id: ChatId, message_id: i64, html: String) -> Self {
        EditMessageText {
            chat_id,
            message_id,
            text: html,
            parse_mode: Some(ParseMode::Html),
            link_preview_options: Some(LinkPreviewOptions { is_disabled: true }),
            reply_markup: None,
        }
    }
}

/// `getUpdates`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GetUpdates {
    /// The first update to return; asking for it confirms every update before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Long polling: how long Telegram may hold the request open, in seconds.
    pub timeout: u64,
    pub limit: u32,
    pub allowed_updates: Vec<String>,
}

/// `answerCallbackQuery`: the small notice shown where the button was pressed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerCallbackQuery {
    pub callback_query_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `setWebhook`.
#[derive(Clone, PartialEq, Serialize)]
pub struct SetWebhook {
    pub url: String,
    /// Sent back by Telegram in `X-Telegram-Bot-Api-Secret-Token` with every update.
    pub secret_token: String,
    pub allowed_updates: Vec<String>,
    /// 1: Telegram sends the next update only once the previous one was answered, so updates
    /// are handled in order, one at a time, as with long polling.
    pub max_connections: u32,
}

impl std::fmt::Debug for SetWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetWebhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The update kinds the bot asks for.
pub fn allowed_updates() -> Vec<String> {
    vec!["message".into(), "callback_query".into()]
}

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    error_code: Option<u16>,
    description: Option<String>,
    parameters: Option<ResponseParameters>,
}

#[derive(Debug, Deserialize)]
struct ResponseParameters {
    retry_after: Option<u64>,
}

#[derive(Clone)]
pub struct BotApi {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl BotApi {
    /// `base` is `https://api.telegram.org` or a test double.
    pub fn new(base: &Url, token: SecretString) -> Result<Self, BotApiError> {
        daraja::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mpesa-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BotApiError::Transport(e.without_url().to_string()))?;
        Ok(BotApi {
            http,
            base: base.as_str().trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Calls any Bot API method with a JSON body and decodes its `result`.
    pub async fn call<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, BotApiError> {
        self.call_with_timeout(method, params, DEFAULT_TIMEOUT)
            .await
    }

    /// As [`BotApi::call`], with this call's own timeout (long polling).
    pub async fn call_with_timeout<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, BotApiError> {
        let url = format!("{}/bot{}/{method}", self.base, self.token.expose_secret());
        let response = self
            .http
            .post(url)
            .timeout(timeout)
            .json(params)
            .send()
            .await
            .map_err(|e| BotApiError::Transport(self.scrub(&error_chain(e))))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| BotApiError::Transport(self.scrub(&error_chain(e))))?;
        let envelope: Envelope<R> = serde_json::from_slice(&body).map_err(|e| {
            BotApiError::Decode(self.scrub(&format!(
                "HTTP {status}, {e}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )))
        })?;
        if envelope.ok {
            return envelope
                .result
                .ok_or_else(|| BotApiError::Decode("ok without a result".into()));
        }
        let code = envelope.error_code.unwrap_or(status);
        let description = self.scrub(
            &envelope
                .description
                .unwrap_or_else(|| format!("HTTP {status}")),
        );
        Err(match code {
            429 => BotApiError::TooManyRequests {
                retry_after: Duration::from_secs(
                    envelope.parameters.and_then(|p| p.retry_after).unwrap_or(1),
                ),
                description,
            },
            403 => BotApiError::Forbidden { description },
            400 => BotApiError::BadRequest { description },
            401 | 404 => BotApiError::Unauthorized { code, description },
            _ => BotApiError::Api { code, description },
        })
    }

    pub async fn send_message(&self, message: &SendMessage) -> Result<Message, BotApiError> {
        self.call("sendMessage", message).await
    }

    /// Checks the token (`config check`).
    pub async fn get_me(&self) -> Result<User, BotApiError> {
        self.call("getMe", &serde_json::json!({})).await
    }

    /// Long polling: waits up to `request.timeout` seconds for updates. Each is returned as
    /// JSON, read one by one by the caller (see `updates::Update::from_value`), so one odd
    /// update cannot make the whole batch unreadable.
    pub async fn get_updates(
        &self,
        request: &GetUpdates,
    ) -> Result<Vec<serde_json::Value>, BotApiError> {
        let timeout = Duration::from_secs(request.timeout) + Duration::from_secs(10);
        self.call_with_timeout("getUpdates", request, timeout).await
    }

    /// Edits a message the bot sent. Telegram answers "message is not modified" (400) when
    /// the text is the same: see [`BotApiError::is_not_modified`].
    pub async fn edit_message_text(&self, edit: &EditMessageText) -> Result<(), BotApiError> {
        self.call::<_, serde_json::Value>("editMessageText", edit)
            .await
            .map(|_| ())
    }

    pub async fn answer_callback_query(
        &self,
        answer: &AnswerCallbackQuery,
    ) -> Result<(), BotApiError> {
        self.call::<_, bool>("answerCallbackQuery", answer)
            .await
            .map(|_| ())
    }

    pub async fn set_webhook(&self, request: &SetWebhook) -> Result<(), BotApiError> {
        self.call::<_, bool>("setWebhook", request)
            .await
            .map(|_| ())
    }

    /// Turns webhook delivery off (long polling cannot work while a webhook is set). Pending
    /// updates are kept.
    pub async fn delete_webhook(&self) -> Result<(), BotApiError> {
        self.call::<_, bool>(
            "deleteWebhook",
            &serde_json::json!({ "drop_pending_updates": false }),
        )
        .await
        .map(|_| ())
    }

    /// Belt and braces: no text leaves this client with the token in it.
    fn scrub(&self, text: &str) -> String {
        let token = self.token.expose_secret();
        if token.is_empty() {
            text.to_owned()
        } else {
            text.replace(token, "****")
        }
    }
}

/// A reqwest error and its causes, without the URL (which holds the token).
fn error_chain(error: reqwest::Error) -> String {
    daraja::error_chain(&error.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TOKEN: &str = "123456:secret-token-value";

    async fn api(server: &MockServer) -> BotApi {
        BotApi::new(
            &Url::parse(&server.uri()).unwrap(),
            SecretString::from(TOKEN),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn sends_html_messages_and_decodes_the_result() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("/bot{TOKEN}/sendMessage")))
            .and(body_json(serde_json::json!({
                "chat_id": 42, "text": "<b>hi</b>", "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": true}
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "ok": true, "result": {"message_id": 7, "chat": {"id": 42, "type": "private"}, "date": 1, "text": "hi"}
            })))
            .expect(1)
            .mount(&server)
            .await;
        let m = api(&server)
            .await
            .send_message(&SendMessage::html(42.into(), "<b>hi</b>".into()))
            .await
            .unwrap();
        assert_eq!((m.message_id, m.chat.id), (7, 42));
    }

    #[tokio::test]
    async fn maps_error_answers() {
        let server = MockServer::start().await;
        for (chat, status, body) in [
            (
                1,
                429,
                serde_json::json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}}),
            ),
            (
                2,
                403,
                serde_json::json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
            ),
            (
                3,
                400,
                serde_json::json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}),
            ),
            (
                4,
                401,
                serde_json::json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
            ),
            (
                5,
                502,
                serde_json::json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
            ),
        ] {
            Mock::given(method("POST"))
                .and(body_json(serde_json::json!({"chat_id": chat, "text": "x"})))
                .respond_with(ResponseTemplate::new(status).set_body_json(body))
                .mount(&server)
                .await;
        }
        let api = api(&server).await;
        let send = |chat: i64| {
            let api = api.clone();
            async move {
                api.call::<_, Message>(
                    "sendMessage",
                    &serde_json::json!({"chat_id": chat, "text": "x"}),
                )
                .await
                .unwrap_err()
            }
        };
        assert_eq!(
            send(1).await,
            BotApiError::TooManyRequests {
                retry_after: Duration::from_secs(7),
                description: "Too Many Requests: retry after 7".into()
            }
        );
        assert!(matches!(send(2).await, BotApiError::Forbidden { .. }));
        assert!(matches!(send(3).await, BotApiError::BadRequest { .. }));
        assert!(matches!(
            send(4).await,
            BotApiError::Unauthorized { code: 401, .. }
        ));
        assert_eq!(send(5).await.code(), Some(502));
    }

    #[tokio::test]
    async fn errors_never_carry_the_token() {
        // Nothing listens on port 9 of loopback: a transport error, whose URL holds the token.
        let api = BotApi::new(
            &Url::parse("http://127.0.0.1:9").unwrap(),
            SecretString::from(TOKEN),
        )
        .unwrap();
        let error = api.get_me().await.unwrap_err();
        assert!(matches!(error, BotApiError::Transport(_)), "{error:?}");
        let text = format!("{error} {error:?} {api:?}");
        assert!(!text.contains("secret-token-value"), "{text}");
    }
}
