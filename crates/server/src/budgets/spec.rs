//! What a budget is, as a client writes it and as the server checks it: the JSON bodies of
//! `POST` and `PATCH /api/budgets` read into a [`BudgetSpec`], its scope in the same names as
//! `GET /api/costs`' filters (`{"feature": ["support-bot"], "not.model": ["gpt-4o-mini"],
//! "tag.team": "growth"}`), and the calendar period a moment falls in. Anything unknown or out
//! of range is refused with a message that says what is wrong.

pub use apogee_analytics::BudgetPeriod;
use apogee_analytics::{Dimension, Filter, Nanos, Scope};
use apogee_store::BudgetRow;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Thresholds when a budget names none, percent.
pub const DEFAULT_THRESHOLDS: [u32; 3] = [50, 80, 100];
/// Most thresholds one budget may have, and the highest percent one may be.
pub const MAX_THRESHOLDS: usize = 10;
pub const MAX_THRESHOLD_PERCENT: u32 = 1_000;
/// Largest amount a budget may have: $1 billion (its nanodollars fit 64 bits many times).
pub const MAX_AMOUNT_USD: f64 = 1e9;
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A budget as checked: what the store keeps, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSpec {
    pub name: String,
    pub amount: Nanos,
    pub period: BudgetPeriod,
    pub scope: Scope,
    pub thresholds: Vec<u32>,
    pub forecast_alert: bool,
}

/// A new budget, typed; checked by [`BudgetSpec::new`].
#[derive(Debug, Clone)]
pub struct NewBudget {
    pub name: Option<String>,
    pub amount_usd: f64,
    pub period: BudgetPeriod,
    pub scope: Scope,
    pub thresholds: Option<Vec<i64>>,
    pub forecast_alert: Option<bool>,
}

/// What changes in a budget (`None`: kept); checked by [`BudgetSpec::with`].
#[derive(Debug, Clone, Default)]
pub struct BudgetChange {
    pub name: Option<String>,
    pub amount_usd: Option<f64>,
    pub period: Option<BudgetPeriod>,
    pub scope: Option<Scope>,
    pub thresholds: Option<Vec<i64>>,
    pub forecast_alert: Option<bool>,
}

/// `POST /api/budgets`' body. Every field but `amount_usd` has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBody {
    name: Option<String>,
    amount_usd: f64,
    period: Option<String>,
    scope: Option<Map<String, Value>>,
    thresholds: Option<Vec<i64>>,
    forecast_alert: Option<bool>,
}

/// `PATCH /api/budgets/{id}`' body: what changes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    name: Option<String>,
    amount_usd: Option<f64>,
    period: Option<String>,
    scope: Option<Map<String, Value>>,
    thresholds: Option<Vec<i64>>,
    forecast_alert: Option<bool>,
}

fn json_error(e: serde_json::Error) -> String {
    format!("the body is not a budget: {e}")
}

impl BudgetSpec {
    /// Reads a `POST` body.
    pub fn from_new(body: &[u8]) -> Result<BudgetSpec, String> {
        let b: NewBody = serde_json::from_slice(body).map_err(json_error)?;
        let scope = match &b.scope {
            Some(s) => scope_from_json(s)?,
            None => Scope::all(),
        };
        BudgetSpec::new(NewBudget {
            name: b.name,
            amount_usd: b.amount_usd,
            period: match &b.period {
                Some(p) => BudgetPeriod::parse(p)?,
                None => BudgetPeriod::Month,
            },
            scope,
            thresholds: b.thresholds,
            forecast_alert: b.forecast_alert,
        })
    }

    /// Checks a new budget, typed: what `POST /api/budgets` and the chat's `set_budget` both
    /// go through. Unnamed, it is named after its scope; without thresholds it takes
    /// [`DEFAULT_THRESHOLDS`].
    pub fn new(b: NewBudget) -> Result<BudgetSpec, String> {
        b.scope.validate().map_err(|e| e.to_string())?;
        let spec = BudgetSpec {
            name: match b.name {
                Some(n) => n,
                None => default_name(&b.scope),
            },
            amount: amount(b.amount_usd)?,
            period: b.period,
            scope: b.scope,
            thresholds: match b.thresholds {
                Some(t) => thresholds(&t)?,
                None => DEFAULT_THRESHOLDS.to_vec(),
            },
            forecast_alert: b.forecast_alert.unwrap_or(true),
        };
        spec.check_name()?;
        Ok(spec)
    }

    /// This budget changed by a `PATCH` body.
    pub fn changed(self, body: &[u8]) -> Result<BudgetSpec, String> {
        let b: ChangeBody = serde_json::from_slice(body).map_err(json_error)?;
        let change = BudgetChange {
            name: b.name,
            amount_usd: b.amount_usd,
            period: b.period.as_deref().map(BudgetPeriod::parse).transpose()?,
            scope: b.scope.as_ref().map(scope_from_json).transpose()?,
            thresholds: b.thresholds,
            forecast_alert: b.forecast_alert,
        };
        self.with(change)
    }

