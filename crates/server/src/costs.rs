//! `GET /api/costs` (PROTOCOL.md §7, `docs/protocol-notes.md`): its query string read into one
//! [`UsageQuery`] and an optional comparison window, answered by the same
//! [`OrgUsageQueries::aggregate`] the chat's question plans use, so the API's figure and the
//! chat's for the same parameters are one computation.
//!
//! Parameters: `period`, `from`, `to` (the window, as for `/api/recommendations`); `group_by`
//! (a [`Grouping`]: `model` by default, `provider`, `feature`, `user`, `tag:KEY`, `day`,
//! `week`, `hour_of_day`, `day_of_week`); filters `model`, `provider`, `feature`, `user` and `tag.KEY`, each repeatable (the
//! values of one are OR'd, different ones AND'd; a comma is part of a value, never a
//! separator, so every stored name can be asked for), and the same with a `not.` prefix to
//! exclude; `compare=previous` or `compare_from` + `compare_to` for a second window. Anything
//! else — an unknown parameter, an empty value, a repeated window parameter, too many filters
//! — is a 400 that says what is wrong: a typo must not silently widen the answer.

use apogee_analytics::forecast::month_end;
use apogee_analytics::model_rows::merge_model_groups;
use apogee_analytics::{
    Comparison, Dimension, Filter, GroupTotals, Grouping, OrgUsageQueries, Period, PriceCatalog,
    QueryError, Scope, UsageQuery, UsageSlice, UsageTotals,
};
use axum::Json;
use axum::extract::{Query, State};
use chrono::Utc;
use serde::Serialize;

use crate::http_error::ApiError;
use crate::rest::{parse_bound, period_of, within_rate};
use crate::session::UserSession;
use crate::state::AppState;
use apogee_protocol::time::instant;

/// The second window of a comparison, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareWindow {
    /// The same length right before the window.
    Previous,
    /// `compare_from` … `compare_to` (each `YYYY-MM-DD` or RFC 3339).
    Between { from: String, to: String },
}

/// `GET /api/costs`' query string, checked but not yet resolved against the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostsParams {
    pub period: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub group_by: Grouping,
    pub scope: Scope,
    pub compare: Option<CompareWindow>,
}

const PARAMETERS: &str = "period, from, to, group_by, compare, compare_from, compare_to, \
     model, provider, feature, user, tag.KEY (and not.model … not.tag.KEY to exclude)";

/// The filter dimension a parameter name stands for (`tag.team` is the tag `team`).
fn filter_dimension(name: &str) -> Option<Result<Dimension, String>> {
    match name {
        "model" => Some(Ok(Dimension::Model)),
        "provider" => Some(Ok(Dimension::Provider)),
        "feature" => Some(Ok(Dimension::Feature)),
        "user" => Some(Ok(Dimension::User)),
        _ => name.strip_prefix("tag.").map(|key| {
            format!("tag:{key}")
                .parse::<Dimension>()
                .map_err(|e| format!("`{name}`: {e}"))
        }),
    }
}

impl CostsParams {
    /// Reads the query string's pairs, in order (repeated names kept).
    pub fn parse(pairs: Vec<(String, String)>) -> Result<CostsParams, String> {
        let mut window: [(&str, Option<String>); 7] = [
            ("period", None),
            ("from", None),
            ("to", None),
            ("group_by", None),
            ("compare", None),
            ("compare_from", None),
            ("compare_to", None),
        ];
        let mut filters: Vec<Filter> = Vec::new();
        for (name, value) in pairs {
            if let Some(slot) = window.iter_mut().find(|(n, _)| *n == name) {
                if slot.1.replace(value).is_some() {
                    return Err(format!("`{name}` is given more than once"));
                }
                continue;
            }
            let (exclude, dimension_name) = match name.strip_prefix("not.") {
                Some(rest) => (true, rest),
                None => (false, name.as_str()),
            };
            let dimension = filter_dimension(dimension_name)
                .ok_or_else(|| format!("unknown parameter `{name}`: use {PARAMETERS}"))??;
            if value.is_empty() {
                return Err(format!("`{name}` has an empty value"));
            }
            match filters
                .iter_mut()
                .find(|f| f.dimension == dimension && f.exclude == exclude)
            {
                Some(f) if f.values.contains(&value) => {}
                Some(f) => f.values.push(value),
                None => filters.push(Filter {
                    dimension,
                    values: vec![value],
                    exclude,
                }),
            }
        }
        let scope = Scope { filters };
        scope.validate().map_err(|e| e.to_string())?;
        let [
            period,
            from,
            to,
            group_by,
            compare,
            compare_from,
            compare_to,
        ] = window.map(|(_, v)| v);
        let group_by = match group_by {
            None => Grouping::By(Dimension::Model),
            Some(g) => g
                .parse()
                .map_err(|e: apogee_analytics::QuerySpecError| e.0)?,
        };
        let compare = match (compare.as_deref(), compare_from, compare_to) {
            (None, None, None) => None,
            (Some("previous"), None, None) => Some(CompareWindow::Previous),
            (None, Some(from), Some(to)) => Some(CompareWindow::Between { from, to }),
            (Some("previous"), _, _) => {
                return Err(
                    "`compare=previous` and `compare_from`/`compare_to` exclude each other".into(),
                );
            }
            (Some(other), _, _) => {
                return Err(format!(
                    "unknown compare `{other}`: use `previous`, or give `compare_from` and `compare_to`"
                ));
            }
            (None, _, _) => return Err("give both `compare_from` and `compare_to`".into()),
        };
        Ok(CostsParams {
            period,
            from,
            to,
            group_by,
            scope,
            compare,
        })
    }
}

