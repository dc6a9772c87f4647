//! One model reported under several names (`gpt-4o` by the request, `gpt-4o-2024-08-06` by
//! the response and the usage export; `claude-sonnet-4-20250514` and
//! `us.anthropic.claude-sonnet-4-20250514-v1:0`) is shown as one: a breakdown by model is
//! merged under the catalog's name for each stored name, and says which stored names it
//! merged. A snapshot priced on its own (`gpt-4o-2024-05-13`) keeps its own row; an unpriced
//! name is its own row as stored.
//!
//! Why here and not in the stored rows: the stored `model` is what the source sent (filters and
//! drill-downs match it exactly), and the catalog that decides which names are one model can
//! change (an operator's prices file); merging the rows read is exact whatever the catalog.

use std::collections::HashMap;

use crate::catalog::PriceCatalog;
use crate::money::Nanos;
use crate::queries::CostRow;
use crate::query::UsageSlice;

/// A breakdown row under the catalog's model name, with the stored names it sums.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub row: CostRow,
    /// The stored names merged, in the breakdown's order (just the key when nothing merged).
    pub names: Vec<String>,
}

/// The name `stored` is shown under: the catalog entry's model, else `stored` itself.
pub fn display_name(catalog: &PriceCatalog, stored: &str) -> String {
    catalog
        .model_name(None, stored)
        .map_or_else(|| stored.to_string(), str::to_string)
}

/// `rows` (a breakdown by model) merged under the catalog's names, by cost descending then
/// name, as breakdowns are ordered.
pub fn merge_model_rows(rows: &[CostRow], catalog: &PriceCatalog) -> Vec<ModelRow> {
    merge_named(
        rows.iter().cloned(),
        catalog,
        |r| &r.key,
        |r, key| r.key = key,
        |m, r| {
            m.calls += r.calls;
            m.input_tokens += r.input_tokens;
            m.output_tokens += r.output_tokens;
            m.cost = m.cost + r.cost;
            m.unpriced_calls += r.unpriced_calls;
        },
        |r| r.cost,
    )
    .into_iter()
    .map(|(row, names)| ModelRow { row, names })
    .collect()
}

/// A slice grouped by model with its rows merged under the catalog's names (as
/// [`merge_model_rows`]), and for each row the stored names it sums. `totals` and `truncated`
/// are unchanged.
pub fn merge_model_groups(
    slice: UsageSlice,
    catalog: &PriceCatalog,
) -> (UsageSlice, Vec<Vec<String>>) {
    let (rows, names) = merge_named(
        slice.rows,
        catalog,
        |g| &g.key,
        |g, key| g.key = key,
        |m, g| m.totals.add(&g.totals),
        |g| g.totals.cost,
    )
    .into_iter()
    .unzip();
    (
        UsageSlice {
            totals: slice.totals,
            rows,
            truncated: slice.truncated,
        },
        names,
    )
}

/// The one merge behind both shapes: rows keyed by a stored model name, summed under the name
/// each is shown under, by cost descending then name; each with the stored names it sums.
fn merge_named<T>(
    rows: impl IntoIterator<Item = T>,
    catalog: &PriceCatalog,
    key: impl Fn(&T) -> &str,
    rename: impl Fn(&mut T, String),
    add: impl Fn(&mut T, &T),
    cost: impl Fn(&T) -> Nanos,
) -> Vec<(T, Vec<String>)> {
    let mut merged: Vec<(T, Vec<String>)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for mut r in rows {
        let stored = key(&r).to_string();
        let shown = display_name(catalog, &stored);
        match at.get(&shown) {
            Some(&i) => {
                let (m, names) = &mut merged[i];
                add(m, &r);
                names.push(stored);
            }
            None => {
                at.insert(shown.clone(), merged.len());
                rename(&mut r, shown);
                merged.push((r, vec![stored]));
            }
        }
    }
    merged.sort_by(|(a, _), (b, _)| cost(b).cmp(&cost(a)).then_with(|| key(a).cmp(key(b))));
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::UsageTotals;
    use crate::query::GroupTotals;

    fn row(key: &str, calls: i64, cost: i64, unpriced: i64) -> CostRow {
        CostRow {
            key: key.into(),
            calls,
            input_tokens: calls * 100,
            output_tokens: calls * 10,
            cost: Nanos::from(cost),
            unpriced_calls: unpriced,
        }
    }

    #[test]
    fn names_of_one_model_become_one_row() {
        let catalog = PriceCatalog::builtin().unwrap();
        let rows = [
            row("gpt-4o-mini", 10, 900, 0),
            row("gpt-4o", 2, 500, 0),
            row("gpt-4o-2024-08-06", 3, 700, 0),
            row("gpt-4o-2024-05-13", 1, 600, 0),
            row("acme-llama", 4, 0, 4),
        ];
        let merged = merge_model_rows(&rows, &catalog);
        let got: Vec<(&str, i64, i128, Vec<&str>)> = merged
            .iter()
            .map(|m| {
                (
                    m.row.key.as_str(),
                    m.row.calls,
                    m.row.cost.0,
                    m.names.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("gpt-4o", 5, 1200, vec!["gpt-4o", "gpt-4o-2024-08-06"]),
                ("gpt-4o-mini", 10, 900, vec!["gpt-4o-mini"]),
                // Its own price: its own row.
                ("gpt-4o-2024-05-13", 1, 600, vec!["gpt-4o-2024-05-13"]),
                ("acme-llama", 4, 0, vec!["acme-llama"]),
            ]
        );
        assert_eq!(merged[0].row.input_tokens, 500);
        assert_eq!(merged[3].row.unpriced_calls, 4);
    }

    #[test]
    fn a_slice_by_model_merges_as_the_rows_do() {
        let catalog = PriceCatalog::builtin().unwrap();
        let group = |key: &str, calls: i64, cost: i64| GroupTotals {
            key: key.into(),
            totals: UsageTotals {
                calls,
                cost: Nanos(cost.into()),
                error_calls: 1,
                ..UsageTotals::default()
            },
        };
        let slice = UsageSlice {
            totals: UsageTotals::default(),
            rows: vec![
                group("gpt-4o-mini", 10, 900),
                group("gpt-4o", 2, 500),
                group("gpt-4o-2024-08-06", 3, 700),
            ],
            truncated: true,
        };
        let (merged, names) = merge_model_groups(slice, &catalog);
        let got: Vec<(&str, i64, i64)> = merged
            .rows
            .iter()
            .map(|g| (g.key.as_str(), g.totals.calls, g.totals.error_calls))
            .collect();
        assert_eq!(got, vec![("gpt-4o", 5, 2), ("gpt-4o-mini", 10, 1)]);
        assert_eq!(
            names,
            vec![
                vec!["gpt-4o".to_string(), "gpt-4o-2024-08-06".to_string()],
                vec!["gpt-4o-mini".to_string()]
            ]
        );
        assert!(merged.truncated);
    }
}
