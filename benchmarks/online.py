"""Online evaluation end to end: does an A/B experiment find the better model, does an A/A
experiment call no winner at the nominal rate, and what does impression logging cost serving.

    MOVIELENS_DIR=../shared/datasets/ml-latest-small \
        .venv/bin/python benchmarks/online.py [--requests 3000] [--aa-runs 400]

1. A hidden "true" preference model: ALS factors fitted on the whole of MovieLens
   ml-latest-small (every rating, strength = rating). A simulated user clicks an item shown
   at position p with probability 0.6 * q**20 / log2(p + 1), q the item's percentile in the
   user's true affinities (1 = their best item); a click is followed by a purchase with
   probability 0.3.
2. The platform, in a throwaway database, loads the same ratings through its ingestion
   service, trains an ALS model with its real pipeline (fewer factors and iterations than the
   truth, and its own split) and runs an experiment on recommendations: a popularity control
   against the plan's model (50/50, sticky by user).
3. The server as shipped (gunicorn with mfplatform/gunicorn_conf.py) on loopback; simulated
   users ask GET /api/v1/recommendations (k=10) over 8 keep-alive connections; their clicks
   and purchases go back through POST /api/v1/events, half of the clicks with the response's
   recommendation_id and position, the other half and every purchase without (attributed by
   the window). Then the results function must call the model the winner.
4. A/A: both variants with the same click rate, simulated directly as the results function's
   input, `--aa-runs` times; the share of runs that call a winner is the false-positive rate.
5. Throughput: two servers up at once, IMPRESSION_LOGGING on in one and off in the other
   (`--throughput-logging off,off`: an A/A run, the benchmark's own noise); each round
   starts a fresh pair, the setting started first flipped every round (an instance keeps its
   own speed for its life: two identical servers differed by up to 0.37 ms of web CPU a
   request for a whole run, which with one pair leant every round of the run the same way),
   and sends the same load to them in `--chunks` slices each, in ABBA order (the first
   server flipped every round, the one started first), so a change in the machine's speed
   falls on both. Every slice opens its 8 connections spread evenly over the server's 2
   workers (gunicorn's workers race to accept a connection: left to chance a slice ran with
   anything from 4/4 to 8/0, and a worker holding 6-8 connections on its 4 threads serves
   fewer requests a second), and after a slice both servers rest for the impression writer's
   interval, so that no slice pays for the other server's last write. The ratio is per
   round, and the goal (>= 0.95x) must hold in every round; the web server's and Postgres's
   CPU a request per setting come with it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import sys
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import (  # noqa: E402
    bench_database,
    command_line,
    connection_owners,
    cpu_between,
    free_port,
    machine_line,
    movielens_dir,
    pin_threads,
    process_tree_cpu,
    start_server,
    worker_pids,
    write_section,
)

pin_threads()

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

CONNECTIONS = 8
K = 10


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--aa-runs", type=int, default=400)
    parser.add_argument("--throughput-requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=10,
                        help="throughput: alternating slices per setting in a round")
    parser.add_argument("--pairs", type=int, default=5,
                        help="throughput: fresh server pairs in a round, one after another, "
                             "the round's slices shared among them (>= 2 slices each)")
    parser.add_argument("--throughput-logging", default="on,off",
                        help="impression logging of the two throughput servers; off,off is an "
                             "A/A run (the benchmark's noise)")
    parser.add_argument("--keep-database", action="store_true",
                        help="keep mfbench_online afterwards (benchmarks/serving_cpu.py "
                             "--database mfbench_online --tenant online --mixes online)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args()


class Truth:
    """The hidden preference model and the click behaviour it drives."""

    def __init__(self, ratings: np.ndarray, seed: int):
        import mfengine

        users, self.user_ids = np.unique(ratings[:, 0].astype(np.int64), return_inverse=True)
        items, self.item_ids = np.unique(ratings[:, 1].astype(np.int64), return_inverse=True)
        self.users, self.items = users, items
        matrix = sp.csr_matrix((ratings[:, 2].astype(np.float32),
                                (self.user_ids, self.item_ids)),
                               shape=(len(users), len(items)))
        model = mfengine.create("als", factors=48, iterations=15, regularization=1.0,
                                random_state=seed).fit(matrix)
        affinity = model.user_vectors(model.user_factors_) @ model.item_vectors().T
        # Each user's percentile of every item (1 = their best).
        ranks = np.argsort(np.argsort(affinity, axis=1), axis=1)
        self.quantile = (ranks / (affinity.shape[1] - 1)).astype(np.float32)
        self.row = {f"u{u}": r for r, u in enumerate(users)}
        self.column = {f"m{i}": c for c, i in enumerate(items)}
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()

    def clicks(self, user: str, shown: list[str]) -> list[int]:
        """Positions (1-based) the user clicks."""
        q = np.array([self.quantile[self.row[user], self.column[i]] for i in shown])
        p = 0.6 * q ** 20 / np.log2(np.arange(2, len(shown) + 2))
        with self.lock:
            return [int(n) + 1 for n in np.flatnonzero(self.rng.random(len(shown)) < p)]

    def buys(self) -> bool:
        with self.lock:
            return bool(self.rng.random() < 0.3)


def read_ratings() -> np.ndarray:
    path = movielens_dir() / "ratings.csv"
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1, 2), dtype=np.float64)


def load_platform(ratings: np.ndarray):
    import django

    django.setup()
    from django.db import connection

    from mfplatform.catalog.events import ingest_events
    from mfplatform.catalog.ingest import upsert_items
    from mfplatform.experiments.services import (
        VariantInput,
        create_experiment,
        start_experiment,
    )
    from mfplatform.registry.runs import execute_run
    from mfplatform.registry.services import promote
    from mfplatform.training.services import create_plan, queue_run
    from tenants.context import tenant_context
    from tenants.models import ApiKey, Tenant

    tenant = Tenant.objects.create(slug="online", name="online")
    with tenant_context(tenant):
        movies = sorted({int(m) for m in ratings[:, 1]})
        upsert_items(tenant, [{"external_id": f"m{m}"} for m in movies])
        # No timestamps: the events count as sent now, inside the plan's default window.
        rows = [{"user": f"u{int(u)}", "item": f"m{int(m)}", "type": "rating", "value": r}
                for u, m, r in ratings[:, :3]]
        for start in range(0, len(rows), 10_000):
            ingest_events(tenant, rows[start:start + 10_000])
        plan = create_plan(tenant, "main", {
            "events": {"rating": 1, "click": 1, "purchase": 3},
            "training": {"strategy": "als", "factors": 32, "iterations": 8,
                         "regularization": 5.0},
            "evaluation": {"k": [10], "max_users": 1000},
            "promotion": {"min_improvement_over_popularity": -1.0,
                          "max_popularity_concentration": 1.0}})
        started = time.perf_counter()
        version = execute_run(queue_run(tenant, plan))
        print(f"platform model trained in {time.perf_counter() - started:.1f} s: "
              f"{version.status}", flush=True)
        if version.status == "rejected":
            # The offline gate judged it on a temporal split of events that all arrived
            # "now" (in user order): the online experiment is the judge here.
            promote(version, actor="benchmark", reason="served for the online experiment",
                    override=True)
            version.refresh_from_db()
        if version.status != "active":
            raise SystemExit("the platform's model could not be made active")
        experiment = create_experiment(tenant, "popularity-vs-model", [
            VariantInput("popularity", "popularity", 0.5, is_control=True),
            VariantInput("model", "plan", 0.5, plan=plan.pk)], min_samples=500)
        start_experiment(tenant, experiment)
        _key, raw = ApiKey.issue(tenant, ["recommend", "ingest", "manage"])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return tenant, experiment, raw


def _request(conn, method: str, path: str, key: str, body=None) -> dict:
    payload = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}"}
    if payload is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise SystemExit(f"{method} {path}: {response.status} {data[:300]!r}")
    return json.loads(data)


def simulate(port: int, key: str, truth: Truth, users: list[str], total: int) -> dict:
    """`total` recommendation requests from random users; their clicks and purchases are
    posted as events in batches. Returns counts per variant as the simulator saw them."""
    counter = iter(range(total))
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()
    rng = np.random.default_rng(1)
    picks = [users[i] for i in rng.integers(0, len(users), total)]

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        events = []
        for n in counter:
            user = picks[n]
            body = _request(conn, "GET", f"/api/v1/recommendations?user={user}&k={K}", key)
            shown = [i["item"] for i in body["items"]]
            clicked = truth.clicks(user, shown)
            with lock:
                entry = seen.setdefault(body["variant"], [0, 0])
                entry[0] += 1
                entry[1] += bool(clicked)
            for position in clicked:
                event = {"user": user, "item": shown[position - 1], "type": "click"}
                if n % 2 == 0:  # half carry the response's id; the rest go by the window
                    event.update(recommendation_id=body["recommendation_id"],
                                 position=position)
                events.append(event)
                if truth.buys():
                    events.append({"user": user, "item": shown[position - 1],
                                   "type": "purchase"})
            if len(events) >= 200:
                _request(conn, "POST", "/api/v1/events", key, events)
                events = []
        if events:
            _request(conn, "POST", "/api/v1/events", key, events)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen


def stop(server) -> None:
    """Gracefully: gunicorn's workers write their impression buffers (worker_exit)."""
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)


