//! The question plan: what a question asks, in a typed form that the tools execute. Triage
//! produces it (today with rules, [`crate::plan_question`]; an LLM planner could produce the
//! same type), the supervisor runs the tools it needs and only those, and the plan each answer
//! used travels in the run's `agent_completed.data.plan`, so a UI, a test or a follow-up
//! question can read it. Scopes and groupings are the query engine's own
//! ([`apogee_analytics::Scope`], [`apogee_analytics::Grouping`]): a plan's figures are
//! `GET /api/costs`'s for the same parameters.

use apogee_analytics::{BudgetPeriod, Dimension, Grouping, Period, Scope};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// What kind of answer a question wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// One or more measures over a scope and period, possibly grouped, ranked or compared:
    /// "How much did gpt-4o cost last week?", "top 5 users", "compare this week to last week".
    Figure,
    /// Where this month's spend (of the scope) is heading.
    Forecast,
    /// The scope's traffic priced another way ([`WhatIf`]).
    WhatIf,
    /// The full analysis report: "Analyze my AI costs".
    Analysis,
    /// The full report, leading with the savings: "How can we cut the bill?".
    Savings,
    /// The full report, leading with what made a day stand out: "Why did spend jump?".
    SpikeExplanation,
    /// The full report, leading with spend by model and right-sizing: "Which model should we
    /// use?".
    ModelSelection,
    /// Set, list, check or remove the org's budgets ([`BudgetCommand`]).
    Budget,
    /// How to get usage into Apogee.
    DataHelp,
    /// "hello", "thanks".
    Greeting,
    /// "What can you do?".
    Capabilities,
    /// Something Apogee cannot do yet ([`Unsupported`]): said plainly, with what it can do.
    Unsupported,
    /// A question the rules cannot map: "I can't answer that yet", with the closest questions
    /// it can answer.
    Unknown,
}

impl Intent {
    /// The full analysis pipeline answers these (data → optimization → report).
    pub fn is_full_report(self) -> bool {
        matches!(
            self,
            Intent::Analysis | Intent::Savings | Intent::SpikeExplanation | Intent::ModelSelection
        )
    }

    /// Answered in a few lines, without reading usage.
    pub fn is_conversation(self) -> bool {
        matches!(
            self,
            Intent::Greeting | Intent::Capabilities | Intent::Unsupported | Intent::Unknown
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Figure => "figure",
            Intent::Forecast => "forecast",
            Intent::WhatIf => "what_if",
            Intent::Analysis => "analysis",
            Intent::Savings => "savings",
            Intent::SpikeExplanation => "spike_explanation",
            Intent::ModelSelection => "model_selection",
            Intent::Budget => "budget",
            Intent::DataHelp => "data_help",
            Intent::Greeting => "greeting",
            Intent::Capabilities => "capabilities",
            Intent::Unsupported => "unsupported",
            Intent::Unknown => "unknown",
        }
    }
}

/// What a figure measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Spend,
    Calls,
    InputTokens,
    OutputTokens,
    TotalTokens,
    /// Input tokens read from the provider's prompt cache.
    CachedInputTokens,
    /// Cached input tokens over input tokens: "cache hit rate".
    CacheReadShare,
    /// Input and output tokens over calls: "tokens per call".
    TokensPerCall,
    /// Spend of the priced calls over those calls.
    CostPerCall,
    /// Spend of the priced calls per million of their tokens: "cost per 1k tokens", "cheapest
    /// per token" (shown per million, the unit price catalogs use).
    CostPerMillionTokens,
    /// Spend over the period's days: "per day on average", "average daily spend".
    SpendPerDay,
    /// Calls over the period's days: what weekdays are compared by ("the busiest day of the
    /// week"), a period holding more Mondays than Tuesdays.
    CallsPerDay,
    /// Calls with a status other than `ok`.
    Errors,
    /// Errors over calls.
    ErrorRate,
    /// The mean latency: "average latency".
    LatencyMean,
    LatencyP50,
    LatencyP95,
    LatencyP99,
}

impl Measure {
    /// Read from latency percentiles rather than totals.
    pub fn is_latency(self) -> bool {
        matches!(
            self,
            Measure::LatencyMean | Measure::LatencyP50 | Measure::LatencyP95 | Measure::LatencyP99
        )
    }

    /// Larger is better for none of them; for rankings "highest" is the top of the list.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Spend => "spend",
            Measure::Calls => "calls",
            Measure::InputTokens => "input_tokens",
            Measure::OutputTokens => "output_tokens",
            Measure::TotalTokens => "total_tokens",
            Measure::CachedInputTokens => "cached_input_tokens",
            Measure::CacheReadShare => "cache_read_share",
            Measure::TokensPerCall => "tokens_per_call",
            Measure::CostPerCall => "cost_per_call",
            Measure::CostPerMillionTokens => "cost_per_million_tokens",
            Measure::SpendPerDay => "spend_per_day",
            Measure::CallsPerDay => "calls_per_day",
            Measure::Errors => "errors",
            Measure::ErrorRate => "error_rate",
            Measure::LatencyMean => "latency_mean",
            Measure::LatencyP50 => "latency_p50",
            Measure::LatencyP95 => "latency_p95",
            Measure::LatencyP99 => "latency_p99",
        }
    }
}