/// The answer of `GET /api/costs`. The fields before `filters` and `compare` are PROTOCOL.md
/// §7's; `totals`, `rows` and `truncated` are the engine's [`UsageSlice`] as it serialises,
/// rows by model merged under the catalog's names.
#[derive(Debug, Serialize)]
pub struct CostsAnswer {
    pub org_id: String,
    pub from: String,
    pub to: String,
    pub group_by: Grouping,
    /// The filters applied, as understood (values of one OR'd, filters AND'd).
    pub filters: Scope,
    pub currency: &'static str,
    pub totals: UsageTotals,
    pub rows: Vec<CostsRow>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// As of now whatever the window: where this month's spend is heading.
    pub forecast: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare: Option<Comparison>,
}

/// One row of the answer: the engine's group, and by model the names as stored that it sums
/// (one model reported as `gpt-4o` and `gpt-4o-2024-08-06` is one row).
#[derive(Debug, Serialize)]
pub struct CostsRow {
    #[serde(flatten)]
    pub group: GroupTotals,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

/// `slice` as the answer shows it: by model, merged under the catalog's names.
fn shown(
    slice: UsageSlice,
    group_by: Option<&Grouping>,
    catalog: &PriceCatalog,
) -> (UsageSlice, Option<Vec<Vec<String>>>) {
    if group_by == Some(&Grouping::By(Dimension::Model)) {
        let (slice, names) = merge_model_groups(slice, catalog);
        (slice, Some(names))
    } else {
        (slice, None)
    }
}

fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::Invalid(_) | QueryError::TooLarge(_) => ApiError::BadRequest(e.to_string()),
        QueryError::Backend(_) => ApiError::internal(e),
    }
}

