//! The rule planner: a question (and, in a thread, the previous plan) read into a
//! [`QuestionPlan`]. Pure rules, split by concern: [`words`] (tokens, the stop-word list,
//! similarity), [`period`] (when), [`names`] (which model, feature, user, provider or tag,
//! against the org's own names), [`intent`] (what is asked, and follow-up cues), [`budget`] (a
//! budget command's amount, calendar and thresholds). This module
//! only combines them. The same question with the same names at the same clock always gives
//! the same plan.

pub(crate) mod budget;
pub(crate) mod intent;
pub(crate) mod names;
pub(crate) mod period;
pub(crate) mod words;

use apogee_analytics::{Dimension, Filter, Grouping, Period, Scope};
use chrono::{DateTime, Utc};

use self::budget::BudgetReading;
use self::intent::{BudgetAsk, FollowUp, Signals};
use self::names::{Found, NameReading, OrgNames};
use self::period::{PeriodReading, day_window, default_period, previous_of};
use self::words::Token;
use crate::plan::{BudgetCommand, Intent, Measure, PlanPeriod, QuestionPlan, UnknownName, WhatIf};
use apogee_analytics::BudgetPeriod;

/// What the planner knows besides the question.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    /// The clock relative periods are read against.
    pub now: DateTime<Utc>,
    /// The org's names in the period (see [`names_period`]).
    pub names: &'a OrgNames,
    /// The price catalog's model names (what-if targets need no usage).
    pub catalog_models: &'a [String],
    /// The thread's previous plan, which a follow-up refines.
    pub previous: Option<&'a QuestionPlan>,
}

/// Most unknown words reported back.
const MAX_UNKNOWN: usize = 3;

/// Everything the question says explicitly.
struct Parts {
    tokens: Vec<Token>,
    periods: PeriodReading,
    names: NameReading,
    signals: Signals,
    /// The amount, calendar and thresholds of a budget command (empty for other questions).
    budget: BudgetReading,
}

fn read_parts(question: &str, ctx: &PlanContext<'_>) -> Parts {
    let tokens = words::tokens(question);
    let periods = period::read(&tokens, ctx.now);
    let vocabulary =
        |w: &str| intent::is_vocabulary(w) || names::dimension_word(w, ctx.names).is_some();
    // A budget command's amount and thresholds are not names.
    let budget = if intent::read(&tokens, &periods.used, &OrgNames::default(), question)
        .budget
        .is_some()
        || ctx.previous.is_some_and(|p| p.intent == Intent::Budget)
    {
        budget::read(question, &tokens)
    } else {
        BudgetReading::default()
    };
    let mut skip = periods.used.clone();
    skip.extend(&budget.used);
    // "per 1k tokens": a unit, not names; "over 1k calls": an amount.
    skip.extend(intent::per_tokens_words(&tokens));
    skip.extend(intent::calls_amount_words(&tokens));
    // "month over month growth": a change, not the growth team.
    skip.extend(intent::growth_words(&tokens));
    let names = names::read(&tokens, &skip, ctx.names, ctx.catalog_models, &vocabulary);
    let mut used = skip;
    used.extend(&names.used);
    let signals = intent::read(&tokens, &used, ctx.names, question);
    Parts {
        tokens,
        periods,
        names,
        signals,
        budget,
    }
}

/// Whether the question is a budget command ("set a monthly budget of $2,000 for
/// support-bot", "what budgets do we have?"), or the missing amount or calendar a budget
/// command just asked for. Read without the org's names: the supervisor asks it before
/// anything else, because budget commands are answered by the rules alone (the LLM planner's
/// tools are read-only and know no budgets).
pub fn is_budget_command(
    question: &str,
    now: DateTime<Utc>,
    previous: Option<&QuestionPlan>,
) -> bool {
    let tokens = words::tokens(question);
    let periods = period::read(&tokens, now);
    if intent::read(&tokens, &periods.used, &OrgNames::default(), question)
        .budget
        .is_some()
    {
        return true;
    }
    previous.is_some_and(|p| p.intent == Intent::Budget) && {
        let reading = budget::read(question, &tokens);
        reading.amount_cents.is_some() || reading.period.is_some()
    }
}

