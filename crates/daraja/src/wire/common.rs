//! Building blocks shared by every Daraja payload: codes that are numbers or strings, values
//! kept as their exact JSON text (money is never parsed through `f64`), lists that are sometimes
//! a single object, and the `Key`/`Value` and `Name`/`Value` items.

use std::borrow::Cow;
use std::fmt;

use mpesa_domain::{Cents, ResultCode};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// A `ResultCode`, `ResponseCode` or `ResultType` as Daraja sends it: a JSON number in STK
/// callbacks and B2C results, a string in STK Query answers and Account Balance results, and
/// sometimes a non-numeric string (`"SFC_IC0003"`, `"R000002"`). The form is kept, so a payload
/// serializes back exactly as it came (and the simulator can emit each form).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WireCode {
    Number(i64),
    Text(String),
}

impl WireCode {
    pub fn number(n: i64) -> Self {
        WireCode::Number(n)
    }

    pub fn text(s: impl Into<String>) -> Self {
        WireCode::Text(s.into())
    }

    /// The code as text, e.g. `"0"`, `"1032"`, `"SFC_IC0003"`.
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            WireCode::Number(n) => Cow::Owned(n.to_string()),
            WireCode::Text(s) => Cow::Borrowed(s.trim()),
        }
    }

    /// The normalised code the domain decides on (`0` and `"0"` are the same code).
    pub fn to_result_code(&self) -> ResultCode {
        ResultCode::new(self.as_text())
    }

    /// Whether this is the success code `0` in any form.
    pub fn is_success(&self) -> bool {
        self.to_result_code().is_success()
    }
}

impl fmt::Display for WireCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_text())
    }
}

