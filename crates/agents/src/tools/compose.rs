//! `compose_report`: renders the markdown answer from the run's results
//! ([`crate::report::render`]) and stores it as the run's assistant message.

use std::future::Future;

use serde_json::json;

use super::{ToolCall, ToolError, ToolOutput};
use crate::report::{ReportInput, render};
use crate::scope::Agent;

pub(crate) fn compose_report<'a>(
    agent: &'a Agent,
    input: &'a ReportInput<'a>,
) -> ToolCall<impl Future<Output = Result<ToolOutput<()>, ToolError>> + Send + 'a> {
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
            "intent": input.triage.intent.as_str(),
            "period": input.triage.period.label(),
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
                value: (),
            })
        },
    }
}
