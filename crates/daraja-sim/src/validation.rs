//! Field checks, in the terms Daraja uses to refuse a request. Requests are read as a JSON
//! object first, so each missing or malformed field can be named in Daraja's own words
//! (`Bad Request - Invalid PhoneNumber`); the typed `daraja::wire` request is read afterwards.

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use mpesa_domain::{Cents, Msisdn};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::errors::ApiError;

/// A request body read as a JSON object.
pub(crate) struct Fields(Map<String, Value>);

/// Reads a body as a JSON object, the way Daraja does:
/// * without `Content-Type: application/json` (missing, `text/plain`, a form…) nothing is parsed,
///   and the request is refused as its first field (`bad_form`), even when the body is valid
///   JSON: "Invalid BusinessShortCode is the typical symptom of a missing
///   `Content-Type: application/json`" (`shared/daraja/stk.md`, synchronous errors;
///   `problems.md` #7);
/// * with it, a form-encoded body (`a=1&b=2`) is also reported as the first field
///   (`problems.md` #7: "body sent form-encoded (Python `data=` instead of `json=`)");
/// * any other body that is not a JSON object is `400.002.05 Invalid Request Payload`.
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: &Bytes,
    bad_form: impl FnOnce() -> ApiError,
) -> Result<Fields, ApiError> {
    if !is_json_content_type(headers) {
        return Err(bad_form());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(Fields(map)),
        Ok(_) => Err(ApiError::invalid_payload()),
        Err(_) if looks_form_encoded(body) => Err(bad_form()),
        Err(_) => Err(ApiError::invalid_payload()),
    }
}

/// `application/json`, with or without parameters (`; charset=utf-8`), in any letter case.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// `key=value` pairs joined by `&`: what a form encoder produces.
fn looks_form_encoded(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let text = text.trim();
    !text.is_empty()
        && !text.starts_with(['{', '[', '"'])
        && text.split('&').all(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, _)| !k.is_empty() && !k.contains(char::is_whitespace))
        })
}

/// Reads the typed request once the fields have been checked. A body that passed the checks
/// but still does not fit the wire type (say, a duplicated key) is an invalid payload.
pub(crate) fn typed<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|_| ApiError::invalid_payload())
}

impl Fields {
    /// A field's text: a string (trimmed of nothing: Daraja compares exactly) or the digits of an
    /// integer. `None` when missing, null, empty or of another type.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        match self.0.get(name)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            Value::Number(n) => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| (f as i64).to_string()),
            _ => None,
        }
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| !v.is_null())
    }

    /// A whole, positive amount: a JSON integer (`100`) or a string of plain digits (`"100"`).
    /// Daraja supports "only whole numbers" (`shared/daraja/stk.md`, Amount) and names float
    /// formatting such as `1e+05` as a cause of `Invalid Amount` (`problems.md` #8), so what a
    /// float encoder writes is refused however whole its value: `1.0`, `100000.0`, `1E5`,
    /// `1e+05`, `"1.00"`, as are `"0100"`, `" 100"`, zero and negatives. With `lenient` the
    /// older reading applies: any decimal text whose value is whole (`1.0`, `"1.00"`).
    pub(crate) fn whole_amount(&self, name: &str, lenient: bool) -> Option<i64> {
        let text = match self.0.get(name)? {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return None,
        };
        if lenient {
            let cents = Cents::parse(&text)?;
            return (cents.0 % 100 == 0 && cents.0 > 0).then_some(cents.0 / 100);
        }
        let plain = !text.is_empty()
            && text.len() <= 15
            && text.bytes().all(|b| b.is_ascii_digit())
            && !text.starts_with('0');
        plain.then(|| text.parse::<i64>().ok()).flatten()
    }

    /// Text of at most `max` characters (at least one).
    pub(crate) fn bounded_text(&self, name: &str, min: usize, max: usize) -> Option<String> {
        self.text(name)
            .filter(|t| (min..=max).contains(&t.chars().count()))
    }
}

