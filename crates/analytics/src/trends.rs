//! Analyses of spend over time, as pure functions over query results: the day that stands out
//! and what grew on it (spikes: the day against the median day, drivers against their
//! average on the other days), anomaly days (robust z-score over median and MAD),
//! period-over-period change with its attribution to the keys that moved (and to a feature
//! moving to a more expensive model), and the month-end forecast. The queries feeding them are
//! breakdowns; the arithmetic is here so it is tested by hand-computed examples
//! (testdata/golden/README.md). Every median here is [`median`].

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::money::Nanos;
use crate::queries::{CostRow, FeatureModelCost};

/// Iglewicz and Hoaglin's cut-off: a robust z-score above this marks an outlier.
pub const ANOMALY_Z: f64 = 3.5;

/// 0.6745 is the 0.75 quantile of the standard normal: it makes MAD comparable to a standard
/// deviation for normally distributed data.
const MAD_SCALE: f64 = 0.6745;

/// One day (or any bucket) whose spend is far from the typical one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub key: String,
    pub cost: Nanos,
    pub median: Nanos,
    /// Robust z-score `0.6745 × (cost − median) / MAD`; infinite when MAD is 0 and the day
    /// differs from the median (every other day is exactly typical).
    pub z: f64,
}

/// The median of `sorted` (ascending): the middle value, or the mean of the two middle ones;
/// 0 for an empty sample.
pub fn median(sorted: &[i128]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        sorted[n / 2] as f64
    } else {
        (sorted[n / 2 - 1] as f64 + sorted[n / 2] as f64) / 2.0
    }
}

/// A day whose spend is at least this many times the median day's counts as a spike.
pub const SPIKE_RATIO: f64 = 1.5;

/// One UTC day's spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySpend {
    pub day: NaiveDate,
    pub cost: Nanos,
    pub calls: i64,
}

/// Every day from the first to the last of `days`, missing days as zero spend: a day without
/// usage is a day of no spend, not a gap. Input in any order; output by day.
pub fn fill_days(days: &[DaySpend]) -> Vec<DaySpend> {
    let mut sorted = days.to_vec();
    sorted.sort_by_key(|d| d.day);
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut day = first.day;
    let mut it = sorted.iter().peekable();
    while day <= last.day {
        let mut spend = DaySpend {
            day,
            cost: Nanos::ZERO,
            calls: 0,
        };
        while let Some(d) = it.next_if(|d| d.day == day) {
            spend.cost = spend.cost + d.cost;
            spend.calls += d.calls;
        }
        out.push(spend);
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    out
}

/// The day analysed, against the other days of the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayPick {
    pub day: NaiveDate,
    pub cost: Nanos,
    pub calls: i64,
    pub median: Nanos,
    /// Days compared: from the first to the last day with usage (or the named day), days
    /// without usage counting as zero spend.
    pub days: usize,
}

/// The day to explain (`focus`, else the highest-spend day, the earliest on a tie) and the
/// median day. `None` with fewer than two days to compare.
pub fn pick_day(days: &[DaySpend], focus: Option<NaiveDate>) -> Option<DayPick> {
    let mut with_focus = days.to_vec();
    if let Some(f) = focus {
        with_focus.push(DaySpend {
            day: f,
            cost: Nanos::ZERO,
            calls: 0,
        });
    }
    let filled = fill_days(&with_focus);
    if filled.len() < 2 {
        return None;
    }
    let picked = match focus {
        Some(f) => filled.iter().find(|d| d.day == f)?,
        None => filled
            .iter()
            .max_by(|a, b| a.cost.cmp(&b.cost).then_with(|| b.day.cmp(&a.day)))?,
    };
    let mut costs: Vec<i128> = filled.iter().map(|d| d.cost.0).collect();
    costs.sort_unstable();
    Some(DayPick {
        day: picked.day,
        cost: picked.cost,
        calls: picked.calls,
        median: Nanos(median(&costs).round() as i128),
        days: filled.len(),
    })
}

