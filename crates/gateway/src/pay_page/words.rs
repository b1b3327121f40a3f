//! What the pay page says, in English and Swahili: the words a customer reads, never the
//! gateway's own terms. Money reads `KSh 1,500`; times are East Africa Time.

use mpesa_domain::Lang;

/// The fixed texts of one language.
pub struct Words {
    pub lang: &'static str,
    pub pay_with_mpesa: &'static str,
    pub amount: &'static str,
    pub amount_hint: &'static str,
    pub phone: &'static str,
    pub phone_hint: &'static str,
    pub email: &'static str,
    pub pay: &'static str,
    pub prompt_note: &'static str,
    pub check_phone: &'static str,
    pub updates_itself: &'static str,
    pub prompt_missing: &'static str,
    pub received: &'static str,
    pub received_note: &'static str,
    pub held_note: &'static str,
    pub receipt_number: &'static str,
    pub time: &'static str,
    pub paid_to: &'static str,
    pub paid_for: &'static str,
    pub phone_used: &'static str,
    pub print: &'static str,
    pub not_paid: &'static str,
    pub cancelled: &'static str,
    pub wrong_pin: &'static str,
    pub insufficient_funds: &'static str,
    pub no_answer: &'static str,
    pub failed: &'static str,
    pub not_sent: &'static str,
    pub try_again: &'static str,
    pub fallback_heading: &'static str,
    pub paybill_steps: &'static str,
    pub till_steps: &'static str,
    pub business_number: &'static str,
    pub till_number: &'static str,
    pub account_number: &'static str,
    pub fallback_note: &'static str,
    pub link_paid: &'static str,
    pub link_expired: &'static str,
    pub link_disabled: &'static str,
    pub no_such_link: &'static str,
    pub no_such_link_heading: &'static str,
    pub closed_heading: &'static str,
    pub too_many_heading: &'static str,
    pub phone_busy: &'static str,
    pub link_busy: &'static str,
    pub from_elsewhere: &'static str,
    pub bad_phone: &'static str,
    pub bad_email: &'static str,
    pub something_wrong: &'static str,
    pub other_language: &'static str,
    pub other_lang_code: &'static str,
    pub powered: &'static str,
}

pub const EN: Words = Words {
    lang: "en",
    pay_with_mpesa: "Pay with M-Pesa",
    amount: "Amount",
    amount_hint: "Whole shillings",
    phone: "M-Pesa phone number",
    phone_hint: "For example 0712 345 678",
    email: "Email for the receipt (optional)",
    pay: "Pay",
    prompt_note: "You will get a prompt on your phone: enter your M-Pesa PIN there to pay.",
    check_phone: "Check your phone",
    updates_itself: "This page updates by itself.",
    prompt_missing: "No prompt on your phone?",
    received: "Payment received",
    received_note: "Thank you. M-Pesa will also send you an SMS.",
    held_note: "We received your payment. This link had already been paid, so the business will check it and refund you if you paid twice.",
    receipt_number: "M-Pesa receipt",
    time: "Time",
    paid_to: "Paid to",
    paid_for: "For",
    phone_used: "Phone",
    print: "Print receipt",
    not_paid: "Not paid",
    cancelled: "You cancelled the payment on your phone. No money was taken.",
    wrong_pin: "The M-Pesa PIN entered was wrong. No money was taken.",
    insufficient_funds: "Your M-Pesa balance is not enough for this payment. No money was taken.",
    no_answer: "The prompt on your phone was not answered in time. No money was taken.",
    failed: "The payment did not go through. No money was taken.",
    not_sent: "We could not send the prompt to your phone.",
    try_again: "Try again",
    fallback_heading: "Or pay from your M-Pesa menu",
    paybill_steps: "M-Pesa → Lipa na M-Pesa → Pay Bill",
    till_steps: "M-Pesa → Lipa na M-Pesa → Buy Goods and Services",
    business_number: "Business number",
    till_number: "Till number",
    account_number: "Account number",
    fallback_note: "Pay the exact amount: this link is settled when the payment arrives.",
    link_paid: "This link has been paid. Thank you.",
    link_expired: "This payment link has expired. Ask the business for a new one.",
    link_disabled: "This payment link is no longer in use. Ask the business for a new one.",
    no_such_link: "There is no such payment link. Check the address you were sent.",
    no_such_link_heading: "Link not found",
    closed_heading: "Payment link closed",
    too_many_heading: "Please wait",
    phone_busy: "A payment prompt is already waiting on this phone. Answer it (or wait a few minutes), then try again.",
    link_busy: "Someone is paying this now: a payment prompt is waiting on their phone. If it is not paid, try again in a few minutes.",
    from_elsewhere: "This form was sent from another website. Open the payment link itself and pay there.",
    bad_phone: "Enter a Safaricom number, for example 0712 345 678.",
    bad_email: "That email address does not look right; leave it empty if you have none.",
    something_wrong: "Something went wrong on our side. Please try again in a moment.",
    other_language: "Kiswahili",
    other_lang_code: "sw",
    powered: "Secure M-Pesa payment",
};

