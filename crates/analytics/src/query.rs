//! The request and answer shapes of the one query engine over an org's usage. A
//! [`UsageQuery`] names a slice of usage (a [`Scope`] of filters), a [`Period`] and how to group
//! it ([`Grouping`]); its answer is the [`UsageTotals`] of the slice and of each group
//! ([`UsageSlice`]). The chat's question plans, `GET /api/costs` and budgets all build a
//! `UsageQuery`, so a figure in an answer and the API's figure for the same parameters are one
//! computation, not two that happen to agree.
//!
//! Text forms (used in query strings, plans and tool arguments alike): a [`Dimension`] is
//! `model`, `provider`, `feature`, `user` or `tag:KEY`; a [`Grouping`] is a dimension, `day`
//! (UTC `YYYY-MM-DD`), `week` (the UTC Monday that starts it, `YYYY-MM-DD`), `hour_of_day`
//! (the UTC hour of the day that every day's calls in that hour add to, `HH:00`) or
//! `day_of_week` (the UTC weekday that every such day of the period adds to, `monday` …
//! `sunday`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::period::Period;
use crate::queries::UsageTotals;
use crate::usage::MAX_TAG_KEY_CHARS;

/// Most filters one scope may hold, and most values one filter may list: a scope comes from a
/// client (a query string, a question), so what it makes a query do is bounded.
pub const MAX_FILTERS: usize = 16;
pub const MAX_FILTER_VALUES: usize = 64;

/// Most groups one answer lists: a grouping by a tag holding per-request ids must not make the
/// server hold a row per call. The slice's totals still cover every group.
pub const MAX_GROUPS: usize = 10_000;

/// The key of records without a user, a feature or a given tag. Filtering on it selects them.
pub const NONE_KEY: &str = "(none)";

/// A dimension usage can be filtered or grouped by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    Model,
    Provider,
    Feature,
    User,
    /// The value of one tag key (`tags: {"team": "growth"}`); records without the tag have
    /// the key `(none)`.
    Tag(String),
}

impl Dimension {
    /// The plain dimensions, without tags.
    pub const FIXED: [Dimension; 4] = [
        Dimension::Model,
        Dimension::Provider,
        Dimension::Feature,
        Dimension::User,
    ];

    /// `model`, `provider`, `feature`, `user`, `tag` (the key is apart).
    pub fn kind(&self) -> &'static str {
        match self {
            Dimension::Model => "model",
            Dimension::Provider => "provider",
            Dimension::Feature => "feature",
            Dimension::User => "user",
            Dimension::Tag(_) => "tag",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dimension::Tag(key) => write!(f, "tag:{key}"),
            other => f.write_str(other.kind()),
        }
    }
}

/// Why a dimension, grouping or filter was refused; the message is for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuerySpecError(pub String);

impl FromStr for Dimension {
    type Err = QuerySpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "model" => Ok(Dimension::Model),
            "provider" => Ok(Dimension::Provider),
            "feature" => Ok(Dimension::Feature),
            "user" => Ok(Dimension::User),
            _ => match s.strip_prefix("tag:") {
                Some(key) if !key.is_empty() && key.chars().count() <= MAX_TAG_KEY_CHARS => {
                    Ok(Dimension::Tag(key.to_string()))
                }
                Some(_) => Err(QuerySpecError(format!(
                    "a tag key has 1 to {MAX_TAG_KEY_CHARS} characters"
                ))),
                None => Err(QuerySpecError(format!(
                    "unknown dimension `{s}`: use model, provider, feature, user or tag:KEY"
                ))),
            },
        }
    }
}

/// How a slice is grouped: by a dimension, by UTC day or week, or by the UTC hour of the day
/// or day of the week.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grouping {
    By(Dimension),
    Day,
    /// Weeks start on Monday 00:00 UTC; the key is that Monday's date.
    Week,
    /// The period's calls by the UTC hour of the day they were made in, whatever the day
    /// (`13:00` holds every call from 13:00 to 13:59:59.999); the key is `HH:00`.
    HourOfDay,
    /// The period's calls by the UTC weekday they were made on (every Monday of the period
    /// together, …); the key is the day's name in lower case ([`WEEKDAYS`]).
    DayOfWeek,
}

