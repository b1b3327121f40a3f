//! Reading variables through the table: aliases, blanks as unset, the table's default, and
//! errors that name the variable as it was set. The parsers give the "what it expects" half of
//! an error; the reader adds the name.

use std::time::Duration;

use url::Url;

use super::variables::{self, Var, WhenUnset};
use super::{ConfigError, Source};

pub(super) struct Reader<S> {
    source: S,
}

impl<S: Source> Reader<S> {
    pub(super) fn new(source: S) -> Self {
        Reader { source }
    }

    fn var(name: &'static str) -> &'static Var {
        variables::find(name).unwrap_or_else(|| {
            panic!("{name} is read but has no entry in config::variables::VARIABLES: add one")
        })
    }

    /// The first of the variable's names (itself, then its aliases) that is set to something
    /// other than blanks: the name used and the trimmed value.
    pub(super) fn set(&self, name: &'static str) -> Option<(&'static str, String)> {
        let var = Self::var(name);
        std::iter::once(&var.name).chain(var.aliases).find_map(|n| {
            self.source
                .get(n)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(|v| (*n, v))
        })
    }

    /// The value set, else the table's default.
    fn value(&self, name: &'static str) -> Option<(&'static str, String)> {
        self.set(name).or_else(|| match Self::var(name).when_unset {
            WhenUnset::Value(default) => Some((name, default.to_owned())),
            WhenUnset::Means(_) => None,
        })
    }

    /// The value (or the table's default, parsed the same way) as text.
    pub(super) fn string(&self, name: &'static str) -> Option<String> {
        self.value(name).map(|(_, v)| v)
    }

    /// The value parsed by `parse` (or the table's default, parsed the same way); `None` when
    /// it is unset and has no default.
    pub(super) fn read<T>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.value(name) {
            None => Ok(None),
            Some((used, v)) => parse(&v)
                .map(Some)
                .map_err(|reason| ConfigError::Invalid { name: used, reason }),
        }
    }

    /// [`Reader::read`] for a variable whose table entry has a default.
    pub(super) fn read_or_default<T>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        Ok(self
            .read(name, parse)?
            .unwrap_or_else(|| panic!("{name} has no default value in the table")))
    }
}

/// The default value of `name` in the table (for code outside the configuration, e.g. the
/// log filter).
pub fn default_of(name: &str) -> Option<&'static str> {
    match variables::find(name)?.when_unset {
        WhenUnset::Value(v) => Some(v),
        WhenUnset::Means(_) => None,
    }
}

/// Parsers: each gives the reason a value is refused, without the variable's name.
pub(super) mod parse {
    use super::*;

    /// `FromStr` with "expected {what}, got {value:?}".
    pub fn from_str<T: std::str::FromStr>(what: &str) -> impl FnOnce(&str) -> Result<T, String> {
        move |v| v.parse().map_err(|_| format!("expected {what}, got {v:?}"))
    }

    pub fn boolean(v: &str) -> Result<bool, String> {
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!("expected true or false, got {v:?}")),
        }
    }

    pub fn url(v: &str) -> Result<Url, String> {
        Url::parse(v).map_err(|e| format!("not a URL ({e})"))
    }

    /// `500ms`, `30s`, `2m`, `1h`, `1d` (a plain number is seconds).
    pub fn duration(v: &str) -> Result<Duration, String> {
        super::parse_duration(v)
    }

    pub fn duration_at_least(min: Duration) -> impl FnOnce(&str) -> Result<Duration, String> {
        move |v| {
            let d = duration(v)?;
            if d < min {
                return Err(format!("at least {min:?}"));
            }
            Ok(d)
        }
    }

    pub fn duration_within(
        bounds: std::ops::RangeInclusive<Duration>,
    ) -> impl FnOnce(&str) -> Result<Duration, String> {
        move |v| {
            let d = duration(v)?;
            if !bounds.contains(&d) {
                return Err(format!(
                    "between {:?} and {:?}",
                    bounds.start(),
                    bounds.end()
                ));
            }
            Ok(d)
        }
    }

    /// `n` to `m` ASCII digits (a shortcode, a till).
    pub fn digits(
        lengths: std::ops::RangeInclusive<usize>,
        reason: &'static str,
    ) -> impl FnOnce(&str) -> Result<String, String> {
        move |v| {
            if lengths.contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) {
                Ok(v.to_owned())
            } else {
                Err(reason.to_owned())
            }
        }
    }
}
/// `500ms`, `30s`, `2m`, `1h`, `1d`; a plain number is seconds.
pub fn parse_duration(part: &str) -> Result<Duration, String> {
    let part = part.trim();
    let (number, unit) = match part.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => part.split_at(i),
        None => (part, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{part:?} is not a duration like 30s or 2m"))?;
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return Err(format!("{part:?}: use ms, s, m, h or d")),
    })
}
