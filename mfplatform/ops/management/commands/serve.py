"""`make run`: the web server, a Celery worker and beat in the foreground; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server, a Celery worker and Celery beat together until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--web-workers", default=os.environ.get("WEB_WORKERS", "2"))
        parser.add_argument("--no-beat", action="store_true")

    def handle(self, host, port, web_workers, no_beat, **options):
        python = sys.executable
        commands = {
            "web": [python, "-m", "gunicorn", "mfplatform.wsgi:application",
                    "--config", "python:mfplatform.gunicorn_conf",
                    "--bind", f"{host}:{port}", "--workers", str(web_workers)],
            "worker": [python, "-m", "celery", "-A", "mfplatform", "worker",
                       "--loglevel", "INFO", "--concurrency", "1"],
        }
        if not no_beat:
            commands["beat"] = [python, "-m", "celery", "-A", "mfplatform", "beat",
                                "--loglevel", "INFO"]
        processes = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
        self.stdout.write(f"Serving on http://{host}:{port}/ (admin at /admin/, health at "
                          f"/healthz); {', '.join(processes)} running. Ctrl-C stops them.")

        stopping = False

        def stop(*_args):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in processes.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with {proc.returncode}; stopping.")
                        stopping = True
                time.sleep(0.5)
        finally:
            for proc in processes.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.time() + 15
            for proc in processes.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    proc.kill()
