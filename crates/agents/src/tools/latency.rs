//! `latency_by_model`: p50/p95/p99 latency and the error rate of each model in the period
//! (nearest-rank percentiles over the calls that reported a latency).

use std::future::Future;

use apogee_analytics::{LatencyRow, OrgUsageQueries, Period};
use serde_json::json;

use super::{ToolCall, ToolError, ToolOutput, period_args};
use crate::findings::latency_json;

/// "gpt-4o p95 1,840 ms, 1.2% errors" for the busiest model, or what is missing.
pub(crate) fn latency_sentence(rows: &[LatencyRow]) -> String {
    match rows.first() {
        None => "no calls in the period".to_string(),
        Some(top) => match top.stats.p95_ms {
            Some(p95) => format!(
                "{} models; the busiest, {}, has p50 {} ms, p95 {p95} ms, p99 {} ms and {:.1}% errors",
                rows.len(),
                top.key,
                top.stats.p50_ms.unwrap_or(p95),
                top.stats.p99_ms.unwrap_or(p95),
                top.stats.error_rate() * 100.0
            ),
            None => format!(
                "{} models; the busiest, {}, reported no latency; {:.1}% errors",
                rows.len(),
                top.key,
                top.stats.error_rate() * 100.0
            ),
        },
    }
}

pub(crate) fn latency_by_model<'a>(
    usage: &'a dyn OrgUsageQueries,
    period: &'a Period,
) -> ToolCall<impl Future<Output = Result<ToolOutput<Vec<LatencyRow>>, ToolError>> + Send + 'a> {
    ToolCall {
        name: "latency_by_model",
        args: period_args(period),
        run: async move {
            let rows = usage.latency_by_model(period).await?;
            Ok(ToolOutput {
                summary: latency_sentence(&rows),
                data: json!({ "models": latency_json(&rows) }),
                value: rows,
            })
        },
    }
}
