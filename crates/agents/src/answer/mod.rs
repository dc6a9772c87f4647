//! Writing answers: pure rules from a plan and what the tools found to markdown, its first
//! sentence and the data of its chart. [`figure`] answers figure questions, [`projection`]
//! forecasts and what-ifs, [`budgets`] budget commands, [`conversation`] greetings, capability questions, requests Apogee
//! cannot carry out and questions it cannot map, and names without usage. Every
//! data-derived string goes through [`markdown::escape`].

pub(crate) mod analysis;
pub(crate) mod budgets;
pub(crate) mod conversation;
pub(crate) mod explain;
pub(crate) mod figure;
pub(crate) mod follow_ups;
pub(crate) mod help;
pub(crate) mod markdown;
pub(crate) mod projection;

use crate::plan::PlanPeriod;
use crate::question::period::dates_label;

/// "in the last 7 days (Nov 23–29)": the period as the question named it, with its dates
/// unless the name already is the dates ("on Nov 20").
pub(crate) fn when(p: &PlanPeriod, year: i32) -> String {
    let dates = dates_label(&p.period(), year);
    if p.text.contains(&dates) {
        p.text.clone()
    } else {
        format!("{} ({dates})", p.text)
    }
}
