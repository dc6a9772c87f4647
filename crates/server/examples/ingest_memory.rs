//! Peak memory of the server for the worst ingest bodies of each format: every case starts a
//! fresh `apogee serve` (release build), sends one body of up to 16 MiB (the default body
//! limit), and reads the process's peak resident set (`VmHWM`) after the answer. Prints a
//! Markdown table for `docs/benchmarks.md`.
//!
//! ```sh
//! cargo build --release
//! cargo run --release -p apogee-server --example ingest_memory [-- path/to/apogee]
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// The default `APOGEE_MAX_BODY_BYTES`, less room for nothing: bodies are built up to it.
const BODY: usize = 16 * 1024 * 1024;
/// The default records-per-request limit.
const RECORDS: usize = 50_000;

struct Case {
    format: &'static str,
    shape: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

fn pad(n: usize) -> String {
    "x".repeat(n)
}

/// A valid §8 record whose strings fill about `size` bytes.
fn record(i: usize, size: usize) -> String {
    let base = format!(
        r#"{{"request_id":"r-{i:08}","ts":"2026-11-20T08:15:02Z","model":"gpt-4o","input_tokens":1200,"output_tokens":310,"user":"u-{i}","feature":"","prompt_hash":"{i}"}}"#
    );
    let fill = size.saturating_sub(base.len()).min(256);
    base.replace(r#""feature":"""#, &format!(r#""feature":"{}""#, pad(fill)))
}

fn repeat_to(unit: &str, sep: &str, open: &str, close: &str) -> Vec<u8> {
    let n = (BODY - open.len() - close.len()) / (unit.len() + sep.len());
    let mut out = String::with_capacity(BODY);
    out.push_str(open);
    for i in 0..n {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(unit);
    }
    out.push_str(close);
    out.into_bytes()
}

fn ndjson_cases() -> Vec<Case> {
    let per = BODY / RECORDS - 1;
    let records: Vec<String> = (0..RECORDS).map(|i| record(i, per)).collect();
    let bad: Vec<String> = (0..RECORDS)
        .map(|i| record(i, per - 1).replace(r#""input_tokens":1200"#, r#""input_tokens":-1200"#))
        .collect();
    let one_user: Vec<String> = (0..RECORDS)
        .map(|i| record(i, per).replace(&format!(r#""user":"u-{i}""#), r#""user":"u""#))
        .collect();
    vec![
        Case {
            format: "NDJSON",
            shape: "50,000 valid records (the most one request may hold), padded to 16 MiB",
            path: "/api/usage",
            content_type: "application/x-ndjson",
            body: records.join("\n").into_bytes(),
        },
        Case {
            format: "NDJSON",
            shape: "50,000 valid records of one user (one hourly bucket), padded to 16 MiB",
            path: "/api/usage",
            content_type: "application/x-ndjson",
            body: one_user.join("\n").into_bytes(),
        },
        Case {
            format: "NDJSON",
            shape: "50,000 invalid records (negative tokens), padded to 16 MiB",
            path: "/api/usage",
            content_type: "application/x-ndjson",
            body: bad.join("\n").into_bytes(),
        },
        Case {
            format: "NDJSON",
            shape: "8.4 million lines `1` (the probe's body)",
            path: "/api/usage",
            content_type: "application/x-ndjson",
            body: repeat_to("1", "\n", "", ""),
        },
        Case {
            format: "NDJSON",
            shape: "one 16 MiB line: a record with a million tags",
            path: "/api/usage",
            content_type: "application/x-ndjson",
            body: {
                let mut b = String::from(
                    r#"{"ts":"2026-11-20T08:15:02Z","model":"m","input_tokens":1,"output_tokens":1,"tags":{"#,
                );
                let mut k = 0u64;
                while b.len() < BODY - 32 {
                    if k > 0 {
                        b.push(',');
                    }
                    b.push_str(&format!(r#""{k:x}":"v""#));
                    k += 1;
                }
                b.push_str("}}");
                b.into_bytes()
            },
        },
    ]
}

fn json_array_cases() -> Vec<Case> {
    let per = BODY / RECORDS - 2;
    let records: Vec<String> = (0..RECORDS).map(|i| record(i, per)).collect();
    vec![
        Case {
            format: "JSON array",
            shape: "50,000 valid records, padded to 16 MiB",
            path: "/api/usage",
            content_type: "application/json",
            body: format!("[{}]", records.join(",")).into_bytes(),
        },
        Case {
            format: "JSON array",
            shape: "8.4 million elements `0` (a tree of 8.4M values, if one were built)",
            path: "/api/usage",
            content_type: "application/json",
            body: repeat_to("0", ",", "[", "]"),
        },
        Case {
            format: "JSON array",
            shape: "one element: an array of 8.4 million numbers",
            path: "/api/usage",
            content_type: "application/json",
            body: repeat_to("0", ",", "[[", "]]"),
        },
    ]
}

fn csv_cases() -> Vec<Case> {
    let header = "request_id,ts,model,input_tokens,output_tokens,user,feature\n";
    let per = BODY / RECORDS - 1;
    let mut rows = String::from(header);
    for i in 0..RECORDS {
        let base = format!("r-{i:08},2026-11-20T08:15:02Z,gpt-4o,1200,310,u-{i},");
        rows.push_str(&base);
        rows.push_str(&pad(per.saturating_sub(base.len()).min(256)));
        rows.push('\n');
    }
    vec![
        Case {
            format: "CSV",
            shape: "50,000 valid rows, padded to 16 MiB",
            path: "/api/usage?format=csv",
            content_type: "text/csv",
            body: rows.into_bytes(),
        },
        Case {
            format: "CSV",
            shape: "one row of 16 million empty cells",
            path: "/api/usage?format=csv",
            content_type: "text/csv",
            body: {
                let mut b = header.as_bytes().to_vec();
                b.extend(std::iter::repeat_n(b',', BODY - header.len()));
                b
            },
        },
        Case {
            format: "CSV",
            shape: "8 million rows of one empty cell",
            path: "/api/usage?format=csv",
            content_type: "text/csv",
            body: {
                let mut b = header.as_bytes().to_vec();
                b.extend(std::iter::repeat_n(b"\n"[0], BODY - header.len()));
                b
            },
        },
    ]
}

fn litellm_cases() -> Vec<Case> {
    let per = BODY / RECORDS - 2;
    let logs: Vec<String> = (0..RECORDS)
        .map(|i| {
            let base = format!(
                r#"{{"request_id":"chatcmpl-{i:08}","startTime":"2026-11-20T08:15:02Z","endTime":"2026-11-20T08:15:04Z","model":"gpt-4o","prompt_tokens":1200,"completion_tokens":310,"user":"u-{i}","request_tags":["x"]}}"#
            );
            base.replace(r#"["x"]"#, &format!(r#"["{}"]"#, pad(per.saturating_sub(base.len()).min(256))))
        })
        .collect();
    // Elements just under the 1 MiB a log may have, each a tree of half a million numbers.
    let element = format!(
        r#"{{"request_id":"big","startTime":"2026-11-20T08:15:02Z","model":"gpt-4o","prompt_tokens":1,"completion_tokens":1,"messages":[{}]}}"#,
        vec!["0"; 500_000].join(",")
    );
    let n = BODY / (element.len() + 1);
    vec![
        Case {
            format: "LiteLLM",
            shape: "50,000 spend logs, padded to 16 MiB",
            path: "/api/usage?format=litellm",
            content_type: "application/json",
            body: format!(r#"{{"data":[{}]}}"#, logs.join(",")).into_bytes(),
        },
        Case {
            format: "LiteLLM",
            shape: "16 logs of 1 MiB, each holding 500,000 numbers",
            path: "/api/usage?format=litellm",
            content_type: "application/json",
            body: format!("[{}]", vec![element.as_str(); n].join(",")).into_bytes(),
        },
    ]
}

fn openai_cases() -> Vec<Case> {
    let result = |i: usize| {
        format!(
            r#"{{"object":"organization.usage.completions.result","input_tokens":1500000,"output_tokens":210000,"input_cached_tokens":400000,"num_model_requests":1200,"project_id":"proj_{i:08}","user_id":"user-{}","api_key_id":"key_{i}","model":"gpt-4o-2024-08-06","batch":false}}"#,
            pad(40)
        )
    };
    let per_bucket = 500;
    let buckets: Vec<String> = (0..RECORDS / per_bucket)
        .map(|b| {
            let results: Vec<String> = (0..per_bucket)
                .map(|i| result(b * per_bucket + i))
                .collect();
            format!(
                r#"{{"object":"bucket","start_time":{},"end_time":{},"results":[{}]}}"#,
                1_793_491_200 + b * 86_400,
                1_793_577_600 + b * 86_400,
                results.join(",")
            )
        })
        .collect();
    vec![
        Case {
            format: "OpenAI export",
            shape: "50,000 results in 100 buckets",
            path: "/api/usage?format=openai",
            content_type: "application/json",
            body: format!(
                r#"{{"object":"page","data":[{}],"has_more":false}}"#,
                buckets.join(",")
            )
            .into_bytes(),
        },
        Case {
            format: "OpenAI export",
            shape: "one bucket of 4 million empty results",
            path: "/api/usage?format=openai",
            content_type: "application/json",
            body: repeat_to(
                "{}",
                ",",
                r#"{"data":[{"start_time":1793491200,"end_time":1793577600,"results":["#,
                "]}]}",
            ),
        },
    ]
}

fn attr(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn span(i: usize, extra: Vec<KeyValue>) -> Span {
    let mut attributes = vec![
        attr(
            "gen_ai.request.model",
            any_value::Value::StringValue("gpt-4o".into()),
        ),
        attr(
            "gen_ai.usage.input_tokens",
            any_value::Value::IntValue(1200),
        ),
        attr(
            "gen_ai.usage.output_tokens",
            any_value::Value::IntValue(310),
        ),
        attr(
            "enduser.id",
            any_value::Value::StringValue(format!("u-{i}")),
        ),
    ];
    attributes.extend(extra);
    Span {
        trace_id: (i as u128).to_be_bytes().to_vec(),
        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
        name: "chat gpt-4o".into(),
        start_time_unix_nano: 1_795_162_501_000_000_000,
        end_time_unix_nano: 1_795_162_502_000_000_000,
        attributes,
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attr(
                    "service.name",
                    any_value::Value::StringValue("support-bot".into()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Spans until the encoded request reaches `BODY`.
fn fill(
    encode: &dyn Fn(&ExportTraceServiceRequest) -> Vec<u8>,
    one: &dyn Fn(usize) -> Span,
    max: usize,
) -> Vec<u8> {
    let probe = encode(&request(vec![one(0)])).len().max(1);
    let mut n = (BODY / probe).min(max);
    loop {
        let body = encode(&request((0..n).map(one).collect()));
        if body.len() <= BODY || n == 0 {
            return body;
        }
        n = n * 9 / 10;
    }
}

fn otlp_cases() -> Vec<Case> {
    let protobuf = |r: &ExportTraceServiceRequest| r.encode_to_vec();
    let json = |r: &ExportTraceServiceRequest| serde_json::to_vec(r).unwrap_or_default();
    let padded = |i: usize| {
        span(
            i,
            vec![attr(
                "apogee.feature",
                any_value::Value::StringValue(pad(180)),
            )],
        )
    };
    // Spans of many tiny attributes, each just under the 1 MiB a span may have.
    let wide = |per: usize| {
        move |i: usize| {
            span(
                i,
                (0..per)
                    .map(|k| attr(&format!("{k:x}"), any_value::Value::BoolValue(true)))
                    .collect(),
            )
        }
    };
    let mut cases = Vec::new();
    for (format, content_type, encode, per) in [
        (
            "OTLP protobuf",
            "application/x-protobuf",
            &protobuf as &dyn Fn(&_) -> Vec<u8>,
            60_000,
        ),
        (
            "OTLP JSON",
            "application/json",
            &json as &dyn Fn(&_) -> Vec<u8>,
            25_000,
        ),
    ] {
        cases.push(Case {
            format,
            shape: "50,000 GenAI spans (the most one request may hold), padded",
            path: "/v1/traces",
            content_type,
            body: fill(encode, &padded, RECORDS),
        });
        cases.push(Case {
            format,
            shape: "spans of just under 1 MiB, each with tens of thousands of attributes",
            path: "/v1/traces",
            content_type,
            body: fill(encode, &wide(per), usize::MAX),
        });
    }
    cases
}

struct Running {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &str) -> Running {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(binary)
        .arg("serve")
        .env("APOGEE_ADDR", "127.0.0.1:0")
        .env("APOGEE_DATA_DIR", dir.path())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    Running {
        child,
        addr,
        _dir: dir,
    }
}

/// `VmHWM` (peak resident set) of `pid`, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Sends the body; returns the status line and the start of the answer.
fn post(addr: &str, case: &Case) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300))).ok();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nX-Apogee-User: bench\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        case.path,
        case.content_type,
        case.body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&case.body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or("(no answer)").to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let summary: String = if body.contains("\"accepted\"") {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        format!(
            "accepted {}, rejected {}",
            v["accepted"], v["rejected_count"]
        )
    } else {
        body.chars().filter(|c| !c.is_control()).take(70).collect()
    };
    (status, summary)
}

fn main() {
    let binary = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("{}/../../target/release/apogee", env!("CARGO_MANIFEST_DIR")));
    let mut cases = ndjson_cases();
    cases.extend(json_array_cases());
    cases.extend(csv_cases());
    cases.extend(litellm_cases());
    cases.extend(openai_cases());
    cases.extend(otlp_cases());
    println!("| format | body | size | answer | time | peak RSS (idle) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for case in &cases {
        let server = start(&binary);
        // Let the process settle (migrations, the catalog) before the baseline.
        std::thread::sleep(Duration::from_millis(300));
        let idle = peak_kib(server.child.id());
        let started = Instant::now();
        let (status, summary) = post(&server.addr, case);
        let took = started.elapsed();
        let peak = peak_kib(server.child.id());
        println!(
            "| {} | {} | {:.1} MiB | {} — {} | {:.2} s | **{:.0} MiB** ({:.0} MiB) |",
            case.format,
            case.shape,
            case.body.len() as f64 / 1_048_576.0,
            status.trim_start_matches("HTTP/1.1 "),
            summary,
            took.as_secs_f64(),
            peak as f64 / 1024.0,
            idle as f64 / 1024.0
        );
    }
}
