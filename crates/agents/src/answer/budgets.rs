//! Answers to budget commands: what was set, changed or removed (with where it stands), the
//! org's budgets as a short table, "are we on track" (the org's month first, then each
//! budget), a refusal in the budgets code's own words, and the question back when the amount,
//! the calendar or the budget meant is missing.

use apogee_analytics::{BudgetState, Nanos, Scope};
use chrono::{DateTime, Datelike, Duration, Utc};
use serde_json::json;

use super::conversation::unknown_names;
use super::figure::{Answer, and_list, subject};
use super::markdown::{Doc, escape};
use super::projection::ForecastData;
use crate::budgets::{BudgetRefusal, BudgetStatus};
use crate::plan::QuestionPlan;
use crate::question::names::OrgNames;
use crate::question::period::{dates_label, days, default_period};
use crate::subagents::budgets::BudgetResult;

/// `$2,000` for whole dollars, `$2,000.50` else.
fn money(n: Nanos) -> String {
    let s = n.display_usd();
    s.strip_suffix(".00").map(str::to_string).unwrap_or(s)
}

/// "support-bot", "the growth team", "the whole org".
fn whose(scope: &Scope) -> String {
    subject(scope).unwrap_or_else(|| "the whole org".into())
}

fn state_words(b: &BudgetStatus) -> &'static str {
    match b.state {
        BudgetState::Ok => "on track",
        BudgetState::Warning => "past a threshold, forecast within the amount",
        BudgetState::AtRisk => "heading over",
        BudgetState::Over => "over",
    }
}

/// "a monthly budget of $2,000 for support-bot".
fn described(b: &BudgetStatus) -> String {
    format!(
        "a {} budget of {} for {}",
        b.period.adjective(),
        money(b.amount),
        whose(&b.scope)
    )
}

/// The last day of the budget's window, "Nov 30".
fn window_end(b: &BudgetStatus, year: i32) -> String {
    let last = (b.window.to - Duration::days(1)).date_naive();
    dates_label(&days(last, b.window.to.date_naive()), year)
}

fn standing(b: &BudgetStatus, year: i32) -> String {
    format!(
        "{} spent so far ({:.0}%), heading for {} by {}: {}.",
        money(b.spent),
        b.percent,
        money(b.forecast),
        window_end(b, year),
        state_words(b)
    )
}

fn thresholds(b: &BudgetStatus) -> String {
    let t: Vec<String> = b.thresholds.iter().map(|t| format!("{t}%")).collect();
    and_list(&t)
}

fn table(doc: &mut Doc, budgets: &[BudgetStatus]) {
    let rows: Vec<Vec<String>> = budgets
        .iter()
        .map(|b| {
            vec![
                escape(&b.name),
                b.period.as_str().to_string(),
                money(b.amount),
                money(b.spent),
                format!("{:.0}%", b.percent),
                money(b.forecast),
                state_words(b).split(',').next().unwrap_or("").to_string(),
            ]
        })
        .collect();
    doc.table(
        &[
            ("Budget", false),
            ("Per", false),
            ("Amount", true),
            ("Spent", true),
            ("Used", true),
            ("Forecast", true),
            ("State", false),
        ],
        &rows,
    );
}

fn answer(lead: String, doc: Doc) -> Answer {
    let markdown = if doc.out.is_empty() {
        format!("{lead}\n")
    } else {
        format!("{lead}\n\n{}", doc.out.trim_start_matches('\n'))
    };
    Answer {
        markdown,
        lead,
        chart: json!({ "kind": "none" }),
        sections: doc.sections,
    }
}

const WHERE: &str = "It is in **Budgets** in the top bar and in `GET /api/budgets`.";
const EXAMPLE: &str = "“set a monthly budget of $2,000 for support-bot”";

