//! The deterministic reading of a user's question: what kind of answer it wants ([`Intent`]),
//! over which period (relative to the run's clock), and which model or feature it names.
//! Rules, not a model: the same question at the same instant always gets the same plan.

use apogee_analytics::{Period, PriceCatalog};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// Days analysed when the question names no period.
pub(crate) const DEFAULT_DAYS: u32 = 30;
/// Days analysed around a named day, so that day can be compared with ordinary ones.
pub(crate) const DAY_WINDOW: u32 = 14;
/// Longest period a question may ask for.
const MAX_DAYS: u32 = 3_660;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Intent {
    CostBreakdown,
    SpikeExplanation,
    Savings,
    /// Latency percentiles and error rates by model.
    Latency,
    /// Which model to use, or whether one is worth its price: answered with spend by model and
    /// right-sizing.
    ModelSelection,
    DataHelp,
    General,
}

impl Intent {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Intent::CostBreakdown => "cost_breakdown",
            Intent::SpikeExplanation => "spike_explanation",
            Intent::Savings => "savings",
            Intent::Latency => "latency",
            Intent::ModelSelection => "model_selection",
            Intent::DataHelp => "data_help",
            Intent::General => "general",
        }
    }
}

/// What the question asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Triage {
    pub intent: Intent,
    /// The period analysed.
    pub period: Period,
    /// How the question named the period, for sentences: "the last 30 days", "yesterday".
    pub period_text: String,
    /// The single day the question is about ("on Tuesday", "yesterday"), when it names one.
    pub focus_day: Option<NaiveDate>,
    /// A catalog model the question names (the catalog's spelling).
    pub model: Option<String>,
    /// A feature the question names (`feature X` or in backticks).
    pub feature: Option<String>,
    /// A user the question names (`user X`).
    pub user: Option<String>,
}

pub(crate) fn classify(question: &str, now: DateTime<Utc>, catalog: &PriceCatalog) -> Triage {
    let original = tokens(question);
    let words: Vec<String> = original.iter().map(|w| w.to_lowercase()).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let text = format!(" {} ", words.join(" "));
    let when = period_of(&words, now);
    let intent = intent_of(&text, &words, when.day_named);
    let (period, period_text, focus_day) = match when.kind {
        When::Day(day) if intent == Intent::SpikeExplanation || when.always_window => (
            day_window(day),
            format!(
                "the {DAY_WINDOW} days up to {} {day}",
                weekday_name(day.weekday())
            ),
            Some(day),
        ),
        When::Day(day) => (
            day_period(day, day.succ_opt().unwrap_or(day)),
            when.text,
            Some(day),
        ),
        When::Period(p) => (p, when.text, None),
    };
    Triage {
        intent,
        period,
        period_text,
        focus_day,
        model: model_of(&text, catalog),
        feature: feature_of(question, &original),
        user: user_of(&original),
    }
}

/// Words that follow "user" in ordinary sentences ("which user costs the most", "user level
/// breakdown") and so cannot be a user's name.
const NOT_A_USER: &[&str] = &[
    "a",
    "activity",
    "an",
    "and",
    "are",
    "behind",
    "breakdown",
    "by",
    "call",
    "calls",
    "cost",
    "costs",
    "count",
    "data",
    "did",
    "does",
    "for",
    "had",
    "has",
    "have",
    "id",
    "ids",
    "in",
    "is",
    "level",
    "made",
    "most",
    "name",
    "names",
    "of",
    "on",
    "or",
    "spend",
    "spending",
    "spends",
    "spent",
    "that",
    "the",
    "to",
    "usage",
    "used",
    "uses",
    "was",
    "which",
    "who",
    "with",
];

/// The word after `user` (as in "costs for user bob", "user u-77"), unless it is an ordinary
/// word of the sentence ([`NOT_A_USER`]).
fn user_of(words: &[&str]) -> Option<String> {
    words.windows(2).find_map(|w| {
        let name = w[1];
        let ordinary = NOT_A_USER.contains(&name.to_lowercase().as_str());
        (w[0].eq_ignore_ascii_case("user") && !ordinary && name.chars().count() <= 256)
            .then(|| name.to_string())
    })
}

