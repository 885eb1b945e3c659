"""A bounded schemathesis run over every operation of /api/schema/, against the server as
shipped (gunicorn with mfplatform/gunicorn_conf.py) with a tenant key: no server error, no
undocumented content type, and every response body matches its documented schema.

Against gunicorn, not Django's development server (pytest-django's live_server): the fuzzer
sends thousands of requests on keep-alive connections, which is what
production serves and the development server was never made for. The per-operation settings
(which coverage cases only repeat others) are in schemathesis.toml, next to this file."""

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, make_tenant, subprocess_env, wait_for
from tests.factories import make_plan
from tests.platform.test_health import _free_port

pytestmark = pytest.mark.django_db(transaction=True)

# Per operation. Fixed seed and deterministic generation: the same cases on every run.
MAX_EXAMPLES = 8
SEED = 20261130
# One fuzzer thread: with several, hypothesis parses lambdas' source (ast.parse) in threads
# at once, which CPython 3.11.7 does not survive ("AST constructor recursion depth mismatch",
# a runtime error of the fuzzer, not of the API). Against gunicorn one thread takes as long.
FUZZ_WORKERS = 1


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError:
        return True  # an HTTP answer, even an error status, is a server that is up
    except OSError:  # refused, or a worker still booting on a loaded machine timed out
        return False
    return True


@pytest.fixture
def shipped_server(tmp_path):
    """gunicorn with the shipped configuration on the test database; yields its base URL."""
    port = _free_port()
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "mfplatform.wsgi:application", "--config",
             "python:mfplatform.gunicorn_conf", "--bind", f"127.0.0.1:{port}"],
            cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
            env=subprocess_env(WEB_ACCESS_LOG="",
                               PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus")))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is not None or _answers(f"{url}/healthz"), timeout=90)
        assert server.poll() is None, log_path.read_text()[-4000:]
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_fuzzing_every_operation_finds_no_server_error_or_schema_violation(shipped_server,
                                                                          tmp_path):
    tenant = make_tenant("fuzz")
    with tenant.scope():
        make_plan(tenant.tenant)
    client = tenant.client()
    assert client.post("/api/v1/items", [{"external_id": "1", "title": "One"}],
                       format="json").status_code == 200
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(schemathesis), "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
         "run", f"{shipped_server}/api/schema/", "--url", shipped_server,
         "-H", f"Authorization: Bearer {tenant.raw_key}",
         "--checks", "not_a_server_error,content_type_conformance,response_schema_conformance",
         "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
         "--generation-deterministic", "--phases", "examples,coverage,fuzzing",
         "--workers", str(FUZZ_WORKERS), "--no-color"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    assert result.returncode == 0, output[-6000:]