def serve(logging_on: bool):
    port = free_port()
    server = start_server(port, "--config", "python:mfplatform.gunicorn_conf",
                          "--access-logfile", "/dev/null",
                          env={"IMPRESSION_LOGGING": "1" if logging_on else "0"})
    return server, port


def balanced_connections(port: int, key: str, user: str, workers: list[int]
                         ) -> list[http.client.HTTPConnection]:
    """CONNECTIONS keep-alive connections, as many on each worker: a connection stays with
    the worker that accepted it, and which one does is a race. Each answers one request
    (accepted, and warm) before it counts; one that lands on a full worker is closed and
    opened again."""
    per_worker = CONNECTIONS // len(workers)
    held: dict[int, list[http.client.HTTPConnection]] = {w: [] for w in workers}
    for _attempt in range(CONNECTIONS * 20):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        _request(conn, "GET", f"/api/v1/recommendations?user={user}&k={K}", key)
        owner = connection_owners(port, workers).get(conn.sock.getsockname()[1])
        if owner is not None and len(held[owner]) < per_worker:
            held[owner].append(conn)
            if sum(map(len, held.values())) == CONNECTIONS:
                return [c for conns in held.values() for c in conns]
        else:
            conn.close()
    raise SystemExit(f"could not spread {CONNECTIONS} connections over workers {workers}")