/// The period whose names a question needs, or `None` when no word of it could be a name
/// (then reading the org's names can be skipped).
pub fn names_period(
    question: &str,
    now: DateTime<Utc>,
    previous: Option<&QuestionPlan>,
) -> Option<Period> {
    let tokens = words::tokens(question);
    let periods = period::read(&tokens, now);
    // Conversation moves and data help name nothing to resolve.
    let s = intent::read(&tokens, &periods.used, &OrgNames::default(), question);
    // A budget's names are the ones with usage in the default window, whatever calendar
    // ("$2,000 a month") the command names.
    if s.budget.is_some() {
        return Some(default_period(now).period());
    }
    if s.greeting
        || s.unsupported.is_some()
        || s.data_help
        || (s.capabilities && !s.asks_something())
    {
        return None;
    }
    let candidate = tokens.iter().enumerate().any(|(i, t)| {
        !periods.used.contains(&i)
            && (t.quoted
                || (!words::is_stop(&t.lower)
                    && !intent::is_vocabulary(&t.lower)
                    && words::number(&t.lower).is_none()
                    && t.lower.chars().any(char::is_alphanumeric)))
    });
    if !candidate {
        return None;
    }
    let main = periods
        .period
        .clone()
        .or_else(|| previous.map(|p| p.period.clone()))
        .unwrap_or_else(|| default_period(now));
    let compare = periods
        .compare
        .clone()
        .or_else(|| previous.and_then(|p| p.compare.clone()));
    let mut span = main.period();
    if let Some(c) = compare {
        span = Period::new(span.from.min(c.from), span.to.max(c.to));
    }
    Some(span)
}

/// Reads `question` into a plan. See the module doc.
pub fn plan_question(question: &str, ctx: &PlanContext<'_>) -> QuestionPlan {
    let parts = read_parts(question, ctx);
    let s = &parts.signals;
    let period = parts
        .periods
        .period
        .clone()
        .unwrap_or_else(|| default_period(ctx.now));
    let plain = |intent| QuestionPlan::new(intent, period.clone());
    if parts.tokens.is_empty() {
        return plain(Intent::Capabilities);
    }
    if let Some(ask) = s.budget {
        return budget_plan(ask, &parts, ctx.now);
    }
    if let Some(previous) = ctx.previous
        && completes_budget(previous, &parts)
    {
        return complete_budget(previous, &parts, ctx.now);
    }
    if let Some(u) = s.unsupported {
        let mut plan = plain(Intent::Unsupported);
        plan.unsupported = Some(u);
        return plan;
    }
    if s.data_help {
        return plain(Intent::DataHelp);
    }
    if s.greeting {
        return plain(Intent::Greeting);
    }
    if s.capabilities && !s.asks_something() && parts.names.found.is_empty() {
        return plain(Intent::Capabilities);
    }
    if let Some(previous) = ctx.previous
        && refinable(previous)
        && elliptical(&parts)
    {
        return per_weekday(with_breakdown_lead(refine(previous, &parts), s));
    }
    per_weekday(with_breakdown_lead(fresh(&parts, period), s))
}

/// Weekdays compared per day: a period rarely holds as many Mondays as Tuesdays (30 days hold
/// two weekdays five times), so spend and calls by weekday are over each weekday's days.
fn per_weekday(mut plan: QuestionPlan) -> QuestionPlan {
    if plan.group_by == Some(Grouping::DayOfWeek) {
        for m in &mut plan.measures {
            *m = match *m {
                Measure::Spend => Measure::SpendPerDay,
                Measure::Calls => Measure::CallsPerDay,
                other => other,
            };
        }
    }
    plan
}

/// What a breakdown leads with besides its total: the average over the groups
/// ([`QuestionPlan::average_per_group`]) or the groups past an amount
/// ([`QuestionPlan::threshold`]).
fn with_breakdown_lead(mut plan: QuestionPlan, signals: &Signals) -> QuestionPlan {
    // An average over the groups is of one sum over a breakdown ("spend per user on
    // average"), not of a ratio, a ranking or a comparison; a follow-up keeps it.
    plan.average_per_group = (plan.average_per_group || signals.average_per_group)
        && plan.intent == Intent::Figure
        && matches!(plan.group_by, Some(Grouping::By(_)))
        && plan.rank.is_none()
        && plan.compare.is_none()
        && matches!(
            plan.measures.as_slice(),
            [Measure::Spend
                | Measure::Calls
                | Measure::InputTokens
                | Measure::OutputTokens
                | Measure::TotalTokens
                | Measure::Errors]
        );
    // Weekends against weekdays (a follow-up keeps it): of spend or calls by weekday.
    plan.weekends = (plan.weekends || signals.weekends)
        && plan.intent == Intent::Figure
        && plan.group_by == Some(Grouping::DayOfWeek)
        && plan.rank.is_none()
        && plan.compare.is_none()
        && matches!(
            plan.measures.as_slice(),
            [Measure::Spend | Measure::Calls | Measure::SpendPerDay | Measure::CallsPerDay]
        );
    // Only the groups past an amount (a follow-up keeps it): of a breakdown of the measure the
    // amount is of (spend or calls), instead of a ranking.
    let breakdown = plan.intent == Intent::Figure
        && matches!(plan.group_by, Some(Grouping::By(_)))
        && plan.compare.is_none();
    plan.threshold = signals
        .threshold
        .or(plan.threshold)
        .filter(|t| breakdown && plan.measures == [t.measure()]);
    if plan.threshold.is_some() {
        plan.rank = None;
        plan.average_per_group = false;
    }
    plan
}

