//! The `data_helper`'s answer: how to get usage into Apogee (`POST /api/usage`, the demo
//! dataset), and what usage the org already has. It states only what the coverage check found
//! and never a cost: with no data there is nothing honest to estimate.

use apogee_analytics::demo::{DEFAULT_CALLS, DEFAULT_DAYS, DEFAULT_SEED};

use chrono::Datelike;

use super::when;
use crate::findings::Coverage;
use crate::format::count;
use crate::plan::QuestionPlan;

/// A usage record as in PROTOCOL.md §8.
const EXAMPLE_RECORD: &str = r#"{"request_id":"r-123","ts":"2026-11-20T08:15:02Z","provider":"openai","model":"gpt-4o","input_tokens":1200,"output_tokens":310,"cached_input_tokens":0,"latency_ms":840,"user":"u-77","feature":"support-bot","prompt_hash":"9f2c41d0","batch":false,"status":"ok","cost_usd":null}"#;

pub(crate) struct HelpInput<'a> {
    pub plan: &'a QuestionPlan,
    /// Calls in the asked period, when the data agent counted them.
    pub asked_calls: Option<i64>,
    pub coverage: &'a Coverage,
}

pub(crate) fn render(h: &HelpInput<'_>) -> String {
    let c = h.coverage;
    let period = when(&h.plan.period, c.window.to.year());
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    let span = c.first_day.zip(c.last_day);
    match (h.asked_calls, span) {
        (Some(0), Some((first, last))) => {
            line(&format!(
                "I found no usage records {period}, so there is nothing to analyse there. \
                 Your org does have {} calls recorded between {first} and {last}.",
                count(c.calls)
            ));
            let days = (c.window.to.date_naive() - first).num_days().max(1);
            line("");
            line(&format!(
                "Try asking about that time instead, for example: \"Analyze my AI costs for the \
                 last {days} days\"."
            ));
        }
        (Some(0), None) => line(&format!(
            "I found no usage records {period}, nor anywhere in the last year, so there is \
             nothing to analyse yet and I will not guess. Here is how to send usage, or to try \
             Apogee with demo data."
        )),
        (_, Some((first, last))) => line(&format!(
            "Your org already has {} calls recorded between {first} and {last}; ask \"Analyze my \
             AI costs\" to see them. To send more:",
            count(c.calls)
        )),
        (_, None) => line(
            "Your org has no usage recorded in the last year yet. Here is how to send usage, or \
             to try Apogee with demo data.",
        ),
    }
    line("");
    line("## Send usage records");
    line("");
    line(
        "`POST /api/usage` takes a JSON array of usage records, or NDJSON (one record per line, \
         `Content-Type: application/x-ndjson`). Each record is one LLM API call:",
    );
    line("");
    line("```json");
    line(EXAMPLE_RECORD);
    line("```");
    line("");
    line(
        "Only `ts`, `model`, `input_tokens` and `output_tokens` are required. `request_id` makes \
         sending the same record twice harmless. Without `cost_usd`, Apogee prices the call from \
         its price catalog; calls to models the catalog does not know are stored and reported \
         as unpriced, never counted as free. `user`, `feature` and `prompt_hash` let Apogee \
         break spend down and find repeated prompts.",
    );
    line("");
    line("```bash");
    line("curl -X POST http://127.0.0.1:8080/api/usage \\");
    line("  -H 'Authorization: Bearer <your token>' \\");
    line("  -H 'Content-Type: application/json' \\");
    line(&format!("  --data '[{EXAMPLE_RECORD}]'"));
    line("```");
    line("");
    line(
        "Use your server's address; with demo sign-in send `X-Apogee-User: <name>` instead of \
         the `Authorization` header. The answer lists what was `accepted`, the `duplicates`, \
         and each `rejected` record with its error; one bad record never drops the good ones.",
    );
    line("");
    line("## Other sources");
    line("");
    line(
        "- CSV with a header row of the same field names: `Content-Type: text/csv`, or \
         `apogee ingest usage.csv --org <org>` on the server.",
    );
    line(
        "- LiteLLM spend logs and OpenAI usage-API exports: `POST /api/usage?format=litellm` or \
         `?format=openai`, or `apogee ingest FILE --format litellm|openai`.",
    );
    line(
        "- OpenTelemetry: point your OTLP/HTTP exporter at `/v1/traces` with the same \
         credentials; spans with GenAI usage attributes (`gen_ai.usage.input_tokens`, …) become \
         usage records.",
    );
    line("");
    line("## Or try the demo data");
    line("");
    line(&format!(
        "`apogee demo-data` loads a clearly labelled synthetic usage history into the \
         configured database ({DEFAULT_DAYS} days, {} calls, seed {DEFAULT_SEED} by default; \
         change them with `--days`, `--calls`, `--seed`, and the org with `--org`). Then ask \
         \"Analyze my AI costs\".",
        count(i64::try_from(DEFAULT_CALLS).unwrap_or(i64::MAX))
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Intent, PlanPeriod};
    use apogee_analytics::Period;
    use chrono::{TimeZone, Utc};

    fn plan() -> QuestionPlan {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        QuestionPlan::new(
            Intent::Analysis,
            PlanPeriod::new(Period::last_days(now, 30), "in the last 30 days"),
        )
    }

    fn coverage(calls: i64) -> Coverage {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        Coverage {
            window: Period::last_days(now, 365),
            calls,
            first_day: (calls > 0).then(|| "2026-06-01".parse().unwrap()),
            last_day: (calls > 0).then(|| "2026-06-30".parse().unwrap()),
        }
    }

    #[test]
    fn no_data_at_all_explains_ingest_without_money() {
        let t = plan();
        let c = coverage(0);
        let md = render(&HelpInput {
            plan: &t,
            asked_calls: Some(0),
            coverage: &c,
        });
        assert!(md.contains("POST /api/usage"));
        assert!(md.contains("curl -X POST"));
        assert!(md.contains(r#""model":"gpt-4o""#));
        assert!(md.contains("apogee demo-data"));
        assert!(!md.contains('$'), "{md}");
    }

    #[test]
    fn data_elsewhere_suggests_its_period() {
        let t = plan();
        let c = coverage(1234);
        let md = render(&HelpInput {
            plan: &t,
            asked_calls: Some(0),
            coverage: &c,
        });
        assert!(md.contains("1,234 calls recorded between 2026-06-01 and 2026-06-30"));
        // 2026-06-01 up to the end of 2026-11-25.
        assert!(md.contains("for the last 178 days"), "{md}");
    }
}
