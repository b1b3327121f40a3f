//! Property tests.
//! * Password/Timestamp: for any instant the timestamp is that instant + 3 h written
//!   `YYYYMMDDHHmmss` (checked against an independent calendar computation), the password
//!   decodes to shortcode + passkey + timestamp, and neither depends on the `TZ` variable (the
//!   same properties run again in child processes under other time zones).
//! * The client's refusal path: what the domain refuses is refused before anything is sent.

use std::process::Command;

use base64::Engine as _;
use chrono::{DateTime, Offset as _, TimeZone as _, Utc};
use daraja::{
    DarajaClient, DarajaConfig, DarajaError, InvalidRequest, StkPushParams, eat_timestamp,
    stk_password_at,
};
use mpesa_domain::{AccountReference, Amount, AmountBounds, Msisdn, TransactionDesc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use secrecy::SecretString;
use url::Url;
use wiremock::MockServer;

/// Set in child processes: the UTC offset (seconds) their `TZ` must produce for local time.
const CHILD_OFFSET_VAR: &str = "DARAJA_TEST_EXPECTED_LOCAL_OFFSET";

/// Civil date and time for Unix seconds, by Howard Hinnant's `civil_from_days`: independent of
/// chrono, which the crate uses.
fn civil(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn check_eat(secs: i64, shortcode: &str, passkey: &str) -> Result<(), TestCaseError> {
    let instant: DateTime<Utc> = Utc.timestamp_opt(secs, 0).unwrap();
    let expected = civil(secs + 3 * 3600);
    prop_assert_eq!(eat_timestamp(instant), expected.clone());
    let p = stk_password_at(shortcode, &SecretString::from(passkey), instant);
    prop_assert_eq!(&p.timestamp, &expected);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&p.password)
        .unwrap();
    prop_assert_eq!(
        String::from_utf8(decoded).unwrap(),
        format!("{shortcode}{passkey}{expected}")
    );
    Ok(())
}

fn eat_inputs() -> impl Strategy<Value = (i64, String, String)> {
    // 1970 to 2100, any second.
    (0i64..4_102_444_800, "[0-9]{5,7}", "[0-9a-f]{64}")
}

proptest! {
    #[test]
    fn timestamp_is_the_instant_plus_three_hours((secs, shortcode, passkey) in eat_inputs()) {
        check_eat(secs, &shortcode, &passkey)?;
    }
}

#[test]
fn the_civil_reference_agrees_with_the_published_vector() {
    // 2021-06-28 06:24:08 UTC.
    assert_eq!(civil(1_624_861_448 + 3 * 3600), "20210628092408");
}

/// Runs the properties in this process; in a child it first proves its `TZ` took effect.
#[test]
fn eat_properties_hold_in_this_process() {
    if let Ok(offset) = std::env::var(CHILD_OFFSET_VAR) {
        let local = chrono::Local
            .timestamp_opt(1_700_000_000, 0)
            .unwrap()
            .offset()
            .fix()
            .local_minus_utc();
        assert_eq!(
            local.to_string(),
            offset,
            "the child's TZ did not take effect"
        );
    }
    let mut runner = TestRunner::new(Config {
        cases: 512,
        ..Config::default()
    });
    runner
        .run(&eat_inputs(), |(secs, shortcode, passkey)| {
            check_eat(secs, &shortcode, &passkey)
        })
        .unwrap();
}

#[test]
fn password_and_timestamp_ignore_the_tz_variable() {
    if std::env::var(CHILD_OFFSET_VAR).is_ok() {
        return; // only the parent spawns
    }
    // POSIX TZ strings need no tz database: offsets west are positive.
    for (tz, local_minus_utc) in [
        ("UTC0", 0),
        ("<-05>5", -18_000),
        ("<+0530>-5:30", 19_800),
        ("<+14>-14", 50_400),
        ("<-12>12", -43_200),
    ] {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "eat_properties_hold_in_this_process",
                "--test-threads=1",
            ])
            .env("TZ", tz)
            .env(CHILD_OFFSET_VAR, local_minus_utc.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "TZ={tz}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("1 passed"),
            "TZ={tz}: the child ran no test:\n{stdout}"
        );
    }
}

