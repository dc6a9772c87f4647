//! Prometheus metrics of the server, exposed at `/metrics` in the OpenMetrics text format.

use apogee_store::UsageCacheStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub connections_open: Gauge,
    pub connections_total: Counter,
    pub handshake_failures: Counter,
    /// Browser sign-ins through OpenID Connect, by outcome (`ok` or the failure's code).
    pub sign_ins: Family<CodeLabels, Counter>,
    pub connections_refused: Counter,
    /// Handshakes refused with 429 because the user has as many connections as allowed.
    pub connections_refused_per_user: Counter,
    /// TCP connections closed at accept (per-IP limit, node full) or to make room (an idle
    /// one evicted), by reason.
    pub sockets_refused: Family<ReasonLabels, Counter>,
    /// `accept` failures (the process out of descriptors or memory).
    pub accept_errors: Counter,
    /// REST calls answered 429 because their user is over the endpoint's rate, by endpoint.
    pub rest_rate_limited: Family<ReasonLabels, Counter>,
    pub replays: Family<SourceLabels, Counter>,
    /// Streams whose user left, kept for the grace (`APOGEE_STREAM_GRACE_MS`), and the bytes
    /// charged for them against `APOGEE_STREAM_GRACE_BYTES`.
    pub streams_kept: Gauge,
    pub streams_kept_bytes: Gauge,
    /// Kept streams let go before their grace ended, to stay within the byte budget.
    pub streams_kept_evicted: Counter,
    pub events_published: Family<EventLabels, Counter>,
    pub slow_consumers: Counter,
    pub client_errors: Family<CodeLabels, Counter>,
    pub runs_started: Counter,
    pub runs_finished: Family<StatusLabels, Counter>,
    pub runs_in_flight: Gauge,
    /// Runs accepted and waiting for their turn (their user's lane, then a place on the node).
    pub runs_waiting: Gauge,
    pub usage_records_accepted: Counter,
    pub usage_records_rejected: Counter,
    /// 1 while the Redis subscription connection is up (always 0 without Redis).
    pub bus_connected: Gauge,
    pub bus_published: Counter,
    /// Events not offered to Redis because the publish queue was full.
    pub bus_dropped: Counter,
    /// Events a stream read from the store because they did not arrive through Redis.
    pub gap_filled: Counter,
    /// Budget crossings and anomaly alerts this node fired (each fires on one node only).
    pub budget_alerts_fired: Counter,
    /// Budget evaluations of an org that failed (the next ingest or tick tries again).
    pub budget_evaluation_errors: Counter,
    /// Webhook delivery attempts by outcome: `delivered`, `retry` (failed, tried again
    /// later) or `failed` (the last attempt failed).
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("apogee");
        let mut m = Metrics {
            registry: Registry::default(),
            connections_open: Gauge::default(),
            connections_total: Counter::default(),
            handshake_failures: Counter::default(),
            sign_ins: Family::default(),
            connections_refused: Counter::default(),
            connections_refused_per_user: Counter::default(),
            sockets_refused: Family::default(),
            accept_errors: Counter::default(),
            rest_rate_limited: Family::default(),
            replays: Family::default(),
            streams_kept: Gauge::default(),
            streams_kept_bytes: Gauge::default(),
            streams_kept_evicted: Counter::default(),
            events_published: Family::default(),
            slow_consumers: Counter::default(),
            client_errors: Family::default(),
            runs_started: Counter::default(),
            runs_finished: Family::default(),
            runs_in_flight: Gauge::default(),
            runs_waiting: Gauge::default(),
            usage_records_accepted: Counter::default(),
            usage_records_rejected: Counter::default(),
            bus_connected: Gauge::default(),
            bus_published: Counter::default(),
            bus_dropped: Counter::default(),
            gap_filled: Counter::default(),
            budget_alerts_fired: Counter::default(),
            budget_evaluation_errors: Counter::default(),
            webhook_deliveries: Family::default(),
        };
        registry.register(
            "ws_connections_open",
            "Open WebSocket connections",
            m.connections_open.clone(),
        );
        registry.register(
            "ws_connections",
            "WebSocket connections accepted",
            m.connections_total.clone(),
        );
        registry.register(
            "ws_handshake_failures",
            "Handshakes refused with 401",
            m.handshake_failures.clone(),
        );
        registry.register(
            "sign_ins",
            "Browser sign-ins through OpenID Connect, by outcome (ok, state, expired, denied, token, org, provider, busy, internal)",
            m.sign_ins.clone(),
        );
        registry.register(
            "ws_connections_refused",
            "Handshakes refused with 503 because the node is at its connection limit",
            m.connections_refused.clone(),
        );
        registry.register(
            "ws_connections_refused_per_user",
            "Handshakes refused with 429 because the user is at the per-user connection limit",
            m.connections_refused_per_user.clone(),
        );
        registry.register(
            "sockets_refused",
            "TCP connections closed at once (per_ip, full) or to make room (evicted_idle)",
            m.sockets_refused.clone(),
        );
        registry.register(
            "accept_errors",
            "Failures to accept a TCP connection",
            m.accept_errors.clone(),
        );
        registry.register(
            "rest_rate_limited",
            "REST calls refused with 429 because the user is over the endpoint's rate",
            m.rest_rate_limited.clone(),
        );
        registry.register(
            "ws_replays",
            "Connections by where their resume was served from (none, memory, store, resync)",
            m.replays.clone(),
        );
        registry.register(
            "streams_kept",
            "Streams whose user left, kept in memory for the grace so a resume reads no store",
            m.streams_kept.clone(),
        );
        registry.register(
            "streams_kept_bytes",
            "Bytes charged for kept streams (their replay buffers) against the grace's budget",
            m.streams_kept_bytes.clone(),
        );
        registry.register(
            "streams_kept_evicted",
            "Kept streams let go before their grace ended, to stay within the byte budget",
            m.streams_kept_evicted.clone(),
        );
        registry.register(
            "stream_events",
            "Stream events persisted and fanned out, by type",
            m.events_published.clone(),
        );
        registry.register(
            "slow_consumers",
            "Connections closed with 1013 because their send queue was full",
            m.slow_consumers.clone(),
        );
        registry.register(
            "client_errors",
            "Error frames sent to clients, by code",
            m.client_errors.clone(),
        );
        registry.register("runs_started", "Runs started", m.runs_started.clone());
        registry.register(
            "runs_finished",
            "Runs finished, by status",
            m.runs_finished.clone(),
        );
        registry.register(
            "runs_in_flight",
            "Runs accepted and not yet ended (executing or waiting their turn)",
            m.runs_in_flight.clone(),
        );
        registry.register(
            "runs_waiting",
            "Runs waiting for their turn: their user's previous run, or a place on the node (APOGEE_MAX_RUNS_EXECUTING)",
            m.runs_waiting.clone(),
        );
        registry.register(
            "usage_records_accepted",
            "Usage records stored",
            m.usage_records_accepted.clone(),
        );
        registry.register(
            "usage_records_rejected",
            "Usage records rejected as invalid",
            m.usage_records_rejected.clone(),
        );
        registry.register(
            "redis_connected",
            "1 while the Redis subscription is up",
            m.bus_connected.clone(),
        );
        registry.register(
            "redis_events_published",
            "Events published to other nodes through Redis",
            m.bus_published.clone(),
        );
        registry.register(
            "redis_events_dropped",
            "Events not published because the Redis queue was full",
            m.bus_dropped.clone(),
        );
        registry.register(
            "stream_gap_filled_events",
            "Events read from the store because Redis did not deliver them",
            m.gap_filled.clone(),
        );
        registry.register(
            "budget_alerts_fired",
            "Budget and anomaly alerts fired by this node",
            m.budget_alerts_fired.clone(),
        );
        registry.register(
            "budget_evaluation_errors",
            "Budget evaluations of an org that failed",
            m.budget_evaluation_errors.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome",
            m.webhook_deliveries.clone(),
        );
        m.registry = registry;
        m
    }

    /// Exports the store's cache of usage reads (hits, reads that shared one in flight,
    /// misses, evictions, entries and bytes held), read at each scrape.
    pub fn observe_usage_cache(&mut self, stats: UsageCacheStats) {
        self.registry
            .register_collector(Box::new(UsageCacheCollector(stats)));
    }

    /// Exports the LLM client's calls (open now, requests sent, failed, refused for want of
    /// a place), read at each scrape.
    pub fn observe_llm(&mut self, client: std::sync::Arc<apogee_llm::LlmClient>) {
        self.registry
            .register_collector(Box::new(LlmCollector(client)));
    }

    /// The text exposition, with the process's resident memory added.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        if let Some(rss) = resident_bytes() {
            out.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n");
            out.push_str("# TYPE process_resident_memory_bytes gauge\n");
            out.push_str(&format!("process_resident_memory_bytes {rss}\n"));
        }
        out.push_str("# EOF\n");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