/// The keys of [`Grouping::DayOfWeek`], in their order (ISO: Monday first).
pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl Grouping {
    /// Time groupings list their rows by key ascending; the others by cost descending.
    pub fn is_time(&self) -> bool {
        matches!(
            self,
            Grouping::Day | Grouping::Week | Grouping::HourOfDay | Grouping::DayOfWeek
        )
    }

    /// The order of two keys of a time grouping: by date or hour, and weekdays Monday first.
    pub fn cmp_time_keys(&self, a: &str, b: &str) -> std::cmp::Ordering {
        match self {
            Grouping::DayOfWeek => {
                let at = |k: &str| WEEKDAYS.iter().position(|d| *d == k);
                at(a).cmp(&at(b)).then_with(|| a.cmp(b))
            }
            _ => a.cmp(b),
        }
    }
}

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grouping::By(d) => d.fmt(f),
            Grouping::Day => f.write_str("day"),
            Grouping::Week => f.write_str("week"),
            Grouping::HourOfDay => f.write_str("hour_of_day"),
            Grouping::DayOfWeek => f.write_str("day_of_week"),
        }
    }
}

impl FromStr for Grouping {
    type Err = QuerySpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(Grouping::Day),
            "week" => Ok(Grouping::Week),
            "hour_of_day" => Ok(Grouping::HourOfDay),
            "day_of_week" => Ok(Grouping::DayOfWeek),
            _ => s.parse().map(Grouping::By).map_err(|_| {
                QuerySpecError(format!(
                    "unknown group_by `{s}`: use model, provider, feature, user, tag:KEY, day, \
                     week, hour_of_day or day_of_week"
                ))
            }),
        }
    }
}

/// The text forms are the serde forms, so plans and tool arguments read like query strings.
macro_rules! serde_as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_text!(Dimension);
serde_as_text!(Grouping);

/// The JSON Schemas of the text forms: strings with the pattern they follow.
macro_rules! schema_as_text {
    ($t:ty, $name:literal, $pattern:literal, $description:literal) => {
        impl schemars::JsonSchema for $t {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": $description,
                })
            }
        }
    };
}
schema_as_text!(
    Dimension,
    "Dimension",
    "^(model|provider|feature|user|tag:.+)$",
    "model, provider, feature, user or tag:KEY (the value of one tag key)"
);
schema_as_text!(
    Grouping,
    "Grouping",
    "^(model|provider|feature|user|day|week|hour_of_day|day_of_week|tag:.+)$",
    "model, provider, feature, user, tag:KEY, day (UTC), week (starting Monday, UTC), \
     hour_of_day (the UTC hour of the day, every day of the period together) or day_of_week \
     (the UTC weekday, every such day of the period together)"
);

/// Usage whose `dimension` is one of `values` (or, with `exclude`, none of them). Values match
/// exactly as stored, and a record without the dimension (no user, no feature, no such tag)
/// has the value [`NONE_KEY`]; resolving what a person typed to a stored name is the caller's
/// job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Filter {
    pub dimension: Dimension,
    /// The values as stored (`(none)`: records without the dimension).
    pub values: Vec<String>,
    /// Usage whose value is none of `values`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclude: bool,
}

impl Filter {
    /// `dimension` is `value`.
    pub fn is(dimension: Dimension, value: impl Into<String>) -> Filter {
        Filter {
            dimension,
            values: vec![value.into()],
            exclude: false,
        }
    }
}

/// A slice of usage: every filter holds (an empty scope is the whole org).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Scope {
    pub filters: Vec<Filter>,
}

impl Scope {
    pub fn all() -> Scope {
        Scope::default()
    }

    pub fn is_all(&self) -> bool {
        self.filters.is_empty()
    }

    /// This scope narrowed by one more filter.
    pub fn and(mut self, filter: Filter) -> Scope {
        self.filters.push(filter);
        self
    }

    /// The values a non-excluding filter on `dimension` allows, if there is one.
    pub fn values_of(&self, dimension: &Dimension) -> Option<&[String]> {
        self.filters
            .iter()
            .find(|f| &f.dimension == dimension && !f.exclude)
            .map(|f| f.values.as_slice())
    }