    /// This budget with `change` applied and checked: what `PATCH /api/budgets/{id}` and the
    /// chat's `set_budget` on an existing budget both go through.
    pub fn with(mut self, change: BudgetChange) -> Result<BudgetSpec, String> {
        if let Some(n) = change.name {
            self.name = n;
        }
        if let Some(a) = change.amount_usd {
            self.amount = amount(a)?;
        }
        if let Some(p) = change.period {
            self.period = p;
        }
        if let Some(s) = change.scope {
            s.validate().map_err(|e| e.to_string())?;
            self.scope = s;
        }
        if let Some(t) = change.thresholds {
            self.thresholds = thresholds(&t)?;
        }
        if let Some(f) = change.forecast_alert {
            self.forecast_alert = f;
        }
        self.check_name()?;
        Ok(self)
    }

    fn check_name(&self) -> Result<(), String> {
        let n = self.name.trim().chars().count();
        if n == 0 || n > MAX_NAME_CHARS || self.name.chars().any(char::is_control) {
            return Err(format!(
                "`name` has 1 to {MAX_NAME_CHARS} characters and no control characters"
            ));
        }
        Ok(())
    }

    /// Whether `other` measures something else (so it alerts afresh): all but the name.
    pub fn measures_differently(&self, other: &BudgetSpec) -> bool {
        (
            self.amount,
            self.period,
            &self.scope,
            &self.thresholds,
            self.forecast_alert,
        ) != (
            other.amount,
            other.period,
            &other.scope,
            &other.thresholds,
            other.forecast_alert,
        )
    }

    /// Reads a stored budget back.
    pub fn from_row(row: &BudgetRow) -> Result<BudgetSpec, String> {
        let scope: Scope =
            serde_json::from_str(&row.scope).map_err(|e| format!("stored scope: {e}"))?;
        let thresholds: Vec<u32> =
            serde_json::from_str(&row.thresholds).map_err(|e| format!("stored thresholds: {e}"))?;
        Ok(BudgetSpec {
            name: row.name.clone(),
            amount: Nanos::from(row.amount_nanos),
            period: BudgetPeriod::parse(&row.period)?,
            scope,
            thresholds,
            forecast_alert: row.forecast_alert,
        })
    }

    /// The amount in nanodollars; within `i64` by [`MAX_AMOUNT_USD`].
    pub fn amount_nanos(&self) -> i64 {
        self.amount.to_i64().unwrap_or(i64::MAX)
    }

    /// The scope (JSON) and thresholds (JSON) as the store keeps them.
    pub fn stored_texts(&self) -> (String, String) {
        (
            serde_json::to_string(&self.scope).unwrap_or_else(|_| "[]".into()),
            serde_json::to_string(&self.thresholds).unwrap_or_else(|_| "[]".into()),
        )
    }
}

fn amount(usd: f64) -> Result<Nanos, String> {
    if !usd.is_finite() || usd <= 0.0 {
        return Err("the amount (`amount_usd`) must be above $0".into());
    }
    if usd > MAX_AMOUNT_USD {
        return Err("the amount (`amount_usd`) is at most $1,000,000,000".into());
    }
    Ok(Nanos::from_usd(usd))
}

