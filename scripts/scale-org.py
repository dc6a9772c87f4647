#!/usr/bin/env python3
"""Makes one org of a stopped server's SQLite database N times larger in minutes, for
benchmarks at 10M records without ingesting them one by one (docs/benchmarks.md).

    scripts/scale-org.py DATA_DIR/apogee.db ORG_ID N [--verify]

Copies k = 1 .. N-1 of every raw row of the org are added with `~k` appended to the request
id and to the prompt hash (so each copy is its own prompts); everything else — time, user,
feature, model, tokens, cost, tags — is the original's. The summaries are then what ingesting
the copies would have made them, by construction:

- every summary whose key holds no prompt hash (`usage_hourly`, `usage_hourly_tags`,
  `usage_mix_hourly`, `usage_output_daily`) has the same keys and N times each sum;
- the prompt summaries (`usage_prompts`, `usage_repeats_hourly`, `usage_repeats_daily`) gain, per copy, the
  original's rows under the renamed hash (a copy's calls keep the original's order in time and
  insertion);
- the org's data version is bumped, so no cached read survives.

`--verify` then recomputes every summary of the org from its raw rows with the migrations'
own backfill statements and fails unless each equals what is stored. Refuses when a sum times
N would leave 64 bits.
"""

import pathlib
import sqlite3
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "crates" / "store" / "migrations"

SUMMED = {
    "usage_hourly": ["row_count", "calls", "input_tokens", "output_tokens",
                     "cached_input_tokens", "cost_nanos", "unpriced_calls",
                     "unpriced_tokens", "error_calls"],
    "usage_hourly_tags": ["row_count", "calls", "input_tokens", "output_tokens",
                          "cached_input_tokens", "cost_nanos", "unpriced_calls",
                          "unpriced_tokens", "error_calls"],
    "usage_mix_hourly": ["row_count", "calls", "fresh_input_tokens", "cached_input_tokens",
                         "output_tokens", "cost_nanos"],
    "usage_output_daily": ["interactive_calls", "batch_calls"],
}
PROMPT_TABLES = ["usage_prompts", "usage_repeats_hourly", "usage_repeats_daily"]
I64_MAX = 2**63 - 1


def columns(db, table):
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def backfills(migration, tables):
    """The `INSERT INTO <table> SELECT …` statements of a migration file, by table."""
    sql = (MIGRATIONS / migration).read_text()
    found = {}
    for statement in sql.split(";"):
        body = "\n".join(l for l in statement.splitlines() if not l.strip().startswith("--"))
        body = body.strip()
        for table in tables:
            if body.startswith(f"INSERT INTO {table}\n") or body.startswith(f"INSERT INTO {table} "):
                found[table] = body[len(f"INSERT INTO {table}"):]
    return found


def verify(db, org):
    recompute = {}
    recompute.update(backfills("0004_rollups.sql", ["usage_hourly"]))
    recompute.update(backfills("0006_tag_rollups.sql", ["usage_hourly_tags"]))
    recompute.update(backfills("0017_recommender_summaries.sql",
                               ["usage_mix_hourly", "usage_output_daily"]))
    recompute.update(backfills("0018_prompt_repeats.sql", PROMPT_TABLES))
    recompute.update(backfills("0022_prompt_repeats_daily.sql", PROMPT_TABLES))
    for table in present(db, list(SUMMED) + PROMPT_TABLES):
        started = time.time()
        db.execute(f"DROP TABLE IF EXISTS temp.expected_{table}")
        db.execute(f"CREATE TEMP TABLE expected_{table} AS SELECT * FROM {table} WHERE 0")
        select = recompute[table]
        if table in ("usage_repeats_hourly", "usage_repeats_daily"):
            # Its backfill reads usage_prompts: point it at the recomputed one.
            select = select.replace("FROM usage_prompts", "FROM temp.expected_usage_prompts")
        db.execute(f"INSERT INTO temp.expected_{table} SELECT * FROM ({select}) WHERE org_id = ?",
                   (org,))
        cols = ", ".join(columns(db, table))
        for a, b in [(f"temp.expected_{table}", table), (table, f"temp.expected_{table}")]:
            (diff,) = db.execute(
                f"SELECT COUNT(*) FROM (SELECT {cols} FROM {a} WHERE org_id = ?"
                f" EXCEPT SELECT {cols} FROM {b} WHERE org_id = ?)", (org, org)).fetchone()
            if diff:
                sys.exit(f"{table}: {diff} rows of {a} not in {b}")
        (n,) = db.execute(f"SELECT COUNT(*) FROM {table} WHERE org_id = ?", (org,)).fetchone()
        print(f"verified {table}: {n} rows equal to the raw rows' ({time.time() - started:.1f} s)")


def present(db, tables):
    """The tables of `tables` the database has (an older schema may lack the newest)."""
    return [t for t in tables if columns(db, t)]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 3:
        sys.exit(__doc__)
    path, org, n = args[0], args[1], int(args[2])
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA cache_size = -262144")
    if n > 1:
        db.execute("BEGIN IMMEDIATE")
        for table, sums in SUMMED.items():
            for col in sums:
                (biggest,) = db.execute(
                    f"SELECT MAX(ABS({col})) FROM {table} WHERE org_id = ?", (org,)).fetchone()
                if biggest is not None and biggest > I64_MAX // n:
                    sys.exit(f"{table}.{col} times {n} would leave 64 bits")
        cols = columns(db, "usage_records")
        started = time.time()
        for k in range(1, n):
            renamed = [
                f"request_id || '~{k}'" if c == "request_id"
                else f"prompt_hash || '~{k}'" if c == "prompt_hash"
                else c
                for c in cols
            ]
            db.execute(
                f"INSERT INTO usage_records ({', '.join(cols)}) SELECT {', '.join(renamed)}"
                f" FROM usage_records WHERE org_id = ? AND request_id NOT LIKE '%~%'"
                f" ORDER BY rowid", (org,))
            for table in present(db, PROMPT_TABLES):
                tcols = columns(db, table)
                picked = [f"prompt_hash || '~{k}'" if c == "prompt_hash" else c for c in tcols]
                db.execute(
                    f"INSERT INTO {table} ({', '.join(tcols)}) SELECT {', '.join(picked)}"
                    f" FROM {table} WHERE org_id = ? AND prompt_hash NOT LIKE '%~%'", (org,))
            print(f"copy {k}: {time.time() - started:.1f} s", flush=True)
        for table, sums in SUMMED.items():
            sets = ", ".join(f"{c} = {c} * {n}" for c in sums)
            db.execute(f"UPDATE {table} SET {sets} WHERE org_id = ?", (org,))
        db.execute("UPDATE usage_versions SET version = version + 1 WHERE org_id = ?", (org,))
        db.execute("COMMIT")
        print(f"scaled {org} by {n} in {time.time() - started:.1f} s")
    if "--verify" in sys.argv:
        verify(db, org)


if __name__ == "__main__":
    main()
