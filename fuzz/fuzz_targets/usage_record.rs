//! One usage record (PROTOCOL.md §8) through deserialization, validation and pricing: a
//! record that validates always prices without overflow or panic.
#![no_main]

use std::sync::OnceLock;

use apogee_analytics::{PriceCatalog, PricedRecord, UsageRecord};
use libfuzzer_sys::fuzz_target;

fn catalog() -> &'static PriceCatalog {
    static CATALOG: OnceLock<PriceCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| PriceCatalog::builtin().expect("built-in catalog"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(record) = serde_json::from_slice::<UsageRecord>(data) else {
        return;
    };
    if record.validate().is_ok() {
        let priced = PricedRecord::price(record, catalog());
        if let Some(cost) = priced.cost {
            assert!(cost.0 >= 0, "costs are never negative");
        }
        let _ = priced.provider(catalog());
    }
});