/// Plans a follow-up may refine: those that measured something.
fn refinable(plan: &QuestionPlan) -> bool {
    !plan.intent.is_conversation() && !matches!(plan.intent, Intent::DataHelp | Intent::Budget)
}

/// The calendar period a budget plan is about, as its `period`: the budget's own calendar,
/// or this month.
fn budget_period(calendar: Option<BudgetPeriod>, now: DateTime<Utc>) -> PlanPeriod {
    let calendar = calendar.unwrap_or(BudgetPeriod::Month);
    let text = match calendar {
        BudgetPeriod::Month => "this month",
        BudgetPeriod::Week => "this week",
        BudgetPeriod::Day => "today",
    };
    PlanPeriod::new(calendar.around(now), text)
}

/// A budget command: its scope from the names (a set or a removal only; the org's budgets are
/// listed whole), its amount, calendar and thresholds as typed.
fn budget_plan(ask: BudgetAsk, parts: &Parts, now: DateTime<Utc>) -> QuestionPlan {
    let b = &parts.budget;
    let command = match ask {
        BudgetAsk::Set => BudgetCommand::Set {
            amount_cents: b.amount_cents,
            period: b.period,
            thresholds: b.thresholds.clone(),
        },
        BudgetAsk::List => BudgetCommand::List,
        BudgetAsk::OnTrack => BudgetCommand::OnTrack,
        BudgetAsk::Remove => BudgetCommand::Remove { period: b.period },
    };
    let calendar = match &command {
        BudgetCommand::Set { period, .. } | BudgetCommand::Remove { period } => *period,
        _ => None,
    };
    let mut plan = QuestionPlan::new(Intent::Budget, budget_period(calendar, now));
    if matches!(
        command,
        BudgetCommand::Set { .. } | BudgetCommand::Remove { .. }
    ) {
        let (scope, _, unknown) = scope_of(parts, false);
        plan.scope = scope;
        plan = with_unknown(plan, unknown);
    }
    plan.budget = Some(command);
    plan
}

/// The answer to "how much, and per month, week or day?": a short reply with an amount or a
/// calendar (and no command of its own) after a budget command that lacked one.
fn completes_budget(previous: &QuestionPlan, parts: &Parts) -> bool {
    let Some(BudgetCommand::Set {
        amount_cents,
        period,
        ..
    }) = &previous.budget
    else {
        return false;
    };
    let b = &parts.budget;
    (amount_cents.is_none() || period.is_none())
        && (b.amount_cents.is_some() || b.period.is_some())
        && parts.tokens.len() <= 10
}

fn complete_budget(previous: &QuestionPlan, parts: &Parts, now: DateTime<Utc>) -> QuestionPlan {
    let mut plan = previous.clone();
    plan.refines_previous = true;
    let b = &parts.budget;
    if let Some(BudgetCommand::Set {
        amount_cents,
        period,
        thresholds,
    }) = &mut plan.budget
    {
        if b.amount_cents.is_some() {
            *amount_cents = b.amount_cents;
        }
        if b.period.is_some() {
            *period = b.period;
        }
        if !b.thresholds.is_empty() {
            *thresholds = b.thresholds.clone();
        }
        plan.period = budget_period(*period, now);
    }
    if !parts.names.found.is_empty() || !parts.names.unknown.is_empty() {
        let (scope, _, unknown) = scope_of(parts, false);
        plan.scope = scope;
        plan = with_unknown(plan, unknown);
    }
    plan
}