/// Which end of a ranking the question wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Highest,
    Lowest,
}

/// "top 5 users", "which feature spends the most" (top 1), "cheapest model per call"
/// (lowest, top 1). Ranks the groups of the plan's grouping by its first measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rank {
    pub order: Order,
    /// How many groups to name; `None`: all of them, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<u32>,
}

/// The scope's traffic priced another way, with the catalog, on the same tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WhatIf {
    /// Moved to the catalog model `to`.
    MoveToModel {
        /// A model of the price catalog.
        to: String,
    },
    /// Sent through the provider's Batch API at its discount.
    BatchApi,
}

/// The kind of saving a savings question asks about ("How much could a response cache
/// save?", "Should we cap max_tokens anywhere?"): the recommender whose findings lead the
/// answer. The names are [`apogee_analytics::savings::Recommendation::kind`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavingKind {
    /// Short calls moved to a cheaper catalog model.
    RightSizeModel,
    /// Exact-duplicate prompts served from a response cache.
    ResponseCache,
    /// Night-time interactive jobs sent through the Batch API.
    BatchApi,
    /// A stable prompt prefix cached by the provider.
    PromptCache,
    /// A `max_tokens` cap on a long tail of outputs.
    OutputCap,
    /// Prompts trimmed below a long-context price tier.
    ContextTier,
}

impl SavingKind {
    pub const ALL: [SavingKind; 6] = [
        SavingKind::RightSizeModel,
        SavingKind::ResponseCache,
        SavingKind::BatchApi,
        SavingKind::PromptCache,
        SavingKind::OutputCap,
        SavingKind::ContextTier,
    ];

    /// The [`apogee_analytics::savings::Recommendation::kind`] of its recommendations.
    pub fn as_str(self) -> &'static str {
        match self {
            SavingKind::RightSizeModel => "right_size_model",
            SavingKind::ResponseCache => "response_cache",
            SavingKind::BatchApi => "batch_api",
            SavingKind::PromptCache => "prompt_cache",
            SavingKind::OutputCap => "output_cap",
            SavingKind::ContextTier => "context_tier",
        }
    }
}

/// A period as the question named it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanPeriod {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// How to say it in a sentence: "the last 7 days", "yesterday", "October 2026".
    pub text: String,
}

impl PlanPeriod {
    pub fn new(period: Period, text: impl Into<String>) -> PlanPeriod {
        PlanPeriod {
            from: period.from,
            to: period.to,
            text: text.into(),
        }
    }

    pub fn period(&self) -> Period {
        Period::new(self.from, self.to)
    }
}

/// A name the question typed that matches nothing with usage in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownName {
    /// The dimension the question gave it ("feature blorp"), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension: Option<Dimension>,
    pub typed: String,
}

/// What a budget question asks; its scope is the plan's. The amount and calendar are what the
/// question typed, unchecked: the budgets code checks them, once, for chat and API alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BudgetCommand {
    /// "set a monthly budget of $2,000 for support-bot (alert at 50% and 90%)": creates it,
    /// or changes the amount of the budget already on that scope (and calendar). A missing
    /// amount or calendar is asked for.
    Set {
        /// In cents, as typed (a negative amount stays negative, to be refused).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount_cents: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        period: Option<BudgetPeriod>,
        /// Alert thresholds in percent ("alert at 50% and 90%"); empty: the defaults.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        thresholds: Vec<i64>,
    },
    /// "what budgets do we have?"
    List,
    /// "are we on track this month?": the org's month, then each budget.
    OnTrack,
    /// "delete the support-bot budget".
    Remove {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        period: Option<BudgetPeriod>,
    },
}

impl BudgetCommand {
    pub fn as_str(&self) -> &'static str {
        match self {
            BudgetCommand::Set { .. } => "set",
            BudgetCommand::List => "list",
            BudgetCommand::OnTrack => "on_track",
            BudgetCommand::Remove { .. } => "remove",
        }
    }
}

/// "Which users spent more than $50?", "Which features made over 10,000 calls?": the groups
/// whose spend or calls are above (or below) an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threshold {
    /// Above the amount ("more than", "over", "at least"); below it else ("less than",
    /// "under").
    pub above: bool,
    /// The amount and what it counts: `"cents"` or `"calls"` beside `above`.
    #[serde(flatten)]
    pub amount: ThresholdAmount,
}

/// A [`Threshold`]'s amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ThresholdAmount {
    /// Spend, in cents.
    Spend { cents: i64 },
    /// Calls.
    Calls { calls: i64 },
}

