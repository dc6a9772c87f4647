//! What a question asks for, from its words: the measures ("cost", "calls", "p95"), the
//! grouping ("by user", "which feature", "daily"), the ranking ("top 5", "cheapest"), the
//! cue words of each kind of answer (analysis, savings, spike, forecast, what-if, model
//! choice), the conversation moves (greeting, capabilities, data help, requests Apogee cannot
//! do) and the words that make a question a follow-up ("and …?", "only …", "break that down
//! by …"). Pure rules over the tokens; names and periods are read elsewhere.

use apogee_analytics::{Dimension, Grouping};

use super::names::{OrgNames, dimension_word};
use super::words::{Token, is_stop, number};
use crate::plan::{Measure, Order, Rank, SavingKind, Threshold, ThresholdAmount, Unsupported};

/// How a follow-up refines the previous plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FollowUp {
    /// "and claude-sonnet-4?", "what about last month?": replace what it names.
    Replace,
    /// "only support-bot", "just the growth team": narrow to it.
    Only,
    /// "and gpt-4o too", "include gpt-4o": add it to the same filter.
    Also,
    /// "without support-bot", "excluding gpt-4o".
    Exclude,
    /// "break that down by user".
    BreakDown,
}

/// What a budget question asks (the amount and calendar are read by `budget.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BudgetAsk {
    Set,
    List,
    OnTrack,
    Remove,
}

/// The cue words found, by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Signals {
    pub measures: Vec<Measure>,
    pub group: Option<Grouping>,
    /// Named with a number or a superlative.
    pub rank: Option<Rank>,
    /// The grouping word was singular after "which"/"what"/"who" ("which feature").
    pub singular_group: bool,
    pub unsupported: Option<Unsupported>,
    /// A budget command: names a budget, a spending limit or cap, or being on track.
    pub budget: Option<BudgetAsk>,
    pub data_help: bool,
    pub greeting: bool,
    pub capabilities: bool,
    pub analysis: bool,
    pub savings: bool,
    pub spike: bool,
    pub forecast: bool,
    pub model_selection: bool,
    /// Why something costs what it does: "why is X so expensive", "what drives X's cost".
    pub drivers: bool,
    /// An average over the groups: "per user on average", "average spend per feature".
    pub average_per_group: bool,
    /// Weekends against weekdays ("on weekends", "weekdays vs weekends").
    pub weekends: bool,
    /// An amount of money the groups' spend is compared with: "more than $50", "under $10".
    pub threshold: Option<Threshold>,
    /// The kind of saving named: "response cache", "duplicate prompts", "max_tokens", "prompt
    /// caching", "night-time jobs" with "batch", "cheaper model", "context tier".
    pub saving: Option<SavingKind>,
    /// "batch api", "batching".
    pub batch: bool,
    /// A verb of moving traffic: move, switch, migrate, replace, instead.
    pub moving: bool,
    /// Hypothetical: "what if", "would", "if we", "could we".
    pub hypothetical: bool,
    /// Starts with an order ("switch …", "set …") rather than a question.
    pub imperative: bool,
    pub follow_up: Option<FollowUp>,
    /// "vs", "compare", "against" (also between names: "gpt-4o vs claude").
    pub compares: bool,
    /// Content words no rule understood (not names, not vocabulary).
    pub leftovers: Vec<usize>,
}

impl Signals {
    /// Any sign of what to answer, beyond names and periods.
    pub(crate) fn asks_something(&self) -> bool {
        !self.measures.is_empty()
            || self.group.is_some()
            || self.rank.is_some()
            || self.analysis
            || self.savings
            || self.spike
            || self.forecast
            || self.model_selection
            || self.saving.is_some()
            || self.batch
            || self.compares
    }
}

/// Words the rules below understand: never taken for names on their own.
const VOCABULARY: &[&str] = &[
    // measures
    "cost",
    "costs",
    "costed",
    "costing",
    "spend",
    "spent",
    "spends",
    "spending",
    "bill",
    "bills",
    "billed",
    "billing",
    "money",
    "dollar",
    "dollars",
    "usd",
    "expensive",
    "pricey",
    "pay",
    "paid",
    "paying",
    "charge",
    "charges",
    "charged",
    "invoice",
    "burn",
    "burned",
    "burning",
    "price",
    "prices",
    "pricing",
    "call",
    "calls",
    "request",
    "requests",
    "invocation",
    "invocations",
    "times",
    "volume",
    "traffic",
    "often",
    "token",
    "tokens",
    "input",
    "output",
    "prompt",
    "completion",
    "completions",
    "generated",
    "errors",
    "error",
    "failures",
    "failure",
    "failed",
    "fail",
    "fails",
    "failing",
    "rate",
    "rates",
    "latency",
    "latencies",
    "slow",
    "slower",
    "slowest",
    "fast",
    "faster",
    "fastest",
    "response",
    "time",
    "long",
    "p50",
    "p90",
    "p95",
    "p99",
    "median",
    "tail",
    "average",
    "avg",
    "mean",
    "unit",
    "per",
    "percent",
    "percentage",
    "reliability",
    "reliable",
    "success",
    "usage",
    "use",
    "used",
    "uses",
    "using",
    "much",
    "many",
    "amount",
    "number",
    "count",
    "busiest",
    "busy",
    "quietest",
    // grouping and ranking
    "by",
    "each",
    "every",
    "daily",
    "weekly",
    "day",
    "days",
    "week",
    "weeks",
    "hour",
    "hours",
    "hourly",
    "hour-by-hour",
    "peak",
    "trend",
    "trends",
    "timeline",
    "series",
    "breakdown",
    "break",
    "down",
    "split",
    "grouped",
    "group",
    "top",
    "bottom",
    "most",
    "least",
    "highest",
    "lowest",
    "biggest",
    "largest",
    "smallest",
    "fewest",
    "max",
    "maximum",
    "min",
    "minimum",
    "greatest",
    "cheapest",
    "cheaper",
    "priciest",
    "worst",
    "best",
    "rank",
    "ranking",
    "ranked",
    "leaderboard",
    "sorted",
    "sort",
    "list",
    "heaviest",
    "more",
    "less",
    "fewer",
    "higher",
    "lower",
    "bigger",
    "smaller",
    "who",
    // intents
    "analyze",
    "analyse",
    "analysis",
    "analyzing",
    "analysing",
    "overview",
    "report",
    "summary",
    "summarize",
    "summarise",
    "audit",
    "insights",
    "insight",
    "dive",
    "deep",
    "going",
    "save",
    "saving",
    "savings",
    "cut",
    "cuts",
    "cutting",
    "reduce",
    "reducing",
    "optimize",
    "optimise",
    "optimization",
    "optimisation",
    "waste",
    "wasting",
    "wasted",
    "recommend",
    "recommendation",
    "recommendations",
    "trim",
    "jump",
    "jumped",
    "spike",
    "spiked",
    "spikes",
    "surge",
    "surged",
    "increase",
    "increased",
    "rose",
    "risen",
    "grew",
    "grow",
    "unusual",
    "anomaly",
    "anomalies",
    "happened",
    "went",
    "forecast",
    "forecasts",
    "heading",
    "headed",
    "projected",
    "projection",
    "track",
    "end",
    "expect",
    "expected",
    "predict",
    "predicted",
    "estimate",
    "trajectory",
    "pace",
    "worth",
    "should",
    "better",
    "choose",
    "pick",
    "batch",
    "batched",
    "batching",
    "api",
    "move",
    "moving",
    "moved",
    "switch",
    "switching",
    "switched",
    "migrate",
    "migrating",
    "migrated",
    "swap",
    "replace",
    "replacing",
    "instead",
    "route",
    "routing",
    "downgrade",
    "compare",
    "compared",
    "comparing",
    "comparison",
    "vs",
    "versus",
    "against",
    "change",
    "changed",
    "difference",
    "budget",
    "budgets",
    "quota",
    "quotas",
    "monthly",
    "delete",
    "remove",
    "threshold",
    "thresholds",
    "org-wide",
    "company-wide",
    "alert",
    "alerts",
    "notify",
    "export",
    "download",
    "help",
    // filler of the domain
    "ai",
    "llm",
    "llms",
    "gen",
    "genai",
    "company",
    "org",
    "organization",
    "organisation",
    "account",
    "everything",
    "altogether",
    "combined",
    "far",
    "date",
    "right",
    "lot",
    "figure",
    "figures",
    "numbers",
    "stats",
    "statistics",
    "info",
    "information",
    "details",
    "doing",
    "looking",
    "happening",
    "stuff",
    "things",
    "thing",
    "one",
    "ones",
    "run",
    "ran",
    "running",
    "make",
    "made",
    "again",
    "last",
    "past",
    "previous",
    "prior",
    "this",
    "next",
    "since",
    "between",
    "until",
    "period",
    "same",
    "only",
    "without",
    "except",
    "excluding",
    "include",
    "including",
    "plus",
    "too",
    "well",
    "now",
    "ok",
    "okay",
    "hi",
    "hello",
    "hey",
    "thanks",
    "thank",
    "cool",
    "great",
    "nice",
    "good",
    "morning",
    "afternoon",
    "evening",
    "would",
    "could",
    "if",
    "we'd",
    "much",
    "currently",
    "exact",
    "approximately",
    "around",
    "spending",
    "spendings",
    "costly",
    "cheap",
    "money",
    "bucks",
    "apogee",
    "month",
    "months",
    "year",
    "years",
    "quarter",
    "today",
    "yesterday",
    "weekend",
    "weekends",
    "weekday",
    "weekdays",
    "that",
    "those",
    "it",
    "them",
    "there",
    "here",
    "what",
    "which",
    "how",
    "show",
    "give",
    "tell",
    "list",
    "get",
    "month-end",
    "makes",
    "gets",
    "generates",
    "generate",
    "sends",
    "send",
    "sent",
    "needs",
    "runs",
    "produces",
    "produce",
    "takes",
    "consumes",
    "consume",
    "consumed",
    "handles",
    "handle",
    "handled",
    "served",
    "serves",
    "accounts",
    "account",
    "drives",
    "drove",
    "driving",
    "responsible",
    "behind",
    "biggest",
    "spender",
    "spenders",
    "user's",
    // kinds of saving (and REPEATED)
    "prompt",
    "prompts",
    "max_tokens",
    "max-tokens",
    "night-time",
    "nighttime",
    "nightly",
    "overnight",
    // the prompt cache's reads
    "cache",
    "cached",
    "caching",
    "hit",
    "hits",
    "read",
    "reads",
    "share",
];