/// Words of the question: letters, digits and the `-._` that model and feature names use.
fn tokens(question: &str) -> Vec<&str> {
    question
        .split(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '.' | '_')))
        .map(|w| w.trim_matches(|c: char| matches!(c, '-' | '.' | '_')))
        .filter(|w| !w.is_empty())
        .collect()
}

fn intent_of(text: &str, words: &[&str], day_named: bool) -> Intent {
    let has = |w: &str| words.contains(&w);
    let any = |ws: &[&str]| ws.iter().any(|w| has(w));
    let starts = |p: &str| words.iter().any(|w| w.starts_with(p));
    let phrase = |p: &str| text.contains(&format!(" {p} "));
    let about_data = any(&[
        "usage", "data", "records", "record", "logs", "events", "calls",
    ]);

    let data_help = starts("ingest")
        || starts("upload")
        || starts("import")
        || has("demo-data")
        || phrase("demo data")
        || phrase("api usage")
        || phrase("no data")
        || phrase("no usage")
        || phrase("see any data")
        || phrase("get data in")
        || phrase("get my data in")
        || phrase("get our data in")
        || (any(&[
            "send", "sending", "submit", "push", "load", "loading", "connect", "format",
        ]) && about_data)
        || (starts("integrat") && !starts("cost"));
    if data_help {
        return Intent::DataHelp;
    }

    // Before spikes: "why is latency up?" is about latency, not spend.
    let latency = starts("latenc")
        || starts("slow")
        || any(&["p50", "p90", "p95", "p99", "timeouts", "errors"])
        || phrase("response time")
        || phrase("response times")
        || phrase("error rate")
        || phrase("error rates");
    if latency {
        return Intent::Latency;
    }

    let spike = starts("jump")
        || starts("spike")
        || starts("spiking")
        || starts("surge")
        || starts("increas")
        || starts("anomal")
        || starts("doubl")
        || starts("tripl")
        || starts("skyrocket")
        || starts("balloon")
        || any(&[
            "rose", "risen", "higher", "unusual", "peak", "peaked", "soared",
        ])
        || phrase("went up")
        || phrase("go up")
        || phrase("gone up")
        || phrase("shot up")
        || phrase("what happened")
        || phrase("more than usual")
        || (has("why") && day_named);
    if spike {
        return Intent::SpikeExplanation;
    }

    // After spikes ("why did spend jump after we switched to gpt-4o?" is a spike) and before
    // savings, so "is gpt-4o worth it" gets the model comparison rather than a generic list.
    let model_selection = ((phrase("which model") || phrase("what model") || phrase("which llm"))
        && any(&[
            "should",
            "use",
            "best",
            "pick",
            "choose",
            "recommend",
            "recommended",
            "suit",
        ]))
        || phrase("worth it")
        || phrase("worth the")
        || phrase("worth using")
        || phrase("worth paying")
        || (any(&["vs", "versus"]) && starts("model"))
        || phrase("switch to")
        || phrase("switch from")
        || phrase("compare models")
        || phrase("best model");
    if model_selection {
        return Intent::ModelSelection;
    }

    let savings = any(&[
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
        "cache",
        "caching",
        "downgrade",
    ]) || starts("reduc")
        || starts("cheap")
        || starts("optimi")
        || starts("wast")
        || starts("recommend")
        || starts("decreas")
        || starts("econom")
        || starts("right-siz")
        || phrase("spend less")
        || phrase("pay less")
        || phrase("bring down")
        || phrase("costs down")
        || phrase("cost down")
        || phrase("bill down")
        || phrase("too much")
        || phrase("too expensive")
        || phrase("smaller model");
    if savings {
        return Intent::Savings;
    }

    let about_costs = about_data
        || starts("cost")
        || starts("spen")
        || starts("analy")
        || starts("bill")
        || starts("breakdown")
        || starts("budget")
        || starts("pric")
        || starts("model")
        || starts("feature")
        || starts("token")
        || any(&["money", "dollars", "expensive", "invoice", "much", "report"]);
    let greeting = any(&[
        "hi",
        "hello",
        "hey",
        "hiya",
        "thanks",
        "thank",
        "thx",
        "help",
        "morning",
        "afternoon",
        "evening",
    ]) || phrase("what can you do")
        || phrase("who are you");
    if words.is_empty() || (greeting && !about_costs) {
        return Intent::General;
    }
    Intent::CostBreakdown
}

