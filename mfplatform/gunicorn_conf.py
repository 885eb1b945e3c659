"""gunicorn settings shared by `manage.py serve`, the Docker image and benchmarks/serving.py,
so that what is measured is what runs.

Threads, not processes only: serving spends half of a request waiting on Postgres, and keep-alive
connections from internal applications need a worker that holds them open. A few threads per
process: more make the GIL hand-overs the tail of the latency (benchmarks/serving.py).

Every worker counts its own Prometheus metrics; they meet in files under
PROMETHEUS_MULTIPROC_DIR (var/prometheus unless set), so that GET /metrics, answered by any one
worker, reports all of them.
"""

import os
import shutil
from pathlib import Path

workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
keepalive = 30  # seconds an idle client connection stays open
timeout = 120
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None

_metrics_dir = Path(os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    str(Path(os.environ.get("VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
        / "prometheus")))


def on_starting(server) -> None:
    # Files of an earlier run would add its counts to this one's.
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    _metrics_dir.mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker) -> None:
    # The impressions still in this worker's buffer (mfplatform/experiments/impressions.py).
    from mfplatform.experiments.impressions import BUFFER

    BUFFER.close()