/// What grew on the day, compared with its average on the other days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    pub key: String,
    pub day_cost: Nanos,
    /// Average daily cost on the other days.
    pub baseline: Nanos,
    pub increase: Nanos,
}

/// The key that grew most on the day: its cost that day (`day`) against its average over the
/// `other_days` (its cost over the whole period, `period`, minus the day's). `None` when
/// nothing grew.
pub fn top_driver(
    day: &[(&str, Nanos)],
    period: &[(&str, Nanos)],
    other_days: usize,
) -> Option<Driver> {
    if other_days == 0 {
        return None;
    }
    let mut keys: Vec<&str> = day.iter().chain(period).map(|(k, _)| *k).collect();
    keys.sort_unstable();
    keys.dedup();
    let cost_of = |rows: &[(&str, Nanos)], key: &str| {
        rows.iter()
            .find(|(k, _)| *k == key)
            .map_or(Nanos::ZERO, |(_, c)| *c)
    };
    keys.into_iter()
        .map(|key| {
            let day_cost = cost_of(day, key);
            let others = cost_of(period, key) - day_cost;
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

/// A day explained: how it compares with the median day and what grew on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spike {
    pub day: DayPick,
    /// The question named this day; otherwise it is the highest-spend day.
    pub requested: bool,
    pub feature: Option<Driver>,
    pub model: Option<Driver>,
}

impl Spike {
    /// Day cost over the median day's; `None` when the median day had no spend.
    pub fn ratio(&self) -> Option<f64> {
        (self.day.median.0 > 0).then(|| self.day.cost.0 as f64 / self.day.median.0 as f64)
    }

    pub fn increase(&self) -> Nanos {
        self.day.cost - self.day.median
    }

    /// At least [`SPIKE_RATIO`] times the median day (any spend, when the median day had
    /// none).
    pub fn is_spike(&self) -> bool {
        self.ratio()
            .map_or(self.day.cost > Nanos::ZERO, |r| r >= SPIKE_RATIO)
    }
}

/// Days whose cost has a robust z-score above `threshold` (use [`ANOMALY_Z`]) in either
/// direction, largest |z| first. `days` should include zero-spend days, since a missing day
/// is a day of no spend. Fewer than 3 days say nothing about what is typical: none.
pub fn anomaly_days(days: &[CostRow], threshold: f64) -> Vec<Anomaly> {
    if days.len() < 3 {
        return Vec::new();
    }
    let mut costs: Vec<i128> = days.iter().map(|d| d.cost.0).collect();
    costs.sort_unstable();
    let med = median(&costs);
    let mut deviations: Vec<i128> = costs
        .iter()
        .map(|&c| (c as f64 - med).abs().round() as i128)
        .collect();
    deviations.sort_unstable();
    let mad = median(&deviations);
    let mut out: Vec<Anomaly> = days
        .iter()
        .filter_map(|d| {
            let diff = d.cost.0 as f64 - med;
            let z = if mad > 0.0 {
                MAD_SCALE * diff / mad
            } else if diff == 0.0 {
                0.0
            } else {
                f64::INFINITY.copysign(diff)
            };
            (z.abs() > threshold).then(|| Anomaly {
                key: d.key.clone(),
                cost: d.cost,
                median: Nanos(med.round() as i128),
                z,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.z.abs()
            .total_cmp(&a.z.abs())
            .then_with(|| a.key.cmp(&b.key))
    });
    out
}

/// How much one key's cost moved between two periods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub key: String,
    pub previous: Nanos,
    pub current: Nanos,
    pub change: Nanos,
    /// This key's change as a share of the total change (may exceed 1 or be negative when
    /// other keys moved the other way); 0 when the total did not change.
    pub share_of_change: f64,
}

/// Period-over-period change of spend, attributed to the keys of a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub previous: Nanos,
    pub current: Nanos,
    pub change: Nanos,
    /// `change / previous`; `None` when the previous period had no spend.
    pub change_ratio: Option<f64>,
    /// Every key present in either period, largest absolute change first (then by key).
    pub contributions: Vec<Contribution>,
}

/// Compares two breakdowns by the same dimension (e.g. feature, or feature · model to see
/// traffic moving between models). A key absent from one period cost nothing in it.
pub fn change(current: &[CostRow], previous: &[CostRow]) -> Change {
    let mut by_key: BTreeMap<&str, (Nanos, Nanos)> = BTreeMap::new();
    for r in previous {
        by_key.entry(&r.key).or_insert((Nanos::ZERO, Nanos::ZERO)).0 = r.cost;
    }
    for r in current {
        by_key.entry(&r.key).or_insert((Nanos::ZERO, Nanos::ZERO)).1 = r.cost;
    }
    let prev_total: Nanos = previous.iter().map(|r| r.cost).sum();
    let cur_total: Nanos = current.iter().map(|r| r.cost).sum();
    let total_change = cur_total - prev_total;
    let mut contributions: Vec<Contribution> = by_key
        .into_iter()
        .map(|(key, (previous, current))| {
            let change = current - previous;
            Contribution {
                key: key.to_string(),
                previous,
                current,
                change,
                share_of_change: if total_change.0 == 0 {
                    0.0
                } else {
                    change.0 as f64 / total_change.0 as f64
                },
            }
        })
        .collect();
    contributions.sort_by(|a, b| {
        b.change
            .0
            .unsigned_abs()
            .cmp(&a.change.0.unsigned_abs())
            .then_with(|| a.key.cmp(&b.key))
    });
    Change {
        previous: prev_total,
        current: cur_total,
        change: total_change,
        change_ratio: (prev_total.0 != 0).then(|| total_change.0 as f64 / prev_total.0 as f64),
        contributions,
    }
}

/// A feature's calls must shift at least this share (20 points) to one model for its change
/// to count as a move to that model rather than ordinary variation.
pub const MODEL_MOVE_MIN_SHIFT: f64 = 0.2;

/// A feature whose calls moved from one model to a more expensive one between two periods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMove {
    pub feature: String,
    /// The model that lost the largest share of the feature's calls.
    pub from_model: String,
    /// The model that gained the largest share.
    pub to_model: String,
    /// `to_model`'s share of the feature's calls before and after.
    pub previous_share: f64,
    pub current_share: f64,
    /// The change of the feature's spend on `to_model`.
    pub to_model_change: Nanos,
    /// Cost per call of `from_model` (previous period) and `to_model` (current period).
    pub from_cost_per_call: Nanos,
    pub to_cost_per_call: Nanos,
}

struct ModelSide {
    calls: i64,
    cost: Nanos,
}

fn sides<'a>(rows: &'a [FeatureModelCost], feature: &str) -> BTreeMap<&'a str, ModelSide> {
    rows.iter()
        .filter(|r| r.feature == feature)
        .map(|r| {
            (
                r.model.as_str(),
                ModelSide {
                    calls: r.calls,
                    cost: r.cost,
                },
            )
        })
        .collect()
}