/// Words saying a prompt was sent again: with a word for prompts, the response cache.
const REPEATED: &[&str] = &[
    "repeat",
    "repeats",
    "repeated",
    "repeating",
    "duplicate",
    "duplicates",
    "duplicated",
    "identical",
];

/// Whether the rules understand `word` (so it is no name on its own).
/// Words of a unit of tokens between "per" and "tokens" ("per 1k tokens", "per one million
/// tokens").
const TOKEN_UNITS: &[&str] = &[
    "1",
    "one",
    "a",
    "1k",
    "k",
    "1000",
    "1,000",
    "thousand",
    "1m",
    "m",
    "mm",
    "1000000",
    "1,000,000",
    "million",
    "mil",
];

/// The end (exclusive) of a "per … tokens" phrase starting at `i` ("per token", "per 1k
/// tokens", "per million tokens", "per mtok"): a cost per token is asked, whatever the unit.
pub(crate) fn per_tokens_at(tokens: &[Token], i: usize) -> Option<usize> {
    let word = |j: usize| word_at(tokens, j);
    if !matches!(word(i), "per" | "each" | "every") {
        return None;
    }
    let mut j = i + 1;
    while j < i + 3 && TOKEN_UNITS.contains(&word(j)) {
        j += 1;
    }
    let unit = matches!(word(j), "token" | "tokens")
        || (j == i + 1 && matches!(word(j), "mtok" | "ktok" | "1mtok" | "1ktok"));
    unit.then_some(j + 1)
}

/// The word indexes of every "per … tokens" phrase: a unit, never a name ("1k", "million").
pub(crate) fn per_tokens_words(tokens: &[Token]) -> Vec<usize> {
    (0..tokens.len())
        .filter_map(|i| per_tokens_at(tokens, i).map(|end| i..end))
        .flatten()
        .collect()
}

pub(crate) fn is_vocabulary(word: &str) -> bool {
    VOCABULARY.contains(&word)
        || REPEATED.contains(&word)
        || dimension_word(word, &OrgNames::default()).is_some()
}

struct View<'a> {
    t: &'a [Token],
    used: &'a [usize],
}

/// Token `i` in lower case; `""` past the end or for a quoted name (read whole as a name,
/// never as a rule's word).
fn word_at(tokens: &[Token], i: usize) -> &str {
    tokens
        .get(i)
        .map_or("", |t| if t.quoted { "" } else { t.lower.as_str() })
}

impl View<'_> {
    fn word(&self, i: usize) -> &str {
        word_at(self.t, i)
    }

    fn has(&self, w: &str) -> bool {
        (0..self.t.len()).any(|i| self.word(i) == w)
    }

    fn any(&self, ws: &[&str]) -> bool {
        ws.iter().any(|w| self.has(w))
    }

    fn starts(&self, prefix: &str) -> bool {
        (0..self.t.len()).any(|i| self.word(i).starts_with(prefix))
    }

    /// The token index where the words `p` follow each other.
    fn phrase_at(&self, p: &[&str]) -> Option<usize> {
        (0..self.t.len()).find(|&i| p.iter().enumerate().all(|(k, w)| self.word(i + k) == *w))
    }

    fn phrase(&self, p: &[&str]) -> bool {
        self.phrase_at(p).is_some()
    }

    fn free(&self, i: usize) -> bool {
        !self.used.contains(&i)
    }
}

/// Reads the cue words of `tokens`; `used` are read as periods or names already.
pub(crate) fn read(tokens: &[Token], used: &[usize], names: &OrgNames, question: &str) -> Signals {
    let v = View { t: tokens, used };
    let mut s = Signals {
        measures: measures(&v),
        ..Signals::default()
    };
    let (group, singular) = grouping(&v, names);
    // "average daily spend" is one figure over the days, not a series of them.
    s.group = group.filter(|g| !(s.measures == [Measure::SpendPerDay] && *g == Grouping::Day));
    s.threshold = threshold(&v, question);
    s.average_per_group = matches!(s.group, Some(Grouping::By(_)))
        && v.any(&["average", "avg", "mean", "typical", "typically"])
        && (0..tokens.len()).any(|i| {
            matches!(v.word(i), "per" | "each" | "every")
                && dimension_word(v.word(i + 1), names).is_some()
        });
    s.singular_group = singular;
    // "on weekends": the weekdays, Saturdays and Sundays summed apart; not within another
    // breakdown (said to be unsupported below).
    if weekends_apart(&v) && matches!(s.group, None | Some(Grouping::DayOfWeek)) {
        s.weekends = true;
        s.group = Some(Grouping::DayOfWeek);
        s.singular_group = false;
    }
    s.rank = rank(&v, &s);
    conversation(&v, &mut s, question);
    intents(&v, &mut s);
    s.follow_up = follow_up(&v);
    s.leftovers = (0..tokens.len())
        .filter(|&i| {
            let t = &tokens[i];
            v.free(i)
                && !t.quoted
                && !is_stop(&t.lower)
                && !is_vocabulary(&t.lower)
                && dimension_word(&t.lower, names).is_none()
                && number(&t.lower).is_none()
                && !t.lower.starts_with('$')
                && t.lower.chars().any(char::is_alphabetic)
        })
        .collect();
    s
}