/// The answer to a budget command, from what the `budgets` agent found.
pub(crate) fn render(plan: &QuestionPlan, result: &BudgetResult, now: DateTime<Utc>) -> Answer {
    let year = now.year();
    let mut doc = Doc::default();
    let lead = match result {
        BudgetResult::Set { budget: b, was } => {
            doc.line(&format!(
                "It alerts every member of the org live, and the org's webhooks, at {} of the amount and when the forecast goes over. {WHERE}",
                thresholds(b),
            ));
            match was {
                None => format!(
                    "Done: {} ({}). {}",
                    described(b),
                    dates_label(&b.window, year),
                    standing(b, year)
                ),
                Some(was) => format!(
                    "Done: the {} budget for {} is now {} (was {}). {}",
                    b.period.adjective(),
                    whose(&b.scope),
                    money(b.amount),
                    money(*was),
                    standing(b, year)
                ),
            }
        }
        BudgetResult::Refused(refusal) => {
            match refusal {
                BudgetRefusal::LimitReached(_) => doc.line(
                    "Remove one first (“delete the support-bot budget”, or in **Budgets** in the top bar), then ask again.",
                ),
                _ => doc.line(&format!("For example: {EXAMPLE}.")),
            }
            format!(
                "I didn't set the budget: {}.",
                refusal.to_string().trim_end_matches('.')
            )
        }
        BudgetResult::NeedAmount { existing } => match existing.as_slice() {
            [b, ..] => {
                doc.line(&format!(
                    "Say the new amount, for example “set the {} budget to {}”.",
                    whose(&b.scope),
                    money(Nanos(b.amount.0.saturating_mul(3) / 2))
                ));
                format!(
                    "How much should it be? {} is {} now: {}",
                    capital(&described(b)),
                    money(b.amount),
                    standing(b, year)
                )
            }
            [] => {
                doc.line(&format!("For example: {EXAMPLE}. Budgets are per calendar month, week or day (UTC), for the whole org or any model, provider, feature, user or tag."));
                format!(
                    "How much, and per month, week or day, should the budget for {} be?",
                    whose(&plan.scope)
                )
            }
        },
        BudgetResult::NeedPeriod { amount_cents } => {
            doc.line(
                "Budgets run per calendar month, week or day (UTC). Say, for example, “a month”.",
            );
            format!(
                "Per month, week or day? A budget of {} for {}.",
                money(Nanos(i128::from(*amount_cents) * 10_000_000)),
                whose(&plan.scope)
            )
        }
        BudgetResult::Ambiguous { candidates } => {
            table(&mut doc, candidates);
            doc.blank();
            doc.line("Say which, for example “the weekly one”, or name its calendar: “delete the weekly support-bot budget”.");
            format!(
                "{} has {} budgets: which one do you mean?",
                capital(&whose(&plan.scope)),
                candidates.len()
            )
        }
        BudgetResult::Removed(b) => {
            doc.line("The alerts it already sent stay in everyone's stream.");
            format!("Deleted {}.", described(b))
        }
        BudgetResult::NoneToRemove(all) => {
            if all.is_empty() {
                format!(
                    "There is no budget for {} to delete: the org has no budgets.",
                    whose(&plan.scope)
                )
            } else {
                table(&mut doc, all);
                format!(
                    "There is no budget for {} to delete. The org's budgets:",
                    whose(&plan.scope)
                )
            }
        }
        BudgetResult::Listed(all) => {
            if all.is_empty() {
                doc.line(&format!(
                    "Set one here, for example {EXAMPLE}, or in **Budgets** in the top bar."
                ));
                "The org has no budgets yet.".into()
            } else {
                table(&mut doc, all);
                doc.blank();
                doc.line("Spent and forecast are for each budget's current calendar period (UTC), as in **Budgets** and `GET /api/budgets`.");
                format!("{}.", tally(all))
            }
        }
    };
    answer(lead, doc)
}

/// "3 budgets: 1 heading over, 2 on track."
fn tally(all: &[BudgetStatus]) -> String {
    let n = all.len();
    let count = |s: BudgetState| all.iter().filter(|b| b.state == s).count();
    let mut parts = Vec::new();
    for (state, words) in [
        (BudgetState::Over, "over"),
        (BudgetState::AtRisk, "heading over"),
        (BudgetState::Warning, "past a threshold"),
        (BudgetState::Ok, "on track"),
    ] {
        let c = count(state);
        if c > 0 {
            parts.push(format!("{c} {words}"));
        }
    }
    format!(
        "{n} budget{}: {}",
        if n == 1 { "" } else { "s" },
        and_list(&parts)
    )
}