def throughput(port: int, key: str, users: list[str], total: int, first: int = 0,
               connections: list[http.client.HTTPConnection] | None = None) -> float:
    """Requests/s of `total` requests over CONNECTIONS connections (new ones unless given;
    closed at the end)."""
    counter = iter(range(first, first + total))
    if connections is None:
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                       for _ in range(CONNECTIONS)]

    def worker(conn):
        for n in counter:
            _request(conn, "GET", f"/api/v1/recommendations?user={users[n % len(users)]}"
                                  f"&k={K}", key)
        conn.close()

    threads = [threading.Thread(target=worker, args=(conn,)) for conn in connections]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return total / (time.perf_counter() - started)


@contextlib.contextmanager
def server_pair(arms: list[str], first: int, key: str, users: list[str]):
    """Two fresh servers, impression logging as `arms` says, started (and warmed) arm `first`
    first; yields [(server, port, worker pids)] in `arms` order and stops both afterwards."""
    started: dict[int, tuple] = {}
    try:
        for arm in (first, 1 - first):
            server, port = serve(arms[arm] == "on")
            started[arm] = (server, port, [])
            throughput(port, key, users, 200)  # warm the caches
            workers = worker_pids(server.pid)  # after the warm-up: every worker has booted
            if len(workers) < 1 or CONNECTIONS % len(workers):
                raise SystemExit(f"{len(workers)} workers for {CONNECTIONS} connections")
            started[arm] = (server, port, workers)
        yield [started[0], started[1]]
    finally:
        for server, _port, _workers in started.values():
            stop(server)


