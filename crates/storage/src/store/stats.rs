//! Dashboard statistics.

use std::collections::BTreeMap;

use mpesa_domain::payment::ALL_STATUSES;

use crate::Millis;
use crate::db::{Conn, RowExt, Stmt};
use crate::error::DbResult;
use crate::model::*;
use crate::records;

pub(crate) async fn payment_stats<C: Conn>(
    c: &mut C,
    from: Millis,
    to: Millis,
) -> DbResult<PaymentStats> {
    // Every status is listed, with zeros, so the dashboard need not know which exist.
    let mut by_status: BTreeMap<String, StatusTotals> = ALL_STATUSES
        .iter()
        .map(|s| (s.as_str().to_owned(), StatusTotals::default()))
        .collect();
    for row in c
        .fetch_all(
            Stmt::new(C::DIALECT.payment_totals_by_status)
                .bind(from)
                .bind(to),
        )
        .await?
    {
        let status = records::payment_status(&row.text("status")?)?;
        by_status.insert(
            status.as_str().to_owned(),
            StatusTotals {
                count: row.int("count")?,
                amount: row.opt_int("amount")?.unwrap_or(0),
            },
        );
    }
    let mut failures_by_code = BTreeMap::new();
    let failures = c
        .fetch_all(
            Stmt::new(
                "SELECT COALESCE(result_code, 'unknown') AS code, COUNT(*) AS count FROM payments \
                 WHERE created_at >= $1 AND created_at < $2 AND status = 'failed' \
                 GROUP BY COALESCE(result_code, 'unknown')",
            )
            .bind(from)
            .bind(to),
        )
        .await?;
    for row in failures {
        failures_by_code.insert(row.text("code")?, row.int("count")?);
    }
    let needs_review = c
        .fetch_one(
            Stmt::new(
                "SELECT COUNT(*) AS count FROM payments \
                 WHERE created_at >= $1 AND created_at < $2 AND needs_review = $3",
            )
            .bind(from)
            .bind(to)
            .bind(true),
        )
        .await?
        .int("count")?;
    let mut completed_by_channel: BTreeMap<String, StatusTotals> =
        [PaymentChannel::Stk, PaymentChannel::C2b]
            .iter()
            .map(|c| (c.as_str().to_owned(), StatusTotals::default()))
            .collect();
    for row in c
        .fetch_all(
            Stmt::new(C::DIALECT.completed_totals_by_channel)
                .bind(from)
                .bind(to),
        )
        .await?
    {
        completed_by_channel.insert(
            row.text("channel")?,
            StatusTotals {
                count: row.int("count")?,
                amount: row.opt_int("amount")?.unwrap_or(0),
            },
        );
    }
    Ok(PaymentStats {
        by_status,
        failures_by_code,
        needs_review,
        completed_by_channel,
    })
}

pub(crate) async fn daily_volume<C: Conn>(
    c: &mut C,
    from: Millis,
    to: Millis,
) -> DbResult<Vec<DailyVolume>> {
    let rows = c
        .fetch_all(Stmt::new(C::DIALECT.daily_volume).bind(from).bind(to))
        .await?;
    let mut days = Vec::with_capacity(rows.len());
    for row in rows {
        days.push(DailyVolume {
            day: civil_date(row.int("day")?),
            completed_count: row.opt_int("completed_count")?.unwrap_or(0),
            completed_amount: row.opt_int("completed_amount")?.unwrap_or(0),
            total_count: row.int("total_count")?,
        });
    }
    Ok(days)
}

/// `YYYY-MM-DD` of a count of days since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(59), "1970-03-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(19_723), "2024-01-01");
        assert_eq!(civil_date(20_513), "2026-03-01");
    }
}