impl Serialize for WireCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WireCode::Number(n) => s.serialize_i64(*n),
            WireCode::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for WireCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CodeVisitor;
        impl Visitor<'_> for CodeVisitor {
            type Value = WireCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a code as a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<WireCode, E> {
                Ok(WireCode::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<WireCode, E> {
                Ok(i64::try_from(v)
                    .map_or_else(|_| WireCode::Text(v.to_string()), WireCode::Number))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<WireCode, E> {
                // A code is never fractional; `0.0` is still the code 0.
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(WireCode::Number(v as i64))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<WireCode, E> {
                Ok(WireCode::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<WireCode, E> {
                Ok(WireCode::Text(v))
            }
        }
        d.deserialize_any(CodeVisitor)
    }
}

/// A text field that Daraja (or a client) may write as a JSON number: shortcodes, MSISDNs,
/// `TransTime`, `IdentifierType`, `expires_in`. Always serialized as a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LooseString(pub String);

impl LooseString {
    pub fn new(s: impl Into<String>) -> Self {
        LooseString(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LooseString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for LooseString {
    fn from(s: &str) -> Self {
        LooseString(s.to_owned())
    }
}

impl From<String> for LooseString {
    fn from(s: String) -> Self {
        LooseString(s)
    }
}

impl Serialize for LooseString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LooseString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LooseVisitor;
        impl Visitor<'_> for LooseVisitor {
            type Value = LooseString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LooseString, E> {
                Ok(LooseString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LooseString, E> {
                Ok(LooseString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LooseString, E> {
                // Only integral numbers stand for digits; 2.547e11 written by a float-happy
                // client is still 254700000000, anything fractional is not a code or a number.
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(LooseString((v as i64).to_string()))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LooseString, E> {
                Ok(LooseString(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<LooseString, E> {
                Ok(LooseString(v))
            }
        }
        d.deserialize_any(LooseVisitor)
    }
}

/// Any JSON value kept as its exact text: amounts (`1`, `1.00`, `"5.00"`, `-1980.00`), dates
/// (`20240710091541`), receipts, names. Money read from it goes through [`Cents::parse`] on the
/// original digits, never through a float.
///
/// Deserialize payloads from their bytes (`serde_json::from_slice`, axum's `Json`): going
/// through a `serde_json::Value` first works but loses the original digits (`1.00` becomes `1.0`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WireValue(Box<RawValue>);

impl PartialEq for WireValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for WireValue {}

impl WireValue {
    /// A value from its JSON text, e.g. `"1.00"` gives the number 1.00.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.trim().to_owned()).map(WireValue)
    }

    /// A JSON string.
    pub fn string(s: &str) -> Self {
        WireValue(serde_json::value::to_raw_value(s).expect("a string always serializes"))
    }

    /// A JSON integer, e.g. `Amount: 1` in a request or a `TransactionDate`.
    pub fn integer(n: i64) -> Self {
        WireValue(RawValue::from_string(n.to_string()).expect("an integer is valid JSON"))
    }

    /// A JSON decimal number with two places, e.g. `1.00` (the callback `Amount`).
    pub fn decimal(cents: Cents) -> Self {
        WireValue(RawValue::from_string(cents.to_string()).expect("a decimal is valid JSON"))
    }

    /// The exact JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The value as text: a string's content, or a number's digits exactly as written. `None`
    /// for `null`, booleans, objects and arrays.
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        let raw = self.0.get().trim();
        match raw.as_bytes().first()? {
            b'"' => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
            b'-' | b'0'..=b'9' => Some(Cow::Borrowed(raw)),
            _ => None,
        }
    }

    /// An exact amount, from a number or a numeric string; `None` for an empty string or
    /// anything that is not a plain decimal (exponents are refused rather than guessed).
    pub fn cents(&self) -> Option<Cents> {
        self.as_text().and_then(|t| Cents::parse(&t))
    }

    /// An integer, from a number or a numeric string (dates, phone numbers).
    pub fn as_i64(&self) -> Option<i64> {
        self.as_text().and_then(|t| t.trim().parse().ok())
    }
}

impl fmt::Display for WireValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

/// A list that Daraja sends as an array in most payloads and as a single object in others
/// (`ResultParameter`, `ReferenceItem`). The form is kept for serialization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t).iter(),
            OneOrMany::Many(v) => v.iter(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            OneOrMany::One(_) => 1,
            OneOrMany::Many(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

impl<T> From<Vec<T>> for OneOrMany<T> {
    fn from(v: Vec<T>) -> Self {
        OneOrMany::Many(v)
    }
}

impl<'a, T> IntoIterator for &'a OneOrMany<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Serialize> Serialize for OneOrMany<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OneOrMany::One(t) => t.serialize(s),
            OneOrMany::Many(v) => v.serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    // Written by hand rather than `#[serde(untagged)]`: untagged enums buffer their input, and
    // buffered input cannot yield the raw JSON text that `WireValue` keeps.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object or an array of objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OneOrMany::Many(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OneOrMany::Many(Vec::new()))
            }
        }
        d.deserialize_any(OneOrManyVisitor(std::marker::PhantomData))
    }
}

/// `{"Key": "...", "Value": ...}` in `ResultParameters` and `ReferenceData`. `Value` may be
/// missing (`{"Key":"TransactionReason"}`) and then stays missing when serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<WireValue>,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: WireValue) -> Self {
        KeyValue {
            key: key.into(),
            value: Some(value),
        }
    }

    pub fn without_value(key: impl Into<String>) -> Self {
        KeyValue {
            key: key.into(),
            value: None,
        }
    }
}

/// `{"Name": "...", "Value": ...}` in the STK callback's `CallbackMetadata`. `Value` may be
/// missing (`{"Name":"Balance"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Value", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<WireValue>,
}

impl NameValue {
    pub fn new(name: impl Into<String>, value: WireValue) -> Self {
        NameValue {
            name: name.into(),
            value: Some(value),
        }
    }

    pub fn without_value(name: impl Into<String>) -> Self {
        NameValue {
            name: name.into(),
            value: None,
        }
    }
}

/// Daraja's synchronous error body (HTTP 4xx/5xx):
/// `{"requestId": "...", "errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid PhoneNumber"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    #[serde(rename = "requestId", default)]
    pub request_id: String,
    #[serde(rename = "errorCode")]
    pub error_code: LooseString,
    /// Empty in one observed `500.001.1001` variant.
    #[serde(rename = "errorMessage", default)]
    pub error_message: String,
}

impl ErrorEnvelope {
    pub fn new(
        request_id: impl Into<String>,
        error_code: &str,
        error_message: impl Into<String>,
    ) -> Self {
        ErrorEnvelope {
            request_id: request_id.into(),
            error_code: LooseString::from(error_code),
            error_message: error_message.into(),
        }
    }
}

/// The answer the gateway gives to a callback or result POST, e.g.
/// `{"ResultCode": 0, "ResultDesc": "Accepted"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackAnswer {
    #[serde(rename = "ResultCode")]
    pub result_code: WireCode,
    #[serde(rename = "ResultDesc")]
    pub result_desc: String,
}

impl CallbackAnswer {
    /// `{"ResultCode": 0, "ResultDesc": "Accepted"}`: the body was stored.
    pub fn accepted() -> Self {
        CallbackAnswer {
            result_code: WireCode::Number(0),
            result_desc: "Accepted".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_their_form() {
        let n: WireCode = serde_json::from_str("1032").unwrap();
        let s: WireCode = serde_json::from_str("\"1032\"").unwrap();
        assert_eq!(n, WireCode::Number(1032));
        assert_eq!(s, WireCode::Text("1032".into()));
        assert_eq!(n.to_result_code(), s.to_result_code());
        assert_eq!(serde_json::to_string(&n).unwrap(), "1032");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"1032\"");
        let odd: WireCode = serde_json::from_str("\"SFC_IC0003\"").unwrap();
        assert_eq!(odd.to_result_code().as_str(), "SFC_IC0003");
        assert!(
            serde_json::from_str::<WireCode>("0.0")
                .unwrap()
                .is_success()
        );
        assert!(serde_json::from_str::<WireCode>("0.5").is_err());
    }

    #[test]
    fn loose_strings_take_numbers() {
        let v: LooseString = serde_json::from_str("174379").unwrap();
        assert_eq!(v.as_str(), "174379");
        let v: LooseString = serde_json::from_str("254708374149").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"254708374149\"");
        assert!(serde_json::from_str::<LooseString>("1.5").is_err());
    }

    #[test]
    fn values_keep_their_exact_text() {
        let v: WireValue = serde_json::from_str("1.00").unwrap();
        assert_eq!(v.json(), "1.00");
        assert_eq!(v.cents(), Some(Cents(100)));
        assert_eq!(serde_json::to_string(&v).unwrap(), "1.00");
        let s: WireValue = serde_json::from_str("\"5.00\"").unwrap();
        assert_eq!(s.cents(), Some(Cents(500)));
        assert_eq!(s.as_text().unwrap(), "5.00");
        let big: WireValue = serde_json::from_str("8959269.60").unwrap();
        assert_eq!(big.cents(), Some(Cents(895_926_960)));
        let neg: WireValue = serde_json::from_str("-1980.00").unwrap();
        assert_eq!(neg.cents(), Some(Cents(-198_000)));
        let exp: WireValue = serde_json::from_str("1e2").unwrap();
        assert_eq!(exp.cents(), None);
        let empty = WireValue::string("");
        assert_eq!(empty.cents(), None);
        assert_eq!(WireValue::decimal(Cents(100)).json(), "1.00");
        assert_eq!(
            WireValue::integer(20240710091541).as_i64(),
            Some(20240710091541)
        );
        assert_eq!(
            serde_json::from_str::<WireValue>("null").unwrap().as_text(),
            None
        );
    }

    #[test]
    fn one_or_many_reads_both_forms() {
        let one: OneOrMany<KeyValue> =
            serde_json::from_str(r#"{"Key":"Occasion","Value":"OK"}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(
            serde_json::to_string(&one).unwrap(),
            r#"{"Key":"Occasion","Value":"OK"}"#
        );
        let many: OneOrMany<KeyValue> =
            serde_json::from_str(r#"[{"Key":"Amount","Value":1.0},{"Key":"TransactionReason"}]"#)
                .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(
            many.iter().next().unwrap().value.as_ref().unwrap().json(),
            "1.0"
        );
        assert_eq!(many.iter().nth(1).unwrap().value, None);
        assert_eq!(
            serde_json::to_string(&many).unwrap(),
            r#"[{"Key":"Amount","Value":1.0},{"Key":"TransactionReason"}]"#
        );
        let none: OneOrMany<KeyValue> = serde_json::from_str("null").unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn error_envelope_tolerates_a_missing_message() {
        let e: ErrorEnvelope =
            serde_json::from_str(r#"{"requestId":"ws_CO_1","errorCode":"500.001.1001"}"#).unwrap();
        assert_eq!(e.error_code.as_str(), "500.001.1001");
        assert_eq!(e.error_message, "");
        let json = serde_json::to_string(&ErrorEnvelope::new(
            "r1",
            "400.002.02",
            "Bad Request - Invalid PhoneNumber",
        ))
        .unwrap();
        assert_eq!(
            json,
            r#"{"requestId":"r1","errorCode":"400.002.02","errorMessage":"Bad Request - Invalid PhoneNumber"}"#
        );
    }
}
