import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from mfplatform.ops.models import WorkerPing
from mfplatform.ops.tasks import ping
from tests.conftest import REPO, subprocess_env, wait_for


@pytest.mark.django_db
def test_healthz_green_names_database_pgvector_and_broker(client):
    WorkerPing.objects.create(token="beat")  # a worker answered just now
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["database"]["pgvector"].startswith("0.")
    assert "PostgreSQL" in body["database"]["server"]
    assert body["broker"] == {"ok": True, "transport": body["broker"]["transport"]}
    assert body["worker"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_healthz_names_the_worker_when_none_answered_recently(client, celery_worker_process):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["worker"]
    assert "no worker has ever answered" in response.json()["worker"]["error"]
    ping.delay()  # what beat sends every 30 s; the real worker answers it
    wait_for(lambda: WorkerPing.objects.filter(token="beat").exists(),
             worker=celery_worker_process)
    assert client.get("/healthz").status_code == 200
    # The answer grows old: past WORKER_PING_MAX_AGE_SECONDS nobody is known to be alive.
    WorkerPing.objects.update(received_at=timezone.now() - timedelta(
        seconds=settings.WORKER_PING_MAX_AGE_SECONDS + 1))
    stale = client.get("/healthz")
    assert stale.status_code == 503 and stale.json()["failing"] == ["worker"]
    assert "no worker answered a ping" in stale.json()["worker"]["error"]


@pytest.mark.django_db
def test_worker_ping_is_scheduled_in_beat():
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.get(task="ops.ping").interval.every == 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db
def test_healthz_red_when_database_is_down():
    """A real server process whose database does not answer reports 503 naming the database."""
    dead_db_port = _free_port()  # nothing listens there
    port = _free_port()
    env = subprocess_env(DATABASE_URL=f"postgresql://nobody@127.0.0.1:{dead_db_port}/none")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "mfplatform.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", "1"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30)
                status, payload = 200, b""
                break
            except urllib.error.HTTPError as err:
                status, payload = err.code, err.read()
                break
            except OSError:  # refused, or a worker still booting on a loaded machine timed out
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert status == 503
    body = json.loads(payload)
    assert body["status"] == "error"
    assert body["failing"] == ["database"]
    assert body["database"]["ok"] is False and body["database"]["error"]
    assert body["broker"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_metrics_add_up_every_gunicorn_worker(tmp_path):
    """The shipped server configuration: each worker counts its own requests, and /metrics
    (answered by whichever worker) reports the sum of all of them."""
    from tests.conftest import make_tenant

    alpha = make_tenant("metrics-alpha")
    port = _free_port()
    env = subprocess_env(WEB_WORKERS="2", WEB_THREADS="1", WEB_ACCESS_LOG="",
                         PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"))
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "mfplatform.wsgi:application", "--config",
         "python:mfplatform.gunicorn_conf", "--bind", f"127.0.0.1:{port}"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30)
                break
            except urllib.error.HTTPError:  # answering (no worker in this test: a 503)
                break
            except OSError:  # refused, or a worker still booting on a loaded machine timed out
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/recommendations?user=nobody&k=5",
            headers={"Authorization": f"Bearer {alpha.raw_key}"})
        sent, pids = 0, set()
        while len(pids) < 2 and sent < 200:  # a connection each, until both workers took some
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
            sent += 1
            pids = {p.stem.rsplit("_", 1)[-1]
                    for p in (tmp_path / "prometheus").glob("counter_*.db")}
        totals = []
        for _ in range(6):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            totals += [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("mf_serving_requests_total{")
                       and 'tenant="metrics-alpha"' in line]
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert len(pids) == 2, "both workers answered (else the sum would be one worker's count)"
    assert totals == [float(sent)] * 6