/// "more than $50", "over $1k", "at least 100 dollars", "less than $5", "under $10": a
/// comparison word right before an amount of money; "more than 10,000 calls", "under 500
/// requests": before a number of calls.
fn threshold(v: &View<'_>, question: &str) -> Option<Threshold> {
    let money = |i: usize| {
        let w = v.word(i);
        w.starts_with('$')
            || (w.starts_with(|c: char| c.is_ascii_digit())
                && matches!(v.word(i + 1), "dollars" | "dollar" | "usd" | "bucks"))
    };
    let (above, at) = (0..v.t.len()).find_map(|i| {
        let (w, next) = (v.word(i), v.word(i + 1));
        let (above, amount_at) = match (w, next) {
            ("more" | "greater" | "higher", "than") => (true, i + 2),
            ("at", "least") => (true, i + 2),
            ("less" | "lower" | "fewer", "than") => (false, i + 2),
            ("at", "most") => (false, i + 2),
            ("over" | "above" | "exceeding" | "beyond", _) => (true, i + 1),
            ("under" | "below", _) => (false, i + 1),
            _ => return None,
        };
        (money(amount_at) || calls_at(v.t, amount_at).is_some()).then_some((above, amount_at))
    })?;
    let amount = match calls_at(v.t, at) {
        Some((calls, _)) => ThresholdAmount::Calls { calls },
        None => ThresholdAmount::Spend {
            cents: crate::question::budget::amount(question).filter(|c| *c >= 0)?,
        },
    };
    Some(Threshold { above, amount })
}

/// A number of calls at `i` ("10,000 calls", "1k requests", "500 invocations"): digits, with
/// a `k` or `m` after them, and the groups of three a comma split off ("10", "000"); the
/// number and the index of the word after it.
fn calls_at(tokens: &[Token], i: usize) -> Option<(i64, usize)> {
    let word = |j: usize| word_at(tokens, j);
    let w = word(i);
    let (digits, scale) = match w.strip_suffix('k') {
        Some(d) => (d, 1_000.0),
        None => match w.strip_suffix('m') {
            Some(d) => (d, 1_000_000.0),
            None => (w, 1.0),
        },
    };
    let mut n = digits
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)?
        * scale;
    let mut next = i + 1;
    while scale == 1.0 && word(next).len() == 3 && word(next).bytes().all(|b| b.is_ascii_digit()) {
        n = n * 1_000.0 + word(next).parse::<f64>().ok()?;
        next += 1;
    }
    let calls = matches!(
        word(next),
        "calls" | "call" | "requests" | "request" | "invocations"
    );
    // Beyond 10¹⁵ calls is no threshold a question means.
    (calls && n < 1e15).then_some((n.round() as i64, next))
}

/// The word indexes of "growth" as a change over time ("month over month growth", "spend
/// growth", "growth rate"): a comparison, not the growth team.
pub(crate) fn growth_words(tokens: &[Token]) -> Vec<usize> {
    let word = |j: Option<usize>| j.map_or("", |j| word_at(tokens, j));
    (0..tokens.len())
        .filter(|&i| {
            word(Some(i)) == "growth"
                && (matches!(
                    word(i.checked_sub(1)),
                    "day"
                        | "week"
                        | "month"
                        | "quarter"
                        | "year"
                        | "mom"
                        | "wow"
                        | "yoy"
                        | "spend"
                        | "spending"
                        | "cost"
                        | "costs"
                        | "usage"
                        | "traffic"
                ) || word(Some(i + 1)) == "rate")
        })
        .collect()
}

/// The word indexes of every number of calls ("1k requests"): an amount, never a name.
pub(crate) fn calls_amount_words(tokens: &[Token]) -> Vec<usize> {
    (0..tokens.len())
        .filter_map(|i| calls_at(tokens, i).map(|(_, end)| i..end))
        .flatten()
        .collect()
}

fn push(out: &mut Vec<Measure>, m: Measure) {
    if !out.contains(&m) {
        out.push(m);
    }
}