fn thresholds(given: &[i64]) -> Result<Vec<u32>, String> {
    if given.is_empty() || given.len() > MAX_THRESHOLDS {
        return Err(format!("`thresholds` lists 1 to {MAX_THRESHOLDS} percents"));
    }
    let mut out = Vec::with_capacity(given.len());
    for &t in given {
        match u32::try_from(t) {
            Ok(p) if (1..=MAX_THRESHOLD_PERCENT).contains(&p) => out.push(p),
            _ => {
                return Err(format!(
                    "a threshold is a whole percent from 1 to {MAX_THRESHOLD_PERCENT}, not {t}"
                ));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

const SCOPE_KEYS: &str =
    "model, provider, feature, user, tag.KEY (and not.model … not.tag.KEY to exclude)";

/// The dimension a scope key names (`tag.team` is the tag `team`).
fn dimension(name: &str) -> Result<Dimension, String> {
    match name {
        "model" => Ok(Dimension::Model),
        "provider" => Ok(Dimension::Provider),
        "feature" => Ok(Dimension::Feature),
        "user" => Ok(Dimension::User),
        _ => match name.strip_prefix("tag.") {
            Some(key) => format!("tag:{key}")
                .parse::<Dimension>()
                .map_err(|e| format!("scope key `{name}`: {e}")),
            None => Err(format!("unknown scope key `{name}`: use {SCOPE_KEYS}")),
        },
    }
}

/// A scope written as `GET /api/costs`' filters, each a value or a list of values.
pub fn scope_from_json(object: &Map<String, Value>) -> Result<Scope, String> {
    let mut filters = Vec::new();
    for (name, value) in object {
        let (exclude, dim_name) = match name.strip_prefix("not.") {
            Some(rest) => (true, rest),
            None => (false, name.as_str()),
        };
        let dimension = dimension(dim_name).map_err(|e| {
            if e.starts_with("unknown scope key") {
                format!("unknown scope key `{name}`: use {SCOPE_KEYS}")
            } else {
                e
            }
        })?;
        let values: Vec<String> = match value {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("scope `{name}` lists strings only"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(format!("scope `{name}` is a string or a list of strings")),
        };
        if values.iter().any(String::is_empty) {
            return Err(format!("scope `{name}` has an empty value"));
        }
        let mut values = values;
        values.dedup();
        filters.push(Filter {
            dimension,
            values,
            exclude,
        });
    }
    let scope = Scope { filters };
    scope.validate().map_err(|e| e.to_string())?;
    Ok(scope)
}

/// A scope as the API shows it: the same object form it is written in.
pub fn scope_to_json(scope: &Scope) -> Value {
    let mut out = Map::new();
    for f in &scope.filters {
        let key = match &f.dimension {
            Dimension::Tag(k) => format!("tag.{k}"),
            d => d.kind().to_string(),
        };
        let key = if f.exclude { format!("not.{key}") } else { key };
        out.insert(key, Value::from(f.values.clone()));
    }
    Value::Object(out)
}

fn default_name(scope: &Scope) -> String {
    if scope.is_all() {
        return "Whole org".into();
    }
    let parts: Vec<String> = scope
        .filters
        .iter()
        .map(|f| {
            // "team growth" rather than the engine's "tag:team growth".
            let dimension = match &f.dimension {
                Dimension::Tag(key) => key.clone(),
                d => d.to_string(),
            };
            format!(
                "{}{dimension} {}",
                if f.exclude { "not " } else { "" },
                f.values.join(", ")
            )
        })
        .collect();
    let name = parts.join("; ");
    name.chars().take(MAX_NAME_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_budget_takes_defaults() {
        let s =
            BudgetSpec::from_new(br#"{"amount_usd": 2000, "scope": {"feature": "support-bot"}}"#)
                .unwrap();
        assert_eq!(s.amount, Nanos(2_000_000_000_000));
        assert_eq!(s.period, BudgetPeriod::Month);
        assert_eq!(s.thresholds, DEFAULT_THRESHOLDS);
        assert!(s.forecast_alert);
        assert_eq!(s.name, "feature support-bot");
        let t =
            BudgetSpec::from_new(br#"{"amount_usd": 5, "scope": {"tag.team": "growth"}}"#).unwrap();
        assert_eq!(t.name, "team growth");
        assert_eq!(
            s.scope,
            Scope::all().and(Filter::is(Dimension::Feature, "support-bot"))
        );
        assert_eq!(
            scope_to_json(&s.scope),
            serde_json::json!({"feature": ["support-bot"]})
        );
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        for (body, says) in [
            (r#"{"amount_usd": -5}"#, "above $0"),
            (r#"{"amount_usd": 0}"#, "above $0"),
            (r#"{"amount_usd": 1e12}"#, "at most"),
            (r#"{}"#, "missing field `amount_usd`"),
            (r#"{"amount_usd": 5, "amout": 1}"#, "unknown field `amout`"),
            (
                r#"{"amount_usd": 5, "period": "year"}"#,
                "unknown period `year`",
            ),
            (
                r#"{"amount_usd": 5, "scope": {"team": "x"}}"#,
                "unknown scope key `team`",
            ),
            (
                r#"{"amount_usd": 5, "scope": {"not.day": "x"}}"#,
                "unknown scope key `not.day`",
            ),
            (
                r#"{"amount_usd": 5, "scope": {"feature": ""}}"#,
                "empty value",
            ),
            (
                r#"{"amount_usd": 5, "scope": {"feature": 3}}"#,
                "a string or a list",
            ),
            (r#"{"amount_usd": 5, "thresholds": []}"#, "1 to 10 percents"),
            (r#"{"amount_usd": 5, "thresholds": [0]}"#, "not 0"),
            (r#"{"amount_usd": 5, "name": ""}"#, "`name` has 1 to 100"),
            ("not json", "not a budget"),
        ] {
            let e = BudgetSpec::from_new(body.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name() {
        let s =
            BudgetSpec::from_new(br#"{"amount_usd": 10, "thresholds": [100, 50, 50]}"#).unwrap();
        assert_eq!(s.thresholds, [50, 100]);
        let t = s.clone().changed(br#"{"name": "renamed"}"#).unwrap();
        assert!(!s.measures_differently(&t));
        let u = s.clone().changed(br#"{"amount_usd": 20}"#).unwrap();
        assert!(s.measures_differently(&u));
        assert!(s.clone().changed(br#"{"amount_usd": -1}"#).is_err());
    }
}
