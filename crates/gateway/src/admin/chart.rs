//! The overview's bar chart of completed volume per East Africa Time day, drawn on the server
//! as SVG geometry that the template writes out (so every label is escaped like any other
//! text). The page also carries the same numbers as a table, for screen readers and for anyone
//! who prefers figures.

use mpesa_storage::DailyVolume;

use crate::admin::format::{self, DAY_MS};

/// The drawing's own units; the SVG scales to the width of the page.
pub const WIDTH: i64 = 480;
pub const HEIGHT: i64 = 240;
const LEFT: i64 = 8;
const RIGHT: i64 = 8;
const TOP: i64 = 28;
const BOTTOM: i64 = 28;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    /// The day of the month, under the bar.
    pub label: String,
    pub label_x: i64,
    /// The tooltip: `2026-11-22: KSh 1,250 in 3 payments (5 requested)`.
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: String,
    pub completed_count: i64,
    pub completed_amount: String,
    pub total_count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    pub width: i64,
    pub height: i64,
    pub baseline_y: i64,
    pub bars: Vec<Bar>,
    /// The largest day's amount, written at the top left as the scale.
    pub scale_label: String,
    pub label_y: i64,
    /// One sentence for `<desc>`.
    pub description: String,
    pub days: Vec<Day>,
}

/// `days` consecutive East Africa Time days ending with the one that holds `today_start`
/// (its start, in Unix ms); days without payments are drawn as zero.
pub fn daily_volume(volume: &[DailyVolume], today_start: i64, days: i64) -> Chart {
    let days: Vec<Day> = (0..days)
        .rev()
        .map(|back| {
            let date = format::eat_date(today_start - back * DAY_MS + DAY_MS / 2);
            let found = volume.iter().find(|v| v.day == date);
            Day {
                completed_count: found.map_or(0, |v| v.completed_count),
                completed_amount: format::money(found.map_or(0, |v| v.completed_amount)),
                total_count: found.map_or(0, |v| v.total_count),
                date,
            }
        })
        .collect();
    let amounts: Vec<i64> = days
        .iter()
        .map(|d| {
            volume
                .iter()
                .find(|v| v.day == d.date)
                .map_or(0, |v| v.completed_amount.max(0))
        })
        .collect();
    let max = amounts.iter().copied().max().unwrap_or(0);
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - LEFT - RIGHT) / (days.len().max(1) as i64);
    let gap = (slot / 5).max(2);
    let baseline_y = HEIGHT - BOTTOM;
    let bars = days
        .iter()
        .zip(&amounts)
        .enumerate()
        .map(|(i, (day, amount))| {
            // A day with any volume gets at least a sliver, so it is not mistaken for none.
            let height = match (max, *amount) {
                (0, _) | (_, 0) => 0,
                (max, amount) => {
                    ((amount as i128 * plot_height as i128) / max as i128).max(2) as i64
                }
            };
            let x = LEFT + i as i64 * slot + gap / 2;
            Bar {
                x,
                y: baseline_y - height,
                width: slot - gap,
                height,
                label: day.date.get(8..10).unwrap_or_default().to_owned(),
                label_x: x + (slot - gap) / 2,
                title: format!(
                    "{}: {} in {} completed payments ({} requested)",
                    day.date, day.completed_amount, day.completed_count, day.total_count
                ),
            }
        })
        .collect();
    let total: i64 = amounts.iter().sum();
    let description = match (days.first(), days.last()) {
        (Some(first), Some(last)) => format!(
            "Completed payments per day from {} to {}: {} in all; the best day took {}.",
            first.date,
            last.date,
            format::money(total),
            format::money(max)
        ),
        _ => "No days to show.".to_owned(),
    };
    Chart {
        width: WIDTH,
        height: HEIGHT,
        baseline_y,
        bars,
        scale_label: format!("Highest day: {}", format::money(max)),
        label_y: HEIGHT - 8,
        description,
        days,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(day: &str, amount: i64) -> DailyVolume {
        DailyVolume {
            day: day.into(),
            completed_count: 1,
            completed_amount: amount,
            total_count: 2,
        }
    }

    #[test]
    fn bars_scale_to_the_best_day_and_missing_days_are_zero() {
        let today = format::parse_eat_date("2024-07-10").unwrap();
        let chart = daily_volume(
            &[volume("2024-07-10", 1_000), volume("2024-07-08", 10)],
            today,
            7,
        );
        assert_eq!(chart.days.len(), 7);
        assert_eq!(chart.days[0].date, "2024-07-04");
        assert_eq!(chart.days[6].date, "2024-07-10");
        let tallest = &chart.bars[6];
        assert_eq!(tallest.height, HEIGHT - TOP - BOTTOM);
        assert_eq!(tallest.y, TOP);
        assert_eq!(chart.bars[4].height, 2, "a small day still shows");
        assert_eq!(chart.bars[5].height, 0);
        assert_eq!(tallest.label, "10");
        assert!(chart.bars.iter().all(|b| b.x + b.width <= WIDTH));
        assert!(chart.description.contains("KSh 1,010 in all"));
    }

    #[test]
    fn an_empty_fortnight_draws_nothing_tall() {
        let chart = daily_volume(&[], 0, 14);
        assert_eq!(chart.bars.len(), 14);
        assert!(chart.bars.iter().all(|b| b.height == 0));
    }
}
