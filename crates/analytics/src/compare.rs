//! How a slice of usage differs from the same slice over another window: the comparison of a
//! question ("vs the 7 days before", "month over month") and of `GET /api/costs?compare=`.
//! Both build it here from two answers of [`crate::OrgUsageQueries::aggregate`], so the chat
//! and the API state the same change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::period::Period;
use crate::queries::UsageTotals;
use crate::query::{Grouping, UsageSlice};

/// The same scope and grouping over a second window, and the change from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The second window (`from`, `to`).
    #[serde(flatten)]
    pub period: Period,
    /// The slice over that window (`totals`, `rows`).
    #[serde(flatten)]
    pub slice: UsageSlice,
    /// The first window less this one.
    pub change: SliceChange,
}

/// A change between two windows: the first's totals less the second's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceChange {
    /// Field by field (may be negative).
    #[serde(flatten)]
    pub totals: UsageTotals,
    /// The cost change relative to the second window's cost; `None` when that was zero.
    pub cost_ratio: Option<f64>,
    /// The change in calls relative to the second window's calls; `None` when it had none.
    pub calls_ratio: Option<f64>,
    /// Per group present in either window, largest absolute cost change first, then by key;
    /// empty for days and weeks (two windows have different ones) and without a grouping.
    pub rows: Vec<GroupChange>,
}

/// One group's change between two windows (a group absent from one had nothing in it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupChange {
    pub key: String,
    #[serde(flatten)]
    pub totals: UsageTotals,
    pub cost_ratio: Option<f64>,
}

fn ratio(change: impl Into<i128>, base: impl Into<i128>) -> Option<f64> {
    let (change, base) = (change.into(), base.into());
    (base != 0).then(|| change as f64 / base as f64)
}

impl Comparison {
    /// `current` (grouped `by`) against `previous`, the same query over `period`.
    pub fn new(
        current: &UsageSlice,
        period: Period,
        previous: UsageSlice,
        by: Option<&Grouping>,
    ) -> Comparison {
        let change = SliceChange::between(current, &previous, by);
        Comparison {
            period,
            slice: previous,
            change,
        }
    }
}

impl SliceChange {
    /// `current` less `previous`, both grouped `by`.
    pub fn between(
        current: &UsageSlice,
        previous: &UsageSlice,
        by: Option<&Grouping>,
    ) -> SliceChange {
        let totals = current.totals.minus(&previous.totals);
        let mut rows = Vec::new();
        if by.is_some_and(|b| !b.is_time()) {
            let empty = UsageTotals::default();
            let mut keys: BTreeMap<&str, (&UsageTotals, &UsageTotals)> = BTreeMap::new();
            for r in &previous.rows {
                keys.entry(&r.key).or_insert((&empty, &empty)).1 = &r.totals;
            }
            for r in &current.rows {
                keys.entry(&r.key).or_insert((&empty, &empty)).0 = &r.totals;
            }
            rows = keys
                .into_iter()
                .map(|(key, (now, before))| GroupChange {
                    key: key.to_string(),
                    totals: now.minus(before),
                    cost_ratio: ratio(now.cost.0 - before.cost.0, before.cost.0),
                })
                .collect();
            rows.sort_by(|a, b| {
                b.totals
                    .cost
                    .0
                    .unsigned_abs()
                    .cmp(&a.totals.cost.0.unsigned_abs())
                    .then_with(|| a.key.cmp(&b.key))
            });
        }
        SliceChange {
            cost_ratio: ratio(totals.cost.0, previous.totals.cost.0),
            calls_ratio: ratio(totals.calls, previous.totals.calls),
            totals,
            rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Nanos;
    use crate::query::{Dimension, GroupTotals};

    fn totals(calls: i64, cost: i64) -> UsageTotals {
        UsageTotals {
            calls,
            cost: Nanos::from(cost),
            ..UsageTotals::default()
        }
    }

    fn slice(rows: &[(&str, i64, i64)]) -> UsageSlice {
        let rows: Vec<GroupTotals> = rows
            .iter()
            .map(|&(key, calls, cost)| GroupTotals {
                key: key.into(),
                totals: totals(calls, cost),
            })
            .collect();
        let mut all = UsageTotals::default();
        rows.iter().for_each(|r| all.add(&r.totals));
        UsageSlice {
            totals: all,
            rows,
            truncated: false,
        }
    }

    #[test]
    fn change_by_hand() {
        let now = slice(&[("gpt-4o", 10, 500), ("mini", 30, 90)]);
        let before = slice(&[("gpt-4o", 8, 200), ("haiku", 4, 100)]);
        let by = Grouping::By(Dimension::Model);
        let c = SliceChange::between(&now, &before, Some(&by));
        // 590 − 300 = +290 on 300: +96.7%; calls 40 − 12 = 28 on 12.
        assert_eq!(c.totals.cost, Nanos(290));
        assert_eq!(c.totals.calls, 28);
        assert_eq!(c.cost_ratio, Some(290.0 / 300.0));
        assert_eq!(c.calls_ratio, Some(28.0 / 12.0));
        let rows: Vec<(&str, i128, Option<f64>)> = c
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.totals.cost.0, r.cost_ratio))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("gpt-4o", 300, Some(1.5)),
                ("haiku", -100, Some(-1.0)),
                ("mini", 90, None),
            ]
        );
        // Days of two windows are not the same days.
        assert!(
            SliceChange::between(&now, &before, Some(&Grouping::Day))
                .rows
                .is_empty()
        );
        let none = SliceChange::between(&now, &UsageSlice::default(), None);
        assert_eq!(none.cost_ratio, None);
    }

    #[test]
    fn serialises_with_the_apis_money_fields() {
        let c = SliceChange::between(&slice(&[("a", 2, 1_500_000_000)]), &slice(&[]), None);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["cost_nanos"], 1_500_000_000);
        assert_eq!(v["cost_usd"], 1.5);
        assert_eq!(v["calls"], 2);
        assert!(v["cost_ratio"].is_null());
        let back: SliceChange = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }
}