enum When {
    Period(Period),
    Day(NaiveDate),
}

struct Named {
    kind: When,
    text: String,
    /// The question names a single day.
    day_named: bool,
    /// A weekday is always analysed in its window (see [`DAY_WINDOW`]).
    always_window: bool,
}

fn period_of(words: &[&str], now: DateTime<Utc>) -> Named {
    let today = now.date_naive();
    let last_days = |days: u32, text: String| Named {
        kind: When::Period(Period::last_days(now, days.clamp(1, MAX_DAYS))),
        text,
        day_named: false,
        always_window: false,
    };
    let since = |from: NaiveDate, text: String| Named {
        kind: When::Period(day_period(from, today.succ_opt().unwrap_or(today))),
        text,
        day_named: false,
        always_window: false,
    };
    let day = |d: NaiveDate, text: String, always_window: bool| Named {
        kind: When::Day(d),
        text,
        day_named: true,
        always_window,
    };
    let recent = |w: &str| matches!(w, "last" | "past" | "previous" | "prior");

    // "last 14 days", "past 2 weeks", "30 days"
    for (i, pair) in words.windows(2).enumerate() {
        if let (Some(n), Some(unit)) = (number(pair[0]), unit_days(pair[1])) {
            let days = n.saturating_mul(unit);
            let text = format!("the last {days} days");
            if days > 0 && (i == 0 || !matches!(words[i - 1], "first" | "next")) {
                return last_days(days, text);
            }
        }
    }
    for pair in words.windows(2) {
        match (recent(pair[0]), pair[1]) {
            (true, "week") => return last_days(7, "the last 7 days".into()),
            (true, "fortnight") => return last_days(14, "the last 14 days".into()),
            (true, "quarter") => return last_days(90, "the last 90 days".into()),
            (true, "year") => return last_days(365, "the last 365 days".into()),
            (true, "month") if pair[0] == "past" => {
                return last_days(30, "the last 30 days".into());
            }
            (true, "month") => {
                let this_month = first_of_month(today);
                let from = this_month
                    .pred_opt()
                    .map(first_of_month)
                    .unwrap_or(this_month);
                return Named {
                    kind: When::Period(day_period(from, this_month)),
                    text: from.format("%B %Y").to_string(),
                    day_named: false,
                    always_window: false,
                };
            }
            _ => {}
        }
    }
    let text = words.join(" ");
    if text.contains("this month") || words.contains(&"mtd") || text.contains("month to date") {
        return since(first_of_month(today), "this month".into());
    }
    if text.contains("this week") {
        let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
        return since(monday, "this week".into());
    }
    if text.contains("this year") || words.contains(&"ytd") {
        let jan1 = NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today);
        return since(jan1, "this year".into());
    }
    if words.contains(&"yesterday") {
        let d = today.pred_opt().unwrap_or(today);
        return day(d, format!("yesterday ({d})"), false);
    }
    if words.contains(&"today") {
        return day(today, format!("today ({today})"), false);
    }
    for w in words {
        if let Some(wd) = weekday(w) {
            let back = (today.weekday().num_days_from_monday() + 7 - wd.num_days_from_monday()) % 7;
            // The most recent one before today: today's own weekday means a week ago.
            let back = if back == 0 { 7 } else { back };
            let d = today - Duration::days(i64::from(back));
            return day(d, format!("{} {d}", weekday_name(wd)), true);
        }
    }
    last_days(DEFAULT_DAYS, format!("the last {DEFAULT_DAYS} days"))
}