/// The measures, in the order the question names them.
fn measures(v: &View<'_>) -> Vec<Measure> {
    let mut out = Vec::new();
    // Percentiles named one by one replace the three a plain "latency" asks for.
    let mut named_percentiles: Vec<Measure> = Vec::new();
    let n = v.t.len();
    let latency_word = |w: &str| {
        matches!(
            w,
            "latency" | "latencies" | "slow" | "slower" | "slowest" | "fast" | "faster" | "fastest"
        )
    };
    let mut i = 0;
    while i < n {
        let w = v.word(i);
        let next = v.word(i + 1);
        let prev = i.checked_sub(1).map_or("", |p| v.word(p));
        // "per token", "per 1k tokens": one measure, its words read.
        if let Some(end) = per_tokens_at(v.t, i) {
            push(&mut out, Measure::CostPerMillionTokens);
            i = end;
            continue;
        }
        match w {
            "p50" | "median" if w == "p50" || latency_word(next) => {
                push(&mut out, Measure::LatencyP50);
                push(&mut named_percentiles, Measure::LatencyP50);
            }
            "p90" | "p95" => {
                push(&mut out, Measure::LatencyP95);
                push(&mut named_percentiles, Measure::LatencyP95);
            }
            "p99" => {
                push(&mut out, Measure::LatencyP99);
                push(&mut named_percentiles, Measure::LatencyP99);
            }
            "average" | "avg" | "mean" | "typical"
                if latency_word(next)
                    || (next == "response" && matches!(v.word(i + 2), "time" | "times")) =>
            {
                push(&mut out, Measure::LatencyMean);
                push(&mut named_percentiles, Measure::LatencyMean);
            }
            "on" if next == "average" && v.any(&["latency", "slow", "fast", "response"]) => {
                push(&mut out, Measure::LatencyMean);
                push(&mut named_percentiles, Measure::LatencyMean);
                i += 1;
            }
            "tail" if latency_word(next) => {
                push(&mut out, Measure::LatencyP99);
                push(&mut named_percentiles, Measure::LatencyP99);
            }
            "input" | "prompt"
                if matches!(next, "and" | "or" | "&" | "+" | "/" | "vs")
                    && matches!(v.word(i + 2), "output" | "completion")
                    && matches!(v.word(i + 3), "tokens" | "token") =>
            {
                push(&mut out, Measure::InputTokens);
                push(&mut out, Measure::OutputTokens);
                i += 3;
            }
            _ if (latency_word(w)
                || (w == "response" && matches!(next, "time" | "times"))
                || (w == "how" && next == "long"))
                && !out.iter().any(|m| m.is_latency()) =>
            {
                out.extend([
                    Measure::LatencyP95,
                    Measure::LatencyP50,
                    Measure::LatencyP99,
                ]);
            }
            "error" | "errors" | "failure" | "failures"
                if matches!(next, "rate" | "rates" | "ratio" | "percentage") =>
            {
                push(&mut out, Measure::ErrorRate);
                i += 1;
            }
            "reliability" | "reliable" | "success" => push(&mut out, Measure::ErrorRate),
            "errors" | "error" | "failures" | "failure" | "failed" | "fail" | "fails"
            | "failing" | "errored" => {
                let rate = v.any(&[
                    "percent",
                    "percentage",
                    "%",
                    "share",
                    "fraction",
                    "proportion",
                ]) || v.phrase(&["how", "often"]);
                push(
                    &mut out,
                    if rate {
                        Measure::ErrorRate
                    } else {
                        Measure::Errors
                    },
                );
                // "failed calls" are the errors, not all calls.
                if matches!(next, "calls" | "requests" | "call" | "request") {
                    i += 1;
                }
            }
            // "calls that failed", "calls with errors".
            "calls" | "requests"
                if matches!(
                    next,
                    "that" | "which" | "with" | "failed" | "failing" | "erroring"
                ) && (matches!(next, "failed" | "failing" | "erroring")
                    || matches!(
                        v.word(i + 2),
                        "failed" | "fail" | "errors" | "error" | "errored"
                    )) => {}
            "per" | "each"
                if matches!(next, "call" | "request" | "invocation")
                    && matches!(prev, "tokens" | "token") =>
            {
                push(&mut out, Measure::TokensPerCall);
                i += 1;
            }
            "per" | "each" if matches!(next, "call" | "request" | "invocation") => {
                push(&mut out, Measure::CostPerCall);
                i += 1;
            }
            "average" | "avg" | "mean" if matches!(next, "tokens" | "token") => {
                push(&mut out, Measure::TokensPerCall);
                i += 1;
            }
            // "cache hit rate", "share of input read from cache", "cached tokens".
            "cache" | "cached" | "caching" => {
                let rate = v.any(&[
                    "share",
                    "percent",
                    "percentage",
                    "%",
                    "rate",
                    "ratio",
                    "fraction",
                    "proportion",
                    "hit",
                    "hits",
                ]);
                let tokens = v.any(&["tokens", "token", "input", "prompts", "prompt"])
                    || v.phrase(&["from", "cache"])
                    || v.phrase(&["cache", "reads"]);
                let saving = v.any(&["save", "saves", "saving", "savings", "could", "would"]);
                if rate && !saving {
                    push(&mut out, Measure::CacheReadShare);
                } else if tokens && !saving {
                    push(&mut out, Measure::CachedInputTokens);
                }
            }
            "per-call" | "per-request" => push(&mut out, Measure::CostPerCall),
            "average" | "avg" | "mean" | "unit" if matches!(next, "cost" | "price" | "spend") => {
                push(&mut out, Measure::CostPerCall);
                i += 1;
            }
            "cost" | "costs" if next == "per" && matches!(v.word(i + 2), "call" | "request") => {
                push(&mut out, Measure::CostPerCall);
                i += 2;
            }
            "input" | "prompt" if matches!(next, "tokens" | "token") => {
                push(&mut out, Measure::InputTokens);
                i += 1;
            }
            "output" | "completion" | "generated" if matches!(next, "tokens" | "token") => {
                push(&mut out, Measure::OutputTokens);
                i += 1;
            }
            "tokens" | "token"
                if !matches!(
                    prev,
                    "input" | "prompt" | "output" | "completion" | "generated"
                ) =>
            {
                push(&mut out, Measure::TotalTokens);
            }
            "calls" | "requests" | "invocations" | "traffic" | "volume" | "busiest"
            | "quietest" => push(&mut out, Measure::Calls),
            "call" | "request" if !matches!(prev, "per" | "each" | "a") => {
                push(&mut out, Measure::Calls)
            }
            "times" if prev == "many" => push(&mut out, Measure::Calls),
            "often" if prev == "how" && !v.starts("fail") && !v.starts("error") => {
                push(&mut out, Measure::Calls)
            }
            "used" | "uses" | "use"
                if matches!(prev, "most" | "least") || matches!(next, "most" | "least") =>
            {
                push(&mut out, Measure::Calls)
            }
            // "the most expensive calls", "the cheapest requests": what one call costs.
            "expensive" | "priciest" | "costliest" | "pricey" | "cheapest" | "cheap"
                if matches!(next, "calls" | "call" | "requests" | "request") =>
            {
                push(&mut out, Measure::CostPerCall);
                i += 1;
            }
            // "cheaper than", "more expensive than": what one call costs, side by side.
            "cheaper" | "pricier" | "costlier" if next == "than" => {
                push(&mut out, Measure::CostPerCall)
            }
            "expensive" if next == "than" && matches!(prev, "more" | "less") => {
                push(&mut out, Measure::CostPerCall)
            }
            "cost" | "costs" | "costed" | "costing" | "costly" | "spend" | "spent" | "spends"
            | "spending" | "bill" | "billed" | "billing" | "money" | "dollars" | "usd"
            | "expensive" | "pricey" | "priciest" | "pay" | "paid" | "paying" | "charges"
            | "charged" | "invoice" | "burn" | "burned" | "burning" | "bucks" | "cheap" => {
                push(&mut out, Measure::Spend)
            }
            "cheapest" => {
                // A cheap model is cheap per call; a cheap feature costs little in all.
                let about_models = v.any(&["model", "models", "llm", "llms"]);
                push(
                    &mut out,
                    if about_models {
                        Measure::CostPerCall
                    } else {
                        Measure::Spend
                    },
                );
            }
            _ if w.starts_with('$') => push(&mut out, Measure::Spend),
            _ => {}
        }
        i += 1;
    }
    if !named_percentiles.is_empty() {
        out.retain(|m| !m.is_latency() || named_percentiles.contains(m));
    }
    // "how much" without another measure asks for money.
    if out.is_empty() && v.phrase(&["how", "much"]) {
        out.push(Measure::Spend);
    }
    // "How much do we spend per day on average?", "average daily spend": spend over the days.
    let per_day = (v.phrase(&["per", "day"])
        || v.phrase(&["each", "day"])
        || (v.phrase(&["a", "day"]) && !v.any(&["ago", "before"]))
        || v.phrase(&["daily", "average"])
        || v.phrase(&["average", "daily"])
        || v.phrase(&["avg", "daily"])
        || v.phrase(&["daily", "avg"])
        || v.phrase(&["average", "day"])
        || v.phrase(&["average", "per", "day"]))
        && (out.is_empty() || out == [Measure::Spend]);
    if per_day {
        out = vec![Measure::SpendPerDay];
    }
    // "cost per call" also names "cost", "what share of calls failed" also "calls", "tokens
    // per call" also "tokens", "input tokens read from cache" also "input tokens": the ratio
    // or the narrower figure is the one asked for.
    if out.contains(&Measure::TokensPerCall) {
        out.retain(|m| *m != Measure::TotalTokens && *m != Measure::Calls);
    }
    if out.contains(&Measure::CacheReadShare) || out.contains(&Measure::CachedInputTokens) {
        out.retain(|m| *m != Measure::InputTokens && *m != Measure::TotalTokens);
    }
    // Spend named on its own in a list beside the ratio ("spend, cost per call and tokens per
    // call by model") stays: each is asked for.
    let spend_alone = (0..v.t.len())
        .any(|i| matches!(v.word(i), "spend" | "spent" | "spending") && v.word(i + 1) != "per")
        && v.has("and");
    if out.contains(&Measure::CostPerCall) {
        out.retain(|m| (*m != Measure::Spend || spend_alone) && *m != Measure::Calls);
    }
    // "cheapest model per 1k tokens": per token, not per call.
    if out.contains(&Measure::CostPerMillionTokens) {
        out.retain(|m| {
            (*m != Measure::Spend || spend_alone)
                && !matches!(m, Measure::CostPerCall | Measure::TotalTokens)
        });
    }
    if out.contains(&Measure::ErrorRate) {
        out.retain(|m| *m != Measure::Errors && *m != Measure::Calls);
    }
    out
}

fn time_grouping(w: &str) -> Option<Grouping> {
    match w {
        "day" | "days" | "daily" | "day-by-day" => Some(Grouping::Day),
        "week" | "weeks" | "weekly" | "week-by-week" => Some(Grouping::Week),
        // "by hour", "which hour": the hours of the day, every day of the period together
        // ("the last 3 hours" is a period, read before this).
        "hour" | "hours" | "hourly" | "hour-by-hour" => Some(Grouping::HourOfDay),
        "weekday" => Some(Grouping::DayOfWeek),
        _ => None,
    }
}

/// "day(s) of (the) week" at `i`: the weekdays, every such day of the period together.
fn day_of_week_at(v: &View<'_>, i: usize) -> bool {
    of_the_at(v, i, &["day", "days"], "week")
}

/// "time of (the) day" at `i`: the hours of the day, as "hour of the day" is.
fn time_of_day_at(v: &View<'_>, i: usize) -> bool {
    of_the_at(v, i, &["time"], "day")
}