struct UsageCacheCollector(UsageCacheStats);

impl Collector for UsageCacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        encode_counters(
            &mut encoder,
            &[
                (
                    "usage_cache_hits",
                    "Usage reads answered from the cache",
                    s.hits(),
                ),
                (
                    "usage_cache_shared",
                    "Usage reads that took the result of an identical read in flight",
                    s.shared(),
                ),
                (
                    "usage_cache_misses",
                    "Usage reads that ran their query",
                    s.misses(),
                ),
                (
                    "usage_cache_evictions",
                    "Cached usage reads dropped for room or because their org's usage changed",
                    s.evictions(),
                ),
            ],
        )?;
        encode_gauges(
            &mut encoder,
            &[
                ("usage_cache_entries", "Usage reads cached", s.entries()),
                (
                    "usage_cache_bytes",
                    "Size of the cached usage reads",
                    s.bytes(),
                ),
            ],
        )
    }
}

#[derive(Debug)]
struct LlmCollector(std::sync::Arc<apogee_llm::LlmClient>);

impl Collector for LlmCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        encode_counters(
            &mut encoder,
            &[
                (
                    "llm_requests",
                    "HTTP requests sent to the LLM, retries included",
                    s.requests,
                ),
                (
                    "llm_requests_failed",
                    "LLM requests that failed (unreachable, timed out, an error status, rate limited)",
                    s.failed,
                ),
                (
                    "llm_calls_busy",
                    "LLM calls refused because the node's places for them stayed taken (the run answered without the model)",
                    s.busy,
                ),
            ],
        )?;
        encode_gauges(
            &mut encoder,
            &[(
                "llm_calls_open",
                "LLM calls holding one of the node's places now",
                s.calls_open,
            )],
        )
    }
}

