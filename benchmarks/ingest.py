"""Ingestion throughput through the real HTTP stack and the CSV import, next to COPY.

    .venv/bin/python benchmarks/ingest.py

A throwaway database on the embedded server; gunicorn (2 workers) on loopback; batches of
1,000 and 10,000 synthetic events posted by 2 client threads (bounded number of requests);
`manage.py import_events` on ml-latest-small's ratings.csv; and, in the same run, PostgreSQL's
own COPY of the same 100k rows into a plain unindexed table as the ceiling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import (  # noqa: E402
    ROOT,
    bench_database,
    command_line,
    free_port,
    machine_line,
    movielens_dir,
    start_server,
    write_section,
)

CLIENT_THREADS = 2
IMPORT_RUNS = 3


def post(url: str, key: str, rows: list | bytes) -> dict:
    body = rows if isinstance(rows, bytes) else json.dumps(rows).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Authorization": f"Bearer {key}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def events(start: int, count: int, n_users: int, n_items: int) -> list[dict]:
    now = int(time.time()) - 86400
    return [{"user": f"u{(i * 7919) % n_users}", "item": f"i{(i * 104729) % n_items}",
             "type": "click", "timestamp": now + i % 80000, "event_id": f"e{i}"}
            for i in range(start, start + count)]


def http_run(base: str, key: str, batch: int, requests: int, offset: int) -> float:
    # Bodies encoded before the clock starts: the client shares the server's two cores.
    payloads = [json.dumps(events(offset + r * batch, batch, 20_000, 5_000)).encode()
                for r in range(requests)]
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        results = list(pool.map(lambda rows: post(f"{base}/api/v1/events", key, rows),
                                payloads))
    elapsed = time.perf_counter() - started
    created = sum(r["created"] for r in results)
    assert created == batch * requests, results[:1]
    return created / elapsed


def copy_ceiling(socket_dir: Path, ratings: Path) -> float:
    """PostgreSQL's own COPY of the same file (parsed by the server) into a plain table."""
    import psycopg

    data = ratings.read_bytes()
    with psycopg.connect(host=str(socket_dir), user="mfapp",
                         dbname=os.environ["EMBEDDED_DB_NAME"]) as conn:
        conn.execute("CREATE TABLE copy_ceiling (user_id bigint, item_id bigint, "
                     "value float8, ts bigint)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(
                "COPY copy_ceiling FROM STDIN WITH (FORMAT csv, HEADER)") as copy:
            copy.write(data)
        conn.commit()
        elapsed = time.perf_counter() - started
        rows = conn.execute("SELECT count(*) FROM copy_ceiling").fetchone()[0]
        return rows / elapsed


def run_command(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=os.environ.copy(),
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return elapsed, done.stdout


def main() -> None:
    ratings = movielens_dir() / "ratings.csv"
    movies = movielens_dir() / "movies.csv"
    with bench_database("mfbench_ingest") as socket_dir:
        _t, out = run_command("create_tenant", "bench", "--json")
        key = json.loads(out)["api_key"]
        port = free_port()
        server = start_server(port, "--workers", "2", "--timeout", "120")
        base = f"http://127.0.0.1:{port}"
        try:
            for start in range(0, 5_000, 1_000):
                post(f"{base}/api/v1/items", key,
                     [{"external_id": f"i{i}"} for i in range(start, start + 1_000)])
            http_run(base, key, 1_000, 4, 10_000_000)  # warm-up: workers, caches, users
            per_1k = http_run(base, key, 1_000, 40, 0)
            per_10k = http_run(base, key, 10_000, 8, 1_000_000)
        finally:
            server.terminate()
            server.wait(timeout=30)
        imports = []  # (seconds inside the command incl. commit, wall seconds, rows, created)
        for run in range(IMPORT_RUNS):  # a fresh tenant each time: every row is new
            slug = f"movielens{run}"
            run_command("create_tenant", slug, "--json")
            run_command("import_items", slug, str(movies), "--no-progress", "--map",
                        "item=movieId,title=title,category=genres,tags=genres")
            wall, out = run_command(
                "import_events", slug, str(ratings), "--no-progress", "--partial", "--map",
                "user=userId,item=movieId,value=rating,timestamp=timestamp", "--type", "rating")
            summary = out.splitlines()[0]
            numbers = dict(part.strip().rsplit(" ", 1) for part in summary.split(";")[:5])
            inside = float(summary.split(";")[5].split(" s")[0])
            imports.append((inside, wall, int(numbers["rows read"].replace(",", "")),
                            int(numbers["created"].replace(",", ""))))
        inside, wall, rows, created = sorted(imports)[len(imports) // 2]  # the median run
        csv_rate = rows / inside
        ceiling = copy_ceiling(socket_dir, ratings)

    markdown = f"""## Ingestion: events endpoint and CSV import vs COPY

`{command_line()}` — {machine_line()}

Server: gunicorn, 2 workers, DEBUG off, on loopback; {CLIENT_THREADS} client threads sharing
the 2 cores (bodies encoded before the clock starts); events with new event ids (idempotency
check on), users created on first sight, every row validated, one transaction per request.
The CSV import is `manage.py import_events --partial` on ml-latest-small's ratings.csv
({rows:,} rows, {created:,} stored: the copy in /work/shared has one extra row naming an
unknown movie, 999999, reported by line; without `--partial` the whole file is refused);
median of {IMPORT_RUNS} runs into fresh tenants, timed by the command itself (reading,
validation, writing, commit; the process with Django's start-up took {wall:.1f} s). The
ceiling is PostgreSQL's own `COPY ... FROM STDIN (FORMAT csv)` of the same file into an
unindexed table without row-level security, measured in this run.

| path | rows/s | vs COPY |
|---|---|---|
| POST /api/v1/events, batches of 1,000 (40 requests) | {per_1k:,.0f} | {per_1k / ceiling:.2f} |
| POST /api/v1/events, batches of 10,000 (8 requests) | {per_10k:,.0f} | {per_10k / ceiling:.2f} |
| import_events, ml-latest-small ratings | {csv_rate:,.0f} | {csv_rate / ceiling:.2f} |
| COPY of the CSV into a plain table (ceiling) | {ceiling:,.0f} | 1.00 |

Goals: >= 20,000 events/s through the endpoint (batches of 10,000):
{"met" if per_10k >= 20_000 else "NOT met"}; >= 100,000 rows/s for the CSV import:
{"met" if csv_rate >= 100_000 else "NOT met"}.

Where the import's time goes (cProfile in-process, 100,837 rows, about 0.9 s): most of it is
the database's INSERT ... SELECT from the staging table (the row-level security check and five
index entries per row), about 0.5-0.6 s; reading the CSV by columns (`csv.reader`) and
validating (vectorised for well-formed columns, per value only where a column holds a bad
value) take about 0.3 s in a second thread, overlapping the writes; the binary COPY into the
staging table, built from numpy, under 0.05 s. The gap to COPY is the indexes and policy of
the event table, id resolution and Python parsing, plus JSON and HTTP for the endpoint. The
event table has no database foreign keys: their deferred checks (four index probes per row at
commit) took three times as long as the insert itself; the service resolves every id inside
the tenant and locks the users it names against deletion instead.
"""
    print(markdown)
    if "--no-write" not in sys.argv:
        write_section("ingest", markdown)


if __name__ == "__main__":
    main()
