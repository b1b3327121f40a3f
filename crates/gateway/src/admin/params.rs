//! Query strings and form bodies as name → value maps. Parsing never fails: a repeated name
//! keeps its first value, bytes that are not UTF-8 are replaced, and each page checks the values
//! it reads (so hostile input meets a readable 400 page, not a framework error).

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// Values longer than this are refused by [`Fields::text`]; nothing on the dashboard needs more.
pub const MAX_VALUE_CHARS: usize = 500;

#[derive(Debug, Default, Clone)]
pub struct Fields(HashMap<String, String>);

impl Fields {
    pub fn parse(encoded: &[u8]) -> Self {
        let mut map = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(encoded) {
            map.entry(name.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        Fields(map)
    }

    /// The value as sent (untrimmed), when present.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The trimmed value, `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// As [`Fields::get`], refusing values longer than [`MAX_VALUE_CHARS`] with a message that
    /// names the field by its label.
    pub fn text(&self, name: &str, label: &str) -> Result<Option<String>, String> {
        match self.get(name) {
            Some(v) if v.chars().count() > MAX_VALUE_CHARS => Err(format!(
                "{label} is too long (at most {MAX_VALUE_CHARS} characters)."
            )),
            Some(v) => Ok(Some(v.to_owned())),
            None => Ok(None),
        }
    }
}

/// The query string of a GET, as [`Fields`].
pub struct Params(pub Fields);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Params(Fields::parse(
            parts.uri.query().unwrap_or_default().as_bytes(),
        )))
    }
}

/// A query string for links that keep the current filters: `name=value&…`, values encoded.
pub fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if !value.is_empty() {
            out.append_pair(name, value);
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_and_blanks_are_absent() {
        let f = Fields::parse(b"a=1&a=2&b=+&c=%3Cscript%3E&d=%FF");
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), None);
        assert_eq!(f.get("c"), Some("<script>"));
        assert_eq!(f.get("d"), Some("\u{fffd}"));
        assert!(Fields::parse(b"x=").get("x").is_none());
        let long = format!("q={}", "y".repeat(MAX_VALUE_CHARS + 1));
        assert!(Fields::parse(long.as_bytes()).text("q", "Search").is_err());
        assert_eq!(
            query_string([("status", "failed"), ("q", "a b&c"), ("empty", "")]),
            "status=failed&q=a+b%26c"
        );
    }
}