    /// Checks the bounds ([`MAX_FILTERS`], [`MAX_FILTER_VALUES`]) and that no filter is empty.
    pub fn validate(&self) -> Result<(), QuerySpecError> {
        if self.filters.len() > MAX_FILTERS {
            return Err(QuerySpecError(format!("at most {MAX_FILTERS} filters")));
        }
        for f in &self.filters {
            if f.values.is_empty() || f.values.len() > MAX_FILTER_VALUES {
                return Err(QuerySpecError(format!(
                    "a `{}` filter takes 1 to {MAX_FILTER_VALUES} values",
                    f.dimension
                )));
            }
        }
        Ok(())
    }
}

/// One question to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageQuery {
    pub period: Period,
    /// Filters that all hold (empty: the whole org).
    #[serde(default)]
    pub scope: Scope,
    /// `None`: totals only.
    #[serde(default)]
    pub group_by: Option<Grouping>,
}

impl UsageQuery {
    /// The whole org over `period`, not grouped.
    pub fn totals(period: Period) -> UsageQuery {
        UsageQuery {
            period,
            scope: Scope::all(),
            group_by: None,
        }
    }
}

impl From<Dimension> for Grouping {
    fn from(d: Dimension) -> Grouping {
        Grouping::By(d)
    }
}

/// One group of a [`UsageSlice`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupTotals {
    /// The group's value (`(none)` for records without it), or its day, week or hour of the
    /// day.
    pub key: String,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// The engine's answer to a [`UsageQuery`]: the slice's totals, and its groups (empty when not
/// grouped) by cost descending then key ascending, or in time order for the time groupings
/// (days, weeks and hours of the day by key ascending, weekdays Monday first; only those with
/// usage are listed). At most [`MAX_GROUPS`] groups are listed; `truncated` says that more exist (the first ones in
/// that order are kept, and `totals` still counts them all).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageSlice {
    pub totals: UsageTotals,
    pub rows: Vec<GroupTotals>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// How many calls carry one tag value within a period: what names in a question resolve
/// against ("the growth team" is `team=growth`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCount {
    pub key: String,
    pub value: String,
    pub calls: i64,
}

/// Most tag values `OrgUsageQueries::tags` returns, by calls descending: a tag holding
/// per-request ids must not turn name resolution into a scan of every record.
pub const MAX_TAG_VALUES: usize = 1_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for s in [
            "model",
            "provider",
            "feature",
            "user",
            "tag:team",
            "tag:a:b",
            "day",
            "week",
            "hour_of_day",
            "day_of_week",
        ] {
            let g: Grouping = s.parse().unwrap();
            assert_eq!(g.to_string(), s);
            assert_eq!(serde_json::to_value(&g).unwrap(), serde_json::json!(s));
        }
        assert_eq!(
            "tag:team".parse::<Dimension>(),
            Ok(Dimension::Tag("team".into()))
        );
    }

    #[test]
    fn unknown_and_empty_forms_are_refused() {
        assert!("hour".parse::<Grouping>().is_err());
        assert!("hour_of_day".parse::<Dimension>().is_err());
        assert!("tag:".parse::<Dimension>().is_err());
        assert!("day".parse::<Dimension>().is_err());
        let long = format!("tag:{}", "k".repeat(MAX_TAG_KEY_CHARS + 1));
        assert!(long.parse::<Dimension>().is_err());
    }

    #[test]
    fn scope_bounds() {
        let ok = Scope::all().and(Filter::is(Dimension::Feature, "support-bot"));
        assert!(ok.validate().is_ok());
        let empty = Scope::all().and(Filter {
            dimension: Dimension::Model,
            values: vec![],
            exclude: false,
        });
        assert!(empty.validate().is_err());
        let many = Scope {
            filters: vec![Filter::is(Dimension::User, "u"); MAX_FILTERS + 1],
        };
        assert!(many.validate().is_err());
    }

    #[test]
    fn a_filter_serialises_plainly() {
        let f = Filter::is(Dimension::Tag("team".into()), "growth");
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::json!({"dimension": "tag:team", "values": ["growth"]})
        );
    }
}