/// A question that only makes sense against the previous one: "and claude-sonnet-4?", "what
/// about last month?", "by user", "only support-bot".
fn elliptical(parts: &Parts) -> bool {
    let s = &parts.signals;
    let own_kind =
        s.analysis || s.savings || s.saving.is_some() || s.spike || s.forecast || s.model_selection;
    if own_kind {
        return false;
    }
    let refines = (s.follow_up.is_some() && !s.leftovers.is_empty())
        || !parts.names.found.is_empty()
        || !parts.names.unknown.is_empty()
        || parts.periods.period.is_some()
        || parts.periods.compare.is_some()
        || s.group.is_some()
        || s.rank.is_some()
        || s.compares
        || s.batch
        || !s.measures.is_empty()
        || shifts_back(parts);
    if !refines {
        return false;
    }
    match s.follow_up {
        Some(_) => parts.tokens.len() <= 10,
        // Without a cue, only a fragment: a name, a period, a ranking, a comparison; a
        // question that starts like one ("Compare this week to last week", "top 5 users"
        // names its grouping) is asked afresh.
        None => {
            let first = parts.tokens.first().map_or("", |t| t.lower.as_str());
            let asks = matches!(
                first,
                "compare"
                    | "show"
                    | "give"
                    | "list"
                    | "what"
                    | "what's"
                    | "how"
                    | "which"
                    | "who"
                    | "when"
                    | "where"
                    | "why"
                    | "is"
                    | "are"
                    | "did"
                    | "do"
                    | "does"
                    | "can"
                    | "could"
                    | "tell"
                    | "analyze"
                    | "analyse"
            );
            !asks
                && parts.tokens.len() <= 6
                && s.measures.is_empty()
                && s.leftovers.is_empty()
                && s.group.is_none()
        }
    }
}

/// The word before token `i`, skipping "the".
fn word_before(tokens: &[Token], i: usize) -> &str {
    let mut k = i;
    while k > 0 {
        k -= 1;
        if tokens[k].lower != "the" {
            return &tokens[k].lower;
        }
    }
    ""
}

fn word_after(tokens: &[Token], i: usize) -> &str {
    tokens.get(i).map_or("", |t| t.lower.as_str())
}

/// Where a found name stands in a what-if.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Part of the scope.
    Scope,
    /// The model traffic would move to.
    Target,
    /// Excluded from the scope ("without support-bot").
    Excluded,
}

fn role(tokens: &[Token], f: &Found, moving: bool) -> Role {
    let before = word_before(tokens, f.start);
    if matches!(before, "without" | "excluding" | "except" | "minus") {
        return Role::Excluded;
    }
    if moving && f.dimension == Dimension::Model {
        let after = word_after(tokens, f.end);
        if matches!(
            before,
            "to" | "onto" | "with" | "using" | "on" | "into" | "use" | "used"
        ) || after == "instead"
        {
            return Role::Target;
        }
    }
    Role::Scope
}

/// Adds `value` to the scope's filter on `dimension` (one filter per dimension and sense).
fn add_filter(scope: &mut Scope, dimension: &Dimension, value: &str, exclude: bool) {
    match scope
        .filters
        .iter_mut()
        .find(|f| &f.dimension == dimension && f.exclude == exclude)
    {
        Some(f) => {
            if !f.values.iter().any(|v| v == value) {
                f.values.push(value.to_string());
            }
        }
        None => scope.filters.push(Filter {
            dimension: dimension.clone(),
            values: vec![value.to_string()],
            exclude,
        }),
    }
}

/// The scope the question's names make, the what-if target, and the names without usage.
fn scope_of(parts: &Parts, moving: bool) -> (Scope, Option<String>, Vec<UnknownName>) {
    let mut scope = Scope::all();
    let mut target = None;
    let mut unknown = parts.names.unknown.clone();
    for f in &parts.names.found {
        match role(&parts.tokens, f, moving) {
            Role::Target => {
                target.get_or_insert_with(|| f.value.clone());
            }
            _ if f.catalog_only => unknown.push(UnknownName {
                dimension: Some(Dimension::Model),
                typed: f.value.clone(),
            }),
            Role::Excluded => add_filter(&mut scope, &f.dimension, &f.value, true),
            Role::Scope => add_filter(&mut scope, &f.dimension, &f.value, false),
        }
    }
    canonical(&mut scope);
    (scope, target, unknown)
}

