//! `classify_question`: the triage rules of [`crate::triage`] as a tool, so the plan the
//! supervisor follows is visible in the stream.

use std::future::Future;

use apogee_analytics::PriceCatalog;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{ToolCall, ToolError, ToolOutput};
use crate::findings::triage_json;
use crate::triage::{self, Triage};

pub(crate) fn classify_question<'a>(
    question: &'a str,
    now: DateTime<Utc>,
    catalog: &'a PriceCatalog,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Triage>, ToolError>> + Send + 'a> {
    ToolCall {
        name: "classify_question",
        args: json!({ "question": question }),
        run: async move {
            let t = triage::classify(question, now, catalog);
            let mut summary = format!(
                "{} over {} ({})",
                t.intent.as_str(),
                t.period_text,
                t.period.label()
            );
            if let Some(m) = &t.model {
                summary.push_str(&format!("; model {m}"));
            }
            if let Some(f) = &t.feature {
                summary.push_str(&format!("; feature `{f}`"));
            }
            if let Some(u) = &t.user {
                summary.push_str(&format!("; user {u}"));
            }
            Ok(ToolOutput {
                data: triage_json(&t),
                summary,
                value: t,
            })
        },
    }
}
