//! Keeping secrets and phone numbers out of logs and error texts.

/// What a secret prints as.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Masks a phone number written as text for a log line: `2547*****149`. Anything with fewer
/// than nine digits (a masked or hashed report, a shortcode) is shown as is.
pub fn mask_phone_text(text: &str) -> String {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.len() >= 9 && digits.len() == text.trim().trim_start_matches('+').len() {
        format!(
            "{}*****{}",
            &digits[..4.min(digits.len() - 3)],
            &digits[digits.len() - 3..]
        )
    } else {
        text.to_owned()
    }
}

/// Masks every run of nine or more digits in a free text (error messages may quote a payload's
/// phone number): `… integer 254708374149 …` becomes `… integer 2547*****149 …`.
pub fn mask_long_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 9 {
            out.push_str(&run[..4]);
            out.push_str("*****");
            out.push_str(&run[run.len() - 3..]);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A callback URL for a log line: its origin only, since the path carries the gateway's secret
/// token (`https://pay.example.com/…`).
pub fn url_origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.path() != "/" || u.query().is_some() => {
            format!("{}/…", u.origin().ascii_serialization())
        }
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => REDACTED.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_only_their_origin() {
        assert_eq!(
            url_origin("https://pay.example.com:8443/callbacks/s3cr3t/stk"),
            "https://pay.example.com:8443/…"
        );
        assert_eq!(
            url_origin("https://pay.example.com"),
            "https://pay.example.com"
        );
        assert_eq!(url_origin("not a url s3cr3t"), REDACTED);
    }

    #[test]
    fn masks_phone_numbers_only() {
        assert_eq!(mask_phone_text("254708374149"), "2547*****149");
        assert_eq!(mask_phone_text("2547 ***** 126"), "2547 ***** 126");
        assert_eq!(mask_phone_text("174379"), "174379");
        assert_eq!(
            mask_long_digit_runs(
                "invalid type: integer `254708374149`, expected a string at line 1"
            ),
            "invalid type: integer `2547*****149`, expected a string at line 1"
        );
        assert_eq!(
            mask_long_digit_runs("code 500.001.1001"),
            "code 500.001.1001"
        );
    }
}
