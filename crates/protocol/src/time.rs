//! Instants on the wire, one function per kind, so each kind has one precision everywhere
//! (PROTOCOL.md: RFC 3339, UTC, `Z`). Parsing is the reader's business; this is the writing.

use chrono::{DateTime, SecondsFormat, Utc};

/// An event's `ts`: microseconds, so event latency can be measured below a millisecond.
pub fn event_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// When a stored thing was made or changed (`created_at`, `updated_at`, `ended_at`):
/// milliseconds, the precision the stores keep.
pub fn record_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An instant in an answer: a period's bounds, "now" in a tool's result, a forecast's date,
/// the server's clock in `connection_ready`. Whole seconds: no answer is finer.
pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn each_kind_has_its_precision() {
        let t = Utc.with_ymd_and_hms(2026, 11, 30, 8, 15, 2).unwrap()
            + chrono::Duration::microseconds(123_456);
        assert_eq!(event_ts(t), "2026-11-30T08:15:02.123456Z");
        assert_eq!(record_time(t), "2026-11-30T08:15:02.123Z");
        assert_eq!(instant(t), "2026-11-30T08:15:02Z");
    }
}
