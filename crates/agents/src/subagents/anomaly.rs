//! The `anomaly` agent: explains a spend spike (`explain_spike`), for questions like "why did
//! spend jump on Tuesday?", then puts it in context: the last 7 days against the 7 before
//! (`compare_periods`, attributed by feature) and every outlier day (`detect_anomalies`).

use apogee_analytics::trends::Spike;
use apogee_analytics::{OrgUsageQueries, Period};
use chrono::{Datelike, Duration};

use crate::answer::explain::{change_sentence, spike_sentence};
use crate::findings::{UsageData, spike_json};
use crate::plan::QuestionPlan;
use crate::question::period::weekday_name;
use crate::scope::{Agent, Done, StepError};
use crate::tools::trends::{compare_periods, detect_anomalies, explain_spike};

/// The window `compare_periods` looks at, against the same length before it.
const WEEK_DAYS: i64 = 7;

pub(crate) async fn work(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    plan: &QuestionPlan,
    data: &UsageData,
) -> Result<Done<Option<Spike>>, StepError> {
    let period = plan.period.period();
    let plan_text = match plan.focus_day {
        Some(day) => format!(
            "Comparing {} {day} with the median day of {}, then finding the feature and model \
             that grew most that day.",
            weekday_name(day.weekday()),
            plan.period.period().label()
        ),
        None => format!(
            "Finding the day with the highest spend in {} and comparing it with the median day, \
             then the feature and model that grew most that day.",
            plan.period.period().label()
        ),
    };
    agent.think(plan_text).await?;
    let spike = agent
        .call(explain_spike(usage, &period, data, plan.focus_day))
        .await?;
    if let Some(s) = &spike {
        agent.think(spike_sentence(s)).await?;
    }
    agent
        .think("Comparing the last 7 days with the 7 before, and checking every day against the median day (median/MAD).")
        .await?;
    let week = Period::new(period.to - Duration::days(WEEK_DAYS), period.to);
    let (change, moved) = agent.call(compare_periods(usage, week)).await?;
    let outliers = agent.call(detect_anomalies(&period, &data.by_day)).await?;
    let context = format!(
        "Last 7 days: {}. {} outlier day(s) by robust z-score.",
        change_sentence(&change, WEEK_DAYS, moved.as_ref()),
        outliers.len()
    );
    let done = match spike {
        Some(s) => {
            let sentence = format!("{} {context}", spike_sentence(&s));
            let data = spike_json(&s);
            Done::new(Some(s), sentence).with_data(data)
        }
        None => Done::new(
            None,
            format!("fewer than two days of usage: no day to compare. {context}"),
        ),
    };
    Ok(done)
}