/// Filters in one order (model, provider, feature, user, tags; includes before excludes),
/// however the question ordered the names.
fn canonical(scope: &mut Scope) {
    scope
        .filters
        .sort_by(|a, b| (&a.dimension, a.exclude).cmp(&(&b.dimension, b.exclude)));
}

/// The dimension a slice is best broken down by to explain it: the model of a feature, the
/// feature of anything else.
fn attribution(scope: &Scope) -> Grouping {
    if scope.values_of(&Dimension::Feature).is_some() {
        Grouping::By(Dimension::Model)
    } else {
        Grouping::By(Dimension::Feature)
    }
}

/// The grouping a ranking without one ranks: models for latency and errors, features else.
fn default_ranked(measures: &[Measure]) -> Grouping {
    match measures.first() {
        Some(m)
            if m.is_latency()
                || matches!(
                    m,
                    Measure::ErrorRate | Measure::CostPerCall | Measure::CostPerMillionTokens
                ) =>
        {
            Grouping::By(Dimension::Model)
        }
        _ => Grouping::By(Dimension::Feature),
    }
}

fn fresh(parts: &Parts, period: PlanPeriod) -> QuestionPlan {
    let s = &parts.signals;
    let p = &parts.periods;
    let moving = s.moving || s.hypothetical;
    let (scope, target, mut unknown) = scope_of(parts, moving);
    let mut plan = QuestionPlan::new(Intent::Figure, period);
    plan.scope = scope;
    let multi = plan
        .scope
        .filters
        .iter()
        .find(|f| !f.exclude && f.values.len() > 1)
        .map(|f| f.dimension.clone());

    // "Which features could use the Batch API?" is a savings question; otherwise a batch
    // question prices the scope's traffic through it.
    let intent = if s.batch && s.group.is_none() && s.saving.is_none() {
        plan.what_if = Some(WhatIf::BatchApi);
        Intent::WhatIf
    } else if let Some(to) = target.filter(|_| moving) {
        plan.what_if = Some(WhatIf::MoveToModel { to });
        Intent::WhatIf
    } else if let Some(kind) = s.saving {
        // "How much could a response cache save?", "Which features repeat the same prompts?":
        // that recommender's findings lead the savings report.
        plan.saving = Some(kind);
        plan.rank = s.rank;
        Intent::Savings
    } else if s.forecast {
        Intent::Forecast
    } else if s.drivers
        && !plan.scope.is_all()
        && s.group.is_none()
        && s.rank.is_none()
        && p.compare.is_none()
        && s.measures.iter().all(|m| *m == Measure::Spend)
    {
        // "Why is doc-summarizer so expensive?": its spend, then what drives it.
        plan.drivers = true;
        Intent::Figure
    } else if s.spike && (p.compare.is_some() || !plan.scope.is_all() || s.group.is_some()) {
        // "Why did gpt-4o's spend go up this week?": the change, attributed.
        plan.compare = Some(
            p.compare
                .clone()
                .unwrap_or_else(|| previous_of(&plan.period)),
        );
        plan.group_by = Some(s.group.clone().unwrap_or_else(|| attribution(&plan.scope)));
        plan.measures = vec![Measure::Spend];
        return with_unknown(plan, unknown);
    } else if s.spike || (parts.tokens.iter().any(|t| t.lower == "why") && p.day.is_some()) {
        if let Some(day) = p.day {
            plan.period = day_window(day);
            plan.focus_day = Some(day);
        }
        Intent::SpikeExplanation
    } else if (multi.is_some() && s.compares) || (s.weekends && p.compare.is_some()) {
        // Names compared with each other, or weekends with weekdays ("weekend vs weekday
        // calls last month"), over the period named, not periods.
        if let Some(named) = &p.named {
            plan.period = named.clone();
        }
        Intent::Figure
    } else if s.model_selection {
        Intent::ModelSelection
    } else if s.savings {
        // "What is our biggest saving?", "top 3 savings": the ranking leads.
        plan.rank = s.rank;
        Intent::Savings
    } else if s.moving && (s.asks_something() || !plan.scope.is_all()) && s.measures.is_empty() {
        Intent::ModelSelection
    } else if (s.analysis || s.drivers)
        && plan.scope.is_all()
        && s.group.is_none()
        && s.measures.iter().all(|m| *m == Measure::Spend)
        && s.rank.is_none()
        && p.compare.is_none()
    {
        Intent::Analysis
    } else if s.asks_something()
        || !parts.names.found.is_empty()
        || !unknown.is_empty()
        || p.period.is_some()
    {
        Intent::Figure
    } else if s.capabilities {
        Intent::Capabilities
    } else {
        Intent::Unknown
    };
    plan.intent = intent;
    match intent {
        Intent::Figure | Intent::Forecast => {
            plan.measures = if s.measures.is_empty() {
                vec![Measure::Spend]
            } else {
                s.measures.clone()
            };
            if intent == Intent::Forecast {
                plan.measures = vec![Measure::Spend];
                return with_unknown(plan, unknown);
            }
            plan.group_by = s.group.clone();
            plan.rank = s.rank;
            if plan.group_by.is_none() {
                plan.group_by = multi.clone().map(Grouping::By).or_else(|| {
                    if plan.rank.is_some() {
                        Some(default_ranked(&plan.measures))
                    } else if s.analysis {
                        Some(attribution(&plan.scope))
                    } else {
                        None
                    }
                });
            }
            plan.compare = if (multi.is_some() && s.compares) || s.weekends {
                None
            } else {
                p.compare
                    .clone()
                    .or_else(|| s.compares.then(|| previous_of(&plan.period)))
            };
            // A figure of the whole org with words no rule knows: say so rather than answer
            // another question.
            if plan.scope.is_all() && parts.names.found.is_empty() && unknown.is_empty() {
                unknown.extend(parts.signals.leftovers.iter().take(MAX_UNKNOWN).map(|&i| {
                    UnknownName {
                        dimension: None,
                        typed: parts.tokens[i].raw.clone(),
                    }
                }));
            }
        }
        Intent::WhatIf => {
            plan.measures = vec![Measure::Spend];
        }
        Intent::SpikeExplanation | Intent::Savings | Intent::ModelSelection | Intent::Analysis => {}
        _ => {
            plan.scope = Scope::all();
            return plan;
        }
    }
    with_unknown(plan, unknown)
}