/// "Are we on track this month?": the org's month (spent, forecast) first, against its
/// org-wide monthly budget when there is one, then every budget.
pub(crate) fn on_track(org: &ForecastData, budgets: &[BudgetStatus], now: DateTime<Utc>) -> Answer {
    let year = now.year();
    let last = (org.month_end - Duration::days(1)).date_naive();
    let by = dates_label(&days(last, org.month_end.date_naive()), year);
    let f = &org.forecast;
    let org_budget = budgets
        .iter()
        .find(|b| b.scope.is_all() && b.period == apogee_analytics::BudgetPeriod::Month);
    let mut lead = format!(
        "This month: {} spent so far, heading for {} by {by}",
        money(f.spent),
        money(f.projected)
    );
    match org_budget {
        Some(b) => lead.push_str(&format!(
            " against the org's monthly budget of {}: {}.",
            money(b.amount),
            state_words(b)
        )),
        None => lead.push('.'),
    }
    let off: Vec<String> = budgets
        .iter()
        .filter(|b| matches!(b.state, BudgetState::Over | BudgetState::AtRisk))
        .map(|b| {
            format!(
                "{} ({} forecast vs {} a {})",
                escape(&b.name),
                money(b.forecast),
                money(b.amount),
                b.period.as_str()
            )
        })
        .collect();
    if budgets.is_empty() {
        lead.push_str(" No budgets are set.");
    } else if off.is_empty() {
        lead.push_str(&format!(
            " {} on track.",
            if budgets.len() == 1 {
                "The one budget is".to_string()
            } else {
                format!("All {} budgets are", budgets.len())
            }
        ));
    } else {
        lead.push_str(&format!(
            " {} of {} budgets {} over or heading over: {}.",
            off.len(),
            budgets.len(),
            if off.len() == 1 { "is" } else { "are" },
            off.join("; ")
        ));
    }
    let mut doc = Doc::default();
    if budgets.is_empty() {
        doc.line(&format!(
            "The forecast is month-to-date spend plus the rest of the month at the average of the last {} complete days. Set a budget to be alerted before it goes over, for example {EXAMPLE}.",
            org.recent_days
        ));
    } else {
        table(&mut doc, budgets);
        doc.blank();
        doc.line(&format!(
            "Forecasts are spend so far plus the rest of each period at the average of the last {} complete days, as in **Budgets** and `GET /api/budgets`.",
            org.recent_days
        ));
    }
    answer(lead, doc)
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Budget commands where no budgets are reachable (the agents without a server).
pub(crate) fn unavailable() -> Answer {
    let mut doc = Doc::default();
    doc.line("Budgets live in the server: `POST /api/budgets`, or **Budgets** in the top bar.");
    answer("I can't reach the org's budgets here.".into(), doc)
}

/// A set or removal whose scope names something without usage: nothing is changed.
pub(crate) fn unknown_scope(plan: &QuestionPlan, names: &OrgNames, now: DateTime<Utc>) -> Answer {
    let mut looked = plan.clone();
    looked.period = default_period(now);
    let (a, _) = unknown_names(&looked, names, now);
    let verb = match plan.budget {
        Some(crate::plan::BudgetCommand::Remove { .. }) => "remove",
        _ => "set",
    };
    let lead = format!("I didn't {verb} the budget: {}", a.lead);
    let body = a.markdown.replacen(&a.lead, "", 1);
    let mut doc = Doc::default();
    for line in body.trim().lines() {
        doc.line(line);
    }
    doc.blank();
    doc.line("A budget's scope names a model, provider, feature, user or tag exactly as your usage records do. For one that has no usage yet, create it in **Budgets** in the top bar (or `POST /api/budgets`) with the exact name.");
    answer(lead, doc)
}