pub async fn costs(
    State(app): State<AppState>,
    s: UserSession,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<CostsAnswer>, ApiError> {
    within_rate(&app, &app.rest_rates.costs, &s, "costs")?;
    let params = CostsParams::parse(pairs).map_err(ApiError::BadRequest)?;
    let period = period_of(
        params.period.as_deref(),
        params.from.as_deref(),
        params.to.as_deref(),
    )?;
    let compare_period = match &params.compare {
        None => None,
        Some(CompareWindow::Previous) => Some(period.previous()),
        Some(CompareWindow::Between { from, to }) => {
            let (from, to) = (parse_bound(from, false)?, parse_bound(to, true)?);
            if from >= to {
                return Err(ApiError::BadRequest(
                    "`compare_from` must be before `compare_to`".into(),
                ));
            }
            Some(Period::new(from, to))
        }
    };
    let query = UsageQuery {
        period,
        scope: params.scope,
        group_by: Some(params.group_by),
    };
    let (slice, names) = shown(
        s.usage().aggregate(&query).await.map_err(query_error)?,
        query.group_by.as_ref(),
        s.catalog(),
    );
    let compare = match compare_period {
        None => None,
        Some(p) => {
            let before = s
                .usage()
                .aggregate(&UsageQuery {
                    period: p,
                    ..query.clone()
                })
                .await
                .map_err(query_error)?;
            let (before, _) = shown(before, query.group_by.as_ref(), s.catalog());
            Some(Comparison::new(&slice, p, before, query.group_by.as_ref()))
        }
    };
    let forecast = month_end(s.usage(), Utc::now())
        .await
        .map_err(ApiError::internal)?;
    let UsageQuery {
        scope, group_by, ..
    } = query;
    Ok(Json(CostsAnswer {
        org_id: s.identity().org_id().to_string(),
        from: instant(period.from),
        to: instant(period.to),
        group_by: group_by.unwrap_or(Grouping::By(Dimension::Model)),
        filters: scope,
        currency: "USD",
        totals: slice.totals,
        rows: match names {
            Some(names) => slice
                .rows
                .into_iter()
                .zip(names)
                .map(|(group, names)| CostsRow {
                    group,
                    models: Some(names),
                })
                .collect(),
            None => slice
                .rows
                .into_iter()
                .map(|group| CostsRow {
                    group,
                    models: None,
                })
                .collect(),
        },
        truncated: slice.truncated,
        forecast: forecast.to_json(),
        compare,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<CostsParams, String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        CostsParams::parse(pairs)
    }

    #[test]
    fn filters_group_by_and_compare() {
        let p = parse(
            "period=7d&group_by=tag:team&model=gpt-4o&model=gpt-4o-mini&not.user=bo\
             &tag.team=growth&not.tag.a.b=x%2Cy&compare=previous",
        )
        .unwrap();
        assert_eq!(p.period.as_deref(), Some("7d"));
        assert_eq!(p.group_by, Grouping::By(Dimension::Tag("team".into())));
        assert_eq!(p.compare, Some(CompareWindow::Previous));
        assert_eq!(
            p.scope.filters,
            vec![
                Filter {
                    dimension: Dimension::Model,
                    values: vec!["gpt-4o".into(), "gpt-4o-mini".into()],
                    exclude: false,
                },
                Filter {
                    dimension: Dimension::User,
                    values: vec!["bo".into()],
                    exclude: true,
                },
                Filter::is(Dimension::Tag("team".into()), "growth"),
                // A comma is part of the value; a dotted key is one key.
                Filter {
                    dimension: Dimension::Tag("a.b".into()),
                    values: vec!["x,y".into()],
                    exclude: true,
                },
            ]
        );
        let p = parse("compare_from=2026-11-01&compare_to=2026-11-07&group_by=week").unwrap();
        assert_eq!(p.group_by, Grouping::Week);
        assert_eq!(
            p.compare,
            Some(CompareWindow::Between {
                from: "2026-11-01".into(),
                to: "2026-11-07".into()
            })
        );
        let p = parse("").unwrap();
        assert_eq!(p.group_by, Grouping::By(Dimension::Model));
        assert!(p.scope.is_all() && p.compare.is_none());
        // Repeating a value changes nothing.
        let p = parse("feature=a&feature=a").unwrap();
        assert_eq!(p.scope.filters[0].values, vec!["a".to_string()]);
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        let too_many: String = (0..=apogee_analytics::MAX_FILTERS)
            .map(|i| format!("tag.k{i}=v&"))
            .collect();
        let too_many_values: String = (0..=apogee_analytics::MAX_FILTER_VALUES)
            .map(|i| format!("user=u{i}&"))
            .collect();
        for (query, says) in [
            ("group_by=hour", "unknown group_by `hour`"),
            ("group_by=tag:", "unknown group_by `tag:`"),
            ("modle=gpt-4o", "unknown parameter `modle`"),
            ("not.day=x", "unknown parameter `not.day`"),
            ("model=", "`model` has an empty value"),
            ("tag.team=", "`tag.team` has an empty value"),
            ("tag.=x", "`tag.`: a tag key has 1 to 64 characters"),
            ("period=7d&period=30d", "`period` is given more than once"),
            ("compare=last_year", "unknown compare `last_year`"),
            ("compare_from=2026-11-01", "give both"),
            (
                "compare=previous&compare_to=2026-11-01",
                "exclude each other",
            ),
            (too_many.as_str(), "at most 16 filters"),
            (
                too_many_values.as_str(),
                "a `user` filter takes 1 to 64 values",
            ),
        ] {
            let e = parse(query).unwrap_err();
            assert!(e.contains(says), "{query}: {e}");
        }
    }
}
