"""README's "bring your own data" step, run as a reader would paste it: the commands verbatim
(no DEBUG, no SECRET_KEY, the embedded database), against a live server and a real worker."""

import json
import os
import re
import subprocess
import urllib.request

import pytest
from django.db import connection

from tests.conftest import REPO

pytestmark = pytest.mark.django_db(transaction=True)


def walkthrough_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    step = readme[readme.index("5. Bring your own data"):]
    block = re.search(r"```sh\n(.*?)```", step, re.S).group(1)
    lines = [line.strip() for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def reader_env() -> dict[str, str]:
    """What a reader's shell has: none of the test suite's settings, the embedded database."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env["EMBEDDED_DB_NAME"] = connection.settings_dict["NAME"]
    return env


def test_readme_walkthrough_runs_as_pasted(live_server, celery_worker_process):
    commands = walkthrough_commands()
    assert [c.split()[2] for c in commands if c.startswith(".venv/bin/python manage.py")] == [
        "create_tenant", "import_items", "import_events", "train"]
    env = reader_env()
    host = live_server.url.removeprefix("http://")
    for command in commands:
        if command.startswith("ACME_KEY="):
            continue  # the reader pastes the key create_tenant printed
        command = command.replace(".venv/bin/python", str(REPO / ".venv/bin/python"), 1)
        command = command.replace("localhost:8000", host)
        done = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
        if "create_tenant" in command:
            env["ACME_KEY"] = re.search(r"API key \(shown once\): (\S+)", done.stdout).group(1)
            assert re.search(r"Admin login: admin@acme.test / \S+", done.stdout)
        if "/api/v1/plans" in command:
            assert json.loads(done.stdout)["name"] == "default", done.stdout
    assert "succeeded: model version" in done.stdout

    url = f"{live_server.url}/api/v1/recommendations?user=customer-7&k=5"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {env['ACME_KEY']}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        items = json.loads(response.read())["items"]
    assert len(items) == 5
