//! Spike analysis over query results: which day stands out against the median day, and which
//! feature and model grew most that day compared with their average on the other days. Pure
//! functions; the queries are the `explain_spike` tool's.

use apogee_analytics::{CostRow, Nanos};
use chrono::{Datelike, NaiveDate};

use crate::format;
use crate::triage::weekday_name;

/// A day whose spend is at least this many times the median day's counts as a spike.
pub(crate) const SPIKE_RATIO: f64 = 1.5;

/// The day analysed, against the other days of the period.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DayPick {
    pub day: NaiveDate,
    pub cost: Nanos,
    pub calls: i64,
    pub median: Nanos,
    /// Days compared: from the first to the last day with usage (or the named day), days
    /// without usage counting as zero spend.
    pub days: usize,
}

/// What grew on the day, compared with its average on the other days.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Driver {
    pub key: String,
    pub day_cost: Nanos,
    /// Average daily cost on the other days.
    pub baseline: Nanos,
    pub increase: Nanos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spike {
    pub day: DayPick,
    /// The question named this day; otherwise it is the highest-spend day.
    pub requested: bool,
    pub feature: Option<Driver>,
    pub model: Option<Driver>,
}

impl Spike {
    /// Day cost over the median day's; `None` when the median day had no spend.
    pub(crate) fn ratio(&self) -> Option<f64> {
        (self.day.median.0 > 0).then(|| self.day.cost.0 as f64 / self.day.median.0 as f64)
    }

    pub(crate) fn increase(&self) -> Nanos {
        self.day.cost - self.day.median
    }

    pub(crate) fn is_spike(&self) -> bool {
        self.ratio()
            .map_or(self.day.cost > Nanos::ZERO, |r| r >= SPIKE_RATIO)
    }

    /// The explanation in one or two sentences, every figure from the analysis.
    pub(crate) fn sentence(&self) -> String {
        let d = &self.day;
        let day = format!("{} ({})", d.day, weekday_name(d.day.weekday()));
        let mut s = match self.ratio() {
            Some(r) => format!(
                "Spend on {day} was {}, {} the median day ({})",
                d.cost.display_usd(),
                format::times(r),
                d.median.display_usd()
            ),
            None => format!(
                "Spend on {day} was {}, while the median day had no spend",
                d.cost.display_usd()
            ),
        };
        if !self.is_spike() {
            s.push_str(": not unusual for this period.");
            return s;
        }
        match (&self.feature, &self.model) {
            (Some(f), Some(m)) => s.push_str(&format!(
                "; {} of the increase came from feature `{}` on {} (+{} on that model over its daily average).",
                f.increase.display_usd(),
                f.key,
                m.key,
                m.increase.display_usd()
            )),
            (Some(f), None) => s.push_str(&format!(
                "; {} of the increase came from feature `{}`.",
                f.increase.display_usd(),
                f.key
            )),
            (None, Some(m)) => s.push_str(&format!(
                "; {} of the increase came from {}.",
                m.increase.display_usd(),
                m.key
            )),
            (None, None) => s.push('.'),
        }
        s
    }
}

/// The day to explain (`focus`, else the highest-spend day) and the median day, from a
/// by-day breakdown. `None` with fewer than two days to compare.
pub(crate) fn pick_day(by_day: &[CostRow], focus: Option<NaiveDate>) -> Option<DayPick> {
    let mut daily: Vec<(NaiveDate, Nanos, i64)> = by_day
        .iter()
        .filter_map(|r| Some((r.key.parse::<NaiveDate>().ok()?, r.cost, r.calls)))
        .collect();
    daily.sort_by_key(|(d, _, _)| *d);
    let first = daily
        .first()
        .map(|(d, _, _)| *d)
        .into_iter()
        .chain(focus)
        .min()?;
    let last = daily
        .last()
        .map(|(d, _, _)| *d)
        .into_iter()
        .chain(focus)
        .max()?;
    let mut costs = Vec::new();
    let mut day = first;
    while day <= last {
        let cost = daily
            .iter()
            .find(|(d, _, _)| *d == day)
            .map_or(Nanos::ZERO, |(_, c, _)| *c);
        costs.push((day, cost));
        day = day.succ_opt()?;
    }
    if costs.len() < 2 {
        return None;
    }
    let (day, cost) = match focus {
        Some(f) => costs.iter().copied().find(|(d, _)| *d == f)?,
        // Highest spend; the earliest day on a tie.
        None => costs
            .iter()
            .copied()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))?,
    };
    let calls = daily
        .iter()
        .find(|(d, _, _)| *d == day)
        .map_or(0, |(_, _, n)| *n);
    let mut sorted: Vec<Nanos> = costs.iter().map(|(_, c)| *c).collect();
    sorted.sort();
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        Nanos((sorted[n / 2 - 1].0 + sorted[n / 2].0) / 2)
    };
    Some(DayPick {
        day,
        cost,
        calls,
        median,
        days: n,
    })
}