def logging_cost(args, key: str, users: list[str]) -> dict:
    """Requests/s and CPU a request per round, for each of the two settings of impression
    logging (`--throughput-logging`): two servers side by side take turns in slices, so the
    machine's drift falls on both settings. A round is `--pairs` fresh pairs of servers one
    after another, its slices shared among them, the setting started first flipped from pair
    to pair: an instance keeps its own speed for its life (two identical servers differed by
    up to 0.37 ms of web CPU a request, 7%), so a round of one pair weighs one draw of that
    against another; several pairs a round average it out."""
    from django.conf import settings

    arms = args.throughput_logging.split(",")
    if len(arms) != 2 or set(arms) - {"on", "off"}:
        raise SystemExit("--throughput-logging: two of on/off, e.g. on,off or off,off")
    per_pair = args.chunks // max(args.pairs, 1)
    if args.pairs < 1 or per_pair < 2:
        raise SystemExit("--pairs: at least 1, and at least 2 of --chunks' slices per pair")
    postmaster = int((Path(__file__).resolve().parent.parent / "var" / "pgdata"
                      / "postmaster.pid").read_text().split()[0])
    # Rest after a slice until the logging server's last rows are written (the writer's
    # interval), so that its write does not land in the next slice, maybe the other server's.
    rest = settings.IMPRESSION_FLUSH_SECONDS + 0.2
    rounds = {name: [[], []] for name in ("rate", "web", "postgres")}
    started_first = []
    slice_requests = max(1, args.throughput_requests // (per_pair * args.pairs))
    for round_number in range(args.rounds):
        started_first.append(round_number % 2)  # the round's first pair's
        seconds, web, postgres = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
        for pair in range(args.pairs):
            first = (round_number + pair) % 2  # started first, and first in the ABBA slices
            with server_pair(arms, first, key, users) as servers:
                for chunk in range(per_pair):
                    # ABBA: a drift within the pair's turn falls on both settings alike
                    order = (first, 1 - first) if chunk % 2 == 0 else (1 - first, first)
                    for arm in order:
                        (server, port, workers), offset = servers[arm], (
                            (round_number * args.pairs + pair) * per_pair + chunk
                        ) * slice_requests
                        connections = balanced_connections(
                            port, key, users[offset % len(users)], workers)
                        web_before, pg_before = (process_tree_cpu(server.pid),
                                                 process_tree_cpu(postmaster))
                        rate = throughput(port, key, users, slice_requests, offset,
                                          connections)
                        seconds[arm] += slice_requests / rate
                        time.sleep(rest)  # CPU: with the slice's last write
                        web[arm] += cpu_between(web_before, process_tree_cpu(server.pid))
                        postgres[arm] += cpu_between(pg_before,
                                                     process_tree_cpu(postmaster))
        measured = slice_requests * per_pair * args.pairs
        for arm in (0, 1):
            rounds["rate"][arm].append(measured / seconds[arm])
            rounds["web"][arm].append(1000 * web[arm] / measured)
            rounds["postgres"][arm].append(1000 * postgres[arm] / measured)
        print(f"round {round_number + 1} ({args.pairs} pairs): " + ", ".join(
                  f"logging {arms[a]} {rounds['rate'][a][-1]:.0f} requests/s (CPU ms a "
                  f"request: web {rounds['web'][a][-1]:.2f}, postgres "
                  f"{rounds['postgres'][a][-1]:.2f})" for a in (0, 1))
              + f"; load {os.getloadavg()[0]:.1f}", flush=True)
    return {"arms": arms, "started_first": started_first, **rounds}


def aa_runs(runs: int, per_variant: int, ctr: float, seed: int) -> tuple[int, int]:
    """A/A: two variants with the same click rate; how many runs call a winner."""
    from mfplatform.experiments.results import (
        AttributedEvent,
        Design,
        ShownResponse,
        compute_results,
    )

    rng = np.random.default_rng(seed)
    design = Design(["a", "b"], "a", min_samples=500, alpha=0.05)
    today = date.today()
    winners = 0
    for _ in range(runs):
        shown, events = [], []
        for variant in ("a", "b"):
            clicked = rng.random(per_variant) < ctr
            for hit in clicked:
                pk = len(shown)
                shown.append(ShownResponse(pk, variant, (1,), ("mf",), 5.0, False, today))
                if hit:
                    events.append(AttributedEvent(pk, 1, "click", "positive"))
        winners += compute_results(design, shown, events)["winner"] is not None
    return winners, runs


def main():
    args = parse_args()
    ratings = read_ratings()
    started = time.perf_counter()
    truth = Truth(ratings, args.seed)
    print(f"true model fitted in {time.perf_counter() - started:.1f} s", flush=True)
    load_before = os.getloadavg()
    with bench_database("mfbench_online", keep=args.keep_database, fresh=True):
        tenant, experiment, key = load_platform(ratings)
        users = sorted(truth.row)
        server, port = serve(logging_on=True)
        try:
            started = time.perf_counter()
            seen = simulate(port, key, truth, users, args.requests)
            simulated = time.perf_counter() - started
        finally:
            stop(server)
        from mfplatform.experiments.results import experiment_results
        from mfplatform.experiments.services import stop_experiment
        from tenants.context import tenant_context

        with tenant_context(tenant):
            experiment.refresh_from_db()
            results = experiment_results(tenant, experiment)
            stop_experiment(tenant, experiment)  # throughput measures serving alone
        print(json.dumps({v["variant"]: [v["impressions"], v["ctr"]]
                          for v in results["variants"]}), results["winner"], flush=True)
        throughput_rounds = logging_cost(args, key, users)
    aa_winners, aa_total = aa_runs(args.aa_runs, 1500, 0.2, args.seed)
    load_after = os.getloadavg()
    rates = throughput_rounds["rate"]
    ratios = [a / b for a, b in zip(rates[0], rates[1], strict=True)]
    print(f"A/A: {aa_winners}/{aa_total} runs called a winner; throughput ratios "
          f"{', '.join(f'{r:.3f}' for r in ratios)}")
    markdown = report(args, results, seen, simulated, aa_winners, aa_total, throughput_rounds,
                      load_before, load_after)
    print(markdown)
    if not args.no_write:
        write_section("online", markdown)
    if results["winner"] != "model":
        raise SystemExit("the experiment did not find the better variant")


def report(args, results, seen, simulated, aa_winners, aa_total, throughput_rounds,
           load_before, load_after) -> str:
    arms, rates = throughput_rounds["arms"], throughput_rounds["rate"]
    web, postgres = throughput_rounds["web"], throughput_rounds["postgres"]
    first = throughput_rounds["started_first"]

    def started_name(arm: int) -> str:
        # off,off: the two columns' servers are told apart by their place
        return f"logging {arms[arm]}" if arms[0] != arms[1] else ("left", "right")[arm]

    ratio = min(a / b for a, b in zip(rates[0], rates[1], strict=True))
    on_off = arms == ["on", "off"]
    rows = []
    for v in results["variants"]:
        test = v["vs_control"]
        p_holm = "-" if test is None else f"{test['p_adjusted']:.2g}"
        rows.append(
            f"| {v['variant']} | {v['impressions']} | {v['ctr']:.3f} "
            f"[{v['ctr_ci'][0]:.3f}, {v['ctr_ci'][1]:.3f}] | "
            f"{(v['conversion'].get('purchase') or {}).get('rate') or 0:.3f} | "
            f"{v['latency_ms']['p50']} / {v['latency_ms']['p95']} / {v['latency_ms']['p99']} | "
            f"{v['long_tail_share']:.3f} | {v['coverage']:.3f} | "
            f"{p_holm} |")
    simulator = ", ".join(f"{variant}: {n} responses, {c / n:.3f} clicked"
                          for variant, (n, c) in sorted(seen.items()))
    return "\n".join([
        "## Online evaluation: A/B, A/A and the cost of impression logging",
        "",
        f"`{command_line()}` ({machine_line()}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; other work on the machine makes throughput noisy).",
        "",
        "Hidden truth: ALS (48 factors) fitted on all of MovieLens ml-latest-small; a user "
        "clicks the item at position p with probability 0.6 q^20 / log2(p + 1), q the item's "
        "percentile among the user's true affinities; 30% of clicks lead to a purchase. The "
        "platform trained its own ALS (32 factors, 8 iterations) through its pipeline on the "
        "same ratings; experiment: popularity control vs the plan's model, 50/50 by user. "
        f"{args.requests} GET /api/v1/recommendations (k={K}) over {CONNECTIONS} connections "
        f"in {simulated:.0f} s, feedback through POST /api/v1/events (half the clicks with "
        "recommendation_id and position, the rest and all purchases by the 24 h window).",
        "",
        "| variant | impressions | CTR [95% Wilson] | purchase rate | latency ms p50/p95/p99 "
        "| long-tail share | coverage | p (Holm) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Winner: **{results['winner']}** ({results['reason']}). The simulator's own count: "
        f"{simulator}. The results count fewer clicked responses than the simulator: a click "
        "sent without its recommendation_id goes to the latest response that showed the user "
        "the item, and users come back (about 5 requests each), so some clicks land on a "
        "later response of the same variant.",
        "",
        f"A/A: {aa_total} simulated experiments of 2 x 1,500 responses with the same 20% CTR "
        f"through the same results function: {aa_winners} called a winner "
        f"({aa_winners / aa_total:.1%}; nominal alpha 5%).",
        "",
        f"Throughput (closed loop, {CONNECTIONS} connections; two servers up side by side, "
        f"impression logging {arms[0]} in one and {arms[1]} in the other; {args.rounds} "
        f"rounds of {args.throughput_requests} requests to each; a round is {args.pairs} "
        "fresh pairs of servers one after another, the one started first flipped from pair "
        "to pair (a server instance keeps its own speed for its life: several pairs a round "
        "average that out), each pair taking "
        f"{args.chunks // args.pairs} slices each in ABBA order, the server started "
        "first also first in its slices; every slice's "
        "connections spread 4/4 over the server's 2 workers, a rest of the impression "
        "writer's interval after each slice), requests/s and CPU a request (the web "
        "server's processes and every Postgres process, over the slices and their rests) "
        "per round:",
        "",
        f"| round | first pair started first | logging {arms[0]} | logging {arms[1]} "
        f"| {arms[0]} / {arms[1]} | web CPU ms, {arms[0]} / {arms[1]} "
        f"| Postgres CPU ms, {arms[0]} / {arms[1]} |",
        "|---|---|---|---|---|---|---|",
        *[f"| {n + 1} | {started_name(first[n])} | {rates[0][n]:.0f} | {rates[1][n]:.0f} | "
          f"{rates[0][n] / rates[1][n]:.3f}x | {web[0][n]:.2f} / {web[1][n]:.2f} | "
          f"{postgres[0][n]:.2f} / {postgres[1][n]:.2f} |" for n in range(args.rounds)],
        "",
        f"Lowest round: **{ratio:.2f}x** " + (
            f"(goal >= 0.95x in every round: {'met' if ratio >= 0.95 else 'NOT met'})."
            if on_off else "(an A/A run: the benchmark's own noise, not the goal's figure)."),
    ])


if __name__ == "__main__":
    main()
