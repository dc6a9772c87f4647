//! Any `POST /api/usage` body: parsed into accepted records and per-index rejections, or
//! refused whole with a 400-class error; never a panic.
#![no_main]

use std::sync::OnceLock;

use apogee_analytics::PriceCatalog;
use apogee_analytics::formats::{Format, Limits};
use apogee_server::ingest::parse_body;
use libfuzzer_sys::fuzz_target;

fn catalog() -> &'static PriceCatalog {
    static CATALOG: OnceLock<PriceCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| PriceCatalog::builtin().expect("built-in catalog"))
}

fuzz_target!(|data: &[u8]| {
    // §8 bodies (JSON array / NDJSON), the format of the recorded runs; the other formats are
    // covered by the property tests (`crates/server/tests/ingest_prop.rs`).
    if let Ok(parsed) = parse_body(Format::Usage, data, catalog(), Limits::default()) {
        let mut seen = std::collections::HashSet::new();
        for r in &parsed.rejected {
            assert!(seen.insert(r.index), "each index rejected once");
        }
    }
});