fn number(word: &str) -> Option<u32> {
    if let Ok(n) = word.parse::<u32>() {
        return Some(n);
    }
    let n = match word {
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "fourteen" => 14,
        "fifteen" => 15,
        "twenty" => 20,
        "thirty" => 30,
        "sixty" => 60,
        "ninety" => 90,
        _ => return None,
    };
    Some(n)
}

fn unit_days(word: &str) -> Option<u32> {
    match word {
        "day" | "days" => Some(1),
        "week" | "weeks" => Some(7),
        "month" | "months" => Some(30),
        "year" | "years" => Some(365),
        _ => None,
    }
}

fn weekday(word: &str) -> Option<Weekday> {
    let d = match word {
        "monday" => Weekday::Mon,
        "tuesday" | "tues" => Weekday::Tue,
        "wednesday" => Weekday::Wed,
        "thursday" | "thurs" => Weekday::Thu,
        "friday" => Weekday::Fri,
        "saturday" => Weekday::Sat,
        "sunday" => Weekday::Sun,
        _ => return None,
    };
    Some(d)
}

pub(crate) fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Whole UTC days `[from, to)`.
pub(crate) fn day_period(from: NaiveDate, to: NaiveDate) -> Period {
    Period::new(midnight(from), midnight(to))
}

/// The [`DAY_WINDOW`] days ending the day after `day`.
fn day_window(day: NaiveDate) -> Period {
    let to = day.succ_opt().unwrap_or(day);
    day_period(to - Duration::days(i64::from(DAY_WINDOW)), to)
}

/// The longest catalog model the question names, by its catalog spelling or with spaces for
/// dashes ("claude sonnet 4").
fn model_of(text: &str, catalog: &PriceCatalog) -> Option<String> {
    catalog
        .entries()
        .iter()
        .filter(|e| {
            let name = e.model.to_lowercase();
            text.contains(&format!(" {name} "))
                || text.contains(&format!(" {} ", name.replace('-', " ")))
        })
        .max_by_key(|e| e.model.len())
        .map(|e| e.model.clone())
}