impl Threshold {
    /// The measure the amount is of.
    pub fn measure(&self) -> Measure {
        match self.amount {
            ThresholdAmount::Spend { .. } => Measure::Spend,
            ThresholdAmount::Calls { .. } => Measure::Calls,
        }
    }
}

/// Requests Apogee cannot carry out yet; the answer says so and what it can do instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unsupported {
    /// "Email me when spend goes over …", "notify the team" (without a budget).
    Alerts,
    /// "Export this as a PDF".
    Export,
    /// "Switch support-bot to gpt-4o-mini": Apogee reads usage, it does not route calls.
    ChangeModels,
    /// "What share of our spend goes to output tokens?": a call's cost is stored whole, not
    /// split by token type.
    TokenCostSplit,
    /// "What was our most expensive call?": figures are sums over calls, not single calls.
    SingleCalls,
    /// "weekend spend by feature": weekends are summed apart from weekdays for the scope
    /// asked about, not for each group of another breakdown.
    Weekdays,
}

/// What a question asks, in full. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionPlan {
    pub intent: Intent,
    /// What to measure, the headline first (empty when the intent measures nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measures: Vec<Measure>,
    /// Which usage: filters on model, provider, feature, user and tags (empty: the whole org).
    #[serde(default, skip_serializing_if = "Scope::is_all")]
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Grouping>,
    pub period: PlanPeriod,
    /// The period to compare with ("vs the 7 days before", "compare this week to last week").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<PlanPeriod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<Rank>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what_if: Option<WhatIf>,
    /// The kind of saving a savings question asks about (none: every kind, the total first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saving: Option<SavingKind>,
    /// The single day a spike question is about ("why did spend jump on Tuesday?").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus_day: Option<NaiveDate>,
    /// The answer says what drives the scope's spend against the whole org ("Why is
    /// doc-summarizer so expensive?"): its cost per call, as tokens per call times the price
    /// per token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drivers: bool,
    /// The answer leads with the average over the groups ("How much do we spend per user on
    /// average?"): the measure's total over the named groups divided by their number.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub average_per_group: bool,
    /// The answer leads with weekends against weekdays, per day ("How much do we spend on
    /// weekends?"): a breakdown by day of the week whose Saturdays and Sundays are summed
    /// apart from the other days.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub weekends: bool,
    /// Only the groups whose spend or calls are past an amount ("Which users spent more than
    /// $50?").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_names: Vec<UnknownName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetCommand>,
    /// Built by refining the thread's previous plan ("and claude-sonnet-4?").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refines_previous: bool,
}

impl QuestionPlan {
    /// A plan of `intent` over `period` and nothing else.
    pub fn new(intent: Intent, period: PlanPeriod) -> QuestionPlan {
        QuestionPlan {
            intent,
            measures: Vec::new(),
            scope: Scope::all(),
            group_by: None,
            period,
            compare: None,
            rank: None,
            what_if: None,
            saving: None,
            focus_day: None,
            drivers: false,
            average_per_group: false,
            weekends: false,
            threshold: None,
            unknown_names: Vec::new(),
            unsupported: None,
            budget: None,
            refines_previous: false,
        }
    }

    /// The headline measure (spend when none is named).
    pub fn measure(&self) -> Measure {
        self.measures.first().copied().unwrap_or(Measure::Spend)
    }

    /// The value the scope has for `dimension`, when it names exactly one.
    pub fn only(&self, dimension: &Dimension) -> Option<&str> {
        match self.scope.values_of(dimension) {
            Some([one]) => Some(one.as_str()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_analytics::Filter;
    use chrono::TimeZone;

    #[test]
    fn a_plan_round_trips_through_json_in_its_plain_form() {
        let from = Utc.with_ymd_and_hms(2026, 11, 19, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        let mut plan = QuestionPlan::new(
            Intent::Figure,
            PlanPeriod::new(Period::new(from, to), "the last 7 days"),
        );
        plan.measures = vec![Measure::Spend];
        plan.scope = Scope::all().and(Filter::is(Dimension::Model, "gpt-4o"));
        plan.group_by = Some(Grouping::By(Dimension::Feature));
        plan.rank = Some(Rank {
            order: Order::Highest,
            top: Some(1),
        });
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "intent": "figure",
                "measures": ["spend"],
                "scope": [{"dimension": "model", "values": ["gpt-4o"]}],
                "group_by": "feature",
                "period": {"from": "2026-11-19T00:00:00Z", "to": "2026-11-26T00:00:00Z", "text": "the last 7 days"},
                "rank": {"order": "highest", "top": 1},
            })
        );
        let back: QuestionPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back, plan);
        let what_if = serde_json::to_value(WhatIf::MoveToModel {
            to: "claude-3-5-haiku".into(),
        })
        .unwrap();
        assert_eq!(
            what_if,
            serde_json::json!({"kind": "move_to_model", "to": "claude-3-5-haiku"})
        );
    }
}
