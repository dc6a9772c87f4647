//! The tools the LLM planner's model may call, and only these: each reads (the question
//! plan, the org's names, the query engine, the forecast, what-if pricing); none writes. Their
//! JSON Schemas are generated from the Rust types of their arguments ([`definitions`]), the
//! plan's and the query engine's own types (`UsageQuery`, `Scope`, `WhatIf`), so the schema
//! the model sees and what the tool accepts cannot drift apart. Each call runs through
//! [`Agent::call`], so it streams `tool_executing` with the model's arguments and
//! `tool_completed` with the result the model is given.

use std::future::Future;

use apogee_analytics::{OrgUsageQueries, Period, PriceCatalog, Scope, UsageQuery};
use apogee_llm::Tool;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::findings::totals_json;
use crate::format::count;
use crate::plan::{QuestionPlan, WhatIf};
use crate::question::names::OrgNames;
use crate::question::{PlanContext, names_period, plan_question};
use crate::scope::{Agent, StepError};
use crate::tools::planning::{describe, read_org_names};
use crate::tools::savings::price_what_if;
use crate::tools::trends::forecast_month_end;
use crate::tools::{ToolCall, ToolError, ToolOutput};

/// Rows of a grouped answer the model is shown (the totals still count them all).
const MAX_ROWS: usize = 25;
/// Names of each kind the model is shown.
const MAX_NAMES: usize = 50;
/// Characters of unparsable arguments echoed in the step list.
const MAX_ECHO: usize = 2_000;

/// What the tools read.
pub(crate) struct Toolbox<'a> {
    pub usage: &'a dyn OrgUsageQueries,
    pub catalog: &'a PriceCatalog,
    pub now: DateTime<Utc>,
    pub previous: Option<&'a QuestionPlan>,
}

/// `plan_question`: Apogee's own reading of a question.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PlanQuestionArgs {
    /// The question, in the user's words.
    question: String,
}

/// `read_org_names`: the names with usage in a period.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NamesArgs {
    period: Period,
}

/// `forecast_month_end`: this month's projected spend.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ForecastArgs {
    /// Filters that all hold (empty: the whole org).
    #[serde(default)]
    scope: Scope,
}

/// `price_what_if`: the scope's traffic priced another way.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WhatIfArgs {
    period: Period,
    /// Filters that all hold (empty: the whole org).
    #[serde(default)]
    scope: Scope,
    what_if: WhatIf,
}

/// The name, description and argument type of each tool, in the order offered.
macro_rules! toolset {
    ($(($name:literal, $args:ty, $description:literal),)*) => {
        /// The tools offered to the model, with their generated schemas.
        pub(crate) fn definitions() -> Vec<Tool> {
            vec![$(Tool::function($name, $description, schema::<$args>()),)*]
        }

        /// The tools' names.
        pub(crate) const NAMES: &[&str] = &[$($name,)*];
    };
}

toolset! {
    ("plan_question", PlanQuestionArgs,
     "Reads a question into Apogee's typed question plan: intent, measures, scope (names resolved against the org's own), grouping, period (RFC 3339, from included, to excluded), comparison, ranking, what-if. Start here to learn the period and names a question means."),
    ("read_org_names", NamesArgs,
     "The models, providers, features, users and tag values that have usage in a period."),
    ("measure_usage", UsageQuery,
     "Spend (USD), calls, tokens, unpriced and error calls of a scope over a period, in total and per group when group_by is set (groups by spend, largest first; days, weeks, hours of the day and weekdays in order)."),
    ("measure_latency", UsageQuery,
     "Latency percentiles (p50, p95, p99 in ms) and calls of a scope over a period, in total and per group when group_by is set."),
    ("forecast_month_end", ForecastArgs,
     "Where this calendar month's spend of a scope is heading: spend so far, run rate and projected month-end total (USD)."),
    ("price_what_if", WhatIfArgs,
     "The scope's traffic over a period priced another way with the price catalog, model by model: moved to another model, or sent through the provider's Batch API."),
}

/// The schema of `T` as one self-contained object (no `$ref`s: some servers take none).
fn schema<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut value = generator.into_root_schema_for::<T>().to_value();
    if let Some(o) = value.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    value
}

fn parse<T: DeserializeOwned>(args: Value) -> Result<T, ToolError> {
    serde_json::from_value(args).map_err(|e| ToolError::Arguments(e.to_string()))
}

