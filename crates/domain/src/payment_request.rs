//! The merchant API's create-payment body (`POST /api/v1/payments`), read and checked with no
//! I/O: the HTTP handler and the fuzz target (`fuzz/fuzz_targets/create_payment.rs`) call the
//! same [`parse_payment_request`], so what is fuzzed is what the edge runs.
//!
//! Every field is checked by hand rather than through `#[derive(Deserialize)]` so that each
//! failure names its field with a message a person can act on.

use serde_json::{Map, Value, json};

use crate::money::{Amount, AmountBounds, AmountError};
use crate::phone::Msisdn;
use crate::text::{AccountReference, Description};

/// The largest `metadata` object accepted, as compact JSON.
pub const MAX_METADATA_BYTES: usize = 4096;
/// The longest `customer_email` accepted, in characters (as the OpenAPI document's `maxLength`).
pub const MAX_EMAIL_LEN: usize = 254;

/// The fields a create-payment body may have; anything else is refused.
pub const KNOWN_FIELDS: &[&str] = &[
    "phone",
    "amount",
    "reference",
    "description",
    "customer_email",
    "telegram_chat_id",
    "metadata",
];

/// A create-payment body that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRequest {
    pub phone: Msisdn,
    pub amount: Amount,
    /// `None` when the merchant gave none (the gateway generates one).
    pub reference: Option<AccountReference>,
    /// `None` when the merchant gave none (the gateway derives one from the reference).
    pub description: Option<Description>,
    pub customer_email: Option<String>,
    pub telegram_chat_id: Option<i64>,
    /// A JSON object of at most [`MAX_METADATA_BYTES`].
    pub metadata: Option<Value>,
    /// The request written one way (the idempotency fingerprint): the same request written
    /// differently (`0712…` or `+254712…`, `10` or `10.0`, padded texts) has the same form.
    pub canonical: Value,
}

/// The first field found wrong, and why. The HTTP edge answers it with 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Checks every field of a create-payment body, naming the first bad one.
pub fn parse_payment_request(
    v: &Value,
    bounds: AmountBounds,
) -> Result<PaymentRequest, FieldError> {
    let obj = v
        .as_object()
        .ok_or_else(|| FieldError::new("body", "expected a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(40).collect();
        return Err(FieldError::new(&shown, "unknown field"));
    }
    let phone = match obj.get("phone") {
        Some(Value::String(s)) => {
            Msisdn::parse(s).map_err(|e| FieldError::new("phone", e.to_string()))?
        }
        Some(Value::Null) | None => return Err(FieldError::new("phone", "phone is required")),
        Some(_) => return Err(FieldError::new("phone", "phone must be a string")),
    };
    let amount = match obj.get("amount") {
        Some(Value::Number(n)) => {
            let whole = whole_number(n).map_err(|e| {
                FieldError::new(
                    "amount",
                    match e {
                        NotWhole::Fraction => AmountError::NotWhole.to_string(),
                        NotWhole::OutOfRange => "amount is out of range".into(),
                    },
                )
            })?;
            Amount::new(whole, bounds).map_err(|e| FieldError::new("amount", e.to_string()))?
        }
        Some(Value::Null) | None => return Err(FieldError::new("amount", "amount is required")),
        Some(_) => {
            return Err(FieldError::new(
                "amount",
                "amount must be a number of shillings",
            ));
        }
    };
    let reference_given = optional_string(obj, "reference")?;
    let reference = reference_given
        .as_deref()
        .map(|r| {
            AccountReference::parse(r)
                .map_err(|e| FieldError::new("reference", format!("reference {e}")))
        })
        .transpose()?;
    let description_given = optional_string(obj, "description")?;
    let description = description_given
        .as_deref()
        .map(|d| {
            Description::parse(d)
                .map_err(|e| FieldError::new("description", format!("description {e}")))
        })
        .transpose()?;
    let customer_email = match optional_string(obj, "customer_email")? {
        Some(e) => Some(
            check_email(&e)
                .ok_or_else(|| FieldError::new("customer_email", "not an email address"))?,
        ),
        None => None,
    };
    let telegram_chat_id = match obj.get("telegram_chat_id") {
        None | Some(Value::Null) => None,
        // `-100123.0` is the same integer as `-100123` (JSON Schema says so too).
        Some(Value::Number(n)) => Some(
            whole_number(n).map_err(|_| FieldError::new("telegram_chat_id", "a whole number"))?,
        ),
        Some(_) => return Err(FieldError::new("telegram_chat_id", "a whole number")),
    };
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m @ Value::Object(_)) => {
            if m.to_string().len() > MAX_METADATA_BYTES {
                return Err(FieldError::new("metadata", "at most 4 KiB of JSON"));
            }
            Some(m.clone())
        }
        Some(_) => return Err(FieldError::new("metadata", "a JSON object")),
    };
    let canonical = json!({
        "phone": phone.as_str(),
        "amount": amount.shillings(),
        "reference": reference.as_ref().map(AccountReference::as_str),
        "description": description.as_ref().map(Description::as_str),
        "customer_email": customer_email,
        "telegram_chat_id": telegram_chat_id,
        "metadata": metadata,
    });
    Ok(PaymentRequest {
        phone,
        amount,
        reference,
        description,
        customer_email,
        telegram_chat_id,
        metadata,
        canonical,
    })
}