fn per_call(side: Option<&ModelSide>) -> Option<Nanos> {
    side.filter(|s| s.calls > 0)
        .map(|s| Nanos((s.cost.0 as f64 / s.calls as f64).round() as i128))
}

/// Whether `feature` moved to a more expensive model between `previous` and `current`
/// (feature × model breakdowns of the two periods): the model whose share of the feature's
/// calls grew most gained at least [`MODEL_MOVE_MIN_SHIFT`], another lost share, and a call
/// on the new model costs more than one on the old. Ties go to the model named first.
pub fn model_move(
    feature: &str,
    current: &[FeatureModelCost],
    previous: &[FeatureModelCost],
) -> Option<ModelMove> {
    let (cur, prev) = (sides(current, feature), sides(previous, feature));
    let total = |m: &BTreeMap<&str, ModelSide>| m.values().map(|s| s.calls).sum::<i64>();
    let (cur_calls, prev_calls) = (total(&cur), total(&prev));
    if cur_calls == 0 || prev_calls == 0 {
        return None;
    }
    let share = |m: &BTreeMap<&str, ModelSide>, n: i64, model: &str| {
        m.get(model).map_or(0.0, |s| s.calls as f64 / n as f64)
    };
    let models: std::collections::BTreeSet<&str> = cur.keys().chain(prev.keys()).copied().collect();
    let shifts: Vec<(&str, f64)> = models
        .iter()
        .map(|&m| (m, share(&cur, cur_calls, m) - share(&prev, prev_calls, m)))
        .collect();
    // `max_by`/`min_by` keep the last of equals: reversed so the first-named model wins ties.
    let (to, gain) = *shifts.iter().rev().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let (from, loss) = *shifts.iter().rev().min_by(|a, b| a.1.total_cmp(&b.1))?;
    if gain < MODEL_MOVE_MIN_SHIFT || loss >= 0.0 {
        return None;
    }
    let to_cpc = per_call(cur.get(to))?;
    let from_cpc = per_call(prev.get(from))?;
    let to_change =
        cur.get(to).map_or(Nanos::ZERO, |s| s.cost) - prev.get(to).map_or(Nanos::ZERO, |s| s.cost);
    (to_cpc > from_cpc && to_change > Nanos::ZERO).then(|| ModelMove {
        feature: feature.to_string(),
        from_model: from.to_string(),
        to_model: to.to_string(),
        previous_share: share(&prev, prev_calls, to),
        current_share: share(&cur, cur_calls, to),
        to_model_change: to_change,
        from_cost_per_call: from_cpc,
        to_cost_per_call: to_cpc,
    })
}