fn query(args: Value) -> Result<UsageQuery, ToolError> {
    let q: UsageQuery = parse(args)?;
    if q.period.from >= q.period.to {
        return Err(ToolError::Arguments(
            "the period's `from` must be before its `to`".into(),
        ));
    }
    q.scope.validate().map_err(|e| ToolError::Arguments(e.0))?;
    Ok(q)
}

/// Runs one call the model made; the result (or the error) the model is given back. A step
/// error (cancelled, the stream gone) ends the run.
pub(crate) async fn call(
    agent: &Agent,
    tb: &Toolbox<'_>,
    call: &apogee_llm::ToolCall,
) -> Result<Result<Value, ToolError>, StepError> {
    let name = call.function.name.as_str();
    let args: Value = match serde_json::from_str(call.function.arguments.trim_start()) {
        Ok(v) => v,
        // Some servers send no arguments for a tool that takes none.
        Err(_) if call.function.arguments.trim().is_empty() => json!({}),
        Err(e) => {
            let echo: String = call.function.arguments.chars().take(MAX_ECHO).collect();
            let known = NAMES.iter().find(|n| **n == name).copied();
            let error = ToolError::Arguments(format!("not valid JSON: {e}"));
            return run(
                agent,
                ToolCall {
                    name: known.unwrap_or("unknown_tool"),
                    args: json!({ "name": name, "unparsed": echo }),
                    run: async move { Err(error) },
                },
            )
            .await;
        }
    };
    match name {
        "plan_question" => run(agent, tool("plan_question", args, |a| plan(tb, a))).await,
        "read_org_names" => run(agent, tool("read_org_names", args, |a| names(tb, a))).await,
        "measure_usage" => run(agent, tool("measure_usage", args, |a| measure(tb, a))).await,
        "measure_latency" => run(agent, tool("measure_latency", args, |a| latency(tb, a))).await,
        "forecast_month_end" => {
            run(agent, tool("forecast_month_end", args, |a| forecast(tb, a))).await
        }
        "price_what_if" => run(agent, tool("price_what_if", args, |a| what_if(tb, a))).await,
        other => {
            let error = ToolError::UnknownTool(other.chars().take(100).collect());
            run(
                agent,
                ToolCall {
                    name: "unknown_tool",
                    args: json!({ "name": other, "arguments": args }),
                    run: async move { Err(error) },
                },
            )
            .await
        }
    }
}