/// Why a JSON number is not a usable whole number.
enum NotWhole {
    Fraction,
    OutOfRange,
}

/// A JSON number as an integer: `10`, `10.0` and `1e1` are 10; `10.5` is a fraction; a number
/// beyond what a float holds exactly (`1e300`, `18446744073709551615`) is out of range.
fn whole_number(n: &serde_json::Number) -> Result<i64, NotWhole> {
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    if n.is_u64() {
        return Err(NotWhole::OutOfRange);
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() != 0.0 => Err(NotWhole::Fraction),
        Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(f as i64),
        _ => Err(NotWhole::OutOfRange),
    }
}

/// A JSON number as whole shillings, as amounts are read everywhere (`10`, `10.0` and `1e1` are
/// 10; a fraction or a number out of range is `None`).
pub fn json_whole_number(n: &serde_json::Number) -> Option<i64> {
    whole_number(n).ok()
}

fn optional_string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::new(field, format!("{field} must be a string"))),
    }
}

/// A plain check, not RFC 5322: one `@`, a dotted domain, no spaces or control characters.
/// Returns the address trimmed.
pub fn check_email(raw: &str) -> Option<String> {
    let e = raw.trim();
    if e.chars().count() > MAX_EMAIL_LEN
        || e.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | ';')
        })
    {
        return None;
    }
    let (local, domain) = e.split_once('@')?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return None;
    }
    Some(e.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<PaymentRequest, FieldError> {
        parse_payment_request(&v, AmountBounds::default())
    }

    #[test]
    fn emails() {
        assert_eq!(check_email(" a@b.co "), Some("a@b.co".into()));
        for bad in [
            "",
            "a",
            "a@b",
            "a@@b.co",
            "a b@c.co",
            "@b.co",
            "a@b.co\r\nBcc: x@y.z",
            "a@.co",
            "<a@b.co>",
        ] {
            assert_eq!(check_email(bad), None, "{bad}");
        }
    }

    /// Found by Schemathesis: `"telegram_chat_id": 137274.0` is an integer to JSON Schema (and
    /// to `amount`), but was refused as "a whole number".
    #[test]
    fn an_integral_float_chat_id_is_a_chat_id() {
        let r = parse(json!({"phone": "0708374149", "amount": 10, "telegram_chat_id": -100123.0}))
            .unwrap();
        assert_eq!(r.telegram_chat_id, Some(-100123));
        assert_eq!(r.canonical["telegram_chat_id"], json!(-100123));
        for bad in [json!(1.5), json!(1e300), json!("1")] {
            let e = parse(json!({"phone": "0708374149", "amount": 10, "telegram_chat_id": bad}))
                .unwrap_err();
            assert_eq!(e.field, "telegram_chat_id", "{bad}");
        }
    }

    #[test]
    fn the_same_request_written_differently_has_one_canonical_form() {
        let a =
            parse(json!({"phone": "0708 374 149", "amount": 10, "reference": " INV1 "})).unwrap();
        let b =
            parse(json!({"phone": "+254708374149", "amount": 10.0, "reference": "INV1"})).unwrap();
        assert_eq!(a.canonical, b.canonical);
        assert_eq!(a.canonical["phone"], "254708374149");
        assert_eq!(a.canonical["reference"], "INV1");
        // The canonical form is itself a valid body with the same canonical form.
        assert_eq!(parse(a.canonical.clone()).unwrap().canonical, a.canonical);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!([1]), "body"),
            (json!({"phone": "0708374149", "amount": 1, "x": 1}), "x"),
            (json!({"amount": 1}), "phone"),
            (json!({"phone": 708374149, "amount": 1}), "phone"),
            (json!({"phone": "0708374149"}), "amount"),
            (json!({"phone": "0708374149", "amount": "1"}), "amount"),
            (json!({"phone": "0708374149", "amount": 1.5}), "amount"),
            (json!({"phone": "0708374149", "amount": 0}), "amount"),
            (
                json!({"phone": "0708374149", "amount": 1, "reference": "x".repeat(13)}),
                "reference",
            ),
            (
                json!({"phone": "0708374149", "amount": 1, "description": "a\u{7}"}),
                "description",
            ),
            (
                json!({"phone": "0708374149", "amount": 1, "customer_email": "nope"}),
                "customer_email",
            ),
            (
                json!({"phone": "0708374149", "amount": 1, "telegram_chat_id": 1.5}),
                "telegram_chat_id",
            ),
            (
                json!({"phone": "0708374149", "amount": 1, "metadata": [1]}),
                "metadata",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(parse(body.clone()).unwrap_err().field, field, "{body}");
        }
    }

    /// Regression: a huge integer amount was answered "must be a whole number of shillings".
    #[test]
    fn a_huge_integer_amount_is_out_of_range_not_fractional() {
        for body in [
            r#"{"phone":"0708374149","amount":18446744073709551615}"#,
            r#"{"phone":"0708374149","amount":1e300}"#,
            r#"{"phone":"0708374149","amount":-1e300}"#,
        ] {
            let v: Value = serde_json::from_str(body).unwrap();
            let e = parse(v).unwrap_err();
            assert_eq!(e.field, "amount");
            assert_eq!(e.message, "amount is out of range", "{body}");
        }
        let v: Value = serde_json::from_str(r#"{"phone":"0708374149","amount":1e1}"#).unwrap();
        assert_eq!(parse(v).unwrap().amount.shillings(), 10);
    }
}