/// A feature named in backticks, as `feature X` (also `feature named X`), or as `X feature`
/// when X looks like an identifier (`support-bot feature`).
fn feature_of(question: &str, words: &[&str]) -> Option<String> {
    let mut parts = question.split('`');
    if let (Some(_), Some(quoted), Some(_)) = (parts.next(), parts.next(), parts.next()) {
        let quoted = quoted.trim();
        if !quoted.is_empty() && quoted.chars().count() <= 256 {
            return Some(quoted.to_string());
        }
    }
    // Words that follow "feature" in ordinary sentences and so cannot be its name.
    const NOT_A_NAME: &[&str] = &[
        "a",
        "an",
        "and",
        "are",
        "breakdown",
        "by",
        "calls",
        "cost",
        "costing",
        "costs",
        "did",
        "do",
        "does",
        "for",
        "from",
        "grew",
        "had",
        "has",
        "have",
        "in",
        "is",
        "jumped",
        "more",
        "most",
        "of",
        "on",
        "or",
        "spend",
        "spending",
        "spends",
        "spent",
        "that",
        "the",
        "to",
        "usage",
        "used",
        "uses",
        "was",
        "were",
        "which",
        "with",
    ];
    for (i, w) in words.iter().enumerate() {
        if !w.eq_ignore_ascii_case("feature") {
            continue;
        }
        let mut next = words.get(i + 1);
        if next.is_some_and(|n| matches!(n.to_lowercase().as_str(), "named" | "called")) {
            next = words.get(i + 2);
        }
        if let Some(n) = next
            && !NOT_A_NAME.contains(&n.to_lowercase().as_str())
        {
            return Some((*n).to_string());
        }
        if i > 0 && words[i - 1].contains(['-', '_']) {
            return Some(words[i - 1].to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    // A Wednesday afternoon.
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 15, 30, 0).unwrap()
    }

    fn triage(q: &str) -> Triage {
        classify(q, now(), &PriceCatalog::builtin().unwrap())
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn days(p: &Period) -> (NaiveDate, NaiveDate) {
        (p.from.date_naive(), p.to.date_naive())
    }

    #[test]
    fn intents_of_many_phrasings() {
        use Intent::*;
        let cases = [
            ("Analyze my AI costs", CostBreakdown),
            ("analyse our LLM spend", CostBreakdown),
            ("Give me a breakdown of costs by model", CostBreakdown),
            ("How much did we spend last week?", CostBreakdown),
            ("What is our bill this month", CostBreakdown),
            ("Which feature costs the most?", CostBreakdown),
            ("Why did spend jump on Tuesday?", SpikeExplanation),
            ("why did our costs spike yesterday", SpikeExplanation),
            ("What happened on Tuesday?", SpikeExplanation),
            ("Why did the bill increase?", SpikeExplanation),
            ("spend went up a lot, why", SpikeExplanation),
            ("Any anomalies in the last 14 days?", SpikeExplanation),
            ("why was friday so expensive", SpikeExplanation),
            ("How do we cut the bill?", Savings),
            ("How can I reduce costs?", Savings),
            ("where can we save money", Savings),
            ("Is there a cheaper model we could use?", Savings),
            ("optimize my AI spend", Savings),
            ("Optimise our LLM usage", Savings),
            ("any recommendations to lower our costs?", Savings),
            ("are we wasting money on gpt-4o?", Savings),
            ("Which model should we use for support-bot?", ModelSelection),
            ("is gpt-4o worth it?", ModelSelection),
            ("Is claude-sonnet-4 worth the price", ModelSelection),
            ("what model is best for summaries", ModelSelection),
            ("should we switch to gpt-4o-mini", ModelSelection),
            ("Which model is slowest?", Latency),
            ("What is our p95 latency on gpt-4o?", Latency),
            ("why did latency jump yesterday", Latency),
            ("error rate by model", Latency),
            ("How do I send usage?", DataHelp),
            ("how to ingest records", DataHelp),
            ("Can I upload a CSV?", DataHelp),
            ("How do I load demo data", DataHelp),
            ("What format should usage records have?", DataHelp),
            ("I see no data", DataHelp),
            ("hi", General),
            ("Hello there!", General),
            ("thanks", General),
            ("what can you do?", General),
            ("", General),
        ];
        for (q, want) in cases {
            assert_eq!(triage(q).intent, want, "{q:?}");
        }
    }

    #[test]
    fn users_named_like_ids_are_extracted() {
        assert_eq!(
            triage("How much did user u-77 spend last week?")
                .user
                .as_deref(),
            Some("u-77")
        );
        assert_eq!(
            triage("costs of user alice_b").user.as_deref(),
            Some("alice_b")
        );
        assert_eq!(triage("which user costs the most?").user, None);
        assert_eq!(triage("costs for user bob").user.as_deref(), Some("bob"));
        assert_eq!(
            triage("How much did user Alice spend?").user.as_deref(),
            Some("Alice")
        );
        assert_eq!(triage("spend by user").user, None);
        assert_eq!(triage("user level breakdown").user, None);
    }

    #[test]
    fn default_period_is_the_last_30_days() {
        let t = triage("Analyze my AI costs");
        assert_eq!(t.period, Period::last_days(now(), 30));
        assert_eq!(days(&t.period), (d("2026-10-27"), d("2026-11-26")));
        assert_eq!(t.period.label(), "2026-10-27 – 2026-11-25");
        assert_eq!(t.period_text, "the last 30 days");
        assert_eq!(t.focus_day, None);
    }

    #[test]
    fn periods_relative_to_now() {
        let cases = [
            ("costs over the last 7 days", "2026-11-19", "2026-11-26"),
            ("spend in the past 14 days", "2026-11-12", "2026-11-26"),
            ("last 2 weeks", "2026-11-12", "2026-11-26"),
            ("the last seven days please", "2026-11-19", "2026-11-26"),
            ("costs last week", "2026-11-19", "2026-11-26"),
            ("past week", "2026-11-19", "2026-11-26"),
            ("this month", "2026-11-01", "2026-11-26"),
            ("month to date spend", "2026-11-01", "2026-11-26"),
            ("last month", "2026-10-01", "2026-11-01"),
            ("previous month costs", "2026-10-01", "2026-11-01"),
            ("past month", "2026-10-27", "2026-11-26"),
            ("this week", "2026-11-23", "2026-11-26"),
            ("yesterday's costs", "2026-11-24", "2026-11-25"),
            ("what did we spend today", "2026-11-25", "2026-11-26"),
            ("last 3 months", "2026-08-28", "2026-11-26"),
            ("last year", "2025-11-26", "2026-11-26"),
        ];
        for (q, from, to) in cases {
            assert_eq!(days(&triage(q).period), (d(from), d(to)), "{q:?}");
        }
        assert_eq!(triage("last month").period_text, "October 2026");
        assert_eq!(triage("yesterday").focus_day, Some(d("2026-11-24")));
    }

    #[test]
    fn last_month_in_january_is_december() {
        let jan = Utc.with_ymd_and_hms(2027, 1, 10, 8, 0, 0).unwrap();
        let t = classify("last month", jan, &PriceCatalog::builtin().unwrap());
        assert_eq!(days(&t.period), (d("2026-12-01"), d("2027-01-01")));
    }

    #[test]
    fn weekday_is_the_most_recent_one_in_a_window() {
        let t = triage("Why did spend jump on Tuesday?");
        assert_eq!(t.focus_day, Some(d("2026-11-24")));
        assert_eq!(days(&t.period), (d("2026-11-11"), d("2026-11-25")));
        assert_eq!(t.period.days(), 14.0);
        // Today is a Wednesday: "Wednesday" means a week ago.
        let t = triage("what happened on wednesday");
        assert_eq!(t.focus_day, Some(d("2026-11-18")));
        assert_eq!(days(&t.period), (d("2026-11-05"), d("2026-11-19")));
        // Without a spike question, too, so the day can be compared.
        let t = triage("costs on Monday");
        assert_eq!(t.intent, Intent::CostBreakdown);
        assert_eq!(t.focus_day, Some(d("2026-11-23")));
        assert_eq!(days(&t.period), (d("2026-11-10"), d("2026-11-24")));
    }

    #[test]
    fn yesterday_as_a_spike_is_compared_with_its_window() {
        let t = triage("why did spend spike yesterday?");
        assert_eq!(t.focus_day, Some(d("2026-11-24")));
        assert_eq!(days(&t.period), (d("2026-11-11"), d("2026-11-25")));
    }

    #[test]
    fn models_from_the_catalog() {
        assert_eq!(
            triage("how much on gpt-4o?").model.as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(
            triage("is GPT-4o-mini cheaper").model.as_deref(),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            triage("claude sonnet 4 costs").model.as_deref(),
            Some("claude-sonnet-4")
        );
        assert_eq!(
            triage("spend on gemini-2.0-flash.").model.as_deref(),
            Some("gemini-2.0-flash")
        );
        assert_eq!(triage("llama-3.1-70b-internal").model, None);
        assert_eq!(triage("Analyze my AI costs").model, None);
    }

    #[test]
    fn features_in_backticks_or_named() {
        assert_eq!(
            triage("why is `doc-summarizer` so expensive")
                .feature
                .as_deref(),
            Some("doc-summarizer")
        );
        assert_eq!(
            triage("costs of feature support-bot").feature.as_deref(),
            Some("support-bot")
        );
        assert_eq!(
            triage("the feature named search-rerank").feature.as_deref(),
            Some("search-rerank")
        );
        assert_eq!(
            triage("what does the email-drafts feature cost")
                .feature
                .as_deref(),
            Some("email-drafts")
        );
        assert_eq!(triage("which feature costs most").feature, None);
        assert_eq!(triage("Analyze my AI costs").feature, None);
    }
}
