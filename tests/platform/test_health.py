import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import REPO, subprocess_env


@pytest.mark.django_db
def test_healthz_green_names_database_pgvector_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["database"]["pgvector"].startswith("0.")
    assert "PostgreSQL" in body["database"]["server"]
    assert body["broker"] == {"ok": True, "transport": body["broker"]["transport"]}


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
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
                status, payload = 200, b""
                break
            except urllib.error.HTTPError as err:
                status, payload = err.code, err.read()
                break
            except (urllib.error.URLError, ConnectionError):
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
