#!/usr/bin/env python3
"""Ingest rate with and without budgets (docs/benchmarks.md, "Budget evaluation at ingest").

Usage: scripts/bench-budget-ingest.py BINARY BUDGETS [REQUESTS] [RECORDS_PER_REQUEST]

Starts BINARY (`apogee serve`, demo auth, a fresh SQLite file) on a free loopback port,
creates BUDGETS budgets (each scoped to one of 50 features, or the whole org, amounts too high
to fire), then posts REQUESTS NDJSON bodies of RECORDS_PER_REQUEST records one after the other
and prints records/s. Budgets are evaluated after every batch, off the request, so the rate
shows what evaluation costs the ingest path through the shared database.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone


def call(base, method, path, body=b"", content_type="application/json"):
    req = urllib.request.Request(base + path, data=body or None, method=method)
    req.add_header("X-Apogee-User", "bench")
    req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.read()


def main():
    binary, budgets = sys.argv[1], int(sys.argv[2])
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    per = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    with tempfile.TemporaryDirectory() as d:
        env = {"PATH": os.environ.get("PATH", ""), "APOGEE_ADDR": "127.0.0.1:0",
               "APOGEE_DATA_DIR": d, "RUST_LOG": "warn"}
        server = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE)
        try:
            line = server.stdout.readline().decode().strip()
            base = line.removeprefix("listening on ")
            for i in range(budgets):
                scope = {} if i % 10 == 0 else {"feature": f"feature-{i % 50}"}
                body = json.dumps({"name": f"b{i}", "amount_usd": 1e8, "scope": scope})
                status, _ = call(base, "POST", "/api/budgets", body.encode())
                assert status == 201
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            bodies = []
            for r in range(requests):
                lines = [json.dumps({"request_id": f"r{r}-{k}", "ts": now, "model": "gpt-4o",
                                     "input_tokens": 1000, "output_tokens": 200,
                                     "feature": f"feature-{k % 50}", "user": f"u{k % 200}"})
                         for k in range(per)]
                bodies.append(("\n".join(lines) + "\n").encode())
            start = time.monotonic()
            for b in bodies:
                status, _ = call(base, "POST", "/api/usage", b, "application/x-ndjson")
                assert status == 200
            elapsed = time.monotonic() - start
            total = requests * per
            print(f"budgets={budgets} records={total} in {elapsed:.2f} s: {total / elapsed:.0f} records/s")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