/// One of `heads` at `i`, then "of", "the" or not, and `tail`: "day of the week", "time of
/// day".
fn of_the_at(v: &View<'_>, i: usize, heads: &[&str], tail: &str) -> bool {
    heads.contains(&v.word(i))
        && v.word(i + 1) == "of"
        && (v.word(i + 2) == tail || (v.word(i + 2) == "the" && v.word(i + 3) == tail))
}

/// The grouping, and whether it was named singular after which/what/who.
fn grouping(v: &View<'_>, names: &OrgNames) -> (Option<Grouping>, bool) {
    let n = v.t.len();
    for i in 0..n {
        if !v.free(i) {
            continue;
        }
        let w = v.word(i);
        let prev = i.checked_sub(1).map_or("", |p| v.word(p));
        let prev2 = i.checked_sub(2).map_or("", |p| v.word(p));
        // "daily spend by day of the week": the weekdays, read at their own words.
        if matches!(w, "daily" | "weekly" | "hourly" | "hour-by-hour")
            && !(0..n).any(|j| day_of_week_at(v, j))
        {
            return (time_grouping(w), false);
        }
        if time_of_day_at(v, i) {
            // "What time of day costs the most?", "spend by time of day".
            let asks = matches!(prev, "which" | "what") || matches!(prev2, "which" | "what");
            return (Some(Grouping::HourOfDay), asks);
        }
        if matches!(w, "trend" | "trends" | "timeline" | "series")
            || (w == "time" && prev == "over")
        {
            return (Some(Grouping::Day), false);
        }
        let leads = matches!(prev, "by" | "per" | "each" | "every" | "across" | "among")
            || (prev == "the" && matches!(prev2, "by" | "per" | "across"))
            || (matches!(prev, "by" | "per")
                && matches!(prev2, "down" | "split" | "grouped" | "broken"));
        let superlative = matches!(
            prev,
            "cheapest"
                | "expensive"
                | "priciest"
                | "busiest"
                | "quietest"
                | "slowest"
                | "fastest"
                | "biggest"
                | "largest"
                | "smallest"
                | "highest"
                | "lowest"
                | "top"
                | "most"
                | "least"
                | "peak"
        ) || (matches!(prev2, "most" | "least" | "top")
            && !matches!(prev, "of" | "the" | "our" | "my" | "your" | "all"));
        // "day of the week" is the weekdays, not the days.
        let time = if day_of_week_at(v, i) {
            Some(Grouping::DayOfWeek)
        } else {
            time_grouping(w)
        };
        if let Some(g) = time.clone()
            && (matches!(prev, "which" | "what") || superlative)
        {
            return (Some(g), true);
        }
        if let Some(g) = time {
            // "by day", "per week", "day by day"; "7 days" is a period, read elsewhere.
            let doubled = v.word(i + 1) == "by" && time_grouping(v.word(i + 2)) == time_grouping(w);
            if leads || doubled {
                return (Some(g), false);
            }
            continue;
        }
        if (w == "who" || w == "whom") && !(v.word(i + 1) == "are" && v.word(i + 2) == "you") {
            return (Some(Grouping::By(Dimension::User)), true);
        }
        let Some(d) = dimension_word(w, names) else {
            continue;
        };
        let plural = w.ends_with('s') && !matches!(w, "llms") || matches!(w, "people" | "llms");
        let asks_which = matches!(prev, "which" | "what" | "whose")
            || (matches!(prev2, "which" | "what") && matches!(prev, "of" | "single" | "one"));
        let counted = prev == "many" || matches!(prev, "top" | "bottom") || number(prev).is_some();
        let listed = matches!(
            prev,
            "the" | "our" | "all" | "my" | "your" | "different" | "various"
        ) && plural;
        if leads || asks_which || counted || listed || plural || superlative {
            return (
                Some(Grouping::By(d)),
                (asks_which || superlative) && !plural,
            );
        }
        // "model breakdown", "feature split".
        if matches!(
            v.word(i + 1),
            "breakdown" | "split" | "ranking" | "leaderboard" | "mix"
        ) {
            return (Some(Grouping::By(d)), false);
        }
    }
    (None, false)
}

/// How many to list when a plural ranking names no number.
pub(crate) const DEFAULT_TOP: u32 = 5;

fn rank(v: &View<'_>, s: &Signals) -> Option<Rank> {
    let highest = [
        "most", "highest", "biggest", "largest", "max", "maximum", "greatest", "heaviest",
        "priciest", "slowest", "busiest", "worst", "top", "peak",
    ];
    let lowest = [
        "least", "lowest", "smallest", "fewest", "min", "minimum", "cheapest", "fastest", "bottom",
        "quietest",
    ];
    let mut order = None;
    let mut top = None;
    for i in 0..v.t.len() {
        let w = v.word(i);
        if highest.contains(&w) && !(w == "most" && v.word(i + 1) == "recent") {
            order.get_or_insert(Order::Highest);
        } else if lowest.contains(&w) {
            order.get_or_insert(Order::Lowest);
        } else if w == "expensive" && i.checked_sub(1).is_some_and(|p| v.word(p) == "most") {
            order = Some(Order::Highest);
        }
        if matches!(w, "top" | "bottom" | "first") {
            top = number(v.word(i + 1)).or(top);
        }
        // "5 biggest users", "the 3 most expensive features".
        if let Some(n) = number(w)
            && (highest.contains(&v.word(i + 1)) || lowest.contains(&v.word(i + 1)))
        {
            top = Some(n);
        }
    }
    if v.any(&["rank", "ranking", "ranked", "leaderboard", "sorted", "sort"]) {
        order.get_or_insert(Order::Highest);
    }
    let mut order = order?;
    // "the most reliable model", "the highest success rate": the error rate read the other
    // way round, so the ranking's order turns too.
    if s.measures.first() == Some(&Measure::ErrorRate)
        && v.any(&[
            "reliable",
            "reliability",
            "success",
            "successful",
            "dependable",
        ])
    {
        order = match order {
            Order::Highest => Order::Lowest,
            Order::Lowest => Order::Highest,
        };
    }
    // "top" and "bottom" name a list; a superlative after "which X" names one.
    let top = top.or(match s.group {
        Some(ref g) if g.is_time() => Some(1),
        _ if s.singular_group => Some(1),
        _ if v.any(&[
            "top",
            "bottom",
            "rank",
            "ranking",
            "ranked",
            "leaderboard",
            "sorted",
            "sort",
        ]) =>
        {
            if v.any(&["rank", "ranking", "ranked", "leaderboard", "sorted", "sort"]) {
                None
            } else {
                Some(DEFAULT_TOP)
            }
        }
        Some(_) => Some(DEFAULT_TOP),
        None => Some(1),
    });
    Some(Rank {
        order,
        top: top.map(|n| n.clamp(1, 100)),
    })
}

