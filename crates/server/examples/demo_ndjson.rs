//! Writes the synthetic demo history as NDJSON (one usage record per line) to stdout: the
//! input of the `apogee ingest` benchmarks in `docs/benchmarks.md`.
//!
//! `cargo run --release -p apogee-server --example demo_ndjson -- CALLS DAYS SEED > FILE`

use std::io::{BufWriter, Write};

use apogee_analytics::demo::{DemoSpec, generate};
use chrono::{TimeZone, Utc};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut next = |default: u64| -> Result<u64, std::num::ParseIntError> {
        args.next().map_or(Ok(default), |a| a.parse())
    };
    let calls = next(1_000_000)?;
    let days = u32::try_from(next(30)?)?;
    let seed = next(1)?;
    // A fixed end, so the same arguments always write the same file.
    let end = Utc
        .with_ymd_and_hms(2026, 11, 30, 0, 0, 0)
        .single()
        .ok_or("bad end")?;
    let spec = DemoSpec {
        days,
        calls,
        seed,
        end,
    };
    spec.validate()?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for record in generate(&spec) {
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
