"""gunicorn settings shared by `manage.py serve`, the Docker image and benchmarks/serving.py,
so that what is measured is what runs.

Threads, not processes only: serving spends half of a request waiting on Postgres, and keep-alive
connections from internal applications need a worker that holds them open. A few threads per
process: more make the GIL hand-overs the tail of the latency (measured in
benchmarks/serving.py: 2 x 4 gave the p99 of 2 x 8 at a lower value, the same throughput).
"""

import os

workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
keepalive = 30  # seconds an idle client connection stays open
timeout = 120
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None
