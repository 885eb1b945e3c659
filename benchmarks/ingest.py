"""Ingestion throughput through the real HTTP stack and the CSV import, next to COPY.

    .venv/bin/python benchmarks/ingest.py

A throwaway database on the embedded server; gunicorn (2 workers) on loopback; batches of
1,000 and 10,000 synthetic events posted by 2 client threads (bounded number of requests);
`manage.py import_events` on ml-latest-small's ratings.csv; and, in the same run, PostgreSQL's
own COPY of the same 100k rows into a plain unindexed table as the ceiling.
"""

from __future__ import annotations

import csv
import json
import os
import socket
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
    machine_line,
    movielens_dir,
    write_section,
)

CLIENT_THREADS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "mfplatform.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", "2", "--timeout", "120"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit("server did not start")


def post(url: str, key: str, rows: list) -> dict:
    request = urllib.request.Request(url, data=json.dumps(rows).encode(), method="POST",
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
    payloads = [events(offset + r * batch, batch, 20_000, 5_000) for r in range(requests)]
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        results = list(pool.map(lambda rows: post(f"{base}/api/v1/events", key, rows),
                                payloads))
    elapsed = time.perf_counter() - started
    created = sum(r["created"] for r in results)
    assert created == batch * requests, results[:1]
    return created / elapsed


def copy_ceiling(socket_dir: Path, ratings: Path) -> float:
    import psycopg

    with open(ratings, newline="") as handle:
        rows = [(int(r["userId"]), int(r["movieId"]), float(r["rating"]), int(r["timestamp"]))
                for r in csv.DictReader(handle)]
    with psycopg.connect(host=str(socket_dir), user="mfapp",
                         dbname=os.environ["EMBEDDED_DB_NAME"]) as conn:
        conn.execute("CREATE TABLE copy_ceiling (user_id bigint, item_id bigint, "
                     "value float8, ts bigint)")
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(
                "COPY copy_ceiling FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int8", "float8", "int8"])
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return len(rows) / (time.perf_counter() - started)


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
    with bench_database() as socket_dir:
        _t, out = run_command("create_tenant", "bench", "--json")
        key = json.loads(out)["api_key"]
        port = free_port()
        server = start_server(port)
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
        run_command("create_tenant", "movielens", "--json")
        run_command("import_items", "movielens", str(movies), "--no-progress", "--map",
                    "item=movieId,title=title,category=genres,tags=genres")
        startup, _ = run_command("check")  # Django start-up, subtracted from the import
        elapsed, out = run_command(
            "import_events", "movielens", str(ratings), "--no-progress", "--partial", "--map",
            "user=userId,item=movieId,value=rating,timestamp=timestamp", "--type", "rating")
        rows = int(out.split("rows read ")[1].split(";")[0].replace(",", ""))
        csv_rate = rows / (elapsed - startup)
        ceiling = copy_ceiling(socket_dir, ratings)

    markdown = f"""## Ingestion: events endpoint and CSV import vs COPY

`{command_line()}` — {machine_line()}

Server: gunicorn, 2 workers, DEBUG off, on loopback; {CLIENT_THREADS} client threads; events
with new event ids (idempotency check on), users created on first sight, every row validated.
The CSV import is `manage.py import_events` on ml-latest-small's ratings.csv ({rows:,} rows),
its Django start-up ({startup:.1f} s) subtracted. The ceiling is PostgreSQL's own binary COPY
of the same rows into an unindexed table without row-level security, measured in this run.

| path | rows/s | vs COPY |
|---|---|---|
| POST /api/v1/events, batches of 1,000 (40 requests) | {per_1k:,.0f} | {per_1k / ceiling:.2f} |
| POST /api/v1/events, batches of 10,000 (8 requests) | {per_10k:,.0f} | {per_10k / ceiling:.2f} |
| import_events, ml-latest-small ratings | {csv_rate:,.0f} | {csv_rate / ceiling:.2f} |
| COPY into a plain table (ceiling) | {ceiling:,.0f} | 1.00 |

Goals: >= 20,000 events/s through the endpoint: {"met" if per_10k >= 20_000 else "NOT met"}
(batches of 10,000); >= 100,000 rows/s for the CSV import: {"met" if csv_rate >= 100_000
else "NOT met"}.

Where the CSV import's time goes (cProfile of the same import in-process, 4.0 s for 100,836
rows on 2026-11-26): the commit 1.35 s (Django's foreign keys are DEFERRABLE INITIALLY
DEFERRED, so the three FK checks per event row, about 300k index probes, all run at commit),
the INSERT ... SELECT from the staging table with the row-level security policy and five
indexes 0.7 s, per-row validation in Python 1.0 s (timestamp parsing 0.33 s), CSV reading 0.5 s,
binary COPY into the staging table 0.1 s. What would close the gap: validate CSV columns
vectorised with numpy instead of row by row (the REST path needs per-row messages, the file
path can find the bad rows afterwards), and drop the database-level FK constraints of the event
table in favour of the ingestion service's own resolution inside the tenant (the service
already proves every user, item and type id exists) — about 2.5 s of the 4 s.
"""
    print(markdown)
    if "--no-write" not in sys.argv:
        write_section("ingest", markdown)


if __name__ == "__main__":
    main()