/// The key that grew most on the day: its cost that day (`day_rows`) against its average over
/// the `other_days` (its cost over the whole period, `period_rows`, minus the day's). `None`
/// when nothing grew.
pub(crate) fn top_driver(
    day_rows: &[CostRow],
    period_rows: &[CostRow],
    other_days: usize,
) -> Option<Driver> {
    if other_days == 0 {
        return None;
    }
    let mut keys: Vec<&str> = day_rows
        .iter()
        .chain(period_rows)
        .map(|r| r.key.as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let cost_of = |rows: &[CostRow], key: &str| {
        rows.iter()
            .find(|r| r.key == key)
            .map_or(Nanos::ZERO, |r| r.cost)
    };
    keys.into_iter()
        .map(|key| {
            let day_cost = cost_of(day_rows, key);
            let others = cost_of(period_rows, key) - day_cost;
            let baseline = Nanos(others.0 / other_days as i128);
            Driver {
                key: key.to_string(),
                day_cost,
                baseline,
                increase: day_cost - baseline,
            }
        })
        .filter(|d| d.increase > Nanos::ZERO)
        .max_by(|a, b| a.increase.cmp(&b.increase).then_with(|| b.key.cmp(&a.key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, usd: f64) -> CostRow {
        CostRow {
            key: key.into(),
            calls: 10,
            input_tokens: 0,
            output_tokens: 0,
            cost: Nanos::from_usd(usd),
            unpriced_calls: 0,
        }
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn highest_day_against_the_median_with_gaps_as_zero() {
        let days = [
            row("2026-11-01", 10.0),
            row("2026-11-02", 12.0),
            // 11-03 missing: zero
            row("2026-11-04", 40.0),
            row("2026-11-05", 11.0),
        ];
        let p = pick_day(&days, None).unwrap();
        assert_eq!(p.day, d("2026-11-04"));
        assert_eq!(p.cost, Nanos::from_usd(40.0));
        assert_eq!(p.days, 5);
        // 0, 10, 11, 12, 40
        assert_eq!(p.median, Nanos::from_usd(11.0));
        let focus = pick_day(&days, Some(d("2026-11-03"))).unwrap();
        assert_eq!(
            (focus.day, focus.cost, focus.calls),
            (d("2026-11-03"), Nanos::ZERO, 0)
        );
        assert!(pick_day(&days[..1], None).is_none());
        assert!(pick_day(&[], None).is_none());
    }

    #[test]
    fn even_median_is_the_mean_of_the_middle_days() {
        let days = [row("2026-11-01", 10.0), row("2026-11-02", 20.0)];
        assert_eq!(pick_day(&days, None).unwrap().median, Nanos::from_usd(15.0));
    }

    #[test]
    fn driver_grew_most_against_its_average() {
        let day = [row("a", 30.0), row("b", 5.0)];
        // Over 5 days: a 38 (8 on the other 4 days: 2/day), b 25 (20: 5/day), c 8.
        let period = [row("a", 38.0), row("b", 25.0), row("c", 8.0)];
        let top = top_driver(&day, &period, 4).unwrap();
        assert_eq!(top.key, "a");
        assert_eq!(top.baseline, Nanos::from_usd(2.0));
        assert_eq!(top.increase, Nanos::from_usd(28.0));
        assert!(top_driver(&[], &period, 4).is_none());
        assert!(top_driver(&day, &period, 0).is_none());
    }

    #[test]
    fn sentence_names_day_ratio_and_drivers() {
        let s = Spike {
            day: DayPick {
                day: d("2026-11-17"),
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
        assert!(s.is_spike());
        assert_eq!(
            s.sentence(),
            "Spend on 2026-11-17 (Tuesday) was $124.00, 3.1× the median day ($40.00); $80.00 of \
             the increase came from feature `doc-summarizer` on claude-sonnet-4 (+$83.00 on that \
             model over its daily average)."
        );
        let calm = Spike {
            day: DayPick {
                cost: Nanos::from_usd(41.0),
                ..s.day.clone()
            },
            ..s
        };
        assert!(!calm.is_spike());
        assert!(calm.sentence().ends_with("not unusual for this period."));
    }
}
