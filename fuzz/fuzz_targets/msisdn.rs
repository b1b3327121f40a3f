//! Phone normalisation: any accepted input becomes `2547…`/`2541…` plus 8 digits, made of the
//! digits the person typed, and normalising the output again is the identity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpesa_domain::{Msisdn, mask_checkout_request_id};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let _ = mask_checkout_request_id(input);
    let reference = Msisdn::parse("254708374149").unwrap();
    let _ = reference.matches_reported(input);
    let Ok(m) = Msisdn::parse(input) else {
        return;
    };
    let s = m.as_str();
    assert_eq!(s.len(), 12, "{input:?} -> {s}");
    assert!(s.bytes().all(|b| b.is_ascii_digit()), "{input:?} -> {s}");
    assert!(
        s.starts_with("2547") || s.starts_with("2541"),
        "{input:?} -> {s}"
    );
    // Normalising again changes nothing.
    assert_eq!(Msisdn::parse(s).as_ref(), Ok(&m));
    assert_eq!(s.parse::<Msisdn>().as_ref(), Ok(&m));
    // Nothing invented: the subscriber number is the last nine digits typed.
    let typed: String = input.chars().filter(char::is_ascii_digit).collect();
    assert!(typed.ends_with(m.subscriber_number()), "{input:?} -> {s}");
    // Masking keeps only the prefix and the last three digits.
    let masked = m.masked();
    assert_eq!(masked.len(), 12);
    assert_eq!(&masked[..4], &s[..4]);
    assert_eq!(&masked[9..], &s[9..]);
    assert_eq!(m.matches_reported(s), Some(true));
    assert_eq!(m.matches_reported(&masked), Some(true));
});