fn with_unknown(mut plan: QuestionPlan, unknown: Vec<UnknownName>) -> QuestionPlan {
    let mut seen: Vec<UnknownName> = Vec::new();
    for u in unknown {
        if !seen.iter().any(|s| s.typed.eq_ignore_ascii_case(&u.typed)) {
            seen.push(u);
        }
    }
    plan.unknown_names = seen;
    plan
}

/// "and the week before?", "the month prior", "what about the previous period?": the previous
/// plan's window moved back by its own length (no period of its own named).
fn shifts_back(parts: &Parts) -> bool {
    // "compared to the week before" keeps the window and compares.
    if parts.periods.period.is_some() || parts.signals.compares {
        return false;
    }
    let has = |words: &[&str]| {
        parts
            .tokens
            .iter()
            .any(|t| words.contains(&t.lower.as_str()))
    };
    has(&["before", "prior", "previous", "earlier", "preceding"])
        && has(&[
            "week", "month", "day", "period", "window", "days", "weeks", "one",
        ])
}

/// The previous plan with what the follow-up names put in place.
fn refine(previous: &QuestionPlan, parts: &Parts) -> QuestionPlan {
    let s = &parts.signals;
    let cue = s.follow_up.unwrap_or(FollowUp::Replace);
    let mut plan = previous.clone();
    plan.refines_previous = true;
    let mut unknown = parts.names.unknown.clone();

    if s.batch {
        plan.intent = Intent::WhatIf;
        plan.what_if = Some(WhatIf::BatchApi);
        plan.measures = vec![Measure::Spend];
    }
    // Names: each replaces (or narrows, adds to, excludes from) its dimension's filter.
    let mut replaced: Vec<Dimension> = Vec::new();
    for f in &parts.names.found {
        let r = role(&parts.tokens, f, true);
        if matches!(plan.what_if, Some(WhatIf::MoveToModel { .. }))
            && f.dimension == Dimension::Model
            && word_before(&parts.tokens, f.start) != "from"
        {
            plan.what_if = Some(WhatIf::MoveToModel {
                to: f.value.clone(),
            });
            continue;
        }
        if r == Role::Target && f.dimension == Dimension::Model && plan.intent != Intent::WhatIf {
            // "and on gpt-4o-mini?" after a figure: a move of that slice.
            if s.hypothetical || s.moving {
                plan.intent = Intent::WhatIf;
                plan.what_if = Some(WhatIf::MoveToModel {
                    to: f.value.clone(),
                });
                plan.measures = vec![Measure::Spend];
                continue;
            }
        }
        if f.catalog_only {
            unknown.push(UnknownName {
                dimension: Some(Dimension::Model),
                typed: f.value.clone(),
            });
            continue;
        }
        let exclude = cue == FollowUp::Exclude || r == Role::Excluded;
        match cue {
            FollowUp::Also | FollowUp::Exclude => {}
            _ => {
                if !replaced.contains(&f.dimension) {
                    plan.scope
                        .filters
                        .retain(|x| x.dimension != f.dimension || x.exclude);
                    replaced.push(f.dimension.clone());
                }
            }
        }
        add_filter(&mut plan.scope, &f.dimension, &f.value, exclude);
        // Filtering to one value of the grouped dimension leaves nothing to group.
        if plan.group_by == Some(Grouping::By(f.dimension.clone())) && !exclude {
            let values = plan
                .scope
                .values_of(&f.dimension)
                .map_or(0, <[String]>::len);
            if values <= 1 {
                plan.group_by = None;
                plan.rank = None;
            }
        }
    }
    canonical(&mut plan.scope);
    let back = shifts_back(parts);
    // A word no rule knows, where a name was expected ("and blorp?").
    if parts.names.found.is_empty() && unknown.is_empty() && !back {
        unknown.extend(s.leftovers.iter().take(MAX_UNKNOWN).map(|&i| UnknownName {
            dimension: None,
            typed: parts.tokens[i].raw.clone(),
        }));
    }
    // When.
    let p = &parts.periods;
    if let Some(period) = &p.period {
        match (plan.intent, p.day) {
            (Intent::SpikeExplanation, Some(day)) => {
                plan.period = day_window(day);
                plan.focus_day = Some(day);
            }
            _ => {
                plan.period = period.clone();
                plan.focus_day = None;
            }
        }
        plan.compare = p
            .compare
            .clone()
            .or_else(|| previous.compare.as_ref().map(|_| previous_of(&plan.period)));
    } else if back {
        plan.period = previous_of(&plan.period);
        plan.focus_day = None;
        plan.compare = previous.compare.as_ref().map(|_| previous_of(&plan.period));
    } else if let Some(c) = &p.compare {
        plan.compare = Some(c.clone());
    } else if s.compares {
        plan.compare = Some(previous_of(&plan.period));
    }
    // What and how.
    if !s.measures.is_empty() {
        plan.measures = s.measures.clone();
        if plan.intent != Intent::Figure {
            plan.intent = Intent::Figure;
            plan.what_if = None;
        }
    }
    if let Some(g) = &s.group {
        plan.group_by = Some(g.clone());
        plan.rank = s.rank;
        if plan.intent != Intent::Figure {
            plan.intent = Intent::Figure;
            plan.what_if = None;
        }
    } else if let Some(r) = s.rank {
        plan.rank = Some(r);
        if plan.group_by.is_none() {
            plan.group_by = Some(default_ranked(&plan.measures));
        }
        plan.intent = Intent::Figure;
        plan.what_if = None;
    }
    if plan.intent == Intent::Figure && plan.measures.is_empty() {
        plan.measures = vec![Measure::Spend];
    }
    // What drives a slice's spend is said of one slice's spend alone: a follow-up that groups,
    // compares, measures something else or widens to the whole org asks for that instead.
    plan.drivers &= plan.intent == Intent::Figure
        && plan.group_by.is_none()
        && plan.compare.is_none()
        && plan.measures == [Measure::Spend]
        && !plan.scope.is_all();
    with_unknown(plan, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 15, 30, 0).unwrap()
    }

    #[test]
    fn names_are_read_only_when_a_word_could_be_one() {
        assert!(names_period("Analyze my AI costs", now(), None).is_none());
        assert!(names_period("how much did we spend last week?", now(), None).is_none());
        let p = names_period("How much did gpt-4o cost last week?", now(), None).unwrap();
        assert_eq!(p.from.date_naive().to_string(), "2026-11-16");
        assert!(names_period("the growth team", now(), None).is_some());
        // A budget's scope is read against the default window, whatever calendar it names.
        assert_eq!(
            names_period("Set a budget alert at $1500 a month", now(), None),
            Some(default_period(now()).period())
        );
        assert!(names_period("hello there apogee", now(), None).is_none());
    }
}
