//! The `performance` agent: latency of a figure plan's scope (`measure_latency`): nearest-rank
//! p50/p95/p99 over the calls that reported a latency, with calls and errors, for the slice and
//! each group, and for the comparison period when the plan has one.

use apogee_analytics::{Grouping, LatencySlice, OrgUsageQueries, UsageQuery, UsageTotals};

use crate::answer::figure::{FigureData, Group, Measured};
use crate::plan::QuestionPlan;
use crate::scope::{Agent, Done, StepError};
use crate::tools::usage::measure_latency;

/// The latency of `plan`'s slice, into `data` (groups matched by key; a group only the latency
/// has is added with its calls and errors).
pub(crate) async fn work(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    plan: &QuestionPlan,
    mut data: FigureData,
) -> Result<Done<FigureData>, StepError> {
    let query = |period, group_by: Option<Grouping>| UsageQuery {
        period,
        scope: plan.scope.clone(),
        group_by,
    };
    agent
        .think(format!(
            "Measuring p50/p95/p99 latency over {}{}.",
            plan.period.period().label(),
            plan.group_by
                .as_ref()
                .map_or(String::new(), |g| format!(", by {g}"))
        ))
        .await?;
    let current = agent
        .call(measure_latency(
            usage,
            query(plan.period.period(), plan.group_by.clone()),
            "the question",
        ))
        .await?;
    attach(&mut data.current, current);
    if let Some(c) = &plan.compare {
        let previous = agent
            .call(measure_latency(
                usage,
                query(c.period(), plan.group_by.clone()),
                "the comparison period",
            ))
            .await?;
        attach(
            data.previous.get_or_insert_with(Measured::default),
            previous,
        );
    }
    let summary = match data.current.latency.as_ref().and_then(|l| l.p95_ms) {
        Some(p95) => format!(
            "p95 {p95} ms over {} calls with a latency",
            data.current
                .latency
                .as_ref()
                .map_or(0, |l| l.latency_samples)
        ),
        None => "no call reported a latency".to_string(),
    };
    Ok(Done::new(data, summary))
}

/// Puts a latency answer into a measured slice.
fn attach(m: &mut Measured, slice: LatencySlice) {
    if m.totals == UsageTotals::default() {
        m.totals.calls = slice.totals.calls;
        m.totals.error_calls = slice.totals.error_calls;
    }
    m.latency = Some(slice.totals);
    for row in slice.rows {
        match m.groups.iter_mut().find(|g| g.key == row.key) {
            Some(g) => g.latency = Some(row.stats),
            None => m.groups.push(Group {
                key: row.key,
                totals: UsageTotals {
                    calls: row.stats.calls,
                    error_calls: row.stats.error_calls,
                    ..UsageTotals::default()
                },
                latency: Some(row.stats),
            }),
        }
    }
}
