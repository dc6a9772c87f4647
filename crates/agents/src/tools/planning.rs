//! The planning tools of triage: `read_org_names` (the features, users, models, providers and
//! tag values the org's usage has in a period, which a question's names resolve against) and
//! `plan_question` (the rule planner of [`crate::question`], so the plan the supervisor
//! follows is visible in the stream).

use std::future::Future;

use apogee_analytics::{Dimension, Grouping, NONE_KEY, OrgUsageQueries, Period, Scope, UsageQuery};
use serde_json::json;

use super::{ToolCall, ToolError, ToolOutput, period_args};
use crate::format::count;
use crate::plan::QuestionPlan;
use crate::question::names::OrgNames;
use crate::question::{PlanContext, plan_question as plan};

pub(crate) fn read_org_names<'a>(
    usage: &'a dyn OrgUsageQueries,
    period: Period,
) -> ToolCall<impl Future<Output = Result<ToolOutput<OrgNames>, ToolError>> + Send + 'a> {
    ToolCall {
        name: "read_org_names",
        args: period_args(&period),
        run: async move {
            let keys = |by: Dimension| {
                let q = UsageQuery {
                    period,
                    scope: Scope::all(),
                    group_by: Some(Grouping::By(by)),
                };
                async move {
                    let slice = usage.aggregate(&q).await?;
                    Ok::<Vec<String>, ToolError>(
                        slice
                            .rows
                            .into_iter()
                            .map(|r| r.key)
                            .filter(|k| k != NONE_KEY)
                            .collect(),
                    )
                }
            };
            // Independent reads: side by side they take as long as the slowest.
            let (models, providers, features, users, tags) = tokio::join!(
                keys(Dimension::Model),
                keys(Dimension::Provider),
                keys(Dimension::Feature),
                keys(Dimension::User),
                usage.tags(&period),
            );
            let names = OrgNames {
                models: models?,
                providers: providers?,
                features: features?,
                users: users?,
                tags: tags?.into_iter().map(|t| (t.key, t.value)).collect(),
            };
            let summary = format!(
                "{} models, {} providers, {} features, {} users and {} tag values with usage",
                count(names.models.len() as i64),
                count(names.providers.len() as i64),
                count(names.features.len() as i64),
                count(names.users.len() as i64),
                count(names.tags.len() as i64)
            );
            Ok(ToolOutput {
                data: json!({
                    "models": names.models.len(),
                    "providers": names.providers.len(),
                    "features": names.features.len(),
                    "users": names.users.len(),
                    "tag_values": names.tags.len(),
                }),
                summary,
                value: names,
            })
        },
    }
}

/// One line saying what a plan asks, for the step list and the run's summary.
pub(crate) fn describe(p: &QuestionPlan) -> String {
    let mut s = format!("{} over {}", p.intent.as_str(), p.period.text);
    if !p.measures.is_empty() {
        let m: Vec<&str> = p.measures.iter().map(|m| m.as_str()).collect();
        s.push_str(&format!("; measure {}", m.join(", ")));
    }
    if !p.scope.is_all() {
        let f: Vec<String> = p
            .scope
            .filters
            .iter()
            .map(|f| {
                format!(
                    "{}{}{}",
                    f.dimension,
                    if f.exclude { "!=" } else { "=" },
                    f.values.join(",")
                )
            })
            .collect();
        s.push_str(&format!("; scope {}", f.join(" ")));
    }
    if let Some(g) = &p.group_by {
        s.push_str(&format!("; by {g}"));
    }
    if let Some(r) = p.rank {
        s.push_str(&format!(
            "; {} {}",
            if r.order == crate::plan::Order::Highest {
                "top"
            } else {
                "bottom"
            },
            r.top.map_or("all".to_string(), |n| n.to_string())
        ));
    }
    if let Some(c) = &p.compare {
        s.push_str(&format!("; against {}", c.text));
    }
    if let Some(w) = &p.what_if {
        s.push_str(&format!(
            "; what if {}",
            serde_json::to_string(w).unwrap_or_default()
        ));
    }
    if !p.unknown_names.is_empty() {
        let u: Vec<&str> = p.unknown_names.iter().map(|u| u.typed.as_str()).collect();
        s.push_str(&format!("; no usage for {}", u.join(", ")));
    }
    if p.refines_previous {
        s.push_str("; refines the previous question");
    }
    s
}

pub(crate) fn plan_question<'a>(
    question: &'a str,
    ctx: PlanContext<'a>,
) -> ToolCall<impl Future<Output = Result<ToolOutput<QuestionPlan>, ToolError>> + Send + 'a> {
    ToolCall {
        name: "plan_question",
        args: json!({
            "question": question,
            "previous_plan": ctx.previous.is_some(),
            "now": apogee_protocol::time::instant(ctx.now),
        }),
        run: async move {
            let p = plan(question, &ctx);
            Ok(ToolOutput {
                summary: describe(&p),
                data: json!(p),
                value: p,
            })
        },
    }
}