fn not_a_phone() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,20}",
        "[0-9]{0,15}",
        "\\+?[0-9 -]{6,16}",
        ("[0235689]", "[0-9]{8}").prop_map(|(p, rest)| format!("254{p}{rest}")),
    ]
    .prop_filter("must be refused by the domain", |s| {
        Msisdn::parse(s).is_err()
    })
}

proptest! {
    #[test]
    fn phones_the_domain_refuses_are_refused_before_sending(phone in not_a_phone()) {
        let err = StkPushParams::from_text(
            &phone, "10", "INV0042", "Order 42", "https://example.com/hooks/stk/abc", AmountBounds::default(), false,
        )
        .unwrap_err();
        prop_assert!(matches!(err, InvalidRequest::Phone(_)), "{:?}", err);
        prop_assert_eq!(err.field(), Some("PhoneNumber"));
    }

    #[test]
    fn amounts_that_are_not_whole_shillings_in_bounds_are_refused(
        amount in prop_oneof![
            (-1_000i64..1).prop_map(|n| n.to_string()),
            (250_001i64..100_000_000).prop_map(|n| n.to_string()),
            (1i64..250_000, 1u32..100).prop_map(|(n, c)| format!("{n}.{c:02}")),
            "[a-z]{1,5}",
        ]
    ) {
        let err = StkPushParams::from_text(
            "0708374149", &amount, "INV0042", "Order 42", "https://example.com/hooks/stk/abc", AmountBounds::default(), false,
        )
        .unwrap_err();
        prop_assert!(matches!(err, InvalidRequest::Amount(_)), "{}: {:?}", amount, err);
    }
}

#[test]
fn accepted_text_becomes_daraja_ready_parameters() {
    let params = StkPushParams::from_text(
        "+254 708 374 149",
        "1500",
        "INV-42/A",
        "Dance class (November)",
        "https://example.com/hooks/stk/abc",
        AmountBounds::default(),
        true,
    )
    .unwrap();
    assert_eq!(params.phone.as_str(), "254708374149");
    assert_eq!(params.amount.shillings(), 1500);
    assert_eq!(params.transaction_desc.as_str(), "Dance class N");
    let too_long = StkPushParams::from_text(
        "0708374149",
        "10",
        "ABCDEFGHIJKLM",
        "x",
        "https://example.com/hooks/stk/abc",
        AmountBounds::default(),
        false,
    );
    assert!(matches!(too_long, Err(InvalidRequest::AccountReference(_))));
}

#[test]
fn the_client_sends_nothing_for_amounts_outside_its_bounds() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(MockServer::start());
    let mut config = DarajaConfig::sandbox(SecretString::from("k"), SecretString::from("s"));
    config.base_url = Some(Url::parse(&server.uri()).unwrap());
    config.amount_bounds = AmountBounds { min: 10, max: 1000 };
    let client = DarajaClient::new(config).unwrap();
    let base = StkPushParams {
        phone: Msisdn::parse("0708374149").unwrap(),
        amount: Amount::from_stored(10),
        account_reference: AccountReference::parse("INV0042").unwrap(),
        transaction_desc: TransactionDesc::parse("Order 42").unwrap(),
        callback_url: Url::parse("https://example.com/hooks/stk/abc").unwrap(),
    };
    let mut runner = TestRunner::new(Config {
        cases: 128,
        ..Config::default()
    });
    runner
        .run(
            &prop_oneof![-1_000i64..10, 1001i64..10_000_000],
            |shillings| {
                let params = StkPushParams {
                    amount: Amount::from_stored(shillings),
                    ..base.clone()
                };
                let err = runtime.block_on(client.stk_push(&params)).unwrap_err();
                prop_assert!(
                    matches!(err, DarajaError::Invalid(InvalidRequest::Amount(_))),
                    "{:?}",
                    err
                );
                prop_assert!(err.is_not_sent() && !err.may_have_been_processed());
                Ok(())
            },
        )
        .unwrap();
    assert!(
        runtime
            .block_on(server.received_requests())
            .unwrap()
            .is_empty(),
        "no token, no push"
    );
}
