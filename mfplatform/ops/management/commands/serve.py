"""`make run`: the web server, one Celery worker per training queue and beat in the foreground.

A worker or beat that exits is started again (and the exit logged); the web server stays up
meanwhile. Only the web server exiting, or Ctrl-C / SIGTERM, stops everything.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from django.core.management.base import BaseCommand

from mfplatform.training.queues import WORKER_QUEUES

log = logging.getLogger("mfplatform.serve")

# A process that dies within this many seconds of starting waits before the next start,
# twice as long each time up to the maximum, so a crash loop does not spin.
QUICK_EXIT_SECONDS = 10.0
MAX_RESTART_DELAY = 60.0


@dataclass
class Supervised:
    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_delay: float = 1.0
    restart_at: float | None = None
    restarts: int = 0

    def start(self) -> None:
        self.process = subprocess.Popen(self.command)
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("%s started (pid %s)", self.name, self.process.pid)

    def check(self) -> None:
        """Start again when it has exited and its delay has passed."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restarts += 1
                self.start()
            return
        if self.process is None or self.process.poll() is None:
            return
        quick = now - self.started_at < QUICK_EXIT_SECONDS
        self.restart_delay = min(self.restart_delay * 2, MAX_RESTART_DELAY) if quick else 1.0
        self.restart_at = now + self.restart_delay
        log.warning("%s (pid %s) exited with %s; restarting in %.0f s", self.name,
                    self.process.pid, self.process.returncode, self.restart_delay)


def worker_command(python: str, size_class: str) -> list[str]:
    return [python, "-m", "celery", "-A", "mfplatform", "worker", "--loglevel", "INFO",
            "--concurrency", "1", "--queues", ",".join(WORKER_QUEUES[size_class]),
            "--hostname", f"{size_class}@%h"]


class Command(BaseCommand):
    help = ("Run the web server, one Celery worker per training queue (small and large "
            "tenants) and Celery beat together until interrupted; restart a worker that exits.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--web-workers", default=os.environ.get("WEB_WORKERS", "2"))
        parser.add_argument("--no-beat", action="store_true")

    def handle(self, host, port, web_workers, no_beat, **options):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s serve %(message)s")
        python = sys.executable
        web = subprocess.Popen([python, "-m", "gunicorn", "mfplatform.wsgi:application",
                                "--config", "python:mfplatform.gunicorn_conf",
                                "--bind", f"{host}:{port}", "--workers", str(web_workers)])
        helpers = [Supervised(f"worker-{size}", worker_command(python, size))
                   for size in WORKER_QUEUES]
        if not no_beat:
            helpers.append(Supervised("beat", [python, "-m", "celery", "-A", "mfplatform",
                                               "beat", "--loglevel", "INFO"]))
        for helper in helpers:
            helper.start()
        self.stdout.write(f"Serving on http://{host}:{port}/ (admin at /admin/, health at "
                          f"/healthz); web, {', '.join(h.name for h in helpers)} running. "
                          f"Ctrl-C stops them.")

        stopping = False

        def stop(*_args):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                if web.poll() is not None:
                    log.error("web server exited with %s; stopping", web.returncode)
                    break
                for helper in helpers:
                    helper.check()
                time.sleep(0.5)
        finally:
            processes = [web] + [h.process for h in helpers if h.process is not None]
            for proc in processes:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.time() + 15
            for proc in processes:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    proc.kill()
