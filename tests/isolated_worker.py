"""A `celery worker` on the test database with a broker folder of its own, in a process group
of its own: tests that kill a worker (main process and pool children at once) use it, so the
session's shared worker never takes, or dies with, their tasks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid

from mfplatform.celery import app
from mfplatform.training.queues import WORKER_QUEUES
from tests.conftest import REPO, subprocess_env


class IsolatedWorker:
    def __init__(self, pool: str, **env: str):
        self.broker_dir = REPO / "var" / f"test-broker-isolated-{uuid.uuid4().hex[:8]}"
        self.log = self.broker_dir / "worker.log"
        self.folders = {name: self.broker_dir / name for name in ("queue", "processed",
                                                                  "control")}
        for folder in self.folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mfplatform", "worker", "--loglevel", "INFO",
             "--concurrency", "1", "--pool", pool, "--without-heartbeat", "--without-gossip",
             "--without-mingle", "--queues", ",".join(WORKER_QUEUES["small"])],
            cwd=REPO, env=subprocess_env(CELERY_BROKER_DIR=str(self.broker_dir), **env),
            stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)

    def send(self, task, args: tuple) -> None:
        """`task` (a Celery task) with `args`, through this worker's broker folder only."""
        options = {"data_folder_in": str(self.folders["queue"]),
                   "data_folder_out": str(self.folders["queue"]),
                   "processed_folder": str(self.folders["processed"]),
                   "control_folder": str(self.folders["control"]), "store_processed": False}
        with app.connection_for_write(transport_options=options) as conn:
            task.apply_async(args, connection=conn)

    def kill_all(self) -> None:
        """SIGKILL to the worker's whole process group: main process and pool child."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self._log_file.close()
        shutil.rmtree(self.broker_dir, ignore_errors=True)
