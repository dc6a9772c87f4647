//! `compose_report` (the full analysis report, [`crate::answer::analysis::render`]) and
//! `compose_answer` (a focused or short answer rendered by the writer the plan calls for):
//! each renders the markdown and stores it as the run's assistant message.

use std::future::Future;

use serde_json::json;

use super::{ToolCall, ToolError, ToolOutput};
use crate::answer::analysis::{Rendered, ReportInput, render};
use crate::answer::figure::Answer;
use crate::scope::Agent;

pub(crate) fn compose_report<'a>(
    agent: &'a Agent,
    input: &'a ReportInput<'a>,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Rendered>, ToolError>> + Send + 'a> {
    let sections = [
        Some("overview"),
        Some("by_model"),
        Some("by_feature"),
        Some("by_day"),
        input.spike.map(|_| "spike"),
        input.savings.map(|_| "recommendations"),
    ];
    ToolCall {
        name: "compose_report",
        args: json!({
            "intent": input.plan.intent.as_str(),
            "period": input.plan.period.period().label(),
            "inputs": sections.iter().flatten().collect::<Vec<_>>(),
        }),
        run: async move {
            let rendered = render(input);
            agent
                .post_answer(&rendered.markdown)
                .await
                .map_err(ToolError::Answer)?;
            Ok(ToolOutput {
                summary: format!(
                    "posted a {}-section report ({} characters)",
                    rendered.sections.len(),
                    rendered.markdown.chars().count()
                ),
                data: json!({
                    "sections": rendered.sections,
                    "characters": rendered.markdown.chars().count(),
                }),
                value: rendered,
            })
        },
    }
}

/// Renders an answer of `kind` (`figure`, `forecast`, `what_if`, `conversation`, …) with
/// `write` and posts it.
pub(crate) fn compose_answer<'a, W>(
    agent: &'a Agent,
    kind: &'static str,
    write: W,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Answer>, ToolError>> + Send + 'a>
where
    W: FnOnce() -> Answer + Send + 'a,
{
    ToolCall {
        name: "compose_answer",
        args: json!({ "kind": kind }),
        run: async move {
            let answer = write();
            agent
                .post_answer(&answer.markdown)
                .await
                .map_err(ToolError::Answer)?;
            Ok(ToolOutput {
                summary: answer.lead.clone(),
                data: json!({
                    "lead": answer.lead,
                    "chart": answer.chart["kind"],
                    "characters": answer.markdown.chars().count(),
                }),
                value: answer,
            })
        },
    }
}
