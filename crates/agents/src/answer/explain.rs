//! Sentences that explain a trend: a spike day ([`spike_sentence`]), a period-over-period
//! change ([`change_sentence`]) and the month-end forecast ([`forecast_sentence`]). The
//! arithmetic is [`apogee_analytics::trends`]'s; names go through [`escape`].

use apogee_analytics::Nanos;
use apogee_analytics::forecast::{MonthEnd, RECENT_DAYS};
use apogee_analytics::trends::{Change, ModelMove, Spike};
use chrono::{Datelike, Duration};

use super::markdown::escape;
use crate::format::{signed_usd, times};
use crate::question::period::weekday_name;

/// The explanation of a day in one or two sentences, every figure from the analysis.
pub(crate) fn spike_sentence(s: &Spike) -> String {
    let d = &s.day;
    let day = format!("{} ({})", d.day, weekday_name(d.day.weekday()));
    let mut out = match s.ratio() {
        Some(r) => format!(
            "Spend on {day} was {}, {} the median day ({})",
            d.cost.display_usd(),
            times(r),
            d.median.display_usd()
        ),
        None => format!(
            "Spend on {day} was {}, while the median day had no spend",
            d.cost.display_usd()
        ),
    };
    if !s.is_spike() {
        out.push_str(": not unusual for this period.");
        return out;
    }
    match (&s.feature, &s.model) {
        (Some(f), Some(m)) => out.push_str(&format!(
            "; {} of the increase came from feature {} on {} (+{} on that model over its daily average).",
            f.increase.display_usd(),
            escape(&f.key),
            escape(&m.key),
            m.increase.display_usd()
        )),
        (Some(f), None) => out.push_str(&format!(
            "; {} of the increase came from feature {}.",
            f.increase.display_usd(),
            escape(&f.key)
        )),
        (None, Some(m)) => out.push_str(&format!(
            "; {} of the increase came from {}.",
            m.increase.display_usd(),
            escape(&m.key)
        )),
        (None, None) => out.push('.'),
    }
    out
}

/// "spend +38% ($1,234.00 → $1,702.92) against the previous 7 days; 81% of the change from
/// feature support-bot (+$30.78), which moved from gpt-4o-mini to gpt-4o (10% → 80% of its
/// calls)".
pub(crate) fn change_sentence(c: &Change, days: i64, mv: Option<&ModelMove>) -> String {
    let head = match c.change_ratio {
        Some(r) => format!(
            "spend {:+.0}% ({} → {}) against the previous {days} days",
            r * 100.0,
            c.previous.display_usd(),
            c.current.display_usd()
        ),
        None => format!(
            "spend {} against nothing in the previous {days} days",
            c.current.display_usd()
        ),
    };
    match c.contributions.first() {
        Some(top) if c.change != Nanos::ZERO => {
            let moved = match mv.filter(|m| m.feature == top.key) {
                Some(m) => format!(
                    ", which moved from {} to {} ({:.0}% → {:.0}% of its calls)",
                    escape(&m.from_model),
                    escape(&m.to_model),
                    m.previous_share * 100.0,
                    m.current_share * 100.0
                ),
                None => String::new(),
            };
            format!(
                "{head}; {:.0}% of the change from feature {} ({}){moved}",
                top.share_of_change * 100.0,
                escape(&top.key),
                signed_usd(top.change)
            )
        }
        _ => head,
    }
}

/// "$450.00 by 2026-11-30: $300.00 so far, then 10.0 days at $15.00 a day (the average of the
/// last 7 complete days)".
pub(crate) fn forecast_sentence(m: &MonthEnd) -> String {
    let f = &m.forecast;
    let last_day = (m.month_end - Duration::days(1)).date_naive();
    format!(
        "{} by {last_day}: {} so far, then {:.1} days at {} a day (the average of the last {RECENT_DAYS} complete days)",
        f.projected.display_usd(),
        f.spent.display_usd(),
        f.remaining_days,
        f.daily_run_rate.display_usd()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_analytics::trends::{Contribution, DayPick, Driver};

    #[test]
    fn a_spike_names_its_day_ratio_and_drivers() {
        let s = Spike {
            day: DayPick {
                day: "2026-11-17".parse().unwrap(),
                cost: Nanos::from_usd(124.0),
                calls: 100,
                median: Nanos::from_usd(40.0),
                days: 30,
            },
            requested: false,
            feature: Some(Driver {
                key: "doc-summarizer".into(),
                day_cost: Nanos::from_usd(90.0),
                baseline: Nanos::from_usd(10.0),
                increase: Nanos::from_usd(80.0),
            }),
            model: Some(Driver {
                key: "claude-sonnet-4".into(),
                day_cost: Nanos::from_usd(95.0),
                baseline: Nanos::from_usd(12.0),
                increase: Nanos::from_usd(83.0),
            }),
        };
        assert_eq!(
            spike_sentence(&s),
            "Spend on 2026-11-17 (Tuesday) was $124.00, 3.1× the median day ($40.00); $80.00 of \
             the increase came from feature doc-summarizer on claude-sonnet-4 (+$83.00 on that \
             model over its daily average)."
        );
        let calm = Spike {
            day: DayPick {
                cost: Nanos::from_usd(41.0),
                ..s.day.clone()
            },
            ..s
        };
        assert!(spike_sentence(&calm).ends_with("not unusual for this period."));
    }

    #[test]
    fn the_change_sentence_names_the_top_mover() {
        let c = Change {
            previous: Nanos(100_000_000_000),
            current: Nanos(138_000_000_000),
            change: Nanos(38_000_000_000),
            change_ratio: Some(0.38),
            contributions: vec![Contribution {
                key: "support-bot".into(),
                previous: Nanos(10_000_000_000),
                current: Nanos(40_780_000_000),
                change: Nanos(30_780_000_000),
                share_of_change: 0.81,
            }],
        };
        assert_eq!(
            change_sentence(&c, 7, None),
            "spend +38% ($100.00 → $138.00) against the previous 7 days; 81% of the change from feature support-bot (+$30.78)"
        );
    }
}
