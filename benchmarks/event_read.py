"""Events out of Postgres into numpy: binary COPY (the dataset build's reader) against a
server-side cursor with fetchmany into preallocated arrays.

    .venv/bin/python benchmarks/event_read.py [--events 1000000 --chunk 65536]

A throwaway table `bench_event_read` on the embedded server (the columns and types the dataset
build reads from catalog_event), filled by generate_series and dropped at the end. Each reader
runs in a fresh process, twice (the first run warms the server's cache); the second run's time
and the process's peak resident memory above its baseline before the read are reported.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import ROOT, command_line, machine_line  # noqa: E402

TABLE = "bench_event_read"
SELECT = (f'SELECT id, "timestamp", user_id, item_id, event_type_id,'
          f" coalesce(value, 'NaN')::float8 FROM {TABLE}")


def connect():
    import psycopg

    from mfplatform.embedded_db import APP_DATABASE, APP_ROLE, ensure_running

    socket_dir = ensure_running(ROOT / "var" / "pgdata")
    return psycopg.connect(host=str(socket_dir), user=APP_ROLE, dbname=APP_DATABASE,
                           autocommit=True)


def create_table(n: int) -> None:
    with connect() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"""CREATE TABLE {TABLE} AS SELECT g::bigint AS id,
            now() - random() * interval '60 days' AS "timestamp",
            (random() * 100000)::bigint AS user_id, (random() * 20000)::bigint AS item_id,
            (1 + random() * 3)::bigint AS event_type_id,
            CASE WHEN g % 10 = 0 THEN NULL ELSE 1.0 END::float8 AS value
            FROM generate_series(1, {n}) AS g""")
        conn.execute(f"VACUUM ANALYZE {TABLE}")


def read_copy(conn, chunk: int) -> int:
    import numpy as np

    from mfplatform.training.copy_reader import copy_chunks
    from mfplatform.training.event_stream import EVENTS

    parts = [chunk for chunk in copy_chunks(conn.cursor(), SELECT, [], EVENTS, chunk)]
    columns = {name: np.concatenate([p[name] for p in parts]) for name in EVENTS.columns}
    return len(columns["id"])


def read_cursor(conn, chunk: int) -> int:
    import numpy as np

    n = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    ints = np.empty((n, 5), dtype=np.int64)
    values = np.empty(n, dtype=np.float64)
    done = 0
    with conn.transaction(), conn.cursor(name="events", binary=True) as cursor:
        cursor.itersize = chunk
        cursor.execute(SELECT.replace('"timestamp"',
                                      """(extract(epoch FROM "timestamp") * 1e6)::int8"""))
        while rows := cursor.fetchmany(chunk):
            columns = list(zip(*rows, strict=True))
            end = done + len(rows)
            for k in range(5):
                ints[done:end, k] = np.fromiter(columns[k], dtype=np.int64, count=len(rows))
            values[done:end] = np.fromiter(columns[5], dtype=np.float64, count=len(rows))
            done = end
    return done


def child(reader: str, chunk: int) -> None:
    conn = connect()
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    n = {"copy": read_copy, "cursor": read_cursor}[reader](conn, chunk)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline
    print(json.dumps({"rows": n, "seconds": seconds, "peak_mb": peak / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=65_536)
    parser.add_argument("--child", choices=["copy", "cursor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.chunk)
        return
    create_table(args.events)
    results = {}
    try:
        for reader in ("copy", "cursor"):
            for _ in range(2):
                out = subprocess.run([sys.executable, __file__, "--child", reader, "--chunk",
                                      str(args.chunk)], capture_output=True, text=True,
                                     check=True, cwd=ROOT)
                results[reader] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        with connect() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    print(f"`{command_line()}` — {machine_line()}\n")
    print("| reader | rows | seconds | peak memory above baseline (MB) |\n|---|---|---|---|")
    for reader, r in results.items():
        print(f"| {reader} | {r['rows']:,} | {r['seconds']:.2f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
