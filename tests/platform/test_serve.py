"""`manage.py serve` (what `make run` starts): web, a worker per training queue; a worker
that exits is started again while the web server keeps answering."""

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.conftest import REPO, subprocess_env, wait_for
from tests.platform.test_health import _free_port

pytestmark = pytest.mark.django_db(transaction=True)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError:
        return True  # an HTTP answer, even an error status, is a server that is up
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
    return True


def _started(log_path, name: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"{name} started \(pid (\d+)\)",
                                           log_path.read_text())]


def test_a_worker_that_exits_is_restarted_and_the_web_server_stays_up(tmp_path):
    port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--web-workers", "1",
             "--no-beat"], cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
            env=subprocess_env(WEB_ACCESS_LOG="",
                               PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus")))
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        wait_for(lambda: _answers(url), timeout=60)
        wait_for(lambda: _started(log_path, "worker-small") and _started(log_path,
                                                                         "worker-large"))
        first = _started(log_path, "worker-small")[0]
        os.kill(first, signal.SIGTERM)  # a worker told to stop by something else exits
        wait_for(lambda: f"worker-small (pid {first}) exited" in log_path.read_text(),
                 timeout=60)
        wait_for(lambda: len(_started(log_path, "worker-small")) == 2, timeout=60)
        second = _started(log_path, "worker-small")[1]
        assert second != first
        assert serve.poll() is None and _answers(url)
        assert len(_started(log_path, "worker-large")) == 1  # the other worker untouched
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
    assert "web server exited" not in log_path.read_text()