/// 5 to 7 digits.
pub(crate) fn is_shortcode(text: &str) -> bool {
    (5..=7).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// Exactly `2547XXXXXXXX` or `2541XXXXXXXX` (no `07…`, no `+`).
pub(crate) fn msisdn(text: &str) -> Option<Msisdn> {
    Msisdn::parse(text).ok().filter(|m| m.as_str() == text)
}

/// `YYYYMMDDHHmmss`, a real time.
pub(crate) fn is_timestamp(text: &str) -> bool {
    daraja::parse_eat_timestamp(text).is_some()
}

/// Daraja's callback-URL rules: http(s) with a host, no whitespace, none of the forbidden words,
/// https in production. (Whether the host is public is not checked: the simulator calls back
/// to loopback receivers in tests, in both modes.)
pub(crate) fn is_callback_url(text: &str, production: bool) -> bool {
    match daraja::parse_callback_url(text, false) {
        Ok(url) => !production || url.scheme() == "https",
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        h
    }

    fn fields(json: &str) -> Fields {
        json_object(
            &json_headers(),
            &Bytes::from(json.to_owned()),
            ApiError::invalid_payload,
        )
        .ok()
        .unwrap()
    }

    /// Issue 17, item 6: stk.md "Amount" ("Only whole numbers are supported") and problems.md
    /// #8 (`1e+05` as a cause of `Invalid Amount`).
    #[test]
    fn amounts_are_whole_numbers_written_as_such() {
        let f = fields(
            r#"{"a":1,"c":"10","j":250000,"b":1.0,"d":"5.00","e":1.5,"f":0,"g":-3,"h":"1e3","i":"x","k":1e+05,"l":1E5,"m":100000.0,"n":"0100","o":" 100","p":"100 ","q":"-5","r":"+5"}"#,
        );
        assert_eq!(f.whole_amount("a", false), Some(1));
        assert_eq!(f.whole_amount("c", false), Some(10));
        assert_eq!(f.whole_amount("j", false), Some(250_000));
        for bad in [
            "b", "d", "e", "f", "g", "h", "i", "k", "l", "m", "n", "o", "p", "q", "r", "missing",
        ] {
            assert_eq!(f.whole_amount(bad, false), None, "{bad}");
        }
        // The lenient option keeps the older reading: whole-valued decimals.
        assert_eq!(f.whole_amount("b", true), Some(1));
        assert_eq!(f.whole_amount("d", true), Some(5));
        assert_eq!(f.whole_amount("e", true), None);
    }

    #[test]
    fn texts_numbers_and_formats() {
        let f = fields(r#"{"s":174379,"t":"174379","e":"","n":null,"o":{}}"#);
        assert_eq!(f.text("s").as_deref(), Some("174379"));
        assert_eq!(f.text("t").as_deref(), Some("174379"));
        assert_eq!(f.text("e"), None);
        assert_eq!(f.text("n"), None);
        assert_eq!(f.text("o"), None);
        assert!(is_shortcode("174379") && !is_shortcode("1743") && !is_shortcode("17437x"));
        assert!(msisdn("254708374149").is_some() && msisdn("254110123456").is_some());
        assert!(
            msisdn("0708374149").is_none()
                && msisdn("+254708374149").is_none()
                && msisdn("254208374149").is_none()
        );
        assert!(
            is_timestamp("20210628092408")
                && !is_timestamp("2021062809240")
                && !is_timestamp("20211328092408")
        );
        assert!(is_callback_url("http://127.0.0.1:9/cb", false));
        assert!(!is_callback_url("http://127.0.0.1:9/cb", true));
        assert!(is_callback_url("https://127.0.0.1:9/cb", true));
        assert!(!is_callback_url("https://example.com/mpesa/cb", false));
        assert!(!is_callback_url("https://example.com/cb ", false));
        assert!(!is_callback_url("ftp://example.com/cb", false));
    }

    /// Issue 17, item 2 and the form-as-JSON case: stk.md synchronous errors ("Invalid
    /// BusinessShortCode is the typical symptom of a missing `Content-Type: application/json`
    /// or form-encoded body") and problems.md #7.
    #[test]
    fn payloads() {
        let first_field = || ApiError::invalid_field("BusinessShortCode");
        let message = |e: ApiError| match e.body {
            crate::errors::ErrorBody::Envelope(env) => (env.error_code.0, env.error_message),
            _ => panic!("not an envelope"),
        };
        let json = Bytes::from_static(br#"{"BusinessShortCode":"174379"}"#);
        let form = Bytes::from_static(b"BusinessShortCode=174379&Amount=1");
        let invalid_shortcode = (
            "400.002.02".to_owned(),
            "Bad Request - Invalid BusinessShortCode".to_owned(),
        );
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            h
        };
        // Valid JSON without the JSON content type is not read at all.
        for headers in [
            HeaderMap::new(),
            with("text/plain"),
            with("application/x-www-form-urlencoded"),
        ] {
            let e = json_object(&headers, &json, first_field).err().unwrap();
            assert_eq!(message(e), invalid_shortcode);
        }
        assert!(json_object(&with("Application/JSON; charset=utf-8"), &json, first_field).is_ok());
        // A form body sent as JSON: Daraja names the first field too.
        let e = json_object(&json_headers(), &form, first_field)
            .err()
            .unwrap();
        assert_eq!(message(e), invalid_shortcode);
        // Broken JSON and non-objects are an invalid payload.
        for body in [&b"{not json"[..], b"[1]", b"{\"BusinessShortCode\": "] {
            let e = json_object(&json_headers(), &Bytes::copy_from_slice(body), first_field)
                .err()
                .unwrap();
            assert_eq!(message(e).0, "400.002.05");
        }
    }
}