/// Greetings, capability questions, data help, and requests Apogee cannot carry out.
fn conversation(v: &View<'_>, s: &mut Signals, question: &str) {
    const GREETING: &[&str] = &[
        "hi",
        "hello",
        "hey",
        "hiya",
        "howdy",
        "yo",
        "greetings",
        "morning",
        "afternoon",
        "evening",
        "thanks",
        "thank",
        "thx",
        "ty",
        "cheers",
        "sup",
        "hola",
        "bonjour",
    ];
    const POLITE: &[&str] = &[
        "good", "there", "you", "apogee", "bot", "great", "cool", "nice", "awesome", "ok", "okay",
        "so", "much", "a", "lot", "very", "all", "team", "folks", "again", "how", "are", "doing",
        "today", "is", "it", "going", "what's", "up", "hope", "well",
    ];
    let words: Vec<&str> = (0..v.t.len())
        .map(|i| v.word(i))
        .filter(|w| !w.is_empty())
        .collect();
    s.greeting = words.iter().any(|w| GREETING.contains(w))
        && words
            .iter()
            .all(|w| GREETING.contains(w) || POLITE.contains(w) || is_stop(w));

    s.capabilities = v.phrase(&["what", "can", "you"])
        || v.phrase(&["what", "do", "you", "do"])
        || v.phrase(&["what", "can", "i", "ask"])
        || v.phrase(&["what", "should", "i", "ask"])
        || v.phrase(&["who", "are", "you"])
        || v.phrase(&["how", "does", "this", "work"])
        || v.phrase(&["how", "do", "you", "work"])
        || v.phrase(&["how", "do", "i", "use"])
        || v.phrase(&["what", "is", "apogee"])
        || v.phrase(&["what", "questions"])
        || v.phrase(&["example", "questions"])
        || v.any(&["capabilities", "commands", "menu", "examples"])
        || (v.has("help")
            && words.iter().all(|w| {
                matches!(*w, "help" | "me" | "please" | "i" | "need" | "can" | "you") || is_stop(w)
            }));

    let about_data = v.any(&[
        "usage", "data", "records", "record", "logs", "events", "csv", "ndjson", "json", "spans",
        "traces",
    ]);
    s.data_help = v.starts("ingest")
        || v.starts("upload")
        || v.starts("import")
        || v.has("demo-data")
        || v.phrase(&["demo", "data"])
        || v.phrase(&["api", "usage"])
        || v.phrase(&["no", "data"])
        || v.phrase(&["no", "usage"])
        || v.phrase(&["see", "any", "data"])
        || v.phrase(&["get", "data", "in"])
        || v.phrase(&["get", "my", "data", "in"])
        || v.phrase(&["get", "our", "data", "in"])
        || v.phrase(&["opentelemetry"])
        || v.has("otel")
        || v.has("otlp")
        || (v.any(&[
            "send", "sending", "submit", "push", "load", "loading", "connect", "format", "add",
            "log",
        ]) && about_data)
        || (v.starts("integrat") && !v.starts("cost"));

    let asks = question.contains('?')
        || v.any(&[
            "what", "how", "which", "would", "could", "should", "can", "if", "why", "when", "does",
            "do", "is", "are", "save", "saving", "savings", "cost", "costs",
        ]);
    let budget_word = v.any(&["budget", "budgets", "budgeting", "quota", "quotas"])
        || v.phrase(&["spending", "limit"])
        || v.phrase(&["spend", "limit"])
        || v.phrase(&["spending", "cap"])
        || v.phrase(&["spend", "cap"]);
    let on_track = v.phrase(&["on", "track"])
        || v.phrase(&["off", "track"])
        || v.phrase(&["on", "pace"])
        || v.phrase(&["on", "target"]);
    s.budget = (budget_word || on_track).then(|| budget_ask(v, budget_word));
    s.unsupported = if s.budget.is_some() {
        None
    } else if v.any(&[
        "alert",
        "alerts",
        "alerting",
        "notify",
        "notification",
        "notifications",
        "remind",
        "reminder",
        "webhook",
        "webhooks",
        "slack",
        "pagerduty",
    ]) || v.phrase(&["email", "me"])
        || v.phrase(&["ping", "me"])
        || v.phrase(&["warn", "me"])
        || v.phrase(&["let", "me", "know", "when"])
        || v.phrase(&["tell", "me", "when"])
    {
        Some(Unsupported::Alerts)
    } else if !s.data_help
        && (v.any(&[
            "export",
            "download",
            "pdf",
            "spreadsheet",
            "excel",
            "xlsx",
            "print",
        ]) || v.phrase(&["send", "me", "a", "report"])
            || v.phrase(&["email", "the", "report"])
            || v.phrase(&["as", "a", "csv"])
            || v.phrase(&["to", "csv"]))
    {
        Some(Unsupported::Export)
    } else if v.any(&[
        "spend", "spent", "spending", "cost", "costs", "money", "bill", "pay", "paid", "paying",
    ]) && ["input", "output", "prompt", "completion"]
        .iter()
        .any(|kind| v.phrase(&[kind, "tokens"]) || v.phrase(&[kind, "token"]))
        && !(0..v.t.len()).any(|i| per_tokens_at(v.t, i).is_some())
        && !v.any(&["many", "count", "number"])
    {
        // "What share of our spend goes to output tokens?": not a figure that is stored.
        Some(Unsupported::TokenCostSplit)
    } else if weekends_apart(v) && !s.weekends {
        Some(Unsupported::Weekdays)
    } else if s.group.is_none() && single_call(v) {
        // "What was our most expensive call?" (not "which feature has the most expensive
        // calls", a cost per call by feature).
        Some(Unsupported::SingleCalls)
    } else {
        let first = v.word(0);
        let orders = matches!(
            first,
            "switch"
                | "move"
                | "migrate"
                | "change"
                | "route"
                | "reroute"
                | "replace"
                | "swap"
                | "disable"
                | "block"
                | "enable"
                | "turn"
                | "downgrade"
                | "upgrade"
                | "stop"
                | "set"
                | "limit"
                | "throttle"
                | "pause"
        );
        s.imperative = orders && !asks;
        s.imperative.then_some(Unsupported::ChangeModels)
    };
}

/// "on weekends", "on weekdays", "weekend vs weekday": Saturdays and Sundays summed apart from
/// the other days ("the weekend", "last weekend" are a period; "by weekday" a grouping).
fn weekends_apart(v: &View<'_>) -> bool {
    v.any(&["weekends", "weekdays"])
        || (0..v.t.len()).any(|i| {
            let prev = i.checked_sub(1).map_or("", |p| v.word(p));
            v.word(i) == "weekend"
                && v.free(i)
                && !matches!(
                    prev,
                    "the" | "last" | "this" | "next" | "past" | "previous" | "a" | "one"
                )
        })
}

/// "the most expensive call", "our priciest requests", "the single slowest call": one call
/// picked out of the others, not a sum over them.
fn single_call(v: &View<'_>) -> bool {
    (1..v.t.len()).any(|i| {
        matches!(v.word(i), "call" | "calls" | "request" | "requests")
            && matches!(
                v.word(i - 1),
                "expensive"
                    | "priciest"
                    | "costliest"
                    | "pricey"
                    | "biggest"
                    | "largest"
                    | "slowest"
                    | "single"
                    | "individual"
            )
    })
}

/// Which budget command: removing, then setting (a verb of it, or an amount), then being on
/// track, else listing.
fn budget_ask(v: &View<'_>, budget_word: bool) -> BudgetAsk {
    let amount = (0..v.t.len()).any(|i| {
        let w = v.word(i);
        (w.starts_with('$') || w.starts_with("-$")) && w.chars().any(|c| c.is_ascii_digit())
    }) || v.any(&["dollars", "usd", "bucks"]);
    if v.any(&[
        "delete", "remove", "drop", "cancel", "clear", "scrap", "discard",
    ]) || v.phrase(&["get", "rid", "of"])
    {
        BudgetAsk::Remove
    } else if budget_word
        && (amount
            || v.any(&[
                "set",
                "create",
                "add",
                "make",
                "put",
                "change",
                "raise",
                "lower",
                "increase",
                "decrease",
                "update",
                "bump",
                "reduce",
                "cut",
                "establish",
                "new",
                "start",
                "setup",
                "adjust",
                "modify",
            ])
            || v.phrase(&["set", "up"]))
    {
        BudgetAsk::Set
    } else if !budget_word
        || v.any(&[
            "track",
            "over",
            "under",
            "within",
            "ahead",
            "behind",
            "pace",
            "doing",
            "standing",
            "status",
            "exceed",
            "exceeded",
            "exceeding",
            "blow",
            "blown",
            "left",
            "remaining",
            "going",
            "fine",
        ])
    {
        BudgetAsk::OnTrack
    } else {
        BudgetAsk::List
    }
}