pub const SW: Words = Words {
    lang: "sw",
    pay_with_mpesa: "Lipa kwa M-Pesa",
    amount: "Kiasi",
    amount_hint: "Shilingi kamili",
    phone: "Namba ya simu ya M-Pesa",
    phone_hint: "Kwa mfano 0712 345 678",
    email: "Barua pepe ya risiti (si lazima)",
    pay: "Lipa",
    prompt_note: "Utapokea ombi kwenye simu yako: weka PIN yako ya M-Pesa hapo ili kulipa.",
    check_phone: "Angalia simu yako",
    updates_itself: "Ukurasa huu utajisasisha wenyewe.",
    prompt_missing: "Hujapokea ombi kwenye simu?",
    received: "Malipo yamepokelewa",
    received_note: "Asante. M-Pesa pia itakutumia SMS.",
    held_note: "Tumepokea malipo yako. Kiungo hiki kilikuwa kimeshalipwa, kwa hiyo biashara itayakagua na kukurudishia pesa ukiwa umelipa mara mbili.",
    receipt_number: "Risiti ya M-Pesa",
    time: "Muda",
    paid_to: "Imelipwa kwa",
    paid_for: "Kwa ajili ya",
    phone_used: "Simu",
    print: "Chapisha risiti",
    not_paid: "Haijalipwa",
    cancelled: "Ulighairi malipo kwenye simu yako. Hakuna pesa iliyokatwa.",
    wrong_pin: "PIN ya M-Pesa uliyoweka si sahihi. Hakuna pesa iliyokatwa.",
    insufficient_funds: "Salio lako la M-Pesa halitoshi kwa malipo haya. Hakuna pesa iliyokatwa.",
    no_answer: "Ombi kwenye simu yako halikujibiwa kwa wakati. Hakuna pesa iliyokatwa.",
    failed: "Malipo hayakufanikiwa. Hakuna pesa iliyokatwa.",
    not_sent: "Hatukuweza kutuma ombi kwa simu yako.",
    try_again: "Jaribu tena",
    fallback_heading: "Au lipa kupitia menyu ya M-Pesa",
    paybill_steps: "M-Pesa → Lipa na M-Pesa → Pay Bill",
    till_steps: "M-Pesa → Lipa na M-Pesa → Buy Goods and Services",
    business_number: "Namba ya biashara",
    till_number: "Namba ya till",
    account_number: "Namba ya akaunti",
    fallback_note: "Lipa kiasi kamili: kiungo hiki kitalipwa malipo yakifika.",
    link_paid: "Kiungo hiki kimeshalipwa. Asante.",
    link_expired: "Muda wa kiungo hiki cha malipo umekwisha. Omba biashara kiungo kipya.",
    link_disabled: "Kiungo hiki cha malipo hakitumiki tena. Omba biashara kiungo kipya.",
    no_such_link: "Hakuna kiungo kama hiki cha malipo. Angalia anwani uliyotumiwa.",
    no_such_link_heading: "Kiungo hakipatikani",
    closed_heading: "Kiungo cha malipo kimefungwa",
    too_many_heading: "Tafadhali subiri",
    phone_busy: "Tayari kuna ombi la malipo linalosubiri kwenye simu hii. Lijibu (au subiri dakika chache), kisha ujaribu tena.",
    link_busy: "Mtu analipa hiki sasa: ombi la malipo linasubiri kwenye simu yake. Lisipolipwa, jaribu tena baada ya dakika chache.",
    from_elsewhere: "Fomu hii imetumwa kutoka tovuti nyingine. Fungua kiungo cha malipo chenyewe na ulipe hapo.",
    bad_phone: "Weka namba ya Safaricom, kwa mfano 0712 345 678.",
    bad_email: "Barua pepe hii haionekani sahihi; iache tupu kama huna.",
    something_wrong: "Kuna hitilafu upande wetu. Tafadhali jaribu tena baada ya muda mfupi.",
    other_language: "English",
    other_lang_code: "en",
    powered: "Malipo salama ya M-Pesa",
};

