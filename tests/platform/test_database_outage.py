"""A real server whose database is unreachable answers every API route with a JSON 503."""

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.conftest import REPO, subprocess_env
from tests.platform.test_health import _free_port


def _every_operation() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [(method.upper(), re.sub(r"\{[^}]+\}", "1", path))
            for path, operations in schema["paths"].items() if path.startswith("/api/v1/")
            for method in operations if method in ("get", "post", "put", "patch", "delete")]


# The first request imports the serving stack (numba compiles), slow on a busy machine.
TIMEOUT = 150


def _call(port: int, method: str, path: str) -> tuple[int, dict, str]:
    body = b"[]" if method in ("POST", "PUT", "PATCH") else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method=method,
        headers={"Authorization": "Bearer mf_abcdefgh_" + "x" * 43,
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


@pytest.mark.django_db
def test_every_api_route_answers_json_503_with_retry_after_when_the_database_is_down():
    operations = _every_operation()
    assert len(operations) > 20
    dead_db_port = _free_port()  # nothing listens there
    port = _free_port()
    env = subprocess_env(DATABASE_URL=f"postgresql://nobody@127.0.0.1:{dead_db_port}/none")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "mfplatform.wsgi:application", "--bind",
         f"127.0.0.1:{port}", "--workers", "1", "--timeout", "200"], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT)
                break
            except urllib.error.HTTPError:
                break  # the server answers (503: the database is down, as expected)
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        answers = {(method, path): _call(port, method, path) for method, path in operations}
    finally:
        server.terminate()
        server.wait(timeout=10)
    wrong = {op: (status, body[:200]) for op, (status, headers, body) in answers.items()
             if status != 503 or headers.get("Retry-After") != "5"
             or json.loads(body).get("code") != "database_unavailable"}
    assert not wrong, wrong