/// Spend expected by the end of the month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub spent: Nanos,
    /// Average daily spend of the recent complete days the projection uses.
    pub daily_run_rate: Nanos,
    pub remaining_days: f64,
    pub projected: Nanos,
}

/// Month-end spend: what is `spent` so far plus `remaining_days` at the average of
/// `recent_days` (complete days, most recent last; e.g. the last 7), so a change in usage
/// this month shows up in the projection, unlike a month-to-date average.
pub fn month_end_forecast(spent: Nanos, recent_days: &[Nanos], remaining_days: f64) -> Forecast {
    let daily = if recent_days.is_empty() {
        Nanos::ZERO
    } else {
        Nanos(
            (recent_days.iter().map(|d| d.0 as f64).sum::<f64>() / recent_days.len() as f64).round()
                as i128,
        )
    };
    let remaining_days = remaining_days.max(0.0);
    Forecast {
        spent,
        daily_run_rate: daily,
        remaining_days,
        projected: spent + Nanos((daily.0 as f64 * remaining_days).round() as i128),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, usd: i64) -> CostRow {
        CostRow {
            key: key.into(),
            calls: 1,
            input_tokens: 0,
            output_tokens: 0,
            cost: Nanos::from(usd * 1_000_000_000),
            unpriced_calls: 0,
        }
    }

    fn spend(day: &str, usd: f64) -> DaySpend {
        DaySpend {
            day: day.parse().unwrap(),
            cost: Nanos::from_usd(usd),
            calls: 10,
        }
    }

    #[test]
    fn highest_day_against_the_median_with_gaps_as_zero() {
        let days = [
            spend("2026-11-01", 10.0),
            spend("2026-11-02", 12.0),
            // 11-03 missing: zero
            spend("2026-11-04", 40.0),
            spend("2026-11-05", 11.0),
        ];
        let p = pick_day(&days, None).unwrap();
        assert_eq!(p.day.to_string(), "2026-11-04");
        assert_eq!(p.cost, Nanos::from_usd(40.0));
        assert_eq!(p.days, 5);
        // 0, 10, 11, 12, 40
        assert_eq!(p.median, Nanos::from_usd(11.0));
        let focus = pick_day(&days, Some("2026-11-03".parse().unwrap())).unwrap();
        assert_eq!((focus.cost, focus.calls), (Nanos::ZERO, 0));
        assert!(pick_day(&days[..1], None).is_none());
        assert!(pick_day(&[], None).is_none());
        // An even count: the mean of the middle days.
        let two = [spend("2026-11-01", 10.0), spend("2026-11-02", 20.0)];
        assert_eq!(pick_day(&two, None).unwrap().median, Nanos::from_usd(15.0));
    }

    #[test]
    fn driver_grew_most_against_its_average() {
        let usd = Nanos::from_usd;
        let day = [("a", usd(30.0)), ("b", usd(5.0))];
        // Over 5 days: a 38 (8 on the other 4 days: 2/day), b 25 (20: 5/day), c 8.
        let period = [("a", usd(38.0)), ("b", usd(25.0)), ("c", usd(8.0))];
        let top = top_driver(&day, &period, 4).unwrap();
        assert_eq!(top.key, "a");
        assert_eq!(top.baseline, usd(2.0));
        assert_eq!(top.increase, usd(28.0));
        assert!(top_driver(&[], &period, 4).is_none());
        assert!(top_driver(&day, &period, 0).is_none());
    }

    #[test]
    fn a_spike_is_one_and_a_half_median_days() {
        let pick = |cost: f64| DayPick {
            day: "2026-11-17".parse().unwrap(),
            cost: Nanos::from_usd(cost),
            calls: 1,
            median: Nanos::from_usd(40.0),
            days: 30,
        };
        let spike = |cost| Spike {
            day: pick(cost),
            requested: false,
            feature: None,
            model: None,
        };
        assert!(spike(60.0).is_spike());
        assert!(!spike(59.0).is_spike());
        assert_eq!(spike(124.0).increase(), Nanos::from_usd(84.0));
    }

    #[test]
    fn missing_days_are_zero_spend() {
        let filled = fill_days(&[spend("2026-11-04", 7.0), spend("2026-11-01", 5.0)]);
        let days: Vec<String> = filled.iter().map(|d| d.day.to_string()).collect();
        assert_eq!(
            days,
            ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
        );
        assert_eq!(filled[1].cost, Nanos::ZERO);
        assert_eq!(filled[3].cost, Nanos::from_usd(7.0));
    }

    #[test]
    fn anomaly_by_hand() {
        // Costs $10, 12, 11, 9, 10, 50, 11. Sorted: 9 10 10 11 11 12 50, median 11.
        // |dev|: 1 1 0 2 1 39 0 → sorted 0 0 1 1 1 2 39, MAD 1.
        // z(50) = 0.6745 × 39 / 1 = 26.3 > 3.5; z(9) = 0.6745 × −2 = −1.35: not anomalous.
        let days: Vec<CostRow> = [10, 12, 11, 9, 10, 50, 11]
            .iter()
            .enumerate()
            .map(|(i, c)| row(&format!("2026-11-0{}", i + 1), *c))
            .collect();
        let a = anomaly_days(&days, ANOMALY_Z);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].key, "2026-11-06");
        assert_eq!(a[0].median, Nanos(11_000_000_000));
        assert!((a[0].z - 26.3055).abs() < 1e-3, "{}", a[0].z);
        // A drop is an anomaly too: $0 among days of $10 ± 1.
        let days: Vec<CostRow> = [10, 11, 9, 10, 0, 11, 9]
            .iter()
            .enumerate()
            .map(|(i, c)| row(&format!("d{i}"), *c))
            .collect();
        // median 10, |dev| 0 1 1 0 10 1 1 → MAD 1; z(0) = −6.745.
        let a = anomaly_days(&days, ANOMALY_Z);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].key, "d4");
        assert!(a[0].z < -6.7);
    }

    #[test]
    fn flat_days_have_no_anomaly_and_too_few_days_say_nothing() {
        let flat: Vec<CostRow> = (0..5).map(|i| row(&format!("d{i}"), 7)).collect();
        assert!(anomaly_days(&flat, ANOMALY_Z).is_empty());
        assert!(anomaly_days(&[row("a", 1), row("b", 100)], ANOMALY_Z).is_empty());
    }

    #[test]
    fn change_attribution_by_hand() {
        // Previous week: support-bot $100, search $50, drafts $30 = $180.
        // This week:     support-bot $160, search $48, drafts $40, eval $0 = $248.
        // Change +$68 = +37.8%; support-bot +$60 = 88.2% of it, drafts +$10 = 14.7%,
        // search −$2 = −2.9%.
        let prev = [
            row("support-bot", 100),
            row("search", 50),
            row("drafts", 30),
        ];
        let cur = [
            row("support-bot", 160),
            row("search", 48),
            row("drafts", 40),
            row("eval", 0),
        ];
        let c = change(&cur, &prev);
        assert_eq!(c.change, Nanos(68_000_000_000));
        assert!((c.change_ratio.unwrap() - 68.0 / 180.0).abs() < 1e-12);
        let keys: Vec<&str> = c.contributions.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, ["support-bot", "drafts", "search", "eval"]);
        assert!((c.contributions[0].share_of_change - 60.0 / 68.0).abs() < 1e-12);
        assert_eq!(c.contributions[2].change, Nanos(-2_000_000_000));
        // From nothing: no ratio.
        assert_eq!(change(&cur, &[]).change_ratio, None);
    }

    fn fm(feature: &str, model: &str, calls: i64, usd_cents: i64) -> FeatureModelCost {
        FeatureModelCost {
            feature: feature.into(),
            model: model.into(),
            calls,
            cost: Nanos::from(usd_cents * 10_000_000),
        }
    }

    #[test]
    fn model_move_by_hand() {
        // Previous week: support-bot 900 calls on gpt-4o-mini ($9.00, 1¢ a call) and 100 on
        // gpt-4o ($10.00, 10¢); search $50. This week: 200 on mini ($2.00), 800 on gpt-4o
        // ($80.00); search $48. Total $69 → $130: +$61; support-bot +$63 = 103.3% of it.
        // gpt-4o's share of support-bot's calls 10% → 80% (+70 points ≥ 20), mini's fell;
        // 10¢ a call > 1¢: a move from gpt-4o-mini to gpt-4o, gpt-4o's spend +$70.
        let prev = [
            fm("support-bot", "gpt-4o-mini", 900, 900),
            fm("support-bot", "gpt-4o", 100, 1_000),
            fm("search", "gpt-4o-mini", 5_000, 5_000),
        ];
        let cur = [
            fm("support-bot", "gpt-4o-mini", 200, 200),
            fm("support-bot", "gpt-4o", 800, 8_000),
            fm("search", "gpt-4o-mini", 4_800, 4_800),
        ];
        let m = model_move("support-bot", &cur, &prev).unwrap();
        assert_eq!(
            (m.from_model.as_str(), m.to_model.as_str()),
            ("gpt-4o-mini", "gpt-4o")
        );
        assert!((m.previous_share - 0.1).abs() < 1e-12);
        assert!((m.current_share - 0.8).abs() < 1e-12);
        assert_eq!(m.to_model_change, Nanos(70_000_000_000));
        assert_eq!(m.from_cost_per_call, Nanos(10_000_000));
        assert_eq!(m.to_cost_per_call, Nanos(100_000_000));
        // search only shrank on one model: no move. The reverse move is to a cheaper model.
        assert_eq!(model_move("search", &cur, &prev), None);
        assert_eq!(model_move("support-bot", &prev, &cur), None);
        // A 10-point shift is ordinary variation.
        let small = [
            fm("support-bot", "gpt-4o-mini", 800, 800),
            fm("support-bot", "gpt-4o", 200, 2_000),
        ];
        assert_eq!(model_move("support-bot", &small, &prev), None);
    }

    #[test]
    fn forecast_by_hand() {
        // $300 spent by the end of the 20th of a 30-day month; last 7 days averaged
        // (14+16+15+15+15+15+15)/7 = $15 → $300 + 10 × $15 = $450.
        let recent: Vec<Nanos> = [14, 16, 15, 15, 15, 15, 15]
            .iter()
            .map(|d| Nanos(d * 1_000_000_000))
            .collect();
        let f = month_end_forecast(Nanos(300_000_000_000), &recent, 10.0);
        assert_eq!(f.daily_run_rate, Nanos(15_000_000_000));
        assert_eq!(f.projected, Nanos(450_000_000_000));
        assert_eq!(
            month_end_forecast(Nanos(5), &[], 3.0).projected,
            Nanos(5),
            "no recent days: nothing projected"
        );
    }
}