fn intents(v: &View<'_>, s: &mut Signals) {
    s.analysis = v.starts("analy")
        || v.any(&[
            "overview",
            "report",
            "summary",
            "summarize",
            "summarise",
            "audit",
            "insights",
        ])
        || v.phrase(&["deep", "dive"])
        || v.phrase(&["where", "is", "the", "money", "going"])
        || v.phrase(&["where", "is", "our", "money", "going"])
        || v.phrase(&["where", "does", "the", "money", "go"])
        || v.phrase(&["where", "does", "our", "money", "go"])
        || v.phrase(&["what", "are", "we", "spending", "on"])
        || v.phrase(&["how", "are", "we", "doing"])
        || (v.any(&["breakdown"]) && s.group.is_none())
        || v.phrase(&["break", "down", "my"])
        || v.phrase(&["break", "down", "our"]);

    s.batch = v.any(&["batch", "batched", "batching", "batch-api"]);
    s.moving = v.any(&[
        "move",
        "moving",
        "moved",
        "switch",
        "switching",
        "switched",
        "migrate",
        "migrating",
        "migrated",
        "swap",
        "swapping",
        "swapped",
        "replace",
        "replacing",
        "replaced",
        "instead",
        "route",
        "routing",
        "routed",
        "downgrade",
        "downgrading",
        "downgraded",
    ]) || v.phrase(&["change", "to"])
        || v.phrase(&["changed", "to"])
        || v.phrase(&["ran", "on"])
        || v.phrase(&["run", "on"])
        || v.phrase(&["used", "only"]);
    s.hypothetical = v.phrase(&["what", "if"])
        || v.any(&["would", "we'd", "hypothetically", "suppose", "imagine"])
        || v.phrase(&["if", "we"])
        || v.phrase(&["if", "it"])
        || v.phrase(&["if", "they"]);

    s.forecast = v.starts("forecast")
        || v.any(&[
            "projected",
            "projection",
            "predict",
            "predicted",
            "prediction",
            "trajectory",
            "month-end",
            "heading",
            "headed",
        ])
        || v.phrase(&["run", "rate"])
        || v.phrase(&["end", "of", "the", "month"])
        || v.phrase(&["end", "of", "month"])
        || v.phrase(&["by", "the", "end", "of"])
        || v.phrase(&["will", "we", "spend"])
        || v.phrase(&["going", "to", "spend"])
        || v.phrase(&["going", "to", "cost"])
        || v.phrase(&["at", "this", "rate"])
        || v.phrase(&["at", "this", "pace"])
        || (v.any(&["expect", "expected"]) && !s.hypothetical);
    // "Are we on track? What's the projected spend?" without a budget: the forecast question.
    // Alone, "on track" is about the budgets (whose answer leads with the same forecast).
    if s.forecast && s.budget == Some(BudgetAsk::OnTrack) && !v.any(&["budget", "budgets"]) {
        s.budget = None;
    }
    s.forecast = s.forecast || v.phrase(&["on", "track"]);

    s.spike = v.starts("jump")
        || v.starts("spike")
        || v.starts("spiking")
        || v.starts("surge")
        || v.starts("increas")
        || v.starts("anomal")
        || v.starts("doubl")
        || v.starts("tripl")
        || v.starts("skyrocket")
        || v.starts("balloon")
        || v.any(&[
            "rose", "risen", "unusual", "peaked", "soared", "outlier", "outliers", "grew",
        ])
        // "Why did spend peak?"; "our peak hours" ranks the hours of the day instead.
        || (0..v.t.len()).any(|i| {
            v.word(i) == "peak"
                && time_grouping(v.word(i + 1)).is_none()
                && !time_of_day_at(v, i + 1)
        })
        || v.phrase(&["went", "up"])
        || v.phrase(&["go", "up"])
        || v.phrase(&["gone", "up"])
        || v.phrase(&["shot", "up"])
        || v.phrase(&["what", "happened"])
        || v.phrase(&["more", "than", "usual"]);

    let pricey = v.any(&["expensive", "costly", "pricey"])
        || v.phrase(&["cost", "so", "much"])
        || v.phrase(&["costs", "so", "much"])
        || v.phrase(&["spend", "so", "much"])
        || v.phrase(&["spends", "so", "much"]);
    s.drivers = (v.any(&["why"]) && pricey && !s.spike)
        || (v.phrase(&["what", "makes"]) && pricey)
        || (v.any(&["drives", "drive", "driving", "drivers"])
            && v.any(&["cost", "costs", "spend", "spending", "bill"]));

    s.model_selection = ((v.phrase(&["which", "model"])
        || v.phrase(&["what", "model"])
        || v.phrase(&["which", "llm"]))
        && v.any(&[
            "should",
            "best",
            "pick",
            "choose",
            "recommend",
            "recommended",
            "suit",
            "suits",
            "right",
        ]))
        || v.phrase(&["worth", "it"])
        || v.phrase(&["worth", "the"])
        || v.phrase(&["worth", "using"])
        || v.phrase(&["worth", "paying"])
        || v.phrase(&["best", "model"])
        || v.phrase(&["right", "model"])
        || v.phrase(&["better", "model"]);

    // "Is gpt-4o-mini cheaper than gemini?": the two side by side, not ways to save.
    let than_comparison = ["cheaper", "pricier", "costlier"]
        .iter()
        .any(|w| v.phrase(&[w, "than"]))
        || v.phrase(&["more", "expensive", "than"])
        || v.phrase(&["less", "expensive", "than"]);
    s.savings = !than_comparison
        && (v.any(&[
            "cut",
            "cuts",
            "cutting",
            "save",
            "saves",
            "saving",
            "savings",
            "lower",
            "lowering",
            "trim",
            "downgrade",
            "cheaper",
            "overspending",
            "overpaying",
        ]) || (v.any(&["cache", "caching"])
            && !s
                .measures
                .iter()
                .any(|m| matches!(m, Measure::CacheReadShare | Measure::CachedInputTokens)))
            || v.starts("reduc")
            || v.starts("optimi")
            || v.starts("wast")
            || v.starts("recommend")
            || v.starts("decreas")
            || v.starts("econom")
            || v.starts("right-siz")
            || v.phrase(&["spend", "less"])
            || v.phrase(&["pay", "less"])
            || v.phrase(&["bring", "down"])
            || v.phrase(&["costs", "down"])
            || v.phrase(&["cost", "down"])
            || v.phrase(&["bill", "down"])
            || v.phrase(&["too", "much"])
            || v.phrase(&["too", "expensive"])
            || v.phrase(&["smaller", "model"]));

    s.saving = saving_kind(v, s);

    s.compares = v.any(&[
        "vs",
        "versus",
        "compare",
        "compared",
        "comparing",
        "comparison",
        "against",
    ]) || v.phrase(&["difference", "between"])
        || than_comparison;
    // "weekend vs weekday": the two sides of one breakdown, not two periods.
    s.compares = s.compares && !s.weekends;
}