/// Counters read at scrape time: (name without the `apogee_` prefix, help, value).
fn encode_counters(
    encoder: &mut DescriptorEncoder,
    counters: &[(&str, &str, u64)],
) -> Result<(), std::fmt::Error> {
    for &(name, help, value) in counters {
        let counter = ConstCounter::new(value);
        counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
    }
    Ok(())
}

/// Gauges read at scrape time, as [`encode_counters`].
fn encode_gauges(
    encoder: &mut DescriptorEncoder,
    gauges: &[(&str, &str, u64)],
) -> Result<(), std::fmt::Error> {
    for &(name, help, value) in gauges {
        let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
        gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
    }
    Ok(())
}

/// Resident set size from `/proc/self/status` (Linux); `None` elsewhere. `VmRSS` is in kB
/// (KiB), so no page size is assumed: pages are 16 or 64 KiB on some hosts.
fn resident_bytes() -> Option<u64> {
    vm_rss_bytes(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The `VmRSS:  1234 kB` line of a `/proc/PID/status` text, in bytes.
fn vm_rss_bytes(status: &str) -> Option<u64> {
    let mut fields = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace();
    let kib: u64 = fields.next()?.parse().ok()?;
    if fields.next()? != "kB" {
        return None;
    }
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::vm_rss_bytes;

    #[test]
    fn resident_memory_comes_from_vm_rss_in_kib() {
        let status = "Name:\tapogee\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nRssAnon:\t 100 kB\n";
        assert_eq!(vm_rss_bytes(status), Some(20_480 * 1024));
        for bad in [
            "Name:\tapogee\n",
            "VmRSS:\t20480\n",
            "VmRSS:\t20480 pages\n",
            "VmRSS:\t-1 kB\n",
            "VmRSS:\tlots kB\n",
            "VmRSS:\t18446744073709551615 kB\n",
        ] {
            assert_eq!(vm_rss_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn this_process_reports_its_resident_memory() {
        assert!(super::resident_bytes().is_some_and(|b| b > 0));
    }
}