pub fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::En => &EN,
        Lang::Sw => &SW,
    }
}

pub use crate::outbox::message::ksh;

/// `22 Nov 2026 11:01 EAT`.
pub fn eat_time(ms: i64) -> String {
    format!("{} EAT", crate::admin::format::when(ms))
}

/// "Enter an amount from KSh 100 to KSh 5,000."
pub fn amount_range(lang: Lang, min: i64, max: i64) -> String {
    match lang {
        Lang::En => format!("Enter an amount from {} to {}.", ksh(min), ksh(max)),
        Lang::Sw => format!("Weka kiasi kati ya {} na {}.", ksh(min), ksh(max)),
    }
}

/// "Too many attempts. Try again after 11:20 EAT (in 7 minutes)."
pub fn retry_after(lang: Lang, at_ms: i64, now_ms: i64) -> String {
    let minutes = ((at_ms - now_ms).max(0) + 59_999) / 60_000;
    let clock = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at_ms)
        .map(|t| {
            t.with_timezone(&daraja::clock::eat())
                .format("%H:%M")
                .to_string()
        })
        .unwrap_or_default();
    match lang {
        Lang::En => format!(
            "Too many payment attempts. Try again after {clock} EAT (in {minutes} minute{}).",
            if minutes == 1 { "" } else { "s" }
        ),
        Lang::Sw => format!(
            "Majaribio mengi mno ya malipo. Jaribu tena baada ya saa {clock} EAT (baada ya dakika {minutes})."
        ),
    }
}

/// A phone as the customer knows it, with its middle hidden: `0708 ••• 149`.
pub fn masked_phone(msisdn: &str) -> String {
    match msisdn.strip_prefix("254") {
        Some(rest) if rest.len() == 9 => format!("0{} ••• {}", &rest[..3], &rest[6..]),
        _ => "•••".to_owned(),
    }
}

/// Why a payment did not go through, from its result code, in the customer's words.
pub fn failure(
    w: &Words,
    status: mpesa_domain::PaymentStatus,
    result_code: Option<&str>,
) -> &'static str {
    use mpesa_domain::PaymentStatus as S;
    match (status, result_code) {
        (S::Cancelled, _) | (_, Some("1032")) => w.cancelled,
        (_, Some("2001")) => w.wrong_pin,
        (_, Some("1")) => w.insufficient_funds,
        (S::TimedOut, _) | (_, Some("1037" | "1019")) => w.no_answer,
        (S::Rejected, _) => w.not_sent,
        _ => w.failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpesa_domain::PaymentStatus;

    #[test]
    fn money_times_and_phones_read_as_customers_read_them() {
        assert_eq!(ksh(1500), "KSh 1,500");
        assert_eq!(ksh(250_000), "KSh 250,000");
        assert_eq!(eat_time(1_720_592_141_000), "10 Jul 2024 09:15 EAT");
        assert_eq!(masked_phone("254708374149"), "0708 ••• 149");
        assert_eq!(
            retry_after(Lang::En, 1_720_592_400_000, 1_720_592_141_000),
            "Too many payment attempts. Try again after 09:20 EAT (in 5 minutes)."
        );
        assert!(retry_after(Lang::Sw, 60_000, 0).contains("dakika 1"));
    }

    #[test]
    fn failures_in_words() {
        assert_eq!(
            failure(&EN, PaymentStatus::Cancelled, Some("1032")),
            EN.cancelled
        );
        assert_eq!(
            failure(&SW, PaymentStatus::Failed, Some("2001")),
            SW.wrong_pin
        );
        assert_eq!(
            failure(&EN, PaymentStatus::Failed, Some("1")),
            EN.insufficient_funds
        );
        assert_eq!(
            failure(&EN, PaymentStatus::TimedOut, Some("1037")),
            EN.no_answer
        );
        assert_eq!(failure(&EN, PaymentStatus::Rejected, None), EN.not_sent);
        assert_eq!(failure(&EN, PaymentStatus::Failed, Some("9999")), EN.failed);
    }
}