/// A call of tool `name` with the model's `args` (shown as they are), run by `body`.
fn tool<F, Fut>(name: &'static str, args: Value, body: F) -> ToolCall<Fut>
where
    F: FnOnce(Value) -> Fut,
    Fut: Future<Output = Result<ToolOutput<Value>, ToolError>>,
{
    ToolCall {
        name,
        run: body(args.clone()),
        args,
    }
}

async fn run<F>(agent: &Agent, call: ToolCall<F>) -> Result<Result<Value, ToolError>, StepError>
where
    F: Future<Output = Result<ToolOutput<Value>, ToolError>>,
{
    match agent.call(call).await {
        Ok(v) => Ok(Ok(v)),
        Err(StepError::Tool(e)) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// A period's calendar figures as numbers: the grounding check reads numbers, not the text of
/// instants, so "the last 30 days" or "October 2026" in an answer needs them.
fn period_figures(p: &Period) -> Value {
    use chrono::Datelike;
    let last = p.to - chrono::Duration::seconds(1);
    let seconds = (p.to - p.from).num_seconds().max(0);
    json!({
        "days": seconds as f64 / 86_400.0,
        "hours": seconds as f64 / 3_600.0,
        "first_day": [p.from.year(), p.from.month(), p.from.day()],
        "last_day": [last.year(), last.month(), last.day()],
    })
}

fn output(summary: String, data: Value) -> ToolOutput<Value> {
    ToolOutput {
        value: data.clone(),
        summary,
        data,
    }
}

async fn plan(tb: &Toolbox<'_>, args: Value) -> Result<ToolOutput<Value>, ToolError> {
    let a: PlanQuestionArgs = parse(args)?;
    let names = match names_period(&a.question, tb.now, tb.previous) {
        Some(period) => read_org_names(tb.usage, period).run.await?.value,
        None => OrgNames::default(),
    };
    let catalog_models: Vec<String> = tb
        .catalog
        .entries()
        .iter()
        .map(|e| e.model.clone())
        .collect();
    let ctx = PlanContext {
        now: tb.now,
        names: &names,
        catalog_models: &catalog_models,
        previous: tb.previous,
    };
    let p = plan_question(&a.question, &ctx);
    let summary = describe(&p);
    let mut data = json!({
        "plan": p,
        "described": summary,
        "period_figures": period_figures(&p.period.period()),
    });
    if let Some(c) = &p.compare {
        data["compare_figures"] = period_figures(&c.period());
    }
    Ok(output(summary, data))
}

async fn names(tb: &Toolbox<'_>, args: Value) -> Result<ToolOutput<Value>, ToolError> {
    let a: NamesArgs = parse(args)?;
    let out = read_org_names(tb.usage, a.period).run.await?;
    let n = &out.value;
    let first = |v: &[String]| v.iter().take(MAX_NAMES).cloned().collect::<Vec<_>>();
    let tags: Vec<Value> = n
        .tags
        .iter()
        .take(MAX_NAMES)
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    Ok(output(
        out.summary,
        json!({
            "models": first(&n.models),
            "providers": first(&n.providers),
            "features": first(&n.features),
            "users": first(&n.users),
            "tags": tags,
            "shown_at_most": MAX_NAMES,
        }),
    ))
}

async fn measure(tb: &Toolbox<'_>, args: Value) -> Result<ToolOutput<Value>, ToolError> {
    let q = query(args)?;
    let slice = tb.usage.aggregate(&q).await?;
    let rows: Vec<Value> = slice
        .rows
        .iter()
        .take(MAX_ROWS)
        .map(|g| {
            let mut row = totals_json(&g.totals);
            row["key"] = json!(g.key);
            row
        })
        .collect();
    let summary = format!(
        "{} across {} calls{}",
        slice.totals.cost.display_usd(),
        count(slice.totals.calls),
        if slice.rows.is_empty() {
            String::new()
        } else {
            format!(", {} groups", count(slice.rows.len() as i64))
        }
    );
    Ok(output(
        summary,
        json!({
            "totals": totals_json(&slice.totals),
            "groups": slice.rows.len(),
            "rows": rows,
            "rows_shown_at_most": MAX_ROWS,
            "truncated": slice.truncated,
            "period_figures": period_figures(&q.period),
        }),
    ))
}

async fn latency(tb: &Toolbox<'_>, args: Value) -> Result<ToolOutput<Value>, ToolError> {
    let q = query(args)?;
    let mut slice = tb.usage.latency(&q).await?;
    let groups = slice.rows.len();
    slice.rows.truncate(MAX_ROWS);
    let summary = format!("latency of {} calls", count(slice.totals.calls));
    let mut data = serde_json::to_value(&slice).unwrap_or(Value::Null);
    data["groups"] = json!(groups);
    data["period_figures"] = period_figures(&q.period);
    Ok(output(summary, data))
}

async fn forecast(tb: &Toolbox<'_>, args: Value) -> Result<ToolOutput<Value>, ToolError> {
    let a: ForecastArgs = parse(args)?;
    a.scope.validate().map_err(|e| ToolError::Arguments(e.0))?;
    let out = forecast_month_end(tb.usage, tb.now, a.scope).run.await?;
    Ok(output(out.summary, out.data))
}

async fn what_if(tb: &Toolbox<'_>, args: Value) -> Result<ToolOutput<Value>, ToolError> {
    let a: WhatIfArgs = parse(args)?;
    let q = query(json!({ "period": a.period, "scope": a.scope }))?;
    if let WhatIf::MoveToModel { to } = &a.what_if
        && tb.catalog.lookup(to).is_none()
    {
        return Err(ToolError::Arguments(format!(
            "`{to}` is not a model of the price catalog"
        )));
    }
    let out = price_what_if(tb.usage, tb.catalog, q, &a.what_if)
        .run
        .await?;
    Ok(output(out.summary, out.data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_without_references() {
        let tools = definitions();
        assert_eq!(tools.len(), NAMES.len());
        for t in &tools {
            let p = &t.function.parameters;
            assert_eq!(p["type"], "object", "{}: {p}", t.function.name);
            let text = p.to_string();
            assert!(!text.contains("$ref"), "{}: {text}", t.function.name);
        }
        let measure = &tools[2].function.parameters;
        assert_eq!(measure["required"], json!(["period"]));
        assert_eq!(
            measure["properties"]["period"]["properties"]["from"]["format"],
            "date-time"
        );
        assert!(
            measure["properties"]["group_by"]
                .to_string()
                .contains("tag:")
        );
        let what_if = tools[5].function.parameters.to_string();
        assert!(
            what_if.contains("move_to_model") && what_if.contains("batch_api"),
            "{what_if}"
        );
    }
}