/// The kind of saving a question names, if any. A response cache is named by its own words or
/// by prompts sent again; prompt caching by the provider's cached prefix; an output cap by
/// `max_tokens` or capping outputs; the Batch API by batching night-time traffic (batching
/// alone prices a scope through it: a what-if); right-sizing by a cheaper or smaller model
/// without a model to move to; context tiers by their own words.
fn saving_kind(v: &View<'_>, s: &Signals) -> Option<SavingKind> {
    let prompts = v.any(&[
        "prompt",
        "prompts",
        "request",
        "requests",
        "question",
        "questions",
        "queries",
        "calls",
    ]);
    let repeated = v.any(REPEATED)
        || v.phrase(&["same", "prompt"])
        || v.phrase(&["same", "prompts"])
        || v.phrase(&["same", "question"])
        || v.phrase(&["same", "questions"]);
    let cache = v.any(&["cache", "caching", "cached", "caches"]);
    let response_cache = v.phrase(&["response", "cache"])
        || v.phrase(&["response", "caching"])
        || v.phrase(&["responses", "cache"])
        || v.phrase(&["cache", "responses"])
        || v.phrase(&["cache", "the", "responses"])
        || v.phrase(&["caching", "responses"])
        || v.phrase(&["semantic", "cache"]);
    let prompt_cache = v.phrase(&["prompt", "caching"])
        || v.phrase(&["prompt", "cache"])
        || v.phrase(&["prefix", "caching"])
        || v.phrase(&["prefix", "cache"])
        || (cache && v.any(&["prefix", "prefixes"]));
    if response_cache || (repeated && prompts) {
        return Some(SavingKind::ResponseCache);
    }
    if prompt_cache {
        return Some(SavingKind::PromptCache);
    }
    let outputs = v.any(&[
        "output",
        "outputs",
        "completion",
        "completions",
        "response",
        "responses",
        "answers",
    ]);
    if v.any(&["max_tokens", "max-tokens", "maxtokens"])
        || v.phrase(&["max", "tokens"])
        || v.phrase(&["output", "cap"])
        || v.phrase(&["output", "caps"])
        || (outputs && v.any(&["cap", "caps", "capping", "capped", "truncate", "truncating"]))
        || (outputs && v.any(&["overpaying", "verbose"]))
        || v.phrase(&["long", "outputs"])
        || v.phrase(&["long", "responses"])
        || v.phrase(&["long", "completions"])
        || v.phrase(&["limit", "outputs"])
        || v.phrase(&["limit", "output"])
    {
        return Some(SavingKind::OutputCap);
    }
    let night = v.any(&[
        "night",
        "nights",
        "nightly",
        "night-time",
        "nighttime",
        "overnight",
    ]);
    if s.batch && (night || s.group.is_some()) {
        return Some(SavingKind::BatchApi);
    }
    if v.phrase(&["context", "tier"])
        || v.phrase(&["context", "tiers"])
        || v.phrase(&["price", "tier"])
        || v.phrase(&["price", "tiers"])
        || v.phrase(&["pricing", "tier"])
        || v.phrase(&["long", "context"])
        || v.phrase(&["long-context"])
    {
        return Some(SavingKind::ContextTier);
    }
    if v.phrase(&["cheaper", "model"])
        || v.phrase(&["cheaper", "models"])
        || v.phrase(&["smaller", "model"])
        || v.phrase(&["smaller", "models"])
        || v.phrase(&["too", "big"])
        || v.phrase(&["too", "large"])
        || v.phrase(&["too", "powerful"])
        || v.any(&[
            "overkill",
            "right-size",
            "right-sizing",
            "rightsize",
            "rightsizing",
        ])
    {
        return Some(SavingKind::RightSizeModel);
    }
    None
}

fn follow_up(v: &View<'_>) -> Option<FollowUp> {
    let first = v.word(0);
    let second = v.word(1);
    let tail_also = v.any(&["too", "also"]) || v.phrase(&["as", "well"]);
    let cue = match first {
        "only" | "just" | "filter" | "narrow" => FollowUp::Only,
        "without" | "excluding" | "except" | "exclude" | "minus" => FollowUp::Exclude,
        "include" | "including" | "plus" | "also" => FollowUp::Also,
        "break" | "split" | "group" | "drill" | "slice"
            if matches!(second, "that" | "it" | "this" | "down" | "by" | "into") =>
        {
            FollowUp::BreakDown
        }
        "by" | "per" => FollowUp::BreakDown,
        "and" | "now" | "then" | "ok" | "okay" | "same" | "&" => {
            if tail_also {
                FollowUp::Also
            } else if matches!(second, "only" | "just") {
                FollowUp::Only
            } else if matches!(second, "by" | "per") {
                FollowUp::BreakDown
            } else if matches!(second, "without" | "excluding") {
                FollowUp::Exclude
            } else {
                FollowUp::Replace
            }
        }
        "what" | "how" if second == "about" => FollowUp::Replace,
        "what" if second == "of" => FollowUp::Replace,
        _ => return None,
    };
    Some(cue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::question::words::tokens;

    fn signals(q: &str) -> Signals {
        read(&tokens(q), &[], &OrgNames::default(), q)
    }

    #[test]
    fn measures_in_order() {
        use Measure::*;
        let cases: &[(&str, &[Measure])] = &[
            ("How much did we spend?", &[Spend]),
            ("how many calls and tokens", &[Calls, TotalTokens]),
            ("cost per call by model", &[CostPerCall]),
            ("average cost of a request", &[CostPerCall]),
            (
                "input tokens vs output tokens",
                &[InputTokens, OutputTokens],
            ),
            ("error rate", &[ErrorRate]),
            ("how many errors", &[Errors]),
            ("what percent of calls failed", &[ErrorRate]),
            ("p99 latency", &[LatencyP99]),
            ("average latency of gpt-4o", &[LatencyMean]),
            ("what's the mean response time", &[LatencyMean]),
            ("how slow is search-rerank on average", &[LatencyMean]),
            ("avg latency and p99", &[LatencyMean, LatencyP99]),
            (
                "which model is slowest",
                &[LatencyP95, LatencyP50, LatencyP99],
            ),
            ("cheapest model", &[CostPerCall]),
            ("cheapest feature", &[Spend]),
            (
                "doc-summarizer spend, cost per call and tokens per call by model",
                &[Spend, CostPerCall, TokensPerCall],
            ),
            ("spend per call by model", &[CostPerCall]),
        ];
        for (q, want) in cases {
            assert_eq!(signals(q).measures, *want, "{q:?}");
        }
    }

    #[test]
    fn groupings_and_ranks() {
        let s = signals("Which feature spends the most?");
        assert_eq!(s.group, Some(Grouping::By(Dimension::Feature)));
        assert_eq!(
            s.rank,
            Some(Rank {
                order: Order::Highest,
                top: Some(1)
            })
        );
        let s = signals("top 5 users");
        assert_eq!(s.group, Some(Grouping::By(Dimension::User)));
        assert_eq!(
            s.rank,
            Some(Rank {
                order: Order::Highest,
                top: Some(5)
            })
        );
        let s = signals("spend by day");
        assert_eq!(s.group, Some(Grouping::Day));
        assert_eq!(s.rank, None);
        assert_eq!(signals("weekly spend").group, Some(Grouping::Week));
        assert_eq!(
            signals("who spends the most").group,
            Some(Grouping::By(Dimension::User))
        );
        assert_eq!(signals("spend in the last 7 days").group, None);
    }

    #[test]
    fn conversation_moves() {
        assert!(signals("hello").greeting);
        assert!(signals("Hi there!").greeting);
        assert!(signals("thanks a lot").greeting);
        assert!(!signals("hi, how much did we spend").greeting);
        assert!(signals("What can you do?").capabilities);
        assert!(signals("help").capabilities);
        assert!(!signals("help me cut costs").capabilities);
        assert_eq!(
            signals("Set a budget alert at $1500 a month").budget,
            Some(BudgetAsk::Set)
        );
        assert_eq!(
            signals("email me when spend doubles").unsupported,
            Some(Unsupported::Alerts)
        );
        assert_eq!(
            signals("export this as a PDF").unsupported,
            Some(Unsupported::Export)
        );
        assert_eq!(
            signals("switch support-bot to gpt-4o-mini").unsupported,
            Some(Unsupported::ChangeModels)
        );
        assert_eq!(
            signals("what if we switch support-bot to gpt-4o-mini").unsupported,
            None
        );
        assert!(signals("How do I upload a CSV?").data_help);
    }

    #[test]
    fn follow_up_cues() {
        assert_eq!(
            signals("and claude-sonnet-4?").follow_up,
            Some(FollowUp::Replace)
        );
        assert_eq!(
            signals("what about last month?").follow_up,
            Some(FollowUp::Replace)
        );
        assert_eq!(
            signals("break that down by user").follow_up,
            Some(FollowUp::BreakDown)
        );
        assert_eq!(signals("only support-bot").follow_up, Some(FollowUp::Only));
        assert_eq!(signals("and gpt-4o too").follow_up, Some(FollowUp::Also));
        assert_eq!(signals("How much did we spend?").follow_up, None);
    }
}
