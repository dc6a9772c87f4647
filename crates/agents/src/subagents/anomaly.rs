//! The `anomaly` agent: explains a spend spike (`explain_spike`), for questions like "why did
//! spend jump on Tuesday?".

use apogee_analytics::OrgUsageQueries;
use chrono::Datelike;

use crate::findings::{UsageData, spike_json};
use crate::scope::{Agent, Done, StepError};
use crate::spike::Spike;
use crate::tools::spike::explain_spike;
use crate::triage::{Triage, weekday_name};

pub(crate) async fn work(
    agent: Agent,
    usage: &dyn OrgUsageQueries,
    t: &Triage,
    data: &UsageData,
) -> Result<Done<Option<Spike>>, StepError> {
    let plan = match t.focus_day {
        Some(day) => format!(
            "Comparing {} {day} with the median day of {}, then finding the feature and model \
             that grew most that day.",
            weekday_name(day.weekday()),
            t.period.label()
        ),
        None => format!(
            "Finding the day with the highest spend in {} and comparing it with the median day, \
             then the feature and model that grew most that day.",
            t.period.label()
        ),
    };
    agent.think(plan).await?;
    let spike = agent
        .call(explain_spike(usage, &t.period, data, t.focus_day))
        .await?;
    let done = match spike {
        Some(s) => {
            let sentence = s.sentence();
            agent.think(sentence.clone()).await?;
            let data = spike_json(&s);
            Done::new(Some(s), sentence).with_data(data)
        }
        None => Done::new(None, "fewer than two days of usage: no day to compare"),
    };
    Ok(done)
}
