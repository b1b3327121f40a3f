//! Payments: when to ask Daraja about a payment, when to give it up, which amounts to accept.

use std::time::Duration;

use mpesa_domain::AmountBounds;

use super::reader::{Reader, parse};
use super::{ConfigError, Source};

pub(super) struct PaymentsSection {
    pub reconcile_after: Duration,
    pub payment_expires_after: Duration,
    /// How long Daraja is asked about a payment whose queries get no answer (then it is held
    /// for a person).
    pub reconcile_keep_asking: Duration,
    pub amount_bounds: AmountBounds,
}

pub(super) fn read<S: Source>(r: &Reader<S>) -> Result<PaymentsSection, ConfigError> {
    let reconcile_after =
        Duration::from_secs(r.read_or_default("RECONCILE_AFTER_SECS", parse::from_str("seconds"))?);
    let payment_expires_after =
        Duration::from_secs(r.read_or_default("PAYMENT_EXPIRES_AFTER_SECS", |v| {
            match parse::from_str::<u64>("seconds")(v)? {
                0 => Err("must be above 0".to_owned()),
                secs => Ok(secs),
            }
        })?);
    let reconcile_keep_asking = Duration::from_secs(
        r.read_or_default("RECONCILE_KEEP_ASKING_SECS", parse::from_str("seconds"))?,
    );
    let min: i64 = r.read_or_default("AMOUNT_MIN", parse::from_str("whole shillings"))?;
    let max: i64 = r.read_or_default("AMOUNT_MAX", parse::from_str("whole shillings"))?;
    if min < 1 || max < min {
        return Err(ConfigError::Invalid {
            name: "AMOUNT_MIN",
            reason: format!("need 1 <= AMOUNT_MIN <= AMOUNT_MAX, got {min} and {max}"),
        });
    }
    Ok(PaymentsSection {
        reconcile_after,
        payment_expires_after,
        reconcile_keep_asking,
        amount_bounds: AmountBounds { min, max },
    })
}
