//! Any `POST /api/usage` body: parsed into accepted records and per-index rejections, or
//! refused whole with a 400-class error; never a panic.
#![no_main]

use std::sync::OnceLock;

use apogee_analytics::PriceCatalog;
use apogee_analytics::formats::Format;
use apogee_server::ingest::parse_body;
use libfuzzer_sys::fuzz_target;

fn catalog() -> &'static PriceCatalog {
    static CATALOG: OnceLock<PriceCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| PriceCatalog::builtin().expect("built-in catalog"))
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the format, so one target covers every body parser.
    let Some((&pick, body)) = data.split_first() else { return };
    let format = [Format::Usage, Format::Csv, Format::Litellm, Format::OpenaiUsage][usize::from(pick % 4)];
    if let Ok(parsed) = parse_body(format, body, catalog()) {
        let mut seen = std::collections::HashSet::new();
        for r in &parsed.rejected {
            assert!(seen.insert(r.index), "each index rejected once");
        }
    }
});
